import type { JobRecord } from '../api.ts';
import { jobProgress } from '../jobs.ts';

function Bar({ job }: { job: JobRecord }) {
  const { text, bar } = jobProgress(job);
  return (
    <>
      {bar === null ? (
        <progress aria-label={`progress of ${job.id}`} />
      ) : (
        <progress aria-label={`progress of ${job.id}`} value={bar.value} max={bar.max} />
      )}
      <span className="progress-text">{text}</span>
    </>
  );
}

/** A `<progress>` bar and its text in a table cell; `data-done` holds the queries or steps done. */
export function JobProgressCell({ job }: { job: JobRecord }) {
  return (
    <td className="progress-cell" data-testid={`job-progress-${job.id}`} data-done={jobProgress(job).done}>
      <Bar job={job} />
    </td>
  );
}

/** The same on the job's own page. */
export function JobProgressBar({ job }: { job: JobRecord }) {
  return (
    <div className="progress-cell" data-testid="job-page-progress" data-done={jobProgress(job).done}>
      <Bar job={job} />
    </div>
  );
}
