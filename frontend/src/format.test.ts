import { describe, expect, it } from 'vitest';
import {
  dashboardUrl,
  fixed,
  formatBytes,
  formatLastHeard,
  formatMs,
  formatPercent,
  formatRate,
  formatSeconds,
  formatShape,
} from './format.ts';
import { jobAccuracy, jobProgress, jobWorkers } from './jobs.ts';
import { snapshot } from './test/fixtures.ts';

describe('formatting', () => {
  it('never shows a negative zero', () => {
    expect(fixed(-0.04, 1)).toBe('0.0');
    expect(fixed(-0, 2)).toBe('0.00');
    expect(fixed(-0.06, 1)).toBe('-0.1');
    expect(formatRate(-0.01)).toBe('0.0 q/s');
    expect(formatRate(-0)).toBe('0.0 q/s');
    expect(formatMs(-0.04)).toBe('0.0 ms');
    expect(formatPercent(-0.000001)).toBe('0.00%');
    expect(formatSeconds(-0.01)).toBe('0.0 s');
  });

  it('formats last heard, sizes, rates and fractions', () => {
    expect(formatLastHeard(null)).toBe('—');
    expect(formatLastHeard(230)).toBe('0.2 s ago');
    expect(formatLastHeard(125_000)).toBe('2 min ago');
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(47_040_016)).toBe('44.9 MiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(formatRate(2651)).toBe('2,651.0 q/s');
    expect(formatPercent(0.9120)).toBe('91.20%');
    expect(formatPercent(null)).toBe('—');
    expect(formatSeconds(58.2)).toBe('58.2 s');
    expect(formatSeconds(185)).toBe('3 min 5 s');
    expect(formatShape('1x28x28')).toBe('1×28×28');
    expect(formatShape([3, 32, 32])).toBe('3×32×32');
  });
});

describe('dashboard links', () => {
  it('accepts host:port only', () => {
    expect(dashboardUrl('127.0.0.1:9300')).toBe('http://127.0.0.1:9300/');
    expect(dashboardUrl('vm1.example.org:8080')).toBe('http://vm1.example.org:8080/');
    expect(dashboardUrl('[::1]:8080')).toBe('http://[::1]:8080/');
    for (const bad of [
      null, undefined, '', 'javascript:alert(1)', 'javascript://x%0aalert(1)', 'http://evil:80',
      'evil.example/x:80', 'a@b:80', 'host', 'host:', ':80', 'host:0', 'host:65536', 'host:80x',
      'ho st:80', 'host\n:80', '-host:80', '[::1:80', '[<script>]:80', 'a'.repeat(300) + ':80',
    ]) {
      expect(dashboardUrl(bad), String(bad)).toBeNull();
    }
  });
});

describe('job figures', () => {
  const job = (id: string) => {
    const j = snapshot.jobs.find((x) => x.id === id);
    if (!j) throw new Error(id);
    return j;
  };

  it('derives progress, accuracy and workers by kind', () => {
    expect(jobProgress(job('serve-bbbb2222'))).toEqual({
      done: 1200,
      max: 10000,
      text: '1,200 / 10,000 queries',
      bar: { value: 1200, max: 10000 },
    });
    expect(jobProgress(job('train-aaaa1111')).done).toBe(709);
    expect(jobProgress(job('import-ffff6666'))).toEqual({ done: 0, max: null, text: '—', bar: null });
    expect(jobAccuracy(job('serve-cccc3333'))).toBeNull();
    expect(jobAccuracy(job('import-ffff6666'))).toBeNull();
    expect(jobWorkers(job('train-eeee5555'))).toEqual([]);
    expect(jobWorkers(job('train-aaaa1111'))).toEqual(['n1']);
  });
});
