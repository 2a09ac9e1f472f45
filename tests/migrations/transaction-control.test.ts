/**
 * "A migration file either runs whole in its transaction or not at all" (issue 12, point 3):
 * transaction control and psql meta-commands are refused before anything runs, where PostgreSQL
 * would run them as commands of their own (not in strings, comments or bodies); and when SQL the
 * splitter cannot see ends the transaction anyway, the error says what really happened.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/db/errors.ts';
import { migrate, migrateDown, readMigrationFiles } from '../../src/db/migrator.ts';
import { scanSqlScript, splitSqlStatements, transactionControl } from '../../src/db/sql-statements.ts';
import { copyMigrations, type MigrationsCopy } from '../support/migrations-dir.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ALL = readMigrationFiles().map((f) => f.name);

async function ledger(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from schema_migrations order by name`.execute(db.withoutPlugins());
  return rows.map((r) => r.name);
}

async function exists(db: Kysely<any>, name: string): Promise<boolean> {
  const { rows } = await sql<{ present: boolean }>`select to_regclass(${name}) is not null as present`.execute(db.withoutPlugins());
  return rows[0]!.present;
}

async function failure(attempt: Promise<unknown>): Promise<MigrationError> {
  const error = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MigrationError);
  return error as MigrationError;
}

describe('what counts as transaction control', () => {
  it('names each transaction-control command, comments before it skipped', () => {
    const cases: Record<string, string> = {
      begin: 'BEGIN',
      'BEGIN WORK': 'BEGIN',
      'begin isolation level serializable': 'BEGIN',
      'start transaction read only': 'START TRANSACTION',
      commit: 'COMMIT',
      'commit and chain': 'COMMIT',
      "COMMIT PREPARED 'gid'": 'COMMIT PREPARED',
      end: 'END',
      'end transaction': 'END',
      rollback: 'ROLLBACK',
      'rollback to savepoint s': 'ROLLBACK TO SAVEPOINT',
      "rollback prepared 'gid'": 'ROLLBACK PREPARED',
      abort: 'ABORT',
      'savepoint s': 'SAVEPOINT',
      'release savepoint s': 'RELEASE SAVEPOINT',
      'release s': 'RELEASE SAVEPOINT',
      "prepare transaction 'gid'": 'PREPARE TRANSACTION',
      '/* why */ commit': 'COMMIT',
      '-- why\n  Commit': 'COMMIT',
    };
    expect(Object.fromEntries(Object.keys(cases).map((text) => [text, transactionControl(text)]))).toEqual(cases);
  });

  it('is none for statements that only mention it: strings, identifiers, bodies, prepared statements', () => {
    const none = [
      "select 'commit'",
      'select 1 as "commit"',
      'create table begin_log (commit int, rollback_at timestamptz)',
      "comment on table t is 'rollback; begin'",
      'set transaction isolation level serializable',
      'do $$ begin commit; end $$',
      'create procedure p() language plpgsql as $$ begin commit; end $$',
      'call p()',
      'prepare transaction as select 1',
      'prepare transaction (int) as select $1',
    ];
    expect(none.filter((text) => transactionControl(text) !== undefined)).toEqual([]);
  });

  it('keeps a BEGIN ATOMIC body, CASE … END inside it, in one statement, as psql does', () => {
    const script = [
      'create or replace function f(x int) returns int language sql',
      'begin atomic',
      '  select case when x > 0 then 1 else 0 end;',
      '  select 2;',
      'end;',
      'select 3;',
    ].join('\n');
    const statements = splitSqlStatements(script);
    expect(statements.map((s) => s.line)).toEqual([1, 6]);
    expect(statements[0]!.text.endsWith('end')).toBe(true);
    expect(statements.map((s) => transactionControl(s.text))).toEqual([undefined, undefined]);
  });

  it('does not split inside parentheses, as psql does (rule actions)', () => {
    expect(splitSqlStatements('create rule r as on insert to t do also (insert into a values (1); insert into b values (2)); select 1').map((s) => s.text)).toEqual([
      'create rule r as on insert to t do also (insert into a values (1); insert into b values (2))',
      'select 1',
    ]);
  });

  it('reads identifiers as PostgreSQL does: é$a$ is no dollar quote, and a$e\'…\' is no E string', () => {
    expect(splitSqlStatements('select 1 as é$a$; commit; select 2 as é$a$').map((s) => transactionControl(s.text))).toEqual([undefined, 'COMMIT', undefined]);
    expect(splitSqlStatements("select a$e'\\'; commit; select '\\'").map((s) => transactionControl(s.text))).toEqual([undefined, 'COMMIT', undefined]);
    expect(splitSqlStatements("select e'it\\'s; commit'; select 2").map((s) => s.text)).toEqual(["select e'it\\'s; commit'", 'select 2']);
  });

  it('finds psql meta-commands outside strings, comments and bodies, with their lines', () => {
    const script = [
      '\\set ON_ERROR_STOP on',
      "select 'a \\i in a string', E'\\\\';",
      '  \\i other.sql',
      '-- \\i in a comment',
      "do $$ begin raise notice '\\\\'; end $$;",
      'select 1 \\gset',
    ].join('\n');
    expect(scanSqlScript(script).metaCommands).toEqual([
      { line: 1, text: '\\set ON_ERROR_STOP on' },
      { line: 3, text: '\\i other.sql' },
      { line: 6, text: '\\gset' },
    ]);
  });
});

describe('a migration holding transaction control', () => {
  let t: TestDb;
  let copy: MigrationsCopy;
  beforeEach(async () => {
    t = await openTestDb();
    copy = copyMigrations();
  });
  afterEach(async () => {
    await t?.close();
    copy?.remove();
  });

  it('is refused before anything runs, naming file, line and command; the files before it are not applied either', async () => {
    copy.add('0900_create_first', 'create table first_of_run (x int);\n', 'drop table first_of_run;\n');
    // The file of issue 12: it used to leave a and b behind, no ledger row, and a message saying "rolled back".
    copy.add('0901_create_a_and_b', '-- Why: a test.\ncreate table a (x int);\ncommit;\ncreate table b (x int);\nselect 1/0;\n', 'select 1;\n');
    const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
    expect(error.message).toMatch(/0901_create_a_and_b\.up\.sql:3: COMMIT would end the transaction the migration runs in/);
    expect(error.message).toMatch(/Nothing was run\.$/);
    expect(error.message).not.toMatch(/rolled back/);
    expect(error).toMatchObject({ line: 3 });
    expect(error.file).toMatch(/0901_create_a_and_b\.up\.sql$/);
    for (const table of ['first_of_run', 'a', 'b']) expect(await exists(t.db, table)).toBe(false);
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it('is refused for every kind of transaction control and psql meta-command, each named', async () => {
    const kinds: Array<[string, string]> = [
      ['begin;', 'BEGIN'],
      ['start transaction;', 'START TRANSACTION'],
      ['rollback;', 'ROLLBACK'],
      ['end;', 'END'],
      ['abort;', 'ABORT'],
      ['savepoint s;', 'SAVEPOINT'],
      ['release savepoint s;', 'RELEASE SAVEPOINT'],
      ["prepare transaction 'gid';", 'PREPARE TRANSACTION'],
      ["commit prepared 'gid';", 'COMMIT PREPARED'],
      ['\\i other.sql', 'psql meta-command \\i other.sql'],
      ['\\set ON_ERROR_STOP on', 'psql meta-command \\set ON_ERROR_STOP on'],
    ];
    const seen: string[] = [];
    for (const [line, named] of kinds) {
      copy.add('0900_create_x', `create table x (x int);\n${line}\n`, 'drop table x;\n');
      const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
      if (error.message.includes(`0900_create_x.up.sql:2: ${named}`) && error.message.endsWith('Nothing was run.')) seen.push(named);
    }
    expect(seen).toEqual(kinds.map(([, named]) => named));
    expect(await exists(t.db, 'x')).toBe(false);
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it('is refused when a psql-style BEGIN … COMMIT wraps the file, naming both lines', async () => {
    copy.add('0900_create_x', 'begin;\ncreate table x (x int);\ncommit;\n', 'drop table x;\n');
    const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
    expect(error.message).toMatch(/0900_create_x\.up\.sql:1: BEGIN would end.*; .*0900_create_x\.up\.sql:3: COMMIT would end/);
    expect(await exists(t.db, 'x')).toBe(false);
  });

  it('in its down file refuses the up: the down file recorded with it could never run', async () => {
    copy.add('0900_create_x', 'create table x (x int);\n', 'drop table x;\ncommit;\n');
    const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
    expect(error.message).toMatch(/0900_create_x\.down\.sql:2: COMMIT would end the transaction/);
    expect(error.file).toMatch(/0900_create_x\.down\.sql$/);
    expect(await exists(t.db, 'x')).toBe(false);
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it('in a down file written after its up ran refuses migrate down, reverting nothing', async () => {
    copy.add('0900_create_x', 'create table x (x int);\n');
    rmSync(join(copy.dir, '0900_create_x.down.sql'));
    await migrate(t.db, { migrationsDir: copy.dir });
    copy.add('0900_create_x', 'create table x (x int);\n', 'drop table x;\nrollback;\n');
    const error = await failure(migrateDown(t.db, {}, { migrationsDir: copy.dir }));
    expect(error.message).toMatch(/0900_create_x\.down\.sql:2: ROLLBACK would end the transaction.*Nothing was run\.$/);
    expect(await exists(t.db, 'x')).toBe(true);
    expect(await ledger(t.db)).toEqual([...ALL, '0900_create_x']);
  });

  it('is allowed where it is only mentioned: strings, comments, identifiers, DO and procedure bodies, BEGIN ATOMIC', async () => {
    copy.add(
      '0900_create_lookalikes',
      [
        "-- Why: a test. commit; rollback; begin;",
        "create table begin_log (commit int, note text default 'rollback; commit');",
        "insert into begin_log values (1, 'begin');",
        'create procedure lookalike_proc() language plpgsql as $$ begin commit; end $$;',
        'do $$ begin perform 1; end $$;',
        'create function lookalike_fn() returns int language sql',
        'begin atomic',
        '  select case when true then 1 else 0 end;',
        'end;',
        '/* end; */ select 1;',
      ].join('\n'),
      'drop function lookalike_fn();\ndrop procedure lookalike_proc();\ndrop table begin_log;\n',
    );
    expect(await migrate(t.db, { migrationsDir: copy.dir })).toEqual(['0900_create_lookalikes']);
    const { rows } = await sql<{ v: number }>`select lookalike_fn() as v`.execute(t.db.withoutPlugins());
    expect(rows).toEqual([{ v: 1 }]);
    expect(await migrateDown(t.db, {}, { migrationsDir: copy.dir })).toEqual(['0900_create_lookalikes']);
    expect(await exists(t.db, 'begin_log')).toBe(false);
  });

  it('inside a DO block fails when it runs and the migration is rolled back whole', async () => {
    copy.add('0900_create_x', 'create table x (x int);\ndo $$ begin commit; end $$;\n', 'drop table x;\n');
    const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
    expect(error).toMatchObject({ code: '2D000', line: 2 }); // invalid_transaction_termination
    expect(error.message).toContain('The migration was rolled back: no change and no ledger row.');
    expect(await exists(t.db, 'x')).toBe(false);
    expect(await ledger(t.db)).toEqual(ALL);
  });

  it('is refused in a -- migrate:no-transaction file too: its one statement is not transaction control', async () => {
    for (const [statement, named] of [['commit;', 'COMMIT'], ['begin;', 'BEGIN']] as const) {
      copy.add('0900_run_alone', `-- migrate:no-transaction\n${statement}\n`);
      const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
      expect(error.message).toContain(`0900_run_alone.up.sql:2: ${named} (a -- migrate:no-transaction file holds one statement that is not transaction control)`);
    }
    expect(await ledger(t.db)).toEqual(ALL);
  });
});

describe('a transaction ended by SQL the splitter cannot see', () => {
  let t: TestDb;
  let copy: MigrationsCopy;
  beforeEach(async () => {
    t = await openTestDb();
    copy = copyMigrations();
  });
  afterEach(async () => {
    await t?.close();
    copy?.remove();
  });

  // With standard_conforming_strings off, the server reads 'a\'x' as one string where the splitter
  // (which lexes with it on) sees 'a\' and a quote opening another that the final quote (in a
  // comment, to the server) closes: line 4 is one "statement" to the splitter and three commands to
  // the server, which pg sends as one simple query. PGlite runs one command per query and refuses it.
  const HIDDEN_COMMIT = [
    '-- Why: a test.',
    'create table before_commit (x int);',
    "select set_config('standard_conforming_strings', 'off', true);",
    "select 'a\\'x'; commit; create table after_commit (x int); -- ';",
    'create table never_run (x int);',
  ];

  it('is reported as such, naming the line: the changes may be partly applied, nothing after it ran, no ledger row', async () => {
    copy.add('0900_hide_commit', HIDDEN_COMMIT.join('\n'));
    const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
    if (onServer) {
      expect(error.message).toMatch(/0900_hide_commit\.up\.sql:4: after this statement the migration's transaction was no longer open \(it was committed\)/);
      expect(error.message).toContain('may be partly applied; nothing after it ran, and no ledger row was written');
      expect(error.message).not.toContain('rolled back: no change');
      expect(error.line).toBe(4);
      expect(await exists(t.db, 'before_commit')).toBe(true);
      expect(await exists(t.db, 'after_commit')).toBe(true);
    } else {
      expect(error.message).toContain('0900_hide_commit.up.sql:4: cannot insert multiple commands into a prepared statement');
      expect(error.message).toContain('The migration was rolled back: no change and no ledger row.');
      expect(await exists(t.db, 'before_commit')).toBe(false);
      expect(await exists(t.db, 'after_commit')).toBe(false);
    }
    expect(await exists(t.db, 'never_run')).toBe(false);
    expect(await ledger(t.db)).toEqual(ALL);
    // The session is usable and settings are back to normal: the next migrator runs.
    const { rows } = await sql<{ v: string }>`select current_setting('standard_conforming_strings') as v`.execute(t.db.withoutPlugins());
    expect(rows).toEqual([{ v: 'on' }]);
  });

  it('followed by a failure is not called a rollback: the message says the changes may be partly applied', async () => {
    copy.add('0900_hide_commit', HIDDEN_COMMIT.join('\n').replace('(x int); --', '(x int); select 1/0; --'));
    const error = await failure(migrate(t.db, { migrationsDir: copy.dir }));
    if (onServer) {
      expect(error.code).toBe('22012'); // division_by_zero
      expect(error.message).toMatch(/0900_hide_commit\.up\.sql:4: division by zero \(SQLSTATE 22012\)\. The migration's transaction had been committed/);
      expect(error.message).toContain("the file's changes may be partly applied, and no ledger row was written");
      expect(error.message).not.toContain('rolled back: no change');
      expect(await exists(t.db, 'before_commit')).toBe(true);
    } else {
      expect(error.message).toContain('The migration was rolled back: no change and no ledger row.');
      expect(await exists(t.db, 'before_commit')).toBe(false);
    }
    expect(await ledger(t.db)).toEqual(ALL);
  });
});
