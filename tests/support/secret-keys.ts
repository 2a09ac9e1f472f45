import { randomBytes } from 'node:crypto';
import { parseSecretKeys, type SecretKeyRing } from '../../src/db/secrets.ts';

/** A DB_SECRET_KEYS entry with a fresh random key: `id:base64key`. */
export function keyEntry(id: string): string {
  return `${id}:${randomBytes(32).toString('base64')}`;
}

/** A ring of the given entries (`keyEntry(...)`), sealing with `currentId` (default the first). */
export function ringOf(entries: string[], currentId?: string): SecretKeyRing {
  return parseSecretKeys(entries.join(','), { source: 'DB_SECRET_KEYS', ...(currentId === undefined ? {} : { currentId }) });
}

/** The key list of the tests that only need some key: one key, id `test`. */
export const TEST_SECRET_KEYS = keyEntry('test');
/** The ring of {@link TEST_SECRET_KEYS}. */
export const testRing = ringOf([TEST_SECRET_KEYS]);
