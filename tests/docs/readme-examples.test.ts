/**
 * The README's examples run as written: the ```ts blocks of "Using it from a service" and "The
 * API" are read from README.md, their types stripped (node:module stripTypeScriptTypes), and run
 * in order against a migrated and seeded database, with the package root as `'database'`. A line
 * whose comment starts with a value states what the line gives, and is checked:
 *
 *   usage.cost;                                  // '0.000584': prose after the value is ignored
 *   const owner = await authenticateApiKey(...); // { tenantId, userId, roleId }   (exactly these keys)
 *
 * Only `getDb()` is replaced, by the test database: the rest is the package as a service imports
 * it. If the README drifts from what the package does, this test fails.
 */
import { readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as database from '../../src/index.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** A ```ts block of the README, with the README line number of its first code line. */
interface Block {
  section: string;
  line: number;
  code: string;
}

/** What a commented line of a block says it gives. */
interface Claim {
  /** README line number. */
  line: number;
  /** The expression (or variable) whose value is claimed. */
  expr: string;
  /** The value as written in the comment. */
  source: string;
  /** A value to compare with toEqual, or the exact keys of an object (`{ a, b }` shorthand). */
  expected: { value: unknown } | { keys: string[] };
}

/** The ```ts blocks of the `## title` section. */
function blocksOf(title: string): Block[] {
  const lines = README.split('\n');
  const start = lines.indexOf(`## ${title}`);
  if (start < 0) throw new Error(`README.md has no section "## ${title}"`);
  const blocks: Block[] = [];
  for (let i = start + 1; i < lines.length && !lines[i]!.startsWith('## '); i++) {
    if (lines[i] !== '```ts') continue;
    const first = i + 1;
    let end = first;
    while (end < lines.length && lines[end] !== '```') end++;
    blocks.push({ section: title, line: first + 1, code: lines.slice(first, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** The JS value at the start of `text` (a string, number, keyword, or balanced [...] / {...}), as source. */
function leadingValue(text: string): string | undefined {
  const keyword = /^(null|true|false|undefined|-?\d+(\.\d+)?)\b/.exec(text);
  if (keyword) return keyword[0];
  const open = text[0];
  if (open === "'" || open === '"') {
    const close = text.indexOf(open, 1);
    return close > 0 ? text.slice(0, close + 1) : undefined;
  }
  if (open !== '[' && open !== '{') return undefined;
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) return text.slice(0, i + 1);
    }
  }
  return undefined;
}

/**
 * The block as runnable JavaScript: imports from 'database' read from the package object, each
 * claimed line wrapped so its value is recorded (`__claim(n, value)`), types stripped.
 */
function prepare(block: Block): { js: string; claims: Claim[]; declares: Set<string> } {
  const claims: Claim[] = [];
  const declares = new Set<string>();
  const lines = block.code.split('\n').map((text, index) => {
    const line = block.line + index;
    const imported = /^import \{([^}]*)\} from 'database';$/.exec(text);
    if (imported) return `const {${imported[1]}} = __database;`;
    for (const m of text.matchAll(/\b(?:const|let)\s+(\w+)\s*=/g)) declares.add(m[1]!);
    const commented = /^(\s*)(.*?;)\s+\/\/\s(.*)$/.exec(text);
    if (!commented) return text;
    const [, indent, statement, comment] = commented as unknown as [string, string, string, string];
    const source = leadingValue(comment);
    if (source === undefined) return text;
    const shorthand = /^\{\s*\w+(\s*,\s*\w+)*\s*\}$/.test(source);
    const expected = shorthand
      ? { keys: source.slice(1, -1).split(',').map((k) => k.trim()) }
      : { value: new Function(`return (${source});`)() as unknown };
    const declaration = /^(?:const|let)\s+(\w+)\s*=.*;$/.exec(statement);
    if (declaration) {
      claims.push({ line, expr: declaration[1]!, source, expected });
      return `${text}\n${indent}__claim(${line}, ${declaration[1]});`;
    }
    if (/^(?:const|let|var)\b/.test(statement)) return text;
    claims.push({ line, expr: statement.slice(0, -1), source, expected });
    return `${indent}__claim(${line}, ${statement.slice(0, -1)});`;
  });
  return { js: stripTypeScriptTypes(lines.join('\n'), { mode: 'strip' }), claims, declares };
}

const AsyncFunction = (async () => {}).constructor as new (...args: string[]) => (...values: unknown[]) => Promise<void>;

let t: TestDb;
let tenantId: string;

beforeAll(async () => {
  t = await openTestDb();
  await database.seed(t.db);
  tenantId = (await database.createTenant(t.db, { name: 'Readme', slug: 'readme' })).id;
});
afterAll(() => t?.close());

describe('README.md examples', () => {
  const blocks = [...blocksOf('Using it from a service'), ...blocksOf('The API')];

  it('has ts examples in both sections, with values to check', () => {
    expect(blocks.map((b) => b.section)).toEqual(['Using it from a service', 'The API', 'The API', 'The API']);
    const claimed = blocks.flatMap((b) => prepare(b).claims.map((c) => c.expr));
    expect(claimed).toEqual(expect.arrayContaining(['rows', 'user.budget', 'owner', 'usage.cost', 'toppedUp.remaining', 'await authenticateApiKey(db, apiKey)', 'tenant.settings']));
  });

  it('run as written against the seeded database and give the values their comments show', async () => {
    // The package as a service imports it; only getDb() (configured from the environment) gives the test database.
    const pkg = { ...database, getDb: async () => t.db };
    const seen = new Map<number, unknown>();
    const claims: Claim[] = [];
    for (const block of blocks) {
      const { js, claims: blockClaims, declares } = prepare(block);
      claims.push(...blockClaims);
      // What the examples take from their surroundings: the database (unless a block opens it) and a tenant.
      const names = ['__database', '__claim', 'tenantId', ...(declares.has('db') ? [] : ['db'])];
      const values = [pkg, (line: number, value: unknown) => seen.set(line, value), tenantId, ...(declares.has('db') ? [] : [t.db])];
      const run = new AsyncFunction(...names, js);
      try {
        await run(...values);
      } catch (error) {
        throw new Error(`README.md:${block.line} (${block.section}): the example threw ${String(error)}`, { cause: error });
      }
    }
    for (const claim of claims) {
      const where = `README.md:${claim.line}: ${claim.expr} // ${claim.source}`;
      // Soft: every claim that does not hold is reported, not only the first.
      expect.soft(seen.has(claim.line), `${where} never ran`).toBe(true);
      const actual = seen.get(claim.line);
      if ('keys' in claim.expected) {
        expect.soft(Object.keys(actual as object).sort(), where).toEqual([...claim.expected.keys].sort());
        for (const key of claim.expected.keys) expect.soft((actual as Record<string, unknown>)[key], `${where}: ${key}`).toBeDefined();
      } else {
        expect.soft(actual, where).toEqual(claim.expected.value);
      }
    }
  });
});
