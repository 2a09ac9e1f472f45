import { sql, type Kysely } from 'kysely';
import { ConfigError, SecretError, type SecretFailure } from './errors.ts';
import { providerKeyBinding, userToolBinding } from './secret-bindings.ts';
import { readingKeys, writingKeys } from './secret-keys.ts';
import { isSealed, openSecret, sealedKeyId, sealSecret, type SecretKeyRing } from './secrets.ts';

/** Options of {@link rotateSecrets}. */
export interface RotateSecretsOptions {
  /** Rows read, and rewritten, per transaction (default 500). */
  batchSize?: number;
  /** One line per column when it is done (default: none). */
  log?: (line: string) => void;
}

/** A value rotateSecrets could not open, left as it is. */
export interface RotationFailure {
  /** Where it lives: `providers.api_key:2`, `user_tools.credential:<tenant>:<user>:<tool>`. */
  binding: string;
  keyId: string | undefined;
  reason: SecretFailure;
  message: string;
}

/** What rotateSecrets did to one encrypted column. */
export interface ColumnRotation {
  /** `providers.api_key` or `user_tools.credential`. */
  column: string;
  /** Secrets found (non-NULL api keys, non-empty credentials). */
  values: number;
  /** Re-encrypted under the current key, by the key id they were under. */
  reencrypted: Record<string, number>;
  /** Found in plaintext (stored before migration 0012) and encrypted. */
  plaintext: number;
  /** Already under the current key (and opening): not rewritten. */
  current: number;
  failed: RotationFailure[];
  /** After the run: values per key id; failed values count under their key id, or `plaintext`/`malformed`. */
  keyIds: Record<string, number>;
}

/** What a rotation did. */
export interface SecretRotation {
  /** The key id every secret is now under (but the failed ones). */
  keyId: string | undefined;
  columns: ColumnRotation[];
  /** Rows rewritten, over every column. */
  rewritten: number;
  /** Values that could not be opened, over every column: a rotation is complete when 0. */
  failed: number;
}

const DEFAULT_BATCH = 500;

/**
 * Re-encrypts every secret at rest — providers.api_key and user_tools.credential of every
 * tenant — under the ring's current key (DB_SECRET_KEY_ID, else the first of DB_SECRET_KEYS),
 * in batches of `batchSize` rows, one transaction each, as the owner (a superuser or BYPASSRLS
 * role: it reads every tenant's rows). Values under an older key of the ring are opened and
 * sealed again; values stored in plaintext before migration 0012 are encrypted; values already
 * under the current key are only checked. A value that does not open (its key is not in the ring,
 * or it was changed) is left as it is and reported in `failed`: add its key and run again.
 * Idempotent: a second run rewrites nothing. The seed's ledger entries of rewritten provider keys
 * move with them, so the seed still knows them as its own.
 *
 * @example
 * // DB_SECRET_KEYS="k2:…,k1:…" DB_SECRET_KEY_ID=k2
 * const rotation = await rotateSecrets(db, { log: console.log });
 * rotation.failed; // 0: every secret is under k2; k1 can leave DB_SECRET_KEYS
 */
export async function rotateSecrets(db: Kysely<any>, options: RotateSecretsOptions = {}): Promise<SecretRotation> {
  if (db.isTransaction) throw new ConfigError('rotateSecrets needs the database, not a transaction: it commits each batch on its own');
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new ConfigError(`batchSize must be an integer >= 1, got ${batchSize}`);
  const raw = db.withoutPlugins();
  const { rows } = await sql<{ bypass: boolean; role: string }>`
    select r.rolsuper or r.rolbypassrls as bypass, current_user::text as role from pg_roles r where r.rolname = current_user`.execute(raw);
  if (rows[0]?.bypass !== true) {
    throw new ConfigError(
      `role ${rows[0]?.role ?? '?'} cannot rotate the secrets: it reads every tenant's user_tools past row-level security. ` +
        'Run it as the owner that migrates (a superuser or a role with BYPASSRLS), without DB_APP_ROLE',
    );
  }
  let ring: SecretKeyRing | undefined = readingKeys(db);
  const sealing = () => (ring = writingKeys(db, 'the secrets'));
  const columns = [await rotateProviders(raw, sealing, () => ring, batchSize), await rotateUserTools(raw, sealing, () => ring, batchSize)];
  const rotation: SecretRotation = {
    keyId: ring?.currentId,
    columns,
    rewritten: columns.reduce((n, c) => n + c.plaintext + Object.values(c.reencrypted).reduce((a, b) => a + b, 0), 0),
    failed: columns.reduce((n, c) => n + c.failed.length, 0),
  };
  for (const column of columns) options.log?.(formatColumn(column, rotation.keyId));
  return rotation;
}

type Sealing = () => SecretKeyRing;

interface Outcome {
  /** The value to store instead, or undefined to leave it. */
  replacement: string | undefined;
}

/** Classifies one stored text (an envelope or legacy plaintext) and, unless current, reseals it. */
function rotateValue(column: ColumnRotation, stored: string, binding: string, sealing: Sealing, current: () => SecretKeyRing | undefined): Outcome {
  column.values += 1;
  const count = (id: string) => (column.keyIds[id] = (column.keyIds[id] ?? 0) + 1);
  if (!isSealed(stored)) {
    if (stored.startsWith('v1.')) return fail(column, new SecretError(binding, undefined, 'malformed'), count);
    const ring = sealing();
    column.plaintext += 1;
    count(ring.currentId);
    return { replacement: sealSecret(ring, stored, binding) };
  }
  const keyId = sealedKeyId(stored)!;
  let ring = current();
  if (ring === undefined) ring = sealing();
  let plaintext: string;
  try {
    plaintext = openSecret(ring, stored, binding);
  } catch (error) {
    if (error instanceof SecretError) return fail(column, error, count);
    throw error;
  }
  if (keyId === ring.currentId) {
    column.current += 1;
    count(keyId);
    return { replacement: undefined };
  }
  column.reencrypted[keyId] = (column.reencrypted[keyId] ?? 0) + 1;
  count(ring.currentId);
  return { replacement: sealSecret(ring, plaintext, binding) };
}

function fail(column: ColumnRotation, error: SecretError, count: (id: string) => void): Outcome {
  column.failed.push({ binding: error.binding, keyId: error.keyId, reason: error.reason, message: error.message });
  count(error.keyId ?? error.reason);
  return { replacement: undefined };
}

function emptyColumn(name: string): ColumnRotation {
  return { column: name, values: 0, reencrypted: {}, plaintext: 0, current: 0, failed: [], keyIds: {} };
}

async function rotateProviders(db: Kysely<any>, sealing: Sealing, current: () => SecretKeyRing | undefined, batchSize: number): Promise<ColumnRotation> {
  const column = emptyColumn('providers.api_key');
  let after = 0;
  for (;;) {
    const rows = await db.transaction().execute(async (tx) => {
      const { rows } = await sql<{ id: number; api_key: string }>`
        select id, api_key from providers where api_key is not null and id > ${after}
        order by id limit ${batchSize} for update`.execute(tx);
      for (const row of rows) {
        const { replacement } = rotateValue(column, row.api_key, providerKeyBinding(row.id), sealing, current);
        if (replacement === undefined) continue;
        // The seed's ledger holds a hash of what it wrote (app.seed_rows, migration 0008): when that
        // is this value, the entry follows it, so the seed does not take the new value for a change.
        await sql`
          update app.seed_rows set hashes = jsonb_set(hashes, '{api_key}', to_jsonb(encode(sha256(convert_to(${replacement}::text, 'UTF8')), 'hex')))
          where table_name = 'providers' and row_key = array[${String(row.id)}::text]
            and hashes ->> 'api_key' = (select encode(sha256(convert_to(p.api_key, 'UTF8')), 'hex') from providers p where p.id = ${row.id})`.execute(tx);
        await sql`update providers set api_key = ${replacement} where id = ${row.id}`.execute(tx);
      }
      return rows;
    });
    if (rows.length < batchSize) return column;
    after = rows.at(-1)!.id;
  }
}

async function rotateUserTools(db: Kysely<any>, sealing: Sealing, current: () => SecretKeyRing | undefined, batchSize: number): Promise<ColumnRotation> {
  const column = emptyColumn('user_tools.credential');
  let after: { tenantId: string; id: string } | undefined;
  for (;;) {
    const rows = await db.transaction().execute(async (tx) => {
      const { rows } = await sql<{ tenant_id: string; id: string; user_id: string; tool_id: number; credential: string }>`
        select tenant_id, id, user_id, tool_id, credential::text as credential from user_tools
        where credential <> '{}'::jsonb
          ${after === undefined ? sql`` : sql`and (tenant_id, id) > (${after.tenantId}::uuid, ${after.id}::uuid)`}
        order by tenant_id, id limit ${batchSize} for update`.execute(tx);
      const updates: { tenantId: string; id: string; credential: string }[] = [];
      for (const row of rows) {
        const stored = JSON.parse(row.credential) as Record<string, unknown>;
        const sealed = Object.keys(stored).length === 2 && stored.v === 1 && typeof stored.enc === 'string';
        // A credential stored before 0012 is the JSON object itself: its text is what gets sealed.
        const text = sealed ? (stored.enc as string) : row.credential;
        const { replacement } = rotateValue(column, text, userToolBinding(row.tenant_id, row.user_id, row.tool_id), sealing, current);
        if (replacement !== undefined) updates.push({ tenantId: row.tenant_id, id: row.id, credential: JSON.stringify({ v: 1, enc: replacement }) });
      }
      if (updates.length > 0) {
        const values = sql.join(updates.map((u) => sql`(${u.tenantId}::uuid, ${u.id}::uuid, ${u.credential}::jsonb)`));
        await sql`
          update user_tools u set credential = v.credential
          from (values ${values}) as v(tenant_id, id, credential)
          where u.tenant_id = v.tenant_id and u.id = v.id`.execute(tx);
      }
      return rows;
    });
    if (rows.length < batchSize) return column;
    const last = rows.at(-1)!;
    after = { tenantId: last.tenant_id, id: last.id };
  }
}

/** `secrets: providers.api_key: 3 values: 2 re-encrypted (from k1: 2), 1 plaintext encrypted, 0 already under k2; now k2: 3`. */
function formatColumn(c: ColumnRotation, keyId: string | undefined): string {
  if (c.values === 0) return `secrets: ${c.column}: no values`;
  const from = Object.entries(c.reencrypted).map(([id, n]) => `${id}: ${n}`).join(', ');
  const moved = Object.values(c.reencrypted).reduce((a, b) => a + b, 0);
  const now = Object.entries(c.keyIds).map(([id, n]) => `${id}: ${n}`).join(', ');
  const parts = [
    `${moved} re-encrypted${from === '' ? '' : ` (from ${from})`}`,
    `${c.plaintext} plaintext encrypted`,
    `${c.current} already under ${keyId ?? 'the current key'}`,
  ];
  if (c.failed.length > 0) parts.push(`${c.failed.length} failed, left as they are: ${c.failed.map((f) => f.message).join('; ')}`);
  return `secrets: ${c.column}: ${c.values} value${c.values === 1 ? '' : 's'}: ${parts.join(', ')}; now ${now}`;
}
