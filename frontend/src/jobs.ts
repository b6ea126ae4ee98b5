// Figures derived from a job record, shared by the jobs table and the job page.
import type { JobRecord, JobSpec } from './api.ts';
import { formatCount, formatRate } from './format.ts';

export function isActive(job: JobRecord): boolean {
  return job.state === 'queued' || job.state === 'running';
}

/** The model a job trains, imports or serves. */
export function jobModel(spec: JobSpec): string {
  switch (spec.kind) {
    case 'train':
    case 'import':
      return spec.name;
    case 'serve':
      return spec.model_version === null ? spec.model : `${spec.model} v${spec.model_version}`;
  }
}

/** The dataset (and split, for inference). */
export function jobDataset(spec: JobSpec): string {
  if (spec.kind === 'serve') {
    const dataset = spec.dataset === '' ? '(model’s)' : spec.dataset;
    return `${dataset}/${spec.split}`;
  }
  return spec.dataset;
}

/** The batch size in force: an inference job's can change while it runs. */
export function jobBatch(job: JobRecord): number | null {
  if (job.serve) return job.serve.batch;
  return job.spec.kind === 'import' ? null : job.spec.batch;
}

export interface JobProgressFigures {
  /** Inference: queries answered; training: steps done over all epochs. */
  done: number;
  /** The `done` figure at completion; `null` when unknown or continuous. */
  max: number | null;
  /** Human text: `1,200 / 10,000 queries`, `epoch 2/5 · step 240/469`. */
  text: string;
  /** What the bar shows: the whole job, or the current pass of a continuous one. */
  bar: { value: number; max: number } | null;
}

export function jobProgress(job: JobRecord): JobProgressFigures {
  if (job.serve) {
    const { done, total, count } = job.serve;
    if (total === null) {
      const pass = count > 0 ? Math.floor(done / count) + 1 : null;
      const text = `${formatCount(done)} queries (continuous${pass === null ? '' : `, pass ${pass}`})`;
      const bar = count > 0 ? { value: done % count, max: count } : null;
      return { done, max: null, text, bar };
    }
    const text = `${formatCount(done)} / ${formatCount(total)} queries`;
    return { done, max: total, text, bar: { value: Math.min(done, total), max: total } };
  }
  const p = job.progress;
  if (p) {
    const done = p.epoch * p.steps + p.step;
    const max = p.epochs * p.steps;
    const epochShown = Math.min(p.epoch + 1, p.epochs);
    const text = `epoch ${epochShown}/${p.epochs} · step ${p.step}/${p.steps}`;
    if (max <= 0) return { done, max: null, text, bar: null };
    // A finished job's last report may stop short of the last step.
    const value = job.state === 'succeeded' ? max : Math.min(done, max);
    return { done, max, text, bar: { value, max } };
  }
  if (job.state === 'succeeded') return { done: 0, max: null, text: 'done', bar: { value: 1, max: 1 } };
  return { done: 0, max: null, text: job.state === 'queued' ? 'waiting' : '—', bar: null };
}

/** Query rate of an inference job, images/s of a training job. */
export function jobRate(job: JobRecord): string {
  if (job.serve) return job.state === 'running' ? formatRate(job.serve.rate) : '—';
  if (job.progress && job.state === 'running') return formatRate(job.progress.images_per_s, 'img/s');
  return '—';
}

/** Inference: correct / done; training: the test accuracy once done, else the running one. */
export function jobAccuracy(job: JobRecord): number | null {
  if (job.serve) {
    const { correct, done } = job.serve;
    return correct === null || done === 0 ? null : correct / done;
  }
  if (job.outcome && job.outcome.test_accuracy !== null) return job.outcome.test_accuracy;
  return job.progress ? job.progress.accuracy : null;
}

/** The workers a job runs on now. */
export function jobWorkers(job: JobRecord): string[] {
  if (job.serve) return job.serve.workers;
  const current = job.attempts[job.attempts.length - 1];
  return job.state === 'running' && current ? [current.worker] : [];
}

/** The figures of `serve.proc_ms` (a `ProcStats`), in the order shown. */
export const PROC_MS_LABELS = ['mean', 'std', 'median', 'p90', 'p95', 'p99'] as const;
