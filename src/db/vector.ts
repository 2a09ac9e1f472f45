import {
  ColumnUpdateNode,
  ColumnNode,
  InsertQueryNode,
  OperationNodeTransformer,
  PrimitiveValueListNode,
  ValueListNode,
  ValueNode,
  ValuesNode,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';

/** Columns of type `vector` in the schema (snake_case names; camelCase is the same here). */
export const VECTOR_COLUMNS: ReadonlySet<string> = new Set(['embedding']);

/** `number[]` → pgvector's text form `[1,2,3]`, as both pg and PGlite send it. */
export function toVectorSql(values: readonly number[]): string {
  return `[${values.join(',')}]`;
}

/** pgvector's text form `[1,2,3]` → `number[]`. */
export function fromVectorSql(text: string): number[] {
  const inner = text.slice(1, -1);
  return inner === '' ? [] : inner.split(',').map(Number);
}

/**
 * Lets `vector` columns be written and read as `number[]` on both backends.
 *
 * Writes: an array value bound to a vector column in `insertInto(...).values(...)` or
 * `updateTable(...).set(...)` is sent as pgvector text (`[1,2,3]`); node-postgres would send a JS
 * array as a PostgreSQL array literal (`{1,2,3}`), which the vector type refuses.
 * Reads: a result column named after a vector column that arrives as pgvector text is parsed into
 * `number[]`. (Neither driver knows pgvector's type: its OID differs per database.) Use
 * {@link toVectorSql} for vectors inside raw `sql` (e.g. `embedding <=> ${toVectorSql(q)}::vector`).
 */
export class VectorPlugin implements KyselyPlugin {
  readonly #transformer = new VectorValueTransformer();

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.#transformer.transformNode(args.node);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    for (const row of args.result.rows) {
      for (const key of Object.keys(row)) {
        const value = row[key];
        if (VECTOR_COLUMNS.has(key) && typeof value === 'string' && value.startsWith('[')) {
          row[key] = fromVectorSql(value);
        }
      }
    }
    return args.result;
  }
}

class VectorValueTransformer extends OperationNodeTransformer {
  protected override transformInsertQuery(node: InsertQueryNode): InsertQueryNode {
    const transformed = super.transformInsertQuery(node);
    const columns = transformed.columns?.map((column) => column.column.name) ?? [];
    const vectorIndexes = columns.flatMap((name, index) => (VECTOR_COLUMNS.has(name) ? [index] : []));
    if (vectorIndexes.length === 0 || transformed.values === undefined || !ValuesNode.is(transformed.values)) {
      return transformed;
    }
    const values = ValuesNode.create(
      transformed.values.values.map((list) => {
        if (PrimitiveValueListNode.is(list)) {
          return PrimitiveValueListNode.create(
            list.values.map((value, index) => (vectorIndexes.includes(index) ? vectorParam(value) : value)),
          );
        }
        return ValueListNode.create(
          list.values.map((value, index) =>
            vectorIndexes.includes(index) && ValueNode.is(value) ? ValueNode.create(vectorParam(value.value)) : value,
          ),
        );
      }),
    );
    return { ...transformed, values };
  }

  protected override transformColumnUpdate(node: ColumnUpdateNode): ColumnUpdateNode {
    const transformed = super.transformColumnUpdate(node);
    if (
      ColumnNode.is(transformed.column) &&
      VECTOR_COLUMNS.has(transformed.column.column.name) &&
      ValueNode.is(transformed.value)
    ) {
      return { ...transformed, value: ValueNode.create(vectorParam(transformed.value.value)) };
    }
    return transformed;
  }
}

function vectorParam(value: unknown): unknown {
  return Array.isArray(value) ? toVectorSql(value as number[]) : value;
}
