/**
 * "Down files are checksummed like up files, and each file is read once: the bytes hashed are the
 * bytes run" (issue 12, point 4). The ledger records the down file's sha256 when the up runs;
 * migrate down refuses a down file edited since; a file changed while the migrator runs does not
 * change what it runs.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/db/errors.ts';
import { migrate, migrateDown, migrationStatus, readMigrationFiles } from '../../src/db/migrator.ts';
import { copyMigrations, type MigrationsCopy } from '../support/migrations-dir.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ALL = readMigrationFiles().map((f) => f.name);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

interface Row {
  name: string;
  checksum: string;
  down_checksum: string | null;
}

async function ledgerRows(db: Kysely<any>): Promise<Row[]> {
  // to_jsonb: a test database cloned from a template migrated before down checksums has no such column yet.
  const { rows } = await sql<Row>`
    select name, checksum, to_jsonb(l) ->> 'down_checksum' as down_checksum from schema_migrations l order by name`.execute(db.withoutPlugins());
  return rows;
}

async function exists(db: Kysely<any>, name: string): Promise<boolean> {
  const { rows } = await sql<{ present: boolean }>`select to_regclass(${name}) is not null as present`.execute(db.withoutPlugins());
  return rows[0]!.present;
}

let t: TestDb;
let copy: MigrationsCopy;
afterEach(async () => {
  await t?.close();
  copy?.remove();
});

describe('down checksums', () => {
  beforeEach(() => {
    copy = copyMigrations();
  });

  it("records each down file's sha256 next to its up file's when the up runs", async () => {
    t = await openTestDb({ migrated: false });
    await migrate(t.db, { migrationsDir: copy.dir });
    const files = readMigrationFiles(copy.dir);
    expect(await ledgerRows(t.db)).toEqual(
      files.map((f) => ({ name: f.name, checksum: sha256(f.upPath), down_checksum: sha256(f.downPath) })),
    );
    const status = await migrationStatus(t.db, { migrationsDir: copy.dir });
    expect(status.map((s) => [s.name, s.appliedDownChecksum === sha256(join(copy.dir, `${s.name}.down.sql`)), s.downFileChanged])).toEqual(
      files.map((f) => [f.name, true, false]),
    );
  });

  it('migrate down refuses a down file edited since its up ran, naming it, and reverts nothing', async () => {
    t = await openTestDb();
    copy.add('0900_create_notes', 'create table notes (x int);\n', 'drop table notes;\n');
    await migrate(t.db, { migrationsDir: copy.dir });
    const recorded = sha256(join(copy.dir, '0900_create_notes.down.sql'));
    expect((await ledgerRows(t.db)).at(-1)).toEqual({ name: '0900_create_notes', checksum: expect.any(String), down_checksum: recorded });
    // The edit of issue 12: a down file that drops users.
    appendFileSync(join(copy.dir, '0900_create_notes.down.sql'), 'drop table users cascade;\n');
    for (const target of [{}, { to: ALL[3]! }, { to: 0 as const }]) {
      const attempt = migrateDown(t.db, target, { migrationsDir: copy.dir, confirm: () => true });
      const error = (await attempt.catch((e: unknown) => e)) as MigrationError;
      expect(error).toBeInstanceOf(MigrationError);
      expect(error.message).toMatch(/0900_create_notes\.down\.sql was edited after 0900_create_notes was applied \(ledger sha256 [0-9a-f]{12}…, file [0-9a-f]{12}…\)/);
      expect(error.message).toMatch(/Nothing was reverted\.$/);
      expect(error.file).toMatch(/0900_create_notes\.down\.sql$/);
    }
    expect(await exists(t.db, 'users')).toBe(true);
    expect(await exists(t.db, 'notes')).toBe(true);
    expect((await ledgerRows(t.db)).map((r) => r.name)).toEqual([...ALL, '0900_create_notes']);
    const status = (await migrationStatus(t.db, { migrationsDir: copy.dir })).at(-1)!;
    expect(status).toMatchObject({ name: '0900_create_notes', state: 'applied', downFileChanged: true, appliedDownChecksum: recorded });
    expect(status.downChecksum).not.toBe(recorded);
    // Applying newer migrations is not blocked; restoring the file makes the revert possible.
    writeFileSync(join(copy.dir, '0900_create_notes.down.sql'), 'drop table notes;\n');
    expect(await migrateDown(t.db, {}, { migrationsDir: copy.dir })).toEqual(['0900_create_notes']);
    expect(await exists(t.db, 'notes')).toBe(false);
  });

  it('a ledger from before down checksums gains the column in place; its rows stay NULL and their down files run as they are', async () => {
    t = await openTestDb({ migrated: false });
    await migrate(t.db, { migrationsDir: copy.dir });
    await sql`alter table schema_migrations drop column down_checksum`.execute(t.db.withoutPlugins());
    // Status reads the old ledger without changing it.
    const before = await migrationStatus(t.db, { migrationsDir: copy.dir });
    expect(before.every((s) => s.state === 'applied' && s.appliedDownChecksum === undefined && !s.downFileChanged)).toBe(true);
    copy.add('0900_create_notes', 'create table notes (x int);\n', 'drop table notes;\n');
    expect(await migrate(t.db, { migrationsDir: copy.dir })).toEqual(['0900_create_notes']);
    const rows = await ledgerRows(t.db);
    expect(rows.filter((r) => r.down_checksum === null).map((r) => r.name)).toEqual(ALL);
    expect(rows.at(-1)!.down_checksum).toBe(sha256(join(copy.dir, '0900_create_notes.down.sql')));
    // An old row's down file is not verified: it runs as it is now, and the log says so.
    const last = ALL.at(-1)!;
    appendFileSync(join(copy.dir, `${last}.down.sql`), '\n-- edited after the up ran, not detectable for an old row\n');
    const lines: string[] = [];
    expect(await migrateDown(t.db, { to: last }, { migrationsDir: copy.dir, log: (l) => lines.push(l) })).toEqual(['0900_create_notes', last]);
    expect(lines).toContain(`${last}: no down file was recorded when it was applied; reverting with ${join(copy.dir, `${last}.down.sql`)} as it is now`);
    // Applied again, it is recorded like any other.
    await migrate(t.db, { migrationsDir: copy.dir });
    expect((await ledgerRows(t.db)).find((r) => r.name === last)!.down_checksum).toBe(sha256(join(copy.dir, `${last}.down.sql`)));
  });

  it('a migration applied without a down file records NULL; a down file written later is not verified', async () => {
    t = await openTestDb();
    copy.add('0900_create_notes', 'create table notes (x int);\n');
    rmSync(join(copy.dir, '0900_create_notes.down.sql'));
    await migrate(t.db, { migrationsDir: copy.dir });
    expect((await ledgerRows(t.db)).at(-1)).toMatchObject({ name: '0900_create_notes', down_checksum: null });
    writeFileSync(join(copy.dir, '0900_create_notes.down.sql'), 'drop table notes;\n');
    expect((await migrationStatus(t.db, { migrationsDir: copy.dir })).at(-1)).toMatchObject({
      downFileMissing: false,
      downFileChanged: false,
      appliedDownChecksum: undefined,
    });
    expect(await migrateDown(t.db, {}, { migrationsDir: copy.dir })).toEqual(['0900_create_notes']);
  });

  it.runIf(onServer)('`migrate status` flags a changed down file and exits 1', async () => {
    t = await openTestDb();
    copy.add('0900_create_notes', 'create table notes (x int);\n', 'drop table notes;\n');
    await migrate(t.db, { migrationsDir: copy.dir });
    appendFileSync(join(copy.dir, '0900_create_notes.down.sql'), 'drop table users;\n');
    const run = await new Promise<{ code: number | null; stdout: string }>((done) => {
      const child = spawn('node_modules/.bin/node', ['src/cli/database.ts', 'migrate', 'status', '--dir', copy.dir], {
        env: { ...process.env, DATABASE_URL: t.url! },
      });
      let stdout = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.on('close', (code) => done({ code, stdout }));
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/applied\s+0900_create_notes\s+[0-9a-f]{12}.*\(down file changed since applied\)/);
  });
});

describe('each file is read once', () => {
  beforeEach(async () => {
    t = await openTestDb();
    copy = copyMigrations();
  });

  it('keeps the text it hashed: upSql and downSql are the files as read, checksums their bytes', () => {
    copy.add('0900_create_notes', 'create table notes (x int);\n', 'drop table notes;\n');
    const file = readMigrationFiles(copy.dir).at(-1)!;
    expect(file).toMatchObject({
      upSql: 'create table notes (x int);\n',
      downSql: 'drop table notes;\n',
      checksum: sha256(file.upPath),
      downChecksum: sha256(file.downPath),
    });
  });

  it('runs the up file as it was hashed, even when it changes while the migrator runs', async () => {
    copy.add('0900_create_first', 'create table first_notes (x int);\n', 'drop table first_notes;\n');
    copy.add('0901_create_second', 'create table second_notes (x int);\n', 'drop table second_notes;\n');
    const original = sha256(join(copy.dir, '0901_create_second.up.sql'));
    const log = (line: string) => {
      // While 0900 applies, 0901 (already read and hashed) is swapped for something else.
      if (line === 'applying 0900_create_first') writeFileSync(join(copy.dir, '0901_create_second.up.sql'), 'create table tampered (x int);\n');
    };
    expect(await migrate(t.db, { migrationsDir: copy.dir, log })).toEqual(['0900_create_first', '0901_create_second']);
    expect(await exists(t.db, 'second_notes')).toBe(true);
    expect(await exists(t.db, 'tampered')).toBe(false);
    expect((await ledgerRows(t.db)).at(-1)).toMatchObject({ name: '0901_create_second', checksum: original });
    // The next run sees the edit, and refuses it.
    await expect(migrate(t.db, { migrationsDir: copy.dir })).rejects.toThrow(/0901_create_second\.up\.sql was edited after it was applied/);
  });

  it('reverts with the down file as it was hashed, even when it changes after confirm', async () => {
    copy.add('0900_create_notes', 'create table notes (x int);\n', 'drop table notes;\n');
    await migrate(t.db, { migrationsDir: copy.dir });
    const confirm = () => {
      writeFileSync(join(copy.dir, '0900_create_notes.down.sql'), 'drop table notes;\ndrop table users cascade;\n');
      return true;
    };
    expect(await migrateDown(t.db, {}, { migrationsDir: copy.dir, confirm })).toEqual(['0900_create_notes']);
    expect(await exists(t.db, 'notes')).toBe(false);
    expect(await exists(t.db, 'users')).toBe(true);
  });

  it('refuses a file that is not UTF-8, naming it, rather than run altered text', async () => {
    copy.add('0900_create_notes', 'create table notes (x int);\n');
    writeFileSync(join(copy.dir, '0900_create_notes.up.sql'), Buffer.from([...Buffer.from("select 'caf"), 0xe9, ...Buffer.from("';\n")]));
    expect(() => readMigrationFiles(copy.dir)).toThrow(/0900_create_notes\.up\.sql is not valid UTF-8/);
    await expect(migrate(t.db, { migrationsDir: copy.dir })).rejects.toThrow(/0900_create_notes\.up\.sql is not valid UTF-8.*Nothing was run/);
    expect((await ledgerRows(t.db)).map((r) => r.name)).toEqual(ALL);
  });
});
