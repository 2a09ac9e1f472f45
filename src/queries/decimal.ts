import { sql, type Expression, type RawBuilder } from 'kysely';

/**
 * A `numeric` column or expression as the package's one decimal text: PostgreSQL's
 * `trim_scale()`, the shortest exact form, without trailing zeros. `25.00` → `'25'`,
 * `0.012000` → `'0.012'`, `0.000` → `'0'`. Every numeric the API returns (budgets, prices,
 * costs) goes through it, so the same amount always reads the same, whatever scale it was
 * written with.
 *
 * @example
 * db.selectFrom('users').select((eb) => decimalText(eb.ref('budget')).as('budget'))
 */
export function decimalText<T extends string | null>(value: Expression<T>): RawBuilder<T> {
  return sql<T>`trim_scale(${value})`;
}
