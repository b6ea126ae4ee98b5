import { act, renderHook, waitFor } from '@testing-library/react';
import type { ReactNode } from 'react';
import { describe, expect, it, vi } from 'vitest';
import { parseWith, sampleSchema } from '../api.ts';
import { AuthContext, type AuthContextValue } from '../authContext.ts';
import { INITIAL_LIVE_STATE, type LiveState } from './useLive.ts';
import { LiveContext } from '../live.tsx';
import { rawFiles, rawOutputs, rawSample, rawServeJob, rawStats, snapshot, T0 } from '../test/fixtures.ts';
import { json } from '../test/render.tsx';
import { useFiles } from './useFiles.ts';
import { useJob } from './useJob.ts';
import { mergeSamples, useStatsHistory } from './useStatsHistory.ts';

function authWrapper(unauthorized: () => void) {
  const value: AuthContextValue = {
    status: 'ready', required: true, error: null, generation: 0,
    login: () => Promise.resolve(true), logout: () => Promise.resolve(), unauthorized,
  };
  return ({ children }: { children: ReactNode }) => <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

describe('polling hooks', () => {
  it('useFiles polls, keeps the last good data while polls fail, and recovers', async () => {
    let up = true;
    const mock = vi.fn<typeof fetch>(() =>
      up ? Promise.resolve(json(rawFiles)) : Promise.reject(new TypeError('Failed to fetch')),
    );
    vi.stubGlobal('fetch', mock);
    const { result } = renderHook(() => useFiles('', 10));
    expect(result.current.loading).toBe(true);
    await waitFor(() => expect(result.current.data?.files).toHaveLength(2));
    expect(mock.mock.calls[0]?.[0]).toBe('/api/files');

    up = false;
    await waitFor(() => expect(result.current.error).toBe('Failed to fetch'));
    expect(result.current.data?.files).toHaveLength(2);
    const calls = mock.mock.calls.length;
    await waitFor(() => expect(mock.mock.calls.length).toBeGreaterThan(calls + 1));

    up = true;
    await waitFor(() => expect(result.current.error).toBeNull());
    expect(result.current.data?.replication).toBe(3);
  });

  it('never starts a poll before the previous one answered', async () => {
    const pending: ((r: Response) => void)[] = [];
    const mock = vi.fn<typeof fetch>(() => new Promise<Response>((resolve) => pending.push(resolve)));
    vi.stubGlobal('fetch', mock);
    const { result } = renderHook(() => useJob('serve-bbbb2222', 5));
    await new Promise((r) => setTimeout(r, 60));
    expect(mock).toHaveBeenCalledTimes(1);
    expect(mock.mock.calls[0]?.[0]).toBe('/api/jobs/serve-bbbb2222');

    await act(async () => pending[0]?.(json({ job: rawServeJob, outputs: rawOutputs })));
    await waitFor(() => expect(result.current.data?.job.id).toBe('serve-bbbb2222'));
    await waitFor(() => expect(mock).toHaveBeenCalledTimes(2));
    await new Promise((r) => setTimeout(r, 60));
    expect(mock).toHaveBeenCalledTimes(2);
  });

  it('passes the prefix and reports a 401 to the login state', async () => {
    const unauthorized = vi.fn();
    const mock = vi.fn<typeof fetch>(() =>
      Promise.resolve(json({ reply: 'error', kind: 'unauthorized', message: 'token required' }, 401)),
    );
    vi.stubGlobal('fetch', mock);
    const { result } = renderHook(() => useFiles('models/', 1000), { wrapper: authWrapper(unauthorized) });
    await waitFor(() => expect(result.current.error).toBe('token required'));
    expect(unauthorized).toHaveBeenCalled();
    expect(mock.mock.calls[0]?.[0]).toBe('/api/files?prefix=models%2F');
  });
});

describe('useStatsHistory', () => {
  const sample = (at: number) => parseWith(sampleSchema, rawSample(at), 'test');

  it('merges by time, dedupes and keeps the newest', () => {
    const merged = mergeSamples([sample(3), sample(1)], [sample(2), sample(3), sample(4)], 3);
    expect(merged.map((s) => s.at_ms)).toEqual([2, 3, 4]);
  });

  it('loads the history once, then appends each snapshot sample', async () => {
    const mock = vi.fn<typeof fetch>(() => Promise.resolve(json(rawStats)));
    vi.stubGlobal('fetch', mock);
    let live: LiveState = { ...INITIAL_LIVE_STATE, snapshot, connected: true, status: 'open' };
    const wrapper = ({ children }: { children: ReactNode }) => (
      <LiveContext.Provider value={live}>{children}</LiveContext.Provider>
    );
    const { result, rerender } = renderHook(() => useStatsHistory(3), { wrapper });
    await waitFor(() =>
      expect(result.current.samples.map((s) => s.at_ms)).toEqual([T0 + 8000, T0 + 9000, T0 + 10_000]),
    );
    live = { ...live, snapshot: { ...snapshot, sample: sample(T0 + 11_000) } };
    rerender();
    expect(result.current.samples.map((s) => s.at_ms)).toEqual([T0 + 9000, T0 + 10_000, T0 + 11_000]);
    expect(mock).toHaveBeenCalledTimes(1);
    expect(mock.mock.calls[0]?.[0]).toBe('/api/stats');
  });
});
