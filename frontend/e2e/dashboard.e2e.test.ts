// The dashboard in Debian's Chromium against a real local cluster. Started by
// `cargo test -p idunno-cli --test browser` (part of `make test`), which brings the cluster
// up, trains a model and passes what this test needs in IDUNNO_E2E_* variables.
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';

function env(name: string): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run this through cargo test -p idunno-cli --test browser`);
  }
  return v;
}

/** `id:pid` of a node. */
function proc(name: string): { id: string; pid: number } {
  const [id = '', pid = ''] = env(name).split(':');
  return { id, pid: Number(pid) };
}

const base = env('IDUNNO_E2E_URL');
const cli = env('IDUNNO_E2E_CLI');
const nats = env('IDUNNO_E2E_NATS');
const workdir = env('IDUNNO_E2E_DIR');
const nodes = env('IDUNNO_E2E_NODES').split(',');
const victim = proc('IDUNNO_E2E_VICTIM');
const home = proc('IDUNNO_E2E_HOME');
const token = env('IDUNNO_E2E_TOKEN');
const torchscript = env('IDUNNO_E2E_MODEL');
const folder = env('IDUNNO_E2E_FOLDER');
const shots = process.env.IDUNNO_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), 'idunno-shots-'));

/** The dashboard's certificate: Chromium accepts exactly its key (Node's fetch trusts the CA
 * through NODE_EXTRA_CA_CERTS). */
const certificate = new X509Certificate(readFileSync(env('IDUNNO_E2E_CERT')));
const spki = createHash('sha256')
  .update(certificate.publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');

const FLAGS = [
  `--ignore-certificate-errors-spki-list=${spki}`,
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let context: BrowserContext;
let page: Page;

/** Runs the CLI against the test cluster; returns stdout. */
function idunno(...args: string[]): string {
  return execFileSync(cli, ['--nats', nats, ...args], {
    cwd: workdir,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** Goes to a page through the nav bar: the app keeps running, nothing reloads. */
async function nav(text: string): Promise<void> {
  await page.getByRole('link', { name: text, exact: true }).first().click();
}

/** The page was never reloaded since `mark()` if the marker is still on `window`. */
async function mark(): Promise<void> {
  await page.evaluate(() => {
    document.documentElement.dataset.e2eMarker = 'set';
  });
}

async function stillSamePage(): Promise<boolean> {
  return page.evaluate(() => document.documentElement.dataset.e2eMarker === 'set');
}

function doneOf(id: string): Promise<number> {
  return page
    .getByTestId(`job-progress-${id}`)
    .getAttribute('data-done')
    .then((v) => Number(v ?? 'NaN'));
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Chromium's profile, removed after the run (the screenshots stay, to look at a failure). */
let profile = '';

beforeAll(async () => {
  mkdirSync(shots, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'idunno-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('dialog', (d) => void d.accept());
});

afterAll(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the dashboard follows the cluster live', async () => {
  // The nodes want the token: the API refuses without it, the page asks for it.
  expect((await fetch(`${base}/api/members`)).status).toBe(401);
  await page.goto(`${base}/workers`);
  await mark();
  const input = page.getByLabel('Token');
  await input.fill('not-the-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByTestId('login-error').waitFor({ timeout: 10_000 });
  await shot('login');
  await input.fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await input.waitFor({ state: 'detached', timeout: 10_000 });
  // Logged in over HTTPS: the session cookie is only ever sent back over HTTPS.
  expect(page.url().startsWith('https://')).toBe(true);
  const session = (await context.cookies()).find((c) => c.name === 'idunno_session');
  expect(session?.secure).toBe(true);

  for (const id of nodes) {
    await expect
      .poll(() => page.getByTestId(`worker-row-${id}`).getAttribute('data-state'), { timeout: 20_000 })
      .toBe('alive');
  }
  await expect.poll(() => page.getByTestId('coordinator').textContent()).toMatch(/n\d/);

  // Files: a file put from the CLI, with its replicas.
  writeFileSync(join(workdir, 'e2e.txt'), 'put from the CLI by the browser test\n');
  idunno('put', 'e2e.txt', 'e2e/hello.txt');
  await nav('Files');
  const row = page.getByTestId('file-row-e2e/hello.txt');
  await row.waitFor({ timeout: 20_000 });
  const listed = JSON.parse(idunno('--json', 'ls', 'e2e/hello.txt')) as {
    versions: { replicas: string[] }[];
  }[];
  const replicas = listed[0]?.versions.at(-1)?.replicas ?? [];
  expect(replicas.length).toBeGreaterThanOrEqual(3);
  for (const r of replicas) await expect.poll(() => row.textContent()).toContain(r);
  await shot('files');

  // Jobs: a job started from the CLI appears and advances without a reload.
  const job = (JSON.parse(idunno('--json', 'serve', 'mlp', '16', '--continuous', '--detach')) as {
    job_id: string;
  }).job_id;
  await nav('Jobs');
  await page.getByTestId(`job-row-${job}`).waitFor({ timeout: 20_000 });
  await expect.poll(() => doneOf(job), { timeout: 20_000 }).toBeGreaterThan(0);
  const first = await doneOf(job);
  await expect.poll(() => doneOf(job), { timeout: 20_000 }).toBeGreaterThan(first);
  console.log(`job ${job}: ${first} → ${await doneOf(job)} queries, live`);
  await shot('jobs');

  // The job's page: outputs and percentiles.
  await page.getByRole('link', { name: job, exact: true }).first().click();
  await page.getByText('Recent outputs').waitFor({ timeout: 10_000 });
  await expect.poll(() => page.locator('table').count(), { timeout: 15_000 }).toBeGreaterThan(1);
  await shot('job');

  await nav('Stats');
  await page.locator('svg.recharts-surface').first().waitFor({ timeout: 15_000 });
  await new Promise((r) => setTimeout(r, 3000)); // a few more points on the charts
  await shot('stats');

  await nav('Models');
  await page.getByText('mlp', { exact: true }).first().waitFor({ timeout: 15_000 });
  await shot('models');

  await submitFromTheForm();
  await uploadAModelAndADataset();

  // kill -9 of a node: marked failed within 5 s, without a reload.
  await nav('Workers');
  const victimRow = page.getByTestId(`worker-row-${victim.id}`);
  await expect.poll(() => victimRow.getAttribute('data-state')).toBe('alive');
  process.kill(victim.pid, 'SIGKILL');
  const took = await waitFor(`${victim.id} is marked failed`, 5_000, async () => {
    return (await victimRow.getAttribute('data-state')) === 'failed';
  });
  console.log(`${victim.id} marked failed ${took} ms after kill -9`);
  expect(await stillSamePage()).toBe(true);
  // If the victim coordinated, the header names its successor once a standby takes over.
  await expect
    .poll(() => page.getByTestId('coordinator').textContent(), { timeout: 15_000 })
    .not.toContain(victim.id);
  await expect.poll(() => victimRow.textContent(), { timeout: 10_000 }).not.toContain('serve-');
  await shot('workers');

  // Cancel from the job's page.
  await nav('Jobs');
  await page.getByRole('link', { name: job, exact: true }).first().click();
  await page.getByRole('button', { name: 'Cancel job' }).click();
  await expect
    .poll(() => JSON.parse(idunno('--json', 'job', job)).state as string, { timeout: 15_000 })
    .toBe('cancelled');
  await nav('Jobs');
  await expect
    .poll(() => page.getByTestId(`job-row-${job}`).getAttribute('data-state'), { timeout: 10_000 })
    .toBe('cancelled');

  // The page's own node dies: the banner says so; once it is back, the page reconnects.
  const banner = page.getByTestId('connection-banner');
  expect(await banner.count()).toBe(0);
  process.kill(home.pid, 'SIGKILL');
  await banner.waitFor({ timeout: 15_000 });
  await expect.poll(() => banner.textContent()).toMatch(/lost|reconnect/i);
  await shot('disconnected');
  idunno('local', 'restart', home.id, '--dir', 'cluster');
  await banner.waitFor({ state: 'detached', timeout: 30_000 });
  expect(await stillSamePage()).toBe(true);
});

/** A serve job from the form: a mistake is shown beside its field and nothing is sent; then
 * the job's page opens and its progress advances to the end. */
async function submitFromTheForm(): Promise<void> {
  await nav('Jobs');
  await page.getByRole('link', { name: 'New inference job' }).click();
  const form = page.getByRole('form', { name: 'run inference' });
  await form.waitFor({ timeout: 15_000 });
  await form.locator('select[name="model"]').selectOption('mlp');
  await form.locator('input[name="batch"]').fill('0');
  await form.getByRole('button', { name: 'Serve' }).click();
  await expect
    .poll(() => page.getByTestId('error-batch').textContent())
    .toBe('the batch size must be between 1 and 4096, not 0');
  expect(page.url()).toMatch(/\/jobs\/new/);
  await shot('new-job');
  await form.locator('input[name="batch"]').fill('25');
  await form.locator('input[name="passes"]').fill('3');
  expect(await page.getByTestId('command').textContent()).toBe('idunno serve mlp 25 --passes 3');
  await form.getByRole('button', { name: 'Serve' }).click();
  await page.waitForURL(/\/jobs\/serve-/, { timeout: 15_000 });
  const id = decodeURIComponent(page.url().split('/jobs/')[1] ?? '');
  expect(await stillSamePage()).toBe(true);
  const done = (): Promise<number> =>
    page.getByTestId('job-page-progress').getAttribute('data-done').then((v) => Number(v ?? 'NaN'));
  // Progress as the page shows it, each value seen, until the job ends.
  const seen = new Set<number>();
  await waitFor(`${id} succeeds on its page`, 120_000, async () => {
    seen.add(await done());
    return (await page.locator('.job-title .badge').textContent()) === 'succeeded';
  });
  seen.add(await done());
  const values = [...seen].sort((a, b) => a - b);
  console.log(`form job ${id}: the page showed ${values.length} progress values, ${values.join(' → ')}`);
  expect(values.at(-1)).toBe(30_000);
  expect(values.filter((v) => v > 0 && v < 30_000).length).toBeGreaterThan(0);
  const record = JSON.parse(idunno('--json', 'job', id)) as { spec: Record<string, unknown>; state: string };
  expect(record.state).toBe('succeeded');
  expect(record.spec).toMatchObject({ kind: 'serve', model: 'mlp', batch: 25, passes: 3, split: 'test', weight: 1 });
}

/** A TorchScript model uploaded from the Models page: its import job succeeds and the model's
 * page lists its version with a test accuracy; then an image folder becomes a dataset. */
async function uploadAModelAndADataset(): Promise<void> {
  await nav('Models');
  const form = page.getByRole('form', { name: 'upload a model' });
  await form.waitFor({ timeout: 15_000 });
  await form.locator('input[name="name"]').fill('uploaded');
  await form.locator('input[name="file"]').setInputFiles(torchscript);
  await form.locator('input[name="mean"]').fill('0.286');
  await form.locator('input[name="std"]').fill('0.353');
  await form.getByRole('button', { name: 'Upload model' }).click();
  await page.waitForURL(/\/jobs\/import-/, { timeout: 60_000 });
  await waitFor('the import job succeeds', 120_000, async () => {
    const state = await page.locator('.job-title .badge').textContent();
    if (state === 'failed') throw new Error(`the import failed: ${await page.locator('body').textContent()}`);
    return state === 'succeeded';
  });
  await nav('Models');
  await page.getByRole('link', { name: 'uploaded', exact: true }).first().click();
  const row = page.getByTestId('version-row-1');
  await row.waitFor({ timeout: 15_000 });
  const accuracy = await row.locator('td').nth(7).textContent();
  // PyTorch's own accuracy of the model on the same test split (made with the fixture).
  const expected = JSON.parse(readFileSync(join(dirname(torchscript), 'expected.json'), 'utf8')) as { accuracy: number };
  console.log(`uploaded model v1: test accuracy ${accuracy} (PyTorch: ${expected.accuracy})`);
  expect(accuracy).toBe(`${(expected.accuracy * 100).toFixed(2)}%`);
  await shot('model');

  await nav('Models');
  const data = page.getByRole('form', { name: 'upload a dataset' });
  await data.locator('input[name="name"]').fill('halves-web');
  await data.locator('input[name="folder"]').setInputFiles(folder);
  await data.getByRole('button', { name: 'Upload dataset' }).click();
  await expect
    .poll(() => page.getByTestId('dataset-uploaded').textContent(), { timeout: 60_000 })
    .toBe('Imported halves-web: test 8, train 16.');
  await page.getByTestId('dataset-row-halves-web').waitFor({ timeout: 15_000 });
  const listed = JSON.parse(idunno('--json', 'datasets')) as { manifest: { name: string; classes: string[] } }[];
  expect(listed.find((d) => d.manifest.name === 'halves-web')?.manifest.classes).toEqual(['left', 'right']);
}
