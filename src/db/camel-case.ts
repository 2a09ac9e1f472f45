import { CamelCasePlugin, type CamelCasePluginOptions, type UnknownRow } from 'kysely';

/**
 * Kysely's CamelCasePlugin, configured for this schema:
 *
 * - Keys inside json/jsonb values are left as stored (`maintainNestedObjectKeys`): they are data,
 *   not column names. Kysely's default would turn `{"top_p": 0.9}` into `{topP: 0.9}` on read.
 *   So JSON built in SQL (json_build_object) must spell its keys in camelCase itself.
 * - A digit run that starts a word (`cost_1k_input`, seen as `cost1kInput`) gets its underscore
 *   back, and one that ends a word (`s3_uri`, seen as `s3Uri`) does not, so every column name of
 *   the schema round-trips. Kysely's `underscoreBeforeDigits` option cannot do both (it would give
 *   `s_3_uri`). kysely-codegen's `camelCase` renders names with the plain mapping, which matches.
 */
export class SnakeCamelPlugin extends CamelCasePlugin {
  constructor(options: CamelCasePluginOptions = {}) {
    super({ maintainNestedObjectKeys: true, ...options });
  }

  // Every identifier of every query passes here: the names are few, so each is mapped once.
  readonly #snake = new Map<string, string>();

  protected override snakeCase(str: string): string {
    let snake = this.#snake.get(str);
    if (snake === undefined) {
      snake = super.snakeCase(str).replace(/([a-z])(\d+)(?=[a-z])/g, '$1_$2');
      if (this.#snake.size < 10_000) this.#snake.set(str, snake);
    }
    return snake;
  }

  // Kysely's mapRow builds each row with a reduce that also walks into nested objects; with
  // maintainNestedObjectKeys nothing nested is mapped, so a plain loop over the keys does the same.
  protected override mapRow(row: UnknownRow): UnknownRow {
    const mapped: UnknownRow = {};
    for (const key of Object.keys(row)) mapped[this.camelCase(key)] = row[key];
    return mapped;
  }
}
