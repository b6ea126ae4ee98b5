// Schemas of jobs: specs, records, progress, inference state and outputs (docs/api.md).
import { z } from 'zod';
import { nullableNumber, nullableString } from './common.ts';

export const trainSpecSchema = z.object({
  kind: z.literal('train'),
  arch: z.string(),
  name: z.string(),
  dataset: z.string(),
  epochs: z.number(),
  batch: z.number(),
  lr: nullableNumber,
  limit: nullableNumber,
  seed: z.number().default(0),
  /** Workers training at once (data-parallel); 1: one worker. */
  workers: z.number().default(1),
});
export const importSpecSchema = z.object({
  kind: z.literal('import'),
  name: z.string(),
  dataset: z.string(),
  upload: z.string(),
  mean: z.array(z.number()).default([]),
  std: z.array(z.number()).default([]),
});
export const serveSpecSchema = z.object({
  kind: z.literal('serve'),
  model: z.string(),
  model_version: nullableNumber,
  /** Empty: the model's own dataset. */
  dataset: z.string().default(''),
  split: z.string(),
  batch: z.number(),
  /** `null`: continuous until cancelled. */
  passes: nullableNumber,
  weight: z.number().default(1),
});
export const jobSpecSchema = z.discriminatedUnion('kind', [
  trainSpecSchema,
  importSpecSchema,
  serveSpecSchema,
]);
export type TrainSpec = z.infer<typeof trainSpecSchema>;
export type ImportSpec = z.infer<typeof importSpecSchema>;
export type ServeSpec = z.infer<typeof serveSpecSchema>;
export type JobSpec = z.infer<typeof jobSpecSchema>;
/** What `submitJob` takes: the optional fields of a spec may be left out. */
export type JobSpecInput = z.input<typeof jobSpecSchema>;

export const jobStateSchema = z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']);
export type JobState = z.infer<typeof jobStateSchema>;

/** A data-parallel attempt's workers (bus-schemas `Group`). */
export const groupSchema = z.object({
  /** Bumped at every change of the members. */
  generation: z.number(),
  /** In rank order; rank 0 is the attempt's `worker`. */
  members: z.array(z.object({ worker: z.string(), joined_ms: z.number().default(0) })),
  /** Workers that left the group, oldest first. */
  lost: z
    .array(
      z.object({
        worker: z.string(),
        reason: z.string(),
        died: z.boolean().default(false),
        generation: z.number().default(0),
        at_ms: z.number().default(0),
      }),
    )
    .default([]),
});
export type Group = z.infer<typeof groupSchema>;

export const attemptSchema = z.object({
  attempt: z.number(),
  worker: z.string(),
  assigned_ms: z.number(),
  /** Set when the worker starts (0: from scratch). */
  resumed_at_epoch: nullableNumber,
  group: groupSchema.nullable().default(null),
});
export type Attempt = z.infer<typeof attemptSchema>;

export const progressSchema = z.object({
  job_id: z.string().default(''),
  worker: z.string().default(''),
  attempt: z.number().default(0),
  /** The epoch in progress, from 0. */
  epoch: z.number(),
  epochs: z.number(),
  /** Steps done in this epoch. */
  step: z.number(),
  /** Steps per epoch. */
  steps: z.number(),
  loss: z.number().default(0),
  /** Training accuracy over the epoch so far, 0–1. */
  accuracy: z.number().default(0),
  images_per_s: z.number().default(0),
  resumed_at_epoch: z.number().default(0),
  /** Workers in the step just done (data-parallel; 1 otherwise; 0 from older nodes). */
  workers: z.number().default(0),
  /** Steps done since the job began. */
  global_step: z.number().default(0),
  steps_per_s: z.number().default(0),
  /** Share of step time in the all-reduce, 0–1. */
  allreduce_share: z.number().default(0),
  group_generation: z.number().default(0),
});
export type Progress = z.infer<typeof progressSchema>;

/** A batch cut and not answered yet (bus-schemas `PendingBatch`): `[batch_id, first_query, len]`
 * on the wire, read by name here. */
export const pendingBatchSchema = z
  .tuple([z.number(), z.number(), z.number()])
  .transform(([batch_id, first_query, len]) => ({ batch_id, first_query, len }));
export type PendingBatch = z.infer<typeof pendingBatchSchema>;

/** Processing time per batch, ms (bus-schemas `ProcStats`): `[mean, std, median, p90, p95,
 * p99]` on the wire, `[]` before a batch was timed (read as null). */
export const procStatsSchema = z
  .array(z.number())
  .default([])
  .transform((v) =>
    v.length >= 6
      ? { mean: v[0]!, std: v[1]!, median: v[2]!, p90: v[3]!, p95: v[4]!, p99: v[5]! }
      : null,
  );
export type ProcStats = NonNullable<z.infer<typeof procStatsSchema>>;

export const serveStateSchema = z.object({
  model_version: z.number(),
  /** Samples in the split. */
  count: z.number(),
  /** Queries in all; `null`: continuous. */
  total: nullableNumber,
  batch: z.number(),
  done: z.number(),
  /** `null`: unlabelled split. */
  correct: nullableNumber,
  workers: z.array(z.string()).default([]),
  by_worker: z.record(z.string(), z.number()).default({}),
  /** Queries per second over the last 10 s. */
  rate: z.number().default(0),
  /** Per-batch processing time, ms: mean, std, median, p90, p95, p99 (empty before any batch). */
  proc_ms: procStatsSchema,
  /** `[batch, first_query, len]` of the batches in flight. */
  pending: z.array(pendingBatchSchema).default([]),
});
export type ServeState = z.infer<typeof serveStateSchema>;

export const outcomeSchema = z.object({
  model_file: z.string(),
  model_version: z.number(),
  test_accuracy: nullableNumber,
  results_file: nullableString,
  seconds: z.number(),
});
export type Outcome = z.infer<typeof outcomeSchema>;

export const jobRecordSchema = z.object({
  id: z.string(),
  spec: jobSpecSchema,
  state: jobStateSchema,
  submitted_ms: z.number(),
  finished_ms: nullableNumber,
  attempts: z.array(attemptSchema).default([]),
  progress: progressSchema.nullable().default(null),
  serve: serveStateSchema.nullable().default(null),
  outcome: outcomeSchema.nullable().default(null),
  error: nullableString,
});
export type JobRecord = z.infer<typeof jobRecordSchema>;

/** A page of jobs; `next` is the cursor of the next page (null on the last). */
export const jobsResponseSchema = z.object({
  jobs: z.array(jobRecordSchema),
  next: z.string().nullable().default(null),
});
export type JobsResponse = z.infer<typeof jobsResponseSchema>;

export const queryResultSchema = z.object({
  query_id: z.number(),
  sample: z.number(),
  predicted: z.number(),
  class_name: z.string(),
  score: z.number(),
  /** The true class; absent/`null` when the split is unlabelled. */
  label: nullableNumber,
});
export type QueryResult = z.infer<typeof queryResultSchema>;

export const jobDetailSchema = z.object({
  job: jobRecordSchema,
  outputs: z.array(queryResultSchema).default([]),
});
export type JobDetail = z.infer<typeof jobDetailSchema>;
