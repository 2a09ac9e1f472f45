import { describe, expect, it } from 'vitest';
import { splitSqlStatements } from '../../src/db/sql-statements.ts';

describe('splitSqlStatements', () => {
  it('splits at top-level semicolons and reports each statement’s first line', () => {
    const script = '-- header\ncreate table a (x int);\n\n  insert into a values (1);\nselect 1';
    expect(splitSqlStatements(script)).toEqual([
      { text: 'create table a (x int)', line: 2 },
      { text: 'insert into a values (1)', line: 4 },
      { text: 'select 1', line: 5 },
    ]);
  });

  it('does not split inside strings, identifiers, dollar quotes or comments', () => {
    const script = [
      "insert into t values ('a;b', 'it''s; fine', E'back\\'slash;');",
      'select "odd;name" from t;',
      'create function f() returns int language plpgsql as $body$ begin return 1; end $body$;',
      'do $$ begin perform 1; end $$;',
      '/* a; /* nested; */ comment */ select 2; -- trailing; comment',
    ].join('\n');
    expect(splitSqlStatements(script).map((s) => s.line)).toEqual([1, 2, 3, 4, 5]);
    expect(splitSqlStatements(script)[2]!.text).toBe(
      'create function f() returns int language plpgsql as $body$ begin return 1; end $body$',
    );
  });

  it('drops statements that are only comments or whitespace', () => {
    expect(splitSqlStatements('-- nothing\n;\n/* still nothing */;\n')).toEqual([]);
  });

  it('does not take a positional parameter or identifier with $ for a dollar quote', () => {
    expect(splitSqlStatements('select $1, a$b from t; select 2').map((s) => s.text)).toEqual(['select $1, a$b from t', 'select 2']);
  });
});
