import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { readTextFile } from './text-file.ts';

/** What one CSV field stands for once the seed's conventions are applied. */
export type Resolved =
  /** Text to convert by the column's type; `via` names the reference it came from (`file:a.txt`, `env:KEY`). */
  | { kind: 'text'; text: string; via?: string }
  /** NULL; `warning` says why when it was not asked for literally (an unset env: variable). */
  | { kind: 'null'; warning?: string; via?: string }
  | { kind: 'error'; message: string };

/** Where a field comes from: the CSV file, how paths are shown, and the variables env: reads. */
export interface ReferenceContext {
  /** Absolute path of the CSV file; file: references are relative to its folder. */
  csvPath: string;
  /** A path as the user sees it (relative to the working directory when inside it). */
  display: (path: string) => string;
  env: Record<string, string | undefined>;
}

const FILE_REF = /^file:(\S(?:.*\S)?)$/;
const ENV_REF = /^env:([A-Za-z_][A-Za-z0-9_]*)$/;

/**
 * Resolves the seed conventions of one CSV field: `null` → NULL; `file:relative/path` → that file's
 * contents (strict UTF-8, at most 16 MiB, relative to the CSV's folder); `env:NAME` → the variable's value (unset or empty
 * → NULL and a warning). Anything else is the text itself.
 *
 * @example
 * resolveField('file:prompts/ada.txt', ctx) // { kind: 'text', text: 'You are Ada…', via: 'file:prompts/ada.txt' }
 */
export function resolveField(raw: string, ctx: ReferenceContext): Resolved {
  if (raw === 'null') return { kind: 'null' };
  const file = FILE_REF.exec(raw);
  if (file !== null) {
    const path = resolve(dirname(ctx.csvPath), file[1]!);
    const shown = ctx.display(path);
    try {
      if (statSync(path).isDirectory()) return { kind: 'error', message: `${raw}: ${shown} is a folder, not a file` };
      const content = readTextFile(path);
      if (!content.ok) return { kind: 'error', message: `${raw}: ${shown}:${content.line}: ${content.message}` };
      return { kind: 'text', text: content.text, via: raw };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${(error as Error).message})`;
      return { kind: 'error', message: `${raw}: ${shown} ${why}` };
    }
  }
  const env = ENV_REF.exec(raw);
  if (env !== null) {
    const name = env[1]!;
    const value = ctx.env[name];
    if (value === undefined || value === '') {
      return { kind: 'null', via: raw, warning: `environment variable ${name} is ${value === undefined ? 'not set' : 'empty'}` };
    }
    return { kind: 'text', text: value, via: raw };
  }
  return { kind: 'text', text: raw };
}
