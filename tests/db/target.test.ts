import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, postgresConfig } from '../../src/db/config.ts';
import { describeTarget } from '../../src/db/target.ts';

// node-postgres reads PG* from process.env when it resolves a config: so does describeTarget.
const PG_ENV = ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD'] as const;
const saved = Object.fromEntries(PG_ENV.map((name) => [name, process.env[name]]));
afterEach(() => {
  for (const name of PG_ENV) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});
function clearPgEnv(): void {
  for (const name of PG_ENV) delete process.env[name];
}

describe('describeTarget', () => {
  it('names host, port, database and role of DATABASE_URL, never its password', () => {
    clearPgEnv();
    const line = describeTarget(loadConfig({ DATABASE_URL: 'postgres://chat_owner:s3cr%40t-pw@127.0.0.1:5432/chat' }));
    expect(line).toBe('PostgreSQL 127.0.0.1:5432/chat as chat_owner');
    expect(line).not.toMatch(/s3cr/);
  });

  it('fills what the URL leaves out from PG* variables, then libpq defaults, as the driver does', () => {
    clearPgEnv();
    process.env.PGPORT = '6543';
    process.env.PGUSER = 'ops';
    expect(describeTarget(postgresConfig({ connectionString: 'postgres://db.internal/chat' }))).toBe('PostgreSQL db.internal:6543/chat as ops');
    // No URL at all: PG* only; the database defaults to the user's name.
    process.env.PGHOST = '10.0.0.7';
    process.env.PGPASSWORD = 'hunter2';
    const line = describeTarget(loadConfig({ PGHOST: '10.0.0.7' }));
    expect(line).toBe('PostgreSQL 10.0.0.7:6543/ops as ops');
    expect(line).not.toMatch(/hunter2/);
    clearPgEnv();
    process.env.PGUSER = 'ops';
    expect(describeTarget(postgresConfig({ connectionString: 'postgres:///chat' }))).toBe('PostgreSQL localhost:5432/chat as ops');
  });

  it('shows an embedded store as an absolute path, and memory:// as it is', () => {
    expect(describeTarget(loadConfig({}))).toBe(`embedded ${resolve('.data/pglite')}`);
    expect(describeTarget(loadConfig({ DB_STORAGE: 'tmp/../stores/a' }))).toBe(`embedded ${resolve('stores/a')}`);
    expect(describeTarget({ kind: 'pglite', storage: 'memory://' })).toBe('embedded memory://');
  });
});
