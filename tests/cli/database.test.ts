/**
 * The `database` command as it ships: src compiled by the build config into a folder shaped like
 * the installed package (package.json, dist/, migrations/, data/, node_modules/), run as a child
 * process from another working directory, as `npx database …` runs it in a service's project.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMigrationFiles } from '../../src/db/migrator.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE = join(ROOT, 'node_modules/.bin/node');
const ALL = readMigrationFiles().map((f) => f.name);

let pkg: string;
let bin: string;
let work: string;
beforeAll(() => {
  pkg = mkdtempSync(join(tmpdir(), 'database-pkg-'));
  copyFileSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  for (const dir of ['migrations', 'data', 'node_modules']) symlinkSync(join(ROOT, dir), join(pkg, dir));
  execFileSync(NODE, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', join(pkg, 'dist')], {
    cwd: ROOT,
  });
  const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  bin = join(pkg, manifest.bin.database!);
  work = mkdtempSync(join(tmpdir(), 'database-service-'));
});
afterAll(() => {
  if (pkg !== undefined) rmSync(pkg, { recursive: true, force: true });
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built bin in the service's folder with only `env` configuring the database. */
function database(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(PG[A-Z]+|DATABASE_URL|TEST_DATABASE_URL|DB_[A-Z_]+|VITEST.*|NODE_ENV)$/.test(name)),
  );
  return new Promise((done, failed) => {
    const child = spawn(NODE, [bin, ...args], { cwd: work, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', failed);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

const firstLine = (text: string) => text.split('\n', 1)[0];
const statusJson = (run: Run) => JSON.parse(run.stdout) as { target: string; migrations: { name: string; state: string }[] };

describe('the built `database` command', () => {
  it('is plain JS with a node shebang, and --help lists every subcommand', async () => {
    expect(firstLine(readFileSync(bin, 'utf8'))).toBe('#!/usr/bin/env node');
    for (const flag of ['--help', '-h']) {
      const run = await database([flag]);
      expect(run).toMatchObject({ code: 0, stderr: '' });
      for (const form of ['migrate [up] [--to NAME]', 'migrate down [--to NAME | --all] [--yes]', 'migrate status [--json]', 'migrate create NAME', 'seed [--dir PATH] [--force]', 'secrets rotate [--yes]', 'tenant export ID DIR', 'tenant import DIR', 'tenant delete ID [--yes]', 'status', 'start', 'studio [--port N] [--host ADDRESS]']) {
        expect(run.stdout).toContain(`  ${form}`);
      }
    }
  });

  it('has --help on every subcommand', async () => {
    const forms = [['migrate'], ['migrate', 'up'], ['migrate', 'down'], ['migrate', 'status'], ['migrate', 'create'], ['seed'], ['secrets'], ['secrets', 'rotate'], ['tenant', 'export'], ['tenant', 'import'], ['tenant', 'delete'], ['status'], ['start'], ['studio']];
    for (const form of forms) {
      const run = await database([...form, '--help']);
      expect(run, form.join(' ')).toMatchObject({ code: 0, stderr: '' });
      const expected = form.join(' ').replace('migrate up', 'migrate [up]');
      expect(run.stdout.startsWith(`usage: database ${expected}`), run.stdout).toBe(true);
    }
  });

  it('exits 2 with the usage on stderr for a bad command line, touching nothing', async () => {
    const store = join(work, 'never-created');
    for (const args of [[], ['nope'], ['migrate', '--bogus'], ['migrate', 'sideways'], ['migrate', 'status', '--all'], ['migrate', 'down', '--to', 'x', '--all'], ['status', 'extra'], ['seed', '--force=yes'], ['start', '--dir', 'x']]) {
      const run = await database(args, { DB_STORAGE: store });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/usage: database/);
    }
    expect(existsSync(store)).toBe(false);
  });

  it('names host and port when it cannot connect', async () => {
    const probe = createServer();
    await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
    const port = (probe.address() as { port: number }).port;
    await new Promise((done) => probe.close(done));
    const run = await database(['migrate'], { DATABASE_URL: `postgres://chat_owner:never-printed@127.0.0.1:${port}/chat` });
    expect(run.code).toBe(1);
    expect(firstLine(run.stdout)).toBe(`PostgreSQL 127.0.0.1:${port}/chat as chat_owner`);
    expect(run.stderr).toMatch(new RegExp(`^migrate: could not connect to PostgreSQL 127\\.0\\.0\\.1:${port}/chat as chat_owner: .*ECONNREFUSED`));
    expect(run.stdout + run.stderr).not.toMatch(/never-printed/);
  });
});

describe('on a fresh embedded store', () => {
  // Relative, as an operator writes it: every command shows it absolute.
  const env = { DB_STORAGE: 'store/pglite' };
  const target = () => `embedded ${join(work, 'store/pglite')}`;

  it('status changes nothing; migrate applies everything; the target comes first each time', async () => {
    const before = await database(['status'], env);
    expect(before.code).toBe(0);
    expect(firstLine(before.stdout)).toBe(target());
    expect(existsSync(join(work, 'store'))).toBe(false);

    const migrated = await database(['migrate'], env);
    expect(migrated, migrated.stderr).toMatchObject({ code: 0 });
    expect(migrated.stdout.split('\n')).toEqual([target(), ...ALL.map((name) => `applying ${name}`), `applied ${ALL.length} migrations`, '']);

    const status = await database(['status'], env);
    expect(status.code).toBe(0);
    expect(firstLine(status.stdout)).toBe(target());
    expect(status.stdout).toContain(`migrations: ${ALL.length} of ${ALL.length} applied`);
    expect(status.stdout).toMatch(/^users +0 +forced$/m);
  });

  it('studio serves its pages and its assets (Chart.js from node_modules) from the built package', async () => {
    const child = spawn(NODE, [bin, 'studio', '--port', '0'], { cwd: work, env: { PATH: process.env.PATH ?? '', ...env } });
    const exited = new Promise<number | null>((done) => child.on('close', done));
    try {
      const url = await new Promise<URL>((resolve, reject) => {
        let stdout = '';
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          const match = /^studio: (\S+)$/m.exec(stdout);
          if (match !== null) resolve(new URL(match[1]!));
        });
        child.on('close', (code) => reject(new Error(`studio exited ${code}: ${stdout}`)));
      });
      const auth = { authorization: `Bearer ${url.searchParams.get('token')}` };
      const overview = await fetch(new URL('/', url), { headers: auth });
      expect(overview.status).toBe(200);
      expect(await overview.text()).toContain(target());
      const chart = await fetch(new URL('/assets/chart.umd.min.js', url), { headers: auth });
      expect(chart.status).toBe(200);
      expect(await chart.text()).toContain('Chart.js v4');
    } finally {
      child.kill('SIGTERM');
    }
    // Stopped, it has let go of the store for the next command.
    expect(await exited).toBe(0);
  });

  it('migrate down refuses without a terminal and keeps everything; with --yes it reverts', async () => {
    const refused = await database(['migrate', 'down', '--all'], env);
    expect(refused.code).toBe(1);
    expect(firstLine(refused.stdout)).toBe(target());
    expect(refused.stderr).toContain(`would revert ${ALL.length} migrations on ${target()}, newest first:\n${[...ALL].reverse().map((n) => `  ${n}`).join('\n')}`);
    expect(refused.stderr).toContain('nothing was reverted. Add --yes');
    const kept = await database(['migrate', 'status', '--json'], env);
    expect(kept.code).toBe(0);
    expect(statusJson(kept)).toEqual({ target: target(), migrations: expect.any(Array) });
    expect(statusJson(kept).migrations.map((m) => m.state)).toEqual(ALL.map(() => 'applied'));
    expect(firstLine(kept.stderr)).toBe(target());

    const reverted = await database(['migrate', 'down', '--yes'], env);
    expect(reverted.code).toBe(0);
    expect(reverted.stdout).toContain(`reverted ${ALL.at(-1)}`);
    const after = await database(['migrate', 'status', '--json'], env);
    expect(statusJson(after).migrations.map((m) => m.state)).toEqual(ALL.map((_, i) => (i === ALL.length - 1 ? 'pending' : 'applied')));
  });

  // util-linux `script` gives the command a pseudo-terminal: the question is asked and answered.
  it.runIf(existsSync('/usr/bin/script'))('on a terminal, shows what it will revert and does only on yes', async () => {
    const onTerminal = (answer: string) =>
      new Promise<Run>((done, failed) => {
        const command = [NODE, bin, 'migrate', 'down', '--to', ALL.at(-3)!].map((a) => `'${a}'`).join(' ');
        const child = spawn('/usr/bin/script', ['-qec', command, '/dev/null'], {
          cwd: work,
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TERM: 'dumb', ...env },
        });
        let stdout = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stdout.once('data', () => child.stdin.end(`${answer}\n`));
        child.on('error', failed);
        child.on('close', (code) => done({ code, stdout, stderr: '' }));
      });
    const no = await onTerminal('n');
    expect(no.code).toBe(1);
    expect(no.stdout).toContain(`about to revert 2 migrations, newest first`);
    expect(no.stdout).toContain(`  ${ALL.at(-2)}\r\n  ${ALL.at(-3)}`);
    expect(no.stdout).toContain(`revert 2 migrations on ${target()}? [y/N]`);
    expect(no.stdout).toContain('nothing was reverted');
    const kept = await database(['migrate', 'status', '--json'], env);
    expect(statusJson(kept).migrations.filter((m) => m.state === 'applied')).toHaveLength(ALL.length - 1);
    const yes = await onTerminal('y');
    expect(yes.code).toBe(0);
    expect(yes.stdout).toContain(`reverted ${ALL.at(-2)}, ${ALL.at(-3)}`);
  });
});

describe.runIf(onServer)('on a server database', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDb({ migrated: false });
  });
  afterAll(() => t?.close());
  const tables = async () =>
    (await sql<{ n: number }>`select count(*)::int as n from pg_tables where schemaname = 'public'`.execute(t.db.withoutPlugins())).rows[0]!.n;

  it('migrate and status name the server first; down --all refuses without a terminal, reverts with --yes', async () => {
    const env = { DATABASE_URL: t.url! };
    const url = new URL(t.url!);
    const target = `PostgreSQL ${url.hostname}:${url.port || 5432}${url.pathname} as ${decodeURIComponent(url.username)}`;

    const migrated = await database(['migrate'], env);
    expect(migrated, migrated.stderr).toMatchObject({ code: 0 });
    expect(firstLine(migrated.stdout)).toBe(target);
    const status = await database(['status'], env);
    expect(firstLine(status.stdout)).toBe(target);
    expect(status.stdout).toContain(`migrations: ${ALL.length} of ${ALL.length} applied`);
    const count = await tables();
    expect(count).toBeGreaterThan(10);

    const refused = await database(['migrate', 'down', '--all'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refusing without a terminal');
    expect(await tables()).toBe(count);

    const reverted = await database(['migrate', 'down', '--all', '--yes'], env);
    expect(reverted, reverted.stderr).toMatchObject({ code: 0 });
    expect(reverted.stdout).toContain(`reverted ${[...ALL].reverse().join(', ')}`);
    expect(await tables()).toBe(1); // the ledger, empty
  });
});
