import type { Kysely } from 'kysely';
import { SecretError } from '../db/errors.ts';
import { providerKeyBinding } from '../db/secret-bindings.ts';
import { writingKeys } from '../db/secret-keys.ts';
import { isSealed, openSecret, sealSecret, type SecretKeyRing } from '../db/secrets.ts';
import type { LoadedFile, SeedRow } from './load.ts';

/**
 * The seed's columns stored encrypted (README, "Secrets"), by table and column: the binding of a
 * row's value, from the row's primary key as the database prints it.
 */
const SEALED_COLUMNS: Record<string, Record<string, (key: string[]) => string>> = {
  providers: { api_key: (key) => providerKeyBinding(key[0]!) },
};

/** A sealed column of a loaded file: its position in `loaded.columns` and its binding. */
export interface SealedField {
  position: number;
  binding: (key: string[]) => string;
}

/**
 * The file's sealed fields, with their plaintexts taken out of the rows (each `values` entry is
 * set to null, so no comparison sends a plaintext to the database) and the ring they are sealed
 * with: a ConfigError when a plaintext is to be stored and no secret key is configured.
 */
export function takeSealedFields(tx: Kysely<any>, loaded: LoadedFile): {
  fields: SealedField[];
  plaintexts: Map<SeedRow, Map<number, string>>;
  ring: SecretKeyRing | undefined;
} {
  const byColumn = SEALED_COLUMNS[loaded.table.name] ?? {};
  const fields = loaded.columns.flatMap((c, position) => (byColumn[c.name] === undefined ? [] : [{ position, binding: byColumn[c.name]! }]));
  const plaintexts = new Map<SeedRow, Map<number, string>>();
  for (const row of loaded.rows) {
    for (const { position } of fields) {
      const value = row.values[position];
      if (value === null || value === undefined) continue;
      const texts = plaintexts.get(row) ?? new Map<number, string>();
      texts.set(position, value);
      plaintexts.set(row, texts);
      row.values[position] = null;
    }
  }
  const first = fields[0];
  const ring = plaintexts.size === 0 || first === undefined ? undefined : writingKeys(tx, `${loaded.table.name}.${loaded.columns[first.position]!.name}`);
  return { fields, plaintexts, ring };
}

/**
 * A stored value compared with the plaintext of its line: `equal` (it opens to it), `reseal` (it
 * is that plaintext, stored before encryption: to be encrypted), or `differs` (NULL, another
 * value, or one that does not open with the ring).
 */
export function compareSealed(ring: SecretKeyRing, stored: string | null, plaintext: string, binding: string): 'equal' | 'reseal' | 'differs' {
  if (stored === null) return 'differs';
  if (!isSealed(stored)) return stored === plaintext ? 'reseal' : 'differs';
  try {
    return openSecret(ring, stored, binding) === plaintext ? 'equal' : 'differs';
  } catch (error) {
    if (error instanceof SecretError) return 'differs';
    throw error;
  }
}

export { sealSecret };
