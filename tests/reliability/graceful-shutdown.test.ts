import { spawn } from 'node:child_process';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb();
});
afterAll(() => t?.close());

describe.runIf(onServer)('graceful shutdown', () => {
  it('on SIGTERM a process using getDb() finishes the call in flight, closes its pool and exits 0', async () => {
    const application = `shutdown-test-${process.pid}`;
    const child = spawn('node_modules/.bin/node', ['tests/reliability/shutdown-child.ts'], {
      env: { ...process.env, DATABASE_URL: `${t.url}?application_name=${application}`, DB_SKIP_SYNC: 'true' },
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const ready = new Promise<void>((resolve) =>
      child.stdout.on('data', (chunk) => {
        stdout += chunk;
        if (stdout.includes('ready')) resolve();
      }),
    );
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    await ready;
    child.kill('SIGTERM');
    expect(await exited, stderr).toEqual({ code: 0, signal: null });
    expect(stdout).toContain('in-flight call finished: slept');
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity where application_name = ${application}`.execute(t.db);
    expect(rows[0]!.n).toBe(0);
  });
});
