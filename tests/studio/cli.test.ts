/**
 * `database studio` as an operator runs it: a child process that names its target, prints a URL
 * with a token, listens on loopback only unless --host says otherwise, answers 401 without the
 * token, and stops cleanly on SIGTERM. Bad arguments and a busy port fail with a clear message.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.ts';
import { migrate } from '../../src/db/migrator.ts';
import { describeTarget } from '../../src/db/target.ts';
import { createTenant } from '../../src/queries/tenants.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE = join(ROOT, 'node_modules/.bin/node');
const CLI = join(ROOT, 'src/cli/database.ts');

let dir: string;
let t: TestDb | undefined;
/** The environment that configures the database the studio opens, and its target line. */
let env: Record<string, string>;
let target: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'studio-cli-'));
  if (onServer) {
    t = await openTestDb();
    env = { DATABASE_URL: t.url! };
    target = describeTarget(t.config);
  } else {
    const storage = join(dir, 'store');
    const db = createDb({ kind: 'pglite', storage });
    await migrate(db);
    await createTenant(db, { name: 'Cli', slug: 'cli' });
    await db.destroy();
    env = { DB_STORAGE: storage };
    target = `embedded ${storage}`;
  }
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The environment of this process without anything that configures a database or the test runner. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const inherited = Object.entries(process.env).filter(
    ([name]) => !/^(PG[A-Z]+|DATABASE_URL|TEST_DATABASE_URL|DB_[A-Z_]+|VITEST.*|NODE_ENV)$/.test(name),
  ) as [string, string][];
  return { ...Object.fromEntries(inherited), ...extra };
}

interface Studio {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  url: URL;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Starts `database studio ARGS` and waits for its URL line. */
async function startCli(args: string[]): Promise<Studio> {
  const child = spawn(NODE, [CLI, 'studio', ...args], { cwd: dir, env: cleanEnv(env) });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<URL>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL after 30 s; stdout: ${stdout}; stderr: ${stderr}`)), 30_000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /^studio: (\S+)$/m.exec(stdout);
      if (match !== null) {
        clearTimeout(timer);
        resolve(new URL(match[1]!));
      }
    });
    void exited.then(() => reject(new Error(`exited before printing its URL; stdout: ${stdout}; stderr: ${stderr}`)));
  });
  return { child, lines: stdout.split('\n'), url, exited };
}

/** Whether a TCP connection to host:port is accepted. */
function reach(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => (socket.destroy(), resolve('connected')));
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on `port`. */
function listeners(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return ['/proc/net/tcp', '/proc/net/tcp6']
    .filter((file) => existsSync(file))
    .flatMap((file) => readFileSync(file, 'utf8').split('\n').slice(1))
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') // 0A: LISTEN
    .map((cols) => cols[1]!.split(':')[0]!);
}

describe('database studio, the command', () => {
  it('names its target, prints a URL with a token, binds 127.0.0.1 only, 401 without the token, stops on SIGTERM', async () => {
    const studio = await startCli(['--port', '0']);
    try {
      expect(studio.lines[0]).toBe(target);
      expect(studio.url.hostname).toBe('127.0.0.1');
      const token = studio.url.searchParams.get('token')!;
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const port = Number(studio.url.port);
      const origin = `http://127.0.0.1:${port}`;

      // Bound to loopback: the kernel lists one listener, 127.0.0.1, and another address is refused.
      expect(listeners(port)).toEqual(['0100007F']);
      expect(await reach('127.0.0.1', port)).toBe('connected');
      expect(await reach('127.0.0.2', port)).toBe('ECONNREFUSED');

      expect((await fetch(`${origin}/`)).status).toBe(401);
      expect((await fetch(`${origin}/tenants`)).status).toBe(401);
      const opened = await fetch(studio.url, { redirect: 'manual' });
      expect(opened.status).toBe(303);
      expect(opened.headers.get('location')).toBe('/');
      const cookie = opened.headers.get('set-cookie')!.split(';')[0]!;
      expect(opened.headers.get('set-cookie')).toMatch(/; HttpOnly; SameSite=Strict$/);
      const overview = await fetch(`${origin}/`, { headers: { cookie } });
      expect(overview.status).toBe(200);
      expect(await overview.text()).toContain(`<dd id="target">${target}</dd>`);
      // Another run's token is not this one's.
      expect((await fetch(`${origin}/?token=${token.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))}`)).status).toBe(401);
    } finally {
      studio.child.kill('SIGTERM');
    }
    const exit = await studio.exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout).toContain('studio stopped');
    expect(exit.stderr).toBe('');
  });

  it('listens where --host says', async () => {
    const studio = await startCli(['--port', '0', '--host', '127.0.0.2']);
    try {
      const port = Number(studio.url.port);
      expect(studio.url.hostname).toBe('127.0.0.2');
      expect(listeners(port)).toEqual(['0200007F']);
      expect(await reach('127.0.0.2', port)).toBe('connected');
      expect(await reach('127.0.0.1', port)).toBe('ECONNREFUSED');
      expect((await fetch(`http://127.0.0.2:${port}/`)).status).toBe(401);
    } finally {
      studio.child.kill('SIGTERM');
    }
    expect((await studio.exited).code).toBe(0);
  });

  it('refuses a busy port, naming it; bad arguments exit 2 with the usage', async () => {
    const busy = createServer();
    await new Promise<void>((done) => busy.listen(0, '127.0.0.1', done));
    const port = (busy.address() as { port: number }).port;
    try {
      const run = (args: string[], extra: Record<string, string> = env) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(NODE, [CLI, 'studio', ...args], { cwd: dir, env: cleanEnv(extra) });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
          child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
          child.on('close', (code) => resolve({ code, stdout, stderr }));
        });
      const inUse = await run(['--port', String(port)]);
      expect(inUse.code).toBe(1);
      expect(inUse.stderr).toContain(`studio: cannot listen on 127.0.0.1:${port}`);
      expect(inUse.stderr).toContain('the port is in use');

      for (const args of [['--port', 'abc'], ['--port', '70000'], ['--host'], ['extra'], ['--bogus']]) {
        const bad = await run(args);
        expect(bad.code, args.join(' ')).toBe(2);
        expect(bad.stderr).toContain('usage: database studio');
      }
      const help = await run(['--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^usage: database studio \[--port N\] \[--host ADDRESS\]/);

      // The studio only reads: it does not create an embedded store that is not there.
      const missing = join(dir, 'no-store');
      const none = await run(['--port', '0'], { DB_STORAGE: missing });
      expect(none.code).toBe(1);
      expect(none.stderr).toContain('the embedded store does not exist yet');
      expect(existsSync(missing)).toBe(false);
    } finally {
      await new Promise((done) => busy.close(done));
    }
  });
});
