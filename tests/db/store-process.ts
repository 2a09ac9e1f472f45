/**
 * A process on an embedded store, driven by tests/db/pglite-store.test.ts. Prints one JSON line per
 * event on stdout and reads commands from stdin, one per line.
 *
 *   hold DIR LABEL…   opens DIR with createDb, writes a row per label, prints {event:'held'}; then
 *                     `write LABEL` writes a row ({event:'wrote'}); end of stdin closes and exits 0
 *   write DIR LABEL…  opens DIR, writes a row per label, closes, exits 0
 *   lock DIR          the lock alone (no PGlite): prints {event:'ready'}; `go T` waits until the
 *                     wall clock reaches T (ms) and takes the lock ({event:'won'} or 'lost'),
 *                     holding it until `release`
 * A failure prints {event:'error', name, message, pid, path} and exits 1.
 */
import { createInterface } from 'node:readline';
import { sql } from 'kysely';
import { createDb } from '../../src/db/create-db.ts';
import { StoreLockedError } from '../../src/db/errors.ts';
import { acquireStoreLock, type StoreLock } from '../../src/db/store-lock.ts';

const [mode, dir, ...labels] = process.argv.slice(2);
if (dir === undefined) throw new Error('usage: store-process.ts hold|write|lock DIR [LABEL…]');

function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);
}

function errorFields(error: unknown): Record<string, unknown> {
  const e = error as { name?: unknown; message?: unknown; pid?: unknown; path?: unknown };
  return { name: e.name, message: e.message ?? String(error), holder: e.pid, path: e.path };
}

const commands = () => createInterface({ input: process.stdin });

if (mode === 'lock') {
  let lock: StoreLock | undefined;
  emit('ready');
  for await (const line of commands()) {
    const [command, arg] = line.split(' ');
    if (command === 'go') {
      const at = Number(arg);
      while (performance.timeOrigin + performance.now() < at) {
        // Spin until the agreed instant, so that the contenders really race.
      }
      try {
        lock = acquireStoreLock(dir);
        emit('won');
      } catch (error) {
        emit(error instanceof StoreLockedError ? 'lost' : 'error', errorFields(error));
      }
    } else if (command === 'release') {
      lock?.release();
      lock = undefined;
      emit('released');
    }
  }
} else {
  const db = createDb({ kind: 'pglite', storage: dir });
  const write = (label: string) =>
    sql`insert into notes (label, pid) values (${label}, ${process.pid})`.execute(db);
  try {
    await sql`create table if not exists notes (label text primary key, pid int not null)`.execute(db);
    for (const label of labels) await write(label);
    if (mode === 'hold') {
      emit('held');
      for await (const line of commands()) {
        const [command, label] = line.split(' ');
        if (command === 'write' && label !== undefined) {
          await write(label);
          emit('wrote', { label });
        }
      }
    }
    await db.destroy();
    emit('closed');
  } catch (error) {
    emit('error', errorFields(error));
    await db.destroy().catch(() => {});
    process.exitCode = 1;
  }
}
