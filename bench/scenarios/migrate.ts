/**
 * `npm run migrate` from an empty database: the CLI as a process (what an operator runs; node
 * start-up included), and the migrator's own time per migration from its ledger. On the server
 * the CLI migrates the bench database itself; embedded, the bench database (memory://) is
 * migrated in-process and the CLI runs on a PGlite directory of its own.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { migrate } from '../../src/db/migrator.ts';
import type { Backend } from '../backend.ts';
import { say } from '../progress.ts';
import type { Result } from '../report.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

/** Migrates the (empty) bench database and reports how long it took. */
export async function migrateScenario(backend: Backend): Promise<Result> {
  say('migrating from empty…');
  const env = { ...process.env };
  let cliDir: string | undefined;
  if (backend.kind === 'server') {
    env.DATABASE_URL = backend.url;
  } else {
    for (const name of ['DATABASE_URL', 'PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD']) delete env[name];
    cliDir = mkdtempSync(join(tmpdir(), 'bench-migrate-'));
    env.DB_STORAGE = join(cliDir, 'pglite');
  }
  const started = performance.now();
  const { stdout } = await run(process.execPath, ['src/cli/database.ts', 'migrate'], { cwd: ROOT, env });
  const cliSeconds = (performance.now() - started) / 1000;
  if (cliDir !== undefined) rmSync(cliDir, { recursive: true, force: true });
  let inProcessSeconds: number | undefined;
  if (backend.kind === 'embedded') {
    const t = performance.now();
    await migrate(backend.db);
    inProcessSeconds = (performance.now() - t) / 1000;
  }
  const ledger = await backend.bare.query<{ n: number; ms: number }>(
    `select count(*)::int as n, coalesce(sum(duration_ms), 0)::int as ms from schema_migrations`,
  );
  const applied = stdout.trim().split('\n').at(-1) ?? '';
  say(`  ${applied} in ${cliSeconds.toFixed(2)} s`);
  return {
    id: 'migrate.fromEmpty',
    group: 'migrations',
    label: 'npm run migrate from empty',
    figures: {
      seconds: cliSeconds,
      ...(inProcessSeconds === undefined ? {} : { 'in-process migrate() s': inProcessSeconds }),
      migrations: ledger[0]?.n ?? 0,
      'ledger sum of duration_ms': ledger[0]?.ms ?? 0,
    },
  };
}
