import type { JobRecord } from '../api.ts';
import { jobProgress } from '../jobs.ts';

/** A `<progress>` bar and its text; `data-done` holds the queries or steps done. */
export function JobProgressCell({ job }: { job: JobRecord }) {
  const { done, text, bar } = jobProgress(job);
  return (
    <td className="progress-cell" data-testid={`job-progress-${job.id}`} data-done={done}>
      {bar === null ? (
        <progress aria-label={`progress of ${job.id}`} />
      ) : (
        <progress aria-label={`progress of ${job.id}`} value={bar.value} max={bar.max} />
      )}
      <span className="progress-text">{text}</span>
    </td>
  );
}
