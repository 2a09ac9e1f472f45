import { spawn } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/db/errors.ts';
import {
  createMigrationFiles,
  migrate,
  migrateDown,
  migrationStatus,
  readMigrationFiles,
} from '../../src/db/migrator.ts';
import { copyMigrations, type MigrationsCopy } from '../support/migrations-dir.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ALL = readMigrationFiles().map((f) => f.name);

let t: TestDb;
let copy: MigrationsCopy;
beforeEach(async () => {
  t = await openTestDb({ migrated: false });
  copy = copyMigrations();
});
afterEach(async () => {
  await t?.close();
  copy?.remove();
});

async function ledger(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from schema_migrations order by name`.execute(db.withoutPlugins());
  return rows.map((r) => r.name);
}

async function tableExists(db: Kysely<any>, name: string): Promise<boolean> {
  const { rows } = await sql<{ present: boolean }>`select to_regclass(${name}) is not null as present`.execute(db.withoutPlugins());
  return rows[0]!.present;
}

/** Runs `npm run migrate` (`database migrate`) as a child process against the test database. */
function migrateProcess(t: TestDb, args: string[] = [], extraEnv: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('node_modules/.bin/node', ['src/cli/database.ts', 'migrate', ...args], {
      env: { ...process.env, DATABASE_URL: t.url!, ...extraEnv },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('migrate', () => {
  it('applies every migration once and records name, checksum, time and duration', async () => {
    expect(await migrate(t.db)).toEqual(ALL);
    const { rows } = await sql<{ name: string; checksum: string; applied_at: Date; duration_ms: number }>`
      select * from schema_migrations order by name`.execute(t.db.withoutPlugins());
    expect(rows.map((r) => r.name)).toEqual(ALL);
    const files = readMigrationFiles();
    for (const [i, row] of rows.entries()) {
      expect(row.checksum).toBe(files[i]!.checksum);
      expect(row.applied_at).toBeInstanceOf(Date);
      expect(row.duration_ms).toBeGreaterThanOrEqual(0);
    }
    expect(await migrate(t.db)).toEqual([]);
  });

  it('serializes concurrent migrators in one process: each migration applied exactly once', async () => {
    const handles = onServer ? [t.open(2), t.open(2), t.open(2)] : [t.db, t.db, t.db];
    const results = await Promise.all(handles.map((db) => migrate(db)));
    expect(results.flat().sort()).toEqual(ALL);
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it.runIf(onServer)('three `npm run migrate` processes started at once all exit 0, each migration applied once', async () => {
    const runs = await Promise.all([migrateProcess(t), migrateProcess(t), migrateProcess(t)]);
    for (const run of runs) expect(run, run.stderr).toMatchObject({ code: 0 });
    const appliedLines = runs.flatMap((r) => r.stdout.split('\n').filter((l) => l.startsWith('applying ')));
    expect(appliedLines.sort()).toEqual(ALL.map((name) => `applying ${name}`));
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it('refuses to run when an applied migration was edited, naming the file', async () => {
    await migrate(t.db, { migrationsDir: copy.dir });
    copy.add('0900_add_users_locale', 'alter table users add column locale text;\n', 'alter table users drop column locale;\n');
    appendFileSync(join(copy.dir, '0002_create_catalog_tables.up.sql'), '\n-- an innocent-looking edit\n');
    const attempt = migrate(t.db, { migrationsDir: copy.dir });
    await expect(attempt).rejects.toBeInstanceOf(MigrationError);
    await expect(attempt).rejects.toThrow(/0002_create_catalog_tables\.up\.sql was edited after it was applied/);
    // Nothing ran: the pending migration is still pending.
    expect(await ledger(t.db)).toEqual(ALL);
    const status = await migrationStatus(t.db, { migrationsDir: copy.dir });
    expect(status.find((s) => s.name === '0002_create_catalog_tables')?.state).toBe('changed');
    expect(status.find((s) => s.name === '0900_add_users_locale')?.state).toBe('pending');
  });

  it('refuses to run when an applied migration file was deleted, naming it', async () => {
    copy.add('0900_add_users_locale', 'alter table users add column locale text;\n', 'alter table users drop column locale;\n');
    await migrate(t.db, { migrationsDir: copy.dir });
    for (const f of readdirSync(copy.dir).filter((f) => f.startsWith('0900_'))) rmSync(join(copy.dir, f));
    await expect(migrate(t.db, { migrationsDir: copy.dir })).rejects.toThrow(/0900_add_users_locale\.up\.sql was applied but is gone/);
    const status = await migrationStatus(t.db, { migrationsDir: copy.dir });
    expect(status.find((s) => s.name === '0900_add_users_locale')?.state).toBe('missing');
  });

  it('rolls a failing migration back whole: no partial schema, no ledger row, error names file, line and statement', async () => {
    await migrate(t.db, { migrationsDir: copy.dir });
    copy.add(
      '0900_add_broken_things',
      [
        '-- Why: a test migration whose third statement fails.',
        'create table things (id integer primary key);',
        "insert into things values (1);",
        '',
        'alter table things',
        '  add column owner uuid references no_such_table (id);',
        'create table more_things (id integer);',
      ].join('\n'),
    );
    const attempt = migrate(t.db, { migrationsDir: copy.dir });
    await expect(attempt).rejects.toBeInstanceOf(MigrationError);
    const error = (await attempt.catch((e: unknown) => e)) as MigrationError;
    expect(error.file).toMatch(/0900_add_broken_things\.up\.sql$/);
    expect(error.line).toBe(5);
    expect(error.statement).toBe('alter table things\n  add column owner uuid references no_such_table (id)');
    expect(error.code).toBe('42P01'); // undefined_table
    expect(error.message).toContain('0900_add_broken_things.up.sql:5');
    expect(error.message).toContain('no_such_table');
    expect(await tableExists(t.db, 'things')).toBe(false);
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it.runIf(onServer)('fails fast with a clear message when a table it changes is locked by another session', async () => {
    await migrate(t.db, { migrationsDir: copy.dir });
    copy.add('0900_add_tenants_region', 'alter table tenants add column region text;\n', 'alter table tenants drop column region;\n');
    const holder = t.open(1);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holding = holder.transaction().execute(async (tx) => {
      await sql`lock table tenants in access share mode`.execute(tx);
      locked();
      await released;
    });
    await isLocked;
    try {
      const attempt = migrate(t.db, { migrationsDir: copy.dir, lockTimeoutMs: 200 });
      await expect(attempt).rejects.toMatchObject({ name: 'MigrationError', code: '55P03' });
      await expect(attempt).rejects.toThrow(/lock_timeout \(200 ms\).*0900_add_tenants_region|0900_add_tenants_region.*lock_timeout \(200 ms\)/);
    } finally {
      release();
      await holding;
    }
    expect(await ledger(t.db)).toEqual(ALL);
    // Once the lock is gone the same migration goes through.
    expect(await migrate(t.db, { migrationsDir: copy.dir })).toEqual(['0900_add_tenants_region']);
  });

  it('runs a `-- migrate:no-transaction` migration outside a transaction', async () => {
    await migrate(t.db, { migrationsDir: copy.dir });
    // CREATE INDEX CONCURRENTLY cannot run inside a transaction block: it succeeding proves there was none.
    copy.add(
      '0900_add_users_status_index',
      '-- migrate:no-transaction\ncreate index concurrently users_status_idx on users (tenant_id, status);\n',
      '-- migrate:no-transaction\ndrop index concurrently users_status_idx;\n',
    );
    expect(await migrate(t.db, { migrationsDir: copy.dir })).toEqual(['0900_add_users_status_index']);
    expect(await tableExists(t.db, 'users_status_idx')).toBe(true);
    expect(await migrateDown(t.db, {}, { migrationsDir: copy.dir })).toEqual(['0900_add_users_status_index']);
    expect(await tableExists(t.db, 'users_status_idx')).toBe(false);
  });

  it('refuses a no-transaction migration with more than one statement', async () => {
    await migrate(t.db, { migrationsDir: copy.dir });
    copy.add('0900_add_two_indexes', '-- migrate:no-transaction\ncreate index a_idx on users (email);\ncreate index b_idx on users (status);\n');
    await expect(migrate(t.db, { migrationsDir: copy.dir })).rejects.toThrow(/allows exactly one statement, found 2/);
    expect(await tableExists(t.db, 'a_idx')).toBe(false);
  });
});

describe('migrateDown and status', () => {
  it('reverts one, down to a name, or all, newest first', async () => {
    await migrate(t.db);
    expect(await migrateDown(t.db)).toEqual([ALL.at(-1)]);
    expect(await migrateDown(t.db, { to: ALL[2] })).toEqual(ALL.slice(2, -1).reverse());
    expect(await ledger(t.db)).toEqual(ALL.slice(0, 2));
    expect(await migrateDown(t.db, { to: 0 })).toEqual(ALL.slice(0, 2).reverse());
    expect(await ledger(t.db)).toEqual([]);
    expect(await tableExists(t.db, 'roles')).toBe(false);
  });

  it('applies up to and including --to only, and nothing when it is already applied', async () => {
    expect(await migrate(t.db, { to: ALL[1] })).toEqual(ALL.slice(0, 2));
    expect(await migrate(t.db, { to: ALL[0] })).toEqual([]);
    await expect(migrate(t.db, { to: '0099_no_such' })).rejects.toThrow(/--to 0099_no_such: no such migration/);
    expect(await ledger(t.db)).toEqual(ALL.slice(0, 2));
    expect(await migrate(t.db)).toEqual(ALL.slice(2));
  });

  it('asks confirm with the exact migrations it is about to revert, newest first, and reverts nothing on no', async () => {
    await migrate(t.db);
    const asked: string[][] = [];
    const no = async (names: string[]) => (asked.push(names), false);
    expect(await migrateDown(t.db, { to: ALL[4] }, { confirm: no })).toEqual([]);
    expect(await migrateDown(t.db, { to: 0 }, { confirm: no })).toEqual([]);
    expect(asked).toEqual([ALL.slice(4).reverse(), [...ALL].reverse()]);
    expect(await ledger(t.db)).toEqual(ALL);
    expect(await tableExists(t.db, 'roles')).toBe(true);
    expect(await migrateDown(t.db, {}, { confirm: (names) => names.length === 1 })).toEqual([ALL.at(-1)]);
  });

  it('refuses --to a migration that does not exist or is not applied', async () => {
    await migrate(t.db);
    await expect(migrateDown(t.db, { to: '0099_no_such' })).rejects.toThrow(/no such migration/);
    await migrateDown(t.db);
    await expect(migrateDown(t.db, { to: ALL.at(-1)! })).rejects.toThrow(/not applied/);
  });

  it('reports applied and pending migrations with their checksums', async () => {
    await migrate(t.db);
    await migrateDown(t.db);
    const status = await migrationStatus(t.db);
    expect(status.map((s) => [s.name, s.state])).toEqual(ALL.map((name, i) => [name, i === ALL.length - 1 ? 'pending' : 'applied']));
    for (const s of status) expect(s.checksum).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('migration files', () => {
  it('create writes the next numbered up/down pair', () => {
    const [up, down] = createMigrationFiles('add_users_locale', { migrationsDir: copy.dir });
    const next = String(Number(ALL.at(-1)!.slice(0, 4)) + 1).padStart(4, '0'); // after the last number (a branch may skip numbers)
    expect(up).toBe(join(copy.dir, `${next}_add_users_locale.up.sql`));
    expect(down).toBe(join(copy.dir, `${next}_add_users_locale.down.sql`));
    expect(readFileSync(up!, 'utf8')).toMatch(/^-- Why:/);
    expect(readMigrationFiles(copy.dir).at(-1)?.name).toBe(`${next}_add_users_locale`);
    expect(() => createMigrationFiles('Add Users', { migrationsDir: copy.dir })).toThrow(/snake_case/);
  });

  it('create refuses a name that is taken, under any number, and writes nothing', () => {
    const before = readdirSync(copy.dir).sort();
    expect(() => createMigrationFiles('create_vectors', { migrationsDir: copy.dir })).toThrow(
      /migration name create_vectors is taken: .*0004_create_vectors\.up\.sql exists/,
    );
    expect(readdirSync(copy.dir).sort()).toEqual(before);
    createMigrationFiles('add_users_locale', { migrationsDir: copy.dir });
    expect(() => createMigrationFiles('add_users_locale', { migrationsDir: copy.dir })).toThrow(/add_users_locale is taken/);
    expect(readdirSync(copy.dir)).toHaveLength(before.length + 2);
  });

  it('refuses a down file without its up file', () => {
    copy.add('0900_add_x', 'select 1;');
    rmSync(join(copy.dir, '0900_add_x.up.sql'));
    expect(() => readMigrationFiles(copy.dir)).toThrow(/0900_add_x has no up file/);
  });
});

describe('a migration without its down file', () => {
  beforeEach(() => {
    copy.add('0900_add_users_locale', 'alter table users add column locale text;\n');
    rmSync(join(copy.dir, '0900_add_users_locale.down.sql'));
  });

  it('is listed by status, applied like any other, and flagged as having no down file', async () => {
    expect(readMigrationFiles(copy.dir).at(-1)).toMatchObject({ name: '0900_add_users_locale', hasDownFile: false });
    expect((await migrationStatus(t.db, { migrationsDir: copy.dir })).at(-1)).toMatchObject({
      name: '0900_add_users_locale',
      state: 'pending',
      downFileMissing: true,
    });
    expect(await migrate(t.db, { migrationsDir: copy.dir })).toEqual([...ALL, '0900_add_users_locale']);
    const status = await migrationStatus(t.db, { migrationsDir: copy.dir });
    expect(status.map((s) => [s.name, s.state, s.downFileMissing])).toEqual([
      ...ALL.map((name) => [name, 'applied', false]),
      ['0900_add_users_locale', 'applied', true],
    ]);
  });

  it('cannot be reverted: down refuses, naming the missing file, and reverts nothing', async () => {
    await migrate(t.db, { migrationsDir: copy.dir });
    for (const target of [{}, { to: ALL[3]! }, { to: 0 as const }]) {
      const attempt = migrateDown(t.db, target, { migrationsDir: copy.dir });
      await expect(attempt).rejects.toBeInstanceOf(MigrationError);
      await expect(attempt).rejects.toThrow(/cannot revert 0900_add_users_locale \(.*0900_add_users_locale\.down\.sql is missing\); nothing was reverted/);
    }
    expect(await ledger(t.db)).toEqual([...ALL, '0900_add_users_locale']);
  });
});

describe('npm run migrate', () => {
  it.runIf(onServer)('exits non-zero with a one-paragraph message naming the file on failure', async () => {
    copy.add('0900_add_broken', 'select * from no_such_table;\n');
    const run = await migrateProcess(t, ['--dir', copy.dir]);
    expect(run.code).not.toBe(0);
    const message = run.stderr.trim();
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toMatch(/^migrate: .*0900_add_broken\.up\.sql:1: relation "no_such_table" does not exist/);
    // The migrations before it were applied and committed, each on its own.
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it.runIf(onServer)('status lists every migration; down refuses without a terminal, reverts one with --yes', async () => {
    expect((await migrateProcess(t)).code).toBe(0);
    const status = await migrateProcess(t, ['status']);
    expect(status.code).toBe(0);
    for (const name of ALL) expect(status.stdout).toMatch(new RegExp(`applied\\s+${name}\\s+[0-9a-f]{12}`));
    const refused = await migrateProcess(t, ['down']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refusing without a terminal to confirm: nothing was reverted/);
    expect(await ledger(t.db)).toEqual(ALL);
    const down = await migrateProcess(t, ['down', '--yes']);
    expect(down).toMatchObject({ code: 0 });
    expect(down.stdout).toContain(`reverted ${ALL.at(-1)}`);
  });
});
