import { join } from 'node:path';
import { displayPath } from '../db/display-path.ts';
import { entryExists, readDataFile, type DataFolder } from './data-folder.ts';
import type { SeedProblem } from './errors.ts';

/** The file of a data folder that declares the environment variables its `env:` fields may read. */
export const ENV_ALLOWLIST_FILE = 'env-allowlist.txt';

/** The variables a data folder declares, and where that declaration is (as the user sees it). */
export interface EnvAllowlist {
  names: ReadonlySet<string>;
  display: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Reads `env-allowlist.txt` of the data folder: one variable name per line; blank lines and
 * everything after `#` are ignored. A line that is not a variable name is a problem (file:line).
 * No file declares nothing: every `env:` field is then refused.
 *
 * @example
 * // data/env-allowlist.txt
 * // GEMINI_API_KEY   # Google's key, for providers.csv
 */
export function readEnvAllowlist(folder: DataFolder, problems: SeedProblem[]): EnvAllowlist {
  const path = join(folder.path, ENV_ALLOWLIST_FILE);
  const display = displayPath(path);
  const names = new Set<string>();
  if (!entryExists(path)) return { names, display };
  const content = readDataFile(folder, path);
  if (!content.ok) {
    problems.push({ file: display, line: content.line ?? 1, column: '', message: content.message });
    return { names, display };
  }
  content.text.split(/\r\n?|\n/).forEach((text, index) => {
    const name = text.replace(/#.*/, '').trim();
    if (name === '') return;
    if (NAME.test(name)) names.add(name);
    else problems.push({ file: display, line: index + 1, column: '', message: `not an environment variable name: ${JSON.stringify(name)} (one name per line, # starts a comment)` });
  });
  return { names, display };
}
