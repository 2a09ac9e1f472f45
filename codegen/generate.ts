/**
 * `npm run codegen`: migrates a scratch database and writes src/db/schema.generated.ts from it
 * with kysely-codegen. `--verify` (npm run codegen:check) writes nothing and exits non-zero when
 * the committed file differs from what the migrations give.
 *
 * The scratch database is embedded PGlite in memory, or, when DATABASE_URL is set, a database
 * created for the run on that server (and dropped after it).
 */
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import {
  ArrayExpressionNode,
  IdentifierNode,
  RawExpressionNode,
  PostgresDialect as CodegenPostgresDialect,
  generate,
  type Logger,
} from 'kysely-codegen';
import { createDb } from '../src/db/create-db.ts';
import { postgresConfig } from '../src/db/config.ts';
import { LEDGER_TABLE, migrate } from '../src/db/migrator.ts';

const OUT_FILE = fileURLToPath(new URL('../src/db/schema.generated.ts', import.meta.url));

const logger = {
  debug() {},
  info() {},
  warn: (...args: unknown[]) => console.warn(...args),
  error: (...args: unknown[]) => console.error(...args),
  success: (...args: unknown[]) => console.log(...args),
} as unknown as Logger;

async function main(): Promise<void> {
  const verify = process.argv.includes('--verify');
  const scratch = await openScratchDatabase();
  try {
    await migrate(scratch.db);
    await generate({
      db: scratch.db.withoutPlugins(),
      dialect: new CodegenPostgresDialect(),
      camelCase: true,
      outFile: OUT_FILE,
      verify,
      logger,
      excludePattern: `*${LEDGER_TABLE}`,
      // Built as nodes rather than strings: kysely-codegen parses string overrides with the
      // TypeScript compiler API, which TypeScript 7 (the native compiler) no longer exposes.
      overrides: {
        columns: {
          'vectors.embedding': new ArrayExpressionNode(new IdentifierNode('number')),
          // A GENERATED ALWAYS ... STORED column: readable, never written.
          'vectors.content_tsv': new RawExpressionNode('ColumnType<string, never, never>'),
        },
      },
    });
  } finally {
    await scratch.close();
  }
}

async function openScratchDatabase(): Promise<{ db: Kysely<any>; close: () => Promise<void> }> {
  const url = process.env.DATABASE_URL;
  if (url === undefined || url === '') {
    const db = createDb({ kind: 'pglite', storage: 'memory://' });
    return { db, close: () => db.destroy() };
  }
  const name = `codegen_scratch_${process.pid}_${Date.now()}`;
  // Without plugins: the camelCase plugin would rewrite the database name passed to sql.id().
  const admin = createDb(postgresConfig({ connectionString: url, poolMax: 1 })).withoutPlugins();
  await sql`create database ${sql.id(name)}`.execute(admin);
  const scratchUrl = new URL(url);
  scratchUrl.pathname = `/${name}`;
  const db = createDb(postgresConfig({ connectionString: scratchUrl.toString(), poolMax: 1 }));
  return {
    db,
    close: async () => {
      await db.destroy();
      await sql`drop database if exists ${sql.id(name)}`.execute(admin);
      await admin.destroy();
    },
  };
}

main().catch((error: unknown) => {
  console.error(`codegen: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
