import { describe, expect, it } from 'vitest';
import { header, splitPath, tarBlob } from './tar.ts';

const decoder = new TextDecoder();

/** A field of a header as text, up to its first NUL. */
function field(h: Uint8Array, offset: number, length: number): string {
  const bytes = h.subarray(offset, offset + length);
  const end = bytes.indexOf(0);
  return decoder.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

describe('tar', () => {
  it('writes ustar headers that tar readers check', () => {
    const h = header('pics/train/shirt/1.png', 1234, 1_700_000_000_000);
    expect(field(h, 0, 100)).toBe('pics/train/shirt/1.png');
    expect(parseInt(field(h, 124, 12), 8)).toBe(1234);
    expect(parseInt(field(h, 136, 12), 8)).toBe(1_700_000_000);
    expect(field(h, 156, 1)).toBe('0');
    expect(field(h, 257, 6)).toBe('ustar');
    // The checksum: the sum of the header's bytes with its own field as spaces.
    const stated = parseInt(field(h, 148, 8), 8);
    const copy = h.slice();
    copy.fill(0x20, 148, 156);
    expect(stated).toBe(copy.reduce((a, b) => a + b, 0));
  });

  it('puts a long path into the prefix, and refuses one that cannot fit', () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(90)}.png`;
    const { prefix, name } = splitPath(long);
    expect(decoder.decode(prefix)).toBe('d'.repeat(120));
    expect(decoder.decode(name)).toBe(`${'f'.repeat(90)}.png`);
    expect(() => splitPath(`a/${'f'.repeat(120)}.png`)).toThrow(/too long/);
  });

  it('pads every file to a block and ends with two zero blocks', async () => {
    const blob = tarBlob([
      { path: 'a/x.png', file: new Blob(['hello']) },
      { path: 'a/y.png', file: new Blob([new Uint8Array(512)]) },
    ]);
    // header + 1 padded block, header + 1 block, 2 end blocks.
    expect(blob.size).toBe(512 * 6);
    const bytes = new Uint8Array(await blob.arrayBuffer());
    expect(decoder.decode(bytes.subarray(512, 517))).toBe('hello');
    expect(field(bytes.subarray(1024), 0, 100)).toBe('a/y.png');
    expect(bytes.subarray(2048).every((b) => b === 0)).toBe(true);
    expect(blob.type).toBe('application/x-tar');
  });
});
