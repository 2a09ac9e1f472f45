/**
 * Point lookups (getUser, resolveAgent), lists (listConversations, listMessages) and two writes
 * (appendMessage: one CTE statement; createConversation: an INSERT … SELECT that checks the
 * agent), each through the package inside withTenant, against the same SQL text sent by a bare
 * driver connection in the same transaction shape, four variants interleaved round by round:
 *
 * - **floor**: withTenant's shape (`begin` + the signed context in one round trip, the statement
 *   as a named prepared statement, `commit` + cleanup), no package code: what the package costs
 *   beyond it is its own client work (issue 17: p50 within 1.2× of it);
 * - the same with the statement unnamed (parsed and planned at every call);
 * - **unsigned**: the shape withTenant had before the signed context (`begin`,
 *   `set_config('app.tenant_id', …)`, the named statement, `commit`), as the owner: a floor under
 *   what a lookup cost before the tenant wall (issue 19: the package within 1.1× of it).
 *
 * Client CPU per call (process.cpuUsage) is reported for the package and the floor. Targets are
 * drawn across tenants of every size.
 */
import { withTenant } from '../../src/db/tenant.ts';
import { resolveAgent } from '../../src/queries/agents.ts';
import { createConversation, listConversations } from '../../src/queries/conversations.ts';
import { appendMessage, listMessages } from '../../src/queries/messages.ts';
import { getUser } from '../../src/queries/users.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import type { Backend } from '../backend.ts';
import { captureStatements, type Statement } from '../capture.ts';
import { agentsUsableBy, type World } from '../data.ts';
import { interleaved, ratio, summarize } from '../measure.ts';
import { say } from '../progress.ts';
import { pick } from '../random.ts';
import type { Result } from '../report.ts';

/** One call of a lookup: the tenant it runs as and the package call. */
interface Target {
  tenantId: string;
  call: (tx: TenantTx) => Promise<unknown>;
}

const TARGETS = 200;
/** Issue 17: the package's p50 at most 1.2× the named floor's. */
const MAX_FLOOR_RATIO = 1.2;
/** Issue 19: with the signed tenant context, p50 at most 10% above the unsigned shape's. */
const MAX_UNSIGNED_RATIO = 1.1;

/** The lookups and createConversation, each measured against its bare baselines. */
export async function lookupScenarios(backend: Backend, world: World): Promise<Result[]> {
  const r = world.random;
  const live = world.conversations.filter((c) => !c.deleted);
  const tenantsById = new Map(world.tenants.map((t) => [t.id, t]));
  const targets: Record<string, Target[]> = {
    getUser: [], resolveAgent: [], listConversations: [], listMessages: [], appendMessage: [], createConversation: [],
  };
  for (let i = 0; i < TARGETS; i += 1) {
    // A conversation drawn uniformly: tenants and users weighted by their activity.
    const c = pick(r, live);
    const tenant = tenantsById.get(c.tenantId)!;
    targets.getUser!.push({ tenantId: c.tenantId, call: (tx) => getUser(tx, { userId: c.userId }) });
    // An agent the conversation's user may use (global, tenant-wide or the user's own).
    const agentId = pick(r, agentsUsableBy(world.globalAgents, tenant, c.userId));
    targets.resolveAgent!.push({ tenantId: c.tenantId, call: (tx) => resolveAgent(tx, { agentId, userId: c.userId }) });
    targets.listConversations!.push({ tenantId: c.tenantId, call: (tx) => listConversations(tx, { userId: c.userId }) });
    const m = pick(r, world.conversations);
    targets.listMessages!.push({ tenantId: m.tenantId, call: (tx) => listMessages(tx, { conversationId: m.id }) });
    targets.appendMessage!.push({
      tenantId: c.tenantId,
      call: (tx) => appendMessage(tx, { conversationId: c.id, role: 'user', content: { text: 'bench' } }),
    });
    targets.createConversation!.push({
      tenantId: c.tenantId,
      call: (tx) => createConversation(tx, { userId: c.userId, agentId, title: 'bench' }),
    });
  }

  // A connection of its own for each variant in withTenant's shape, as the package's pool gives
  // its own: the guard ends a transaction of the package's statements with COMMIT alone only when
  // nothing else ran on the connection since its last cleanup (the unsigned shape's set_config would).
  const [floorClient, unnamedClient] = await backend.openBare(2);
  const results: Result[] = [];
  for (const [name, list] of Object.entries(targets)) {
    say(`lookup ${name}: ${world.settings.lookupIterations} calls × 4 variants, interleaved…`);
    const statements: Statement[][] = [];
    for (const t of list) statements.push(await captureStatements(backend.db, t.tenantId, t.call));
    const shape = statements[0]!.length;
    if (shape !== 1) throw new Error(`${name} sent ${shape} statements; the baseline replays exactly one`);
    const statementOf = (i: number) => statements[i % statements.length]![0]!;
    const tenantOf = (i: number) => list[i % list.length]!.tenantId;
    let rows = 0;
    const cpu: Partial<Record<'package' | 'floor' | 'unnamed' | 'unsigned', number>> = {};
    const iterations = world.settings.lookupIterations;
    const warmup = Math.min(200, iterations);
    const samples = await interleaved(
      {
        package: (i) => withTenant(backend.db, tenantOf(i), list[i % list.length]!.call),
        floor: (i) =>
          floorClient!.tenantTransaction(tenantOf(i), async (_q, named) => {
            rows += (await named(statementOf(i).sql, statementOf(i).parameters)).length;
          }),
        unnamed: (i) => unnamedClient!.tenantTransaction(tenantOf(i), (q) => q(statementOf(i).sql, statementOf(i).parameters)),
        unsigned: (i) => backend.bare.unsignedTransaction(tenantOf(i), (_q, named) => named(statementOf(i).sql, statementOf(i).parameters)),
      },
      { iterations, warmup, clientCpuMicros: cpu },
    );
    const pkg = summarize(samples.package);
    const floor = summarize(samples.floor);
    const unnamed = summarize(samples.unnamed);
    const unsigned = summarize(samples.unsigned);
    const value = ratio(pkg.p50, floor.p50);
    const toUnsigned = ratio(pkg.p50, unsigned.p50);
    // Paired: each round ran every variant back to back, so the per-round ratio cancels most of
    // the load that other work puts on the machine; its median is the steadier figure.
    const paired = summarize(samples.package.map((ms, i) => ms / samples.floor[i]!)).p50;
    results.push({
      id: `lookup.${name}`,
      group: 'point lookups, lists and writes (withTenant vs bare pg, named statements, in the same transaction shape)',
      label: `${name} (withTenant)`,
      latency: pkg,
      baseline: { label: 'floor: bare named', latency: floor },
      ratio: { value, of: 'p50' },
      figures: {
        'median of per-round ratios (package / floor)': paired,
        'bare unnamed (same shape) p50 ms': unnamed.p50,
        'package / bare unnamed p50': ratio(pkg.p50, unnamed.p50),
        'unsigned shape (before the tenant wall, owner) p50 ms': unsigned.p50,
        'package / unsigned p50': toUnsigned,
        'client CPU µs/call package': (cpu.package ?? 0) / iterations,
        'client CPU µs/call floor': (cpu.floor ?? 0) / iterations,
        'rows per call': rows / (iterations + warmup),
      },
      goals: [
        { text: `p50 ≤ ${MAX_FLOOR_RATIO.toFixed(2)}× the named floor (issue 17)`, met: value <= MAX_FLOOR_RATIO, actual: value.toFixed(3) },
        {
          text: `p50 ≤ ${MAX_UNSIGNED_RATIO.toFixed(2)}× the unsigned shape (issue 19)`,
          met: toUnsigned <= MAX_UNSIGNED_RATIO,
          actual: toUnsigned.toFixed(3),
        },
      ],
    });
  }
  return results;
}
