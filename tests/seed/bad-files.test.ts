import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedError } from '../../src/seed/errors.ts';
import { seed } from '../../src/seed/seed.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { append, copyData, edit, emptySeedTables, quiet, removeDataCopies, rewrite, seedCounts, snapshot } from './seed-fixtures.ts';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb();
  await emptySeedTables(t.db);
  await seed(t.db, quiet);
});
afterAll(async () => {
  removeDataCopies();
  await t?.close();
});

/**
 * A copy of data/ with one harmless change that a half-applied run would leave behind (admin's
 * display_order 1 → 10, on roles, the first file loaded), ready for the test to break a file.
 */
function dataWithAChange(): string {
  const dir = copyData();
  edit(dir, 'roles.csv', '1,admin,1', '1,admin,10');
  return dir;
}

/** Seeds `dir`, expects a SeedError, and checks that no row of any table (and no sequence) changed. */
async function refused(dir: string): Promise<SeedError> {
  const before = await snapshot(t.db);
  const outcome = await seed(t.db, { ...quiet, dir }).then(
    () => new Error('the seed succeeded'),
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(SeedError);
  expect(await snapshot(t.db)).toEqual(before);
  return outcome as SeedError;
}

describe('seed refuses a bad file, says where, and writes nothing', () => {
  it('an unknown column: the header line and the column', async () => {
    const dir = dataWithAChange();
    rewrite(dir, 'policies.csv', ([header, ...rows]) => [`${header},colour`, ...rows.map((row) => `${row},red`)]);
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'policies.csv'), line: 1, column: 'colour', message: expect.stringMatching(/^policies has no column "colour"/) },
    ]);
    expect(error.name).toBe('SeedError');
    expect(error.message).toContain(`${join(dir, 'policies.csv')}:1:colour: policies has no column "colour"`);
  });

  it('a row with a field missing: its line and the first missing column', async () => {
    const dir = dataWithAChange();
    edit(dir, 'policies.csv', '3,Manage agents,agents,manage', '3,Manage agents,agents');
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'policies.csv'), line: 4, column: 'action', message: expect.stringMatching(/^3 fields, but the header has 4 columns/) },
    ]);
  });

  it('an unclosed quote: the physical line where it opens, counting a quoted field that spans lines', async () => {
    const dir = dataWithAChange();
    edit(dir, 'policies.csv', '1,Access admin console,', '1,"Access\nadmin console",'); // valid: row 1 spans lines 2-3
    edit(dir, 'policies.csv', '2,Manage users,', '2,"Manage users,'); // opens on line 4, never closes
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'policies.csv'), line: 4, column: 'name', message: expect.stringMatching(/^unclosed quote/) },
    ]);
  });

  it('a value of the wrong type for its column', async () => {
    const dir = dataWithAChange();
    edit(dir, 'models.csv', ',0.00024,0.00097,', ',0.00O24,0.00097,');
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'models.csv'), line: 5, column: 'cost_1k_input', message: 'not a number: "0.00O24" (write a decimal such as 0.00075)' },
    ]);
    expect(error.message).toContain(`${join(dir, 'models.csv')}:5:cost_1k_input: not a number`);
  });

  it('bad JSON in a jsonb column', async () => {
    const dir = dataWithAChange();
    edit(dir, 'agents.csv', '"{""temperature"":0.3,""maxTokens"":8192}"', '"{""temperature"":0.3,""maxTokens"":}"');
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'agents.csv'), line: 3, column: 'model_parameters', message: expect.stringMatching(/^not valid JSON: /) },
    ]);
  });

  it('a foreign key to a row that is neither in the files nor in the database', async () => {
    const dir = dataWithAChange();
    edit(dir, 'agent-tools.csv', '00000000-0000-4000-8000-000000000003,7', '00000000-0000-4000-8000-000000000003,99');
    edit(dir, 'role-policies.csv', '3,6', '9,6');
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'role-policies.csv'), line: 13, column: 'role_id', message: expect.stringMatching(/^no roles row with id = 9, neither in roles.csv nor in the database/) },
      { file: join(dir, 'agent-tools.csv'), line: 14, column: 'tool_id', message: expect.stringMatching(/^no tools row with id = 99/) },
    ]);
  });

  it('a file: reference to a file that does not exist names both files', async () => {
    const dir = dataWithAChange();
    edit(dir, 'prompts.csv', 'file:prompts/fedpulse.txt', 'file:prompts/missing.txt');
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'prompts.csv'), line: 3, column: 'content', message: `file:prompts/missing.txt: ${join(dir, 'prompts', 'missing.txt')} does not exist` },
    ]);
  });

  it('a file that is not UTF-8: its line, nothing decoded into replacement characters', async () => {
    const dir = dataWithAChange();
    const path = join(dir, 'tools.csv');
    const bytes = readFileSync(path);
    const secondLine = bytes.indexOf(0x0a) + 1;
    // Latin-1 'é' (0xe9) in the second line, as an editor saving in Windows-1252 would write it.
    writeFileSync(path, Buffer.concat([bytes.subarray(0, secondLine + 3), Buffer.from([0xe9]), bytes.subarray(secondLine + 3)]));
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: path, line: 2, column: '', message: `not UTF-8: byte 0xe9 at offset ${secondLine + 3} (save the file as UTF-8)` },
    ]);
  });

  it('a file: reference that is not UTF-8 names both files and the line', async () => {
    const dir = dataWithAChange();
    writeFileSync(join(dir, 'prompts', 'eagle.txt'), Buffer.from('line one\nline two \xff\xfe\n', 'latin1'));
    const error = await refused(dir);
    expect(error.problems).toEqual([
      {
        file: join(dir, 'prompts.csv'),
        line: 4,
        column: 'content',
        message: `file:prompts/eagle.txt: ${join(dir, 'prompts', 'eagle.txt')}:2: not UTF-8: byte 0xff at offset 18 (save the file as UTF-8)`,
      },
    ]);
  });

  it('a 50 MB file is refused by its size, before it is parsed', async () => {
    const dir = dataWithAChange();
    const path = join(dir, 'roles.csv');
    const row = '9,"padding padding padding padding padding padding padding padding",9\n';
    writeFileSync(path, `id,name,display_order\n${row.repeat(Math.ceil((50 * 1024 * 1024) / row.length))}`);
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: path, line: 1, column: '', message: expect.stringMatching(/^5\d{7} bytes: a seed file is at most 16777216 bytes/) },
    ]);
  });

  it('a key given twice in one file', async () => {
    const dir = dataWithAChange();
    append(dir, 'roles.csv', ['4,admin,4']);
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'roles.csv'), line: 5, column: 'name', message: 'name = admin again (first on line 2); name must be unique' },
    ]);
  });

  it('a .csv file that is not a seed file', async () => {
    const dir = dataWithAChange();
    append(dir, 'model.csv', ['id']);
    const error = await refused(dir);
    expect(error.problems).toEqual([{ file: join(dir, 'model.csv'), line: 1, column: '', message: expect.stringMatching(/^not a seed file/) }]);
  });

  it('collects every problem of every file before failing, in file order', async () => {
    const dir = dataWithAChange();
    edit(dir, 'roles.csv', '3,user,3', '3,user,third');
    edit(dir, 'models.csv', '3,1,Claude Haiku 4.5,', '3,1,null,');
    edit(dir, 'agents.csv', '00000000-0000-4000-8000-000000000003,null', 'not-a-uuid,null');
    edit(dir, 'agent-tools.csv', '00000000-0000-4000-8000-000000000002,5', '00000000-0000-4000-8000-000000000002,five');
    const error = await refused(dir);
    expect(error.problems.map((p) => [p.file.slice(dir.length + 1), p.line, p.column])).toEqual([
      ['roles.csv', 4, 'display_order'],
      ['models.csv', 4, 'name'],
      ['agents.csv', 4, 'id'],
      ['agent-tools.csv', 9, 'tool_id'],
    ]);
    expect(error.message.split('\n')).toHaveLength(5);
  });

  it('1,000 good rows followed by one the database refuses write nothing', async () => {
    const dir = dataWithAChange();
    const rows = Array.from({ length: 1000 }, (_, i) => `${i + 9},3,Bulk ${i},bulk-${i},chat,null,1000,100,null,0.001,0.002,0,0,{}`);
    append(dir, 'models.csv', [...rows, '1009,3,Bad,bad-type,video,null,1000,100,null,0,0,0,0,{}']);
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'models.csv'), line: 1010, column: 'type', message: expect.stringMatching(/violates check constraint "models_type_check".*SQLSTATE 23514/) },
    ]);
    expect((await seedCounts(t.db)).models).toBe(8);
  });

  it('1,000 good rows followed by one malformed row write nothing', async () => {
    const dir = dataWithAChange();
    const rows = Array.from({ length: 1000 }, (_, i) => `${i + 8},tool-${i},null,builtin,none,null,local,{}`);
    append(dir, 'tools.csv', [...rows, '1008,tool-bad,null,builtin,none,null,local,{"a":']);
    const error = await refused(dir);
    expect(error.problems).toEqual([
      { file: join(dir, 'tools.csv'), line: 1009, column: 'custom_config', message: expect.stringMatching(/^not valid JSON/) },
    ]);
  });
});
