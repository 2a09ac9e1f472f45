/**
 * The database of a profiling script (profile-loop.ts, transaction-shapes.ts): created on the
 * server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), migrated with the
 * CLI as an operator runs it, with one tenant and one user of a role; `drop` removes it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { DEFAULT_DATABASE_URL, withDatabase } from './backend.ts';

export interface ScratchDatabase {
  /** The server's URL the database was made from (its own database). */
  adminUrl: string;
  url: string;
  tenantId: string;
  userId: string;
  /** A connection to the scratch database as the owner, for the script's own set-up; `drop` ends it. */
  setup: pg.Client;
  drop(): Promise<void>;
}

export async function openScratchDatabase(prefix: string): Promise<ScratchDatabase> {
  const adminUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const name = `bench_${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = withDatabase(adminUrl, name);
  const setup = new pg.Client({ connectionString: url });
  const drop = async () => {
    await setup.end().catch(() => {});
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  };
  try {
    // The CLI, as an operator runs it (in this process, the migrator's lock connection ends with an error event).
    execFileSync(process.execPath, ['src/cli/database.ts', 'migrate'], { env: { ...process.env, DATABASE_URL: url }, stdio: 'ignore' });
    await setup.connect();
    const tenantId = (await setup.query(`insert into tenants (name, slug) values ($1, $1) returning id`, [prefix])).rows[0].id as string;
    const userId = (
      await setup.query(
        `with r as (insert into roles (name) values ($1) returning id)
         insert into users (tenant_id, email, role_id) select $2, $1 || '@example.com', r.id from r returning id`,
        [prefix, tenantId],
      )
    ).rows[0].id as string;
    return { adminUrl, url, tenantId, userId, setup, drop };
  } catch (error) {
    await drop();
    throw error;
  }
}
