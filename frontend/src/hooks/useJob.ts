import { fetchJob, type JobDetail } from '../api.ts';
import { usePoll, type PollState } from './usePoll.ts';

/** `GET /api/jobs/{id}` on mount and every `intervalMs` (1 s). */
export function useJob(id: string, intervalMs = 1000): PollState<JobDetail> {
  return usePoll((signal) => fetchJob(id, signal), intervalMs, id);
}
