import { useCallback, useEffect, useRef, useState } from 'react';
import { errorMessage, UnauthorizedError } from '../api.ts';
import { useUnauthorized } from '../authContext.ts';

export interface PollState<T> {
  /** The last good answer; kept while later polls fail. */
  data: T | null;
  /** Why the last poll failed; `null` once one succeeds again. */
  error: string | null;
  /** No answer yet (neither data nor error). */
  loading: boolean;
  /** Polls now (the next poll is timed from this one). */
  refresh: () => void;
}

/** A request that has not answered after this long is aborted and counted as failed. */
export const POLL_TIMEOUT_MS = 10_000;

/**
 * Calls `fetcher` now and then every `intervalMs` after the previous call settled, so polls
 * never overlap. `key` names what is fetched: when it changes, polling starts over and the
 * data is dropped (unless `keepOnKeyChange`: a filter whose old answer is still worth showing).
 * A `401` shows the login form.
 */
export function usePoll<T>(
  fetcher: (signal: AbortSignal) => Promise<T>,
  intervalMs: number,
  key = '',
  keepOnKeyChange = false,
): PollState<T> {
  const [state, setState] = useState<{ key: string; data: T | null; error: string | null }>({
    key,
    data: null,
    error: null,
  });
  const [tick, setTick] = useState(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const unauthorized = useUnauthorized();

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let inflight: AbortController | undefined;

    const poll = async (): Promise<void> => {
      const ctrl = new AbortController();
      inflight = ctrl;
      const timeout = setTimeout(
        () => ctrl.abort(new Error(`no answer within ${POLL_TIMEOUT_MS / 1000} s`)),
        POLL_TIMEOUT_MS,
      );
      try {
        const data = await fetcherRef.current(ctrl.signal);
        if (!stopped) setState({ key, data, error: null });
      } catch (e: unknown) {
        if (stopped) return;
        if (e instanceof UnauthorizedError) unauthorized();
        const error = errorMessage(e);
        setState((prev) => ({ key, data: prev.key === key || keepOnKeyChange ? prev.data : null, error }));
      } finally {
        clearTimeout(timeout);
        if (!stopped) timer = setTimeout(() => void poll(), intervalMs);
      }
    };

    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
      inflight?.abort();
    };
  }, [key, intervalMs, tick, unauthorized, keepOnKeyChange]);

  const refresh = useCallback(() => setTick((t) => t + 1), []);
  const current = state.key === key || keepOnKeyChange;
  const data = current ? state.data : null;
  const error = current ? state.error : null;
  return { data, error, loading: data === null && error === null, refresh };
}
