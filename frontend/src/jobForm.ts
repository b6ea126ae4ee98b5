// The job form's fields, defaults and checks: the same defaults as `idunno train` / `idunno
// serve` and the same limits the cluster checks (node/src/jobs/api.rs, serve_check.rs), so a
// mistake is shown beside its field before anything is sent; what only the cluster can tell
// (an unknown model, a split the dataset lacks) comes back from it and is put beside the
// field it names.
import type { JobSpecInput } from './api.ts';

/** The architectures `idunno train` knows (node/src/ml/arch.rs `ARCH_NAMES`). */
export const ARCHS = ['mlp', 'cnn', 'resnet'] as const;
/** Largest inference batch (bus-schemas `MAX_BATCH_QUERIES`). */
export const MAX_SERVE_BATCH = 4096;
/** The most workers one training job may have (bus-schemas `MAX_TRAIN_WORKERS`). */
export const MAX_TRAIN_WORKERS = 64;

/** The training form, as typed. */
export interface TrainFields {
  arch: string;
  dataset: string;
  name: string;
  epochs: string;
  batch: string;
  lr: string;
  limit: string;
  seed: string;
  /** Workers training at once (data-parallel). */
  workers: string;
}

/** The inference form, as typed. */
export interface ServeFields {
  model: string;
  /** '' : the newest. */
  version: string;
  /** '' : the model's own dataset. */
  dataset: string;
  split: string;
  batch: string;
  passes: string;
  continuous: boolean;
  weight: string;
}

/** `idunno train`'s defaults. */
export const TRAIN_DEFAULTS: TrainFields = {
  arch: 'cnn', dataset: 'fashion-mnist', name: '', epochs: '5', batch: '128', lr: '', limit: '', seed: '0',
  workers: '1',
};

/** `idunno serve`'s defaults (its batch size has none: it is required). */
export const SERVE_DEFAULTS: ServeFields = {
  model: '', version: '', dataset: '', split: 'test', batch: '', passes: '1', continuous: false, weight: '1',
};

/** Errors by field name; `form` for one no field owns. */
export type FieldErrors = Partial<Record<string, string>>;

/** A name the cluster takes for a model or dataset: what bus-schemas `validate_token` allows. */
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** Why `value` cannot name a `what` (a model, a dataset), or undefined. */
export function tokenError(what: string, value: string): string | undefined {
  if (value === '') return `give the ${what}`;
  if (!TOKEN.test(value)) return `a ${what} is 1 to 64 letters, digits, '-' or '_'`;
  return undefined;
}

/** An integer in [min, max] (`flag` names it as the CLI does), or why not. */
function integer(flag: string, text: string, min: number, max: number): [number | undefined, string | undefined] {
  const t = text.trim();
  if (t === '') return [undefined, `${flag} is required`];
  const n = Number(t);
  if (!Number.isInteger(n) || n < min || n > max) return [undefined, `${flag} must be between ${min} and ${max}, not ${t}`];
  return [n, undefined];
}

/** Checks the training form; answers the spec to send, or the errors to show. */
export function checkTrain(f: TrainFields): { spec?: JobSpecInput; errors: FieldErrors } {
  const errors: FieldErrors = {};
  if (!(ARCHS as readonly string[]).includes(f.arch)) errors.arch = `choose one of ${ARCHS.join(', ')}`;
  const dataset = tokenError('dataset', f.dataset);
  if (dataset) errors.dataset = dataset;
  const name = f.name.trim() === '' ? f.arch : f.name.trim();
  const nameError = f.name.trim() === '' ? undefined : tokenError('model name', name);
  if (nameError) errors.name = nameError;
  const [epochs, e1] = integer('--epochs', f.epochs, 1, 10_000);
  if (e1) errors.epochs = e1;
  const [batch, e2] = integer('--batch', f.batch, 1, 65_536);
  if (e2) errors.batch = e2;
  let lr: number | null = null;
  if (f.lr.trim() !== '') {
    lr = Number(f.lr);
    if (!(Number.isFinite(lr) && lr > 0 && lr <= 10)) errors.lr = `--lr must be in (0, 10], not ${f.lr.trim()}`;
  }
  let limit: number | null = null;
  if (f.limit.trim() !== '') {
    const [n, e] = integer('--limit', f.limit, 1, Number.MAX_SAFE_INTEGER);
    if (e) errors.limit = e.replace(/ and \d+,/, ' and 2^53,');
    limit = n ?? null;
  }
  const [seed, e3] = integer('--seed', f.seed, 0, Number.MAX_SAFE_INTEGER);
  if (e3) errors.seed = e3;
  const [workers, e4] = integer('--workers', f.workers, 1, MAX_TRAIN_WORKERS);
  if (e4) errors.workers = e4;
  else if (workers !== undefined && batch !== undefined && workers > batch) {
    errors.workers = `--workers ${workers} is more than the batch of ${batch}: each worker needs a share of every step`;
  }
  if (
    Object.keys(errors).length > 0 || epochs === undefined || batch === undefined || seed === undefined ||
    workers === undefined
  ) {
    return { errors };
  }
  return {
    spec: { kind: 'train', arch: f.arch, name, dataset: f.dataset, epochs, batch, lr, limit, seed, workers },
    errors,
  };
}

/** Checks the inference form; answers the spec to send, or the errors to show. */
export function checkServe(f: ServeFields): { spec?: JobSpecInput; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const model = tokenError('model', f.model);
  if (model) errors.model = model;
  if (f.dataset !== '') {
    const dataset = tokenError('dataset', f.dataset);
    if (dataset) errors.dataset = dataset;
  }
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(f.split)) errors.split = 'give the split (test, train, all, …)';
  const [batch, e1] = integer('the batch size', f.batch, 1, MAX_SERVE_BATCH);
  if (e1) errors.batch = e1;
  let passes: number | null = null;
  if (!f.continuous) {
    const [n, e] = integer('--passes', f.passes, 1, 1_000_000);
    if (e) errors.passes = e;
    passes = n ?? null;
  }
  const [weight, e2] = integer('--weight', f.weight, 1, 1000);
  if (e2) errors.weight = e2;
  const version = f.version === '' ? null : Number(f.version);
  if (Object.keys(errors).length > 0 || batch === undefined || weight === undefined) return { errors };
  return {
    spec: {
      kind: 'serve', model: f.model, model_version: version, dataset: f.dataset, split: f.split,
      batch, passes, weight,
    },
    errors,
  };
}

/** Flags the cluster's messages start with, and the field each belongs to. */
const FLAGS: Record<string, string> = {
  '--epochs': 'epochs', '--batch': 'batch', '--lr': 'lr', '--limit': 'limit', '--seed': 'seed',
  '--workers': 'workers',
  '--passes': 'passes', '--weight': 'weight', '--mean': 'mean', '--std': 'std',
  'the batch size': 'batch',
};

/**
 * The field a refusal of the cluster belongs to: by its `reason` (an unknown model or dataset)
 * or the flag its message names; `form` when none.
 */
export function fieldOfRefusal(kind: 'train' | 'serve', reason: string | null, message: string): string {
  if (reason === 'unknown_model') return kind === 'train' ? 'arch' : 'model';
  if (reason === 'unknown_dataset') return 'dataset';
  for (const [flag, field] of Object.entries(FLAGS)) {
    if (message.startsWith(flag)) return field;
  }
  if (/has no split/.test(message)) return 'split';
  if (/bad model name/.test(message)) return kind === 'train' ? 'name' : 'model';
  if (/dataset .* (has|cannot)|but dataset/.test(message)) return 'dataset';
  return 'form';
}
