import type { Selectable } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import { NotFoundError, ValidationError } from '../db/errors.ts';
import type { Models, Providers } from '../db/schema.generated.ts';
import { decimalText } from './decimal.ts';
import { assertText } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';

/** A model with its provider's name; never a provider's API key. Prices are exact decimal text without trailing zeros ('0.003'). */
export type Model = Pick<
  Selectable<Models>,
  | 'id' | 'providerId' | 'name' | 'internalName' | 'type' | 'description' | 'maxContext' | 'maxOutput' | 'maxReasoning'
  | 'cost1kInput' | 'cost1kOutput' | 'cost1kCacheRead' | 'cost1kCacheWrite' | 'defaultParameters'
> & { providerName: Selectable<Providers>['name'] };

const MODEL_TYPES = ['chat', 'embedding', 'image', 'audio', 'rerank'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

function modelQuery(db: Executor) {
  return db
    .selectFrom('models as m')
    .innerJoin('providers as p', 'p.id', 'm.providerId')
    .select((eb) => [
      'm.id', 'm.providerId', 'p.name as providerName', 'm.name', 'm.internalName', 'm.type', 'm.description',
      'm.maxContext', 'm.maxOutput', 'm.maxReasoning',
      decimalText(eb.ref('m.cost1kInput')).as('cost1kInput'),
      decimalText(eb.ref('m.cost1kOutput')).as('cost1kOutput'),
      decimalText(eb.ref('m.cost1kCacheRead')).as('cost1kCacheRead'),
      decimalText(eb.ref('m.cost1kCacheWrite')).as('cost1kCacheWrite'),
      'm.defaultParameters',
    ]);
}

/** Models of the catalog (all of them, or of one type), by provider then name. Needs no tenant. Roles: app_gateway and app_cms. */
export async function listModels(db: Executor, params: { type?: ModelType } = {}): Promise<Model[]> {
  assertRole(db, 'listModels');
  if (params.type !== undefined && !MODEL_TYPES.includes(params.type)) {
    throw new ValidationError('type', `must be one of ${MODEL_TYPES.join(', ')}`);
  }
  let query = modelQuery(db);
  if (params.type !== undefined) query = query.where('m.type', '=', params.type);
  return query.orderBy('p.name').orderBy('m.name').orderBy('m.id').execute();
}

/** The model with this internal name (the provider's model id); NotFoundError('model', name) otherwise. Roles: app_gateway and app_cms. */
export async function getModelByInternalName(db: Executor, internalName: string): Promise<Model> {
  assertRole(db, 'getModelByInternalName');
  assertText('internalName', internalName, 300);
  const model = await modelQuery(db).where('m.internalName', '=', internalName).executeTakeFirst();
  if (model === undefined) throw new NotFoundError('model', internalName);
  return model;
}
