import type { Transaction } from 'kysely';
import type { DB } from './schema.generated.ts';

/**
 * The brand only {@link withTenant}'s callback parameter carries. A `declare`d unique symbol:
 * it exists only for the type checker (nothing at run time has this property), and no code
 * outside this module can name it, so no value but that parameter has the type without a cast.
 */
declare const tenantTxBrand: unique symbol;

/**
 * A transaction opened by `withTenant(db, tenantId, (tx) => ...)`: running as `app_user` with the
 * tenant set transaction-locally. Tenant-scoped query functions take it, so passing the bare
 * database or a plain `Transaction<DB>` is a compile error (and still a TenantContextError at run
 * time, for callers that cast or do not typecheck). A `TenantTx` is a `Kysely<DB>`: it can also be
 * passed wherever an `Executor` is asked for (catalog reads such as listModels).
 *
 * Methods that return a new Kysely instance (`tx.withPlugin()`, `tx.withSchema()`, ...) return a
 * plain `Transaction<DB>`, which withTenant does not know either: the type says what run time does.
 */
export type TenantTx = Transaction<DB> & { readonly [tenantTxBrand]: true };
