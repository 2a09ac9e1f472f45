/**
 * `database secrets rotate` as an operator runs it (node src/cli/database.ts, in a child process,
 * configured only by its environment), on an embedded store or a server database.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.ts';
import { migrate } from '../../src/db/migrator.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import type { SecretKeyRing } from '../../src/db/secrets.ts';
import { describeTarget } from '../../src/db/target.ts';
import { seed } from '../../src/seed/seed.ts';
import { providerKey, removeDataCopies, storedProviderKey, tempDir } from '../seed/seed-fixtures.ts';
import { keyEntry, ringOf } from '../support/secret-keys.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const k1 = keyEntry('k1');
const k2 = keyEntry('k2');
const quiet = { log: () => {}, warn: () => {} };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npx database ARGS…` with only `env` configuring the database and the keys; stdin is not a terminal. */
function database(args: string[], env: Record<string, string>): Promise<Run> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(PG[A-Z]+|DATABASE_URL|TEST_DATABASE_URL|DB_[A-Z_]+|GEMINI_API_KEY|TEST_API_KEY|VITEST.*|NODE_ENV)$/.test(name)),
  );
  return new Promise((done, failed) => {
    const child = spawn(NODE, ['src/cli/database.ts', ...args], { cwd: ROOT, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', failed);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

let server: TestDb | undefined;
let storage: string;
let env: Record<string, string>;
let target: string;

/** Runs `fn` on the database in this process with `ring` (PGlite: only while no child has it open). */
async function use<T>(ring: SecretKeyRing | undefined, fn: (db: Kysely<DB>) => Promise<T>): Promise<T> {
  const secretKeys = ring === undefined ? {} : { secretKeys: ring };
  const db = server !== undefined ? createDb({ ...server.config, ...secretKeys }) : createDb({ kind: 'pglite', storage, ...secretKeys });
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

beforeAll(async () => {
  if (onServer) {
    server = await openTestDb();
    env = { DATABASE_URL: server.url! };
    target = describeTarget(server.config);
  } else {
    storage = join(tempDir(), 'pglite');
    env = { DB_STORAGE: storage };
    target = `embedded ${storage}`;
    await use(undefined, (db) => migrate(db));
  }
  await use(ringOf([k1]), (db) => seed(db, { ...quiet, env: { GEMINI_API_KEY: 'AIza-rotated-by-the-cli' } }));
});
afterAll(async () => {
  await server?.close();
  removeDataCopies();
});

describe('database secrets rotate', () => {
  it('refuses without a terminal unless --yes, changing nothing', async () => {
    const before = await use(undefined, (db) => storedProviderKey(db));
    const run = await database(['secrets', 'rotate'], { ...env, DB_SECRET_KEYS: `${k2},${k1}` });
    expect(run.code).toBe(1);
    expect(run.stdout.split('\n')[0]).toBe(target);
    expect(run.stderr).toContain(`would re-encrypt every secret on ${target} under key k2 (DB_SECRET_KEYS holds k2, k1)`);
    expect(run.stderr).toContain('refusing without a terminal to confirm: nothing was changed. Add --yes');
    expect(await use(undefined, (db) => storedProviderKey(db))).toBe(before);
  });

  it('with --yes re-encrypts every secret under the current key and prints the counts per column and key id', async () => {
    const run = await database(['secrets', 'rotate', '--yes', '--batch-size', '1'], { ...env, DB_SECRET_KEYS: `${k1},${k2}`, DB_SECRET_KEY_ID: 'k2' });
    expect(run, run.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout.split('\n')).toEqual([
      target,
      'secrets: providers.api_key: 1 value: 1 re-encrypted (from k1: 1), 0 plaintext encrypted, 0 already under k2; now k2: 1',
      'secrets: user_tools.credential: no values',
      'secrets: 1 rewritten; every secret is under k2',
      '',
    ]);
    expect(await use(ringOf([k2]), (db) => providerKey(db, 2, ringOf([k2])))).toBe('AIza-rotated-by-the-cli');
    const again = await database(['secrets', 'rotate', '-y'], { ...env, DB_SECRET_KEYS: `${k2},${k1}` });
    expect(again.stdout).toContain('secrets: providers.api_key: 1 value: 0 re-encrypted, 0 plaintext encrypted, 1 already under k2; now k2: 1');
    expect(again.stdout).toContain('secrets: 0 rewritten; every secret is under k2');
  });

  it('exits 1 naming a value whose key is not in DB_SECRET_KEYS, and leaves it', async () => {
    const before = await use(undefined, (db) => storedProviderKey(db));
    const run = await database(['secrets', 'rotate', '--yes'], { ...env, DB_SECRET_KEYS: keyEntry('k3') });
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('providers.api_key:2 is encrypted under key id k2, which DB_SECRET_KEYS does not hold (it holds k3)');
    expect(run.stderr).toMatch(/^secrets: 1 value could not be decrypted and was left as it is: add the key they name to DB_SECRET_KEYS/);
    expect(await use(undefined, (db) => storedProviderKey(db))).toBe(before);
  });

  it('a malformed DB_SECRET_KEYS is named, never printed; a bad command line exits 2', async () => {
    const material = k1.slice(3, 30);
    const run = await database(['secrets', 'rotate', '--yes'], { ...env, DB_SECRET_KEYS: `k1:${material}` });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^secrets: DB_SECRET_KEYS: entry 1 \(id k1\): the key must be 32 bytes in base64/);
    expect(run.stdout + run.stderr).not.toContain(material);
    for (const args of [['secrets'], ['secrets', 'spin'], ['secrets', 'rotate', 'now'], ['secrets', 'rotate', '--batch-size', '0'], ['secrets', 'rotate', '--force']]) {
      const bad = await database(args, env);
      expect(bad.code, args.join(' ')).toBe(2);
      expect(bad.stderr).toMatch(/usage: database secrets rotate/);
    }
    for (const args of [['secrets', '--help'], ['secrets', 'rotate', '--help']]) {
      const help = await database(args, env);
      expect(help).toMatchObject({ code: 0, stderr: '' });
      expect(help.stdout).toMatch(/^usage: database secrets rotate \[--yes\] \[--batch-size N\]/);
    }
  });
});

describe.runIf(!onServer)('the embedded default without DB_SECRET_KEYS', () => {
  it('seed creates <store>.secret-key (0600) for a provider key; rotate uses it', async () => {
    const store = join(tempDir(), 'pglite');
    const keyFile = `${store}.secret-key`;
    expect((await database(['migrate'], { DB_STORAGE: store })).code).toBe(0);
    expect(existsSync(keyFile)).toBe(false); // no secret stored yet: no key file
    const seeded = await database(['seed'], { DB_STORAGE: store, GEMINI_API_KEY: 'AIza-in-the-embedded-store' });
    expect(seeded, seeded.stderr).toMatchObject({ code: 0 });
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const rotated = await database(['secrets', 'rotate', '--yes'], { DB_STORAGE: store });
    expect(rotated.stdout).toContain('secrets: providers.api_key: 1 value: 0 re-encrypted, 0 plaintext encrypted, 1 already under local; now local: 1');
    expect(rotated.code).toBe(0);
  });
});
