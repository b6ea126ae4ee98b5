// Schemas of the cluster's members, statistics, live events and login state (docs/api.md).
import { z } from 'zod';
import { nullableNumber, nullableString } from './common.ts';
import { jobRecordSchema } from './jobs.ts';

export const memberStateSchema = z.enum(['alive', 'suspect', 'failed', 'left']);
export type MemberState = z.infer<typeof memberStateSchema>;

export const memberSchema = z.object({
  id: z.string(),
  /** Start time of this incarnation of the process, ms since the epoch. */
  generation: z.number(),
  incarnation: z.number(),
  state: memberStateSchema,
  host: z.string().default(''),
  /** `host:port` of the member's HTTP server (dashboard), if known. */
  http: nullableString,
  /** Milliseconds since the answering node last heard from this member. */
  last_heard_ms: nullableNumber,
});
export type Member = z.infer<typeof memberSchema>;

export const membersResponseSchema = z.object({
  node: z.string(),
  coordinator: nullableString,
  members: z.array(memberSchema),
});
export type MembersResponse = z.infer<typeof membersResponseSchema>;

/** A node's resources at one moment (bus-schemas `NodeResources`). */
export const resourcesSchema = z.object({
  /** CPU used over the last 5 s, in cores (1: one core busy). */
  cpu_cores: z.number(),
  cpus: z.number(),
  rss_bytes: z.number(),
  /** The data directory's file system; 0 when unknown. */
  disk_free_bytes: z.number(),
  disk_total_bytes: z.number(),
  tch_threads: z.number(),
  device: z.string(),
});
export type Resources = z.infer<typeof resourcesSchema>;

export const workerSchema = memberSchema.extend({
  /** This member holds the coordinator lease. */
  coordinator: z.boolean().default(false),
  /** Id of the training or import job it runs. */
  training: nullableString,
  /** Ids of the inference jobs it takes batches of. */
  serving: z.array(z.string()).default([]),
  /** Models its inference engine holds in memory (`"cnn v2"`). */
  models: z.array(z.string()).default([]),
  /** Queries it answered, over every inference job on record. */
  queries: z.number().default(0),
  /** Its CPU, memory, disk, libtorch threads and device; null when it did not answer. */
  resources: resourcesSchema.nullable().default(null),
});
export type Worker = z.infer<typeof workerSchema>;

export const workersResponseSchema = z.object({
  node: z.string(),
  coordinator: nullableString,
  workers: z.array(workerSchema),
});
export type WorkersResponse = z.infer<typeof workersResponseSchema>;

export const sampleJobSchema = z.object({
  id: z.string(),
  model: z.string().default(''),
  rate: z.number().default(0),
  done: z.number().default(0),
  p50_ms: nullableNumber,
  p90_ms: nullableNumber,
  p99_ms: nullableNumber,
  pending: z.number().default(0),
});
export type SampleJob = z.infer<typeof sampleJobSchema>;

export const sampleSchema = z.object({
  at_ms: z.number(),
  throughput: z.number().default(0),
  jobs: z.array(sampleJobSchema).default([]),
  members: z.object({
    alive: z.number().default(0),
    suspect: z.number().default(0),
    failed: z.number().default(0),
    left: z.number().default(0),
  }),
  failures: z.number().default(0),
});
export type Sample = z.infer<typeof sampleSchema>;

export const statsResponseSchema = z.object({ samples: z.array(sampleSchema) });
export type StatsResponse = z.infer<typeof statsResponseSchema>;

export const snapshotSchema = z.object({
  node: z.string(),
  coordinator: nullableString,
  at_ms: z.number(),
  /** Version of the answering node's membership view the workers' states come from. */
  view_version: z.number().default(0),
  workers: z.array(workerSchema),
  jobs: z.array(jobRecordSchema),
  sample: sampleSchema.nullable().default(null),
});
export type Snapshot = z.infer<typeof snapshotSchema>;

/**
 * A `member_state` event: a member's record as the answering node's view has it right after a
 * change (every report about it already merged there), with the view's version.
 */
export const memberChangeSchema = z.object({
  version: z.number(),
  member: memberSchema,
});
export type MemberChange = z.infer<typeof memberChangeSchema>;

export const memberEventKindSchema = z.enum(['join', 'alive', 'suspect', 'fail', 'leave']);
export type MemberEventKind = z.infer<typeof memberEventKindSchema>;
export const memberEventSchema = z.object({
  kind: memberEventKindSchema,
  node: z.string(),
  generation: z.number(),
  incarnation: z.number(),
  host: z.string().default(''),
  http: nullableString,
  reporter: z.string().default(''),
  at_ms: z.number().default(0),
});
export type MemberEvent = z.infer<typeof memberEventSchema>;

export const jobEventSchema = z.object({
  job_id: z.string(),
  event: z.enum(['submitted', 'started', 'reassigned', 'regrouped', 'finished', 'failed', 'cancelled']),
  worker: nullableString,
  detail: nullableString,
  at_ms: z.number(),
});
export type JobEvent = z.infer<typeof jobEventSchema>;

export const authSchema = z.object({ required: z.boolean(), authenticated: z.boolean() });
export type Auth = z.infer<typeof authSchema>;
