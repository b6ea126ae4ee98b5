// Typed client for the node's HTTP API (docs/api.md). Every answer is checked at run time
// with zod: a field the page relies on that is missing or of the wrong type is an error, a
// field the page does not know is ignored (the API only ever adds fields).
import { z } from 'zod';
import { authSchema, membersResponseSchema, statsResponseSchema, workersResponseSchema } from './schemas/cluster.ts';
import type { Auth, MembersResponse, StatsResponse, WorkersResponse } from './schemas/cluster.ts';
import { jobDetailSchema, jobRecordSchema, jobsResponseSchema } from './schemas/jobs.ts';
import type { JobDetail, JobRecord, JobSpecInput, JobsResponse } from './schemas/jobs.ts';
import { datasetSchema, datasetsResponseSchema, filesResponseSchema, modelsResponseSchema } from './schemas/storage.ts';
import type { Dataset, DatasetsResponse, FilesResponse, ModelsResponse } from './schemas/storage.ts';

export * from './schemas/cluster.ts';
export * from './schemas/jobs.ts';
export * from './schemas/storage.ts';

const submittedSchema = z.object({ id: z.string() });
const cancelledSchema = z.object({ job: jobRecordSchema });
const errorBodySchema = z.object({
  kind: z.string(),
  message: z.string(),
  reason: z.string().nullable().default(null),
});
const uploadedModelSchema = z.object({ id: z.string(), upload: z.string() });

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** A request the server refused with an error status (other than 401). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    /** The error body's `kind` (`bad_input`, `not_found`, `already_ended`, …), or `http`. */
    readonly kind: string,
    message: string,
    /** The cluster's own kind of a refused job (`unknown_model`, `bad_argument`, …), if any. */
    readonly reason: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** `401`: no or a wrong token. The page shows its login form. */
export class UnauthorizedError extends ApiError {
  constructor(message = 'authentication required') {
    super(401, 'unauthorized', message);
    this.name = 'UnauthorizedError';
  }
}

/** An answer that does not have the documented shape. */
export class MalformedResponseError extends Error {
  constructor(readonly what: string, detail: string) {
    super(`malformed answer to ${what}: ${detail}`);
    this.name = 'MalformedResponseError';
  }
}

/** The message of any thrown value, for display. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Checks `value` against `schema`; `what` names the request in the error. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const detail = issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid';
  throw new MalformedResponseError(what, detail);
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

interface RequestOptions {
  method?: 'GET' | 'POST';
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as it is, with this media type (an upload). */
  raw?: { body: Blob; type: string };
  signal?: AbortSignal;
}

async function send(path: string, opts: RequestOptions = {}): Promise<Response> {
  const method = opts.method ?? 'GET';
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.raw) headers['Content-Type'] = opts.raw.type;
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: opts.raw ? opts.raw.body : opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: opts.signal,
  });
  if (res.ok) return res;

  let kind = 'http';
  let message = `${method} ${path}: HTTP ${res.status}`;
  let reason: string | null = null;
  try {
    const parsed = errorBodySchema.safeParse(await res.json());
    if (parsed.success) {
      ({ kind, message, reason } = parsed.data);
    }
  } catch {
    // Not JSON: keep the status line.
  }
  if (res.status === 401) throw new UnauthorizedError(message);
  throw new ApiError(res.status, kind, message, reason);
}

async function request<T>(
  path: string,
  schema: z.ZodType<T>,
  opts: RequestOptions = {},
): Promise<T> {
  const res = await send(path, opts);
  const what = `${opts.method ?? 'GET'} ${path}`;
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new MalformedResponseError(what, 'not JSON');
  }
  return parseWith(schema, body, what);
}

export function fetchAuth(signal?: AbortSignal): Promise<Auth> {
  return request('/api/auth', authSchema, { signal });
}

/** Sets the session cookie; a wrong token raises `UnauthorizedError`. */
export async function login(token: string): Promise<void> {
  await send('/api/login', { method: 'POST', body: { token } });
}

export async function logout(): Promise<void> {
  await send('/api/logout', { method: 'POST' });
}

export function fetchMembers(signal?: AbortSignal): Promise<MembersResponse> {
  return request('/api/members', membersResponseSchema, { signal });
}

export function fetchWorkers(signal?: AbortSignal): Promise<WorkersResponse> {
  return request('/api/workers', workersResponseSchema, { signal });
}

export function fetchJobs(signal?: AbortSignal): Promise<JobsResponse> {
  return request('/api/jobs', jobsResponseSchema, { signal });
}

export function fetchJob(id: string, signal?: AbortSignal): Promise<JobDetail> {
  return request(`/api/jobs/${encodeURIComponent(id)}`, jobDetailSchema, { signal });
}

/** Submits a job; answers its id. */
export async function submitJob(spec: JobSpecInput): Promise<string> {
  const { id } = await request('/api/jobs', submittedSchema, { method: 'POST', body: spec });
  return id;
}

/** Cancels a job; answers its record, now `cancelled`. */
export async function cancelJob(id: string): Promise<JobRecord> {
  const path = `/api/jobs/${encodeURIComponent(id)}/cancel`;
  const { job } = await request(path, cancelledSchema, { method: 'POST' });
  return job;
}

export function fetchFiles(prefix?: string, signal?: AbortSignal): Promise<FilesResponse> {
  const query = prefix ? `?prefix=${encodeURIComponent(prefix)}` : '';
  return request(`/api/files${query}`, filesResponseSchema, { signal });
}

export function fetchModels(signal?: AbortSignal): Promise<ModelsResponse> {
  return request('/api/models', modelsResponseSchema, { signal });
}

export function fetchDatasets(signal?: AbortSignal): Promise<DatasetsResponse> {
  return request('/api/datasets', datasetsResponseSchema, { signal });
}

/** How a TorchScript model takes its inputs (`idunno model import`'s flags). */
export interface ModelUpload {
  /** The dataset whose inputs it takes. */
  dataset: string;
  /** Per-channel mean and std, comma-separated ('' : none). */
  mean: string;
  std: string;
}

/** Uploads a TorchScript file as `models/<name>` through an import job; answers the job id. */
export async function uploadModel(name: string, file: Blob, how: ModelUpload): Promise<string> {
  const query = new URLSearchParams({ dataset: how.dataset, mean: how.mean, std: how.std });
  const path = `/api/models/${encodeURIComponent(name)}/upload?${query.toString()}`;
  const raw = { body: file, type: 'application/octet-stream' };
  const { id } = await request(path, uploadedModelSchema, { method: 'POST', raw });
  return id;
}

/** Uploads a folder (as a tar archive) as the dataset `name`; answers what was stored. */
export function uploadDataset(name: string, archive: Blob): Promise<Dataset> {
  const path = `/api/datasets/${encodeURIComponent(name)}/upload`;
  const raw = { body: archive, type: 'application/x-tar' };
  return request(path, datasetSchema, { method: 'POST', raw });
}

export function fetchStats(signal?: AbortSignal): Promise<StatsResponse> {
  return request('/api/stats', statsResponseSchema, { signal });
}

/** The URL of the server-sent-events stream. */
export const EVENTS_URL = '/api/events';
