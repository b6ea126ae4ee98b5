import { Link } from 'react-router';
import type { JobRecord } from '../api.ts';
import { formatPercent } from '../format.ts';
import { jobAccuracy, jobBatch, jobDataset, jobModel, jobRate, jobWorkers } from '../jobs.ts';
import { StateBadge } from './Badge.tsx';
import { JobProgressCell } from './JobProgress.tsx';
import { DataTable } from './DataTable.tsx';

const COLUMNS = [
  'id',
  'kind',
  'model',
  'dataset',
  'batch size',
  'state',
  'progress',
  'rate',
  'accuracy',
  'workers',
];

export function JobsTable({ jobs, empty }: { jobs: readonly JobRecord[]; empty: string }) {
  return (
    <DataTable kind="jobs" columns={COLUMNS} empty={jobs.length === 0 ? empty : null}>
      {jobs.map((job) => <JobRow key={job.id} job={job} />)}
    </DataTable>
  );
}

function JobRow({ job }: { job: JobRecord }) {
  const workers = jobWorkers(job);
  return (
    <tr data-testid={`job-row-${job.id}`} data-state={job.state}>
      <td className="mono">
        <Link to={`/jobs/${encodeURIComponent(job.id)}`}>{job.id}</Link>
      </td>
      <td>{job.spec.kind}</td>
      <td>{jobModel(job.spec)}</td>
      <td>{jobDataset(job.spec)}</td>
      <td className="num">{jobBatch(job) ?? '—'}</td>
      <td>
        <StateBadge state={job.state} />
      </td>
      <JobProgressCell job={job} />
      <td className="num">{jobRate(job)}</td>
      <td className="num">{formatPercent(jobAccuracy(job))}</td>
      <td className="mono">{workers.length > 0 ? workers.join(', ') : '—'}</td>
    </tr>
  );
}
