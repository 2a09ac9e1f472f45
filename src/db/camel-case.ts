import { CamelCasePlugin } from 'kysely';

/**
 * Kysely's CamelCasePlugin, with one rule added for digits so that every column name of the
 * schema round-trips: a digit run that starts a word (`cost_1k_input`, seen as `cost1kInput`)
 * gets its underscore back, and one that ends a word (`s3_uri`, seen as `s3Uri`) does not.
 * Kysely's own `underscoreBeforeDigits` option cannot do both (it would give `s_3_uri`).
 * kysely-codegen's `camelCase` renders names with the plain mapping, which matches ours.
 */
export class SnakeCamelPlugin extends CamelCasePlugin {
  protected override snakeCase(str: string): string {
    return super.snakeCase(str).replace(/([a-z])(\d+)(?=[a-z])/g, '$1_$2');
  }
}
