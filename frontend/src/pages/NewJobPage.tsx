import { Link, useSearchParams } from 'react-router';
import { ServeForm } from '../components/ServeForm.tsx';
import { TrainForm } from '../components/TrainForm.tsx';
import { useDatasets } from '../hooks/useDatasets.ts';
import { useModels } from '../hooks/useModels.ts';

/** `/jobs/new?kind=train|serve&model=&version=`: submits a training or an inference job. */
export function NewJobPage() {
  const [params, setParams] = useSearchParams();
  const kind = params.get('kind') === 'train' ? 'train' : 'serve';
  const models = useModels();
  const datasets = useDatasets();
  const choose = (k: 'train' | 'serve') => () => setParams({ kind: k });
  const loading = models.loading || datasets.loading;
  return (
    <section>
      <p>
        <Link to="/jobs">← all jobs</Link>
      </p>
      <h2>New job</h2>
      <div className="toolbar">
        <span className="segmented" role="group" aria-label="kind of job">
          <button type="button" aria-pressed={kind === 'serve'} onClick={choose('serve')}>
            Inference
          </button>
          <button type="button" aria-pressed={kind === 'train'} onClick={choose('train')}>
            Training
          </button>
        </span>
        <span className="muted">
          {kind === 'serve'
            ? 'Runs a model over a dataset split, sharing the workers fairly with the other inference jobs.'
            : 'Trains a model on one worker; a worker lost resumes elsewhere from the last epoch.'}
        </span>
      </div>
      {models.error && <p className="error">Could not list the models: {models.error}</p>}
      {datasets.error && <p className="error">Could not list the datasets: {datasets.error}</p>}
      {loading ? (
        <p className="muted">loading…</p>
      ) : kind === 'serve' ? (
        <ServeForm
          key={`serve-${params.get('model') ?? ''}`}
          models={models.data?.models ?? []}
          datasets={datasets.data?.datasets ?? []}
          initial={{ model: params.get('model') ?? '', version: params.get('version') ?? '' }}
        />
      ) : (
        <TrainForm datasets={datasets.data?.datasets ?? []} />
      )}
    </section>
  );
}
