// The JSON the Rust types send, as `bus-schemas/tests/wire_json.rs` writes and checks it in
// `src/test/wire/`, parsed with the frontend's schemas: every file must parse, named shapes
// must come out by name, and a field the frontend does not read must be listed in `IGNORED`
// on purpose. A field added, renamed or reshaped on the Rust side fails this test (or the Rust
// one) until the schemas follow.
import { describe, expect, it } from 'vitest';
import type { ZodType } from 'zod';
import { jobRecordSchema, queryResultSchema } from './jobs.ts';
import { fileInfoSchema } from './storage.ts';

const files = import.meta.glob<{ default: unknown }>('../test/wire/*.json', { eager: true });

function fixture(name: string): unknown {
  const file = files[`../test/wire/${name}.json`];
  if (!file) throw new Error(`no wire fixture ${name}.json`);
  return file.default;
}

/** Fields the frontend does not read, on purpose (`[]` stands for every item of an array). */
const IGNORED = new Set([
  'checkpoint_epochs',
  'checkpoint_version',
  'attempts[].generation',
  'attempts[].started_ms',
  'attempts[].died',
  'progress.queries',
  'progress.total',
  'progress.query_rate',
  'serve.next_query',
  'serve.next_batch',
  'serve.deaths',
  'versions[].blob',
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The entries of `IGNORED` some fixture has (each must: a stale entry hides nothing). */
const ignoredSeen = new Set<string>();

/** Paths of `input`'s fields that `output` (what a schema made of it) dropped. */
function unread(input: unknown, output: unknown, path: string, out: string[]): void {
  if (Array.isArray(input) && Array.isArray(output)) {
    input.forEach((v, i) => unread(v, output[i], `${path}[]`, out));
  } else if (isObject(input) && isObject(output)) {
    for (const [key, value] of Object.entries(input)) {
      const at = path ? `${path}.${key}` : key;
      if (!(key in output)) {
        if (IGNORED.has(at)) ignoredSeen.add(at);
        else out.push(at);
      } else {
        unread(value, output[key], at, out);
      }
    }
  }
}

function parse(name: string, schema: ZodType): { input: unknown; output: unknown; unread: string[] } {
  const input = fixture(name);
  const output = schema.parse(input);
  const dropped: string[] = [];
  unread(input, output, '', dropped);
  return { input, output, unread: dropped };
}

const CASES = [
  ['serve-job', jobRecordSchema],
  ['train-job', jobRecordSchema],
  ['import-job', jobRecordSchema],
  ['file', fileInfoSchema],
  ['query-result', queryResultSchema],
] as const;

describe('the wire types as Rust sends them', () => {
  it.each(CASES)('%s parses, and every field is read or ignored on purpose', (name, schema) => {
    expect(parse(name, schema).unread).toEqual([]);
  });

  it('ignores only fields the fixtures have', () => {
    for (const [name, schema] of CASES) parse(name, schema);
    expect([...IGNORED].filter((path) => !ignoredSeen.has(path))).toEqual([]);
  });

  it('reads the positional shapes by name', () => {
    const job = jobRecordSchema.parse(fixture('serve-job'));
    expect(job.serve?.pending).toEqual([{ batch_id: 19, first_query: 608, len: 32 }]);
    expect(job.serve?.proc_ms).toEqual({
      mean: 20.5,
      std: 3.25,
      median: 19.75,
      p90: 24.5,
      p95: 26,
      p99: 31.5,
    });
    expect(job.spec.kind).toBe('serve');
  });

  it('notices a field it does not know', () => {
    const job = { ...(fixture('import-job') as object), brand_new: 1 };
    const dropped: string[] = [];
    unread(job, jobRecordSchema.parse(job), '', dropped);
    expect(dropped).toEqual(['brand_new']);
  });
});
