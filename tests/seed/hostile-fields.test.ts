import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedError } from '../../src/seed/errors.ts';
import { seed } from '../../src/seed/seed.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { append, copyData, emptySeedTables, quiet, removeDataCopies, seedCounts } from './seed-fixtures.ts';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb();
  await emptySeedTables(t.db);
});
afterAll(async () => {
  removeDataCopies();
  await t?.close();
});

/** A CSV field holding `value`: quoted, inner quotes doubled. */
const field = (value: string) => `"${value.replaceAll('"', '""')}"`;

const HOSTILE = [
  "'; drop table users; --",
  '$$; drop table roles; $$',
  'C:\\path\\ \\x00 \\\\ E\'\\047\'',
  '👩🏽‍💻 🚀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  '\u202Eevil.txt\u202C \u05E9\u05DC\u05D5\u05DD',
  'multi\nline, with "quotes" and, commas',
  'x'.repeat(1024 * 1024),
];

describe('CSV fields carrying SQL, quotes, emoji, RTL marks or 1 MB of text', () => {
  it('are stored byte-for-byte', async () => {
    const dir = copyData();
    append(dir, 'tools.csv', HOSTILE.map((value, i) => `${100 + i},${field(`hostile-${i}`)},${field(value)},null,null,null,null,{}`));
    await seed(t.db, { ...quiet, dir });
    const rows = await t.db.selectFrom('tools').select(['name', 'description']).where('id', '>=', 100).orderBy('id').execute();
    expect(rows.map((r) => r.description === HOSTILE[Number(r.name.slice(8))])).toEqual(HOSTILE.map(() => true));
    expect((await seedCounts(t.db)).roles).toBe(3);
  });

  it('a NUL character is refused with its file, line and column; nothing written', async () => {
    const before = await seedCounts(t.db);
    const dir = copyData();
    append(dir, 'tools.csv', [`200,nul-tool,${field('before\u0000after')},null,null,null,null,{}`]);
    const error = await seed(t.db, { ...quiet, dir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SeedError);
    expect((error as SeedError).problems).toEqual([
      { file: join(dir, 'tools.csv'), line: expect.any(Number), column: 'description', message: expect.stringMatching(/NUL/) },
    ]);
    expect(await seedCounts(t.db)).toEqual(before);
  });
});
