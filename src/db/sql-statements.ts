/** One statement of a SQL file: its text (without the final `;`) and the line it starts on. */
export interface SqlStatement {
  text: string;
  /** 1-based line in the file of the statement's first character (comments before it excluded). */
  line: number;
}

/** A psql meta-command found in a script: a backslash outside strings, comments and dollar bodies. */
export interface PsqlMetaCommand {
  /** From the backslash to the end of its line, e.g. `\i other.sql`. */
  text: string;
  line: number;
}

/** A script as {@link scanSqlScript} reads it. */
export interface SqlScript {
  statements: SqlStatement[];
  /** psql meta-commands (`\i`, `\set`, …): not SQL, the server never sees them as psql would run them. */
  metaCommands: PsqlMetaCommand[];
}

/**
 * Splits a SQL script into statements at top-level semicolons, as psql would: semicolons inside
 * '…' and E'…' strings, "…" identifiers, $tag$…$tag$ bodies, -- comments and (nested) /* … *\/
 * comments do not split. Statements that hold only comments and whitespace are dropped.
 */
export function splitSqlStatements(script: string): SqlStatement[] {
  return scanSqlScript(script).statements;
}

// PostgreSQL's lexer (scan.l): ident_start [A-Za-z\200-\377_], ident_cont adds [0-9$]. Any
// non-ASCII character counts as a letter there, so `é$a$` is one identifier, not é and a dollar quote.
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CONT = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

/**
 * Reads a script the way psql does with standard_conforming_strings on (the default): statements
 * end at a semicolon outside strings, quoted identifiers, dollar bodies, comments and parentheses,
 * and outside the BEGIN … END body of `CREATE [OR REPLACE] FUNCTION|PROCEDURE … BEGIN ATOMIC`
 * (psql's own heuristic, CASE … END counted inside it). A backslash outside strings, comments and
 * dollar bodies starts a psql meta-command, which runs to the end of its line.
 */
export function scanSqlScript(script: string): SqlScript {
  const statements: SqlStatement[] = [];
  const metaCommands: PsqlMetaCommand[] = [];
  let start = -1; // index of the current statement's first significant character
  let words: string[] = []; // the statement's first words, lowercased (psql looks at four)
  let parenDepth = 0;
  let beginDepth = 0;
  let i = 0;
  const n = script.length;

  const flush = (end: number) => {
    if (start >= 0) {
      statements.push({ text: script.slice(start, end).trim(), line: lineAt(script, start) });
    }
    start = -1;
    words = [];
    parenDepth = 0;
    beginDepth = 0;
  };
  const mark = () => {
    if (start < 0) start = i;
  };
  // psql (psqlscan.l): BEGIN … END blocks count only in CREATE [OR REPLACE] FUNCTION|PROCEDURE.
  const inRoutineDefinition = () => {
    const [w0, w1, w2, w3] = words;
    const routine = (w: string | undefined) => w === 'function' || w === 'procedure';
    return w0 === 'create' && (routine(w1) || (w1 === 'or' && w2 === 'replace' && routine(w3)));
  };

  while (i < n) {
    const c = script[i]!;
    const next = script[i + 1];
    if (c === '-' && next === '-') {
      const eol = script.indexOf('\n', i);
      i = eol < 0 ? n : eol + 1;
    } else if (c === '/' && next === '*') {
      i = skipBlockComment(script, i);
    } else if (c === "'") {
      mark();
      i = skipQuoted(script, i, "'", false);
    } else if (c === '"') {
      mark();
      i = skipQuoted(script, i, '"', false);
    } else if (c === '$') {
      mark();
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(script);
      if (tag !== null) {
        const close = script.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? n : close + tag[0].length;
      } else {
        i += 1; // $1, or a stray $
      }
    } else if (IDENT_START.test(c)) {
      mark();
      let end = i + 1;
      while (end < n && IDENT_CONT.test(script[end]!)) end += 1;
      const word = script.slice(i, end).toLowerCase();
      if (word === 'e' && script[end] === "'") {
        i = skipQuoted(script, end, "'", true); // E'…': backslash escapes
        continue;
      }
      if (words.length < 4) words.push(word);
      if (parenDepth === 0 && inRoutineDefinition()) {
        if (word === 'begin') beginDepth += 1;
        else if (word === 'case' && beginDepth > 0) beginDepth += 1;
        else if (word === 'end' && beginDepth > 0) beginDepth -= 1;
      }
      i = end;
    } else if (c === '\\') {
      const eol = script.indexOf('\n', i);
      const end = eol < 0 ? n : eol;
      metaCommands.push({ text: script.slice(i, end).trim(), line: lineAt(script, i) });
      i = end;
    } else if (c === ';' && parenDepth === 0 && beginDepth === 0) {
      flush(i);
      i += 1;
    } else {
      if (c === '(') parenDepth += 1;
      else if (c === ')' && parenDepth > 0) parenDepth -= 1;
      if (!/\s/.test(c)) mark();
      i += 1;
    }
  }
  flush(n);
  return { statements, metaCommands };
}

/**
 * The transaction-control command a statement is, in capitals (`BEGIN`, `START TRANSACTION`,
 * `COMMIT`, `COMMIT PREPARED`, `END`, `ROLLBACK`, `ROLLBACK TO SAVEPOINT`, `ROLLBACK PREPARED`,
 * `ABORT`, `SAVEPOINT`, `RELEASE SAVEPOINT`, `PREPARE TRANSACTION`), or undefined when it is none.
 * Only the statement itself counts: `select 'commit'` and a DO or function body holding COMMIT are none.
 */
export function transactionControl(statement: string): string | undefined {
  const [first, second, third] = leadingTokens(statement, 3);
  switch (first) {
    case 'begin':
    case 'end':
    case 'abort':
    case 'savepoint':
      return first.toUpperCase();
    case 'start':
      return second === 'transaction' ? 'START TRANSACTION' : undefined;
    case 'commit':
      return second === 'prepared' ? 'COMMIT PREPARED' : 'COMMIT';
    case 'rollback':
      return second === 'prepared' ? 'ROLLBACK PREPARED' : second === 'to' ? 'ROLLBACK TO SAVEPOINT' : 'ROLLBACK';
    case 'release':
      return 'RELEASE SAVEPOINT';
    case 'prepare':
      // PREPARE TRANSACTION 'gid' ends the transaction; PREPARE transaction [(types)] AS … is a
      // prepared statement that happens to be called "transaction".
      return second === 'transaction' && third !== 'as' && third !== '(' ? 'PREPARE TRANSACTION' : undefined;
    default:
      return undefined;
  }
}

/** The first `count` tokens of a statement, comments skipped: words lowercased, anything else one character. */
function leadingTokens(statement: string, count: number): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < statement.length && tokens.length < count) {
    const c = statement[i]!;
    if (/\s/.test(c)) {
      i += 1;
    } else if (c === '-' && statement[i + 1] === '-') {
      const eol = statement.indexOf('\n', i);
      i = eol < 0 ? statement.length : eol + 1;
    } else if (c === '/' && statement[i + 1] === '*') {
      i = skipBlockComment(statement, i);
    } else if (IDENT_START.test(c)) {
      let end = i + 1;
      while (end < statement.length && IDENT_CONT.test(statement[end]!)) end += 1;
      tokens.push(statement.slice(i, end).toLowerCase());
      i = end;
    } else {
      tokens.push(c);
      i += 1;
    }
  }
  return tokens;
}

function skipQuoted(script: string, from: number, quote: string, backslashEscapes: boolean): number {
  let i = from + 1;
  while (i < script.length) {
    const c = script[i];
    if (backslashEscapes && c === '\\') {
      i += 2;
    } else if (c === quote) {
      if (script[i + 1] === quote) i += 2;
      else return i + 1;
    } else {
      i += 1;
    }
  }
  return script.length;
}

function skipBlockComment(script: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < script.length) {
    if (script[i] === '/' && script[i + 1] === '*') {
      depth += 1;
      i += 2;
    } else if (script[i] === '*' && script[i + 1] === '/') {
      depth -= 1;
      i += 2;
      if (depth === 0) return i;
    } else {
      i += 1;
    }
  }
  return script.length;
}

function lineAt(script: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i += 1) if (script.charCodeAt(i) === 10) line += 1;
  return line;
}
