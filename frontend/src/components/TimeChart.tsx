import {
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from 'recharts';
import { formatClock } from '../format.ts';

export interface Series {
  /** The row field holding the series' values. */
  key: string;
  name: string;
  color: string;
  dashed?: boolean;
}

/** One row per instant: `t` (ms since the epoch) and a value per series key. */
export type ChartRow = { t: number } & Record<string, number | null>;

const PALETTE = ['#0969da', '#1a7f37', '#bf3989', '#bc4c00', '#8250df', '#1b7c83', '#9a6700', '#cf222e'];

export function seriesColor(i: number): string {
  return PALETTE[i % PALETTE.length] ?? '#0969da';
}

const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

/** A value `compact` would print as `-0` (negative zero, or a negative that rounds to it) as 0. */
function unsigned(v: number): number {
  return Math.abs(v) < 0.05 ? 0 : v;
}

export function TimeChart({
  title,
  rows,
  series,
  unit = '',
  integer = false,
  height = 220,
}: {
  title: string;
  rows: readonly ChartRow[];
  series: readonly Series[];
  /** Shown after the values in the tooltip (the title names the unit for the axis). */
  unit?: string;
  /** Counts: no fractional ticks. */
  integer?: boolean;
  height?: number;
}) {
  return (
    <figure className="chart card" aria-label={title}>
      <figcaption>{title}</figcaption>
      {rows.length === 0 || series.length === 0 ? (
        <p className="muted empty-chart">no data yet</p>
      ) : (
        <ResponsiveContainer width="100%" height={height} initialDimension={{ width: 520, height }}>
          <LineChart data={[...rows]} margin={{ top: 8, right: 16, bottom: 0, left: 0 }}>
            <CartesianGrid stroke="#eef1f4" />
            <XAxis
              dataKey="t"
              type="number"
              scale="time"
              domain={['dataMin', 'dataMax']}
              tickFormatter={(t: number) => formatClock(t)}
              minTickGap={40}
            />
            <YAxis width={48} allowDecimals={!integer} tickFormatter={(v: number) => compact.format(unsigned(v))} />
            <Tooltip
              labelFormatter={(t) => (typeof t === 'number' ? formatClock(t) : String(t))}
              formatter={(v) => (typeof v === 'number' ? `${compact.format(unsigned(v))}${unit}` : String(v))}
            />
            <Legend />
            {series.map((s) => (
              <Line
                key={s.key}
                dataKey={s.key}
                name={s.name}
                stroke={s.color}
                strokeDasharray={s.dashed ? '5 3' : undefined}
                dot={false}
                isAnimationActive={false}
                connectNulls={false}
                type="monotone"
              />
            ))}
          </LineChart>
        </ResponsiveContainer>
      )}
    </figure>
  );
}
