// The parts of the job page that depend on the job's kind.
import type { JobRecord, QueryResult, ServeState } from '../api.ts';
import { formatCount, formatDateTime, formatMs, formatPercent, formatRate } from '../format.ts';
import { PROC_MS_LABELS } from '../jobs.ts';
import { DataTable } from './DataTable.tsx';

export function ServeSection({ serve }: { serve: ServeState }) {
  const workers = Object.entries(serve.by_worker).sort(([a], [b]) => a.localeCompare(b));
  return (
    <div className="columns">
      <div className="card">
        <h3>Processing time per batch</h3>
        <table className="data compact" data-testid="proc-ms">
          <thead>
            <tr>
              {PROC_MS_LABELS.map((l) => (
                <th key={l}>{l}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            <tr>
              {PROC_MS_LABELS.map((l) => (
                <td key={l} className="num">
                  {formatMs(serve.proc_ms?.[l])}
                </td>
              ))}
            </tr>
          </tbody>
        </table>
        <p className="muted">
          {formatRate(serve.rate)} · model v{serve.model_version} · batch {serve.batch} ·{' '}
          {serve.pending.length} batch{serve.pending.length === 1 ? '' : 'es'} in flight
        </p>
      </div>
      <div className="card">
        <h3>Queries per worker</h3>
        <DataTable
          kind="compact"
          testId="by-worker"
          columns={['worker', 'queries', 'share']}
          empty={workers.length === 0 ? 'no query answered yet' : null}
        >
          {workers.map(([node, n]) => (
            <tr key={node}>
              <td className="mono">
                {node}
                {serve.workers.includes(node) ? '' : ' (not serving now)'}
              </td>
              <td className="num">{formatCount(n)}</td>
              <td className="num">{formatPercent(serve.done > 0 ? n / serve.done : null)}</td>
            </tr>
          ))}
        </DataTable>
      </div>
    </div>
  );
}

export function TrainSection({ job }: { job: JobRecord }) {
  const p = job.progress;
  return (
    <div className="columns">
      <div className="card">
        <h3>Training progress</h3>
        {p ? (
          <dl className="kv" data-testid="train-progress">
            {(
              [
                ['epoch', `${Math.min(p.epoch + 1, p.epochs)} / ${p.epochs}`],
                ['step', `${p.step} / ${p.steps}`],
                ['loss', p.loss.toFixed(4)],
                ['accuracy', formatPercent(p.accuracy)],
                ['images/s', formatCount(p.images_per_s)],
                ...(p.workers > 1
                  ? ([
                      ['workers', String(p.workers)],
                      ['steps/s', p.steps_per_s.toFixed(1)],
                      ['all-reduce share', formatPercent(p.allreduce_share)],
                      ['group generation', String(p.group_generation)],
                    ] as const)
                  : []),
                ['resumed at epoch', String(p.resumed_at_epoch)],
                ['worker', p.worker || '—'],
              ] as const
            ).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{v}</dd>
              </div>
            ))}
          </dl>
        ) : (
          <p className="muted">no progress reported yet</p>
        )}
      </div>
      <div className="card">
        <h3>Attempts</h3>
        <DataTable
          kind="compact"
          testId="attempts"
          columns={['attempt', 'worker', 'assigned', 'resumed at epoch']}
          empty={job.attempts.length === 0 ? 'not assigned yet' : null}
        >
          {job.attempts.map((a) => (
            <tr key={a.attempt}>
              <td className="num">{a.attempt}</td>
              <td className="mono">
                {a.group ? a.group.members.map((m) => m.worker).join(', ') || '—' : a.worker}
              </td>
              <td>{formatDateTime(a.assigned_ms)}</td>
              <td className="num">{a.resumed_at_epoch ?? '—'}</td>
            </tr>
          ))}
        </DataTable>
      </div>
    </div>
  );
}

/** The newest results of an inference job, newest first. */
export function OutputsTable({ outputs }: { outputs: readonly QueryResult[] }) {
  // Labels are class indices: name them from the predictions seen.
  const names = new Map(outputs.map((o) => [o.predicted, o.class_name]));
  const rows = [...outputs].reverse();
  return (
    <div className="card">
      <h3>Recent outputs</h3>
      <DataTable
        kind="compact"
        testId="outputs"
        columns={['query', 'sample', 'predicted', 'score', 'label', 'correct']}
        empty={rows.length === 0 ? 'no output yet' : null}
      >
        {rows.map((o) => {
          const correct = o.label === null ? null : o.label === o.predicted;
          return (
            <tr key={o.query_id} data-testid={`output-${o.query_id}`}>
              <td className="num">{o.query_id}</td>
              <td className="num">{o.sample}</td>
              <td>{o.class_name}</td>
              <td className="num">{o.score.toFixed(3)}</td>
              <td>{o.label === null ? '—' : (names.get(o.label) ?? String(o.label))}</td>
              <td className={correct === null ? '' : correct ? 'ok' : 'error'}>
                {correct === null ? '—' : correct ? '✓' : '✗'}
              </td>
            </tr>
          );
        })}
      </DataTable>
    </div>
  );
}
