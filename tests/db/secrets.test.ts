/**
 * Secrets at rest (README, "Secrets"): the envelope, the key ring from the environment, and the
 * key file of the embedded default.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { ConfigError, SecretError } from '../../src/db/errors.ts';
import { readingKeys, secretKeyFileOf, secretKeysFromEnv, writingKeys } from '../../src/db/secret-keys.ts';
import { isSealed, openSecret, parseSecretKeys, sealedKeyId, sealSecret } from '../../src/db/secrets.ts';
import { keyEntry, ringOf } from '../support/secret-keys.ts';

const k1 = keyEntry('k1');
const k2 = keyEntry('k2');
const ring = ringOf([k1]);
const here = 'providers.api_key:2';

describe('the envelope', () => {
  it('round-trips, names its key id, and is new every time', () => {
    const sealed = sealSecret(ring, 'AIza-secret-provider-key', here);
    expect(sealed).toMatch(/^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22,}$/);
    expect(sealed).not.toContain('AIza');
    expect(isSealed(sealed)).toBe(true);
    expect(sealedKeyId(sealed)).toBe('k1');
    expect(openSecret(ring, sealed, here)).toBe('AIza-secret-provider-key');
    expect(sealSecret(ring, 'AIza-secret-provider-key', here)).not.toBe(sealed);
    expect(openSecret(ring, sealSecret(ring, '', here), here)).toBe('');
    expect(openSecret(ring, sealSecret(ring, 'ünïcödé ✓', here), here)).toBe('ünïcödé ✓');
  });

  it('a value bound to another row does not open there', () => {
    const sealed = sealSecret(ring, 'AIza-secret-provider-key', here);
    for (const elsewhere of ['providers.api_key:3', 'user_tools.credential:a:b:2', '']) {
      expect(() => openSecret(ring, sealed, elsewhere)).toThrow(expect.objectContaining({ name: 'SecretError', reason: 'undecryptable', binding: elsewhere, keyId: 'k1' }));
    }
  });

  it('a tampered ciphertext, iv or key id fails, naming where the value lives', () => {
    const sealed = sealSecret(ringOf([k1, k2]), 'AIza-secret-provider-key', here);
    const [version, keyId, iv, body] = sealed.split('.') as [string, string, string, string];
    const flip = (text: string, at: number) => text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1);
    const tampered = [
      [version, keyId, iv, flip(body, 3)],
      [version, keyId, iv, flip(body, body.length - 2)], // the tag
      [version, keyId, flip(iv, 0), body],
      [version, 'k2', iv, body], // the same bytes claimed under another key of the ring
    ].map((parts) => parts.join('.'));
    for (const value of tampered) {
      const error = (() => {
        try {
          return openSecret(ringOf([k1, k2]), value, here);
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(SecretError);
      expect(error).toMatchObject({ reason: 'undecryptable', binding: here });
      expect((error as Error).message).toMatch(/^providers\.api_key:2 does not decrypt under key k[12]: it was changed or copied from another row/);
    }
  });

  it('a wrong key with the same id fails; a key id the ring lacks is named with the ring', () => {
    const sealed = sealSecret(ring, 'AIza-secret-provider-key', here);
    expect(() => openSecret(ringOf([keyEntry('k1')]), sealed, here)).toThrow(expect.objectContaining({ reason: 'undecryptable' }));
    const error = (() => {
      try {
        return openSecret(ringOf([k2]), sealed, here);
      } catch (e) {
        return e as SecretError;
      }
    })();
    expect(error).toMatchObject({ name: 'SecretError', reason: 'unknown-key', keyId: 'k1', binding: here });
    expect((error as SecretError).message).toBe('providers.api_key:2 is encrypted under key id k1, which DB_SECRET_KEYS does not hold (it holds k2): add that key to DB_SECRET_KEYS');
  });

  it('plaintext and garbage are refused, not returned', () => {
    expect(() => openSecret(ring, 'AIza-stored-before-0012', here)).toThrow(
      expect.objectContaining({ reason: 'plaintext', message: expect.stringContaining('is stored in plaintext, not encrypted: `npx database secrets rotate` encrypts it') }),
    );
    expect(() => openSecret(ring, 'v1.k1.short', here)).toThrow(expect.objectContaining({ reason: 'malformed' }));
  });
});

describe('the key ring from the environment', () => {
  it('DB_SECRET_KEYS gives the keys, DB_SECRET_KEY_ID the one that seals (default: the first)', () => {
    expect(secretKeysFromEnv({})).toBeUndefined();
    expect(secretKeysFromEnv({ DB_SECRET_KEYS: '  ' })).toBeUndefined();
    const both = secretKeysFromEnv({ DB_SECRET_KEYS: `${k1}, ${k2}` })!;
    expect({ current: both.currentId, ids: both.ids }).toEqual({ current: 'k1', ids: ['k1', 'k2'] });
    const second = secretKeysFromEnv({ DB_SECRET_KEYS: `${k1},${k2}`, DB_SECRET_KEY_ID: 'k2' })!;
    expect({ current: second.currentId, ids: second.ids }).toEqual({ current: 'k2', ids: ['k2', 'k1'] });
    expect(sealedKeyId(sealSecret(second, 'x', here))).toBe('k2');
    // base64url keys work too.
    const url = `u1:${Buffer.from(k1.slice(3), 'base64').toString('base64url')}`;
    expect(openSecret(secretKeysFromEnv({ DB_SECRET_KEYS: url })!, sealSecret(parseSecretKeys(url, { source: 'x' }), 'y', here), here)).toBe('y');
    expect(loadConfig({ DB_STORAGE: 'memory://', DB_SECRET_KEYS: k1 }).secretKeys?.currentId).toBe('k1');
    expect(postgresConfig({ connectionString: 'postgres://h/db' }, { DB_SECRET_KEYS: k2 }).secretKeys?.currentId).toBe('k2');
  });

  it('refuses malformed keys with a ConfigError naming the variable, never the key material', () => {
    const material = k1.slice(3);
    const cases: [Record<string, string>, RegExp][] = [
      [{ DB_SECRET_KEYS: material }, /^DB_SECRET_KEYS: entry 1 is not id:base64key/],
      [{ DB_SECRET_KEYS: `k1:${material.slice(0, 20)}` }, /^DB_SECRET_KEYS: entry 1 \(id k1\): the key must be 32 bytes in base64 .*, got 15 bytes$/],
      [{ DB_SECRET_KEYS: `k1:${material}x!` }, /^DB_SECRET_KEYS: entry 1 \(id k1\): .*got text that is not base64$/],
      [{ DB_SECRET_KEYS: `${k1},k.2:${material}` }, /^DB_SECRET_KEYS: entry 2: the key id must be 1 to 32 of/],
      [{ DB_SECRET_KEYS: `${k1},${k1}` }, /^DB_SECRET_KEYS: entry 2: the key id k1 is given twice$/],
      [{ DB_SECRET_KEYS: k1, DB_SECRET_KEY_ID: 'k9' }, /^DB_SECRET_KEY_ID names "k9", which DB_SECRET_KEYS does not hold \(it holds k1\)$/],
    ];
    for (const [env, message] of cases) {
      const error = (() => {
        try {
          return secretKeysFromEnv(env);
        } catch (e) {
          return e as Error;
        }
      })();
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain(material.slice(0, 12));
    }
    expect(() => loadConfig({ DB_SECRET_KEYS: 'nonsense' })).toThrow(ConfigError);
  });

  it('never shows its keys: not in JSON, not in util.inspect', () => {
    const both = ringOf([k1, k2]);
    for (const shown of [JSON.stringify(both), inspect(both), inspect({ config: { secretKeys: both } }, { depth: 5 }), String(both)]) {
      expect(shown).not.toContain(k1.slice(3, 15));
      expect(shown).not.toContain(k2.slice(3, 15));
    }
    expect(JSON.parse(JSON.stringify(both))).toEqual({ currentId: 'k1', ids: ['k1', 'k2'], source: 'DB_SECRET_KEYS' });
  });
});

describe('with no key configured', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const storeDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'secrets-store-'));
    dirs.push(dir);
    return join(dir, 'pglite');
  };

  it('a server: storing a secret is a ConfigError saying to set DB_SECRET_KEYS, and no key file is made', async () => {
    const db = createDb(postgresConfig({ connectionString: 'postgres://nobody@127.0.0.1:1/none' }, {}));
    try {
      expect(readingKeys(db)).toBeUndefined();
      expect(() => writingKeys(db, 'providers.api_key')).toThrow(ConfigError);
      expect(() => writingKeys(db, 'providers.api_key')).toThrow(
        /^no secret key is configured to encrypt providers\.api_key \(only the embedded default keeps a key file; a server needs DB_SECRET_KEYS\): set DB_SECRET_KEYS to id:base64key/,
      );
    } finally {
      await db.destroy();
    }
  });

  it('an in-memory embedded database: a ConfigError too (it has nowhere to keep a key)', async () => {
    const db = createDb({ kind: 'pglite', storage: 'memory://' });
    try {
      expect(() => writingKeys(db, 'user_tools.credential')).toThrow(/^no secret key is configured to encrypt user_tools\.credential \(an in-memory embedded database keeps no key file\): set DB_SECRET_KEYS/);
    } finally {
      await db.destroy();
    }
  });

  it('the embedded default creates <store>.secret-key (mode 0600) when a secret is first stored, and reads it after', async () => {
    const storage = storeDir();
    const file = secretKeyFileOf(storage);
    expect(file).toBe(`${storage}.secret-key`);
    const first = createDb({ kind: 'pglite', storage });
    let sealed: string;
    try {
      expect(readingKeys(first)).toBeUndefined(); // reading creates nothing
      expect(() => statSync(file)).toThrow();
      const ring = writingKeys(first, 'providers.api_key');
      expect(ring.currentId).toBe('local');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file, 'utf8')).toMatch(/^local:[A-Za-z0-9+/]{43}=\n$/); // the DB_SECRET_KEYS format
      sealed = sealSecret(ring, 'kept-in-the-file', here);
    } finally {
      await first.destroy();
    }
    const again = createDb({ kind: 'pglite', storage });
    try {
      expect(openSecret(readingKeys(again)!, sealed, here)).toBe('kept-in-the-file');
      expect(writingKeys(again, 'x').currentId).toBe('local');
    } finally {
      await again.destroy();
    }
    // DB_SECRET_KEYS, when set, is used instead (the file's line can be copied into it).
    const configured = createDb({ kind: 'pglite', storage, secretKeys: ringOf([k1]) });
    try {
      expect(readingKeys(configured)!.ids).toEqual(['k1']);
      const moved = createDb({ kind: 'pglite', storage: `${storage}-other`, secretKeys: parseSecretKeys(readFileSync(file, 'utf8').trim(), { source: 'DB_SECRET_KEYS' }) });
      expect(openSecret(readingKeys(moved)!, sealed, here)).toBe('kept-in-the-file');
      await moved.destroy();
    } finally {
      await configured.destroy();
    }
  });

  it('a key file readable by others, or malformed, is refused', async () => {
    const storage = storeDir();
    const file = secretKeyFileOf(storage);
    writeFileSync(file, `${keyEntry('local')}\n`, { mode: 0o644 });
    chmodSync(file, 0o644);
    const db = createDb({ kind: 'pglite', storage });
    try {
      expect(() => readingKeys(db)).toThrow(new ConfigError(`secret key file ${file} is readable by others (mode 644): chmod 600 ${file}`));
      chmodSync(file, 0o600);
      writeFileSync(file, 'local:not-a-key\n');
      expect(() => readingKeys(db)).toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: entry 1 \\(id local\\): the key must be 32 bytes`));
    } finally {
      await db.destroy();
    }
  });
});
