import { fetchModels, type ModelsResponse } from '../api.ts';
import { usePoll, type PollState } from './usePoll.ts';

/** `GET /api/models` on mount and every `intervalMs` (10 s). */
export function useModels(intervalMs = 10_000): PollState<ModelsResponse> {
  return usePoll(fetchModels, intervalMs);
}
