import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { seed } from '../../src/seed/seed.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { emptySeedTables } from './seed-fixtures.ts';

// Its own file: "once per process" is module state, fresh in each test file's process.
let t: TestDb;
beforeAll(async () => {
  t = await openTestDb();
  await emptySeedTables(t.db);
});
afterAll(() => t?.close());

describe('the unset env: variable warning', () => {
  it('is emitted once per process, however many times the seed runs (each run still lists it in its summary)', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const runs = [];
      // As getDb() after closeDb(), four times in one process: the default warn is console.warn.
      for (let i = 0; i < 4; i += 1) runs.push(await seed(t.db, { env: {} }));
      expect(warn.mock.calls).toEqual([
        [expect.stringMatching(/^seed: warning: .*providers\.csv:3:api_key: environment variable GEMINI_API_KEY is not set .*is NULL \(a new row\)$/)],
      ]);
      expect(runs.map((r) => r.warnings.length)).toEqual([1, 1, 1, 1]);
      expect(runs[3]!.warnings[0]).toMatch(/keeps its stored value$/);
    } finally {
      warn.mockRestore();
    }
  });
});
