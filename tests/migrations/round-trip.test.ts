/**
 * The migrations as a whole: up from nothing, down to nothing, and up again, compared through a
 * catalog dump (a sorted, OID-free description of everything the migrations create in schemas
 * public and app), so "the same schema" means the same columns, constraints, indexes, triggers,
 * policies, functions, grants and comments, not just the same table names.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEDGER_TABLE, migrate, migrateDown, migrationStatus, readMigrationFiles } from '../../src/db/migrator.ts';
import { publicTables } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';


const SCHEMAS = `('public', 'app')`;

/** SQL that is true when the object (classid, objid) belongs to an extension (pgvector's types, functions, operators). */
function extensionMember(classid: string, objid: string): string {
  return `exists (select 1 from pg_depend e where e.classid = ${classid} and e.objid = ${objid} and e.deptype = 'e')`;
}

/**
 * SQL for an ACL as a sorted JSON array of `grantee=PRIVILEGE/grantor`. With `defaultKind` (an SQL
 * "char" expression, as acldefault() takes it) and `owner`, a NULL
 * ACL reads as the object's default privileges (acldefault), so an ACL that a GRANT made explicit
 * and a REVOKE brought back to the default compares equal to the untouched NULL it was before.
 */
function aclJson(acl: string, defaultKind?: string, owner?: string): string {
  const source = defaultKind === undefined ? acl : `coalesce(${acl}, acldefault(${defaultKind}, ${owner}))`;
  return `(select coalesce(jsonb_agg(x order by x collate "C"), '[]'::jsonb) from (
            select format('%s=%s/%s%s',
                          case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee) end,
                          a.privilege_type, pg_get_userbyid(a.grantor),
                          case when a.is_grantable then ' WITH GRANT OPTION' else '' end) as x
            from aclexplode(${source}) a) acl)`;
}

const LEDGER = `'${LEDGER_TABLE}'`;

/** One query per section; each returns one `line` (a jsonb object as text) per object. */
const SECTIONS = {
  // Every object that lives in public/app (tables, sequences, functions, types, operators, ...),
  // by its OID-free identity: a catch-all for kinds the sections below do not detail.
  objects: `
    select jsonb_build_object('type', o.type, 'identity', o.identity)::text as line
    from pg_depend d
    cross join lateral pg_identify_object(d.classid, d.objid, d.objsubid) o
    where d.refclassid = 'pg_namespace'::regclass and d.deptype = 'n'
      and d.refobjid in (select oid from pg_namespace where nspname in ${SCHEMAS})
      and not ${extensionMember('d.classid', 'd.objid')}
      and o.identity is distinct from 'public.' || ${LEDGER}`,

  schemas: `
    select jsonb_build_object('schema', n.nspname, 'owner', pg_get_userbyid(n.nspowner),
             'acl', ${aclJson('n.nspacl', `'n'`, 'n.nspowner')},
             'comment', obj_description(n.oid, 'pg_namespace'))::text as line
    from pg_namespace n where n.nspname in ${SCHEMAS}`,

  extensions: `
    select jsonb_build_object('extension', e.extname, 'version', e.extversion, 'schema', n.nspname,
             'owner', pg_get_userbyid(e.extowner), 'comment', obj_description(e.oid, 'pg_extension'))::text as line
    from pg_extension e join pg_namespace n on n.oid = e.extnamespace`,

  relations: `
    select jsonb_build_object('relation', n.nspname || '.' || c.relname, 'kind', c.relkind,
             'persistence', c.relpersistence, 'options', c.reloptions, 'owner', pg_get_userbyid(c.relowner),
             'rowSecurity', c.relrowsecurity, 'forceRowSecurity', c.relforcerowsecurity,
             'replicaIdentity', c.relreplident,
             'view', case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid) end,
             'acl', ${aclJson('c.relacl', `(case when c.relkind = 'S' then 's' else 'r' end)::"char"`, 'c.relowner')},
             'comment', obj_description(c.oid, 'pg_class'))::text as line
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ${SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f', 'c')
      and c.relname <> ${LEDGER}
      and not ${extensionMember(`'pg_class'::regclass`, 'c.oid')}
      and not (c.relkind = 'c' and ${extensionMember(`'pg_type'::regclass`, 'c.reltype')})`,

  columns: `
    select jsonb_build_object('relation', n.nspname || '.' || c.relname,
             'position', row_number() over (partition by c.oid order by a.attnum),
             'column', a.attname, 'type', format_type(a.atttypid, a.atttypmod), 'notNull', a.attnotnull,
             'default', pg_get_expr(ad.adbin, ad.adrelid), 'identity', a.attidentity, 'generated', a.attgenerated,
             'collation', case when a.attcollation <> t.typcollation then (select collname from pg_collation where oid = a.attcollation) end,
             'storage', case when a.attstorage <> t.typstorage then a.attstorage end,
             'acl', ${aclJson('a.attacl')},
             'comment', col_description(c.oid, a.attnum))::text as line
    from pg_attribute a
    join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    join pg_type t on t.oid = a.atttypid
    left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
    where n.nspname in ${SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm', 'f', 'c')
      and a.attnum > 0 and not a.attisdropped and c.relname <> ${LEDGER}
      and not ${extensionMember(`'pg_class'::regclass`, 'c.oid')}
      and not (c.relkind = 'c' and ${extensionMember(`'pg_type'::regclass`, 'c.reltype')})`,

  sequences: `
    select jsonb_build_object('sequence', n.nspname || '.' || c.relname, 'type', format_type(s.seqtypid, null),
             'start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
             'cache', s.seqcache, 'cycle', s.seqcycle,
             'ownedBy', (select string_agg(format('%s.%s (%s)', r.relname, ra.attname, d.deptype), ', ')
                         from pg_depend d
                         join pg_class r on r.oid = d.refobjid
                         join pg_attribute ra on ra.attrelid = d.refobjid and ra.attnum = d.refobjsubid
                         where d.classid = 'pg_class'::regclass and d.objid = c.oid
                           and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')))::text as line
    from pg_sequence s
    join pg_class c on c.oid = s.seqrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ${SCHEMAS} and not ${extensionMember(`'pg_class'::regclass`, 'c.oid')}`,

  constraints: `
    select jsonb_build_object('on', coalesce(rel.relname, format_type(con.contypid, null)),
             'constraint', con.conname, 'type', con.contype, 'definition', pg_get_constraintdef(con.oid),
             'deferrable', con.condeferrable, 'deferred', con.condeferred, 'validated', con.convalidated,
             'comment', obj_description(con.oid, 'pg_constraint'))::text as line
    from pg_constraint con
    join pg_namespace n on n.oid = con.connamespace
    left join pg_class rel on rel.oid = con.conrelid
    where n.nspname in ${SCHEMAS} and rel.relname is distinct from ${LEDGER}
      and not ${extensionMember(`'pg_class'::regclass`, 'con.conrelid')}
      and not ${extensionMember(`'pg_type'::regclass`, 'con.contypid')}`,

  indexes: `
    select jsonb_build_object('index', ci.relname, 'table', ct.relname, 'definition', pg_get_indexdef(i.indexrelid),
             'primary', i.indisprimary, 'unique', i.indisunique, 'exclusion', i.indisexclusion,
             'immediate', i.indimmediate, 'clustered', i.indisclustered, 'valid', i.indisvalid,
             'replicaIdentity', i.indisreplident, 'options', ci.reloptions,
             'comment', obj_description(ci.oid, 'pg_class'))::text as line
    from pg_index i
    join pg_class ci on ci.oid = i.indexrelid
    join pg_class ct on ct.oid = i.indrelid
    join pg_namespace n on n.oid = ct.relnamespace
    where n.nspname in ${SCHEMAS} and ct.relname <> ${LEDGER}
      and not ${extensionMember(`'pg_class'::regclass`, 'ct.oid')}`,

  // Internal triggers (the ones behind foreign keys) are left out: their names hold OIDs, and the
  // foreign keys themselves are in constraints.
  triggers: `
    select jsonb_build_object('trigger', t.tgname, 'table', c.relname, 'definition', pg_get_triggerdef(t.oid),
             'enabled', t.tgenabled, 'comment', obj_description(t.oid, 'pg_trigger'))::text as line
    from pg_trigger t
    join pg_class c on c.oid = t.tgrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ${SCHEMAS} and not t.tgisinternal`,

  policies: `
    select jsonb_build_object('table', p.schemaname || '.' || p.tablename, 'policy', p.policyname,
             'permissive', p.permissive, 'roles', p.roles::text[], 'cmd', p.cmd,
             'using', p.qual, 'withCheck', p.with_check)::text as line
    from pg_policies p where p.schemaname in ${SCHEMAS}`,

  functions: `
    select jsonb_build_object('function', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
             'kind', p.prokind, 'result', pg_get_function_result(p.oid),
             'definition', case when p.prokind in ('f', 'p', 'w') then pg_get_functiondef(p.oid) end,
             'securityDefiner', p.prosecdef, 'config', p.proconfig, 'volatility', p.provolatile,
             'parallel', p.proparallel, 'strict', p.proisstrict, 'leakproof', p.proleakproof,
             'owner', pg_get_userbyid(p.proowner), 'acl', ${aclJson('p.proacl', `'f'`, 'p.proowner')})::text as line
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ${SCHEMAS} and not ${extensionMember(`'pg_proc'::regclass`, 'p.oid')}`,

  // Types of their own (enums, domains, composites, ranges), not the row and array types that
  // come with every table.
  types: `
    select jsonb_build_object('type', format_type(t.oid, null), 'kind', t.typtype,
             'base', case when t.typtype = 'd' then format_type(t.typbasetype, t.typtypmod) end,
             'notNull', t.typnotnull, 'default', t.typdefault,
             'labels', (select jsonb_agg(e.enumlabel order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid),
             'owner', pg_get_userbyid(t.typowner), 'acl', ${aclJson('t.typacl', `'T'`, 't.typowner')},
             'comment', obj_description(t.oid, 'pg_type'))::text as line
    from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where n.nspname in ${SCHEMAS}
      and not ${extensionMember(`'pg_type'::regclass`, 't.oid')}
      and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
      and not exists (select 1 from pg_type o where o.typarray = t.oid)`,

  // Comments on anything made after initdb (OID >= 16384) that is not part of an extension:
  // schemas, tables, columns, functions, indexes, policies, triggers, constraints.
  comments: `
    select jsonb_build_object('object', o.type || ' ' || o.identity, 'comment', d.description)::text as line
    from pg_description d
    cross join lateral pg_identify_object(d.classoid, d.objoid, d.objsubid) o
    where d.objoid >= 16384 and not ${extensionMember('d.classoid', 'd.objoid')}`,

  defaultPrivileges: `
    select jsonb_build_object('role', pg_get_userbyid(d.defaclrole), 'schema', n.nspname, 'objectType', d.defaclobjtype,
             'acl', ${aclJson('d.defaclacl')})::text as line
    from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace`,

  eventTriggers: `
    select jsonb_build_object('eventTrigger', t.evtname, 'event', t.evtevent, 'function', t.evtfoid::regprocedure::text,
             'enabled', t.evtenabled, 'tags', t.evttags)::text as line
    from pg_event_trigger t`,
} satisfies Record<string, string>;

type Section = keyof typeof SECTIONS;
/** Section name → sorted lines, one JSON object per catalog object. */
type CatalogDump = Record<Section, string[]>;

/** A deterministic description of everything in schemas public and app, except the migrator's ledger. */
async function catalogDump(db: Kysely<any>): Promise<CatalogDump> {
  const dump: Partial<CatalogDump> = {};
  for (const section of Object.keys(SECTIONS) as Section[]) {
    const { rows } = await sql.raw<{ line: string }>(SECTIONS[section]).execute(db);
    dump[section] = rows.map((r) => r.line).sort();
  }
  return dump as CatalogDump;
}

/** The ledger exactly as stored (applied_at as text, to the microsecond); none before the first migrator run. */
async function ledgerRows(db: Kysely<any>) {
  const exists = await sql<{ present: boolean }>`select to_regclass(${LEDGER_TABLE}) is not null as present`.execute(db);
  if (!exists.rows[0]?.present) return [];
  const { rows } = await sql<{ name: string; checksum: string; applied_at: string; duration_ms: number }>`
    select name, checksum, applied_at::text as applied_at, duration_ms from ${sql.table(LEDGER_TABLE)} order by name`.execute(db);
  return rows;
}

const FILES = readMigrationFiles();
const NAMES = FILES.map((f) => f.name);

describe('migrating up, down to nothing, and up again', () => {
  let t: TestDb;
  let db: Kysely<any>;
  let empty: CatalogDump;
  let migrated: CatalogDump;

  beforeAll(async () => {
    t = await openTestDb({ migrated: false });
    db = t.db.withoutPlugins();
    empty = await catalogDump(db);
  });
  afterAll(() => t?.close());

  it('migrate() on an empty database applies every migration in order; the dump sees what they create, not pgvector internals', async () => {
    // Guards the tests below against passing on an empty or blind dump.
    expect(empty.policies).toEqual([]);
    expect(empty.schemas.map((line) => JSON.parse(line).schema)).toEqual(['public']);
    expect(await migrate(db)).toEqual(NAMES);
    migrated = await catalogDump(db);
    const has = (section: Section, fragment: string) => migrated[section].some((line) => line.includes(fragment));
    expect(has('schemas', '"schema": "app"')).toBe(true);
    expect(has('extensions', '"extension": "vector"')).toBe(true);
    expect(has('relations', '"relation": "public.users"')).toBe(true);
    expect(has('columns', '"type": "vector(1536)"')).toBe(true);
    expect(has('constraints', 'FOREIGN KEY (tenant_id, summary_message_id)')).toBe(true);
    expect(has('indexes', 'USING hnsw (embedding vector_cosine_ops)')).toBe(true);
    expect(has('triggers', 'users_set_updated_at')).toBe(true);
    expect(has('policies', '"policy": "users_select"')).toBe(true);
    expect(has('functions', 'app.resolve_api_key(key_hash text)')).toBe(true);
    expect(has('relations', 'app_cms=SELECT/')).toBe(true);
    expect(has('columns', 'app_gateway=SELECT/')).toBe(true); // providers' column grants
    expect(has('comments', 'column public.users.remaining')).toBe(true);
    expect(has('sequences', 'roles.id (i)')).toBe(true);
    // pgvector's own functions, operators and types are the extension's, listed once as the extension.
    expect(has('functions', 'vector_in')).toBe(false);
    const objects = migrated.objects.map((line) => JSON.parse(line) as { type: string; identity: string });
    expect(objects.filter((o) => o.type !== 'extension' && /\bvector\b/.test(o.identity))).toEqual([]);
    expect(objects.filter((o) => o.identity.includes(LEDGER_TABLE))).toEqual([]);
  });

  it('records every migration in the ledger with its file checksum', async () => {
    const ledger = await ledgerRows(db);
    expect(ledger.map((r) => [r.name, r.checksum])).toEqual(FILES.map((f) => [f.name, f.checksum]));
    expect((await migrationStatus(db)).map((s) => s.state)).toEqual(FILES.map(() => 'applied'));
  });

  it('a second migrate() applies nothing and changes neither the schema nor the ledger', async () => {
    const ledgerBefore = await ledgerRows(db);
    expect(await migrate(db)).toEqual([]);
    expect(await catalogDump(db)).toEqual(migrated);
    expect(await ledgerRows(db)).toEqual(ledgerBefore);
  });

  it('migrateDown to 0 leaves nothing of the migrations: no app schema, only the empty ledger in public', async () => {
    expect(await migrateDown(db, { to: 0 })).toEqual([...NAMES].reverse());
    const after = await catalogDump(db);
    expect(after).toEqual(empty);
    expect(after.schemas.map((line) => JSON.parse(line).schema)).toEqual(['public']);
    const ours: Section[] = ['objects', 'relations', 'columns', 'sequences', 'constraints', 'indexes', 'triggers', 'policies', 'functions', 'types', 'comments'];
    for (const section of ours) {
      expect({ section, lines: after[section] }).toEqual({ section, lines: [] });
    }
    expect(after.extensions.some((line) => line.includes('"extension": "vector"'))).toBe(false);
    expect(await publicTables(db)).toEqual([]);
    const { rows } = await sql<{ relname: string }>`
      select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') order by 1`.execute(db);
    expect(rows.map((r) => r.relname)).toEqual([LEDGER_TABLE]);
    expect(await ledgerRows(db)).toEqual([]);
    expect((await migrationStatus(db)).map((s) => s.state)).toEqual(FILES.map(() => 'pending'));
  });

  // Roles are global to the server. On a server other databases (the tests' template, at the latest
  // schema) still use the application roles: a full down here must leave every one of them, or the
  // other databases' withTenant would fail with "role app_user does not exist".
  it.runIf(onServer)('migrateDown to 0 keeps the application roles that other databases on the server use', async () => {
    const { rows } = await sql<{ rolname: string }>`
      select rolname::text from pg_roles where rolname in ('app_user', 'app_server', 'app_gateway', 'app_cms') order by 1`.execute(db);
    expect(rows.map((r) => r.rolname)).toEqual(['app_cms', 'app_gateway', 'app_server', 'app_user']);
  });

  it('migrating again after a full migrateDown recreates exactly the same schema', async () => {
    expect(await migrate(db)).toEqual(NAMES);
    expect(await catalogDump(db)).toEqual(migrated);
  });
});

describe('each down migration reverses its up migration exactly', () => {
  let t: TestDb;
  let db: Kysely<any>;
  // The first N files, copied one by one into a folder of their own, so that migrate() applies
  // exactly migration N on top of 1..N-1 (the checksums are those of the real files).
  let dir: string;

  beforeAll(async () => {
    t = await openTestDb({ migrated: false });
    db = t.db.withoutPlugins();
    dir = mkdtempSync(join(tmpdir(), 'database-migrations-'));
  });
  afterAll(async () => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    await t?.close();
  });

  it.for(FILES)('$name: down after up leaves the schema as it was before', async (file) => {
    // 1..N-1 applied (already so, unless the previous migration's test failed half-way).
    await migrate(db, { migrationsDir: dir });
    for (const path of [file.upPath, file.downPath]) copyFileSync(path, join(dir, basename(path)));
    const before = await catalogDump(db);
    const ledgerBefore = await ledgerRows(db);
    expect(await migrate(db, { migrationsDir: dir })).toEqual([file.name]);
    const applied = await catalogDump(db);
    // The up migration did something; one made for Citus (`…_on_citus`) does nothing without it.
    if (file.name.endsWith('_on_citus') && !(await hasCitus(db))) expect(applied).toEqual(before);
    else expect(applied).not.toEqual(before);
    expect(await migrateDown(db, {}, { migrationsDir: dir })).toEqual([file.name]);
    expect(await catalogDump(db)).toEqual(before);
    expect(await ledgerRows(db)).toEqual(ledgerBefore);
    // Leave 1..N applied for the next migration.
    expect(await migrate(db, { migrationsDir: dir })).toEqual([file.name]);
    expect(await catalogDump(db)).toEqual(applied);
  });
});

/** True when the citus extension is in this database (the round trips run on a database without it, even on Citus). */
async function hasCitus(db: Kysely<any>): Promise<boolean> {
  const { rows } = await sql<{ present: boolean }>`select exists (select from pg_extension where extname = 'citus') as present`.execute(db);
  return rows[0]!.present;
}
