import { execFileSync } from 'node:child_process';
import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedError, type SeedProblem } from '../../src/seed/errors.ts';
import { seed } from '../../src/seed/seed.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { append, copyData, edit, emptySeedTables, quiet, removeDataCopies, snapshot, tempDir } from './seed-fixtures.ts';

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

/** Seeds `dir`, expects a SeedError, checks that nothing was written, and returns its problems and message. */
async function refused(dir: string, env: Record<string, string> = {}): Promise<{ problems: SeedProblem[]; message: string }> {
  const before = await snapshot(t.db);
  const outcome = await seed(t.db, { ...quiet, dir, env }).then(
    () => new Error('the seed succeeded'),
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(SeedError);
  expect(await snapshot(t.db)).toEqual(before);
  return outcome as SeedError;
}

/** data/ copied, with the EAGLE prompt (prompts.csv line 4) read from `reference`. */
function promptFrom(reference: string): string {
  const dir = copyData();
  edit(dir, 'prompts.csv', 'file:prompts/eagle.txt', reference);
  return dir;
}

const at = (dir: string, file: string, line: number, column: string, message: RegExp | string) => ({
  file: join(dir, file),
  line,
  column,
  message: typeof message === 'string' ? message : expect.stringMatching(message),
});

describe('file: reads only regular files inside the data folder', () => {
  it('file:../../etc/passwd is refused: outside the data folder', async () => {
    const dir = promptFrom('file:../../etc/passwd');
    const { problems } = await refused(dir);
    expect(problems).toEqual([at(dir, 'prompts.csv', 4, 'content', /^file:\.\.\/\.\.\/etc\/passwd: \/etc\/passwd is outside the data folder /)]);
  });

  it('an absolute path is refused, even to a file inside the folder', async () => {
    const dir = copyData();
    edit(dir, 'prompts.csv', 'file:prompts/eagle.txt', `file:${join(dir, 'prompts', 'eagle.txt')}`);
    const { problems } = await refused(dir);
    expect(problems).toEqual([at(dir, 'prompts.csv', 4, 'content', /: an absolute path: a file: reference is relative to the data folder/)]);
  });

  it('a symlink out of the folder is refused, a file or a folder; one that stays inside is followed', async () => {
    const outside = tempDir();
    writeFileSync(join(outside, 'secret.txt'), 'not for the catalog');
    const dir = promptFrom('file:prompts/link.txt');
    symlinkSync(join(outside, 'secret.txt'), join(dir, 'prompts', 'link.txt'));
    symlinkSync(outside, join(dir, 'elsewhere'));
    edit(dir, 'prompts.csv', 'file:prompts/fedpulse.txt', 'file:elsewhere/secret.txt');
    const { problems, message } = await refused(dir);
    expect(problems).toEqual([
      at(dir, 'prompts.csv', 3, 'content', /^file:elsewhere\/secret\.txt: .*elsewhere\/secret\.txt is a symlink to .*secret\.txt, and .* is outside the data folder/),
      at(dir, 'prompts.csv', 4, 'content', /^file:prompts\/link\.txt: .*link\.txt is a symlink to .*secret\.txt, and .* is outside the data folder/),
    ]);
    expect(message).not.toContain('not for the catalog');

    const inside = promptFrom('file:prompts/same.txt');
    symlinkSync('eagle.txt', join(inside, 'prompts', 'same.txt'));
    await expect(seed(t.db, { ...quiet, dir: inside })).resolves.toMatchObject({ kept: [] });
  });

  it('a FIFO is refused by its type, without blocking the seed', async () => {
    const dir = promptFrom('file:prompts/pipe');
    execFileSync('mkfifo', [join(dir, 'prompts', 'pipe')]);
    const { problems } = await refused(dir);
    expect(problems).toEqual([at(dir, 'prompts.csv', 4, 'content', /^file:prompts\/pipe: .*pipe is a FIFO \(named pipe\), not a regular file/)]);
  });

  it('/dev/zero is refused: as an absolute path, through .., and through a symlink', async () => {
    const dir = promptFrom('file:/dev/zero');
    edit(dir, 'prompts.csv', 'file:prompts/fedpulse.txt', 'file:../../../../../../dev/zero');
    edit(dir, 'prompts.csv', 'file:prompts/ada.txt', 'file:prompts/zero.txt');
    symlinkSync('/dev/zero', join(dir, 'prompts', 'zero.txt'));
    const { problems } = await refused(dir);
    expect(problems).toEqual([
      at(dir, 'prompts.csv', 2, 'content', /^file:prompts\/zero\.txt: .*zero\.txt is a symlink to \/dev\/zero, and \/dev\/zero is outside the data folder/),
      at(dir, 'prompts.csv', 3, 'content', /^file:\.\.\/.*\/dev\/zero: \/dev\/zero is outside the data folder/),
      at(dir, 'prompts.csv', 4, 'content', /^file:\/dev\/zero: an absolute path/),
    ]);
  });

  it('a seed CSV file that is a FIFO or a symlink out of the folder is refused too', async () => {
    const outside = tempDir();
    const dir = copyData();
    writeFileSync(join(outside, 'roles.csv'), 'id,name,display_order\n9,intruder,9\n');
    rmSync(join(dir, 'roles.csv'));
    symlinkSync(join(outside, 'roles.csv'), join(dir, 'roles.csv'));
    rmSync(join(dir, 'tools.csv'));
    execFileSync('mkfifo', [join(dir, 'tools.csv')]);
    const { problems } = await refused(dir);
    expect(problems).toEqual([
      at(dir, 'roles.csv', 1, '', /roles\.csv is a symlink to .*roles\.csv, and .* is outside the data folder/),
      at(dir, 'tools.csv', 1, '', /tools\.csv is a FIFO \(named pipe\), not a regular file/),
    ]);
  });

  it('a folder is refused', async () => {
    const dir = promptFrom('file:prompts');
    const { problems } = await refused(dir);
    expect(problems).toEqual([at(dir, 'prompts.csv', 4, 'content', /^file:prompts: .*prompts is a folder, not a regular file/)]);
  });
});

describe('env: reads only the variables the data folder declares', () => {
  it('env:DATABASE_URL, not in env-allowlist.txt, is refused and its value never shown', async () => {
    const dir = copyData();
    edit(dir, 'providers.csv', '3,mock,null,null', '3,mock,env:DATABASE_URL,null');
    const secret = 'postgres://owner:hunter2@db.internal:5432/chat';
    const { problems, message } = await refused(dir, { DATABASE_URL: secret });
    expect(problems).toEqual([
      at(dir, 'providers.csv', 4, 'api_key', `env:DATABASE_URL: DATABASE_URL is not declared in ${join(dir, 'env-allowlist.txt')}, the variables env: fields may read`),
    ]);
    expect(message).not.toContain('hunter2');
  });

  it('without env-allowlist.txt no env: field may read anything', async () => {
    const dir = copyData();
    rmSync(join(dir, 'env-allowlist.txt'));
    const { problems } = await refused(dir, { GEMINI_API_KEY: 'AIza-whatever' });
    expect(problems).toEqual([at(dir, 'providers.csv', 3, 'api_key', /^env:GEMINI_API_KEY: GEMINI_API_KEY is not declared in /)]);
  });

  it('a line of env-allowlist.txt that is not a variable name is refused with its line', async () => {
    const dir = copyData();
    append(dir, 'env-allowlist.txt', ['', 'OK_NAME # fine', 'NOT A NAME']);
    const { problems } = await refused(dir);
    expect(problems).toEqual([at(dir, 'env-allowlist.txt', 7, '', /^not an environment variable name: "NOT A NAME"/)]);
  });
});

describe('a refused row never shows the value of an env: field', () => {
  const SECRET = 'AIzaSyD-very-secret-key-0123456789';

  /** data/ copied, with `names` added to env-allowlist.txt. */
  function allowing(...names: string[]): string {
    const dir = copyData();
    append(dir, 'env-allowlist.txt', names);
    return dir;
  }

  it('a row the database refuses (check constraint) is reported by file:line:column, secret masked', async () => {
    const dir = allowing('TOOL_TOKEN');
    append(dir, 'tools.csv', ['9,leaky,null,builtin,api_key,env:TOOL_TOKEN,local,[]']);
    const { problems, message } = await refused(dir, { TOOL_TOKEN: SECRET });
    expect(problems).toEqual([at(dir, 'tools.csv', 9, 'custom_config', /violates check constraint "tools_custom_config_check".*SQLSTATE 23514/)]);
    expect(message).not.toContain(SECRET);
    expect(message).not.toContain('AIza');
  });

  it('a unique violation on a value from env: names the reference, not the value', async () => {
    await sql`insert into tools (id, name) values (60, ${SECRET})`.execute(t.db);
    try {
      const dir = allowing('TOOL_NAME');
      append(dir, 'tools.csv', ['61,env:TOOL_NAME,null,builtin,none,null,local,{}']);
      const { problems, message } = await refused(dir, { TOOL_NAME: SECRET });
      expect(problems).toEqual([at(dir, 'tools.csv', 9, 'name', /duplicate key value violates unique constraint "tools_scope_name_key" \(Key \(scope, name\)=\(00000000-0000-0000-0000-000000000000, \[env:TOOL_NAME\]\) already exists\)/)]);
      expect(message).not.toContain(SECRET);
    } finally {
      await sql`delete from tools where id = 60`.execute(t.db);
    }
  });

  it('a value from env: that is not of the column type is described, not shown', async () => {
    const dir = allowing('CONTEXT_SIZE');
    edit(dir, 'models.csv', /^(8,3,Mock Model,mock-model,chat,[^,]*),200000,/m, '$1,env:CONTEXT_SIZE,');
    const { problems, message } = await refused(dir, { CONTEXT_SIZE: SECRET });
    expect(problems).toEqual([
      at(dir, 'models.csv', 9, 'max_context', `env:CONTEXT_SIZE: the variable's value (${SECRET.length} characters, not shown) is not a valid integer`),
    ]);
    expect(message).not.toContain('AIza');
  });

  it('"Failing row contains" is left out: a refused row does not dump its values', async () => {
    const dir = copyData();
    append(dir, 'tools.csv', ['9,big,"a long description",builtin,none,null,local,[]']);
    const { message } = await refused(dir);
    expect(message).not.toContain('Failing row');
    expect(message).not.toContain('a long description');
  });
});
