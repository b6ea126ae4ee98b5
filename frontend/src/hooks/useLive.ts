import { useEffect, useRef, useState } from 'react';
import {
  EVENTS_URL,
  errorMessage,
  fetchAuth,
  jobEventSchema,
  memberChangeSchema,
  parseWith,
  snapshotSchema,
  type Auth,
  type JobEvent,
  type Member,
  type MemberChange,
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

/** Member records newer than the latest snapshot (`member_state` events), by member id. */
export type NewerMembers = Readonly<Record<string, MemberChange>>;

export interface LiveState {
  /** The latest snapshot, with the newer member records received since applied to its workers. */
  snapshot: Snapshot | null;
  /** The member records newer than `snapshot.view_version`. */
  newerMembers: NewerMembers;
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
  newerMembers: {},
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

/**
 * The workers with member `m`'s record as the server's view has it: its state, generation,
 * incarnation and addresses replace the worker's (the server merged every report about it,
 * so nothing is re-derived here); an unknown member is added.
 */
export function withMember(workers: readonly Worker[], m: Member): Worker[] {
  const index = workers.findIndex((w) => w.id === m.id);
  if (index < 0) {
    const added: Worker = {
      ...m, coordinator: false, training: null, serving: [], models: [], queries: 0, resources: null,
    };
    return [...workers, added].sort((a, b) => a.id.localeCompare(b.id));
  }
  const fields = {
    generation: m.generation,
    incarnation: m.incarnation,
    state: m.state,
    host: m.host,
    http: m.http,
  };
  return workers.map((w, i) => (i === index ? { ...w, ...fields } : w));
}

/**
 * A new snapshot with the member records still newer than it (a higher version of the same
 * node's view) applied, and those records.
 */
export function applySnapshot(snapshot: Snapshot, newer: NewerMembers): { snapshot: Snapshot; newer: NewerMembers } {
  const kept = Object.fromEntries(Object.entries(newer).filter(([, c]) => c.version > snapshot.view_version));
  const workers = Object.values(kept).reduce((ws, c) => withMember(ws, c.member), snapshot.workers);
  return { snapshot: { ...snapshot, workers }, newer: kept };
}

/** The state with a `member_state` event applied, unless the snapshot or an earlier event is as new. */
export function applyMemberChange(s: LiveState, change: MemberChange): LiveState {
  if (!s.snapshot || change.version <= s.snapshot.view_version) return s;
  const known = s.newerMembers[change.member.id];
  if (known && known.version >= change.version) return s;
  return {
    ...s,
    newerMembers: { ...s.newerMembers, [change.member.id]: change },
    snapshot: { ...s.snapshot, workers: withMember(s.snapshot.workers, change.member) },
  };
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
      // Versions are one node's; the stream may now come from another.
      setState((s) => ({ ...s, newerMembers: {} }));
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
          const next = parseWith(snapshotSchema, dataOf(ev), 'snapshot event');
          setState((s) => {
            const { snapshot, newer } = applySnapshot(next, s.newerMembers);
            return { ...s, snapshot, newerMembers: newer };
          });
        } catch (e: unknown) {
          setState((s) => ({ ...s, lastError: errorMessage(e) }));
        }
      });
      es.addEventListener('member_state', (ev) => {
        if (!current()) return;
        opened();
        try {
          const change = parseWith(memberChangeSchema, dataOf(ev), 'member_state event');
          setState((s) => applyMemberChange(s, change));
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
