import { Link } from 'react-router';
import type { Dataset, FileInfo } from '../api.ts';
import { UploadDatasetForm } from '../components/UploadDatasetForm.tsx';
import { UploadModelForm } from '../components/UploadModelForm.tsx';
import { formatBytes, formatCount, formatPercent, formatShape } from '../format.ts';
import { useDatasets } from '../hooks/useDatasets.ts';
import { useModels } from '../hooks/useModels.ts';
import { DataTable } from '../components/DataTable.tsx';

export function ModelsPage() {
  const models = useModels();
  const datasets = useDatasets();
  return (
    <>
      <section>
        <h2>Models</h2>
        {models.error && <p className="error">Could not list the models: {models.error}</p>}
        {models.loading ? <p className="muted">loading…</p> : <ModelsTable models={models.data?.models ?? []} />}
      </section>
      <section>
        <h2>Datasets</h2>
        {datasets.error && <p className="error">Could not list the datasets: {datasets.error}</p>}
        {datasets.loading ? (
          <p className="muted">loading…</p>
        ) : (
          <DatasetsTable datasets={datasets.data?.datasets ?? []} />
        )}
      </section>
      <section>
        <h2>Upload a model</h2>
        <p className="muted">
          A TorchScript file exported from PyTorch; it takes float32 N×C×H×W pixels scaled to [0, 1], then (x − mean) / std,
          and returns N×classes logits. An import job stores it and tests it on the dataset's test split.
        </p>
        {datasets.data && <UploadModelForm datasets={datasets.data.datasets} />}
      </section>
      <section>
        <h2>Upload a dataset</h2>
        <p className="muted">A folder: train|test/&lt;class&gt;/*.png|jpg, a folder of unlabelled images, or MNIST-IDX files.</p>
        <UploadDatasetForm onDone={datasets.refresh} />
      </section>
    </>
  );
}

const MODEL_COLUMNS = ['name', 'version', 'arch', 'dataset', 'input', 'params', 'epochs', 'test accuracy', 'job'];

function number(text: string | undefined): number | null {
  if (text === undefined || text.trim() === '') return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

function ModelsTable({ models }: { models: readonly FileInfo[] }) {
  // One row per kept version, newest first, as `idunno models` prints them.
  const rows = models.flatMap((f) =>
    [...f.versions].reverse().map((v) => ({ name: f.name.replace(/^models\//, ''), v })),
  );
  return (
    <DataTable kind="models" columns={MODEL_COLUMNS} empty={rows.length === 0 ? 'no models' : null}>
      {rows.map(({ name, v }) => {
        const a = v.attrs;
        const params = number(a.params);
        return (
          <tr key={`${name}/${v.version}`} data-testid={`model-row-${name}-v${v.version}`}>
            <td className="mono">
              <Link to={`/models/${encodeURIComponent(name)}`}>{name}</Link>
            </td>
            <td className="num">{v.version}</td>
            <td>{a.arch || '—'}</td>
            <td>{a.dataset || '—'}</td>
            <td>{a.input ? formatShape(a.input) : '—'}</td>
            <td className="num">{params === null ? (a.params ?? '—') : formatCount(params)}</td>
            <td className="num">{a.epochs || '—'}</td>
            <td className="num">{formatPercent(number(a.test_accuracy))}</td>
            <td className="mono">
              {a.job ? <Link to={`/jobs/${encodeURIComponent(a.job)}`}>{a.job}</Link> : '—'}
            </td>
          </tr>
        );
      })}
    </DataTable>
  );
}

const DATASET_COLUMNS = ['name', 'source', 'splits', 'classes', 'input', 'size'];

function DatasetsTable({ datasets }: { datasets: readonly Dataset[] }) {
  return (
    <DataTable
      kind="datasets"
      columns={DATASET_COLUMNS}
      empty={datasets.length === 0 ? 'no datasets' : null}
    >
      {datasets.map(({ manifest: m, bytes }) => (
        <tr key={m.name} data-testid={`dataset-row-${m.name}`}>
          <td className="mono">{m.name}</td>
          <td>{m.source}</td>
          <td>
            {Object.entries(m.splits)
              .map(([split, info]) => `${split} ${formatCount(info.count)}`)
              .join(', ')}
          </td>
          <td className="num">{m.classes.length > 0 ? m.classes.length : '—'}</td>
          <td>{formatShape(m.shape)}</td>
          <td className="num">{formatBytes(bytes)}</td>
        </tr>
      ))}
    </DataTable>
  );
}
