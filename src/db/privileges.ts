import { sql, type Kysely } from 'kysely';
import { ConfigError } from './errors.ts';

/**
 * Refuses, before anything runs, a role that cannot migrate the database it is connected to:
 * it needs CREATE on schema public (the ledger is created there, `create table if not exists`
 * checks it even when the table exists), the owner's rights on the ledger once there is one
 * (migrations alter the tables the owner created), and CREATE on the database while there is
 * none (the first migration creates schema `app`). Superusers pass. The ConfigError names the
 * role, what it lacks, and DB_SKIP_SYNC=true for services that join an initialized database.
 */
export async function assertCanMigrate(db: Kysely<any>, ledgerTable: string): Promise<void> {
  const { rows } = await sql<{
    role: string;
    database: string;
    public_exists: boolean;
    create_on_public: boolean;
    create_on_database: boolean;
    ledger_owner: string | null;
    owns_ledger: boolean | null;
  }>`
    select current_user as role,
           current_database() as database,
           n.oid is not null as public_exists,
           n.oid is not null and has_schema_privilege(current_user, n.oid, 'CREATE') as create_on_public,
           has_database_privilege(current_user, current_database(), 'CREATE') as create_on_database,
           pg_get_userbyid(c.relowner) as ledger_owner,
           case when c.oid is null then null else pg_has_role(current_user, c.relowner, 'USAGE') end as owns_ledger
    from (select 1) as one
    left join pg_namespace n on n.nspname = 'public'
    left join pg_class c on c.relnamespace = n.oid and c.relname = ${ledgerTable} and c.relkind in ('r', 'p')`.execute(
    db.withoutPlugins(),
  );
  const r = rows[0]!;
  const missing: string[] = [];
  if (!r.public_exists) missing.push('schema public does not exist');
  else if (!r.create_on_public) missing.push('it lacks CREATE on schema public');
  if (r.ledger_owner === null) {
    if (!r.create_on_database) missing.push(`it lacks CREATE on database ${r.database} (the first migration creates schema app)`);
  } else if (r.owns_ledger !== true) {
    missing.push(`it is not the owner of ${ledgerTable} (owned by ${r.ledger_owner}), nor a member of that role`);
  }
  if (missing.length === 0) return;
  throw new ConfigError(
    `role ${r.role} cannot migrate database ${r.database}: ${missing.join('; ')}. ` +
      `Migrations and the seed run as the role that owns the tables (npx database migrate). ` +
      `A service that joins an initialized database sets DB_SKIP_SYNC=true, so that getDb() neither migrates nor seeds.`,
  );
}
