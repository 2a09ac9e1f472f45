/**
 * "A killed migrator does not hold the lock" (issue 12, point 11): the migration session sets
 * client_connection_check_interval, so a server notices a dead migrator during a long statement
 * and ends its session, releasing the advisory lock, instead of running the statement to its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate, readMigrationFiles } from '../../src/db/migrator.ts';
import { copyMigrations, type MigrationsCopy } from '../support/migrations-dir.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ALL = readMigrationFiles().map((f) => f.name);

let t: TestDb;
let copy: MigrationsCopy;
beforeEach(async () => {
  t = await openTestDb();
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

/** Backends of this database running the migration's sleep. */
async function sleepers(db: Kysely<any>): Promise<number[]> {
  const { rows } = await sql<{ pid: number }>`
    select pid from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid() and query like 'select pg_sleep(600)%'`.execute(db.withoutPlugins());
  return rows.map((r) => r.pid);
}

describe('the migration session', () => {
  it('checks for a dead client every second while a migration runs, and resets the setting afterwards', async () => {
    copy.add(
      '0900_record_session_settings',
      "create table seen_settings as select current_setting('client_connection_check_interval') as check_interval;\n",
      'drop table seen_settings;\n',
    );
    expect(await migrate(t.db, { migrationsDir: copy.dir })).toEqual(['0900_record_session_settings']);
    const { rows } = await sql<{ check_interval: string }>`select check_interval from seen_settings`.execute(t.db.withoutPlugins());
    expect(rows).toEqual([{ check_interval: '1s' }]);
    if (!onServer) {
      // PGlite has one connection: the one the migrator used, handed back with the setting reset.
      const { rows: after } = await sql<{ v: string }>`select current_setting('client_connection_check_interval') as v`.execute(t.db.withoutPlugins());
      expect(after).toEqual([{ v: '0' }]);
    }
  });

  it.runIf(onServer)('of a migrator killed during a long statement ends, releasing the lock, so another migrator gets it', async () => {
    copy.add('0900_sleep_long', "-- Why: a test.\ncreate table half_done (x int);\nselect pg_sleep(600);\n", 'drop table half_done;\n');
    let child: ChildProcess | undefined;
    try {
      child = spawn('node_modules/.bin/node', ['src/cli/database.ts', 'migrate', '--dir', copy.dir], {
        env: { ...process.env, DATABASE_URL: t.url! },
        stdio: 'ignore',
      });
      const exited = once(child, 'exit');
      // Wait (bounded) until the child's backend sleeps inside the migration, holding the lock.
      for (let tries = 0; (await sleepers(t.db)).length === 0; tries += 1) {
        if (tries > 600) throw new Error('the child migrator never reached its pg_sleep');
        await new Promise((done) => setTimeout(done, 50));
      }
      child.kill('SIGKILL');
      await exited;
      // Without the check the backend sleeps on for ten minutes with the lock, and this migrator
      // gives up after waitMs; with it the server ends that session about a second after the kill.
      expect(await migrate(t.db, { waitMs: 20_000 })).toEqual([]);
      expect(await sleepers(t.db)).toEqual([]);
      expect(await ledger(t.db)).toEqual(ALL);
      const { rows } = await sql<{ present: boolean }>`select to_regclass('half_done') is not null as present`.execute(t.db.withoutPlugins());
      expect(rows).toEqual([{ present: false }]);
    } finally {
      child?.kill('SIGKILL');
      await sql`select pg_terminate_backend(pid) from pg_stat_activity
                where datname = current_database() and query like 'select pg_sleep(600)%'`.execute(t.db.withoutPlugins());
    }
  });
});
