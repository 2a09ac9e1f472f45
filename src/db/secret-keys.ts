/**
 * Which key ring a database seals and opens secrets with: DB_SECRET_KEYS (with DB_SECRET_KEY_ID)
 * from its config, or — for the embedded default only, a PGlite directory store with no keys
 * configured — a key file beside the store, `<store>.secret-key` (mode 0600), created the first
 * time a secret is stored. A server never gets a key file: storing a secret there without
 * DB_SECRET_KEYS is a ConfigError.
 */
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Kysely } from 'kysely';
import { ConfigError, SecretError } from './errors.ts';
import { generateSecretKey, isSealed, openSecret, parseSecretKeys, sealedKeyId, type SecretKeyRing } from './secrets.ts';

type Env = Record<string, string | undefined>;

/** The key id of a key file the embedded default creates. */
export const KEY_FILE_KEY_ID = 'local';

/** The ring DB_SECRET_KEYS and DB_SECRET_KEY_ID describe; undefined when DB_SECRET_KEYS is unset or empty. */
export function secretKeysFromEnv(env: Env = process.env): SecretKeyRing | undefined {
  const list = env.DB_SECRET_KEYS?.trim();
  if (list === undefined || list === '') return undefined;
  const currentId = env.DB_SECRET_KEY_ID?.trim();
  return parseSecretKeys(list, {
    source: 'DB_SECRET_KEYS',
    currentSource: 'DB_SECRET_KEY_ID',
    ...(currentId === undefined || currentId === '' ? {} : { currentId }),
  });
}

/** Where the embedded default keeps its key: beside the store directory, `<store>.secret-key`. */
export function secretKeyFileOf(storage: string): string {
  return `${storage.replace(/[/\\]+$/, '')}.secret-key`;
}

interface KeySource {
  ring: SecretKeyRing | undefined;
  /** The key file of an embedded directory store without configured keys. */
  keyFile: string | undefined;
  /** What the database is, for the message of a missing key. */
  what: 'server' | 'memory' | 'embedded';
}

// Keyed by the dialect's adapter: shared by the database, its transactions and withoutPlugins().
const sources = new WeakMap<object, KeySource>();

/** Called by createDb: the ring of `db`, or the key file it may use. */
export function registerSecretKeys(db: Kysely<any>, config: { kind: 'postgres' | 'pglite'; storage?: string; secretKeys?: SecretKeyRing | undefined }): void {
  const storage = config.kind === 'pglite' ? config.storage : undefined;
  const directory = storage !== undefined && !storage.includes('://');
  sources.set(db.getExecutor().adapter, {
    ring: config.secretKeys,
    keyFile: config.secretKeys === undefined && directory ? secretKeyFileOf(storage) : undefined,
    what: config.kind === 'postgres' ? 'server' : directory ? 'embedded' : 'memory',
  });
}

/** The ring secrets of `db` are opened with: its configured keys, else its key file if one exists; else undefined. */
export function readingKeys(db: Kysely<any>): SecretKeyRing | undefined {
  const source = sources.get(db.getExecutor().adapter);
  if (source === undefined) return undefined;
  if (source.ring === undefined && source.keyFile !== undefined) source.ring = readKeyFile(source.keyFile);
  return source.ring;
}

/**
 * The ring a secret of `db` is sealed with. The embedded default creates its key file now if it
 * has none; otherwise, with no key configured, a ConfigError saying to set DB_SECRET_KEYS.
 * `what` names the secret to store (`providers.api_key`).
 */
export function writingKeys(db: Kysely<any>, what: string): SecretKeyRing {
  const found = readingKeys(db);
  if (found !== undefined) return found;
  const source = sources.get(db.getExecutor().adapter);
  if (source?.keyFile !== undefined) {
    source.ring = createKeyFile(source.keyFile);
    return source.ring;
  }
  const where =
    source?.what === 'memory'
      ? ' (an in-memory embedded database keeps no key file)'
      : source?.what === 'server'
        ? ' (only the embedded default keeps a key file; a server needs DB_SECRET_KEYS)'
        : '';
  throw new ConfigError(
    `no secret key is configured to encrypt ${what}${where}: set DB_SECRET_KEYS to id:base64key, 32 random bytes, ` +
      'e.g. DB_SECRET_KEYS="k1:$(openssl rand -base64 32)" (README, "Secrets")',
  );
}

function readKeyFile(path: string): SecretKeyRing | undefined {
  let text: string;
  try {
    const mode = statSync(path).mode;
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new ConfigError(`secret key file ${path} is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 ${path}`);
    }
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseSecretKeys(text.trim(), { source: path });
}

function createKeyFile(path: string): SecretKeyRing {
  mkdirSync(dirname(path), { recursive: true });
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600); // never overwrites a key another process just wrote
  } catch (error) {
    if ((error as { code?: string }).code === 'EEXIST') return readKeyFile(path)!;
    throw error;
  }
  try {
    writeSync(fd, `${generateSecretKey(KEY_FILE_KEY_ID)}\n`);
  } finally {
    closeSync(fd);
  }
  return readKeyFile(path)!;
}

/**
 * Opens a stored secret of `db` (see openSecret): a SecretError when it does not open, a
 * ConfigError when it is sealed and `db` has no key configured to open it with.
 */
export function openStoredSecret(db: Kysely<any>, value: string, binding: string): string {
  const ring = readingKeys(db);
  if (ring === undefined && isSealed(value)) {
    throw new ConfigError(`${binding} is encrypted under key id ${sealedKeyId(value)} and no secret key is configured to open it: set DB_SECRET_KEYS (README, "Secrets")`);
  }
  if (ring === undefined) throw new SecretError(binding, undefined, 'plaintext');
  return openSecret(ring, value, binding);
}
