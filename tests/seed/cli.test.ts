import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.ts';
import { migrate } from '../../src/db/migrator.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { TEST_SECRET_KEYS } from '../support/secret-keys.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';
import { copyData, edit, providerKey, removeDataCopies, snapshot, tempDir } from './seed-fixtures.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));

/** A database the CLI can reach through the environment: a PGlite folder, or a server database. */
interface Target {
  env: Record<string, string>;
  /** Runs `fn` on the same database in this process (PGlite: only while no child has it open). */
  use<T>(fn: (db: Kysely<DB>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

async function target(migrated: boolean): Promise<Target> {
  if (onServer) {
    const t: TestDb = await openTestDb({ migrated });
    return { env: { DATABASE_URL: t.url! }, use: (fn) => fn(t.db), close: () => t.close() };
  }
  const storage = tempDir();
  const use = async <T>(fn: (db: Kysely<DB>) => Promise<T>) => {
    const db = createDb({ kind: 'pglite', storage });
    try {
      return await fn(db);
    } finally {
      await db.destroy();
    }
  };
  if (migrated) await use((db) => migrate(db));
  return { env: { DB_STORAGE: storage }, use, close: async () => {} };
}

/** `npm run seed` as the user runs it: node src/cli/database.ts seed, in the project folder. */
function runSeed(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(PG[A-Z]+|DATABASE_URL|TEST_DATABASE_URL|DB_STORAGE|TEST_API_KEY|GEMINI_API_KEY|DB_SECRET_KEYS|DB_SECRET_KEY_ID)$/.test(name),
    ),
  );
  return new Promise((done, failed) => {
    const child = spawn(NODE, ['src/cli/database.ts', 'seed', ...args], { cwd: ROOT, env: { ...inherited, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', failed);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

let migrated: Target;
let bare: Target;
beforeAll(async () => {
  migrated = await target(true);
  bare = await target(false);
});
afterAll(async () => {
  await migrated?.close();
  await bare?.close();
  removeDataCopies();
});

describe('npm run seed', () => {
  it('prints each problem as file:line:column, exits non-zero and writes nothing', async () => {
    const dir = copyData();
    edit(dir, 'roles.csv', '1,admin,1', '1,admin,10');
    edit(dir, 'models.csv', ',0.00024,0.00097,', ',0.00O24,0.00097,');
    edit(dir, 'agents.csv', '"{""temperature"":0.2,""maxTokens"":8192}"', '"{""temperature"":0.2,"');
    const before = await migrated.use(snapshot);
    const { code, stdout, stderr } = await runSeed(['--dir', dir], migrated.env);
    expect(code).toBe(1);
    expect(stderr.split('\n')).toEqual(
      expect.arrayContaining([
        `${dir}/models.csv:5:cost_1k_input: not a number: "0.00O24" (write a decimal such as 0.00075)`,
        expect.stringMatching(new RegExp(`^${dir}/agents.csv:4:model_parameters: not valid JSON`)),
        'seed: 2 problems in the seed data; nothing was written',
      ]),
    );
    expect(stdout).not.toMatch(/inserted/);
    expect(await migrated.use(snapshot)).toEqual(before);
  });

  it('loads data/ and prints what it did per file and in total', async () => {
    const { code, stdout } = await runSeed([], { ...migrated.env, GEMINI_API_KEY: 'from-the-environment', DB_SECRET_KEYS: TEST_SECRET_KEYS });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^ {2}models\.csv +→ models +\d+ inserted, \d+ updated, \d+ unchanged$/m);
    expect(stdout).toMatch(/^seed: 58 rows in 9 files from data: /m);
    expect(await migrated.use((db) => providerKey(db))).toBe('from-the-environment'); // sealed with DB_SECRET_KEYS
  });

  it('on a database without the schema, fails and says to run npm run migrate', async () => {
    const { code, stderr } = await runSeed([], bare.env);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^seed: the schema is missing \(this database has none of the seed tables\): run `npx database migrate` first/m);
  });
});
