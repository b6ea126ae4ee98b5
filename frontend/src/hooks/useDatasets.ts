import { fetchDatasets, type DatasetsResponse } from '../api.ts';
import { usePoll, type PollState } from './usePoll.ts';

/** `GET /api/datasets` on mount and every `intervalMs` (30 s: datasets rarely change). */
export function useDatasets(intervalMs = 30_000): PollState<DatasetsResponse> {
  return usePoll(fetchDatasets, intervalMs);
}
