// The embedded store has one writer: real processes on one DB_STORAGE directory. These tests use
// embedded PGlite whatever backend the run is on.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.ts';
import { StoreLockedError, StoreOpenError } from '../../src/db/errors.ts';
import { migrate, migrationStatus } from '../../src/db/migrator.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { tableStatus } from '../../src/db/status.ts';
import { acquireStoreLock, LOCK_FILE } from '../../src/db/store-lock.ts';
import { seed } from '../../src/seed/seed.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const SCRIPT = fileURLToPath(new URL('./store-process.ts', import.meta.url));

const dirs: string[] = [];
const children: ChildProcess[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'store-lock-test-'));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** The environment of a child: this one's, without anything that would select a server. */
function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name, value]) =>
        value !== undefined && !/^(PG[A-Z]+|DATABASE_URL|TEST_DATABASE_URL|DB_STORAGE|TEST_API_KEY|GEMINI_API_KEY)$/.test(name),
    ),
  ) as Record<string, string>;
  return { ...inherited, ...extra };
}

interface Event {
  event: string;
  pid: number;
  name?: string;
  message?: string;
  holder?: number;
  path?: string;
}

/** A child process speaking store-process.ts's protocol (or any process, for its exit and output). */
class Child {
  readonly process: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout = '';
  stderr = '';
  #events: Event[] = [];
  #wake: (() => void) | undefined;

  constructor(args: string[], env: Record<string, string> = childEnv()) {
    this.process = spawn(NODE, args, { cwd: ROOT, env });
    children.push(this.process);
    let pending = '';
    this.process.stdout!.on('data', (chunk: Buffer) => {
      this.stdout += chunk.toString();
      pending += chunk.toString();
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.startsWith('{')) this.#events.push(JSON.parse(line) as Event);
      }
      this.#wake?.();
    });
    this.process.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((done) => this.process.on('close', (code, signal) => done({ code, signal })));
    void this.exited.then(() => this.#wake?.());
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** The next event; fails if the process ends first, or the event is not `expected`. */
  async next(expected?: string): Promise<Event> {
    let ended = false;
    void this.exited.then(() => (ended = true));
    while (this.#events.length === 0) {
      if (ended || this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`pid ${this.pid} ended before ${expected ?? 'an event'}: ${this.stdout}${this.stderr}`);
      }
      await new Promise<void>((wake) => (this.#wake = wake));
    }
    const event = this.#events.shift()!;
    if (expected !== undefined && event.event !== expected) {
      throw new Error(`pid ${this.pid}: expected ${expected}, got ${JSON.stringify(event)} ${this.stderr}`);
    }
    return event;
  }

  send(line: string): void {
    this.process.stdin!.write(`${line}\n`);
  }

  end(): void {
    this.process.stdin!.end();
  }
}

const storeProcess = (mode: 'hold' | 'write' | 'lock', dir: string, ...labels: string[]) =>
  new Child([SCRIPT, mode, dir, ...labels]);

async function withStore<T>(dir: string, fn: (db: Kysely<DB>) => Promise<T>): Promise<T> {
  const db = createDb({ kind: 'pglite', storage: dir });
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

const notes = (dir: string) =>
  withStore(dir, async (db) => (await sql<{ label: string; pid: number }>`select label, pid from notes order by label`.execute(db)).rows);

describe('the embedded store has one writer', () => {
  it('a second process fails at once, naming the store and the holder, and the first one’s writes stay', async () => {
    const store = join(tempDir(), 'store');
    const a = storeProcess('hold', store, 'a1', 'a2');
    await a.next('held');
    const b = storeProcess('write', store, 'b1', 'b2');
    // B ends while A still holds the store (A waits for a command): B did not wait for the lock.
    const failure = await b.next('error');
    expect(await b.exited).toEqual({ code: 1, signal: null });
    expect(failure).toMatchObject({ name: 'StoreLockedError', holder: a.pid, path: store });
    expect(failure.message).toContain(`embedded database ${store} is in use by pid ${a.pid}`);
    a.send('write a3');
    await a.next('wrote');
    a.end();
    await a.next('closed');
    expect(await a.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(join(store, LOCK_FILE))).toBe(false);
    expect(await notes(store)).toEqual([
      { label: 'a1', pid: a.pid },
      { label: 'a2', pid: a.pid },
      { label: 'a3', pid: a.pid },
    ]);
  });

  it('a second database of the same process fails until the first is destroyed', async () => {
    const store = join(tempDir(), 'store');
    const first = createDb({ kind: 'pglite', storage: store });
    const second = createDb({ kind: 'pglite', storage: store });
    try {
      await sql`create table notes (label text)`.execute(first);
      const refused = sql`select 1`.execute(second);
      await expect(refused).rejects.toBeInstanceOf(StoreLockedError);
      await expect(refused).rejects.toMatchObject({
        pid: process.pid,
        path: store,
        message: expect.stringContaining(`embedded database ${store} is already open in this process (pid ${process.pid}`),
      });
      await first.destroy();
      expect(existsSync(join(store, LOCK_FILE))).toBe(false);
      // The lock went with the first database: the second one opens now, on the same data.
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from notes`.execute(second);
      expect(rows).toEqual([{ n: 0 }]);
      expect(JSON.parse(readFileSync(join(store, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    } finally {
      await first.destroy();
      await second.destroy();
    }
    expect(existsSync(join(store, LOCK_FILE))).toBe(false);
  });

  it('takes over the lock of a process that was killed, keeping what it committed', async () => {
    const store = join(tempDir(), 'store');
    const a = storeProcess('hold', store, 'a1', 'a2');
    await a.next('held');
    a.process.kill('SIGKILL');
    expect(await a.exited).toEqual({ code: null, signal: 'SIGKILL' });
    // The dead process's lock is still there: the next opener must take it over.
    expect(JSON.parse(readFileSync(join(store, LOCK_FILE), 'utf8'))).toMatchObject({ pid: a.pid });
    const b = storeProcess('write', store, 'b1');
    await b.next('closed');
    expect(await b.exited).toEqual({ code: 0, signal: null });
    expect(readdirSync(store).filter((name) => name.startsWith(LOCK_FILE))).toEqual([]);
    expect(await notes(store)).toEqual([
      { label: 'a1', pid: a.pid },
      { label: 'a2', pid: a.pid },
      { label: 'b1', pid: b.pid },
    ]);
  });

  it('two takeovers of one stale lock at the same instant: exactly one wins, the others name it', async () => {
    const dir = tempDir();
    const file = join(dir, LOCK_FILE);
    const dead = storeProcess('lock', dir);
    await dead.next('ready');
    dead.send('go 0');
    await dead.next('won');
    dead.process.kill('SIGKILL');
    await dead.exited;
    const stale = readFileSync(file, 'utf8');
    const racers = Array.from({ length: 4 }, () => storeProcess('lock', dir));
    for (const racer of racers) await racer.next('ready');
    for (let round = 0; round < 15; round++) {
      writeFileSync(file, stale); // the killed process's lock, once more
      const at = Date.now() + 50;
      for (const racer of racers) racer.send(`go ${at}`);
      const results = await Promise.all(racers.map((racer) => racer.next()));
      const winners = results.filter((r) => r.event === 'won');
      expect(winners, JSON.stringify(results)).toHaveLength(1);
      const winner = winners[0]!.pid;
      expect(results.filter((r) => r.event === 'lost').map((r) => r.holder)).toEqual([winner, winner, winner]);
      expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ pid: winner });
      for (const racer of racers) racer.send('release');
      await Promise.all(racers.map((racer) => racer.next('released')));
      expect(readdirSync(dir)).toEqual([]);
    }
    for (const racer of racers) racer.end();
    await Promise.all(racers.map((racer) => racer.exited));
  });

  it('a store PGlite cannot open: `npm start` names the store and the cause, and leaves no lock', async () => {
    const store = join(tempDir(), 'store');
    mkdirSync(store);
    writeFileSync(join(store, 'base'), 'a file where PostgreSQL keeps a directory');
    const start = new Child(['src/cli/database.ts', 'start'], childEnv({ DB_STORAGE: store }));
    expect(await start.exited).toEqual({ code: 1, signal: null });
    // PGlite's file system rejects with an ErrnoError that is not an Error: once "start: [object Object]".
    expect(start.stderr).toContain(
      `start: embedded database ${store} could not be opened: file system error ENOTDIR (errno 54 of PGlite's file system)\n`,
    );
    expect(existsSync(join(store, LOCK_FILE))).toBe(false);
  });

  it('two `npm start` at once on a fresh store: one succeeds, the other names it, and nothing is lost', async () => {
    const store = join(tempDir(), 'store');
    // Given relative to the working directory, as `.data/pglite` is: every message shows it absolute.
    const env = childEnv({ DB_STORAGE: relative(ROOT, store) });
    const starts = [new Child(['src/cli/database.ts', 'start'], env), new Child(['src/cli/database.ts', 'start'], env)];
    const exits = await Promise.all(starts.map((s) => s.exited));
    const winner = starts.find((_, i) => exits[i]!.code === 0);
    const loser = starts.find((_, i) => exits[i]!.code === 1);
    expect(winner && loser, `${starts.map((s) => s.stdout + s.stderr).join('\n---\n')}`).toBeTruthy();
    // The target first, absolute (describeTarget).
    expect(winner!.stdout.split('\n')[0]).toBe(`embedded ${store}`);
    expect(loser!.stderr).toMatch(new RegExp(`^start: embedded database ${store} is in use by pid ${winner!.pid} `, 'm'));
    expect(existsSync(join(store, LOCK_FILE))).toBe(false);
    await withStore(store, async (db) => {
      expect(await migrate(db)).toEqual([]);
      expect((await migrationStatus(db)).every((m) => m.state === 'applied')).toBe(true);
      // Fully seeded: seeding again changes nothing in any table.
      const before = await contents(db);
      expect(before.find((t) => t.name === 'models')?.rows).toBeGreaterThan(0);
      await seed(db, { env: {} });
      expect(await contents(db)).toEqual(before);
    });
  });
});

describe('the store lock', () => {
  it('is never taken over from a process on another host', () => {
    const dir = tempDir();
    const record = { pid: 4242, host: `not-${hostname()}`, token: 'elsewhere', since: '2025-01-01T00:00:00.000Z' };
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify(record));
    expect(() => acquireStoreLock(dir)).toThrow(
      `embedded database ${dir} is in use by pid 4242 on host not-${hostname()} (since 2025-01-01T00:00:00.000Z): ` +
        `stop that process first, or, if it is gone, delete ${join(dir, LOCK_FILE)}`,
    );
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toEqual(record);
  });

  it.skipIf(!existsSync('/proc/self/stat'))('is taken over when its pid now belongs to a process started at another time', () => {
    const dir = tempDir();
    // This process's pid, alive, but recorded with another start time: the pid was reused.
    const record = { pid: process.pid, host: hostname(), started: '1', token: 'reused', since: '2025-01-01T00:00:00.000Z' };
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify(record));
    const lock = acquireStoreLock(dir);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid, token: lock.record.token });
    lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('finishes a takeover whose taker died halfway (its marker left behind)', () => {
    const dir = tempDir();
    const dead = () => ({ pid: spawnSync(NODE, ['-e', '']).pid!, host: hostname(), token: randomUUID(), since: '2025-01-01T00:00:00.000Z' });
    const holder = dead();
    const taker = dead();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify(holder));
    writeFileSync(join(dir, `${LOCK_FILE}.takeover-${holder.token}`), JSON.stringify(taker));
    const lock = acquireStoreLock(dir);
    expect(readdirSync(dir)).toEqual([LOCK_FILE]);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid, token: lock.record.token });
    lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a lock file it did not write, naming it', () => {
    const dir = tempDir();
    writeFileSync(join(dir, LOCK_FILE), 'garbage');
    expect(() => acquireStoreLock(dir)).toThrow(StoreOpenError);
    expect(() => acquireStoreLock(dir)).toThrow(`embedded database ${dir} could not be opened: its lock ${join(dir, LOCK_FILE)} is not a lock`);
  });
});

/** Every table's row count and a digest of its rows. */
async function contents(db: Kysely<DB>): Promise<{ name: string; rows: number; digest: string }[]> {
  const result = [];
  for (const { name, rows } of await tableStatus(db)) {
    const { rows: digest } = await sql<{ digest: string }>`
      select coalesce(md5(string_agg(t::text, '|' order by t::text)), '') as digest from ${sql.table(name)} t`.execute(db.withoutPlugins());
    result.push({ name, rows, digest: digest[0]!.digest });
  }
  return result;
}
