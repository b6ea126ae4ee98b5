import { act, render, renderHook, screen } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ConnectionBanner } from '../components/ConnectionBanner.tsx';
import { LiveProvider } from '../live.tsx';
import { createFakeEventSource, FakeEventSource } from '../test/fakeEventSource.ts';
import { rawSnapshot, snapshot, T0 } from '../test/fixtures.ts';
import { applyMemberEvent, useLive } from './useLive.ts';

beforeEach(() => FakeEventSource.reset());

const memberEvent = (kind: string, node: string, generation: number, incarnation = 0) => ({
  kind, node, generation, incarnation, host: 'vm', http: '127.0.0.1:9999', reporter: 'n1', at_ms: T0 + 20_000,
});

describe('useLive', () => {
  it('connects to /api/events through the global EventSource and keeps the latest snapshot', () => {
    vi.stubGlobal('EventSource', FakeEventSource);
    const { result } = renderHook(() => useLive());
    const es = FakeEventSource.latest();
    expect(es.url).toBe('/api/events');
    expect(result.current).toMatchObject({ connected: false, status: 'connecting', snapshot: null });

    act(() => es.open());
    expect(result.current.connected).toBe(true);
    act(() => es.emit('snapshot', rawSnapshot));
    expect(result.current.snapshot?.node).toBe('n2');
    expect(result.current.snapshot?.coordinator).toBe('n1');
    expect(result.current.snapshot?.jobs).toHaveLength(6);

    act(() => es.emit('snapshot', { ...rawSnapshot, coordinator: null, jobs: [] }));
    expect(result.current.snapshot?.coordinator).toBeNull();
    expect(result.current.snapshot?.jobs).toEqual([]);
  });

  it('applies member events to the workers between snapshots', () => {
    const { result } = renderHook(() => useLive({ createEventSource: createFakeEventSource }));
    const es = FakeEventSource.latest();
    act(() => {
      es.open();
      es.emit('snapshot', rawSnapshot);
    });
    const stateOf = (id: string) => result.current.snapshot?.workers.find((w) => w.id === id)?.state;

    act(() => es.emit('member', memberEvent('suspect', 'n2', T0 + 10, 2)));
    expect(stateOf('n2')).toBe('suspect');
    act(() => es.emit('member', memberEvent('fail', 'n2', T0 + 10, 2)));
    expect(stateOf('n2')).toBe('failed');
    // A stale event (older generation) changes nothing.
    act(() => es.emit('member', memberEvent('alive', 'n1', T0 - 5, 9)));
    expect(stateOf('n1')).toBe('alive');
    // A failed node rejoins with a new generation; an unknown node joins.
    act(() => es.emit('member', memberEvent('join', 'n3', T0 + 50)));
    expect(stateOf('n3')).toBe('alive');
    expect(result.current.snapshot?.workers.find((w) => w.id === 'n3')?.generation).toBe(T0 + 50);
    act(() => es.emit('member', memberEvent('join', 'n5', T0 + 60)));
    expect(stateOf('n5')).toBe('alive');
    // The other fields of the snapshot are kept.
    expect(result.current.snapshot?.jobs).toHaveLength(6);
    // The next snapshot replaces the workers.
    act(() => es.emit('snapshot', rawSnapshot));
    expect(stateOf('n2')).toBe('alive');
    expect(stateOf('n5')).toBeUndefined();
  });

  it('keeps job events, newest first, and reports malformed data without dropping the stream', () => {
    const { result } = renderHook(() => useLive({ createEventSource: createFakeEventSource }));
    const es = FakeEventSource.latest();
    act(() => {
      es.open();
      es.emit('job', { job_id: 'train-1', event: 'started', worker: 'n1', detail: null, at_ms: 1 });
      es.emit('job', { job_id: 'train-1', event: 'finished', worker: 'n1', detail: 'models/x v1', at_ms: 2 });
    });
    expect(result.current.jobEvents.map((e) => e.event)).toEqual(['finished', 'started']);

    act(() => es.emit('snapshot', '{not json'));
    expect(result.current.lastError).toBeTruthy();
    expect(result.current.connected).toBe(true);
    act(() => es.emit('snapshot', { ...rawSnapshot, workers: 'none' }));
    expect(result.current.lastError).toContain('snapshot');
    expect(result.current.snapshot).toBeNull();
  });

  it('makes a new EventSource with backoff when the browser gives up', () => {
    vi.useFakeTimers();
    const { result } = renderHook(() => useLive({ createEventSource: createFakeEventSource }));
    act(() => FakeEventSource.latest().fail(true));
    expect(result.current).toMatchObject({ connected: false, status: 'lost' });
    expect(FakeEventSource.instances[0]?.closed).toBe(true);

    act(() => vi.advanceTimersByTime(999));
    expect(FakeEventSource.instances).toHaveLength(1);
    act(() => vi.advanceTimersByTime(1));
    expect(FakeEventSource.instances).toHaveLength(2);

    // Second closure: 2 s; then 4 s; then capped at 5 s.
    act(() => FakeEventSource.latest().fail(true));
    act(() => vi.advanceTimersByTime(1999));
    expect(FakeEventSource.instances).toHaveLength(2);
    act(() => vi.advanceTimersByTime(1));
    expect(FakeEventSource.instances).toHaveLength(3);
    act(() => FakeEventSource.latest().fail(true));
    act(() => vi.advanceTimersByTime(4000));
    expect(FakeEventSource.instances).toHaveLength(4);
    act(() => FakeEventSource.latest().fail(true));
    act(() => vi.advanceTimersByTime(5000));
    expect(FakeEventSource.instances).toHaveLength(5);

    // Open again: the delay starts over at 1 s.
    act(() => FakeEventSource.latest().open());
    expect(result.current).toMatchObject({ connected: true, status: 'open', lastError: null });
    act(() => FakeEventSource.latest().fail(true));
    act(() => vi.advanceTimersByTime(1000));
    expect(FakeEventSource.instances).toHaveLength(6);
  });

  it('leaves a retrying EventSource alone', () => {
    vi.useFakeTimers();
    const { result } = renderHook(() => useLive({ createEventSource: createFakeEventSource }));
    act(() => FakeEventSource.latest().open());
    act(() => FakeEventSource.latest().fail(false));
    expect(result.current.status).toBe('lost');
    act(() => vi.advanceTimersByTime(10_000));
    expect(FakeEventSource.instances).toHaveLength(1);
    act(() => FakeEventSource.latest().open());
    expect(result.current.connected).toBe(true);
  });

  it('drops an open stream that has gone silent', () => {
    vi.useFakeTimers();
    const { result } = renderHook(() => useLive({ createEventSource: createFakeEventSource, staleMs: 3000 }));
    act(() => FakeEventSource.latest().open());
    act(() => vi.advanceTimersByTime(2000));
    act(() => FakeEventSource.latest().emit('snapshot', rawSnapshot));
    act(() => vi.advanceTimersByTime(2999));
    expect(result.current.connected).toBe(true);
    act(() => vi.advanceTimersByTime(1));
    expect(result.current.status).toBe('lost');
    expect(FakeEventSource.instances[0]?.closed).toBe(true);
    // The snapshot is kept while disconnected.
    expect(result.current.snapshot?.node).toBe('n2');
    act(() => vi.advanceTimersByTime(1000));
    expect(FakeEventSource.instances).toHaveLength(2);
  });

  it('asks /api/auth when the stream closes and reports a missing token', async () => {
    const onUnauthorized = vi.fn();
    const checkAuth = vi.fn(() => Promise.resolve({ required: true, authenticated: false }));
    renderHook(() => useLive({ createEventSource: createFakeEventSource, onUnauthorized, checkAuth }));
    await act(async () => {
      FakeEventSource.latest().fail(true);
      await Promise.resolve();
    });
    expect(checkAuth).toHaveBeenCalledTimes(1);
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });

  it('closes the stream on unmount', () => {
    const { unmount } = renderHook(() => useLive({ createEventSource: createFakeEventSource }));
    unmount();
    expect(FakeEventSource.latest().closed).toBe(true);
  });
});

describe('applyMemberEvent', () => {
  const workers = snapshot.workers;
  const ev = (kind: 'join' | 'alive' | 'suspect' | 'fail' | 'leave', node: string, generation: number, incarnation: number) => ({
    kind, node, generation, incarnation, host: '', http: null, reporter: 'n1', at_ms: 0,
  });

  it('ignores a refutation with a lower incarnation and revives only with a new generation', () => {
    expect(applyMemberEvent(workers, ev('suspect', 'n2', T0 + 10, 1)).find((w) => w.id === 'n2')?.state).toBe('alive');
    expect(applyMemberEvent(workers, ev('alive', 'n3', T0 + 20, 5)).find((w) => w.id === 'n3')?.state).toBe('failed');
    const left = applyMemberEvent(workers, ev('leave', 'n1', T0, 0)).find((w) => w.id === 'n1');
    expect(left?.state).toBe('left');
    expect(left?.http).toBe('127.0.0.1:9300'); // kept when the event has none
    expect(applyMemberEvent(workers, ev('fail', 'n9', 1, 0))).toEqual(workers);
  });
});

describe('connection banner', () => {
  it('shows only while the stream is down', () => {
    render(
      <LiveProvider createEventSource={createFakeEventSource}>
        <ConnectionBanner />
      </LiveProvider>,
    );
    // Not while connecting for the first time.
    expect(screen.queryByTestId('connection-banner')).toBeNull();
    const es = FakeEventSource.latest();
    act(() => es.open());
    expect(screen.queryByTestId('connection-banner')).toBeNull();

    act(() => es.fail());
    const banner = screen.getByTestId('connection-banner');
    expect(banner.textContent).toBe('Connection to the cluster lost — reconnecting…');
    expect(banner.getAttribute('role')).toBe('alert');

    act(() => es.open());
    expect(screen.queryByTestId('connection-banner')).toBeNull();
  });
});
