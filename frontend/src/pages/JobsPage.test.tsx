import { screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { renderPage } from '../test/render.tsx';
import { JobsPage } from './JobsPage.tsx';

function table(heading: string): HTMLElement {
  const section = screen.getByRole('heading', { name: heading }).closest('section');
  if (!section) throw new Error(`no section ${heading}`);
  return within(section).getByRole('table');
}

describe('JobsPage', () => {
  it('splits the jobs into running and completed tables', () => {
    renderPage(<JobsPage />);
    const running = table('Running');
    const completed = table('Completed');
    const ids = (t: HTMLElement) =>
      within(t).queryAllByTestId(/^job-row-/).map((r) => r.getAttribute('data-testid'));
    expect(ids(running)).toEqual([
      'job-row-serve-bbbb2222',
      'job-row-serve-cccc3333',
      'job-row-train-aaaa1111',
      'job-row-train-dddd4444',
    ]);
    expect(ids(completed)).toEqual(['job-row-train-eeee5555', 'job-row-import-ffff6666']);
    expect(screen.getByTestId('job-row-train-dddd4444').getAttribute('data-state')).toBe('queued');
    expect(screen.getByTestId('job-row-import-ffff6666').getAttribute('data-state')).toBe('failed');
  });

  it('shows an inference job with its progress, rate, accuracy and workers', () => {
    renderPage(<JobsPage />);
    const row = screen.getByTestId('job-row-serve-bbbb2222');
    expect(row.getAttribute('data-state')).toBe('running');
    const link = within(row).getByRole('link', { name: 'serve-bbbb2222' });
    expect(link.getAttribute('href')).toBe('/jobs/serve-bbbb2222');
    const cells = within(row).getAllByRole('cell').map((c) => c.textContent);
    expect(cells).toEqual([
      'serve-bbbb2222', 'serve', 'cnn v2', 'fashion-mnist/test', '64', 'running',
      '1,200 / 10,000 queries', '1,328.5 q/s', '91.67%', 'n1, n2',
    ]);
    const progress = screen.getByTestId('job-progress-serve-bbbb2222');
    expect(progress.getAttribute('data-done')).toBe('1200');
    const bar = progress.querySelector('progress');
    expect(bar?.getAttribute('value')).toBe('1200');
    expect(bar?.getAttribute('max')).toBe('10000');
  });

  it('shows a continuous job by passes and a training job by steps', () => {
    renderPage(<JobsPage />);
    const continuous = screen.getByTestId('job-progress-serve-cccc3333');
    expect(continuous.getAttribute('data-done')).toBe('5000');
    // The bar shows the current pass over the 500-sample split.
    expect(continuous.textContent).toBe('5,000 queries (continuous, pass 11)');
    expect(continuous.querySelector('progress')?.getAttribute('value')).toBe('0');
    expect(continuous.querySelector('progress')?.getAttribute('max')).toBe('500');
    // No labels: no accuracy.
    expect(within(screen.getByTestId('job-row-serve-cccc3333')).getAllByRole('cell')[8]?.textContent).toBe('—');

    const train = screen.getByTestId('job-progress-train-aaaa1111');
    expect(train.getAttribute('data-done')).toBe(String(1 * 469 + 240));
    expect(train.textContent).toBe('epoch 2/5 · step 240/469');
    expect(train.querySelector('progress')?.getAttribute('max')).toBe(String(5 * 469));
    const trainCells = within(screen.getByTestId('job-row-train-aaaa1111')).getAllByRole('cell');
    expect(trainCells[7]?.textContent).toBe('2,143.0 img/s');
    expect(trainCells[8]?.textContent).toBe('88.90%');
    expect(trainCells[9]?.textContent).toBe('n1'); // the current attempt's worker

    const queued = screen.getByTestId('job-progress-train-dddd4444');
    expect(queued.getAttribute('data-done')).toBe('0');
    expect(queued.textContent).toBe('waiting');
  });

  it('shows the test accuracy of a finished training job', () => {
    renderPage(<JobsPage />);
    const cells = within(screen.getByTestId('job-row-train-eeee5555')).getAllByRole('cell');
    expect(cells[5]?.textContent).toBe('succeeded');
    expect(cells[6]?.getAttribute('data-done')).toBe(String(2 * 16));
    expect(cells[8]?.textContent).toBe('91.20%');
    expect(cells[9]?.textContent).toBe('—');
  });

  it('lists recent job events and waits for the first snapshot', () => {
    renderPage(<JobsPage />, {
      live: { jobEvents: [{ job_id: 'train-aaaa1111', event: 'reassigned', worker: 'n1', detail: 'from n3 to n1, resuming after epoch 1', at_ms: 0 }] },
    });
    expect(screen.getByText(/from n3 to n1, resuming after epoch 1/)).toBeTruthy();
  });

  it('says so before any snapshot arrived', () => {
    renderPage(<JobsPage />, { live: { snapshot: null } });
    expect(screen.getByText('Waiting for the cluster…')).toBeTruthy();
    expect(screen.queryByRole('table')).toBeNull();
  });
});
