/** Statements with this many parameters or more stay unnamed (multi-row inserts: their text varies with the row count). */
const MAX_PARAMETERS = 100;
/** Distinct statement texts given a name, per process; later texts stay unnamed. */
const MAX_NAMES = 1000;

const names = new Map<string, string>();

/**
 * Wraps a connection's `query` so that it sends each parameterized statement as a named prepared statement: PostgreSQL
 * parses it once per connection (and, for most statements, plans it once: after five executions
 * it may keep a generic plan) and from then on only binds and executes it. Kysely sends the same
 * SQL text for a query function every time (values are parameters), so the names are few.
 *
 * Statements without parameters (`begin`, `commit`, scripts) keep the simple protocol. A name
 * always stands for one text (the map is per process), as node-postgres requires per connection.
 * The tenant-context statements bypass this wrapper (guard-pg-client.ts): SQL could replace a
 * named statement, never an unnamed one.
 *
 * Searches whose best plan depends on the tenant set `plan_cache_mode = force_custom_plan` for
 * their transaction (see queries/vectors.ts): a generic plan is costed for an average tenant.
 * Poolers in transaction mode (PgBouncer before 1.21, or without max_prepared_statements) do not
 * keep prepared statements per client: turn this off there with DB_PREPARED_STATEMENTS=false.
 *
 * Migrations on a live database: PostgreSQL re-plans a prepared statement after DDL on what it
 * reads, but fails it ("cached plan must not change result type") when its result columns change.
 * The package's statements name their columns (no `select *` or `returning *`), so only a change
 * of a returned column's type does that, which breaks the old code's queries anyway.
 */
export function nameStatements(query: (...args: unknown[]) => Promise<unknown>): (...args: unknown[]) => Promise<unknown> {
  return (text: unknown, values?: unknown, callback?: unknown) => {
    if (typeof text === 'string' && Array.isArray(values) && values.length > 0 && values.length < MAX_PARAMETERS) {
      const name = nameOf(text);
      if (name !== undefined) return callback === undefined ? query({ name, text, values }) : query({ name, text, values }, callback);
    }
    return callback === undefined ? query(text, values) : query(text, values, callback);
  };
}

function nameOf(text: string): string | undefined {
  let name = names.get(text);
  if (name === undefined && names.size < MAX_NAMES) {
    name = `db_${names.size}`;
    names.set(text, name);
  }
  return name;
}
