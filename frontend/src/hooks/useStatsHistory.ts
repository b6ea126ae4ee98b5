import { useEffect, useState } from 'react';
import { errorMessage, fetchStats, UnauthorizedError, type Sample } from '../api.ts';
import { useUnauthorized } from '../authContext.ts';
import { useLiveContext } from '../live.tsx';

/** Samples kept: 10 minutes at one a second. */
export const HISTORY_LIMIT = 600;

/** Merges sample lists by time (a later copy of the same instant wins), keeping the newest `limit`. */
export function mergeSamples(a: readonly Sample[], b: readonly Sample[], limit = HISTORY_LIMIT): Sample[] {
  const byTime = new Map<number, Sample>();
  for (const s of a) byTime.set(s.at_ms, s);
  for (const s of b) byTime.set(s.at_ms, s);
  return [...byTime.values()].sort((x, y) => x.at_ms - y.at_ms).slice(-limit);
}

export interface StatsHistory {
  samples: Sample[];
  /** Why `GET /api/stats` failed (the live samples are still collected). */
  error: string | null;
}

/** The answering node's history (`GET /api/stats`, once), then each live snapshot's sample. */
export function useStatsHistory(limit = HISTORY_LIMIT): StatsHistory {
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState<string | null>(null);
  const unauthorized = useUnauthorized();
  const sample = useLiveContext().snapshot?.sample ?? null;

  useEffect(() => {
    const ctrl = new AbortController();
    fetchStats(ctrl.signal).then(
      ({ samples: history }) => setSamples((live) => mergeSamples(history, live, limit)),
      (e: unknown) => {
        if (ctrl.signal.aborted) return;
        if (e instanceof UnauthorizedError) unauthorized();
        setError(errorMessage(e));
      },
    );
    return () => ctrl.abort();
  }, [limit, unauthorized]);

  useEffect(() => {
    if (sample) setSamples((prev) => mergeSamples(prev, [sample], limit));
  }, [sample, limit]);

  return { samples, error };
}
