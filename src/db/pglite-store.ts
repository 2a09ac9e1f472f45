/**
 * Opening the embedded store: PGlite with pgvector, in a directory (locked: one process at a time,
 * see store-lock.ts) or in memory (`memory://`, private to its instance, not locked).
 */
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { resolveStorage } from './config.ts';
import { StoreOpenError } from './errors.ts';
import { acquireStoreLock } from './store-lock.ts';

/**
 * Opens PGlite at `storage`: a directory (created when missing; a relative one is resolved against
 * the working directory, see resolveStorage) under its single-writer lock, released when the instance is closed; or a
 * `scheme://` data dir as PGlite reads it (`memory://`), unlocked. Throws StoreLockedError when
 * another process (or another database of this one) has the directory open, StoreOpenError when
 * it cannot be opened.
 */
export async function openPglite(storage: string): Promise<PGlite> {
  const dir = resolveStorage(storage);
  if (dir.includes('://')) return create(dir, dir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new StoreOpenError(dir, (error as Error).message, error);
  }
  const lock = acquireStoreLock(dir);
  let pglite: PGlite;
  try {
    pglite = await create(dir, dir);
  } catch (error) {
    lock.release();
    throw error;
  }
  // Kysely's PGliteDialect closes the instance on db.destroy(): release the lock once it is closed.
  // A close that failed leaves the instance open, and the lock held until the process exits.
  const close = pglite.close.bind(pglite);
  pglite.close = async () => {
    try {
      await close();
    } finally {
      if (pglite.closed) lock.release();
    }
  };
  return pglite;
}

async function create(dataDir: string, shown: string): Promise<PGlite> {
  try {
    return await PGlite.create(dataDir, { extensions: { vector } });
  } catch (error) {
    throw new StoreOpenError(shown, describeFailure(error), error);
  }
}

/**
 * A message for what PGlite.create rejected with. Its Emscripten file system throws `ErrnoError`,
 * which is not an Error and carries only a WASI errno number (String() gives "[object Object]");
 * a WebAssembly abort is a RuntimeError "Aborted()".
 */
function describeFailure(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && 'errno' in error && typeof error.errno === 'number') {
    const name = WASI_ERRNO[error.errno];
    return `file system error ${name ?? 'errno'} (errno ${error.errno} of PGlite's file system)`;
  }
  return String(error);
}

/** The errno numbers of Emscripten's (WASI) file system that an open can meet. */
const WASI_ERRNO: Record<number, string> = {
  2: 'EACCES',
  10: 'EBUSY',
  19: 'EDQUOT',
  20: 'EEXIST',
  28: 'EINVAL',
  29: 'EIO',
  31: 'EISDIR',
  33: 'EMFILE',
  44: 'ENOENT',
  51: 'ENOSPC',
  54: 'ENOTDIR',
  55: 'ENOTEMPTY',
  63: 'EPERM',
  69: 'EROFS',
};
