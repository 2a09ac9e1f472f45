/**
 * `database tenant export | import | delete` as an operator runs them (node src/cli/database.ts, in
 * a child process configured only by its environment), on an embedded store or a server database.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.ts';
import { migrate } from '../../src/db/migrator.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { describeTarget } from '../../src/db/target.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { createTenant } from '../../src/queries/tenants.ts';
import { createUser } from '../../src/queries/users.ts';
import { insertCatalog } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npx database ARGS…` with only `env` configuring the database; stdin is not a terminal. */
function database(args: string[]): Promise<Run> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(PG[A-Z]+|DATABASE_URL|TEST_DATABASE_URL|DB_[A-Z_]+|TEST_API_KEY|VITEST.*|NODE_ENV)$/.test(name)),
  );
  return new Promise((done, failed) => {
    const child = spawn(NODE, ['src/cli/database.ts', ...args], { cwd: ROOT, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', failed);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

let server: TestDb | undefined;
let work: string;
let env: Record<string, string>;
let target: string;
let tenantId: string;

/** Runs `fn` on the database in this process (PGlite: only while no child has it open). */
async function use<T>(fn: (db: Kysely<DB>) => Promise<T>): Promise<T> {
  const db = server !== undefined ? createDb(server.config) : createDb({ kind: 'pglite', storage: join(work, 'pglite') });
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

const users = () => use(async (db) => (await db.selectFrom('users').select('email').where('tenantId', '=', tenantId).orderBy('email').execute()).map((u) => u.email));

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'tenant-cli-'));
  if (onServer) {
    server = await openTestDb();
    env = { DATABASE_URL: server.url! };
    target = describeTarget(server.config);
  } else {
    env = { DB_STORAGE: join(work, 'pglite') };
    target = `embedded ${join(work, 'pglite')}`;
    await use((db) => migrate(db));
  }
  tenantId = await use(async (db) => {
    const { roleId, modelId } = await insertCatalog(db);
    const tenant = await createTenant(db, { name: 'Acme', slug: 'acme-cli' });
    const agent = await db.insertInto('agents').values({ tenantId: tenant.id, modelId, name: 'Helper' }).returning('id').executeTakeFirstOrThrow();
    await withTenant(db, tenant.id, async (tx) => {
      const { user } = await createUser(tx, { email: 'ada@acme.example', roleId });
      await createUser(tx, { email: 'bob@acme.example', roleId });
      await createConversation(tx, { userId: user.id, agentId: agent.id });
    });
    return tenant.id;
  });
});
afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('database tenant', () => {
  it('export, delete (asks; --yes without a terminal), import: the tenant comes back', async () => {
    const dir = join(work, 'acme-export');
    const exported = await database(['tenant', 'export', tenantId, dir]);
    expect(exported, exported.stderr).toMatchObject({ code: 0, stderr: '' });
    const lines = exported.stdout.split('\n');
    expect(lines[0]).toBe(target);
    expect(lines).toContain('exported users: 2 rows');
    expect(lines.at(-2)).toMatch(new RegExp(`^exported tenant acme-cli \\(${tenantId}\\): \\d+ rows in \\d+ files to ${dir}$`));
    expect(readdirSync(dir)).toContain('manifest.json');

    const refused = await database(['tenant', 'delete', tenantId]);
    expect(refused.code).toBe(1);
    expect(refused.stdout.split('\n')[0]).toBe(target);
    expect(refused.stderr).toContain(`would delete every row of tenant acme-cli (Acme, ${tenantId}) on ${target}`);
    expect(refused.stderr).toContain('refusing without a terminal to confirm: nothing was deleted. Add --yes');
    expect(await users()).toEqual(['ada@acme.example', 'bob@acme.example']);

    const deleted = await database(['tenant', 'delete', tenantId, '--yes', '--batch-size', '1']);
    expect(deleted, deleted.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(deleted.stdout).toMatch(new RegExp(`deleted tenant acme-cli \\(${tenantId}\\): \\d+ rows \\(.*users 2.*\\)`));
    expect(await users()).toEqual([]);
    const again = await database(['tenant', 'delete', tenantId, '--yes']);
    expect(again).toMatchObject({ code: 0 });
    expect(again.stdout).toContain(`tenant ${tenantId} does not exist on ${target}: nothing to delete`);

    const imported = await database(['tenant', 'import', dir]);
    expect(imported, imported.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(imported.stdout).toMatch(new RegExp(`imported tenant acme-cli \\(${tenantId}\\): \\d+ rows`));
    expect(await users()).toEqual(['ada@acme.example', 'bob@acme.example']);

    const twice = await database(['tenant', 'import', dir]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(new RegExp(`^tenant: tenant ${tenantId} exists in this database already`));
  });

  it('exits 2 with the usage for a bad command line, touching nothing; --help on every form', async () => {
    const dir = join(work, 'never-written');
    for (const args of [['tenant'], ['tenant', 'move'], ['tenant', 'export', tenantId], ['tenant', 'export', 'acme', dir], ['tenant', 'delete'], ['tenant', 'import', dir, 'extra'], ['tenant', 'export', tenantId, dir, '--yes'], ['tenant', 'delete', tenantId, '--batch-size', '0']]) {
      const run = await database(args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/usage: database tenant/);
    }
    expect(existsSync(dir)).toBe(false);
    for (const form of [[], ['export'], ['import'], ['delete']]) {
      const help = await database(['tenant', ...form, '--help']);
      expect(help, form.join(' ')).toMatchObject({ code: 0, stderr: '' });
      expect(help.stdout).toMatch(new RegExp(`^usage: database tenant ${form[0] ?? 'export'}`));
    }
  });
});
