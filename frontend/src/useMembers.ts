import { useEffect, useState } from 'react';
import { fetchMembers, type MembersResponse } from './api.ts';

export interface MembersState {
  /** Last successful answer; kept while the connection is down. */
  data: MembersResponse | null;
  /** Message of the last failed poll, `null` once a poll succeeds again. */
  error: string | null;
}

/**
 * Polls `GET /api/members` every `intervalMs`. Polls never overlap: the next
 * one is scheduled when the previous one settles, and a request that takes
 * longer than the interval (min. 1 s) is aborted and counted as a failure.
 */
export function useMembers(intervalMs = 1000): MembersState {
  const [state, setState] = useState<MembersState>({ data: null, error: null });

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let inflight: AbortController | undefined;

    const poll = async (): Promise<void> => {
      const ctrl = new AbortController();
      inflight = ctrl;
      const timeout = setTimeout(() => ctrl.abort(), Math.max(intervalMs, 1000));
      try {
        const data = await fetchMembers(ctrl.signal);
        if (!stopped) setState({ data, error: null });
      } catch (e: unknown) {
        if (!stopped) {
          const error = e instanceof Error ? e.message : String(e);
          setState((prev) => ({ data: prev.data, error }));
        }
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
  }, [intervalMs]);

  return state;
}
