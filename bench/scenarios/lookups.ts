/**
 * Point lookups (getUser, resolveAgent), lists (listConversations, listMessages) and one write
 * (createConversation: an INSERT … SELECT that checks the agent) through the package, inside withTenant, against the same SQL text through a bare driver connection in a
 * transaction that sets the same role and tenant (so the ratio is the package's own overhead),
 * and against the bare statement alone (no transaction: what withTenant's round trips cost).
 * The three variants run interleaved, over targets drawn across tenants of every size.
 */
import { withTenant } from '../../src/db/tenant.ts';
import { resolveAgent } from '../../src/queries/agents.ts';
import { createConversation, listConversations } from '../../src/queries/conversations.ts';
import { listMessages } from '../../src/queries/messages.ts';
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
/** The goal: the package's p50 at most 10% above the bare client's. */
const MAX_RATIO = 1.1;

/** The lookups and createConversation, each measured against its bare baselines. */
export async function lookupScenarios(backend: Backend, world: World): Promise<Result[]> {
  const r = world.random;
  const live = world.conversations.filter((c) => !c.deleted);
  const tenantsById = new Map(world.tenants.map((t) => [t.id, t]));
  const targets: Record<string, Target[]> = { getUser: [], resolveAgent: [], listConversations: [], listMessages: [], createConversation: [] };
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
    targets.createConversation!.push({
      tenantId: c.tenantId,
      call: (tx) => createConversation(tx, { userId: c.userId, agentId, title: 'bench' }),
    });
  }

  const results: Result[] = [];
  for (const [name, list] of Object.entries(targets)) {
    say(`lookup ${name}: ${world.settings.lookupIterations} calls × 3 variants, interleaved…`);
    const statements: Statement[][] = [];
    for (const t of list) statements.push(await captureStatements(backend.db, t.tenantId, t.call));
    const shape = statements[0]!.length;
    if (shape !== 1) throw new Error(`${name} sent ${shape} statements; the baseline replays exactly one`);
    let rows = 0;
    const samples = await interleaved(
      {
        package: (i) => withTenant(backend.db, list[i % list.length]!.tenantId, list[i % list.length]!.call),
        bareTx: (i) => {
          const statement = statements[i % statements.length]![0]!;
          return backend.bare.tenantTransaction(list[i % list.length]!.tenantId, async (q) => {
            rows += (await q(statement.sql, statement.parameters)).length;
          });
        },
        bareStatement: (i) => {
          const statement = statements[i % statements.length]![0]!;
          return backend.bare.query(statement.sql, statement.parameters);
        },
      },
      { iterations: world.settings.lookupIterations, warmup: Math.min(200, world.settings.lookupIterations) },
    );
    const pkg = summarize(samples.package);
    const bareTx = summarize(samples.bareTx);
    const bareStatement = summarize(samples.bareStatement);
    const value = ratio(pkg.p50, bareTx.p50);
    // Paired: each round ran both variants back to back, so the per-round ratio cancels most of the
    // load that other work puts on the machine; its median is the steadier figure.
    const paired = summarize(samples.package.map((ms, i) => ms / samples.bareTx[i]!)).p50;
    results.push({
      id: `lookup.${name}`,
      group: 'point lookups and lists (withTenant vs bare pg in the same transaction shape)',
      label: `${name} (withTenant)`,
      latency: pkg,
      baseline: { label: 'bare, same SQL+tx', latency: bareTx },
      ratio: { value, of: 'p50' },
      figures: {
        'median of per-round ratios': paired,
        'bare statement alone p50 ms': bareStatement.p50,
        'withTenant round trips (bare tx − bare statement) p50 ms': bareTx.p50 - bareStatement.p50,
        'rows per call': rows / (world.settings.lookupIterations + Math.min(200, world.settings.lookupIterations)),
      },
      goals: [{ text: `p50 ratio ≤ ${MAX_RATIO.toFixed(2)}`, met: value <= MAX_RATIO, actual: `${value.toFixed(3)}` }],
    });
  }
  return results;
}
