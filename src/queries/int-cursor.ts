/**
 * Cursors of lists whose keyset is one integer (a prompt's version, a tool's id), where
 * cursor.ts's (timestamp, uuid) position does not fit. Same shape and checks: opaque base64url
 * JSON, valid only for the list, tenant and scope it was made for.
 */
import { createHash } from 'node:crypto';
import { cursorOf, cursorPayload, type CursorScope, type Page } from './cursor.ts';

/** A scope text of any length as a short stable value (a prompt name can be 200 characters). */
export function scopeDigest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}

/** An opaque cursor after integer key `key` in the list `scope` names. */
export function encodeIntCursor(scope: CursorScope, key: number): string {
  return cursorOf(scope, { n: key });
}

/** The integer key a cursor holds, after checking it was made for this list, tenant and scope; else ValidationError('cursor'). */
export function decodeIntCursor(cursor: unknown, expected: CursorScope): number {
  const p = cursorPayload(
    cursor,
    expected,
    (p) => typeof p.n === 'number' && Number.isSafeInteger(p.n) && p.n >= 0 && p.n <= 2_147_483_647,
    'this scope',
  );
  return p.n as number;
}

/** Rows fetched with `limit + 1` → the page of the first `limit` and the cursor after its last row's `key(row)`. */
export function toIntPage<T>(rows: T[], limit: number, scope: CursorScope, key: (row: T) => number): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > limit && last !== undefined ? encodeIntCursor(scope, key(last)) : null };
}
