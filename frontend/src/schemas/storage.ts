// Schemas of SDFS files, models and datasets (docs/api.md).
import { z } from 'zod';
import { nullableNumber } from './common.ts';

/** Attributes are strings on the bus; numbers and booleans are accepted and turned into text. */
const attrValueSchema = z
  .union([z.string(), z.number(), z.boolean(), z.null()])
  .transform((v) => (v === null ? '' : String(v)));

export const versionInfoSchema = z.object({
  version: z.number(),
  size: z.number(),
  sha256: z.string().default(''),
  replicas: z.array(z.string()).default([]),
  created_ms: z.number().default(0),
  replication: nullableNumber,
  attrs: z.record(z.string(), attrValueSchema).default({}),
});
export type VersionInfo = z.infer<typeof versionInfoSchema>;

export const fileInfoSchema = z.object({
  name: z.string(),
  /** Oldest first: the last one is the newest. */
  versions: z.array(versionInfoSchema),
  /** Versions never pruned: those a model alias or rollout names. */
  pinned: z.array(z.number()).default([]),
  /** Replicas the newest version should have. */
  wanted: z.number().default(0),
  /**
   * The newest version's replicas that are alive now: node ids (a bare count is accepted too,
   * then every replica is shown as live).
   */
  live_replicas: z.union([z.array(z.string()), z.number()]).default([]),
  under_replicated: z.boolean().default(false),
});
export type FileInfo = z.infer<typeof fileInfoSchema>;

export const filesResponseSchema = z.object({
  replication: nullableNumber,
  /** A count or the ids of the live nodes: the contract does not say which, both are taken. */
  live_nodes: z.union([z.number(), z.array(z.string())]).nullable().default(null),
  files: z.array(fileInfoSchema),
  /** Where the next page starts (null on the last). */
  next: z.string().nullable().default(null),
});
export type FilesResponse = z.infer<typeof filesResponseSchema>;

export const modelsResponseSchema = z.object({ models: z.array(fileInfoSchema) });
export type ModelsResponse = z.infer<typeof modelsResponseSchema>;

export const splitInfoSchema = z.object({ count: z.number() });
export const datasetManifestSchema = z.object({
  name: z.string(),
  source: z.string(),
  /** Sample shape: channels, height, width. */
  shape: z.array(z.number()),
  /** Class names by label; empty when unlabelled. */
  classes: z.array(z.string()).default([]),
  splits: z.record(z.string(), splitInfoSchema),
  mean: z.array(z.number()).default([]),
  std: z.array(z.number()).default([]),
  created_ms: z.number().default(0),
});
export type DatasetManifest = z.infer<typeof datasetManifestSchema>;

export const datasetSchema = z.object({ manifest: datasetManifestSchema, bytes: z.number() });
export type Dataset = z.infer<typeof datasetSchema>;
export const datasetsResponseSchema = z.object({ datasets: z.array(datasetSchema) });
export type DatasetsResponse = z.infer<typeof datasetsResponseSchema>;
