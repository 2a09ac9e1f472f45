/**
 * `database tenant export ID DIR | import DIR | delete ID`: tenant offboarding, the owner path.
 * The database comes from the environment (DATABASE_URL / PG* / DB_STORAGE), as for createDb(),
 * and must be reached as its owner (a superuser or BYPASSRLS role, no DB_APP_ROLE).
 */
import { sql } from 'kysely';
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { deleteTenant } from '../db/delete-tenant.ts';
import { exportTenant } from '../db/export-tenant.ts';
import { importTenant } from '../db/import-tenant.ts';
import { describeTarget } from '../db/target.ts';
import { isUuid } from '../db/tenant.ts';
import { noExtraArguments, parseCommandLine, UsageError } from './args.ts';
import { askYesNo, canAsk } from './confirm.ts';
import { EXIT } from './run-cli.ts';

const USAGE_EXPORT = `usage: database tenant export ID DIR [--batch-size N]

Writes every row of tenant ID (a UUID) — every table with a tenant_id, its tenants row, its agents
and their agent_tools; not the catalog — to the folder DIR (created; refused when not empty): one
NDJSON file per table and manifest.json (row counts, sha256 per file, the migrations applied, the
secret key ids), written last. One consistent snapshot, read in batches. Secrets stay sealed: the
database they are imported into needs the keys the manifest names in its DB_SECRET_KEYS.

  --batch-size N   rows per read (default 500)`;

const USAGE_IMPORT = `usage: database tenant import DIR [--batch-size N]

Loads an export folder written by \`database tenant export\` into this database, where that tenant
must not exist: one transaction, in foreign-key order, after checking the manifest (the same
migrations, tables and columns) and each file (row count, sha256, every row the tenant's). The
catalog rows it refers to (roles, models, tools, global agents) must be here with the same ids.
Any problem: exit 1, nothing written.

  --batch-size N   rows per INSERT (default 500)`;

const USAGE_DELETE = `usage: database tenant delete ID [--yes] [--batch-size N]

Removes every row of tenant ID, children first, in batches of one short transaction each, and
last its tenants row. Run it again after a crash: it finishes what is left. Export the tenant
first if you may need it. Shows the target and the tenant and asks on a terminal; without a
terminal it refuses (exit 1, nothing removed) unless --yes is given.

  --batch-size N   rows per DELETE (default 1000)
  --yes, -y        do not ask`;

/** Every form of `database tenant`, for `database tenant --help`. */
export const TENANT_USAGE = `usage: database tenant export ID DIR [--batch-size N]      write every row of a tenant to a folder
       database tenant import DIR [--batch-size N]         load such a folder (the tenant must not exist)
       database tenant delete ID [--yes] [--batch-size N]  remove every row of a tenant (asks first)

  database tenant SUBCOMMAND --help                       more about one of them`;

const USAGES: Record<string, string> = { export: USAGE_EXPORT, import: USAGE_IMPORT, delete: USAGE_DELETE };

/** Runs `database tenant ARGS…`; resolves to the exit code. */
export async function runTenant(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { yes: { type: 'boolean', short: 'y' }, 'batch-size': { type: 'string' } },
    TENANT_USAGE,
  );
  const [command, ...rest] = positionals;
  if (command === undefined) {
    if (values.help) {
      console.log(TENANT_USAGE);
      return EXIT.ok;
    }
    throw new UsageError('tenant takes a subcommand', TENANT_USAGE);
  }
  const usage = USAGES[command];
  if (usage === undefined) throw new UsageError(`unknown subcommand ${JSON.stringify(command)}`, TENANT_USAGE);
  if (values.help) {
    console.log(usage);
    return EXIT.ok;
  }
  const wanted = command === 'export' ? ['ID', 'DIR'] : command === 'import' ? ['DIR'] : ['ID'];
  noExtraArguments(rest, wanted.length, usage);
  if (rest.length < wanted.length) throw new UsageError(`tenant ${command} needs ${wanted.join(' and ')}`, usage);
  if (command !== 'import' && !isUuid(rest[0])) throw new UsageError(`ID must be a tenant's UUID, got ${JSON.stringify(rest[0])}`, usage);
  if (values.yes && command !== 'delete') throw new UsageError(`--yes is for tenant delete only`, usage);
  const batchText = values['batch-size'];
  if (batchText !== undefined && !/^[1-9]\d{0,6}$/.test(batchText)) {
    throw new UsageError(`--batch-size must be an integer from 1 to 9999999, got ${JSON.stringify(batchText)}`, usage);
  }
  const batch = batchText === undefined ? {} : { batchSize: Number(batchText) };
  const log = (line: string) => console.log(line);

  const config = loadConfig();
  const target = describeTarget(config);
  console.log(target);
  const db = createDb(config);
  try {
    if (command === 'export') {
      const manifest = await exportTenant(db, { tenantId: rest[0]!, dir: rest[1]!, ...batch, log });
      const rows = manifest.tables.reduce((n, t) => n + t.rows, 0);
      console.log(`exported tenant ${manifest.tenant.slug} (${manifest.tenant.id}): ${rows} rows in ${manifest.tables.length} files to ${rest[1]}`);
      if (manifest.secretKeyIds.length > 0) console.log(`its secrets are sealed with key ${manifest.secretKeyIds.join(', ')}: the importing side needs them in DB_SECRET_KEYS`);
      return EXIT.ok;
    }
    if (command === 'import') {
      const loaded = await importTenant(db, { dir: rest[0]!, ...batch, log });
      console.log(`imported tenant ${loaded.slug} (${loaded.tenantId}): ${loaded.tables.reduce((n, t) => n + t.rows, 0)} rows`);
      return EXIT.ok;
    }
    const tenantId = rest[0]!.toLowerCase();
    const tenant = (await sql<{ name: string; slug: string }>`select name, slug from tenants where id = ${tenantId}::uuid`.execute(db.withoutPlugins())).rows[0];
    if (tenant === undefined) {
      console.log(`tenant ${tenantId} does not exist on ${target}: nothing to delete`);
      return EXIT.ok;
    }
    const what = `every row of tenant ${tenant.slug} (${tenant.name}, ${tenantId}) on ${target}`;
    if (!values.yes) {
      if (!canAsk()) {
        console.error(`would delete ${what}\nrefusing without a terminal to confirm: nothing was deleted. Add --yes to delete without asking.`);
        return EXIT.failed;
      }
      if (!(await askYesNo(`delete ${what}?`))) {
        console.log('nothing was deleted');
        return EXIT.failed;
      }
    }
    const deletion = await deleteTenant(db, { tenantId, ...batch });
    const rows = deletion.tables.reduce((n, t) => n + t.rows, 0);
    const perTable = deletion.tables.filter((t) => t.rows > 0).map((t) => `${t.table} ${t.rows}`).join(', ');
    console.log(`deleted tenant ${tenant.slug} (${tenantId}): ${rows} rows${perTable === '' ? '' : ` (${perTable})`}`);
    return EXIT.ok;
  } finally {
    await db.destroy();
  }
}
