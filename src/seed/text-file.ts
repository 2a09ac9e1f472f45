import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';

/** Largest seed file (a CSV or a `file:` reference) the loader reads: seed data is catalog data. */
export const MAX_SEED_FILE_BYTES = 16 * 1024 * 1024;

/** A file's text, or why it cannot be used: too large, not a regular file, or not UTF-8 (with the line of the first bad byte). */
export type TextFile = { ok: true; text: string } | { ok: false; line: number; message: string };

// O_NONBLOCK: opening a FIFO for reading then returns at once instead of waiting for a writer
// (which would block the seed while it holds its transaction and lock); it changes nothing for a
// regular file. O_NOFOLLOW: the path was resolved already, a symlink put there since is refused.
// Neither exists on Windows (undefined there): 0 leaves the flag out.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);

/**
 * Reads a file as strict UTF-8, refusing what is not a regular file (a FIFO, a device such as
 * /dev/zero, a socket: checked on the open file, before any byte is read) and a file larger than
 * {@link MAX_SEED_FILE_BYTES} (read at most one byte past the cap, so a file that grows while it
 * is read is refused too). Node's `readFileSync(path, 'utf8')` would replace invalid bytes with
 * U+FFFD and load corrupted text without a word; this refuses such a file instead. Throws only
 * what opening the file throws (ENOENT, EACCES, ELOOP, …).
 */
export function readTextFile(path: string): TextFile {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) return { ok: false, line: 1, message: `${fileKind(stats)}, not a regular file: the seed reads only regular files` };
    if (stats.size > MAX_SEED_FILE_BYTES) return tooLarge(stats.size);
    const bytes = readAtMost(fd, MAX_SEED_FILE_BYTES + 1, stats.size);
    if (bytes.length > MAX_SEED_FILE_BYTES) return tooLarge(bytes.length, 'at least ');
    return decode(bytes);
  } finally {
    closeSync(fd);
  }
}

/** What kind of file `stats` describes, for a message: `a FIFO`, `a character device`, … */
export function fileKind(stats: Stats): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isDirectory()) return 'a folder';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  if (stats.isSymbolicLink()) return 'a symlink';
  return 'a special file';
}

function tooLarge(size: number, prefix = ''): TextFile {
  return { ok: false, line: 1, message: `${prefix}${size} bytes: a seed file is at most ${MAX_SEED_FILE_BYTES} bytes (16 MiB)` };
}

/** Up to `limit` bytes of an open file, from its start. */
function readAtMost(fd: number, limit: number, expected: number): Buffer {
  const buffer = Buffer.allocUnsafe(Math.min(limit, Math.max(expected + 1, 64 * 1024)));
  let length = 0;
  let grown = buffer;
  for (;;) {
    if (length === grown.length) {
      if (grown.length >= limit) break;
      const next = Buffer.allocUnsafe(Math.min(limit, grown.length * 2));
      grown.copy(next, 0, 0, length);
      grown = next;
    }
    const n = readSync(fd, grown, length, grown.length - length, length);
    if (n === 0) break;
    length += n;
  }
  return grown.subarray(0, length);
}

function decode(bytes: Uint8Array): TextFile {
  try {
    return { ok: true, text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    const offset = firstInvalidByte(bytes);
    let line = 1;
    for (let i = 0; i < offset; i += 1) if (bytes[i] === 0x0a) line += 1;
    const hex = bytes[offset]?.toString(16).padStart(2, '0') ?? '';
    return { ok: false, line, message: `not UTF-8: byte 0x${hex} at offset ${offset} (save the file as UTF-8)` };
  }
}

/**
 * Offset of the first byte of the first invalid UTF-8 sequence. The shortest prefix that a
 * streaming strict decoder refuses is found by binary search (an incomplete sequence at the end
 * of a prefix is not refused in streaming mode, so refusal grows with the prefix); the bad
 * sequence starts at most 3 bytes before that prefix ends, where the text was last complete.
 */
function firstInvalidByte(bytes: Uint8Array): number {
  const refuses = (length: number, stream = true) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, length), { stream });
      return false;
    } catch {
      return true;
    }
  };
  let low = 0;
  let high = bytes.length; // refuses(high) holds
  while (high - low > 1) {
    const mid = (low + high) >>> 1;
    if (refuses(mid)) high = mid;
    else low = mid;
  }
  for (let start = high - 1; start > Math.max(0, high - 4); start -= 1) {
    if (!refuses(start, false)) return start;
  }
  return Math.max(0, high - 4);
}
