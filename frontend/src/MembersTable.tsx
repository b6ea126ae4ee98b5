import type { Member, MemberState } from './api.ts';

const STATE_CLASS: Record<MemberState, string> = {
  alive: 'badge badge-alive',
  suspect: 'badge badge-suspect',
  failed: 'badge badge-failed',
  left: 'badge badge-left',
};

export function formatLastHeard(ms: number | null): string {
  if (ms === null) return '—';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s ago`;
  return `${Math.round(ms / 60_000)} min ago`;
}

function DashboardLink({ http }: { http: string | null }) {
  if (http === null) return <>—</>;
  return <a href={`http://${http}/`}>{http}</a>;
}

export function MembersTable({ members }: { members: readonly Member[] }) {
  return (
    <table className="members">
      <thead>
        <tr>
          <th>id</th>
          <th>state</th>
          <th>host</th>
          <th>generation</th>
          <th>incarnation</th>
          <th>last heard</th>
          <th>dashboard</th>
        </tr>
      </thead>
      <tbody>
        {members.length === 0 ? (
          <tr>
            <td colSpan={7} className="empty">
              no members
            </td>
          </tr>
        ) : (
          members.map((m) => (
            <tr key={`${m.id}/${m.generation}`}>
              <td className="mono">{m.id}</td>
              <td>
                <span className={STATE_CLASS[m.state]}>{m.state}</span>
              </td>
              <td>{m.host}</td>
              <td className="mono" title={new Date(m.generation).toISOString()}>
                {m.generation}
              </td>
              <td className="mono">{m.incarnation}</td>
              <td>{formatLastHeard(m.last_heard_ms)}</td>
              <td>
                <DashboardLink http={m.http} />
              </td>
            </tr>
          ))
        )}
      </tbody>
    </table>
  );
}
