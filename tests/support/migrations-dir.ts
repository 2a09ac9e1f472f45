import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MIGRATIONS_DIR } from '../../src/db/migrator.ts';

/** A temporary copy of the package's migrations, to add, edit or delete files in. */
export interface MigrationsCopy {
  dir: string;
  /** Writes `migrations/NAME.up.sql` and `.down.sql` into the copy. */
  add(name: string, up: string, down?: string): void;
  remove(): void;
}

export function copyMigrations(): MigrationsCopy {
  const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
  cpSync(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true });
  return {
    dir,
    add(name, up, down = `-- Why: reverses ${name}.\nselect 1;\n`) {
      writeFileSync(join(dir, `${name}.up.sql`), up);
      writeFileSync(join(dir, `${name}.down.sql`), down);
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
