/**
 * npm run migrate [-- up]            apply all pending migrations
 * npm run migrate -- down            revert the newest one (--to NAME: down to and including NAME; --all)
 * npm run migrate -- status          applied and pending migrations, with checksums
 * npm run migrate -- create NAME     write NNNN_NAME.up.sql / .down.sql with the next number
 * Any command takes --dir PATH (another migrations folder). The database comes from the
 * environment (DATABASE_URL / PG* / DB_STORAGE), as for createDb().
 */
import { parseArgs } from 'node:util';
import { createDb } from '../db/create-db.ts';
import { loadConfig } from '../db/config.ts';
import {
  createMigrationFiles,
  migrate,
  migrateDown,
  migrationStatus,
  type MigratorOptions,
} from '../db/migrator.ts';
import { runCli } from './run-cli.ts';

const USAGE = 'usage: npm run migrate -- [up | down [--to NAME | --all] | status | create NAME] [--dir PATH]';

runCli('migrate', async () => {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      to: { type: 'string' },
      all: { type: 'boolean', default: false },
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const [command = 'up', ...rest] = positionals;
  const options: MigratorOptions = {
    ...(values.dir === undefined ? {} : { migrationsDir: values.dir }),
    log: (line) => console.log(line),
  };

  if (command === 'create') {
    const name = rest[0];
    if (name === undefined || rest.length > 1) throw new Error(`create takes one NAME. ${USAGE}`);
    for (const path of createMigrationFiles(name, options)) console.log(`created ${path}`);
    return;
  }
  if (!['up', 'down', 'status'].includes(command) || rest.length > 0) throw new Error(`unknown arguments. ${USAGE}`);
  if (command !== 'down' && (values.to !== undefined || values.all)) throw new Error(`--to and --all go with down. ${USAGE}`);
  if (values.to !== undefined && values.all) throw new Error(`give --to or --all, not both. ${USAGE}`);

  const config = loadConfig();
  const db = createDb(config);
  try {
    const where = config.kind === 'postgres' ? 'PostgreSQL server' : `embedded PGlite at ${config.storage}`;
    if (command === 'up') {
      const applied = await migrate(db, options);
      console.log(applied.length === 0 ? `up to date (${where})` : `applied ${applied.length} migration(s) (${where})`);
    } else if (command === 'down') {
      const target = values.all ? { to: 0 as const } : values.to === undefined ? {} : { to: values.to };
      const reverted = await migrateDown(db, target, options);
      console.log(reverted.length === 0 ? `nothing to revert (${where})` : `reverted ${reverted.join(', ')} (${where})`);
    } else {
      const status = await migrationStatus(db, options);
      console.log(`migrations on the ${where}:`);
      for (const s of status) {
        const applied = s.appliedAt === undefined ? '' : `  applied ${s.appliedAt.toISOString()} in ${s.durationMs} ms`;
        const sums =
          s.state === 'changed'
            ? `file ${s.checksum?.slice(0, 12)} ≠ ledger ${s.appliedChecksum?.slice(0, 12)}`
            : (s.checksum ?? s.appliedChecksum ?? '').slice(0, 12);
        console.log(`  ${s.state.padEnd(8)} ${s.name.padEnd(40)} ${sums}${applied}`);
      }
      if (status.some((s) => s.state === 'changed' || s.state === 'missing')) process.exitCode = 1;
    }
  } finally {
    await db.destroy();
  }
});
