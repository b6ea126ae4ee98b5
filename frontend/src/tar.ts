// A folder picked in the browser as one POSIX tar (ustar) archive, for
// `POST /api/datasets/{name}/upload`. The archive is a Blob of headers and the picked files
// themselves: nothing is read into memory here; the browser streams the files as it sends.

const BLOCK = 512;
/** The largest file a ustar header can state (11 octal digits). */
export const MAX_TAR_FILE = 8 ** 11 - 1;

/** A file and where it goes in the archive (`pics/train/shirt/1.png`). */
export interface TarEntry {
  path: string;
  file: Blob;
  /** Modification time, ms since the epoch. */
  mtimeMs?: number;
}

const encoder = new TextEncoder();

function writeText(block: Uint8Array, offset: number, length: number, bytes: Uint8Array): void {
  block.set(bytes.subarray(0, length), offset);
}

/** `n` as `digits` octal digits and a NUL. */
function octal(n: number, digits: number): Uint8Array {
  return encoder.encode(`${Math.floor(n).toString(8).padStart(digits, '0')}\0`);
}

/** Splits a path into ustar's prefix (≤155 bytes) and name (≤100 bytes) at a `/`. */
export function splitPath(path: string): { prefix: Uint8Array; name: Uint8Array } {
  const bytes = encoder.encode(path);
  if (bytes.length <= 100) return { prefix: new Uint8Array(0), name: bytes };
  for (let i = bytes.length - 1; i > 0; i--) {
    if (bytes[i] !== 0x2f) continue;
    const prefix = bytes.subarray(0, i);
    const name = bytes.subarray(i + 1);
    if (prefix.length <= 155 && name.length <= 100 && name.length > 0) return { prefix, name };
  }
  throw new Error(`${path}: the path is too long for a tar archive (at most 255 bytes, a file name at most 100)`);
}

/** The 512-byte ustar header of a regular file. */
export function header(path: string, size: number, mtimeMs = 0): Uint8Array {
  if (size > MAX_TAR_FILE) throw new Error(`${path}: a file in a tar archive holds at most 8 GiB`);
  const { prefix, name } = splitPath(path);
  const h = new Uint8Array(BLOCK);
  writeText(h, 0, 100, name);
  writeText(h, 100, 8, octal(0o644, 7));
  writeText(h, 108, 8, octal(0, 7));
  writeText(h, 116, 8, octal(0, 7));
  writeText(h, 124, 12, octal(size, 11));
  writeText(h, 136, 12, octal(mtimeMs / 1000, 11));
  h.fill(0x20, 148, 156); // the checksum counts as spaces while it is computed
  h[156] = 0x30; // '0': a regular file
  writeText(h, 257, 6, encoder.encode('ustar\0'));
  writeText(h, 263, 2, encoder.encode('00'));
  writeText(h, 345, 155, prefix);
  const sum = h.reduce((a, b) => a + b, 0);
  writeText(h, 148, 8, encoder.encode(`${sum.toString(8).padStart(6, '0')}\0 `));
  return h;
}

/** The archive of `entries`: each header, the file, zeros up to a block, and two zero blocks. */
export function tarBlob(entries: readonly TarEntry[]): Blob {
  const parts: BlobPart[] = [];
  for (const { path, file, mtimeMs } of entries) {
    parts.push(header(path, file.size, mtimeMs ?? 0) as Uint8Array<ArrayBuffer>, file);
    const pad = (BLOCK - (file.size % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(2 * BLOCK));
  return new Blob(parts, { type: 'application/x-tar' });
}

/** The files of an `<input webkitdirectory>` as tar entries, under their folder's name. */
export function folderEntries(files: Iterable<File>): TarEntry[] {
  return Array.from(files, (file) => ({
    path: file.webkitRelativePath || file.name,
    file,
    mtimeMs: file.lastModified,
  }));
}
