/**
 * `database seed [--dir PATH] [--force]`: load the seed data (data/*.csv by default) into the
 * migrated database, in one transaction; nothing is written when any file has a problem.
 */
import { resolve } from 'node:path';
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { describeTarget } from '../db/target.ts';
import { formatSeedProblem, SeedError } from '../seed/errors.ts';
import { seed } from '../seed/seed.ts';
import { noExtraArguments, parseCommandLine } from './args.ts';
import { EXIT } from './run-cli.ts';

/** Usage of `database seed`. */
export const SEED_USAGE = `usage: database seed [--dir PATH] [--force]

Loads the seed data into the migrated database (it does not migrate: run \`database migrate\`
first): every CSV row upserted by primary key, all in one transaction; any problem is reported
as file:line:column, every one at once, and nothing is written. TEST_API_KEY set adds the test admin.

  --dir PATH       the folder of the CSV files (default: the package's data/)
  --force          also overwrite catalog rows that changed since the seed last wrote them
                   (by the cms or an operator); without it they are kept and reported`;

/** Runs `database seed ARGS…`; resolves to the exit code. */
export async function runSeed(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { dir: { type: 'string' }, force: { type: 'boolean' } },
    SEED_USAGE,
  );
  if (values.help) {
    console.log(SEED_USAGE);
    return EXIT.ok;
  }
  noExtraArguments(positionals, 0, SEED_USAGE);

  const config = loadConfig();
  console.log(describeTarget(config));
  const db = createDb(config);
  try {
    await seed(db, {
      ...(values.dir === undefined ? {} : { dir: resolve(values.dir) }),
      force: values.force === true,
      log: (line) => console.log(line),
      warn: (line) => console.warn(line),
    });
    return EXIT.ok;
  } catch (error) {
    if (!(error instanceof SeedError) || error.problems.length === 0) throw error;
    // One problem per line, so that editors and CI annotate each file:line:column.
    for (const problem of error.problems) console.error(formatSeedProblem(problem));
    const n = error.problems.length;
    throw new Error(`${n} problem${n === 1 ? '' : 's'} in the seed data; nothing was written`);
  } finally {
    await db.destroy();
  }
}
