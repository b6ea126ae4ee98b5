import { MembersTable } from './MembersTable.tsx';
import { useMembers } from './useMembers.ts';

export function App() {
  const { data, error } = useMembers(1000);

  return (
    <main>
      <header>
        <h1>IDunno</h1>
        {data && (
          <p className="meta">
            served by <span className="mono">{data.node}</span> · coordinator:{' '}
            <span className="mono">{data.coordinator ?? '—'}</span>
          </p>
        )}
      </header>

      {error !== null && (
        <div className="banner" role="alert">
          lost connection to the node, retrying… <span className="detail">({error})</span>
        </div>
      )}

      <section>
        <h2>Members</h2>
        {data ? <MembersTable members={data.members} /> : error === null && <p>loading…</p>}
      </section>
    </main>
  );
}
