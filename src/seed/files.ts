import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { displayPath } from '../db/display-path.ts';
import { SeedError, type SeedProblem } from './errors.ts';

/** The package's own seed data: `data/` at the package root. */
export const DEFAULT_DATA_DIR = fileURLToPath(new URL('../../data', import.meta.url));

/** A seed file and the table it loads. */
export interface SeedFile {
  /** File name within the data folder, e.g. `role-policies.csv`. */
  name: string;
  table: string;
}

/** The seed files, in foreign-key order (a file only references tables loaded before it). */
export const SEED_FILES: readonly SeedFile[] = [
  { name: 'roles.csv', table: 'roles' },
  { name: 'policies.csv', table: 'policies' },
  { name: 'role-policies.csv', table: 'role_policies' },
  { name: 'providers.csv', table: 'providers' },
  { name: 'models.csv', table: 'models' },
  { name: 'prompts.csv', table: 'prompts' },
  { name: 'tools.csv', table: 'tools' },
  { name: 'agents.csv', table: 'agents' },
  { name: 'agent-tools.csv', table: 'agent_tools' },
];

/** A seed file found in a data folder. */
export interface FoundSeedFile extends SeedFile {
  /** Absolute path. */
  path: string;
  /** The path as the user sees it (relative to the working directory when inside it). */
  display: string;
}

/**
 * The seed files present in `dir`, in load order, and the names of those absent (they are
 * skipped). A `.csv` file that is not a seed file is a problem (a misspelt name would otherwise be
 * skipped without a word); a missing folder, or one without any seed file, is a SeedError.
 */
export function findSeedFiles(dir: string): { found: FoundSeedFile[]; absent: string[]; problems: SeedProblem[] } {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new SeedError([], `seed data folder ${displayPath(root)} does not exist`);
  }
  const entries = new Set(readdirSync(root));
  const known = new Set(SEED_FILES.map((f) => f.name));
  const problems: SeedProblem[] = [...entries]
    .filter((entry) => entry.toLowerCase().endsWith('.csv') && !known.has(entry))
    .sort()
    .map((entry) => ({
      file: displayPath(join(root, entry)),
      line: 1,
      column: '',
      message: `not a seed file: the seed loads ${SEED_FILES.map((f) => f.name).join(', ')}`,
    }));
  const found = SEED_FILES.filter((f) => entries.has(f.name)).map((f) => {
    const path = join(root, f.name);
    return { ...f, path, display: displayPath(path) };
  });
  if (found.length === 0 && problems.length === 0) {
    throw new SeedError([], `seed data folder ${displayPath(root)} holds none of the seed files (${SEED_FILES.map((f) => f.name).join(', ')})`);
  }
  return { found, absent: SEED_FILES.filter((f) => !entries.has(f.name)).map((f) => f.name), problems };
}
