// Typed client for the node's HTTP API.

export type MemberState = 'alive' | 'suspect' | 'failed' | 'left';

export interface Member {
  id: string;
  /** Start time of this incarnation of the process, ms since the epoch. */
  generation: number;
  incarnation: number;
  state: MemberState;
  host: string;
  /** `host:port` of the member's HTTP server (dashboard), if known. */
  http: string | null;
  /** Milliseconds since the answering node last heard from this member. */
  last_heard_ms: number | null;
}

export interface MembersResponse {
  /** Id of the node that answered the request. */
  node: string;
  coordinator: string | null;
  members: Member[];
}

const STATES: readonly string[] = ['alive', 'suspect', 'failed', 'left'];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNullable<T>(v: unknown, check: (x: unknown) => x is T): v is T | null {
  return v === null || check(v);
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number';

function parseMember(v: unknown): Member {
  if (
    isRecord(v) &&
    isString(v.id) &&
    isNumber(v.generation) &&
    isNumber(v.incarnation) &&
    isString(v.state) &&
    STATES.includes(v.state) &&
    isString(v.host) &&
    isNullable(v.http, isString) &&
    isNullable(v.last_heard_ms, isNumber)
  ) {
    return {
      id: v.id,
      generation: v.generation,
      incarnation: v.incarnation,
      state: v.state as MemberState,
      host: v.host,
      http: v.http,
      last_heard_ms: v.last_heard_ms,
    };
  }
  throw new Error('malformed member in /api/members response');
}

export function parseMembersResponse(v: unknown): MembersResponse {
  if (
    isRecord(v) &&
    isString(v.node) &&
    isNullable(v.coordinator, isString) &&
    Array.isArray(v.members)
  ) {
    return { node: v.node, coordinator: v.coordinator, members: v.members.map(parseMember) };
  }
  throw new Error('malformed /api/members response');
}

export async function fetchMembers(signal?: AbortSignal): Promise<MembersResponse> {
  const res = await fetch('/api/members', { signal, headers: { Accept: 'application/json' } });
  if (!res.ok) {
    throw new Error(`GET /api/members: HTTP ${res.status}`);
  }
  const body: unknown = await res.json();
  return parseMembersResponse(body);
}
