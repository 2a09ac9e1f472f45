import { existsSync } from 'node:fs';
import type { DbConfig } from '../db/config.ts';
import { resolveTarget } from '../db/target.ts';

/** True for an embedded store whose directory does not exist yet (opening it would create it). */
export function embeddedStoreMissing(config: DbConfig): boolean {
  if (config.kind !== 'pglite') return false;
  const target = resolveTarget(config);
  return target.kind === 'pglite' && !target.storage.includes('://') && !existsSync(target.storage);
}
