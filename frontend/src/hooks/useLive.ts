import { useEffect, useRef, useState } from 'react';
import {
  EVENTS_URL,
  errorMessage,
  fetchAuth,
  jobEventSchema,
  memberEventSchema,
  parseWith,
  snapshotSchema,
  type Auth,
  type JobEvent,
  type MemberEvent,
  type MemberState,
  type Snapshot,
  type Worker,
} from '../api.ts';

/** The part of `EventSource` the hook uses, so that tests can hand in a fake. */
export interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (ev: Event) => void): void;
  close(): void;
}

/** `EventSource.CLOSED`: the browser gave up and will not reconnect by itself. */
const CLOSED = 2;

export type LiveStatus = 'connecting' | 'open' | 'lost';

export interface LiveState {
  /** The latest snapshot, with the member events received since applied to its workers. */
  snapshot: Snapshot | null;
  /** The stream is open. */
  connected: boolean;
  /** `connecting` before the first connection, `lost` after a failure until it is open again. */
  status: LiveStatus;
  /** The last problem with the stream (cleared when it opens again). */
  lastError: string | null;
  /** The job events received, newest first (at most `JOB_EVENTS_KEPT`). */
  jobEvents: JobEvent[];
}

export const INITIAL_LIVE_STATE: LiveState = {
  snapshot: null,
  connected: false,
  status: 'connecting',
  lastError: null,
  jobEvents: [],
};

export const JOB_EVENTS_KEPT = 50;

export interface LiveOptions {
  url?: string;
  createEventSource?: (url: string) => EventSourceLike;
  /** Called when the stream was closed and `/api/auth` says the session has no valid token. */
  onUnauthorized?: () => void;
  checkAuth?: () => Promise<Auth>;
  /** Reconnection delay after the stream closed: doubles from `minBackoffMs` up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * An open stream that brings no event for this long is dropped and made again (snapshots
   * come every second; this catches a frozen node whose connection stays open). 10 s.
   */
  staleMs?: number;
}

const STATE_OF_EVENT: Record<MemberEvent['kind'], MemberState> = {
  join: 'alive',
  alive: 'alive',
  suspect: 'suspect',
  fail: 'failed',
  leave: 'left',
};

/**
 * Applies one membership event to the workers of a snapshot. Events of an older generation
 * than the one known are stale and ignored; within a generation, an `alive` or `suspect`
 * with a lower incarnation is stale too, and a failed or departed member only comes back with
 * a `join` of a newer generation. A `join` of an unknown node adds it.
 */
export function applyMemberEvent(workers: readonly Worker[], ev: MemberEvent): Worker[] {
  const state = STATE_OF_EVENT[ev.kind];
  const index = workers.findIndex((w) => w.id === ev.node);
  const known = workers[index];
  if (!known) {
    if (ev.kind !== 'join' && ev.kind !== 'alive') return [...workers];
    const added: Worker = {
      id: ev.node,
      generation: ev.generation,
      incarnation: ev.incarnation,
      state,
      host: ev.host,
      http: ev.http,
      last_heard_ms: null,
      coordinator: false,
      training: null,
      serving: [],
      models: [],
      queries: 0,
    };
    return [...workers, added].sort((a, b) => a.id.localeCompare(b.id));
  }
  if (ev.generation < known.generation) return [...workers];
  if (ev.generation === known.generation) {
    const ended = known.state === 'failed' || known.state === 'left';
    if ((ev.kind === 'alive' || ev.kind === 'suspect') && (ended || ev.incarnation < known.incarnation)) {
      return [...workers];
    }
    if (ev.kind === 'join' && ended) return [...workers];
  }
  const updated: Worker = {
    ...known,
    state,
    generation: ev.generation,
    incarnation: ev.incarnation,
    host: ev.host || known.host,
    http: ev.http ?? known.http,
  };
  return workers.map((w, i) => (i === index ? updated : w));
}

function dataOf(ev: Event): unknown {
  if (!('data' in ev) || typeof ev.data !== 'string') return undefined;
  return JSON.parse(ev.data);
}

function defaultCreateEventSource(url: string): EventSourceLike {
  return new EventSource(url);
}

/**
 * Follows `GET /api/events`. The browser's `EventSource` reconnects by itself after most
 * failures; when it gives up (`CLOSED`, e.g. a 401 or a node that is gone) or the open
 * stream goes silent, the hook makes a new one after 1 s, 2 s, 4 s, then every 5 s.
 */
export function useLive(options: LiveOptions = {}): LiveState {
  const [state, setState] = useState<LiveState>(INITIAL_LIVE_STATE);
  const optionsRef = useRef(options);
  optionsRef.current = options;

  useEffect(() => {
    const {
      url = EVENTS_URL,
      createEventSource = defaultCreateEventSource,
      minBackoffMs = 1000,
      maxBackoffMs = 5000,
      staleMs = 10_000,
    } = optionsRef.current;
    let stopped = false;
    let source: EventSourceLike | null = null;
    let retryTimer: ReturnType<typeof setTimeout> | undefined;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    let closures = 0;

    const lost = (message: string): void =>
      setState((s) => ({ ...s, connected: false, status: 'lost', lastError: message }));

    const checkAuth = (): void => {
      const { onUnauthorized, checkAuth: ask = fetchAuth } = optionsRef.current;
      if (!onUnauthorized) return;
      ask().then(
        (auth) => {
          if (!stopped && auth.required && !auth.authenticated) onUnauthorized();
        },
        () => {},
      );
    };

    const reconnectLater = (): void => {
      source?.close();
      source = null;
      clearTimeout(watchdog);
      const delay = Math.min(minBackoffMs * 2 ** closures, maxBackoffMs);
      closures += 1;
      retryTimer = setTimeout(connect, delay);
      checkAuth();
    };

    const armWatchdog = (): void => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        lost(`no data from the stream for ${staleMs / 1000} s`);
        reconnectLater();
      }, staleMs);
    };

    const opened = (): void => {
      closures = 0;
      armWatchdog();
      setState((s) =>
        s.connected ? s : { ...s, connected: true, status: 'open', lastError: null },
      );
    };

    function connect(): void {
      if (stopped) return;
      const es = createEventSource(url);
      source = es;
      const current = (): boolean => !stopped && source === es;

      es.addEventListener('open', () => {
        if (current()) opened();
      });
      es.addEventListener('error', () => {
        if (!current()) return;
        clearTimeout(watchdog);
        if (es.readyState === CLOSED) {
          lost('the event stream was closed');
          reconnectLater();
        } else {
          lost('the event stream was interrupted');
        }
      });
      es.addEventListener('snapshot', (ev) => {
        if (!current()) return;
        opened();
        try {
          const snapshot = parseWith(snapshotSchema, dataOf(ev), 'snapshot event');
          setState((s) => ({ ...s, snapshot }));
        } catch (e: unknown) {
          setState((s) => ({ ...s, lastError: errorMessage(e) }));
        }
      });
      es.addEventListener('member', (ev) => {
        if (!current()) return;
        opened();
        try {
          const event = parseWith(memberEventSchema, dataOf(ev), 'member event');
          setState((s) =>
            s.snapshot
              ? { ...s, snapshot: { ...s.snapshot, workers: applyMemberEvent(s.snapshot.workers, event) } }
              : s,
          );
        } catch (e: unknown) {
          setState((s) => ({ ...s, lastError: errorMessage(e) }));
        }
      });
      es.addEventListener('job', (ev) => {
        if (!current()) return;
        opened();
        try {
          const event = parseWith(jobEventSchema, dataOf(ev), 'job event');
          setState((s) => ({ ...s, jobEvents: [event, ...s.jobEvents].slice(0, JOB_EVENTS_KEPT) }));
        } catch (e: unknown) {
          setState((s) => ({ ...s, lastError: errorMessage(e) }));
        }
      });
    }

    connect();
    return () => {
      stopped = true;
      clearTimeout(retryTimer);
      clearTimeout(watchdog);
      source?.close();
      source = null;
    };
  }, []);

  return state;
}
