/**
 * The security gate: reads the migrated database's catalog and fails when a migration weakens
 * the tenant walls (DESIGN.md, "Three kinds of table" and "Row-level security"). It finds the
 * tenant-scoped tables itself (every table in public with a NOT NULL tenant_id), so a new table
 * is checked the day it is created; only the catalog and shared-or-owned tables that DESIGN.md
 * names are listed here. Each check collects every offence and expects none, so a failure names
 * all the tables and policies at fault at once.
 */
import { createHash, randomUUID } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEDGER_TABLE } from '../../src/db/migrator.ts';
import { onCitus, openTestDb, type TestDb } from '../support/test-db.ts';

/** DESIGN.md: catalog tables, global and read-only for the application. */
const CATALOG_TABLES = ['roles', 'policies', 'role_policies', 'providers', 'models'];
/** DESIGN.md: the tenant-scoped tables it names (the gate checks every such table, these at least). */
const DOCUMENTED_TENANT_SCOPED = ['users', 'conversations', 'messages', 'resources', 'vectors', 'usage', 'user_agents', 'user_tools'];
/** DESIGN.md: shared-or-owned tables, and tenants itself. */
const SHARED_OR_OWNED = ['agents', 'agent_tools', 'prompts', 'tools'];
/** Shared-or-owned tables with a nullable tenant_id: global rows (NULL) readable by all, own rows writable (migration 0016 added prompts and tools). */
const GLOBAL_OR_OWN = ['agents', 'prompts', 'tools'];
const TENANTS = 'tenants';

const COMMANDS = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE' } as const;
type Command = keyof typeof COMMANDS;

interface Policy {
  table: string;
  name: string;
  cmd: Command | '*';
  permissive: boolean;
  using: string | null;
  with_check: string | null;
}

/** A policy expression as pg_get_expr prints it, lowercased, without parentheses, on one line. */
function normalize(expression: string): string {
  return expression.toLowerCase().replace(/[()]/g, ' ').replace(/\s+/g, ' ').trim();
}

const CURRENT_TENANT = String.raw`(?:select )?app\.current_tenant_id(?: as \w+)?`;

/** True when the expression compares `column` (optionally qualified by `table`) with app.current_tenant_id(). */
function comparesWithCurrentTenant(expression: string, table: string, column: string): boolean {
  const col = String.raw`(?:${table}\.)?${column}`;
  const pattern = new RegExp(
    String.raw`(?:^|[^\w.])${col} = ${CURRENT_TENANT}(?:$|\W)|(?:^|\W)${CURRENT_TENANT} = ${col}(?:$|[^\w.])`,
  );
  return pattern.test(normalize(expression));
}

function hasOr(expression: string): boolean {
  return /\sor\s/i.test(expression.replace(/[()]/g, ' '));
}

/** The expressions a policy of this command must have: USING for select/update/delete, WITH CHECK for insert/update. */
function expressionsOf(policy: Policy): Array<['using' | 'with check', string | null]> {
  const out: Array<['using' | 'with check', string | null]> = [];
  if (policy.cmd === 'r' || policy.cmd === 'w' || policy.cmd === 'd' || policy.cmd === '*') out.push(['using', policy.using]);
  if (policy.cmd === 'a' || policy.cmd === 'w' || policy.cmd === '*') out.push(['with check', policy.with_check]);
  return out;
}

let t: TestDb;
let db: Kysely<any>;
let tenantScoped: string[];
let policies: Policy[];

async function rows<R>(query: RawBuilder<R>): Promise<R[]> {
  return (await query.execute(db)).rows;
}

/** Tables of public (kind r/p), except the migrator's ledger. */
async function publicTableNames(): Promise<string[]> {
  const found = await rows<{ name: string }>(sql`
    select c.relname::text as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> ${LEDGER_TABLE} order by 1`);
  return found.map((r) => r.name);
}

async function rowSecurity(table: string): Promise<{ enabled: boolean; forced: boolean }> {
  const [flags] = await rows<{ enabled: boolean; forced: boolean }>(sql`
    select relrowsecurity as enabled, relforcerowsecurity as forced from pg_class where oid = ${`public.${table}`}::regclass`);
  return flags!;
}

/** Offences against "one permissive policy per operation, no FOR ALL" for `table`, with the commands it must cover. */
function policyShapeProblems(table: string, required: Command[]): string[] {
  const problems: string[] = [];
  const own = policies.filter((p) => p.table === table);
  for (const p of own) {
    if (p.cmd === '*') problems.push(`${table}: policy ${p.name} is FOR ALL (one policy per operation instead)`);
    if (!p.permissive) problems.push(`${table}: policy ${p.name} is RESTRICTIVE`);
  }
  for (const cmd of Object.keys(COMMANDS) as Command[]) {
    const count = own.filter((p) => p.cmd === cmd).length;
    if (required.includes(cmd) ? count !== 1 : count > 1) {
      problems.push(`${table}: ${count} ${COMMANDS[cmd]} policies (expected ${required.includes(cmd) ? 'exactly one' : 'at most one'})`);
    }
  }
  return problems;
}

beforeAll(async () => {
  t = await openTestDb();
  db = t.db.withoutPlugins();
  tenantScoped = (
    await rows<{ name: string }>(sql`
      select c.relname::text as name
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
      join pg_attribute a on a.attrelid = c.oid
      where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> ${LEDGER_TABLE}
        and a.attname = 'tenant_id' and a.attnotnull and not a.attisdropped
      order by 1`)
  ).map((r) => r.name);
  policies = await rows<Policy>(sql`
    select c.relname::text as table, p.polname::text as name, p.polcmd::text as cmd, p.polpermissive as permissive,
           pg_get_expr(p.polqual, p.polrelid) as using, pg_get_expr(p.polwithcheck, p.polrelid) as with_check
    from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' order by 1, 2`);
});
afterAll(() => t?.close());

describe('which tables the gate covers', () => {
  it('finds every documented tenant-scoped table by its NOT NULL tenant_id column', () => {
    expect(tenantScoped).toEqual(expect.arrayContaining(DOCUMENTED_TENANT_SCOPED));
  });

  it('every table in public is tenant-scoped, a catalog table, shared-or-owned, or tenants', async () => {
    const known = new Set([...tenantScoped, ...CATALOG_TABLES, ...SHARED_OR_OWNED, TENANTS]);
    expect((await publicTableNames()).filter((name) => !known.has(name))).toEqual([]);
  });

  it('only agents, prompts and tools have a nullable tenant_id (global rows); no table escapes the gate that way', async () => {
    const nullable = await rows<{ name: string }>(sql`
      select c.relname::text as name from pg_attribute a
      join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p') and a.attname = 'tenant_id'
        and not a.attnotnull and not a.attisdropped order by 1`);
    expect(nullable.map((r) => r.name)).toEqual(GLOBAL_OR_OWN);
  });
});

describe('tenant-scoped tables', () => {
  it('have row-level security enabled and forced', async () => {
    const problems: string[] = [];
    for (const table of tenantScoped) {
      const { enabled, forced } = await rowSecurity(table);
      if (!enabled) problems.push(`${table}: row-level security not enabled`);
      if (!forced) problems.push(`${table}: row-level security not forced`);
    }
    expect(problems).toEqual([]);
  });

  it('have exactly one permissive policy for each of select, insert, update and delete, and no FOR ALL policy', () => {
    expect(tenantScoped.flatMap((table) => policyShapeProblems(table, ['r', 'a', 'w', 'd']))).toEqual([]);
  });

  it("have policies that compare tenant_id with app.current_tenant_id() in USING and WITH CHECK, with no OR", () => {
    const problems: string[] = [];
    for (const p of policies.filter((p) => tenantScoped.includes(p.table))) {
      for (const [clause, expression] of expressionsOf(p)) {
        if (expression === null) {
          problems.push(`${p.table}.${p.name}: no ${clause} expression`);
          continue;
        }
        if (!expression.includes('app.current_tenant_id()')) problems.push(`${p.table}.${p.name}: ${clause} does not call app.current_tenant_id(): ${expression}`);
        else if (!comparesWithCurrentTenant(expression, p.table, 'tenant_id')) problems.push(`${p.table}.${p.name}: ${clause} does not compare tenant_id with it: ${expression}`);
        if (hasOr(expression)) problems.push(`${p.table}.${p.name}: ${clause} contains OR: ${expression}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('have a primary key whose first column is tenant_id', async () => {
    const keys = await rows<{ table: string; columns: string[] | null }>(sql`
      select c.relname::text as table,
             (select array_agg(a.attname::text order by k.ord)
              from unnest(con.conkey) with ordinality k(attnum, ord)
              join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.attnum) as columns
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
      left join pg_constraint con on con.conrelid = c.oid and con.contype = 'p'
      where n.nspname = 'public' and c.relname = any(${tenantScoped}::text[])`);
    const problems = keys
      .filter((k) => k.columns === null || k.columns[0] !== 'tenant_id')
      .map((k) => `${k.table}: primary key ${k.columns === null ? 'missing' : `(${k.columns.join(', ')})`}`);
    expect(keys.length).toBe(tenantScoped.length);
    expect(problems).toEqual([]);
  });

  it('have tenant_id in every unique constraint and unique index', async () => {
    const indexes = await rows<{ table: string; index: string; key_columns: string[] | null }>(sql`
      select c.relname::text as table, ci.relname::text as index,
             (select array_agg(a.attname::text order by k.ord)
              from unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
              join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
              where k.ord <= i.indnkeyatts) as key_columns
      from pg_index i
      join pg_class c on c.oid = i.indrelid
      join pg_class ci on ci.oid = i.indexrelid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and (i.indisunique or i.indisexclusion) and c.relname = any(${tenantScoped}::text[])
      order by 1, 2`);
    expect(indexes.length).toBeGreaterThanOrEqual(tenantScoped.length); // the primary keys at least
    const problems = indexes
      .filter((i) => !(i.key_columns ?? []).includes('tenant_id'))
      .map((i) => `${i.table}: unique index ${i.index} on (${(i.key_columns ?? []).join(', ')}) lacks tenant_id`);
    expect(problems).toEqual([]);
  });

  it('are referenced only by composite foreign keys that pair tenant_id with tenant_id', async () => {
    // Every foreign key of any table in public that points at a tenant-scoped table.
    const fks = await rows<{ table: string; name: string; referenced: string; pairs: string[] }>(sql`
      select c.relname::text as table, con.conname::text as name, r.relname::text as referenced,
             (select array_agg(la.attname::text || '=' || ra.attname::text order by k.ord)
              from unnest(con.conkey, con.confkey) with ordinality k(l, r, ord)
              join pg_attribute la on la.attrelid = con.conrelid and la.attnum = k.l
              join pg_attribute ra on ra.attrelid = con.confrelid and ra.attnum = k.r) as pairs
      from pg_constraint con
      join pg_class c on c.oid = con.conrelid
      join pg_class r on r.oid = con.confrelid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and con.contype = 'f' and r.relname = any(${tenantScoped}::text[])
      order by 1, 2`);
    expect(fks.length).toBeGreaterThan(0);
    const problems = fks
      .filter((fk) => !fk.pairs.includes('tenant_id=tenant_id'))
      .map((fk) => `${fk.table}.${fk.name} -> ${fk.referenced} (${fk.pairs.join(', ')}) does not pair tenant_id with tenant_id`);
    expect(problems).toEqual([]);
  });
});

describe('references from tenant-scoped tables to agents', () => {
  it("pair the agent's scope with agents.scope (MATCH FULL or NOT NULL), the scope confined to tenant_id or the nil UUID", async () => {
    // A key on agents (id) alone would accept another tenant's agent (foreign-key checks bypass RLS).
    const fks = await rows<{ table: string; name: string; pairs: string[]; match: string; not_null: boolean[] }>(sql`
      select c.relname::text as table, con.conname::text as name, con.confmatchtype::text as match,
             (select array_agg(la.attname::text || '=' || ra.attname::text order by k.ord)
              from unnest(con.conkey, con.confkey) with ordinality k(l, r, ord)
              join pg_attribute la on la.attrelid = con.conrelid and la.attnum = k.l
              join pg_attribute ra on ra.attrelid = con.confrelid and ra.attnum = k.r) as pairs,
             (select array_agg(la.attnotnull order by k.ord)
              from unnest(con.conkey) with ordinality k(l, ord)
              join pg_attribute la on la.attrelid = con.conrelid and la.attnum = k.l) as not_null
      from pg_constraint con
      join pg_class c on c.oid = con.conrelid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and con.contype = 'f' and con.confrelid = 'public.agents'::regclass
        and c.relname = any(${tenantScoped}::text[])
      order by 1, 2`);
    expect(fks.map((fk) => fk.table)).toEqual(['conversations', 'resources', 'usage', 'user_agents']);
    const checks = await rows<{ table: string; definition: string }>(sql`
      select c.relname::text as table, pg_get_constraintdef(con.oid) as definition
      from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and con.contype = 'c'`);
    const problems: string[] = [];
    for (const fk of fks) {
      const scope = fk.pairs.find((p) => p.endsWith('=scope'))?.split('=')[0];
      if (scope === undefined || fk.pairs.length !== 2 || !fk.pairs.includes('agent_id=id')) {
        problems.push(`${fk.table}.${fk.name} (${fk.pairs.join(', ')}) is not (<scope>, agent_id) -> agents (scope, id)`);
        continue;
      }
      if (fk.match !== 'f' && !fk.not_null.every(Boolean)) problems.push(`${fk.table}.${fk.name}: neither MATCH FULL nor NOT NULL: a NULL scope would skip the check`);
      const confined = checks.some((c) => c.table === fk.table
        && normalize(c.definition) === `check ${scope} = tenant_id or ${scope} = '00000000-0000-0000-0000-000000000000'::uuid`);
      if (!confined) problems.push(`${fk.table}.${scope}: no check confining it to tenant_id or the nil UUID`);
    }
    expect(problems).toEqual([]);
  });
});

describe('tenants and the shared-or-owned tables (agents, agent_tools, prompts, tools)', () => {
  it('have row-level security enabled and forced', async () => {
    const problems: string[] = [];
    for (const table of [TENANTS, ...SHARED_OR_OWNED]) {
      const { enabled, forced } = await rowSecurity(table);
      if (!enabled) problems.push(`${table}: row-level security not enabled`);
      if (!forced) problems.push(`${table}: row-level security not forced`);
    }
    expect(problems).toEqual([]);
  });

  it('have at most one permissive policy per operation and no FOR ALL policy', () => {
    expect([
      ...policyShapeProblems(TENANTS, ['r']),
      ...GLOBAL_OR_OWN.flatMap((table) => policyShapeProblems(table, ['r', 'a', 'w', 'd'])),
      ...policyShapeProblems('agent_tools', ['r', 'a', 'd']),
    ]).toEqual([]);
  });

  it('tenants: every policy compares id with app.current_tenant_id(), with no OR', () => {
    const problems: string[] = [];
    for (const p of policies.filter((p) => p.table === TENANTS)) {
      for (const [clause, expression] of expressionsOf(p)) {
        if (expression === null || !comparesWithCurrentTenant(expression, TENANTS, 'id') || hasOr(expression)) {
          problems.push(`tenants.${p.name}: ${clause} ${expression}`);
        }
      }
    }
    expect(policies.some((p) => p.table === TENANTS)).toBe(true);
    expect(problems).toEqual([]);
  });

  it('agents, prompts, tools: select is the one documented exception (global rows readable by all); writes compare tenant_id, with no OR', () => {
    const problems: string[] = [];
    for (const p of policies.filter((p) => GLOBAL_OR_OWN.includes(p.table))) {
      for (const [clause, expression] of expressionsOf(p)) {
        if (expression === null) {
          problems.push(`${p.table}.${p.name}: no ${clause} expression`);
        } else if (p.cmd === 'r') {
          if (!new RegExp(String.raw`^tenant_id is null or tenant_id = ${CURRENT_TENANT}$`).test(normalize(expression))) {
            problems.push(`${p.table}.${p.name}: select policy is not "tenant_id is null or tenant_id = (select app.current_tenant_id())": ${expression}`);
          }
        } else if (!comparesWithCurrentTenant(expression, p.table, 'tenant_id') || hasOr(expression)) {
          problems.push(`${p.table}.${p.name}: ${clause} ${expression}`);
        }
      }
    }
    for (const table of GLOBAL_OR_OWN) if (!policies.some((p) => p.table === table)) problems.push(`${table}: no policy`);
    expect(problems).toEqual([]);
  });

  it("agent_tools: each row names its agent's scope (a foreign key to agents (scope, id)); reads take a global or the tenant's scope, writes the tenant's only", async () => {
    // Row-local policies, no subquery: Citus refuses subqueries in policies (0019). The foreign key
    // makes agent_scope the agent's true scope, so comparing it is comparing the agent's tenant.
    const keys = await rows<{ def: string }>(sql`
      select pg_get_constraintdef(c.oid) as def from pg_constraint c
      where c.conrelid = 'public.agent_tools'::regclass and c.confrelid = 'public.agents'::regclass`);
    expect(keys.map((k) => k.def)).toEqual(['FOREIGN KEY (agent_scope, agent_id) REFERENCES agents(scope, id) ON DELETE CASCADE']);
    const problems: string[] = [];
    const globalOrOwn = new RegExp(
      String.raw`^agent_scope = '00000000-0000-0000-0000-000000000000'::uuid or agent_scope = ${CURRENT_TENANT}$`,
    );
    for (const p of policies.filter((p) => p.table === 'agent_tools')) {
      for (const [clause, expression] of expressionsOf(p)) {
        if (expression === null) {
          problems.push(`agent_tools.${p.name}: no ${clause} expression`);
        } else if (p.cmd === 'r') {
          if (!globalOrOwn.test(normalize(expression))) problems.push(`agent_tools.${p.name}: select is not "global or own scope": ${expression}`);
        } else if (!comparesWithCurrentTenant(expression, 'agent_tools', 'agent_scope') || hasOr(expression)) {
          problems.push(`agent_tools.${p.name}: ${clause} does not require agent_scope = app.current_tenant_id(): ${expression}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});

/** The application roles (DESIGN.md, "Row-level security"): one per service, and app_user, a member of all three. */
const APP_ROLES = ['app_server', 'app_gateway', 'app_cms', 'app_user'];
const SERVICE_ROLES = ['app_server', 'app_gateway', 'app_cms'];

describe('the application roles', () => {
  it('exist with NOSUPERUSER, NOBYPASSRLS, NOLOGIN (LOGIN on Citus, which connects to the workers as them: 0020) and no other power', async () => {
    const roles = await rows(sql`
      select rolname::text, rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication
      from pg_roles where rolname = any(${APP_ROLES}::text[]) order by 1`);
    expect(roles).toEqual(
      [...APP_ROLES].sort().map((rolname) => ({
        rolname, rolsuper: false, rolbypassrls: false, rolcanlogin: onCitus, rolcreaterole: false, rolcreatedb: false, rolreplication: false,
      })),
    );
  });

  it('are members of no role but the service roles (app_user of all three), none with more rights', async () => {
    // Every role each app role belongs to, directly or through others.
    const memberOf = await rows<{ member: string; rolname: string; powerful: boolean }>(sql`
      with recursive m(member, roleid) as (
        select a.member, a.roleid from pg_auth_members a where a.member = any(select oid from pg_roles where rolname = any(${APP_ROLES}::text[]))
        union
        select m.member, a.roleid from pg_auth_members a join m on a.member = m.roleid
      )
      select pg_get_userbyid(m.member)::text as member, r.rolname::text as rolname,
             (r.rolsuper or r.rolbypassrls or r.rolcreaterole or r.rolcreatedb or r.rolreplication or r.rolname like 'pg\_%') as powerful
      from m join pg_roles r on r.oid = m.roleid order by 1, 2`);
    expect(memberOf).toEqual(SERVICE_ROLES.map((rolname) => ({ member: 'app_user', rolname, powerful: false })).sort((a, b) => a.rolname.localeCompare(b.rolname)));
  });

  it('app_user holds nothing of its own in this database: only what the service roles hold', async () => {
    const [{ holds }] = (await rows<{ holds: number }>(sql`
      select count(*)::int as holds from pg_shdepend s
      where s.refclassid = 'pg_authid'::regclass and s.refobjid = 'app_user'::regrole and s.deptype in ('o', 'a')
        and s.dbid = (select oid from pg_database where datname = current_database())`)) as [{ holds: number }];
    expect(holds).toBe(0);
  });

  it('own no table, function, schema, type or other object', async () => {
    const owned = await rows<{ kind: string; name: string }>(sql`
      with r as (select oid from pg_roles where rolname = any(${APP_ROLES}::text[]))
      select 'relation' as kind, c.oid::regclass::text as name from pg_class c where c.relowner in (select oid from r)
      union all select 'function', p.oid::regprocedure::text from pg_proc p where p.proowner in (select oid from r)
      union all select 'schema', n.nspname::text from pg_namespace n where n.nspowner in (select oid from r)
      union all select 'type', t.oid::regtype::text from pg_type t where t.typowner in (select oid from r)
      union all select 'shdepend ' || s.classid::regclass::text, s.objid::text from pg_shdepend s
        where s.refclassid = 'pg_authid'::regclass and s.refobjid in (select oid from r) and s.deptype = 'o'
          and s.dbid in (0, (select oid from pg_database where datname = current_database()))`);
    expect(owned).toEqual([]);
  });

  it.each(APP_ROLES)('%s has no privilege at all on the migrator ledger', async (role) => {
    const [privileges] = await rows(sql`
      select has_table_privilege(${role}, ${`public.${LEDGER_TABLE}`}, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') as table_level,
             has_any_column_privilege(${role}, ${`public.${LEDGER_TABLE}`}, 'SELECT, INSERT, UPDATE, REFERENCES') as column_level`);
    expect(privileges).toEqual({ table_level: false, column_level: false });
  });

  it.each(APP_ROLES)('%s cannot read providers.api_key', async (role) => {
    const [privileges] = await rows(sql`
      select has_column_privilege(${role}, 'public.providers', 'api_key', 'SELECT, INSERT, UPDATE, REFERENCES') as api_key,
             has_table_privilege(${role}, 'public.providers', 'SELECT') as whole_table`);
    expect(privileges).toEqual({ api_key: false, whole_table: false });
    const asRole = (query: RawBuilder<unknown>) =>
      db.transaction().execute(async (tx) => {
        await sql`select set_config('role', ${role}, true)`.execute(tx);
        return (await query.execute(tx)).rows;
      });
    await expect(asRole(sql`select api_key from providers`)).rejects.toMatchObject({ code: '42501' });
  });

  it("never write the catalog (prompts and tools are shared-or-owned since 0016: their policies wall the cms's writes)", async () => {
    const writes = await rows<{ role: string; table: string }>(sql`
      select r as role, t as table
      from unnest(${APP_ROLES}::text[]) r cross join unnest(${CATALOG_TABLES}::text[]) t
      where has_table_privilege(r, 'public.' || t, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
         or has_any_column_privilege(r, 'public.' || t, 'INSERT, UPDATE, REFERENCES')
      order by 1, 2`);
    expect(writes).toEqual([]);
  });

  it('cannot change money or rank: users.budget, role_id, status, api_key_hash, tenants.plan; usage is append-only, the rollups not writable', async () => {
    const problems = await rows<{ role: string; problem: string }>(sql`
      select r as role, 'may update ' || c as problem
      from unnest(${APP_ROLES}::text[]) r
      cross join unnest(array['users.budget', 'users.role_id', 'users.status', 'users.api_key_hash', 'users.tenant_id', 'tenants.plan']) c
      where has_column_privilege(r, 'public.' || split_part(c, '.', 1), split_part(c, '.', 2), 'UPDATE')
      union all
      select r, 'may ' || lower(p) || ' usage' from unnest(${APP_ROLES}::text[]) r cross join unnest(array['UPDATE', 'DELETE', 'TRUNCATE']) p
      where has_table_privilege(r, 'public.usage', p) or (p = 'UPDATE' and has_any_column_privilege(r, 'public.usage', 'UPDATE'))
      union all
      -- usage_rollups (0021) and usage_day_rollups (0025) are kept by a trigger on usage, as the
      -- owner: no app role writes a bucket.
      select r, 'may ' || lower(p) || ' ' || t from unnest(${APP_ROLES}::text[]) r
        cross join unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p cross join unnest(array['usage_rollups', 'usage_day_rollups']) t
      where has_table_privilege(r, 'public.' || t, p)
         or (p in ('INSERT', 'UPDATE') and has_any_column_privilege(r, 'public.' || t, p))
      order by 1, 2`);
    expect(problems).toEqual([]);
  });

  it('have no TRUNCATE, REFERENCES or TRIGGER on any table, and nothing beyond SELECT/INSERT/UPDATE/DELETE in any ACL', async () => {
    const problems = await rows<{ relation: string; problem: string }>(sql`
      select c.oid::regclass::text as relation, r || ' has ' || p.privilege as problem
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      cross join unnest(array['TRUNCATE', 'REFERENCES', 'TRIGGER']) p(privilege)
      cross join unnest(${APP_ROLES}::text[]) r
      where n.nspname in ('public', 'app') and c.relkind in ('r', 'p', 'v', 'm', 'f')
        and (has_table_privilege(r, c.oid, p.privilege)
             or (p.privilege = 'REFERENCES' and has_any_column_privilege(r, c.oid, 'REFERENCES')))
      union all
      select c.oid::regclass::text, 'ACL grants ' || a.privilege_type || ' to ' || case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee) end
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      cross join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
      where n.nspname in ('public', 'app') and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
        and (a.grantee = 0 or pg_get_userbyid(a.grantee) = any(${APP_ROLES}::text[]))
        and a.privilege_type not in ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
      order by 1, 2`);
    expect(problems).toEqual([]);
  });

  it('cannot read or write the tenant-context keys', async () => {
    const problems = await rows<{ role: string }>(sql`
      select r as role from unnest(${APP_ROLES}::text[]) r
      where has_table_privilege(r, 'app.tenant_contexts', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
         or has_any_column_privilege(r, 'app.tenant_contexts', 'SELECT, INSERT, UPDATE')`);
    expect(problems).toEqual([]);
  });
});

describe('functions', () => {
  it('every SECURITY DEFINER function pins its search_path to schemas no app role can write, and PUBLIC cannot execute it', async () => {
    const definers = await rows<{ fn: string; config: string[] | null; public_execute: boolean }>(sql`
      select p.oid::regprocedure::text as fn, p.proconfig as config,
             exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                     where a.grantee = 0 and a.privilege_type = 'EXECUTE') as public_execute
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('app', 'public') and p.prosecdef
        and not exists (select 1 from pg_depend e where e.classid = 'pg_proc'::regclass and e.objid = p.oid and e.deptype = 'e')
      order by 1`);
    expect(definers.map((d) => d.fn)).toContain('app.resolve_api_key(text)');
    const problems: string[] = [];
    for (const d of definers) {
      if (d.public_execute) problems.push(`${d.fn}: PUBLIC has EXECUTE`);
      const setting = (d.config ?? []).find((c) => c.startsWith('search_path='));
      if (setting === undefined) {
        problems.push(`${d.fn}: no pinned search_path`);
        continue;
      }
      const schemas = setting.slice('search_path='.length).split(',').map((s) => s.trim().replace(/^"|"$/g, ''));
      for (const schema of schemas) {
        if (schema === '$user' || schema === '') problems.push(`${d.fn}: search_path has ${JSON.stringify(schema)}`);
        if (schema === 'pg_temp' && schemas.at(-1) !== 'pg_temp') problems.push(`${d.fn}: pg_temp is not last in search_path`);
      }
      const writable = await rows<{ schema: string }>(sql`
        select n.nspname::text as schema from pg_namespace n
        where n.nspname = any(${schemas}::text[])
          and (exists (select from unnest(${APP_ROLES}::text[]) r where has_schema_privilege(r, n.oid, 'CREATE'))
               or has_schema_privilege('public', n.oid, 'CREATE'))`);
      for (const w of writable) problems.push(`${d.fn}: search_path has ${w.schema}, where an app role or PUBLIC can create objects`);
    }
    expect(problems).toEqual([]);
  });

  it('app.current_tenant_id() is STABLE (one call per statement in the policies\' initplans) and verifies the signed token', async () => {
    const fn = await rows(sql`
      select p.provolatile as volatility, p.prosecdef as security_definer, pg_get_function_result(p.oid) as result,
             p.prosrc ~ 'app\.tenant_token_keys' as reads_the_token_key, p.prosrc ~ 'current_setting' as reads_a_setting
      from pg_proc p where p.oid = 'app.current_tenant_id()'::regprocedure`);
    // SECURITY DEFINER: it reads app.tenant_token_keys, which no app role may read, to verify the
    // transaction's token, a setting any SQL can write but not forge (0024; on Citus 0020).
    expect(fn).toEqual([{ volatility: 's', security_definer: true, result: 'uuid', reads_the_token_key: true, reads_a_setting: true }]);
  });
});

describe('as app_user with no tenant context', () => {
  const apiKey = `sk-test-${randomUUID()}`;
  const apiKeyHash = createHash('sha256').update(apiKey).digest('hex');
  let tenantId: string;
  let userId: string;

  beforeAll(async () => {
    // As the owner (RLS forced, but the owner here is a superuser): one row in each of these.
    const [role] = await rows<{ id: number }>(sql`insert into roles (name) values (${`gate-${randomUUID()}`}) returning id`);
    const [tenant] = await rows<{ id: string }>(sql`insert into tenants (name, slug) values ('Gate', 'gate') returning id`);
    tenantId = tenant!.id;
    const [user] = await rows<{ id: string }>(sql`
      insert into users (tenant_id, email, role_id, api_key_hash)
      values (${tenantId}, 'gate@example.com', ${role!.id}, ${apiKeyHash}) returning id`);
    userId = user!.id;
    await rows(sql`insert into conversations (tenant_id, user_id, title) values (${tenantId}, ${userId}, 'Gate')`);
  });

  async function asAppUser<R>(fn: (tx: Kysely<any>) => Promise<R>): Promise<R> {
    return db.transaction().execute(async (tx) => {
      await sql`select set_config('role', 'app_user', true)`.execute(tx); // not SET LOCAL ROLE: Citus would send it to the workers, where it would also bind the SECURITY DEFINER functions' connections
      return fn(tx);
    });
  }

  it('sees no row of any tenant-scoped table, nor of tenants, though the owner sees them', async () => {
    const count = async (executor: Kysely<any>, table: string) =>
      (await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(executor)).rows[0]!.n;
    const ownerSees = { tenants: await count(db, TENANTS), users: await count(db, 'users'), conversations: await count(db, 'conversations') };
    expect(Math.min(...Object.values(ownerSees))).toBeGreaterThan(0);

    const appUserSees = await asAppUser(async (tx) => {
      const [who] = (await sql<{ role: string; tenant: string | null }>`
        select current_user::text as role, app.current_tenant_id()::text as tenant`.execute(tx)).rows;
      const seen: Record<string, number> = {};
      for (const table of [TENANTS, ...tenantScoped]) seen[table] = await count(tx, table);
      return { who, seen };
    });
    expect(appUserSees.who).toEqual({ role: 'app_user', tenant: null });
    expect(appUserSees.seen).toEqual(Object.fromEntries([TENANTS, ...tenantScoped].map((table) => [table, 0])));
  });

  it('app.resolve_api_key(hash) finds the user and returns only (tenant_id, user_id, role_id)', async () => {
    const found = await asAppUser(async (tx) => (await sql`select * from app.resolve_api_key(${apiKeyHash})`.execute(tx)).rows);
    // DESIGN.md, "Row-level security": the resolver returns only (tenant_id, user_id); role_id is
    // added because authenticateApiKey returns it (issue 4) and it reveals nothing secret.
    expect(found.map((row) => Object.keys(row as object).sort())).toEqual([['role_id', 'tenant_id', 'user_id']]);
    expect(found).toEqual([{ tenant_id: tenantId, user_id: userId, role_id: expect.any(Number) }]);
    const unknown = await asAppUser(async (tx) =>
      (await sql`select * from app.resolve_api_key(${'0'.repeat(64)})`.execute(tx)).rows,
    );
    expect(unknown).toEqual([]);
  });
});
