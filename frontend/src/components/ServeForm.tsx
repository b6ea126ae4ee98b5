import { useState, type FormEvent } from 'react';
import type { Dataset, FileInfo } from '../api.ts';
import { checkServe, SERVE_DEFAULTS, type ServeFields } from '../jobForm.ts';
import { formatPercent } from '../format.ts';
import { useJobSubmit } from '../hooks/useJobSubmit.ts';
import { Field, textInput } from './Field.tsx';
import { SubmitRow } from './SubmitRow.tsx';

/** The form of `idunno serve`: a model (and version) over a dataset split, as an inference
 * job sharing the workers fairly with the others. */
export function ServeForm({
  models,
  datasets,
  initial,
}: {
  models: readonly FileInfo[];
  datasets: readonly Dataset[];
  initial?: Partial<ServeFields>;
}) {
  const [f, setF] = useState<ServeFields>({ ...SERVE_DEFAULTS, ...initial });
  const [tried, setTried] = useState(false);
  const { busy, refusal, submit, clear } = useJobSubmit('serve');
  const { spec, errors } = checkServe(f);
  const shown = { ...(tried ? errors : {}), ...refusal };
  const set = <K extends keyof ServeFields>(k: K) => (v: ServeFields[K]) => {
    setF((old) => ({ ...old, [k]: v, ...(k === 'model' ? { version: '' } : {}) }));
    clear(k);
  };
  const onSubmit = (e: FormEvent): void => {
    e.preventDefault();
    setTried(true);
    if (spec && !busy) void submit(spec);
  };

  const names = models.map((m) => m.name.replace(/^models\//, ''));
  if (f.model !== '' && !names.includes(f.model)) names.push(f.model);
  const versions = [...(models.find((m) => m.name === `models/${f.model}`)?.versions ?? [])].reverse();
  const modelDataset = versions[0]?.attrs.dataset ?? '';
  const dataset = datasets.find((d) => d.manifest.name === (f.dataset || modelDataset));
  const splits = dataset ? Object.keys(dataset.manifest.splits) : [];

  return (
    <form className="grid card" noValidate onSubmit={onSubmit} aria-label="run inference">
      <Field label="Model" name="model" error={shown.model}>
        <select name="model" value={f.model} onChange={(e) => set('model')(e.target.value)}>
          <option value="">choose a model</option>
          {names.map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
      </Field>
      <Field label="Version" name="version" error={shown.version}>
        <select name="version" value={f.version} onChange={(e) => set('version')(e.target.value)}>
          <option value="">the newest{versions[0] ? ` (v${versions[0].version})` : ''}</option>
          {versions.map((v) => (
            <option key={v.version} value={String(v.version)}>
              v{v.version}
              {v.attrs.test_accuracy ? ` — ${formatPercent(Number(v.attrs.test_accuracy))}` : ''}
            </option>
          ))}
        </select>
      </Field>
      <Field label="Dataset" name="dataset" error={shown.dataset}>
        <select name="dataset" value={f.dataset} onChange={(e) => set('dataset')(e.target.value)}>
          <option value="">the model's{modelDataset ? ` (${modelDataset})` : ''}</option>
          {datasets.map((d) => (
            <option key={d.manifest.name}>{d.manifest.name}</option>
          ))}
        </select>
      </Field>
      <Field label="Split" name="split" error={shown.split}>
        {splits.length > 0 && (splits.includes(f.split) || f.split === '') ? (
          <select name="split" value={f.split} onChange={(e) => set('split')(e.target.value)}>
            {splits.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        ) : (
          <input {...textInput('split', f.split, set('split'), shown.split)} />
        )}
      </Field>
      <Field label="Batch size" name="batch" error={shown.batch} hint="queries per batch (required)">
        <input {...textInput('batch', f.batch, set('batch'), shown.batch, { numeric: true })} />
      </Field>
      <Field label="Passes" name="passes" error={shown.passes} hint="over the split">
        <input
          {...textInput('passes', f.continuous ? '' : f.passes, set('passes'), shown.passes, { numeric: true })}
          disabled={f.continuous}
        />
      </Field>
      <label className="field check">
        <input
          type="checkbox"
          name="continuous"
          checked={f.continuous}
          onChange={(e) => set('continuous')(e.target.checked)}
        />
        run until cancelled
      </label>
      <Field label="Weight" name="weight" error={shown.weight} hint="a share of the workers' time">
        <input {...textInput('weight', f.weight, set('weight'), shown.weight, { numeric: true })} />
      </Field>
      <SubmitRow busy={busy} label="Serve" error={shown.form} command={serveCommand(spec)} />
    </form>
  );
}

/** The `idunno serve` command line of a spec. */
function serveCommand(spec: ReturnType<typeof checkServe>['spec']): string | null {
  if (!spec || spec.kind !== 'serve') return null;
  const parts = ['idunno serve', spec.model, String(spec.batch)];
  if (spec.model_version !== null && spec.model_version !== undefined) parts.push('--model-version', String(spec.model_version));
  if (spec.dataset) parts.push('--dataset', spec.dataset);
  if (spec.split !== 'test') parts.push('--split', spec.split);
  if (spec.passes === null) parts.push('--continuous');
  else if (spec.passes !== 1) parts.push('--passes', String(spec.passes));
  if (spec.weight !== 1) parts.push('--weight', String(spec.weight));
  return parts.join(' ');
}
