import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { syncDatabase } from '../../src/lifecycle/get-db.ts';
import { DEFAULT_DATA_DIR, SEED_FILES } from '../../src/seed/files.ts';
import { seed } from '../../src/seed/seed.ts';
import { testRing } from '../support/secret-keys.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import {
  append,
  copyData,
  DATA_COUNTS,
  edit,
  emptySeedTables,
  providerKey,
  quiet,
  removeDataCopies,
  seedCounts,
  snapshot,
} from './seed-fixtures.ts';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb({ secretKeys: testRing });
  await emptySeedTables(t.db);
});
afterAll(async () => {
  removeDataCopies();
  await t?.close();
});

describe('seed', () => {
  it('loads every file of data/ into its table', async () => {
    const summary = await seed(t.db, quiet);
    expect(await seedCounts(t.db)).toEqual(DATA_COUNTS);
    expect(summary.files.map((f) => [f.table, f.inserted, f.updated, f.unchanged])).toEqual(
      Object.entries(DATA_COUNTS).map(([table, n]) => [table, n, 0, 0]),
    );
    expect(summary).toMatchObject({ inserted: 58, updated: 0, unchanged: 0, changed: true, absent: [] });
    const roles = await t.db.selectFrom('roles').select(['id', 'name']).orderBy('id').execute();
    expect(roles).toEqual([
      { id: 1, name: 'admin' },
      { id: 2, name: 'super user' },
      { id: 3, name: 'user' },
    ]);
    const agents = await t.db.selectFrom('agents').select(['name', 'tenantId', 'userId']).orderBy('name').execute();
    expect(agents).toEqual(['EAGLE', 'FedPulse', 'Standard Chat'].map((name) => ({ name, tenantId: null, userId: null })));
  });

  it('a second run changes nothing: same counts, no row rewritten, updated_at untouched, and says so', async () => {
    const before = await snapshot(t.db);
    const lines: string[] = [];
    const summary = await seed(t.db, { ...quiet, log: (line) => lines.push(line) });
    expect(summary).toMatchObject({ inserted: 0, updated: 0, unchanged: 58, changed: false });
    expect(await snapshot(t.db)).toEqual(before); // xmin, updated_at and every value of every row
    expect(lines.at(-1)).toMatch(/0 inserted, 0 updated, 58 unchanged; nothing written$/);
  });

  it('a changed line updates that row only', async () => {
    const dir = copyData();
    edit(dir, 'models.csv', 'Deterministic mock model', 'A deterministic mock model');
    const before = await t.db.selectFrom('models').select(['id', 'updatedAt']).orderBy('id').execute();
    const summary = await seed(t.db, { ...quiet, dir });
    expect(summary.files.find((f) => f.table === 'models')).toMatchObject({ inserted: 0, updated: 1, unchanged: 7 });
    expect(summary).toMatchObject({ inserted: 0, updated: 1, unchanged: 57 });
    const after = await t.db.selectFrom('models').select(['id', 'updatedAt', 'description']).orderBy('id').execute();
    expect(after.filter((m, i) => m.updatedAt.getTime() !== before[i]!.updatedAt.getTime()).map((m) => m.id)).toEqual([8]);
    expect(after.at(-1)!.description).toMatch(/^A deterministic mock model/);
    await seed(t.db, quiet); // back to data/
  });

  it('moves identity sequences past the ids the files give', async () => {
    const role = await t.db.insertInto('roles').values({ name: 'auditor' }).returning('id').executeTakeFirstOrThrow();
    expect(role.id).toBe(4);
    await t.db.deleteFrom('roles').where('id', '=', role.id).execute();
  });

  it('converts by the column type: file:, env:, JSON, exact numerics, text that looks like a number, quoted fields', async () => {
    const dir = copyData();
    edit(dir, 'models.csv', ',200000,8192,null,0,0,0,0,', ',200000,8192,null,0.00075,0,0,0,');
    append(dir, 'tools.csv', ['8,0012,"He said ""hi"", then left,\nand came back.",builtin,none,null,local,"{""list"":[1,""2""],""n"":1.50}"']);
    const summary = await seed(t.db, { ...quiet, dir, env: { GEMINI_API_KEY: 'key-from-env' } });
    expect(summary.files.find((f) => f.table === 'tools')).toMatchObject({ inserted: 1 });

    const model = await t.db.selectFrom('models').select(['cost1kInput', 'maxContext', 'maxReasoning', 'defaultParameters']).where('id', '=', 8).executeTakeFirstOrThrow();
    expect(model).toEqual({ cost1kInput: '0.00075', maxContext: 200000, maxReasoning: null, defaultParameters: { temperature: 0, maxTokens: 1024 } });
    const tool = await t.db.selectFrom('tools').select(['name', 'description', 'endpoint', 'customConfig']).where('id', '=', 8).executeTakeFirstOrThrow();
    expect(tool).toEqual({
      name: '0012',
      description: 'He said "hi", then left,\nand came back.',
      endpoint: null,
      customConfig: { list: [1, '2'], n: 1.5 },
    });
    const prompt = await t.db.selectFrom('prompts').select('content').where('id', '=', 1).executeTakeFirstOrThrow();
    expect(prompt.content).toBe(readFileSync(join(DEFAULT_DATA_DIR, 'prompts', 'ada.txt'), 'utf8'));
    expect(await providerKey(t.db)).toBe('key-from-env'); // sealed: tests/seed/secrets.test.ts

    await t.db.deleteFrom('tools').where('id', '=', 8).execute();
  });

  it('an env: variable that is not set keeps the stored value, with a warning naming the field', async () => {
    const summary = await seed(t.db, quiet);
    expect(summary.warnings).toEqual([
      expect.stringMatching(/providers\.csv:3:api_key: environment variable GEMINI_API_KEY is not set \(env:GEMINI_API_KEY\); providers\.api_key keeps its stored value$/),
    ]);
    expect(await providerKey(t.db)).toBe('key-from-env'); // from the run above, never overwritten with NULL
    expect(summary.files.find((f) => f.table === 'providers')).toMatchObject({ updated: 0, unchanged: 3 });
  });

  it('a foreign key may point at a row that is already in the database', async () => {
    const dir = copyData();
    for (const file of SEED_FILES.slice(0, -1)) rmSync(join(dir, file.name)); // only agent-tools.csv stays
    const summary = await seed(t.db, { ...quiet, dir });
    expect(summary.files.map((f) => f.table)).toEqual(['agent_tools']);
    expect(summary).toMatchObject({ unchanged: 13, changed: false });
    expect(summary.absent).toHaveLength(8);
  });
});

describe('syncDatabase', () => {
  it('migrates, then seeds data/ with the process environment', async () => {
    const saved = { GEMINI_API_KEY: process.env.GEMINI_API_KEY, TEST_API_KEY: process.env.TEST_API_KEY };
    delete process.env.GEMINI_API_KEY;
    delete process.env.TEST_API_KEY;
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      await emptySeedTables(t.db);
      const { migrated, seeded } = await syncDatabase(t.db);
      expect(migrated).toEqual([]);
      expect(seeded).toMatchObject({ inserted: 58, changed: true, testAdmin: undefined });
      expect(await seedCounts(t.db)).toEqual(DATA_COUNTS);
      // The warning is the seed's (written once per process: this file's earlier runs wrote it).
      expect(seeded.warnings).toEqual([expect.stringMatching(/GEMINI_API_KEY is not set .*providers\.api_key is NULL \(a new row\)$/)]);
      const again = await syncDatabase(t.db);
      expect(again.seeded).toMatchObject({ unchanged: 58, changed: false });
    } finally {
      warn.mockRestore();
      for (const [name, value] of Object.entries(saved)) if (value !== undefined) process.env[name] = value;
    }
  });
});
