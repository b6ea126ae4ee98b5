import { useState, type FormEvent } from 'react';
import type { Dataset } from '../api.ts';
import { ARCHS, checkTrain, TRAIN_DEFAULTS, type TrainFields } from '../jobForm.ts';
import { useJobSubmit } from '../hooks/useJobSubmit.ts';
import { Field, textInput } from './Field.tsx';
import { SubmitRow } from './SubmitRow.tsx';

/** The form of `idunno train`: its defaults, its checks beside each field. */
export function TrainForm({ datasets }: { datasets: readonly Dataset[] }) {
  const [f, setF] = useState<TrainFields>(TRAIN_DEFAULTS);
  const [tried, setTried] = useState(false);
  const { busy, refusal, submit, clear } = useJobSubmit('train');
  const { spec, errors } = checkTrain(f);
  const shown = { ...(tried ? errors : {}), ...refusal };
  const set = (k: keyof TrainFields) => (v: string) => {
    setF((old) => ({ ...old, [k]: v }));
    clear(k);
  };
  const onSubmit = (e: FormEvent): void => {
    e.preventDefault();
    setTried(true);
    if (spec && !busy) void submit(spec);
  };
  // Datasets that can be trained on: labelled, with a train split.
  const trainable = datasets.filter((d) => d.manifest.classes.length > 0 && 'train' in d.manifest.splits);
  const names = trainable.map((d) => d.manifest.name);
  if (f.dataset !== '' && !names.includes(f.dataset)) names.push(f.dataset);

  return (
    <form className="grid card" noValidate onSubmit={onSubmit} aria-label="train a model">
      <Field label="Architecture" name="arch" error={shown.arch}>
        <select name="arch" value={f.arch} onChange={(e) => set('arch')(e.target.value)}>
          {ARCHS.map((a) => (
            <option key={a}>{a}</option>
          ))}
        </select>
      </Field>
      <Field label="Dataset" name="dataset" error={shown.dataset} hint="labelled, with a train split">
        <select name="dataset" value={f.dataset} onChange={(e) => set('dataset')(e.target.value)}>
          {names.map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
      </Field>
      <Field label="Model name" name="name" error={shown.name} hint="stored as models/<name>">
        <input {...textInput('name', f.name, set('name'), shown.name, { placeholder: f.arch })} />
      </Field>
      <Field label="Epochs" name="epochs" error={shown.epochs}>
        <input {...textInput('epochs', f.epochs, set('epochs'), shown.epochs, { numeric: true })} />
      </Field>
      <Field label="Batch" name="batch" error={shown.batch} hint="samples per step">
        <input {...textInput('batch', f.batch, set('batch'), shown.batch, { numeric: true })} />
      </Field>
      <Field label="Learning rate" name="lr" error={shown.lr}>
        <input {...textInput('lr', f.lr, set('lr'), shown.lr, { numeric: true, placeholder: "the architecture's" })} />
      </Field>
      <Field label="Limit" name="limit" error={shown.limit} hint="train on at most this many samples">
        <input {...textInput('limit', f.limit, set('limit'), shown.limit, { numeric: true, placeholder: 'all' })} />
      </Field>
      <Field label="Seed" name="seed" error={shown.seed}>
        <input {...textInput('seed', f.seed, set('seed'), shown.seed, { numeric: true })} />
      </Field>
      <Field label="Workers" name="workers" error={shown.workers} hint="train on this many workers at once">
        <input {...textInput('workers', f.workers, set('workers'), shown.workers, { numeric: true })} />
      </Field>
      <SubmitRow busy={busy} label="Train" error={shown.form} command={spec ? trainCommand(spec) : null} />
    </form>
  );
}

/** The `idunno train` command line of a spec. */
function trainCommand(spec: ReturnType<typeof checkTrain>['spec']): string | null {
  if (!spec || spec.kind !== 'train') return null;
  const parts = ['idunno train', spec.arch, spec.dataset];
  if (spec.name !== spec.arch) parts.push('--name', spec.name);
  if (spec.epochs !== 5) parts.push('--epochs', String(spec.epochs));
  if (spec.batch !== 128) parts.push('--batch', String(spec.batch));
  if (spec.lr !== null && spec.lr !== undefined) parts.push('--lr', String(spec.lr));
  if (spec.limit !== null && spec.limit !== undefined) parts.push('--limit', String(spec.limit));
  if (spec.seed) parts.push('--seed', String(spec.seed));
  if (spec.workers !== undefined && spec.workers !== 1) parts.push('--workers', String(spec.workers));
  return parts.join(' ');
}
