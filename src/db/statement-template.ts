import { sql, type Compilable, type Kysely, type RawBuilder } from 'kysely';

/** Stands for a value while a template is compiled: each becomes one `$n` of the SQL text. */
class Slot {
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
}

interface Compiled {
  /** The compiled SQL split at its placeholders `$1`..`$n`. */
  fragments: readonly string[] & { raw: readonly string[] };
  /** The value of each placeholder, by name. */
  slots: readonly string[];
}

/**
 * A statement built with Kysely once per shape and then only re-bound: for a hot statement whose
 * query tree is big (recordUsage: six CTEs), building, transforming and compiling the tree on every
 * call costs more client CPU than the database spends running it (bench: ~0.5 ms per charge).
 *
 * `build` receives stand-ins for `values` (use them only as values, never to decide the shape) and
 * `shape`, which decides everything else; one template is compiled per distinct `shape` (compared
 * as JSON) and its SQL text kept. Each call returns a raw `sql` builder over that text with the
 * call's values, so it still runs through the database's plugins (camelCase result keys) and is
 * seen by query recorders. The text is compiled with the plugins of the first database it runs on:
 * every database of createDb compiles the same text for statements without vectors.
 *
 * @example
 * const byEmail = statementTemplate((db, v: { tenantId: string; email: string }, _shape: null) =>
 *   db.selectFrom('users').select('id').where('tenantId', '=', v.tenantId).where('email', '=', v.email));
 * const { rows } = await byEmail(tx, { tenantId, email }, null).execute(tx);
 */
export function statementTemplate<D, V extends object, S, R>(
  build: (db: Kysely<D>, values: V, shape: S) => Compilable<R>,
): (db: Kysely<D>, values: V, shape: S) => RawBuilder<R> {
  const compiled = new Map<string, Compiled>();
  return (db, values, shape) => {
    const key = JSON.stringify(shape) ?? 'undefined';
    let template = compiled.get(key);
    if (template === undefined) {
      template = compile(db, build, values, shape);
      compiled.set(key, template);
    }
    return sql<R>(template.fragments as unknown as TemplateStringsArray, ...template.slots.map((name) => (values as Record<string, unknown>)[name]));
  };
}

function compile<D, V extends object, S, R>(
  db: Kysely<D>,
  build: (db: Kysely<D>, values: V, shape: S) => Compilable<R>,
  values: V,
  shape: S,
): Compiled {
  const standIns = Object.fromEntries(Object.keys(values).map((name) => [name, new Slot(name)])) as unknown as V;
  const query = build(db, standIns, shape).compile();
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
  return { fragments: Object.assign(fragments, { raw: fragments }), slots };
}
