import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../src/db/schema.generated.ts';
import { statementTemplate } from '../../src/db/statement-template.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { QueryRecorder } from '../support/query-recorder.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let one: { tenantId: string; userId: string };
let two: { tenantId: string; userId: string };
beforeAll(async () => {
  t = await openTestDb();
  const { roleId } = await insertCatalog(t.db);
  one = await insertTenant(t.db, roleId);
  two = await insertTenant(t.db, roleId);
});
afterAll(() => t?.close());

interface Lookup {
  tenantId: string;
  userId: string;
  email: string;
}

/** The query the templates below stand for, built directly. */
function direct(db: Kysely<DB>, v: Lookup, shape: { byEmail: boolean }) {
  return db
    .selectFrom('users')
    .select(['id', 'tenantId', 'createdAt'])
    .where('tenantId', '=', v.tenantId)
    .$if(shape.byEmail, (qb) => qb.where('email', '=', v.email))
    .$if(!shape.byEmail, (qb) => qb.where('id', '=', v.userId));
}

describe('statementTemplate', () => {
  it("runs the text Kysely compiles with each call's values, through the database's plugins", async () => {
    const lookup = statementTemplate(direct);
    for (const who of [one, two]) {
      const values = { ...who, email: 'unused' };
      const built = direct(t.db, values, { byEmail: false }).compile();
      const templated = lookup(t.db, values, { byEmail: false }).compile(t.db);
      expect(templated.sql).toBe(built.sql);
      expect(templated.parameters).toEqual(built.parameters);
      const { rows } = await lookup(t.db, values, { byEmail: false }).execute(t.db);
      // camelCase keys: the result went through the database's plugins.
      expect(rows).toEqual([{ id: who.userId, tenantId: who.tenantId, createdAt: expect.any(Date) }]);
    }
  });

  it('compiles one text per shape', async () => {
    const lookup = statementTemplate(direct);
    const values = { ...two, email: 'nobody@example.com' };
    const byId = lookup(t.db, values, { byEmail: false }).compile(t.db).sql;
    const byEmail = lookup(t.db, values, { byEmail: true }).compile(t.db).sql;
    expect(byEmail).not.toBe(byId);
    expect(byEmail).toBe(direct(t.db, values, { byEmail: true }).compile().sql);
    expect((await lookup(t.db, values, { byEmail: true }).execute(t.db)).rows).toEqual([]);
    expect((await lookup(t.db, values, { byEmail: false }).execute(t.db)).rows).toHaveLength(1);
  });

  it('is seen by query recorders like any statement, once per run (compiling the template is not a run)', async () => {
    const recorder = new QueryRecorder();
    const lookup = statementTemplate(direct);
    const recorded = t.db.withPlugin(recorder);
    const first = await lookup(recorded, { ...one, email: '' }, { byEmail: false }).execute(recorded);
    expect(recorder.count).toBe(1);
    // The text kept is sent as it is on a database with the package's plugins only: the same rows.
    const kept = await lookup(t.db, { ...one, email: '' }, { byEmail: false }).execute(t.db);
    expect(recorder.count).toBe(1);
    expect(kept.rows).toEqual(first.rows);
    await lookup(recorded, { ...two, email: '' }, { byEmail: false }).execute(recorded);
    expect(recorder.count).toBe(2);
  });

  it('refuses a template with a value that does not come from its values', () => {
    const fixed = statementTemplate((db: Kysely<DB>, v: { tenantId: string }, _shape: null) =>
      db.selectFrom('users').select('id').where('tenantId', '=', v.tenantId).where('status', '=', 'active'),
    );
    expect(() => fixed(t.db, { tenantId: one.tenantId }, null)).toThrow(
      'statementTemplate: parameter $2 is not one of the values (active): pass every value through `values`',
    );
  });
});
