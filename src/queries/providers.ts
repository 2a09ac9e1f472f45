import { sql } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import { NotFoundError } from '../db/errors.ts';
import { providerKeyBinding } from '../db/secret-bindings.ts';
import { openStoredSecret } from '../db/secret-keys.ts';
import { assertRole } from '../db/service-roles.ts';
import { assertInt } from './validate.ts';

/** A provider as the gateway calls it: its endpoint and its API key, decrypted (null when it has none). */
export interface ProviderCredentials {
  providerId: number;
  name: string;
  endpoint: string | null;
  apiKey: string | null;
}

/**
 * The provider with this id and its API key, decrypted in this process (the database returns it
 * sealed, through app.provider_credentials, which only app_gateway may call: no app role reads
 * providers.api_key). NotFoundError('provider', id) when there is none; a SecretError when the
 * key does not open (stored in plaintext before migration 0012, a key id the ring lacks, a
 * changed value); a ConfigError when the key is sealed and no secret key is configured. Needs
 * no tenant.
 *
 * @example
 * const model = await getModelByInternalName(db, 'gemini-2.5-flash');
 * const { endpoint, apiKey } = await getProviderCredentials(db, { providerId: model.providerId });
 *
 * Roles: app_gateway (README, "Production roles").
 */
export async function getProviderCredentials(db: Executor, params: { providerId: number }): Promise<ProviderCredentials> {
  assertRole(db, 'getProviderCredentials');
  assertInt('providerId', params.providerId, 1);
  const { rows } = await sql<{ id: number; name: string; endpoint: string | null; api_key: string | null }>`
    select id, name, endpoint, api_key from app.provider_credentials(${params.providerId}::integer)`.execute(db.withoutPlugins());
  const row = rows[0];
  if (row === undefined) throw new NotFoundError('provider', params.providerId);
  const apiKey = row.api_key === null ? null : openStoredSecret(db, row.api_key, providerKeyBinding(row.id));
  return { providerId: row.id, name: row.name, endpoint: row.endpoint, apiKey };
}
