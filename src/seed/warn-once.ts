/** Warnings already written in this process, by key. */
const written = new Set<string>();

/**
 * Writes `line` with `warn` unless a warning of the same `key` was written before in this process:
 * a service that seeds on every getDb() (or a test run that starts many) says it once.
 */
export function warnOnce(key: string, line: string, warn: (line: string) => void): void {
  if (written.has(key)) return;
  written.add(key);
  warn(line);
}
