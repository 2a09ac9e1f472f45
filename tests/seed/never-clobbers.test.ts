import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seed } from '../../src/seed/seed.ts';
import { providerKeyBinding } from '../../src/db/secret-bindings.ts';
import { sealSecret } from '../../src/db/secrets.ts';
import { testRing } from '../support/secret-keys.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { copyData, edit, emptySeedTables, ledgerEntry, providerKey, quiet, removeDataCopies, snapshot } from './seed-fixtures.ts';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb({ secretKeys: testRing });
});
beforeEach(async () => {
  // Each test starts from data/ freshly seeded (ledger included).
  await emptySeedTables(t.db);
  await seed(t.db, quiet);
});
afterAll(async () => {
  removeDataCopies();
  await t?.close();
});

const modelCost = async (id: number) =>
  (await t.db.selectFrom('models').select('cost1kInput').where('id', '=', id).executeTakeFirstOrThrow()).cost1kInput;
const promptContent = async (id: number) =>
  (await t.db.selectFrom('prompts').select('content').where('id', '=', id).executeTakeFirstOrThrow()).content;
const googleKey = () => providerKey(t.db);
/** An operator storing google's key by hand: sealed, as migration 0012 requires. */
const operatorKey = sealSecret(testRing, 'set-by-the-operator', providerKeyBinding(2));

describe('the seed never clobbers a row changed since it last wrote it', () => {
  it("an operator's runtime change survives a re-seed, and the run reports it", async () => {
    await sql`update models set cost_1k_input = 0.5 where id = 5`.execute(t.db);
    const before = await snapshot(t.db);
    const lines: string[] = [];
    const summary = await seed(t.db, { ...quiet, log: (line) => lines.push(line) });
    expect(await modelCost(5)).toBe('0.5');
    expect(await snapshot(t.db)).toEqual(before); // nothing else written either
    expect(summary.kept).toEqual([
      { table: 'models', key: '5', file: expect.stringMatching(/models\.csv$/), line: 6, reason: 'changed', columns: ['cost_1k_input'] },
    ]);
    expect(summary).toMatchObject({ inserted: 0, updated: 0, unchanged: 57, changed: false });
    expect(summary.files.find((f) => f.table === 'models')).toMatchObject({ kept: 1, unchanged: 7 });
    expect(lines.at(-1)).toMatch(/; kept 1 row changed since the last seed: models 5 \(seed --force overwrites it\); nothing written$/);
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}kept models 5 \(.*models\.csv:6\): cost_1k_input changed since the last seed$/));
  });

  it('the cms editing a prompt and an operator a price: both kept, both in the summary line', async () => {
    await sql`update models set cost_1k_input = 0.5 where id = 5`.execute(t.db);
    await sql`update prompts set content = 'Edited in the cms.' where id = 2`.execute(t.db);
    const lines: string[] = [];
    const summary = await seed(t.db, { ...quiet, log: (line) => lines.push(line) });
    expect(await promptContent(2)).toBe('Edited in the cms.');
    expect(summary.kept.map((r) => `${r.table} ${r.key}`)).toEqual(['models 5', 'prompts 2']);
    expect(lines.at(-1)).toContain('kept 2 rows changed since the last seed: models 5, prompts 2 (seed --force overwrites them)');
  });

  it('force overwrites the changed row with its line, reports it, and moves its ledger entry', async () => {
    const seeded = await ledgerEntry(t.db, 'models', ['5']);
    await sql`update models set cost_1k_input = 0.5 where id = 5`.execute(t.db);
    const summary = await seed(t.db, { ...quiet, force: true });
    expect(await modelCost(5)).toBe('0.00017');
    expect(summary.kept).toEqual([]);
    expect(summary.overwritten).toEqual([expect.objectContaining({ table: 'models', key: '5', reason: 'changed', columns: ['cost_1k_input'] })]);
    expect(summary).toMatchObject({ updated: 1, changed: true });
    expect(await ledgerEntry(t.db, 'models', ['5'])).toEqual(seeded); // the same values as first seeded
    // And from then on the row is the seed's again: a plain run has nothing to keep.
    expect((await seed(t.db, quiet)).kept).toEqual([]);
  });

  it('a second run with unchanged files writes nothing: no row rewritten, no ledger entry touched', async () => {
    const before = await snapshot(t.db);
    const summary = await seed(t.db, quiet);
    expect(summary).toMatchObject({ inserted: 0, updated: 0, unchanged: 58, recorded: 0, kept: [], changed: false });
    expect(await snapshot(t.db)).toEqual(before);
  });

  it('a changed line updates its row when the row is as the seed last wrote it, and the ledger entry moves', async () => {
    const dir = copyData();
    edit(dir, 'models.csv', /^(5,1,[^\n]*?),0\.00017,/m, '$1,0.00019,');
    const seeded = await ledgerEntry(t.db, 'models', ['5']);
    const summary = await seed(t.db, { ...quiet, dir });
    expect(await modelCost(5)).toBe('0.00019');
    expect(summary).toMatchObject({ updated: 1, kept: [] });
    const moved = await ledgerEntry(t.db, 'models', ['5']);
    expect(moved!.cost_1k_input).not.toEqual(seeded!.cost_1k_input);
    expect({ ...moved, cost_1k_input: null }).toEqual({ ...seeded, cost_1k_input: null });
  });

  it('a row changed in the database whose line also changed is kept: the database wins without force', async () => {
    const dir = copyData();
    edit(dir, 'models.csv', /^(5,1,[^\n]*?),0\.00017,/m, '$1,0.00019,');
    await sql`update models set description = 'Our own words' where id = 5`.execute(t.db);
    const seeded = await ledgerEntry(t.db, 'models', ['5']);
    const summary = await seed(t.db, { ...quiet, dir });
    const row = await t.db.selectFrom('models').select(['cost1kInput', 'description']).where('id', '=', 5).executeTakeFirstOrThrow();
    expect(row).toEqual({ cost1kInput: '0.00017', description: 'Our own words' });
    expect(summary.kept).toEqual([expect.objectContaining({ key: '5', reason: 'changed', columns: ['description'] })]);
    expect(await ledgerEntry(t.db, 'models', ['5'])).toEqual(seeded);
    await seed(t.db, { ...quiet, dir, force: true });
    expect(await modelCost(5)).toBe('0.00019');
  });

  it('a row changed to exactly its new line is not reported; the ledger catches up', async () => {
    const dir = copyData();
    edit(dir, 'models.csv', /^(5,1,[^\n]*?),0\.00017,/m, '$1,0.00019,');
    await sql`update models set cost_1k_input = 0.00019 where id = 5`.execute(t.db);
    const summary = await seed(t.db, { ...quiet, dir });
    expect(summary).toMatchObject({ updated: 0, recorded: 1, kept: [] });
    const before = await snapshot(t.db);
    expect(await seed(t.db, { ...quiet, dir })).toMatchObject({ changed: false });
    expect(await snapshot(t.db)).toEqual(before);
  });
});

describe('an env: variable that is unset never wipes a stored value', () => {
  it('an unset env var keeps a stored provider key, and a set one writes it', async () => {
    await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: 'AIza-first-key' } });
    expect(await googleKey()).toBe('AIza-first-key');
    const before = await snapshot(t.db);
    for (const env of [{}, { GEMINI_API_KEY: '' }]) {
      const summary = await seed(t.db, { ...quiet, env });
      expect(summary.warnings).toEqual([expect.stringMatching(/GEMINI_API_KEY is (not set|empty) .*providers\.api_key keeps its stored value$/)]);
      expect(summary.changed).toBe(false);
    }
    expect(await snapshot(t.db)).toEqual(before);
    await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: 'AIza-rotated' } });
    expect(await googleKey()).toBe('AIza-rotated');
  });

  it('a new row gets NULL, and a key an operator stored since is kept when the variable appears', async () => {
    expect(await googleKey()).toBeNull(); // seeded without the variable: a new row, NULL
    await sql`update providers set api_key = ${operatorKey} where name = 'google'`.execute(t.db);
    const summary = await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: 'AIza-from-env' } });
    expect(await googleKey()).toBe('set-by-the-operator');
    expect(summary.kept).toEqual([expect.objectContaining({ table: 'providers', key: '2', columns: ['api_key'] })]);
  });

  it('force still keeps the stored value of an unset variable', async () => {
    await sql`update providers set api_key = ${operatorKey}, endpoint = 'https://example.test' where name = 'google'`.execute(t.db);
    const summary = await seed(t.db, { ...quiet, force: true });
    const row = await t.db.selectFrom('providers').select(['apiKey', 'endpoint']).where('name', '=', 'google').executeTakeFirstOrThrow();
    expect(row).toEqual({ apiKey: operatorKey, endpoint: 'https://generativelanguage.googleapis.com/v1beta' });
    expect(summary.overwritten).toEqual([expect.objectContaining({ table: 'providers', key: '2', columns: ['endpoint'] })]);
  });
});

describe('a database seeded before the ledger existed', () => {
  beforeEach(async () => {
    await sql`truncate app.seed_rows`.execute(t.db);
  });

  it('rows equal to their line are recorded, not rewritten; the next run writes nothing', async () => {
    const rows = await snapshot(t.db);
    const summary = await seed(t.db, quiet);
    expect(summary).toMatchObject({ inserted: 0, updated: 0, unchanged: 58, recorded: 58, kept: [], changed: true });
    const after = await snapshot(t.db);
    expect({ ...after, '(ledger)': [] }).toEqual({ ...rows, '(ledger)': [] }); // no catalog row rewritten
    expect(after['(ledger)']).toHaveLength(58);
    expect(await seed(t.db, quiet)).toMatchObject({ recorded: 0, changed: false });
    expect(await snapshot(t.db)).toEqual(after);
  });

  it('a row that differs from its line is kept and reported as unrecorded, until force', async () => {
    await sql`update models set cost_1k_input = 0.5 where id = 5`.execute(t.db);
    const lines: string[] = [];
    const summary = await seed(t.db, { ...quiet, log: (line) => lines.push(line) });
    expect(await modelCost(5)).toBe('0.5');
    expect(summary.kept).toEqual([expect.objectContaining({ table: 'models', key: '5', reason: 'unrecorded', columns: ['cost_1k_input'] })]);
    expect(lines.at(-1)).toContain('kept 1 row unlike its line that the seed has no record of writing: models 5 (seed --force overwrites it)');
    expect(await ledgerEntry(t.db, 'models', ['5'])).toBeUndefined();
    await seed(t.db, { ...quiet, force: true });
    expect(await modelCost(5)).toBe('0.00017');
    expect(await ledgerEntry(t.db, 'models', ['5'])).toBeDefined();
  });
});

describe('the ledger', () => {
  it('is the owner\'s alone: app_user can neither read nor write it', async () => {
    const asAppUser = (query: ReturnType<typeof sql>) =>
      t.db.transaction().execute(async (tx) => {
        await sql`select set_config('role', 'app_user', true)`.execute(tx); // not SET LOCAL ROLE: Citus would send it to the workers, where it would also bind the SECURITY DEFINER functions' connections
        return query.execute(tx);
      });
    for (const query of [
      sql`select hashes from app.seed_rows`,
      sql`update app.seed_rows set hashes = '{}'`,
      sql`insert into app.seed_rows (table_name, row_key, hashes) values ('models', '{5}', '{}')`,
      sql`delete from app.seed_rows`,
    ]) {
      await expect(asAppUser(query)).rejects.toMatchObject({ code: '42501' });
    }
  });
});
