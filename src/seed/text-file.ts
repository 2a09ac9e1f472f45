import { readFileSync, statSync } from 'node:fs';

/** Largest seed file (a CSV or a `file:` reference) the loader reads: seed data is catalog data. */
export const MAX_SEED_FILE_BYTES = 16 * 1024 * 1024;

/** A file's text, or why it cannot be used: too large, or not UTF-8 (with the line of the first bad byte). */
export type TextFile = { ok: true; text: string } | { ok: false; line: number; message: string };

/**
 * Reads a file as strict UTF-8. Node's `readFileSync(path, 'utf8')` would replace invalid bytes
 * with U+FFFD and load corrupted text without a word; this refuses such a file instead, and one
 * larger than {@link MAX_SEED_FILE_BYTES}.
 */
export function readTextFile(path: string): TextFile {
  const size = statSync(path).size;
  if (size > MAX_SEED_FILE_BYTES) {
    return { ok: false, line: 1, message: `${size} bytes: a seed file is at most ${MAX_SEED_FILE_BYTES} bytes (16 MiB)` };
  }
  const bytes = readFileSync(path);
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
