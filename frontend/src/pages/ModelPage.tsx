import { Link, useParams } from 'react-router';
import type { VersionInfo } from '../api.ts';
import { DataTable } from '../components/DataTable.tsx';
import { formatBytes, formatDateTime, formatPercent, formatShape } from '../format.ts';
import { useModels } from '../hooks/useModels.ts';

const COLUMNS = ['version', 'created', 'size', 'arch', 'dataset', 'input', 'epochs', 'test accuracy', 'change', 'job', 'replicas', ''];

/** `/models/:name`: a model's kept versions, newest first, with their test accuracy. */
export function ModelPage() {
  const { name = '' } = useParams();
  const models = useModels();
  const model = models.data?.models.find((m) => m.name === `models/${name}`);
  const versions = [...(model?.versions ?? [])].reverse();
  const accuracy = (v: VersionInfo | undefined): number | null => {
    const a = v?.attrs.test_accuracy;
    return a === undefined || a === '' || !Number.isFinite(Number(a)) ? null : Number(a);
  };
  const best = versions.reduce<VersionInfo | undefined>(
    (b, v) => ((accuracy(v) ?? -1) > (accuracy(b) ?? -1) ? v : b),
    undefined,
  );

  return (
    <section>
      <p>
        <Link to="/models">← all models</Link>
      </p>
      <h2 className="job-title">
        Model <span className="mono">{name}</span>
      </h2>
      {models.error && <p className="error">Could not list the models: {models.error}</p>}
      {models.loading && <p className="muted">loading…</p>}
      {!models.loading && !model && !models.error && <p className="error">No model {name} (see the Models page).</p>}
      {model && (
        <>
          <p className="toolbar">
            <Link className="button primary" to={`/jobs/new?kind=serve&model=${encodeURIComponent(name)}`}>
              Serve the newest version
            </Link>
            <span className="muted" data-testid="model-summary">
              {versions.length} version{versions.length === 1 ? '' : 's'} kept
              {best && accuracy(best) !== null && `; the best is v${best.version} at ${formatPercent(accuracy(best))}`}
            </span>
          </p>
          <DataTable kind="versions" columns={COLUMNS} empty={versions.length === 0 ? 'no versions' : null}>
            {versions.map((v, i) => {
              const a = accuracy(v);
              const before = accuracy(versions[i + 1]);
              const change = a !== null && before !== null ? (a - before) * 100 : null;
              return (
                <tr key={v.version} data-testid={`version-row-${v.version}`}>
                  <td className="num">
                    v{v.version}
                    {model?.pinned.includes(v.version) && (
                      <span className="muted" title="a model alias or rollout names it: never pruned"> pinned</span>
                    )}
                  </td>
                  <td>{formatDateTime(v.created_ms || null)}</td>
                  <td className="num">{formatBytes(v.size)}</td>
                  <td>{v.attrs.arch || '—'}</td>
                  <td>{v.attrs.dataset || '—'}</td>
                  <td>{v.attrs.input ? formatShape(v.attrs.input) : '—'}</td>
                  <td className="num">{v.attrs.epochs || '—'}</td>
                  <td className="num">{formatPercent(a)}</td>
                  <td className="num">{change === null ? '—' : `${change >= 0 ? '+' : '−'}${Math.abs(change).toFixed(2)} pt`}</td>
                  <td className="mono">
                    {v.attrs.job ? <Link to={`/jobs/${encodeURIComponent(v.attrs.job)}`}>{v.attrs.job}</Link> : '—'}
                  </td>
                  <td className="mono">{v.replicas.join(', ') || '—'}</td>
                  <td>
                    <Link to={`/jobs/new?kind=serve&model=${encodeURIComponent(name)}&version=${v.version}`}>serve</Link>
                  </td>
                </tr>
              );
            })}
          </DataTable>
        </>
      )}
    </section>
  );
}
