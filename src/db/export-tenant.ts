import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { NotFoundError, TenantTransferError } from './errors.ts';
import { appliedMigrations, assertOwnerPath, ownedTables, rowsOfTenant, type OwnedTable } from './owned-tables.ts';
import { assertUuid } from './tenant.ts';

/** The manifest's `format`: what importTenant accepts. */
export const EXPORT_FORMAT = 'database-tenant-export';
/** The manifest file of an export folder, written last. */
export const MANIFEST_FILE = 'manifest.json';
const DEFAULT_BATCH = 500;

/** One table of an export: its file, row count, size and sha256. */
export interface ExportedTable {
  table: string;
  /** The NDJSON file in the export folder: one JSON object per row, keys = SQL column names. */
  file: string;
  columns: string[];
  rows: number;
  bytes: number;
  sha256: string;
}

/** manifest.json of an export folder. */
export interface TenantExportManifest {
  format: typeof EXPORT_FORMAT;
  version: 1;
  tenant: { id: string; slug: string; name: string };
  exportedAt: string;
  /** The migrations applied to the source database: importTenant needs the same. */
  migrations: string[];
  /** Key ids the tenant's secrets are sealed with (user_tools.credential): the target needs those keys. */
  secretKeyIds: string[];
  /** In foreign-key order, parents first. */
  tables: ExportedTable[];
}

/** Options of exportTenant. */
export interface ExportTenantOptions {
  tenantId: string;
  /** The folder to write; created, and refused when it exists and is not empty. */
  dir: string;
  /** Rows per read (default 500). */
  batchSize?: number;
  /** One line per table when it is written. */
  log?: (line: string) => void;
}

/**
 * Writes every row of one tenant — every table with a tenant_id (its users, conversations,
 * messages, usage, vectors, …), its tenants row, its agents and their agent_tools; never the
 * catalog — to `dir`: one NDJSON file per table (`users.ndjson`: one JSON object per row, as
 * PostgreSQL's row_to_json writes it: exact numerics, timestamps with microseconds and offset,
 * vectors as '[…]' text) and `manifest.json` (counts, sizes, sha256 per file, the migrations
 * applied, the secret key ids), written last: a folder without it is not an export. Reads in
 * keyset batches of `batchSize` rows in one REPEATABLE READ, READ ONLY transaction, so the files
 * are one consistent snapshot and memory stays bounded by a batch, whatever the tenant's size.
 * Secrets stay as stored: sealed envelopes (README, "Secrets"), readable only with the keys the
 * manifest names. The owner path: the database (not withTenant), as a superuser or BYPASSRLS role.
 *
 * @example
 * const manifest = await exportTenant(db, { tenantId, dir: '/backups/acme-2025-06-01' });
 * manifest.tables.find((t) => t.table === 'messages')?.rows; // 120034
 */
export async function exportTenant(db: Kysely<any>, options: ExportTenantOptions): Promise<TenantExportManifest> {
  assertUuid('tenantId', options.tenantId);
  const tenantId = options.tenantId.toLowerCase();
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new TenantTransferError(`batchSize must be an integer >= 1, got ${batchSize}`);
  await assertOwnerPath(db, 'exportTenant');
  const dir = resolve(options.dir);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new TenantTransferError(`export folder ${dir} exists and is not empty: give a new or empty folder`, { tenantId });
  }
  const raw = db.withoutPlugins();
  return raw.transaction().execute(async (tx) => {
    await sql`set transaction isolation level repeatable read, read only`.execute(tx);
    const tenant = (await sql<{ id: string; slug: string; name: string }>`
      select id, slug, name from tenants where id = ${tenantId}::uuid`.execute(tx)).rows[0];
    if (tenant === undefined) throw new NotFoundError('tenant', tenantId);
    const tables = await ownedTables(tx);
    mkdirSync(dir, { recursive: true });
    const exported: ExportedTable[] = [];
    for (const table of tables) {
      const written = await exportTable(tx, table, tenantId, join(dir, `${table.name}.ndjson`), batchSize);
      exported.push(written);
      options.log?.(`exported ${table.name}: ${written.rows} row${written.rows === 1 ? '' : 's'}`);
    }
    const keyIds = await sql<{ id: string }>`
      select distinct split_part(credential ->> 'enc', '.', 2) as id from user_tools
      where tenant_id = ${tenantId}::uuid and credential ? 'enc' order by 1`.execute(tx);
    const manifest: TenantExportManifest = {
      format: EXPORT_FORMAT,
      version: 1,
      tenant,
      exportedAt: new Date().toISOString(),
      migrations: await appliedMigrations(tx),
      secretKeyIds: keyIds.rows.map((r) => r.id),
      tables: exported,
    };
    const temporary = join(dir, `${MANIFEST_FILE}.partial`);
    writeFileSync(temporary, `${JSON.stringify(manifest, null, 2)}\n`);
    renameSync(temporary, join(dir, MANIFEST_FILE));
    return manifest;
  });
}

/** Streams one table's rows of the tenant to `path`, keyset batch by keyset batch. */
async function exportTable(tx: Kysely<any>, table: OwnedTable, tenantId: string, path: string, batchSize: number): Promise<ExportedTable> {
  const hash = createHash('sha256');
  const out = createWriteStream(path, { flags: 'wx' });
  let rows = 0;
  let bytes = 0;
  const keyList = sql.join(table.key.map((k) => sql.ref(`r.${k.column}`)));
  let after: string[] | undefined;
  try {
    for (;;) {
      const keyset = after === undefined
        ? sql`true`
        : sql`(${sql.join(table.key.map((k) => sql.ref(k.column)))}) > (${sql.join(table.key.map((k, i) => sql`${after![i]}::${sql.raw(k.type)}`))})`;
      const { rows: batch } = await sql<{ line: string; key: string[] }>`
        select row_to_json(r)::text as line, array[${sql.join(table.key.map((k) => sql`${sql.ref(`r.${k.column}`)}::text`))}] as key
        from (
          select ${sql.join(table.columns.map((c) => sql.ref(c)))} from ${sql.table(table.name)}
          where ${rowsOfTenant(table.name, tenantId)} and ${keyset}
          order by ${sql.join(table.key.map((k) => sql.ref(k.column)))}
          limit ${batchSize}
        ) r
        order by ${keyList}`.execute(tx);
      if (batch.length > 0) {
        const chunk = Buffer.from(batch.map((b) => `${b.line}\n`).join(''), 'utf8');
        hash.update(chunk);
        rows += batch.length;
        bytes += chunk.length;
        if (!out.write(chunk)) await once(out, 'drain');
        after = batch.at(-1)!.key;
      }
      if (batch.length < batchSize) break;
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
  return { table: table.name, file: `${table.name}.ndjson`, columns: table.columns, rows, bytes, sha256: hash.digest('hex') };
}
