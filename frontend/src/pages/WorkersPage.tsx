import { Link } from 'react-router';
import type { Resources, Worker } from '../api.ts';
import { StateBadge } from '../components/Badge.tsx';
import { dashboardUrl, fixed, formatBytes, formatCount, formatLastHeard } from '../format.ts';
import { useLiveContext } from '../live.tsx';
import { DataTable } from '../components/DataTable.tsx';

const COLUMNS = [
  'id', 'state', 'host', 'incarnation', 'last heard', 'coordinator', 'jobs', 'cached models', 'queries',
  'cpu', 'memory', 'disk free', 'threads', 'device', 'dashboard',
];

export function WorkersPage() {
  const { snapshot } = useLiveContext();
  if (!snapshot) return <p className="muted">Waiting for the cluster…</p>;
  const alive = snapshot.workers.filter((w) => w.state === 'alive').length;
  return (
    <section>
      <h2>Workers</h2>
      <p className="muted">
        {alive} of {snapshot.workers.length} members alive, as seen by {snapshot.node}.
      </p>
      <DataTable
        kind="workers"
        columns={COLUMNS}
        empty={snapshot.workers.length === 0 ? 'no members' : null}
      >
        {snapshot.workers.map((w) => <WorkerRow key={`${w.id}/${w.generation}`} worker={w} />)}
      </DataTable>
    </section>
  );
}

function JobLink({ id }: { id: string }) {
  return (
    <Link className="mono" to={`/jobs/${encodeURIComponent(id)}`}>
      {id}
    </Link>
  );
}

function WorkerRow({ worker: w }: { worker: Worker }) {
  const ended = w.state === 'failed' || w.state === 'left';
  const jobs = [...(w.training ? [w.training] : []), ...w.serving];
  const link = dashboardUrl(w.http);
  return (
    <tr data-testid={`worker-row-${w.id}`} data-state={w.state} className={ended ? `ended ${w.state}` : undefined}>
      <td className="mono id">{w.id}</td>
      <td>
        <StateBadge state={w.state} />
      </td>
      <td>{w.host || '—'}</td>
      <td className="num">{w.incarnation}</td>
      <td>{formatLastHeard(w.last_heard_ms)}</td>
      <td className="star">{w.coordinator ? <span title="holds the coordinator lease">★</span> : ''}</td>
      <td>
        {jobs.length === 0
          ? '—'
          : jobs.map((id, i) => (
              <span key={id}>
                {i > 0 && ', '}
                <JobLink id={id} />
              </span>
            ))}
      </td>
      <td>{w.models.length > 0 ? w.models.join(', ') : '—'}</td>
      <td className="num">{formatCount(w.queries)}</td>
      <ResourceCells resources={ended ? null : w.resources} />
      <td>{link && !ended ? <a href={link}>{w.http}</a> : (w.http ?? '—')}</td>
    </tr>
  );
}

/** CPU in use of the CPUs it has, memory, free disk of its data directory, libtorch threads,
 * device: as `idunno workers` and `ray status` show them. */
function ResourceCells({ resources: r }: { resources: Resources | null }) {
  if (!r) {
    return (
      <>
        {[0, 1, 2, 3, 4].map((i) => (
          <td key={i}>—</td>
        ))}
      </>
    );
  }
  const disk = r.disk_total_bytes > 0 ? `${formatBytes(r.disk_free_bytes)} of ${formatBytes(r.disk_total_bytes)}` : '—';
  return (
    <>
      <td className="num" title="CPU used over the last 5 s, in cores, of the CPUs it may use">
        {fixed(r.cpu_cores, 2)}/{r.cpus}
      </td>
      <td className="num">{formatBytes(r.rss_bytes)}</td>
      <td className="num">{disk}</td>
      <td className="num">{r.tch_threads}</td>
      <td>{r.device}</td>
    </>
  );
}
