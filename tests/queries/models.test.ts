import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { getModelByInternalName, listModels } from '../../src/queries/models.ts';
import { providerKeyBinding } from '../../src/db/secret-bindings.ts';
import { sealSecret } from '../../src/db/secrets.ts';
import { testRing } from '../support/secret-keys.ts';
import { insertTenant } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let tenantId: string;
let sealedKey: string;
beforeAll(async () => {
  t = await openTestDb();
  const [bedrock, mock] = await t.db
    .insertInto('providers')
    .values([{ name: 'bedrock' }, { name: 'mock', apiKey: null }])
    .returning('id')
    .execute();
  sealedKey = sealSecret(testRing, 'secret-bedrock-key', providerKeyBinding(bedrock!.id));
  await t.db.updateTable('providers').set({ apiKey: sealedKey }).where('id', '=', bedrock!.id).execute();
  await t.db
    .insertInto('models')
    .values([
      // Prices written with trailing zeros: the API returns them without (one decimal text everywhere).
      { providerId: bedrock!.id, name: 'Claude Sonnet', internalName: 'sonnet', type: 'chat', cost1kInput: '0.0030', cost1kOutput: '0.015000', cost1kCacheRead: '0.00030', cost1kCacheWrite: '0.000' },
      { providerId: bedrock!.id, name: 'Titan Embed', internalName: 'titan-embed', type: 'embedding', cost1kInput: '0.00002' },
      { providerId: mock!.id, name: 'Mock', internalName: 'mock-model', type: 'chat', defaultParameters: JSON.stringify({ temperature: 0 }) },
    ])
    .execute();
  const role = await t.db.insertInto('roles').values({ name: 'user' }).returning('id').executeTakeFirstOrThrow();
  ({ tenantId } = await insertTenant(t.db, role.id));
});
afterAll(() => t?.close());

describe('listModels', () => {
  it('lists the catalog with exact prices and provider names, never an API key', async () => {
    const models = await listModels(t.db);
    expect(models.map((m) => m.internalName)).toEqual(['sonnet', 'titan-embed', 'mock-model']);
    expect(models[0]).toMatchObject({ providerName: 'bedrock', cost1kInput: '0.003', cost1kOutput: '0.015', cost1kCacheRead: '0.0003', cost1kCacheWrite: '0' });
    expect(models[2]!.defaultParameters).toEqual({ temperature: 0 });
    expect(JSON.stringify(models)).not.toContain('secret-bedrock-key');
    expect(JSON.stringify(models)).not.toContain(sealedKey);
  });

  it('filters by type, and works as app_user inside a tenant', async () => {
    const embedding = await withTenant(t.db, tenantId, (tx) => listModels(tx, { type: 'embedding' }));
    expect(embedding.map((m) => m.internalName)).toEqual(['titan-embed']);
    await expect(listModels(t.db, { type: 'video' as never })).rejects.toMatchObject({ name: 'ValidationError', field: 'type' });
  });
});

describe('getModelByInternalName', () => {
  it('finds a model by its internal name, or throws NotFoundError', async () => {
    expect(await withTenant(t.db, tenantId, (tx) => getModelByInternalName(tx, 'sonnet'))).toMatchObject({
      name: 'Claude Sonnet', providerName: 'bedrock', cost1kInput: '0.003', cost1kOutput: '0.015', cost1kCacheRead: '0.0003', cost1kCacheWrite: '0',
    });
    await expect(getModelByInternalName(t.db, 'gpt-99')).rejects.toThrow(new NotFoundError('model', 'gpt-99'));
  });
});
