import { createQueryId, sql, type Compilable, type CompiledQuery, type Kysely, type KyselyPlugin, type QueryResult, type RawBuilder } from 'kysely';
import { SnakeCamelPlugin } from './camel-case.ts';
import { VectorPlugin } from './vector.ts';

/** Stands for a value while a template is compiled: each becomes one `$n` of the SQL text. */
class Slot {
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
}

interface Compiled {
  /** The compiled SQL text: one string for every call, so that lookups keyed by it (statement names) hash it once. */
  text: string;
  /** The same text split at its placeholders `$1`..`$n`. */
  fragments: readonly string[] & { raw: readonly string[] };
  /** The value of each placeholder, by name. */
  slots: readonly string[];
  /** The tree Kysely compiled the text from (for plugins that read `compiledQuery.query`). */
  node: CompiledQuery['query'];
}

/** A statement of a template with one call's values: run it, or compile it as a raw `sql` builder would. */
export interface TemplateStatement<R> {
  execute(db: Kysely<any>): Promise<QueryResult<R>>;
  compile(db: Kysely<any>): CompiledQuery<R>;
}

/**
 * A statement built with Kysely once per shape and then only re-bound: for a hot statement whose
 * query tree is big (recordUsage: six CTEs), building, transforming and compiling the tree on every
 * call costs more client CPU than the database spends running it (bench: ~0.5 ms per charge).
 *
 * `build` receives stand-ins for `values` (use them only as values, never to decide the shape) and
 * `shape`, which decides everything else; one template is compiled per distinct `shape` (compared
 * as JSON) and its SQL text kept. The text is compiled with the plugins of the first database it
 * runs on: every database of createDb compiles the same text for statements without vectors.
 *
 * Running it: on a database with only the package's own plugins (camelCase, vectors), the kept
 * text is sent as it is with the call's values and only the results pass through the plugins
 * (nothing is built or compiled per call). On a database with any other plugin (a query recorder,
 * `withPlugin(…)`), it runs as a raw `sql` builder over the same text, so that such plugins see
 * it as every other statement.
 *
 * @example
 * const byEmail = statementTemplate((db, v: { tenantId: string; email: string }, _shape: null) =>
 *   db.selectFrom('users').select('id').where('tenantId', '=', v.tenantId).where('email', '=', v.email));
 * const { rows } = await byEmail(tx, { tenantId, email }, null).execute(tx);
 */
export function statementTemplate<D, V extends object, S, R>(
  build: (db: Kysely<D>, values: V, shape: S) => Compilable<R>,
): (db: Kysely<D>, values: V, shape: S) => TemplateStatement<R> {
  const compiled = new Map<string, Compiled>();
  return (db, values, shape) => {
    const key = JSON.stringify(shape) ?? 'undefined';
    let template = compiled.get(key);
    if (template === undefined) {
      template = compile(db, build, values, shape);
      compiled.set(key, template);
    }
    const bound = template;
    const parameters = bound.slots.map((name) => (values as Record<string, unknown>)[name]);
    const raw = (): RawBuilder<R> => sql<R>(bound.fragments as unknown as TemplateStringsArray, ...parameters);
    return {
      execute: (on) =>
        onlyOwnPlugins(on)
          ? on.executeQuery<R>({ sql: bound.text, parameters, query: bound.node, queryId: createQueryId() })
          : raw().execute(on),
      compile: (on) => raw().compile(on),
    };
  };
}

/** The database runs no plugin but the package's own (createDb's): nothing else needs to see the tree. */
function onlyOwnPlugins(db: Kysely<any>): boolean {
  for (const plugin of db.getExecutor().plugins) if (!isOwnPlugin(plugin)) return false;
  return true;
}

function isOwnPlugin(plugin: KyselyPlugin): boolean {
  return plugin instanceof SnakeCamelPlugin || plugin instanceof VectorPlugin;
}

function compile<D, V extends object, S, R>(
  db: Kysely<D>,
  build: (db: Kysely<D>, values: V, shape: S) => Compilable<R>,
  values: V,
  shape: S,
): Compiled {
  const standIns = Object.fromEntries(Object.keys(values).map((name) => [name, new Slot(name)])) as unknown as V;
  // Compiled with the package's own plugins only: a query recorder sees the statement when it runs, not this.
  let own = db.withoutPlugins();
  for (const plugin of db.getExecutor().plugins) if (isOwnPlugin(plugin)) own = own.withPlugin(plugin);
  const query = build(own, standIns, shape).compile();
  const slots = query.parameters.map((parameter, index) => {
    if (!(parameter instanceof Slot)) {
      throw new Error(`statementTemplate: parameter $${index + 1} is not one of the values (${String(parameter)}): pass every value through \`values\``);
    }
    return parameter.name;
  });
  // Kysely numbers its placeholders in order of appearance. Refuse a text where `$n` appears
  // otherwise (e.g. inside a string literal): splitting it would bind the wrong values.
  const fragments: string[] = [];
  let rest = 0;
  let expected = 1;
  for (const match of query.sql.matchAll(/\$(\d+)/g)) {
    if (Number(match[1]) !== expected) throw new Error(`statementTemplate: placeholders out of order at $${match[1]} in ${query.sql}`);
    fragments.push(query.sql.slice(rest, match.index));
    rest = match.index + match[0].length;
    expected += 1;
  }
  fragments.push(query.sql.slice(rest));
  if (expected - 1 !== slots.length) {
    throw new Error(`statementTemplate: ${expected - 1} placeholders for ${slots.length} parameters in ${query.sql}`);
  }
  templateTexts.add(query.sql);
  return { text: query.sql, fragments: Object.assign(fragments, { raw: fragments }), slots, node: query.query };
}

/** The text of every template compiled in this process: the package's own statements. */
const templateTexts = new Set<string>();

/**
 * The text is one of a template compiled by the package (every value of it a bound parameter, the
 * text fixed by the package's code). Such a statement is a single statement that reads and writes
 * rows; it cannot prepare or drop statements, declare cursors, listen, create temporary objects,
 * or change a session setting, so the guard ends a transaction that ran only these without the
 * cleanup (guard-pg-client.ts). Templates are not exported: a service cannot add texts here.
 */
export function isTemplateText(text: string): boolean {
  return templateTexts.has(text);
}
