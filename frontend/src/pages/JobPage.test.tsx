import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { rawOutputs, rawServeJob, rawSucceededJob, rawTrainJob } from '../test/fixtures.ts';
import { describeCall, json, renderPage } from '../test/render.tsx';
import { JobPage } from './JobPage.tsx';

/** The texts of a table's body rows. */
function bodyRows(table: HTMLElement): (string | null)[][] {
  return within(table)
    .getAllByRole('row')
    .slice(1)
    .map((r) => within(r).getAllByRole('cell').map((c) => c.textContent));
}

function renderJob(id: string) {
  return renderPage(<JobPage />, { path: '/jobs/:id', route: `/jobs/${id}` });
}

describe('JobPage', () => {
  it('shows an inference job: percentiles, per-worker counts and recent outputs', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json({ job: rawServeJob, outputs: rawOutputs }))));
    renderJob('serve-bbbb2222');

    const proc = await screen.findByTestId('proc-ms');
    const bar = screen.getByTestId('job-page-progress');
    expect(bar.getAttribute('data-done')).toBe('1200');
    expect(bar.textContent).toContain('1,200');
    expect(within(proc).getAllByRole('columnheader').map((c) => c.textContent)).toEqual([
      'mean', 'std', 'median', 'p90', 'p95', 'p99',
    ]);
    expect(within(proc).getAllByRole('cell').map((c) => c.textContent)).toEqual([
      '11.2 ms', '2.1 ms', '10.9 ms', '14.0 ms', '16.5 ms', '21.5 ms',
    ]);

    expect(bodyRows(screen.getByTestId('by-worker'))).toEqual([
      ['n1', '500', '41.67%'],
      ['n2', '700', '58.33%'],
    ]);

    // Newest first.
    expect(bodyRows(screen.getByTestId('outputs'))).toEqual([
      ['1200', '1200', 'Coat', '0.700', '—', '—'],
      ['1199', '1199', 'Pullover', '0.610', 'Coat', '✗'],
      ['1198', '1198', 'Ankle boot', '0.987', 'Ankle boot', '✓'],
    ]);

    const spec = screen.getByTestId('job-spec');
    expect(within(spec).getByText('split').nextSibling?.textContent).toBe('test');
    expect(screen.getByText('1,328.5 q/s', { selector: 'dd' })).toBeTruthy();
    expect(screen.getByText('91.67%', { selector: 'dd' })).toBeTruthy();
    expect(screen.getByText('n1, n2', { selector: 'dd' })).toBeTruthy();
    // An inference job has no training section.
    expect(screen.queryByTestId('train-progress')).toBeNull();
  });

  it('cancels a running job after confirmation', async () => {
    let state = 'running';
    const mock = vi.fn<typeof fetch>((input, init) => {
      const call = describeCall(input, init);
      if (call === 'POST /api/jobs/serve-bbbb2222/cancel') {
        state = 'cancelled';
        return Promise.resolve(json({ job: { ...rawServeJob, state, error: 'cancelled by the user' } }));
      }
      return Promise.resolve(json({ job: { ...rawServeJob, state }, outputs: [] }));
    });
    vi.stubGlobal('fetch', mock);
    const confirm = vi.spyOn(window, 'confirm').mockReturnValueOnce(false).mockReturnValueOnce(true);
    renderJob('serve-bbbb2222');

    const button = await screen.findByRole('button', { name: 'Cancel job' });
    fireEvent.click(button);
    expect(confirm).toHaveBeenCalledWith('Cancel job serve-bbbb2222?');
    expect(mock.mock.calls.some(([i, init]) => init?.method === 'POST' && String(i).endsWith('/cancel'))).toBe(false);

    fireEvent.click(button);
    expect(await screen.findByText('Job serve-bbbb2222 is now cancelled.')).toBeTruthy();
    const post = mock.mock.calls.find(([i, init]) => describeCall(i, init) === 'POST /api/jobs/serve-bbbb2222/cancel');
    expect(post?.[1]?.credentials).toBe('same-origin');
    // The page reloads the job: it has ended, so the button goes away.
    await waitFor(() => expect(screen.queryByRole('button', { name: 'Cancel job' })).toBeNull());
    expect(screen.getByText('cancelled', { selector: '.badge' })).toBeTruthy();
  });

  it('reports a refused cancellation', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn<typeof fetch>((_input, init) =>
        Promise.resolve(
          init?.method === 'POST'
            ? json({ reply: 'error', kind: 'already_ended', message: 'job serve-bbbb2222 already ended' }, 409)
            : json({ job: rawServeJob, outputs: [] }),
        ),
      ),
    );
    vi.spyOn(window, 'confirm').mockReturnValue(true);
    renderJob('serve-bbbb2222');
    fireEvent.click(await screen.findByRole('button', { name: 'Cancel job' }));
    expect(await screen.findByText('Could not cancel: job serve-bbbb2222 already ended')).toBeTruthy();
  });

  it('shows a training job: progress, attempts, no cancel button once ended', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json({ job: rawTrainJob, outputs: [] }))));
    renderJob('train-aaaa1111');
    const progress = await screen.findByTestId('train-progress');
    const value = (k: string) => within(progress).getByText(k).nextSibling?.textContent;
    expect(value('epoch')).toBe('2 / 5');
    expect(value('step')).toBe('240 / 469');
    expect(value('loss')).toBe('0.3012');
    expect(value('accuracy')).toBe('88.90%');
    expect(value('images/s')).toBe('2,143');
    expect(value('resumed at epoch')).toBe('1');
    const attempts = bodyRows(screen.getByTestId('attempts'));
    expect(attempts.map((r) => [r[0], r[1], r[3]])).toEqual([
      ['1', 'n3', '0'],
      ['2', 'n1', '1'],
    ]);
    expect(screen.getByRole('button', { name: 'Cancel job' })).toBeTruthy();
    expect(screen.queryByTestId('outputs')).toBeNull();
  });

  it('shows the outcome of a finished job', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json({ job: rawSucceededJob, outputs: [] }))));
    renderJob('train-eeee5555');
    const outcome = await screen.findByTestId('job-outcome');
    expect(outcome.textContent).toContain('models/mlp v1');
    expect(outcome.textContent).toContain('91.20%');
    expect(outcome.textContent).toContain('58.2 s');
    expect(screen.queryByRole('button', { name: 'Cancel job' })).toBeNull();
  });

  it('says when the job does not exist', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json({ reply: 'error', kind: 'not_found', message: 'no job train-nope' }, 404))));
    renderJob('train-nope');
    expect(await screen.findByText('Could not load job train-nope: no job train-nope')).toBeTruthy();
  });
});
