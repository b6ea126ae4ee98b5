import { act, render, renderHook, screen } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ConnectionBanner } from '../components/ConnectionBanner.tsx';
import { LiveProvider } from '../live.tsx';
import { createFakeEventSource, FakeEventSource } from '../test/fakeEventSource.ts';
import { rawSnapshot, snapshot, T0 } from '../test/fixtures.ts';
import { applySnapshot, useLive, withMember } from './useLive.ts';

beforeEach(() => FakeEventSource.reset());

const memberState = (version: number, id: string, state: string, generation: number, incarnation = 0) => ({
  version,
  member: { id, generation, incarnation, state, host: 'vm', http: '127.0.0.1:9999', last_heard_ms: 5 },
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

  it('takes member records newer than the snapshot from the server, as they are', () => {
    const { result } = renderHook(() => useLive({ createEventSource: createFakeEventSource }));
    const es = FakeEventSource.latest();
    act(() => {
      es.open();
      es.emit('snapshot', { ...rawSnapshot, view_version: 10 });
    });
    const stateOf = (id: string) => result.current.snapshot?.workers.find((w) => w.id === id)?.state;

    act(() => es.emit('member_state', memberState(11, 'n2', 'suspect', T0 + 10, 2)));
    expect(stateOf('n2')).toBe('suspect');
    act(() => es.emit('member_state', memberState(12, 'n2', 'failed', T0 + 10, 2)));
    expect(stateOf('n2')).toBe('failed');
    // A record of a view no newer than what is shown changes nothing.
    act(() => es.emit('member_state', memberState(12, 'n2', 'alive', T0 + 10, 3)));
    act(() => es.emit('member_state', memberState(9, 'n1', 'left', T0)));
    expect(stateOf('n2')).toBe('failed');
    expect(stateOf('n1')).toBe('alive');
    // A node that rejoined, and an unknown node, as the server has them.
    act(() => es.emit('member_state', memberState(13, 'n3', 'alive', T0 + 50)));
    expect(stateOf('n3')).toBe('alive');
    expect(result.current.snapshot?.workers.find((w) => w.id === 'n3')?.generation).toBe(T0 + 50);
    act(() => es.emit('member_state', memberState(14, 'n5', 'alive', T0 + 60)));
    expect(stateOf('n5')).toBe('alive');
    // The other fields of the snapshot are kept.
    expect(result.current.snapshot?.jobs).toHaveLength(6);
    // A snapshot of an older view keeps the newer records; one as new replaces them.
    act(() => es.emit('snapshot', { ...rawSnapshot, view_version: 12 }));
    expect(stateOf('n5')).toBe('alive');
    expect(stateOf('n2')).toBe('alive');
    act(() => es.emit('snapshot', { ...rawSnapshot, view_version: 14 }));
    expect(stateOf('n5')).toBeUndefined();
    expect(result.current.newerMembers).toEqual({});
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

describe('withMember and applySnapshot', () => {
  const workers = snapshot.workers;
  const member = (id: string, state: 'alive' | 'suspect' | 'failed' | 'left', http: string | null) => ({
    id, generation: T0 + 1, incarnation: 4, state, host: 'vm', http, last_heard_ms: null,
  });

  it('replaces a member\'s record and keeps its work', () => {
    const n1 = withMember(workers, member('n1', 'left', null)).find((w) => w.id === 'n1');
    expect(n1).toMatchObject({ state: 'left', generation: T0 + 1, incarnation: 4, http: null });
    expect(n1?.coordinator).toBe(workers.find((w) => w.id === 'n1')?.coordinator);
    expect(withMember(workers, member('n9', 'alive', null)).map((w) => w.id)).toContain('n9');
  });

  it('keeps only the records newer than a snapshot', () => {
    const newer = { n2: { version: 5, member: member('n2', 'failed', null) } };
    const older = applySnapshot({ ...snapshot, view_version: 4 }, newer);
    expect(older.snapshot.workers.find((w) => w.id === 'n2')?.state).toBe('failed');
    expect(Object.keys(older.newer)).toEqual(['n2']);
    const same = applySnapshot({ ...snapshot, view_version: 5 }, newer);
    expect(same.snapshot.workers).toEqual(snapshot.workers);
    expect(same.newer).toEqual({});
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
