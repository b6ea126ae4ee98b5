// Formatting of numbers, sizes and times for display.

const count = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('en-US', {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});

/** `x` with `digits` decimals, never `-0.0`: a value that rounds to zero prints unsigned. */
export function fixed(x: number, digits: number): string {
  const s = x.toFixed(digits);
  return Number(s) === 0 ? (0).toFixed(digits) : s;
}

/** `12,345` */
export function formatCount(n: number): string {
  return count.format(Math.round(n) === 0 ? 0 : n);
}

/** `"0.2 s ago"`, `"2 min ago"`, or `"—"` when never heard (or the answering node itself). */
export function formatLastHeard(ms: number | null): string {
  if (ms === null) return '—';
  if (ms < 60_000) return `${fixed(ms / 1000, 1)} s ago`;
  return `${Math.round(ms / 60_000)} min ago`;
}

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB'];

/** `512 B`, `1.5 KiB`, `44.9 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes;
  let unit = 'B';
  for (const u of UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = u;
  }
  return `${fixed(value, 1)} ${unit}`;
}

/** Queries per second: `1,328.0 q/s`. */
export function formatRate(perSecond: number, unit = 'q/s'): string {
  const shown = Number(perSecond.toFixed(1)) === 0 ? 0 : perSecond;
  return `${oneDecimal.format(shown)} ${unit}`;
}

/** A fraction 0–1 as `91.20%`, `—` when unknown. */
export function formatPercent(fraction: number | null): string {
  return fraction === null || !Number.isFinite(fraction) ? '—' : `${fixed(fraction * 100, 2)}%`;
}

/** Milliseconds: `11.2 ms`, `—` when unknown. */
export function formatMs(ms: number | null | undefined): string {
  return ms === null || ms === undefined || !Number.isFinite(ms) ? '—' : `${fixed(ms, 1)} ms`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** A wall-clock time of day, `14:03:07` (local time). */
export function formatClock(atMs: number): string {
  const d = new Date(atMs);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A date and time, `2025-11-26 14:03:07` (local time); `—` for null. */
export function formatDateTime(atMs: number | null): string {
  if (atMs === null) return '—';
  const d = new Date(atMs);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatClock(atMs)}`;
}

/** A duration in seconds: `42.0 s`, `3 min 5 s`, `1 h 2 min`. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${fixed(seconds, 1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A model's `input` attribute or a dataset shape as `1×28×28`. */
export function formatShape(shape: readonly number[] | string): string {
  const parts = typeof shape === 'string' ? shape.split(/[x×,\s]+/).filter(Boolean) : shape;
  return parts.length > 0 ? parts.join('×') : '—';
}

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;

/**
 * The dashboard URL of a member's `http` field, or `null` unless it is exactly `host:port`
 * (a host name, an IPv4 address or a bracketed IPv6 address, and a port 1–65535): a forged
 * member cannot turn it into a `javascript:` link or a link elsewhere.
 */
export function dashboardUrl(http: string | null | undefined): string | null {
  if (!http) return null;
  const colon = http.lastIndexOf(':');
  if (colon <= 0) return null;
  const host = http.slice(0, colon);
  const port = http.slice(colon + 1);
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return null;
  if (!(IPV4.test(host) || IPV6.test(host) || HOST_NAME.test(host))) return null;
  return `http://${host}:${port}/`;
}
