import { lstatSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { displayPath } from '../db/display-path.ts';
import { fileKind, readTextFile } from './text-file.ts';

/** The folder a seed run reads: every file it opens (CSV files, `file:` references, the env allowlist) must be inside it. */
export interface DataFolder {
  /** Absolute path, as given. */
  path: string;
  /** The same folder with every symlink resolved: what "inside" is checked against. */
  real: string;
}

/** The data folder `dir` (absolute and resolved). The caller has checked that it exists. */
export function dataFolder(dir: string): DataFolder {
  const path = resolve(dir);
  return { path, real: realpathSync(path) };
}

/** Where a path inside the data folder really is, or why it may not be read. */
export type Located = { ok: true; real: string } | { ok: false; message: string };

/**
 * Confines `path` (absolute, or relative to the folder) to the data folder: after resolving every
 * symlink it must name a regular file inside the folder. Refused: absolute references (when
 * `reference` is true: a `file:` field must be relative), `..` that climbs out, a symlink (anywhere
 * on the path) that leads out, folders, FIFOs, devices and sockets — a FIFO is refused by its
 * type, without opening it. Messages name paths, never contents.
 */
export function locate(folder: DataFolder, path: string, reference = false): Located {
  if (reference && isAbsolute(path)) {
    return { ok: false, message: 'an absolute path: a file: reference is relative to the data folder and stays inside it' };
  }
  const target = resolve(folder.path, path);
  let real: string;
  try {
    real = realpathSync(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !insideFolder(folder, target)) return { ok: false, message: outside(folder, target) };
    return { ok: false, message: `${displayPath(target)} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${(error as Error).message})`}` };
  }
  if (!insideFolder(folder, real)) {
    const via = real === target ? '' : `${displayPath(target)} is a symlink to ${displayPath(real)}, and `;
    return { ok: false, message: `${via}${outside(folder, real)}` };
  }
  const stats = statSync(real);
  if (!stats.isFile()) return { ok: false, message: `${displayPath(target)} is ${fileKind(stats)}, not a regular file: the seed reads only regular files` };
  return { ok: true, real };
}

/**
 * Reads a file of the data folder as strict UTF-8 once {@link locate} allows it (see readTextFile:
 * the type is checked again on the open file, and the size cap applies while reading).
 */
export function readDataFile(folder: DataFolder, path: string, reference = false): DataFile {
  const located = locate(folder, path, reference);
  if (!located.ok) return { ok: false, line: undefined, message: located.message };
  try {
    return readTextFile(located.real);
  } catch (error) {
    return { ok: false, line: undefined, message: `${displayPath(resolve(folder.path, path))} cannot be read (${(error as Error).message})` };
  }
}

/** A data folder file's text, or why not: `line` is set when the problem is in its content (the message then names no path), else the message names the file. */
export type DataFile = { ok: true; text: string } | { ok: false; line: number | undefined; message: string };

/** True when `path` exists as an entry (any kind, a dangling symlink included). */
export function entryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function insideFolder(folder: DataFolder, path: string): boolean {
  for (const root of new Set([folder.real, folder.path])) {
    const rel = relative(root, path);
    if (rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel)) return true;
  }
  return false;
}

function outside(folder: DataFolder, path: string): string {
  return `${displayPath(path)} is outside the data folder ${displayPath(folder.path)}: the seed reads only files inside it`;
}
