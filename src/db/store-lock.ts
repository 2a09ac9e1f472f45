/**
 * The single-writer lock of an embedded store: a file `writer.lock` inside the store's directory
 * naming the process that has the store open. PGlite keeps no lock of its own: two processes on one
 * directory both run as the only PostgreSQL on it and overwrite each other's pages (rows lost, exit 0).
 *
 * - A lock file is created complete or not at all: the record is written to a temporary file that
 *   is then hard-linked to the lock's name (link fails when the name exists), so a reader never
 *   sees a half-written lock.
 * - A holder is dead when its pid does not exist, is a zombie, or now belongs to a process started
 *   at another time (pid reuse; the start time comes from /proc on Linux), or when the machine has
 *   rebooted since (boot id). A lock taken on another host is never taken over: its process cannot
 *   be checked from here.
 * - Taking over a dead holder's lock is serialized by a marker file whose name carries the dead
 *   lock's token: only one process can create it; the one that does checks that the lock is still
 *   the dead one and replaces it (rename, atomic). Two processes finding the same stale lock thus
 *   never both win. A marker left by a taker that died in that instant is itself taken over the
 *   same way.
 * - Released by {@link StoreLock.release} (on PGlite close) and, best effort, at process exit.
 *   A process killed by a signal leaves its lock behind; the next opener takes it over.
 *
 * Everything here is synchronous: within one process no two lock operations interleave.
 */
import { randomUUID } from 'node:crypto';
import { linkSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StoreLockedError, StoreOpenError } from './errors.ts';

/** The lock's file name inside the store's directory. */
export const LOCK_FILE = 'writer.lock';

/** What a lock file holds: who holds the store and since when. */
export interface LockRecord {
  pid: number;
  host: string;
  /** Linux boot id: a lock from before a reboot is stale. */
  bootId?: string | undefined;
  /** Start time of the process (Linux: clock ticks since boot), to tell a reused pid. */
  started?: string | undefined;
  /** Unique per lock taken: names the takeover marker and tells a lock from its successor. */
  token: string;
  /** When the lock was taken (ISO 8601). */
  since: string;
}

/** A lock held by this process. */
export interface StoreLock {
  /** The store's directory (absolute). */
  dir: string;
  /** The lock file. */
  file: string;
  record: LockRecord;
  /** Removes the lock file if it is still this lock; idempotent. */
  release(): void;
}

const held = new Set<StoreLock>();
let exitHook = false;
const MAX_TAKEOVER_DEPTH = 3;

/**
 * Takes the single-writer lock of the store directory `dir` (absolute, existing), taking over a
 * lock whose holder is dead. Throws StoreLockedError naming the holder when it is alive (also when
 * it is this process), StoreOpenError when the lock file cannot be read or written.
 */
export function acquireStoreLock(dir: string): StoreLock {
  const file = join(dir, LOCK_FILE);
  const mine = ownRecord();
  // Each round ends in a win, an error, or a change of the lock seen (released, or taken over by
  // another process); a few rounds only ever run under heavy contention.
  for (let round = 0; round < 20; round++) {
    if (createExclusive(dir, file, mine)) return hold(dir, file, mine);
    const holder = readRecord(dir, file);
    if (holder === undefined) continue; // released just now
    refuseIfAlive(dir, file, holder);
    if (takeOver(dir, file, holder, mine, 0)) return hold(dir, file, mine);
  }
  throw new StoreOpenError(dir, `its lock ${file} kept changing hands; try again`);
}

/** True when the process a lock record names is still running (or cannot be checked: another host). */
export function holderAlive(record: LockRecord): boolean {
  if (record.host !== hostname()) return true;
  const bootId = currentBootId();
  if (record.bootId !== undefined && bootId !== undefined && record.bootId !== bootId) return false;
  try {
    process.kill(record.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: the process exists, under another user.
  }
  const now = processStat(record.pid);
  if (now === undefined) return true; // no /proc (not Linux): the pid exists, trust it
  if (now.state === 'Z' || now.state === 'X') return false;
  return record.started === undefined || record.started === now.started;
}

function refuseIfAlive(dir: string, file: string, holder: LockRecord): void {
  if (!holderAlive(holder)) return;
  const where = holder.host !== hostname() ? 'another host' : holder.pid === process.pid ? 'this process' : 'this host';
  throw new StoreLockedError(dir, file, holder, where);
}

/**
 * Replaces the lock at `file`, seen held by the dead `stale`, with `mine`; false when another
 * process changed it first (the caller reads it again). Throws StoreLockedError when a live process
 * is taking it over right now: that one is about to hold the store.
 */
function takeOver(dir: string, file: string, stale: LockRecord, mine: LockRecord, depth: number): boolean {
  const marker = `${file}.takeover-${stale.token}`;
  if (!createExclusive(dir, marker, mine)) {
    const taker = readRecord(dir, marker);
    if (taker === undefined) return false; // that takeover just finished
    // A marker's holder wins only while the lock is still the stale one: a taker that made its
    // marker after another had replaced the lock finds it changed and gives up. Name the real
    // holder then, not that taker (seen in CI: a loser named another loser).
    if (readRecord(dir, file)?.token !== stale.token) return false;
    refuseIfAlive(dir, marker, taker);
    // The taker died between creating the marker and removing it: take the marker over first.
    if (depth >= MAX_TAKEOVER_DEPTH) throw new StoreOpenError(dir, `stale takeover markers ${marker}…: delete them`);
    if (!takeOver(dir, marker, taker, mine, depth + 1)) return false;
  }
  try {
    // Only the holder of the marker replaces this generation of the lock; check that it is still
    // the stale one (another taker may have finished and removed its marker before we made ours).
    if (readRecord(dir, file)?.token !== stale.token) return false;
    replace(dir, file, mine);
    return true;
  } finally {
    removeIfMine(marker, mine);
  }
}

function hold(dir: string, file: string, record: LockRecord): StoreLock {
  const lock: StoreLock = {
    dir,
    file,
    record,
    release() {
      if (!held.delete(lock)) return;
      removeIfMine(file, record);
    },
  };
  held.add(lock);
  if (!exitHook) {
    exitHook = true;
    // Best effort for a process that exits without closing its database. Not run when a signal
    // kills the process: that lock is taken over by the next opener.
    process.on('exit', () => {
      for (const lock of [...held]) lock.release();
    });
  }
  removeLeftovers(dir);
  return lock;
}

/** Creates `file` holding `record` unless it exists; false when it exists. */
function createExclusive(dir: string, file: string, record: LockRecord): boolean {
  const temp = `${file}.${record.token}.tmp`;
  try {
    writeFileSync(temp, serialize(record), { flag: 'wx' });
  } catch (error) {
    throw new StoreOpenError(dir, `its lock ${file} cannot be written (${(error as Error).message})`, error);
  }
  try {
    linkSync(temp, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP') {
      // A file system without hard links: an exclusive create, whose content a reader may see
      // empty for an instant (readRecord retries that case).
      try {
        writeFileSync(file, serialize(record), { flag: 'wx' });
        return true;
      } catch (inner) {
        if ((inner as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw new StoreOpenError(dir, `its lock ${file} cannot be created (${(inner as Error).message})`, inner);
      }
    }
    throw new StoreOpenError(dir, `its lock ${file} cannot be created (${(error as Error).message})`, error);
  } finally {
    unlinkQuietly(temp);
  }
}

/** Atomically replaces `file` with one holding `record`. */
function replace(dir: string, file: string, record: LockRecord): void {
  const temp = `${file}.${record.token}.tmp`;
  try {
    writeFileSync(temp, serialize(record), { flag: 'w' });
    renameSync(temp, file);
  } catch (error) {
    unlinkQuietly(temp);
    throw new StoreOpenError(dir, `its lock ${file} cannot be replaced (${(error as Error).message})`, error);
  }
}

/** The record in `file`; undefined when there is no such file. */
function readRecord(dir: string, file: string): LockRecord | undefined {
  for (let attempt = 0; ; attempt++) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StoreOpenError(dir, `its lock ${file} cannot be read (${(error as Error).message})`, error);
    }
    const record = parse(text);
    if (record !== undefined) return record;
    // Empty: being written by the fallback of createExclusive. Anything else is not ours.
    if (text !== '' || attempt >= 5) {
      throw new StoreOpenError(
        dir,
        `its lock ${file} is not a lock this package wrote (${JSON.stringify(text.slice(0, 80))}); if no process uses the store, delete it`,
      );
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

function removeIfMine(file: string, record: LockRecord): void {
  try {
    if (parse(readFileSync(file, 'utf8'))?.token === record.token) unlinkSync(file);
  } catch {
    // Gone already, or unreadable: nothing of ours to remove.
  }
}

/** Removes markers and temporary files that dead processes left behind in `dir`. */
function removeLeftovers(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => name.startsWith(`${LOCK_FILE}.`));
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    try {
      const record = parse(readFileSync(path, 'utf8'));
      // A dead process's marker may go: whoever creates that name again finds the lock changed.
      if (record !== undefined && !holderAlive(record)) unlinkSync(path);
    } catch {
      // Removed meanwhile.
    }
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

function serialize(record: LockRecord): string {
  return `${JSON.stringify(record)}\n`;
}

function parse(text: string): LockRecord | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockRecord>;
    if (
      Number.isSafeInteger(value.pid) &&
      (value.pid as number) > 0 &&
      typeof value.host === 'string' &&
      typeof value.token === 'string' &&
      typeof value.since === 'string'
    ) {
      return value as LockRecord;
    }
  } catch {
    // Not JSON.
  }
  return undefined;
}

function ownRecord(): LockRecord {
  return {
    pid: process.pid,
    host: hostname(),
    bootId: currentBootId(),
    started: processStat(process.pid)?.started,
    token: randomUUID(),
    since: new Date().toISOString(),
  };
}

function currentBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** State and start time of a process from /proc/PID/stat (Linux); undefined elsewhere or when it is gone. */
function processStat(pid: number): { state: string; started: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses; the fields after the last
    // ')' are 3 (state) … 22 (starttime).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    const started = fields[19];
    return state === undefined || started === undefined ? undefined : { state, started };
  } catch {
    return undefined;
  }
}
