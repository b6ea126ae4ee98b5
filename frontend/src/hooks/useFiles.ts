import { useEffect, useState } from 'react';
import { fetchFiles, type FilesResponse } from '../api.ts';
import { usePoll, type PollState } from './usePoll.ts';

/**
 * `GET /api/files?prefix=…` on mount and every `intervalMs` (5 s). When the prefix changes, the
 * previous listing stays until the new one arrives.
 */
export function useFiles(prefix = '', intervalMs = 5000): PollState<FilesResponse> {
  return usePoll((signal) => fetchFiles(prefix || undefined, signal), intervalMs, prefix, true);
}

/** `value`, once it has not changed for `delayMs`. */
export function useDebounced<T>(value: T, delayMs: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), delayMs);
    return () => clearTimeout(timer);
  }, [value, delayMs]);
  return settled;
}
