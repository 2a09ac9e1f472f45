import { relative, resolve } from 'node:path';

/** A path as the user sees it in messages: relative to the working directory when inside it. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), resolve(path));
  return rel === '' || rel.startsWith('..') ? path : rel;
}
