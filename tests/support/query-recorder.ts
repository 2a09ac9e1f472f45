import type {
  KyselyPlugin,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryResult,
  RootOperationNode,
  UnknownRow,
} from 'kysely';

/** A query as a plugin saw it: its operation tree (after the plugins added before) and its id. */
export interface RecordedQuery {
  node: RootOperationNode;
  queryId: PluginTransformQueryArgs['queryId'];
}

/**
 * Records every statement run through a Kysely instance: add it with `db.withPlugin(recorder)`
 * (before withTenant: `tx.withPlugin()` makes a new object that withTenant does not know). Every
 * executed query, built or raw `sql`, passes through transformQuery once; added last, it sees the
 * query after the camelCase plugin, as sent.
 */
export class QueryRecorder implements KyselyPlugin {
  readonly queries: RecordedQuery[] = [];

  /** How many statements ran since the last reset. */
  get count(): number {
    return this.queries.length;
  }

  /** Kinds of the statements seen (SelectQueryNode, InsertQueryNode, RawNode, ...), in order. */
  get kinds(): string[] {
    return this.queries.map((q) => q.node.kind);
  }

  reset(): void {
    this.queries.length = 0;
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    this.queries.push({ node: args.node, queryId: args.queryId });
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}
