import { resolve } from 'node:path';
import { displayPath } from '../db/display-path.ts';
import { readDataFile, type DataFolder } from './data-folder.ts';
import type { EnvAllowlist } from './env-allowlist.ts';

/** What one CSV field stands for once the seed's conventions are applied. */
export type Resolved =
  /** Text to convert by the column's type; `via` names the reference it came from (`file:a.txt`, `env:KEY`). */
  | { kind: 'text'; text: string; via?: string; secret?: boolean }
  /** NULL, asked for literally. */
  | { kind: 'null' }
  /** An `env:` variable that is unset or empty: no value (a stored one is kept; a new row gets NULL). */
  | { kind: 'absent'; via: string; name: string; why: 'not set' | 'empty' }
  | { kind: 'error'; message: string };

/** Where a field comes from: the data folder, the variables env: may read, and their values. */
export interface ReferenceContext {
  /** file: references are relative to it and confined to it. */
  folder: DataFolder;
  allowlist: EnvAllowlist;
  env: Record<string, string | undefined>;
}

const FILE_REF = /^file:(\S(?:.*\S)?)$/;
const ENV_REF = /^env:([A-Za-z_][A-Za-z0-9_]*)$/;

/**
 * Resolves the seed conventions of one CSV field: `null` → NULL; `file:relative/path` → that file's
 * contents (a regular file inside the data folder once symlinks are resolved, strict UTF-8, at
 * most 16 MiB); `env:NAME` → the variable's value, for a variable the folder's env-allowlist.txt
 * declares (unset or empty → absent); anything else is the text itself. A value from `env:` is
 * marked secret: messages never show it.
 *
 * @example
 * resolveField('file:prompts/ada.txt', ctx) // { kind: 'text', text: 'You are Ada…', via: 'file:prompts/ada.txt' }
 */
export function resolveField(raw: string, ctx: ReferenceContext): Resolved {
  if (raw === 'null') return { kind: 'null' };
  const file = FILE_REF.exec(raw);
  if (file !== null) {
    const content = readDataFile(ctx.folder, file[1]!, true);
    if (content.ok) return { kind: 'text', text: content.text, via: raw };
    const where = content.line === undefined ? '' : `${displayPath(resolve(ctx.folder.path, file[1]!))}:${content.line}: `;
    return { kind: 'error', message: `${raw}: ${where}${content.message}` };
  }
  const env = ENV_REF.exec(raw);
  if (env !== null) {
    const name = env[1]!;
    if (!ctx.allowlist.names.has(name)) {
      return { kind: 'error', message: `${raw}: ${name} is not declared in ${ctx.allowlist.display}, the variables env: fields may read` };
    }
    const value = ctx.env[name];
    if (value === undefined || value === '') return { kind: 'absent', via: raw, name, why: value === undefined ? 'not set' : 'empty' };
    return { kind: 'text', text: value, via: raw, secret: true };
  }
  return { kind: 'text', text: raw };
}
