/**
 * `database studio`: a local, read-only web page to browse the configured database as the owner
 * or as a tenant (src/studio). Prints its URL with a random access token and runs until Ctrl-C.
 */
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { describeTarget } from '../db/target.ts';
import { sql } from 'kysely';
import { readOnly } from '../studio/read-only.ts';
import { DEFAULT_HOST, DEFAULT_PORT, isLoopback, startStudio } from '../studio/server.ts';
import { noExtraArguments, parseCommandLine, UsageError } from './args.ts';
import { embeddedStoreMissing } from './embedded-store.ts';
import { EXIT } from './run-cli.ts';

/** Usage of `database studio`. */
export const STUDIO_USAGE = `usage: database studio [--port N] [--host ADDRESS]

Starts a small web server to browse the configured database: an overview (versions, migrations,
tables, roles), a table browser, each tenant as a service role sees it through withTenant
(row-level security), conversations as message trees, spend per day by model, and a search
playground. Prints its URL with a random access token: every request without it gets 401.
Read-only: every transaction it runs is read-only, and no page writes. Runs until Ctrl-C.

  --port N          port to listen on (default ${DEFAULT_PORT}; 0: any free port)
  --host ADDRESS    address to listen on (default ${DEFAULT_HOST}: this machine only). Another
                    address exposes the studio to that network, guarded by the token only, over
                    plain HTTP.`;

/** Runs `database studio ARGS…`; resolves to the exit code when the studio is stopped. */
export async function runStudio(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { port: { type: 'string' }, host: { type: 'string' } },
    STUDIO_USAGE,
  );
  if (values.help) {
    console.log(STUDIO_USAGE);
    return EXIT.ok;
  }
  noExtraArguments(positionals, 0, STUDIO_USAGE);
  const port = parsePort(values.port);
  const host = values.host ?? DEFAULT_HOST;
  if (host.trim() === '') throw new UsageError('--host: give an address (e.g. 127.0.0.1)', STUDIO_USAGE);

  const config = loadConfig();
  const target = describeTarget(config);
  console.log(target);
  if (embeddedStoreMissing(config)) {
    console.error('the embedded store does not exist yet: `database start` (or `database migrate`) creates it; the studio only reads');
    return EXIT.failed;
  }
  const db = createDb(config);
  try {
    // Connect before listening: a wrong DATABASE_URL fails here, naming the server.
    await readOnly(db, (tx) => sql`select 1`.execute(tx));
    const studio = await startStudio({ db, target, host, port });
    console.log(`studio: ${studio.url}`);
    console.log('read-only; every request needs the token in that URL. Ctrl-C stops it.');
    if (!isLoopback(host)) {
      console.log(`warning: listening on ${host}, not loopback: anyone who can reach it and has the token sees the whole database (plain HTTP)`);
    }
    if (config.kind === 'pglite') {
      console.log('the embedded store is open in this process: other processes cannot open it until the studio stops');
    }
    await stopSignal();
    await studio.close();
    console.log('studio stopped');
    return EXIT.ok;
  } finally {
    await db.destroy();
  }
}

function parsePort(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PORT;
  if (!/^\d+$/.test(text) || Number(text) > 65_535) {
    throw new UsageError(`--port must be an integer from 0 to 65535, got ${JSON.stringify(text)}`, STUDIO_USAGE);
  }
  return Number(text);
}

/** Resolves on the first SIGINT or SIGTERM. */
function stopSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
