import type { JobState, MemberState } from '../api.ts';

/** A colored pill naming a member's or a job's state (`badge badge-<state>`). */
export function StateBadge({ state }: { state: MemberState | JobState }) {
  return <span className={`badge badge-${state}`}>{state}</span>;
}
