/**
 * Secrets at rest: AES-256-GCM envelopes with a key id, and the key ring they are sealed and
 * opened with. node:crypto only; the database never sees a key or a plaintext.
 *
 * An envelope is text: `v1.<keyId>.<iv>.<ciphertext+tag>` (iv 12 random bytes, tag 16 bytes, both
 * base64url). The associated data is the envelope's header and a binding that names where the
 * value lives (`providers.api_key:2`): a ciphertext copied to another row, or given another key
 * id, does not open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { ConfigError, SecretError } from './errors.ts';

const VERSION = 'v1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;
const ENVELOPE = /^v1\.([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})$/;

/**
 * The keys secrets are sealed and opened with: each has an id (stored with every value it
 * seals); `currentId` seals new values, the others only open old ones until they are rotated
 * away. `source` names where the keys came from, for messages. Never prints its keys.
 */
export class SecretKeyRing {
  readonly currentId: string;
  readonly source: string;
  readonly #keys: ReadonlyMap<string, Buffer>;

  constructor(keys: ReadonlyMap<string, Buffer>, currentId: string, source: string) {
    if (!keys.has(currentId)) throw new ConfigError(`${source}: no key has the id ${JSON.stringify(currentId)}`);
    this.#keys = new Map(keys);
    this.currentId = currentId;
    this.source = source;
  }

  /** The ids of the ring's keys, the current one first. */
  get ids(): string[] {
    return [this.currentId, ...[...this.#keys.keys()].filter((id) => id !== this.currentId)];
  }

  /** The key with this id, if the ring holds it. */
  key(id: string): Buffer | undefined {
    return this.#keys.get(id);
  }

  toJSON(): { currentId: string; ids: string[]; source: string } {
    return { currentId: this.currentId, ids: this.ids, source: this.source };
  }

  [inspect.custom](): string {
    return `SecretKeyRing { current: ${this.currentId}, ids: [${this.ids.join(', ')}], source: ${this.source} }`;
  }
}

/**
 * Parses a key list, `id:base64key[,id:base64key…]` (each key 32 bytes, base64 or base64url),
 * into a ring whose current key is `currentId` (default: the first). Anything malformed is a
 * ConfigError naming `source` (the variable or file) and the entry, never the key material.
 *
 * @example
 * parseSecretKeys('k2:…,k1:…', { source: 'DB_SECRET_KEYS' }) // ring sealing with k2, opening k1 values too
 */
export function parseSecretKeys(list: string, options: { source: string; currentId?: string; currentSource?: string }): SecretKeyRing {
  const { source } = options;
  const keys = new Map<string, Buffer>();
  const entries = list.split(',').map((entry) => entry.trim());
  entries.forEach((entry, index) => {
    const where = `${source}: entry ${index + 1}`;
    const colon = entry.indexOf(':');
    if (colon < 0) throw new ConfigError(`${where} is not id:base64key (ids and keys are separated by ':', entries by ',')`);
    const id = entry.slice(0, colon).trim();
    const material = entry.slice(colon + 1).trim();
    if (!KEY_ID.test(id)) throw new ConfigError(`${where}: the key id must be 1 to 32 of A-Z a-z 0-9 _ -, got ${JSON.stringify(id)}`);
    if (keys.has(id)) throw new ConfigError(`${where}: the key id ${id} is given twice`);
    const key = BASE64.test(material) ? Buffer.from(material.replaceAll('-', '+').replaceAll('_', '/'), 'base64') : undefined;
    if (key === undefined || key.length !== KEY_BYTES) {
      const got = key === undefined ? 'text that is not base64' : `${key.length} bytes`;
      throw new ConfigError(`${where} (id ${id}): the key must be ${KEY_BYTES} bytes in base64 (e.g. \`openssl rand -base64 32\`), got ${got}`);
    }
    keys.set(id, key);
  });
  const currentId = options.currentId ?? [...keys.keys()][0]!;
  if (!keys.has(currentId)) {
    throw new ConfigError(`${options.currentSource ?? 'the current key id'} names ${JSON.stringify(currentId)}, which ${source} does not hold (it holds ${[...keys.keys()].join(', ')})`);
  }
  return new SecretKeyRing(keys, currentId, source);
}

/** A new key list entry, `id:base64key`, with 32 random bytes: what a key file or DB_SECRET_KEYS holds. */
export function generateSecretKey(id: string): string {
  if (!KEY_ID.test(id)) throw new ConfigError(`a key id must be 1 to 32 of A-Z a-z 0-9 _ -, got ${JSON.stringify(id)}`);
  return `${id}:${randomBytes(KEY_BYTES).toString('base64')}`;
}

/** True when `value` has the shape of an envelope (it may still fail to open). */
export function isSealed(value: string): boolean {
  return ENVELOPE.test(value);
}

/** The key id an envelope was sealed with; undefined for anything that is not an envelope. */
export function sealedKeyId(value: string): string | undefined {
  return ENVELOPE.exec(value)?.[1];
}

/** Seals `plaintext` under the ring's current key, bound to `binding` (where the value will live). */
export function sealSecret(ring: SecretKeyRing, plaintext: string, binding: string): string {
  const keyId = ring.currentId;
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', ring.key(keyId)!, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(keyId, binding));
  const sealed = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${VERSION}.${keyId}.${iv.toString('base64url')}.${sealed.toString('base64url')}`;
}

/**
 * Opens an envelope sealed for `binding`. A SecretError (with the binding and the key id) when it
 * is not an envelope (`plaintext`, `malformed`), when the ring lacks its key (`unknown-key`), or
 * when it does not authenticate (`undecryptable`: changed, copied from another row, or sealed
 * with another key of the same id).
 */
export function openSecret(ring: SecretKeyRing, envelope: string, binding: string): string {
  const match = ENVELOPE.exec(envelope);
  if (match === null) {
    const looksSealed = envelope.startsWith(`${VERSION}.`);
    throw new SecretError(binding, undefined, looksSealed ? 'malformed' : 'plaintext');
  }
  const [, keyId, ivText, sealedText] = match as unknown as [string, string, string, string];
  const key = ring.key(keyId);
  if (key === undefined) throw new SecretError(binding, keyId, 'unknown-key', { source: ring.source, ids: ring.ids });
  const sealed = Buffer.from(sealedText, 'base64url');
  if (sealed.length < TAG_BYTES) throw new SecretError(binding, keyId, 'malformed');
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(ivText, 'base64url'), { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(keyId, binding));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretError(binding, keyId, 'undecryptable');
  }
}

function associatedData(keyId: string, binding: string): Buffer {
  return Buffer.from(`${VERSION}.${keyId}|${binding}`, 'utf8');
}
