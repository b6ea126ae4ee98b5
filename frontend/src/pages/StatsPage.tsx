import type { Sample } from '../api.ts';
import { seriesColor, TimeChart, type ChartRow, type Series } from '../components/TimeChart.tsx';
import { formatCount, formatMs, formatRate } from '../format.ts';
import { useStatsHistory } from '../hooks/useStatsHistory.ts';
import { DataTable } from '../components/DataTable.tsx';

/** The ids of every job that appears in the samples, in order of first appearance. */
function jobIds(samples: readonly Sample[]): string[] {
  const ids = new Set<string>();
  for (const s of samples) for (const j of s.jobs) ids.add(j.id);
  return [...ids];
}

export interface StatsCharts {
  rate: { rows: ChartRow[]; series: Series[] };
  latency: { rows: ChartRow[]; series: Series[] };
  throughput: { rows: ChartRow[]; series: Series[] };
  members: { rows: ChartRow[]; series: Series[] };
}

/** Turns samples into the rows and series of the four charts. */
export function buildCharts(samples: readonly Sample[]): StatsCharts {
  const ids = jobIds(samples);
  const rateRows: ChartRow[] = [];
  const latencyRows: ChartRow[] = [];
  for (const s of samples) {
    const rate: ChartRow = { t: s.at_ms };
    const latency: ChartRow = { t: s.at_ms };
    for (const j of s.jobs) {
      rate[j.id] = j.rate;
      latency[`${j.id}:p50`] = j.p50_ms;
      latency[`${j.id}:p99`] = j.p99_ms;
    }
    rateRows.push(rate);
    latencyRows.push(latency);
  }
  return {
    rate: {
      rows: rateRows,
      series: ids.map((id, i) => ({ key: id, name: id, color: seriesColor(i) })),
    },
    latency: {
      rows: latencyRows,
      series: ids.flatMap((id, i) => [
        { key: `${id}:p50`, name: `${id} p50`, color: seriesColor(i) },
        { key: `${id}:p99`, name: `${id} p99`, color: seriesColor(i), dashed: true },
      ]),
    },
    throughput: {
      rows: samples.map((s) => ({ t: s.at_ms, throughput: s.throughput })),
      series: [{ key: 'throughput', name: 'queries/s', color: seriesColor(0) }],
    },
    members: {
      rows: samples.map((s) => ({
        t: s.at_ms,
        alive: s.members.alive,
        failed: s.members.failed,
        failures: s.failures,
      })),
      series: [
        { key: 'alive', name: 'alive', color: '#1a7f37' },
        { key: 'failed', name: 'failed', color: '#cf222e' },
        { key: 'failures', name: 'failures (cumulative)', color: '#9a6700', dashed: true },
      ],
    },
  };
}

export function StatsPage() {
  const { samples, error } = useStatsHistory();
  const charts = buildCharts(samples);
  const latest = samples[samples.length - 1];
  return (
    <section>
      <h2>Stats</h2>
      {error && <p className="error">Could not load the history: {error}</p>}
      {latest && <CurrentValues sample={latest} />}
      <div className="charts">
        <TimeChart title="Query rate per job (queries/s)" unit=" q/s" {...charts.rate} />
        <TimeChart title="Batch latency per job (ms; p50, p99 dashed)" unit=" ms" {...charts.latency} />
        <TimeChart title="Cluster throughput (queries/s)" unit=" q/s" {...charts.throughput} />
        <TimeChart title="Members and failures" integer {...charts.members} />
      </div>
    </section>
  );
}

function CurrentValues({ sample }: { sample: Sample }) {
  const m = sample.members;
  return (
    <div className="card">
      <h3>Now</h3>
      <p data-testid="stats-summary">
        throughput <strong>{formatRate(sample.throughput)}</strong> · members {m.alive} alive,{' '}
        {m.suspect} suspect, {m.failed} failed, {m.left} left · {sample.failures} failure
        {sample.failures === 1 ? '' : 's'} seen
      </p>
      <DataTable
        kind="compact"
        testId="stats-current"
        columns={['job', 'model', 'rate', 'done', 'p50', 'p90', 'p99', 'pending']}
        empty={sample.jobs.length === 0 ? 'no job running' : null}
      >
        {sample.jobs.map((j) => (
          <tr key={j.id}>
            <td className="mono">{j.id}</td>
            <td>{j.model}</td>
            <td className="num">{formatRate(j.rate)}</td>
            <td className="num">{formatCount(j.done)}</td>
            <td className="num">{formatMs(j.p50_ms)}</td>
            <td className="num">{formatMs(j.p90_ms)}</td>
            <td className="num">{formatMs(j.p99_ms)}</td>
            <td className="num">{j.pending}</td>
          </tr>
        ))}
      </DataTable>
    </div>
  );
}
