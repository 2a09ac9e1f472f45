import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

/** Every .ts file under `dir`. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** The relative modules a file imports or re-exports, statically or with import(), resolved. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1] ?? m[2]!);
  return specifiers.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s));
}

/** Every src file reachable from `roots` through relative imports, with the chain that reaches it. */
function reachable(roots: string[]): Map<string, string[]> {
  const seen = new Map<string, string[]>(roots.map((r) => [r, [r]]));
  const queue = [...roots];
  while (queue.length > 0) {
    const file = queue.shift()!;
    for (const next of importsOf(file)) {
      if (seen.has(next)) continue;
      seen.set(next, [...seen.get(file)!, next]);
      queue.push(next);
    }
  }
  return seen;
}

function violations(layer: string, forbidden: string[]): string[] {
  const found: string[] = [];
  for (const [file, chain] of reachable(sources(join(SRC, layer)))) {
    const rel = relative(SRC, file);
    if (forbidden.some((f) => rel.startsWith(`${f}/`))) found.push(chain.map((f) => relative(SRC, f)).join(' → '));
  }
  return found;
}

describe('layering of src/', () => {
  it('finds the imports it checks (the walk is not vacuous)', () => {
    const fromLifecycle = [...reachable(sources(join(SRC, 'lifecycle'))).keys()].map((f) => relative(SRC, f));
    expect(fromLifecycle).toEqual(expect.arrayContaining(['seed/seed.ts', 'db/migrator.ts', 'db/create-db.ts']));
  });

  it('src/db imports nothing of src/seed, src/lifecycle or src/cli, not even through another module', () => {
    expect(violations('db', ['seed', 'lifecycle', 'cli'])).toEqual([]);
  });

  it('src/seed imports nothing of src/lifecycle or src/cli', () => {
    expect(violations('seed', ['lifecycle', 'cli'])).toEqual([]);
  });

  it('src/studio (database studio) starts nothing: no lifecycle, no seed, no CLI; and only the CLI imports it', () => {
    expect(violations('studio', ['lifecycle', 'seed', 'cli'])).toEqual([]);
    for (const dir of ['db', 'queries', 'seed', 'lifecycle']) expect(violations(dir, ['studio'])).toEqual([]);
  });
});
