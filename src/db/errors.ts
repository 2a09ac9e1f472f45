/**
 * Errors of the database package. Each is a small class with a stable `name` and the fields a
 * caller needs to react; driver errors are never wrapped by query code (their SQLSTATE `code`
 * passes through), only by the migrator and the seed, which add the file they were running.
 */

/** Bad parameters, refused before any SQL runs. `field` names the parameter. */
export class ValidationError extends Error {
  override readonly name = 'ValidationError';
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** A tenant-scoped call was made without (or with a broken) tenant context. */
export class TenantContextError extends Error {
  override readonly name: string = 'TenantContextError';
}

/**
 * A pooled connection showed signs that SQL run on it tampered with the package's state (a
 * prepared statement dropped or replaced, a tenant transaction that could not be cleaned up).
 * The connection is discarded, never pooled again; withTenant retries on another one.
 */
export class ConnectionTamperedError extends TenantContextError {
  override readonly name = 'ConnectionTamperedError';
  constructor(reason: string) {
    super(`connection discarded: ${reason}`);
  }
}

/**
 * A function of the package was called as a service role that may not call it (README,
 * "Production roles"). Refused before any SQL; the database's grants refuse the same.
 */
export class PermissionError extends Error {
  override readonly name = 'PermissionError';
  readonly role: string;
  readonly operation: string;
  readonly allowed: readonly string[];
  constructor(role: string, operation: string, allowed: readonly string[]) {
    super(`role ${role} may not call ${operation}: it is for ${allowed.join(' and ')} (README, "Production roles")`);
    this.role = role;
    this.operation = operation;
    this.allowed = allowed;
  }
}

/** `getX` found nothing: `entity` is what was looked for, `id` the key it was looked for by. */
export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
  readonly entity: string;
  readonly id: string;
  constructor(entity: string, id: string | number) {
    super(`${entity} ${String(id)} not found`);
    this.entity = entity;
    this.id = String(id);
  }
}

/** The environment or a config object names an impossible setting. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Opening a connection to the server failed (refused, timed out, unknown host, authentication,
 * no such database). `target` names the server, database and role tried (never the password);
 * `code` is the driver's (`ECONNREFUSED`, `ENOTFOUND`, or a SQLSTATE such as `28P01`), `cause` its error.
 */
export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
  readonly target: string;
  readonly code: string | undefined;
  constructor(target: string, cause: unknown) {
    const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
    super(`could not connect to ${target}: ${causeText(cause, code)}`, { cause });
    this.target = target;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

// Node reports a refused `localhost` (tried as ::1 and 127.0.0.1) as an AggregateError whose own
// message is empty: its parts carry the text.
function causeText(cause: unknown, code: unknown): string {
  if (cause instanceof AggregateError && cause.message === '') {
    const parts = cause.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))).filter((m) => m !== '');
    if (parts.length > 0) return parts.join('; ');
  }
  const message = cause instanceof Error ? cause.message : String(cause);
  return message !== '' ? message : typeof code === 'string' ? code : 'unknown error';
}

/**
 * A migration could not be applied or reverted, or the migration files disagree with the ledger.
 * `file` is the migration file (relative to the project), `statement` the failing SQL statement
 * and `line` its first line in that file, when a statement failed; `cause` is the driver error.
 */
export class MigrationError extends Error {
  override readonly name = 'MigrationError';
  readonly file: string | undefined;
  readonly statement: string | undefined;
  readonly line: number | undefined;
  /** SQLSTATE of the driver error, when there is one. */
  readonly code: string | undefined;
  constructor(
    message: string,
    details: { file?: string; statement?: string; line?: number; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.file = details.file;
    this.statement = details.statement;
    this.line = details.line;
    this.code = sqlState(details.cause);
  }
}

/** The SQLSTATE `code` of a driver error (pg and PGlite both carry it), if any. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** A charge was refused: it costs more than the user's remaining budget. Nothing was written. */
export class BudgetExceededError extends Error {
  override readonly name = 'BudgetExceededError';
  readonly userId: string;
  /** What the charge would cost (exact decimal text). */
  readonly cost: string;
  /** What is left of the limit that refused it (exact decimal text). */
  readonly remaining: string;
  /** The limit that refused it: the user's budget (window) or the tenant's monthly cap (maxMonthlySpend). */
  readonly limit: 'user' | 'tenant';
  constructor(userId: string, cost: string, remaining: string, limit: 'user' | 'tenant' = 'user') {
    super(
      limit === 'user'
        ? `user ${userId} has ${remaining} left, the charge costs ${cost}`
        : `the tenant's monthly spend cap has ${remaining} left, the charge of user ${userId} costs ${cost}`,
    );
    this.userId = userId;
    this.cost = cost;
    this.remaining = remaining;
    this.limit = limit;
  }
}

/**
 * An idempotency key was used again for a different request: `key` is the key, `fields` the
 * parameters of this call that differ from the first request's (recordUsage: userId, modelId,
 * type, the token counts, agentId, messageId). Only their names: the first request's values may be
 * another user's and are never shown. Nothing was charged.
 */
export class IdempotencyConflictError extends Error {
  override readonly name = 'IdempotencyConflictError';
  readonly key: string;
  readonly fields: readonly string[];
  constructor(key: string, fields: readonly string[]) {
    super(`idempotency key ${JSON.stringify(key)} was already used for a request with another ${fields.join(', ')}: nothing was charged`);
    this.key = key;
    this.fields = fields;
  }
}

/**
 * The constraint a database error names, as the migrations named it. On Citus the error comes from
 * a shard, whose table and constraints carry the shard id (`conversations_102040`,
 * `conversations_agent_id_fkey_102040`): that suffix is removed. Citus passes a worker's error on
 * with its message but without the constraint and table fields: there they are read from the
 * message (PostgreSQL's English wording, `… on table "…" violates … constraint "…"`).
 */
export function constraintOf(error: unknown): string | undefined {
  const e = error as { constraint?: unknown; table?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : '';
  const constraint = typeof e.constraint === 'string' ? e.constraint : /constraint "([^"]+)"/.exec(message)?.[1];
  if (constraint === undefined) return undefined;
  const table = typeof e.table === 'string' ? e.table : /table "([^"]+)"/.exec(message)?.[1];
  const shard = table === undefined ? undefined : /_(\d+)$/.exec(table)?.[1];
  return shard !== undefined && constraint.endsWith(`_${shard}`) ? constraint.slice(0, -(shard.length + 1)) : constraint;
}

/** The constraint named by a foreign-key violation (SQLSTATE 23503), if `error` is one. */
export function foreignKeyViolated(error: unknown): string | undefined {
  if (sqlState(error) !== '23503') return undefined;
  return constraintOf(error);
}

/**
 * The embedded store (a PGlite directory) is open in another process, or already in this one: it
 * has one writer at a time. `path` is the store's absolute path, `pid`/`host`/`since` name the
 * process that holds its lock (`lockFile`).
 */
export class StoreLockedError extends Error {
  override readonly name = 'StoreLockedError';
  readonly path: string;
  readonly lockFile: string;
  readonly pid: number;
  readonly host: string;
  /** When the holder took the lock (ISO 8601). */
  readonly since: string;
  constructor(path: string, lockFile: string, holder: { pid: number; host: string; since: string }, where: 'this process' | 'this host' | 'another host') {
    const who =
      where === 'this process'
        ? `is already open in this process (pid ${holder.pid}, since ${holder.since}): destroy the other database first`
        : where === 'this host'
          ? `is in use by pid ${holder.pid} (since ${holder.since}): stop that process first`
          : `is in use by pid ${holder.pid} on host ${holder.host} (since ${holder.since}): stop that process first, or, if it is gone, delete ${lockFile}`;
    super(
      `embedded database ${path} ${who}. One process at a time may open an embedded store; ` +
        'processes that share a database use a PostgreSQL server (DATABASE_URL)',
    );
    this.path = path;
    this.lockFile = lockFile;
    this.pid = holder.pid;
    this.host = holder.host;
    this.since = holder.since;
  }
}

/** The embedded store at `path` (absolute) could not be opened; `cause` is what failed. */
export class StoreOpenError extends Error {
  override readonly name = 'StoreOpenError';
  readonly path: string;
  constructor(path: string, detail: string, cause?: unknown) {
    super(`embedded database ${path} could not be opened: ${detail}`, cause === undefined ? undefined : { cause });
    this.path = path;
  }
}

/** Why a secret could not be opened (see {@link SecretError}). */
export type SecretFailure = 'plaintext' | 'malformed' | 'unknown-key' | 'undecryptable';

/**
 * An encrypted value (README, "Secrets") could not be opened. `binding` names where it lives
 * (`providers.api_key:2`, `user_tools.credential:<tenant>:<user>:<tool>`), `keyId` the key it
 * was sealed with; `reason`: `plaintext` (stored before encryption: `database secrets rotate`
 * encrypts it), `malformed`, `unknown-key` (the ring lacks that key id), `undecryptable` (changed,
 * copied from another row, or sealed with another key of that id). Never carries key material.
 */
export class SecretError extends Error {
  override readonly name = 'SecretError';
  readonly binding: string;
  readonly keyId: string | undefined;
  readonly reason: SecretFailure;
  constructor(binding: string, keyId: string | undefined, reason: SecretFailure, ring?: { source: string; ids: string[] }) {
    const why = {
      plaintext: 'is stored in plaintext, not encrypted: `npx database secrets rotate` encrypts it',
      malformed: 'is not a valid encrypted value (v1.<key id>.<iv>.<ciphertext>)',
      'unknown-key': `is encrypted under key id ${keyId}, which ${ring?.source ?? 'the key ring'} does not hold (it holds ${ring?.ids.join(', ') ?? 'none'}): add that key to DB_SECRET_KEYS`,
      undecryptable: `does not decrypt under key ${keyId}: it was changed or copied from another row, or ${keyId} is not the key it was encrypted with`,
    }[reason];
    super(`${binding} ${why}`);
    this.binding = binding;
    this.keyId = keyId;
    this.reason = reason;
  }
}

/** A charge for a user whose status is `disabled` (setUserStatus): refused, nothing written. */
export class UserDisabledError extends Error {
  override readonly name = 'UserDisabledError';
  readonly userId: string;
  constructor(userId: string) {
    super(`user ${userId} is disabled: it cannot be charged`);
    this.userId = userId;
  }
}

/**
 * exportTenant, importTenant or deleteTenant refused or failed: `tenantId` is the tenant, `file`
 * the export file (and `line` its line) at fault, when one is; `cause` the driver error, if any.
 * Nothing was written (an import is one transaction; an export writes its manifest last).
 */
export class TenantTransferError extends Error {
  override readonly name = 'TenantTransferError';
  readonly tenantId: string | undefined;
  readonly file: string | undefined;
  readonly line: number | undefined;
  constructor(message: string, details: { tenantId?: string; file?: string; line?: number; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.tenantId = details.tenantId;
    this.file = details.file;
    this.line = details.line;
  }
}

/**
 * The agent was retired by deleteAgent: conversations made with it keep working, but it cannot
 * start a new conversation, be shared again or be changed (README, "Agents").
 */
export class AgentRetiredError extends Error {
  override readonly name = 'AgentRetiredError';
  readonly agentId: string;
  constructor(agentId: string) {
    super(`agent ${agentId} is retired: it keeps its conversations but takes no new ones, shares or changes`);
    this.agentId = agentId;
  }
}

/**
 * A global row (an agent, prompt or tool from the seed, `tenantId` null) that a tenant tried to
 * change: every tenant reads it, none writes it (row-level security refuses the same).
 */
export class ReadOnlyError extends Error {
  override readonly name = 'ReadOnlyError';
  readonly entity: string;
  readonly id: string;
  constructor(entity: string, id: string | number) {
    super(`${entity} ${String(id)} is global (from the seed): tenants may read it but not change it`);
    this.entity = entity;
    this.id = String(id);
  }
}
