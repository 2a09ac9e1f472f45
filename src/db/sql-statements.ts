/** One statement of a SQL file: its text (without the final `;`) and the line it starts on. */
export interface SqlStatement {
  text: string;
  /** 1-based line in the file of the statement's first character (comments before it excluded). */
  line: number;
}

/**
 * Splits a SQL script into statements at top-level semicolons, as psql would: semicolons inside
 * '…' and E'…' strings, "…" identifiers, $tag$…$tag$ bodies, -- comments and (nested) /* … *\/
 * comments do not split. Statements that hold only comments and whitespace are dropped.
 */
export function splitSqlStatements(script: string): SqlStatement[] {
  const statements: SqlStatement[] = [];
  let start = -1; // index of the current statement's first significant character
  let i = 0;
  const n = script.length;

  const flush = (end: number) => {
    if (start >= 0) {
      statements.push({ text: script.slice(start, end).trim(), line: lineAt(script, start) });
    }
    start = -1;
  };
  const mark = () => {
    if (start < 0) start = i;
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
      const escapes = i > 0 && /[eE]/.test(script[i - 1]!) && !/\w/.test(script[i - 2] ?? '');
      i = skipQuoted(script, i, "'", escapes);
    } else if (c === '"') {
      mark();
      i = skipQuoted(script, i, '"', false);
    } else if (c === '$') {
      mark();
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(script.slice(i));
      if (tag !== null && !/[\w$]/.test(script[i - 1] ?? '')) {
        const close = script.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? n : close + tag[0].length;
      } else {
        i += 1;
      }
    } else if (c === ';') {
      flush(i);
      i += 1;
    } else {
      if (!/\s/.test(c)) mark();
      i += 1;
    }
  }
  flush(n);
  return statements;
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
