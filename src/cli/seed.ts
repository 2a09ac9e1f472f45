/**
 * npm run seed [-- --dir PATH]   load the seed data (data/*.csv by default) into the migrated database:
 * every row upserted by primary key in one transaction, nothing written when any file has a problem.
 * The database comes from the environment (DATABASE_URL / PG* / DB_STORAGE), as for createDb();
 * TEST_API_KEY set adds the test admin. It does not migrate: run `npm run migrate` first.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { formatSeedProblem, SeedError } from '../seed/errors.ts';
import { seed } from '../seed/seed.ts';
import { runCli } from './run-cli.ts';

const USAGE = 'usage: npm run seed [-- --dir PATH]';

runCli('seed', async () => {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (positionals.length > 0) throw new Error(`unknown arguments. ${USAGE}`);

  const config = loadConfig();
  const db = createDb(config);
  try {
    console.log(config.kind === 'postgres' ? 'database: PostgreSQL server' : `database: embedded PGlite at ${config.storage}`);
    await seed(db, {
      ...(values.dir === undefined ? {} : { dir: values.dir }),
      log: (line) => console.log(line),
      warn: (line) => console.warn(line),
    });
  } catch (error) {
    if (!(error instanceof SeedError) || error.problems.length === 0) throw error;
    // One problem per line, so that editors and CI annotate each file:line:column.
    for (const problem of error.problems) console.error(formatSeedProblem(problem));
    const n = error.problems.length;
    throw new Error(`${n} problem${n === 1 ? '' : 's'} in the seed data; nothing was written`);
  } finally {
    await db.destroy();
  }
});
