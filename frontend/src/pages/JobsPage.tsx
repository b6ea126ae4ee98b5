import { Link } from 'react-router';
import type { JobEvent } from '../api.ts';
import { JobsTable } from '../components/JobsTable.tsx';
import { formatClock } from '../format.ts';
import { isActive } from '../jobs.ts';
import { useLiveContext } from '../live.tsx';

const EVENTS_SHOWN = 10;

export function JobsPage() {
  const { snapshot, jobEvents } = useLiveContext();
  if (!snapshot) return <p className="muted">Waiting for the cluster…</p>;

  const running = snapshot.jobs.filter(isActive);
  const completed = snapshot.jobs.filter((j) => !isActive(j));
  return (
    <>
      <p className="toolbar">
        <Link className="button primary" to="/jobs/new?kind=serve">
          New inference job
        </Link>
        <Link className="button" to="/jobs/new?kind=train">
          Train a model
        </Link>
      </p>
      <section>
        <h2>Running</h2>
        <JobsTable jobs={running} empty="no job queued or running" />
      </section>
      <section>
        <h2>Completed</h2>
        <p className="muted">The last 20 to end; every job the cluster keeps: <code>idunno completed</code> or <code>GET /api/jobs</code>.</p>
        <JobsTable jobs={completed} empty="no job has ended yet" />
      </section>
      {jobEvents.length > 0 && <RecentEvents events={jobEvents.slice(0, EVENTS_SHOWN)} />}
    </>
  );
}

function RecentEvents({ events }: { events: readonly JobEvent[] }) {
  return (
    <section>
      <h2>Recent job events</h2>
      <ul className="events">
        {events.map((e) => (
          <li key={`${e.job_id}/${e.event}/${e.at_ms}`}>
            <span className="muted mono">{formatClock(e.at_ms)}</span>{' '}
            <Link className="mono" to={`/jobs/${encodeURIComponent(e.job_id)}`}>
              {e.job_id}
            </Link>{' '}
            <strong>{e.event}</strong>
            {e.worker && <> on {e.worker}</>}
            {e.detail && <span className="muted"> — {e.detail}</span>}
          </li>
        ))}
      </ul>
    </section>
  );
}
