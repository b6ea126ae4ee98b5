import { Link, useParams } from 'react-router';
import type { JobRecord, JobSpec } from '../api.ts';
import { StateBadge } from '../components/Badge.tsx';
import { CancelJobButton } from '../components/CancelJobButton.tsx';
import { JobProgressBar } from '../components/JobProgress.tsx';
import { OutputsTable, ServeSection, TrainSection } from '../components/JobSections.tsx';
import { formatDateTime, formatPercent, formatSeconds } from '../format.ts';
import { isActive, jobAccuracy, jobRate, jobWorkers } from '../jobs.ts';
import { useJob } from '../hooks/useJob.ts';

export function JobPage() {
  const { id = '' } = useParams();
  const { data, error, loading, refresh } = useJob(id);

  return (
    <section>
      <p>
        <Link to="/jobs">← all jobs</Link>
      </p>
      {error && <p className="error">Could not load job {id}: {error}</p>}
      {loading && <p className="muted">loading…</p>}
      {data && (
        <>
          <h2 className="job-title">
            Job <span className="mono">{data.job.id}</span> <StateBadge state={data.job.state} />
          </h2>
          <CancelJobButton id={data.job.id} active={isActive(data.job)} onDone={refresh} />
          <Overview job={data.job} />
          {data.job.serve && <ServeSection serve={data.job.serve} />}
          {data.job.spec.kind !== 'serve' && <TrainSection job={data.job} />}
          {data.job.spec.kind === 'serve' && <OutputsTable outputs={data.outputs} />}
        </>
      )}
    </section>
  );
}

function specEntries(spec: JobSpec): [string, string][] {
  const show = (v: unknown): string =>
    v === null || v === '' ? '—' : Array.isArray(v) ? (v.length ? v.join(', ') : '—') : String(v);
  return Object.entries(spec).map(([k, v]) => [k, show(v)]);
}

function Overview({ job }: { job: JobRecord }) {
  const workers = jobWorkers(job);
  const rows: [string, string][] = [
    ['submitted', formatDateTime(job.submitted_ms)],
    ['finished', formatDateTime(job.finished_ms)],
    ['workers', workers.length ? workers.join(', ') : '—'],
    ['rate', jobRate(job)],
    ['accuracy', formatPercent(jobAccuracy(job))],
  ];
  return (
    <div className="columns">
      <div className="card">
        <h3>Specification</h3>
        <dl className="kv" data-testid="job-spec">
          {specEntries(job.spec).map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{v}</dd>
            </div>
          ))}
        </dl>
      </div>
      <div className="card">
        <h3>Status</h3>
        <JobProgressBar job={job} />
        <dl className="kv">
          {rows.map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{v}</dd>
            </div>
          ))}
        </dl>
        {job.outcome && (
          <dl className="kv" data-testid="job-outcome">
            <div>
              <dt>model</dt>
              <dd>
                {job.outcome.model_file} v{job.outcome.model_version}
              </dd>
            </div>
            <div>
              <dt>test accuracy</dt>
              <dd>{formatPercent(job.outcome.test_accuracy)}</dd>
            </div>
            <div>
              <dt>results</dt>
              <dd>{job.outcome.results_file ?? '—'}</dd>
            </div>
            <div>
              <dt>ran for</dt>
              <dd>{formatSeconds(job.outcome.seconds)}</dd>
            </div>
          </dl>
        )}
        {job.error && (
          <p className="error" data-testid="job-error">
            {job.error}
          </p>
        )}
      </div>
    </div>
  );
}
