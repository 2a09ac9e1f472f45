/**
 * Cursors of lists whose keyset is one integer (a prompt's version, a tool's id), where
 * cursor.ts's (timestamp, uuid) position does not fit. Same shape and checks: opaque base64url
 * JSON, valid only for the list, tenant and scope it was made for.
 */
import { createHash } from 'node:crypto';
import { ValidationError } from '../db/errors.ts';
import type { CursorScope, Page } from './cursor.ts';

/** A scope text of any length as a short stable value (a prompt name can be 200 characters). */
export function scopeDigest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}

/** An opaque cursor after integer key `key` in the list `scope` names. */
export function encodeIntCursor(scope: CursorScope, key: number): string {
  return Buffer.from(JSON.stringify({ v: 1, l: scope.list, t: scope.tenantId, s: scope.scope, n: key })).toString('base64url');
}

/** The integer key a cursor holds, after checking it was made for this list, tenant and scope; else ValidationError('cursor'). */
export function decodeIntCursor(cursor: unknown, expected: CursorScope): number {
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > 1000 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new ValidationError('cursor', 'is not a cursor returned by this list');
  }
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new ValidationError('cursor', 'is not a cursor returned by this list');
  }
  const p = payload as Record<string, unknown>;
  if (typeof payload !== 'object' || payload === null || p.v !== 1 || typeof p.n !== 'number' || !Number.isSafeInteger(p.n) || p.n < 0 || p.n > 2_147_483_647) {
    throw new ValidationError('cursor', 'is not a cursor returned by this list');
  }
  if (p.l !== expected.list || p.t !== expected.tenantId || p.s !== expected.scope) {
    throw new ValidationError('cursor', `was made for another list, not for ${expected.list} of this scope`);
  }
  return p.n;
}

/** Rows fetched with `limit + 1` → the page of the first `limit` and the cursor after its last row's `key(row)`. */
export function toIntPage<T>(rows: T[], limit: number, scope: CursorScope, key: (row: T) => number): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > limit && last !== undefined ? encodeIntCursor(scope, key(last)) : null };
}
