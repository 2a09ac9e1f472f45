import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { sql, type Kysely } from 'kysely';
import { TenantTransferError, constraintOf, sqlState } from './errors.ts';
import { EXPORT_FORMAT, MANIFEST_FILE, type ExportedTable, type TenantExportManifest } from './export-tenant.ts';
import { appliedMigrations, assertOwnerPath, deferrableForeignKeys, ownedTables, rowsOfTenant, type OwnedTable } from './owned-tables.ts';
import { isUuid } from './tenant.ts';

const DEFAULT_BATCH = 500;

/** Options of importTenant. */
export interface ImportTenantOptions {
  /** A folder written by exportTenant. */
  dir: string;
  /** Rows per INSERT (default 500). */
  batchSize?: number;
  /** One line per table when it is loaded. */
  log?: (line: string) => void;
}

/** What importTenant loaded. */
export interface TenantImport {
  tenantId: string;
  slug: string;
  tables: { table: string; rows: number }[];
}

/**
 * Loads a folder written by exportTenant into this database, where that tenant must not exist
 * (its id nor its slug): all in one transaction, table by table in foreign-key order (parents
 * first; the two foreign keys that point backwards, a message's parent and a conversation's
 * summary, are deferred to the end of the transaction and checked there). The manifest is
 * verified first — the format, the same migrations as this database, the same tables and columns
 * — and every file while it is read: its row count and sha256 must be the manifest's, and every
 * row must belong to the manifest's tenant. Any problem → TenantTransferError naming the file (and
 * line), nothing written. Catalog rows the tenant refers to (roles, models, tools; global agents)
 * must exist here with the same ids: the same seed data. Secrets arrive sealed: they open only
 * where the keys the manifest lists (secretKeyIds) are in DB_SECRET_KEYS. The owner path, as
 * exportTenant.
 *
 * @example
 * const loaded = await importTenant(db, { dir: '/backups/acme-2025-06-01' });
 */
export async function importTenant(db: Kysely<any>, options: ImportTenantOptions): Promise<TenantImport> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new TenantTransferError(`batchSize must be an integer >= 1, got ${batchSize}`);
  const dir = resolve(options.dir);
  const manifest = readManifest(dir);
  const tenantId = manifest.tenant.id;
  await assertOwnerPath(db, 'importTenant');
  const raw = db.withoutPlugins();
  return raw.transaction().execute(async (tx) => {
    const migrations = await appliedMigrations(tx);
    if (JSON.stringify(migrations) !== JSON.stringify(manifest.migrations)) {
      const missing = manifest.migrations.filter((m) => !migrations.includes(m));
      const extra = migrations.filter((m) => !manifest.migrations.includes(m));
      throw new TenantTransferError(
        `the export was made at other migrations than this database's: ${[
          missing.length > 0 ? `not applied here: ${missing.join(', ')}` : '',
          extra.length > 0 ? `applied here only: ${extra.join(', ')}` : '',
        ].filter(Boolean).join('; ') || 'another order'}. Migrate both to the same version first`,
        { tenantId, file: join(dir, MANIFEST_FILE) },
      );
    }
    const tables = await ownedTables(tx);
    matchTables(tables, manifest, join(dir, MANIFEST_FILE));
    const clash = (await sql<{ id: string; slug: string }>`
      select id::text, slug from tenants where id = ${tenantId}::uuid or slug = ${manifest.tenant.slug}`.execute(tx)).rows[0];
    if (clash !== undefined) {
      throw new TenantTransferError(
        clash.id === tenantId
          ? `tenant ${tenantId} exists in this database already: importTenant loads only a tenant that is not there (deleteTenant removes one)`
          : `the slug ${manifest.tenant.slug} of tenant ${tenantId} belongs to tenant ${clash.id} here`,
        { tenantId },
      );
    }
    const deferred = await deferrableForeignKeys(tx, tables);
    if (deferred.length > 0) await sql`set constraints ${sql.raw(deferred.join(', '))} deferred`.execute(tx);
    const loaded: { table: string; rows: number }[] = [];
    for (const table of tables) {
      const entry = manifest.tables.find((t) => t.table === table.name)!;
      await loadTable(tx, table, entry, join(dir, entry.file), tenantId, batchSize);
      loaded.push({ table: table.name, rows: entry.rows });
      options.log?.(`imported ${table.name}: ${entry.rows} row${entry.rows === 1 ? '' : 's'}`);
    }
    try {
      await sql`set constraints all immediate`.execute(tx);
    } catch (error) {
      const constraint = constraintOf(error);
      throw new TenantTransferError(
        `the export's rows do not hold together: ${(error as Error).message}${constraint === undefined ? '' : ` (${constraint})`}`,
        { tenantId, cause: error },
      );
    }
    await moveSequencesPastIds(tx, tables);
    return { tenantId, slug: manifest.tenant.slug, tables: loaded };
  });
}

/**
 * The identity (and serial) sequences of the loaded tables (the tenant's own prompts and tools
 * have integer ids, kept by the import): moved to the largest id in the table when they are
 * behind it, so the next generated id does not collide with an imported one; never moved back.
 */
async function moveSequencesPastIds(tx: Kysely<any>, tables: OwnedTable[]): Promise<void> {
  const { rows } = await sql<{ table: string; column: string; sequence: string }>`
    select c.relname::text as table, a.attname::text as column,
           pg_get_serial_sequence(format('public.%I', c.relname), a.attname) as sequence
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    where c.relname = any(${tables.map((t) => t.name)}::text[])
      and pg_get_serial_sequence(format('public.%I', c.relname), a.attname) is not null`.execute(tx);
  for (const { table, column, sequence } of rows) {
    await sql`
      select setval(${sequence}::regclass, m)
      from (select max(${sql.id(column)}) as m from ${sql.table(table)}) as t
      where m > coalesce(pg_sequence_last_value(${sequence}::regclass), 0)`.execute(tx);
  }
}

/** manifest.json of `dir`, checked for shape; TenantTransferError naming the file otherwise. */
function readManifest(dir: string): TenantExportManifest {
  const file = join(dir, MANIFEST_FILE);
  const fail = (why: string): never => {
    throw new TenantTransferError(`${file}: ${why}`, { file });
  };
  if (!existsSync(file)) fail('no manifest: not a folder written by exportTenant, or an export that did not finish');
  let manifest: TenantExportManifest;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8')) as TenantExportManifest;
  } catch (error) {
    return fail(`is not JSON (${(error as Error).message})`);
  }
  if (manifest?.format !== EXPORT_FORMAT || manifest.version !== 1) fail(`is not a ${EXPORT_FORMAT} version 1 manifest`);
  if (!isUuid(manifest.tenant?.id) || typeof manifest.tenant.slug !== 'string') fail('tenant.id and tenant.slug are missing');
  manifest.tenant.id = manifest.tenant.id.toLowerCase();
  if (!Array.isArray(manifest.migrations) || !manifest.migrations.every((m) => typeof m === 'string')) fail('migrations is not a list of names');
  if (!Array.isArray(manifest.tables)) fail('tables is not a list');
  for (const t of manifest.tables) {
    const ok = typeof t?.table === 'string' && t.file === `${t.table}.ndjson` && Number.isSafeInteger(t.rows) && t.rows >= 0 &&
      typeof t.sha256 === 'string' && /^[0-9a-f]{64}$/.test(t.sha256) && Array.isArray(t.columns);
    if (!ok) fail(`table entry ${JSON.stringify(t?.table)} is malformed`);
    const path = join(dir, t.file);
    if (!existsSync(path)) fail(`names ${t.file}, which is not in the folder`);
    if (statSync(path).size !== t.bytes) fail(`${t.file} has ${statSync(path).size} bytes, the manifest says ${t.bytes}`);
  }
  return manifest;
}

/** The manifest must list exactly this database's tenant tables, with the same columns. */
function matchTables(tables: OwnedTable[], manifest: TenantExportManifest, file: string): void {
  const here = new Map(tables.map((t) => [t.name, t]));
  const there = new Map(manifest.tables.map((t) => [t.table, t]));
  const problems: string[] = [];
  for (const name of here.keys()) if (!there.has(name)) problems.push(`no file for table ${name}`);
  for (const name of there.keys()) if (!here.has(name)) problems.push(`table ${name} does not exist here`);
  for (const [name, table] of here) {
    const exported = there.get(name);
    if (exported !== undefined && JSON.stringify(exported.columns) !== JSON.stringify(table.columns)) {
      problems.push(`${name} has columns (${table.columns.join(', ')}) here, (${exported.columns.join(', ')}) in the export`);
    }
  }
  if (problems.length > 0) throw new TenantTransferError(`${file}: the export does not fit this database: ${problems.join('; ')}`, { file });
}

/** Inserts one file's rows in batches, checking each row's tenant, then the file's count and sha256. */
async function loadTable(tx: Kysely<any>, table: OwnedTable, entry: ExportedTable, path: string, tenantId: string, batchSize: number): Promise<void> {
  const hash = createHash('sha256');
  const input = createReadStream(path);
  input.on('data', (chunk) => hash.update(chunk));
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  const columns = sql.join(table.columns.map((c) => sql.ref(c)));
  let batch: string[] = [];
  let lineNo = 0;
  let rows = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const first = lineNo - batch.length + 1;
    let inserted: bigint;
    try {
      const result = await sql`
        insert into ${sql.table(table.name)} (${columns})
        select ${sql.join(table.columns.map((c) => sql.ref(`r.${c}`)))}
        from json_populate_recordset(null::${sql.table(table.name)}, ${`[${batch.join(',')}]`}::json) r
        where ${rowsOfTenant(table.name, tenantId, 'r')}`.execute(tx);
      inserted = result.numAffectedRows ?? 0n;
    } catch (error) {
      const bad = batch.findIndex((line) => !isJsonObject(line));
      throw new TenantTransferError(
        bad >= 0
          ? `${path}:${first + bad}: is not a JSON object`
          : `${path}: lines ${first}-${lineNo} could not be loaded into ${table.name}: ${(error as Error).message}` +
              (sqlState(error) === '23505' ? ' (a row with that key exists in this database already)' : ''),
        { tenantId, file: path, line: bad >= 0 ? first + bad : first, cause: error },
      );
    }
    if (inserted !== BigInt(batch.length)) {
      throw new TenantTransferError(
        `${path}: lines ${first}-${lineNo} hold ${batch.length - Number(inserted)} row(s) that do not belong to tenant ${tenantId}`,
        { tenantId, file: path, line: first },
      );
    }
    rows += batch.length;
    batch = [];
  };
  for await (const line of lines) {
    lineNo += 1;
    if (line === '') throw new TenantTransferError(`${path}:${lineNo}: is empty`, { tenantId, file: path, line: lineNo });
    batch.push(line);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  const digest = hash.digest('hex');
  if (rows !== entry.rows || digest !== entry.sha256) {
    throw new TenantTransferError(
      `${path}: ${rows} rows with sha256 ${digest}, the manifest says ${entry.rows} rows with sha256 ${entry.sha256}: the file was changed or cut`,
      { tenantId, file: path },
    );
  }
}

function isJsonObject(line: string): boolean {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}
