import { describe, expect, it, vi } from 'vitest';
import {
  ApiError,
  cancelJob,
  fetchAuth,
  fetchDatasets,
  fetchFiles,
  fetchJob,
  fetchJobs,
  fetchModels,
  fetchStats,
  fetchWorkers,
  login,
  logout,
  MalformedResponseError,
  submitJob,
  UnauthorizedError,
} from './api.ts';
import {
  rawDatasets,
  rawFiles,
  rawJobs,
  rawModels,
  rawOutputs,
  rawServeJob,
  rawStats,
  rawWorkers,
} from './test/fixtures.ts';
import { json } from './test/render.tsx';

function stubFetch(answer: (url: string, init?: RequestInit) => Response) {
  const mock = vi.fn<typeof fetch>((input, init) => Promise.resolve(answer(String(input), init)));
  vi.stubGlobal('fetch', mock);
  return mock;
}

describe('API parsing', () => {
  it('parses the job list, filling in omitted optional fields', async () => {
    stubFetch(() => json({ jobs: rawJobs }));
    const { jobs } = await fetchJobs();
    expect(jobs.map((j) => j.id)).toEqual(rawJobs.map((j) => j.id));

    const queued = jobs.find((j) => j.id === 'train-dddd4444');
    expect(queued?.attempts).toEqual([]);
    expect(queued?.progress).toBeNull();
    expect(queued?.serve).toBeNull();
    expect(queued?.spec).toEqual({
      kind: 'train', arch: 'mlp', name: 'small', dataset: 'mnist', epochs: 2, batch: 32, lr: null, limit: null, seed: 0, workers: 1,
    });

    const serve = jobs[0];
    expect(serve?.spec.kind).toBe('serve');
    if (serve?.spec.kind === 'serve') expect(serve.spec.split).toBe('test');
    expect(serve?.serve?.proc_ms).toEqual({ mean: 11.2, std: 2.1, median: 10.9, p90: 14.0, p95: 16.5, p99: 21.5 });
    expect(serve?.serve?.pending).toEqual([{ batch_id: 19, first_query: 1216, len: 64 }]);
  });

  it('parses a job with its outputs (a missing label is null)', async () => {
    const mock = stubFetch(() => json({ job: rawServeJob, outputs: rawOutputs }));
    const detail = await fetchJob('serve-bbbb2222');
    expect(detail.outputs.map((o) => o.label)).toEqual([9, 4, null]);
    expect(mock.mock.calls[0]?.[0]).toBe('/api/jobs/serve-bbbb2222');
  });

  it('rejects an answer of the wrong shape, naming the field', async () => {
    stubFetch(() => json({ jobs: [{ ...rawServeJob, state: 'exploded' }] }));
    const err = await fetchJobs().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedResponseError);
    expect(String(err)).toContain('jobs.0.state');

    stubFetch(() => json({ jobs: [{ ...rawServeJob, spec: { kind: 'bake', model: 'x' } }] }));
    await expect(fetchJobs()).rejects.toBeInstanceOf(MalformedResponseError);

    stubFetch(() => new Response('<html>', { status: 200 }));
    await expect(fetchWorkers()).rejects.toThrow('not JSON');
  });

  it('parses workers, files, models, datasets and stats', async () => {
    stubFetch((url) => {
      if (url === '/api/workers') return json({ node: 'n2', coordinator: 'n1', workers: rawWorkers });
      if (url.startsWith('/api/files')) return json({ ...rawFiles, live_nodes: ['n1', 'n2'] });
      if (url === '/api/models') return json(rawModels);
      if (url === '/api/datasets') return json(rawDatasets);
      if (url === '/api/stats') return json(rawStats);
      return json({}, 404);
    });
    const workers = await fetchWorkers();
    expect(workers.workers.find((w) => w.coordinator)?.id).toBe('n1');
    expect(workers.workers[2]?.state).toBe('failed');

    const files = await fetchFiles();
    expect(files.live_nodes).toEqual(['n1', 'n2']);
    expect(files.files[1]?.under_replicated).toBe(true);

    const models = await fetchModels();
    expect(models.models[0]?.versions[1]?.attrs.test_accuracy).toBe('0.9120');
    // A model file without the replica fields still parses.
    expect(models.models[0]?.versions[0]?.replication).toBeNull();

    const datasets = await fetchDatasets();
    expect(datasets.datasets[0]?.manifest.splits.train?.count).toBe(60000);
    expect(datasets.datasets[0]?.manifest.classes).toHaveLength(10);

    const stats = await fetchStats();
    expect(stats.samples.map((s) => s.at_ms)).toEqual(rawStats.samples.map((s) => s.at_ms));
  });

  it('takes a bare count of live replicas', async () => {
    stubFetch(() => json({ replication: 3, live_nodes: 3, files: [{ name: 'a', versions: [], wanted: 3, live_replicas: 2, under_replicated: true }] }));
    const { files } = await fetchFiles();
    expect(files[0]?.live_replicas).toBe(2);
  });

  it('turns attribute numbers into text', async () => {
    stubFetch(() =>
      json({ models: [{ name: 'models/x', versions: [{ version: 1, size: 1, attrs: { test_accuracy: 0.5, epochs: 3 } }] }] }),
    );
    const { models } = await fetchModels();
    expect(models[0]?.versions[0]?.attrs).toEqual({ test_accuracy: '0.5', epochs: '3' });
  });
});

describe('API requests', () => {
  it('sends credentials with every request and encodes parameters', async () => {
    const mock = stubFetch((url) =>
      url.startsWith('/api/files') ? json({ replication: 3, live_nodes: 1, files: [] }) : json({ required: false, authenticated: false }),
    );
    await fetchAuth();
    await fetchFiles('models/a b');
    expect(mock.mock.calls.map(([url]) => url)).toEqual(['/api/auth', '/api/files?prefix=models%2Fa%20b']);
    for (const [, init] of mock.mock.calls) expect(init?.credentials).toBe('same-origin');
  });

  it('submits a job as JSON and answers its id', async () => {
    const mock = stubFetch(() => json({ id: 'serve-12345678' }, 201));
    const id = await submitJob({ kind: 'serve', model: 'cnn', split: 'test', batch: 32 });
    expect(id).toBe('serve-12345678');
    const [url, init] = mock.mock.calls[0] ?? [];
    expect(url).toBe('/api/jobs');
    expect(init?.method).toBe('POST');
    expect(init?.credentials).toBe('same-origin');
    expect(JSON.parse(String(init?.body))).toEqual({ kind: 'serve', model: 'cnn', split: 'test', batch: 32 });
  });

  it('cancels a job and reports the server error kinds', async () => {
    const mock = stubFetch(() => json({ job: { ...rawServeJob, state: 'cancelled', error: 'cancelled by user' } }));
    const job = await cancelJob('serve-bbbb2222');
    expect(job.state).toBe('cancelled');
    expect(mock.mock.calls[0]?.[0]).toBe('/api/jobs/serve-bbbb2222/cancel');
    expect(mock.mock.calls[0]?.[1]?.method).toBe('POST');

    stubFetch(() => json({ reply: 'error', kind: 'already_ended', message: 'job serve-bbbb2222 already ended' }, 409));
    const err = await cancelJob('serve-bbbb2222').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).not.toBeInstanceOf(UnauthorizedError);
    expect(err).toMatchObject({ status: 409, kind: 'already_ended', message: 'job serve-bbbb2222 already ended' });

    stubFetch(() => new Response('oops', { status: 502 }));
    await expect(fetchJob('x')).rejects.toMatchObject({ status: 502, kind: 'http', message: 'GET /api/jobs/x: HTTP 502' });
  });

  it('raises UnauthorizedError on 401', async () => {
    stubFetch(() => json({ reply: 'error', kind: 'unauthorized', message: 'a token is required' }, 401));
    const err = await fetchJobs().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnauthorizedError);
    expect(err).toMatchObject({ status: 401, message: 'a token is required' });

    stubFetch(() => new Response(null, { status: 401 }));
    await expect(fetchStats()).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(login('wrong')).rejects.toBeInstanceOf(UnauthorizedError);
  });

  it('logs in and out with POSTs answered 204', async () => {
    const mock = stubFetch(() => new Response(null, { status: 204 }));
    await login('s3cret');
    await logout();
    expect(mock.mock.calls.map(([url, init]) => `${init?.method} ${String(url)}`)).toEqual([
      'POST /api/login',
      'POST /api/logout',
    ]);
    expect(JSON.parse(String(mock.mock.calls[0]?.[1]?.body))).toEqual({ token: 's3cret' });
  });
});
