// Answers as the server sends them (raw JSON), and the same parsed by the client's schemas.
import {
  datasetsResponseSchema,
  filesResponseSchema,
  jobDetailSchema,
  modelsResponseSchema,
  parseWith,
  snapshotSchema,
  statsResponseSchema,
} from '../api.ts';

const T0 = 1_764_180_000_000;

export const rawWorkers = [
  { id: 'n1', generation: T0, incarnation: 0, state: 'alive', host: 'vm1', http: '127.0.0.1:9300', last_heard_ms: null, coordinator: true, training: 'train-aaaa1111', serving: ['serve-bbbb2222'], models: ['cnn v2'], queries: 500 },
  { id: 'n2', generation: T0 + 10, incarnation: 2, state: 'alive', host: 'vm2', http: '127.0.0.1:9301', last_heard_ms: 230, coordinator: false, training: null, serving: ['serve-bbbb2222', 'serve-cccc3333'], models: ['cnn v2', 'mlp v1'], queries: 5700,
    resources: { cpu_cores: 0.456, cpus: 2, rss_bytes: 300 * 2 ** 20, disk_free_bytes: 40 * 2 ** 30, disk_total_bytes: 100 * 2 ** 30, tch_threads: 1, device: 'cpu' } },
  { id: 'n3', generation: T0 + 20, incarnation: 1, state: 'failed', host: 'vm3', http: '127.0.0.1:9302', last_heard_ms: 7400, coordinator: false, training: null, serving: [], models: [], queries: 0 },
  { id: 'n4', generation: T0 + 30, incarnation: 0, state: 'left', host: 'vm4', http: null, last_heard_ms: 125_000, coordinator: false, training: null, serving: [], models: [], queries: 0 },
];

export const rawServeJob = {
  id: 'serve-bbbb2222',
  spec: { kind: 'serve', model: 'cnn', model_version: 2, dataset: 'fashion-mnist', split: 'test', batch: 64, passes: 1, weight: 1 },
  state: 'running',
  submitted_ms: T0 + 1000,
  finished_ms: null,
  attempts: [],
  progress: null,
  outcome: null,
  error: null,
  serve: {
    model_version: 2, count: 10000, total: 10000, batch: 64, next_query: 1280, next_batch: 20,
    pending: [[19, 1216, 64]], done: 1200, correct: 1100, workers: ['n1', 'n2'],
    by_worker: { n1: 500, n2: 700 }, rate: 1328.5, proc_ms: [11.2, 2.1, 10.9, 14.0, 16.5, 21.5],
  },
};

export const rawContinuousJob = {
  id: 'serve-cccc3333',
  spec: { kind: 'serve', model: 'mlp', model_version: 1, dataset: '', split: 'all', batch: 32, passes: null, weight: 2 },
  state: 'running',
  submitted_ms: T0 + 2000,
  finished_ms: null,
  attempts: [],
  progress: null,
  outcome: null,
  error: null,
  serve: {
    model_version: 1, count: 500, total: null, batch: 32, next_query: 5024, next_batch: 157,
    pending: [], done: 5000, correct: null, workers: ['n2'], by_worker: { n2: 5000 }, rate: 400,
    proc_ms: [],
  },
};

export const rawTrainJob = {
  id: 'train-aaaa1111',
  spec: { kind: 'train', arch: 'cnn', name: 'cnn', dataset: 'fashion-mnist', epochs: 5, batch: 128, lr: null, limit: null, seed: 7 },
  state: 'running',
  submitted_ms: T0 + 500,
  finished_ms: null,
  attempts: [
    { attempt: 1, worker: 'n3', assigned_ms: T0 + 600, resumed_at_epoch: 0 },
    { attempt: 2, worker: 'n1', assigned_ms: T0 + 9000, resumed_at_epoch: 1 },
  ],
  checkpoint_epochs: 1,
  checkpoint_version: 1,
  progress: { job_id: 'train-aaaa1111', worker: 'n1', attempt: 2, epoch: 1, epochs: 5, step: 240, steps: 469, loss: 0.3012, accuracy: 0.889, images_per_s: 2143.0, resumed_at_epoch: 1 },
  outcome: null,
  error: null,
  serve: null,
};

export const rawQueuedJob = {
  id: 'train-dddd4444',
  spec: { kind: 'train', arch: 'mlp', name: 'small', dataset: 'mnist', epochs: 2, batch: 32 },
  state: 'queued',
  submitted_ms: T0 + 3000,
  finished_ms: null,
};

export const rawSucceededJob = {
  id: 'train-eeee5555',
  spec: { kind: 'train', arch: 'mlp', name: 'mlp', dataset: 'fashion-mnist', epochs: 2, batch: 64, lr: 0.01, limit: 1000, seed: 1 },
  state: 'succeeded',
  submitted_ms: T0 - 60_000,
  finished_ms: T0 - 1000,
  attempts: [{ attempt: 1, worker: 'n2', assigned_ms: T0 - 59_000, resumed_at_epoch: 0 }],
  progress: { job_id: 'train-eeee5555', worker: 'n2', attempt: 1, epoch: 1, epochs: 2, step: 16, steps: 16, loss: 0.5, accuracy: 0.8, images_per_s: 900, resumed_at_epoch: 0 },
  outcome: { model_file: 'models/mlp', model_version: 1, test_accuracy: 0.912, results_file: 'results/train-eeee5555.jsonl', seconds: 58.2 },
  error: null,
  serve: null,
};

export const rawFailedImport = {
  id: 'import-ffff6666',
  spec: { kind: 'import', name: 'resnet', dataset: 'cifar', upload: 'uploads/r.pt', mean: [0.5], std: [0.25] },
  state: 'failed',
  submitted_ms: T0 - 120_000,
  finished_ms: T0 - 110_000,
  attempts: [],
  progress: null,
  outcome: null,
  error: 'the module gives 100 logits, the dataset has 10 classes',
  serve: null,
};

export const rawJobs = [rawServeJob, rawContinuousJob, rawTrainJob, rawQueuedJob, rawSucceededJob, rawFailedImport];

export function rawSample(atMs: number, rate = 1328.5) {
  return {
    at_ms: atMs,
    throughput: rate + 400,
    jobs: [
      { id: 'serve-bbbb2222', model: 'cnn', rate, done: 1200, p50_ms: 11.2, p90_ms: 14.0, p99_ms: 21.5, pending: 1 },
      { id: 'serve-cccc3333', model: 'mlp', rate: 400, done: 5000, p50_ms: 3.1, p90_ms: 4.0, p99_ms: 6.5, pending: 0 },
    ],
    members: { alive: 2, suspect: 0, failed: 1, left: 1 },
    failures: 1,
  };
}

export const rawSnapshot = {
  node: 'n2',
  coordinator: 'n1',
  at_ms: T0 + 10_000,
  workers: rawWorkers,
  jobs: rawJobs,
  sample: rawSample(T0 + 10_000),
};

export const snapshot = parseWith(snapshotSchema, rawSnapshot, 'fixture');

export const rawFiles = {
  replication: 3,
  live_nodes: 2,
  files: [
    {
      name: 'datasets/fashion-mnist/train-images.idx',
      versions: [{ version: 1, blob: 'e3a1', size: 47_040_016, sha256: 'ba18', replicas: ['n2', 'n3', 'n1'], created_ms: T0, replication: null }],
      wanted: 2,
      live_replicas: ['n2', 'n1'],
      under_replicated: false,
    },
    {
      name: 'notes.txt',
      versions: [
        { version: 4, size: 10, sha256: 'aa', replicas: ['n1', 'n2'], created_ms: T0, replication: null },
        { version: 5, size: 12, sha256: 'bb', replicas: ['n3', 'n4'], created_ms: T0 + 5, replication: 2 },
      ],
      wanted: 2,
      live_replicas: [],
      under_replicated: true,
    },
  ],
};
export const files = parseWith(filesResponseSchema, rawFiles, 'fixture');

export const rawModels = {
  models: [
    {
      name: 'models/cnn',
      versions: [
        { version: 1, size: 1_200_000, sha256: 'c1', replicas: ['n1'], created_ms: T0, attrs: { arch: 'cnn', dataset: 'fashion-mnist', classes: '10', input: '1x28x28', params: '421642', epochs: '1', test_accuracy: '0.8512', job: 'train-11111111' } },
        { version: 2, size: 1_200_000, sha256: 'c2', replicas: ['n1'], created_ms: T0 + 1, attrs: { arch: 'cnn', dataset: 'fashion-mnist', classes: '10', input: '1x28x28', params: '421642', epochs: '5', test_accuracy: '0.9120', job: 'train-aaaa1111' } },
      ],
      wanted: 1,
      live_replicas: ['n1'],
      under_replicated: false,
    },
  ],
};
export const models = parseWith(modelsResponseSchema, rawModels, 'fixture');

export const rawDatasets = {
  datasets: [
    {
      manifest: {
        version: 1, name: 'fashion-mnist', source: 'fashion_mnist', shape: [1, 28, 28],
        classes: ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'],
        splits: {
          test: { count: 10000, images: { file: 'test-images.idx', size: 7840016, sha256: 'x' } },
          train: { count: 60000, images: { file: 'train-images.idx', size: 47040016, sha256: 'y' } },
        },
        mean: [0.286], std: [0.353], created_ms: T0,
      },
      bytes: 54_950_064,
    },
  ],
};
export const datasets = parseWith(datasetsResponseSchema, rawDatasets, 'fixture');

export const rawOutputs = [
  { query_id: 1198, sample: 1198, predicted: 9, class_name: 'Ankle boot', score: 0.987, label: 9 },
  { query_id: 1199, sample: 1199, predicted: 2, class_name: 'Pullover', score: 0.61, label: 4 },
  { query_id: 1200, sample: 1200, predicted: 4, class_name: 'Coat', score: 0.7 },
];
export const serveDetail = parseWith(jobDetailSchema, { job: rawServeJob, outputs: rawOutputs }, 'fixture');

export const rawStats = { samples: [rawSample(T0 + 8000, 1000), rawSample(T0 + 9000, 1200)] };
export const stats = parseWith(statsResponseSchema, rawStats, 'fixture');

export { T0 };
