import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { rawStats, stats, T0 } from '../test/fixtures.ts';
import { json, renderPage } from '../test/render.tsx';
import { buildCharts, StatsPage } from './StatsPage.tsx';

describe('StatsPage', () => {
  it('renders the four charts and the current values', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json(rawStats))));
    const { container } = renderPage(<StatsPage />);
    for (const title of ['Query rate per job (queries/s)', 'Batch latency per job (ms; p50, p99 dashed)', 'Cluster throughput (queries/s)', 'Members and failures']) {
      expect(screen.getByRole('figure', { name: title })).toBeTruthy();
    }
    // History (2 samples) plus the live snapshot's sample.
    await waitFor(() => expect(container.querySelectorAll('svg.recharts-surface').length).toBeGreaterThanOrEqual(4));
    const rateChart = screen.getByRole('figure', { name: 'Query rate per job (queries/s)' });
    await waitFor(() => expect(rateChart.querySelectorAll('path.recharts-line-curve')).toHaveLength(2));
    expect(screen.getByRole('figure', { name: 'Batch latency per job (ms; p50, p99 dashed)' }).querySelectorAll('path.recharts-line-curve')).toHaveLength(4);

    const current = screen.getByTestId('stats-current');
    const row = within(current).getByText('serve-bbbb2222').closest('tr');
    expect(Array.from(row?.cells ?? []).map((c) => c.textContent)).toEqual([
      'serve-bbbb2222', 'cnn', '1,328.5 q/s', '1,200', '11.2 ms', '14.0 ms', '21.5 ms', '1',
    ]);
    expect(screen.getByTestId('stats-summary').textContent).toContain('throughput 1,728.5 q/s');
    expect(screen.getByTestId('stats-summary').textContent).toContain('2 alive, 0 suspect, 1 failed, 1 left · 1 failure seen');
  });

  it('builds one series per job, p50 and p99 for latency', () => {
    const charts = buildCharts(stats.samples);
    expect(charts.rate.series.map((s) => s.name)).toEqual(['serve-bbbb2222', 'serve-cccc3333']);
    expect(charts.rate.rows.map((r) => r['serve-bbbb2222'])).toEqual([1000, 1200]);
    expect(charts.latency.series.map((s) => s.name)).toEqual([
      'serve-bbbb2222 p50', 'serve-bbbb2222 p99', 'serve-cccc3333 p50', 'serve-cccc3333 p99',
    ]);
    expect(charts.latency.rows[0]?.['serve-cccc3333:p99']).toBe(6.5);
    expect(charts.throughput.rows).toEqual([
      { t: T0 + 8000, throughput: 1400 },
      { t: T0 + 9000, throughput: 1600 },
    ]);
    expect(charts.members.rows[1]).toEqual({ t: T0 + 9000, alive: 2, failed: 1, failures: 1 });
  });

  it('still shows the live samples when the history cannot be loaded', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.reject(new TypeError('Failed to fetch'))));
    renderPage(<StatsPage />);
    expect(await screen.findByText('Could not load the history: Failed to fetch')).toBeTruthy();
    expect(screen.getByTestId('stats-current')).toBeTruthy();
  });
});
