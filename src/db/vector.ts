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

/**
 * `number[]` → pgvector's binary form: int16 dimensions, int16 0, then each value as a big-endian
 * float4. node-postgres sends a Buffer parameter in binary format, and `$1::vector` decodes it with
 * pgvector's vector_recv: no number is printed in JavaScript or parsed by the server. The values
 * are the same as through the text form (both round a double to the nearest float4); a value too
 * large for a float4 becomes Infinity, which vector_recv refuses.
 */
export function toVectorBinary(values: readonly number[]): Buffer {
  const buffer = Buffer.allocUnsafe(4 + 4 * values.length);
  buffer.writeInt16BE(values.length, 0);
  buffer.writeInt16BE(0, 2);
  for (let i = 0; i < values.length; i += 1) buffer.writeFloatBE(values[i]!, 4 + 4 * i);
  return buffer;
}

/** A vector bound as a parameter of raw `sql` (`${vectorValue(v)}::vector`); see {@link vectorValue}. */
export class VectorValue {
  readonly values: readonly number[];
  constructor(values: readonly number[]) {
    this.values = values;
  }
}

/**
 * A vector parameter for raw `sql`, always followed by `::vector`. The VectorPlugin of the
 * database sends it in the backend's best form: binary to a server (node-postgres), text to PGlite
 * (which sends every parameter as text).
 *
 * @example
 * sql`select id from vectors order by embedding <=> ${vectorValue(query)}::vector limit 5`
 */
export function vectorValue(values: readonly number[]): VectorValue {
  return new VectorValue(values);
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
 * `updateTable(...).set(...)`, and a {@link vectorValue} anywhere (raw `sql` included), is sent in
 * pgvector's binary form (`binary`, node-postgres) or text form (`[1,2,3]`, PGlite); node-postgres
 * would send a JS array as a PostgreSQL array literal (`{1,2,3}`), which the vector type refuses.
 * Reads: a result column named after a vector column that arrives as pgvector text is parsed into
 * `number[]`. (Neither driver knows pgvector's type: its OID differs per database.) Use
 * {@link vectorValue} for vectors inside raw `sql` (`embedding <=> ${vectorValue(q)}::vector`).
 */
export class VectorPlugin implements KyselyPlugin {
  readonly #transformer: VectorValueTransformer;

  /** `binary`: send vectors in pgvector's binary form (node-postgres); else as text (PGlite). */
  constructor(options: { binary?: boolean } = {}) {
    this.#transformer = new VectorValueTransformer(options.binary === true ? toVectorBinary : toVectorSql);
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.#transformer.transformNode(args.node);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    // Only the vector columns' keys are looked at (one here), not every key of every row.
    for (const row of args.result.rows) {
      for (const key of VECTOR_COLUMNS) {
        const value = row[key];
        if (typeof value === 'string' && value.startsWith('[')) row[key] = fromVectorSql(value);
      }
    }
    return args.result;
  }
}

class VectorValueTransformer extends OperationNodeTransformer {
  readonly #encode: (values: readonly number[]) => unknown;

  constructor(encode: (values: readonly number[]) => unknown) {
    super();
    this.#encode = encode;
  }

  protected override transformValue(node: ValueNode): ValueNode {
    return node.value instanceof VectorValue ? ValueNode.create(this.#encode(node.value.values)) : super.transformValue(node);
  }

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
            list.values.map((value, index) => (vectorIndexes.includes(index) ? this.#param(value) : value)),
          );
        }
        return ValueListNode.create(
          list.values.map((value, index) =>
            vectorIndexes.includes(index) && ValueNode.is(value) ? ValueNode.create(this.#param(value.value)) : value,
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
      return { ...transformed, value: ValueNode.create(this.#param(transformed.value.value)) };
    }
    return transformed;
  }

  #param(value: unknown): unknown {
    return Array.isArray(value) ? this.#encode(value as number[]) : value;
  }
}
