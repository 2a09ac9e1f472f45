/**
 * recordUsage at concurrency 8 over the budgeted users of every tenant (inside withTenant: one
 * charge per transaction), taking turns with its floor (the same statement through bare
 * connections, named, in the same transaction shape), and against a bare INSERT of one usage row
 * (autocommit, 8 connections);
 * then all 8 workers charging one user (the row lock serializes them). Afterwards every
 * budgeted user must satisfy remaining = budget − sum(cost): no lost update.
 */
import { readFileSync } from 'node:fs';
import { withTenant } from '../../src/db/tenant.ts';
import { recordUsage } from '../../src/queries/usage.ts';
import type { Backend } from '../backend.ts';
import { captureStatements, type Statement } from '../capture.ts';
import { agentsUsableBy, type World } from '../data.ts';
import { cpuFigures, cpuMeter, type CpuSpent } from '../cpu.ts';
import { concurrent, ratio, summarize, type Throughput } from '../measure.ts';
import { say } from '../progress.ts';
import type { Result } from '../report.ts';

const CONCURRENCY = 8;
/** Turns the package and its floor take (each runs usageSeconds / SLICES per turn). */
const SLICES = 4;
/** Issue 17: the package's charges at least this share of the floor's throughput. */
const MIN_FLOOR_SHARE = 0.95;
/** Issue 14: the charge statement with its budget windows, cap, holds and alerts at least this share of the one before them. */
const MIN_SHARE_OF_BEFORE = 0.9;

/** recordUsage's statement before issue 14's checks (bench/fixtures: what it is and where it comes from). */
const BEFORE_SPEND_CONTROL = JSON.parse(
  readFileSync(new URL('../fixtures/charge-before-spend-control.json', import.meta.url), 'utf8'),
) as { sql: string; parameters: unknown[] };

/** The runs of one side as one: operations and seconds summed, latencies pooled. */
function combine(runs: Throughput[]): Throughput {
  const operations = runs.reduce((n, r) => n + r.operations, 0);
  const seconds = runs.reduce((n, r) => n + r.seconds, 0);
  const samples = runs.flatMap((r) => r.samples);
  return { concurrency: runs[0]!.concurrency, operations, seconds, perSecond: operations / seconds, latency: summarize(samples), samples };
}

function addSpent(parts: CpuSpent[]): CpuSpent {
  const serverMs = parts.some((p) => p.serverMs === undefined) ? undefined : parts.reduce((n, p) => n + p.serverMs!, 0);
  return { clientMs: parts.reduce((n, p) => n + p.clientMs, 0), serverMs };
}

/** The recordUsage runs and the lost-update check. */
export async function usageScenarios(backend: Backend, world: World): Promise<Result[]> {
  const s = world.settings;
  // Each charge names an agent its user may use (the gateway charges an agent's model call).
  const payer = (t: World['tenants'][number], userId: string) => {
    const agents = agentsUsableBy(world.globalAgents, t, userId);
    return { tenantId: t.id, userId, agentId: agents[(userId.charCodeAt(0) + userId.charCodeAt(1)) % agents.length]! };
  };
  const payers = world.tenants.flatMap((t) => t.budgeted.map((userId) => payer(t, userId)));
  const unlimited = world.tenants.flatMap((t) => t.unlimited.map((userId) => ({ tenantId: t.id, userId })));
  let key = 0;
  const charge = (p: { tenantId: string; userId: string; agentId: string }, i: number) =>
    withTenant(backend.db, p.tenantId, (tx) =>
      recordUsage(tx, {
        userId: p.userId,
        agentId: p.agentId,
        modelId: world.modelIds[i % 2]!,
        type: 'chat',
        inputTokens: 200 + (i % 3000),
        outputTokens: 50 + (i % 700),
        idempotencyKey: `bench-${(key += 1)}`,
      }),
    );

  const clients = await backend.openBare(CONCURRENCY);
  // The statement before issue 14 was the package's own then: its transactions end as today's do.
  for (const c of clients) c.asPackageStatement(BEFORE_SPEND_CONTROL.sql);
  // The package's own statement, replayed through bare connections as a named prepared statement
  // in the same transaction shape: the floor (issue 17: charges at ≥ 0.95× its throughput).
  const sample = payers[0]!;
  const sampleKey = `bench-capture-${Date.now()}`;
  const captured = await captureStatements(backend.db, sample.tenantId, (tx) =>
    recordUsage(tx, { userId: sample.userId, agentId: sample.agentId, modelId: world.modelIds[0]!, type: 'chat', inputTokens: 200, outputTokens: 50, idempotencyKey: sampleKey }),
  );
  if (captured.length !== 1) throw new Error(`recordUsage sent ${captured.length} statements; the replay expects one`);
  const [chargeStatement] = captured as [Statement];
  const replayCharge = (w: number, i: number) => {
    const p = payers[(i * 7919) % payers.length]!;
    const swap = (v: unknown) =>
      v === sample.tenantId ? p.tenantId : v === sample.userId ? p.userId : v === sample.agentId ? p.agentId : v === sampleKey ? `bench-${(key += 1)}` : v;
    return clients[w]!.tenantTransaction(p.tenantId, async (_q, named) => {
      await named(chargeStatement.sql, chargeStatement.parameters.map(swap));
    });
  };

  // The same, with the statement as it was before issue 14's checks.
  const beforeCharge = (w: number, i: number) => {
    const p = payers[(i * 7919) % payers.length]!;
    const own: Record<string, unknown> = { $tenant: p.tenantId, $user: p.userId, $agent: p.agentId, $model: world.modelIds[i % 2], $key: `bench-${(key += 1)}` };
    const parameters = BEFORE_SPEND_CONTROL.parameters.map((v) => (typeof v === 'string' && v in own ? own[v] : v));
    return clients[w]!.tenantTransaction(p.tenantId, async (_q, named) => {
      await named(BEFORE_SPEND_CONTROL.sql, parameters);
    });
  };

  // The package, its floor and the statement before issue 14 take turns, SLICES times each, so that
  // load from elsewhere on the machine hits them alike; each one's figures are summed over its turns.
  say(`recordUsage, its floor and the statement before spend control: concurrency ${CONCURRENCY}, ${SLICES} turns of ${(s.usageSeconds / SLICES).toFixed(1)} s each, over ${payers.length} budgeted users…`);
  const sliceMs = (s.usageSeconds * 1000) / SLICES;
  const runs = { spread: [] as Throughput[], replay: [] as Throughput[], before: [] as Throughput[] };
  const spentParts = { spread: [] as CpuSpent[], replay: [] as CpuSpent[], before: [] as CpuSpent[] };
  const sides: [keyof typeof runs, (w: number, i: number) => Promise<unknown>][] = [
    ['spread', (_, i) => charge(payers[(i * 7919) % payers.length]!, i)],
    ['replay', replayCharge],
    ['before', beforeCharge],
  ];
  for (let slice = 0; slice < SLICES; slice += 1) {
    for (const [side, fn] of sides) {
      const meter = await cpuMeter(backend);
      runs[side].push(await concurrent(fn, { concurrency: CONCURRENCY, durationMs: sliceMs }));
      spentParts[side].push(await meter());
    }
  }
  const spread = combine(runs.spread);
  const replay = combine(runs.replay);
  const before = combine(runs.before);
  const spent = addSpent(spentParts.spread);
  const replaySpent = addSpent(spentParts.replay);
  const beforeSpent = addSpent(spentParts.before);

  say(`bare INSERT of a usage row: concurrency ${CONCURRENCY} for ${s.usageSeconds} s…`);
  const bareMeter = await cpuMeter(backend);
  const bare = await concurrent((w, i) => {
    const p = unlimited[(i * 7919) % unlimited.length] ?? payers[0]!;
    return clients[w]!.query(
      `insert into usage (tenant_id, user_id, model_id, type, input_tokens, output_tokens, cost) values ($1, $2, $3, 'bare-insert', $4, $5, $6)`,
      [p.tenantId, p.userId, world.modelIds[i % 2], 200 + (i % 3000), 50 + (i % 700), '0.0123'],
    );
  }, { concurrency: CONCURRENCY, durationMs: s.usageSeconds * 1000 });
  const bareSpent = await bareMeter();

  const hotUser = payer(world.big, world.big.budgeted[0]!);
  say(`recordUsage: concurrency ${CONCURRENCY}, all on one user, for ${Math.max(1, s.usageSeconds / 2)} s…`);
  const hot = await concurrent((_, i) => charge(hotUser, i), {
    concurrency: CONCURRENCY,
    durationMs: Math.max(1, s.usageSeconds / 2) * 1000,
  });

  const [check] = await backend.bare.query<{ users: number; lost: number; charges: number }>(
    `select count(*)::int as users,
            count(*) filter (where u.remaining is distinct from u.budget - coalesce(s.spent, 0))::int as lost,
            (select count(*)::int from usage where idempotency_key like 'bench-%') as charges
     from users u
     left join (select tenant_id, user_id, sum(cost) as spent from usage where type <> 'bare-insert' group by 1, 2) s
       on s.tenant_id = u.tenant_id and s.user_id = u.id
     where u.budget is not null`,
  );
  const expected = spread.operations + hot.operations + replay.operations + before.operations + 1;
  const consistent = check !== undefined && check.lost === 0 && check.charges === expected;
  const group = `recordUsage (concurrency ${CONCURRENCY}; pool ${CONCURRENCY}+ connections)`;
  return [
    {
      id: 'usage.recordUsage',
      group,
      label: `recordUsage, ${payers.length} users`,
      latency: spread.latency,
      rate: { perSecond: spread.perSecond, unit: 'charges', concurrency: CONCURRENCY },
      baseline: { label: 'bare INSERT usage row', latency: bare.latency, rate: { perSecond: bare.perSecond, unit: 'rows', concurrency: CONCURRENCY } },
      ratio: { value: ratio(spread.perSecond, bare.perSecond), of: 'rate' },
      figures: {
        'users checked': check?.users ?? 0,
        'lost updates': check?.lost ?? -1,
        'charges recorded / made': `${check?.charges ?? '?'}/${expected}`,
        ...cpuFigures(spent, spread.operations),
        'bare INSERT CPU ms/op': Object.values(cpuFigures(bareSpent, bare.operations))[0] ?? Number.NaN,
      },
      goals: [
        { text: '≥ 2,000 charges/s', met: spread.perSecond >= 2000, actual: `${Math.round(spread.perSecond).toLocaleString('en-US')}/s` },
        {
          text: `≥ ${MIN_FLOOR_SHARE}× the floor's charges/s (the same statement, bare, named; issue 17)`,
          met: spread.perSecond >= MIN_FLOOR_SHARE * replay.perSecond,
          actual: `${ratio(spread.perSecond, replay.perSecond).toFixed(3)}×`,
        },
        { text: 'zero lost updates (remaining = budget − sum(cost))', met: consistent, actual: `${check?.lost ?? '?'} lost, ${check?.charges ?? '?'}/${expected} rows` },
      ],
    },
    {
      id: 'usage.replay',
      group,
      label: 'floor: same charge SQL, bare, named',
      latency: replay.latency,
      rate: { perSecond: replay.perSecond, unit: 'charges', concurrency: CONCURRENCY },
      baseline: { label: 'recordUsage (package)', latency: spread.latency, rate: { perSecond: spread.perSecond, unit: 'charges', concurrency: CONCURRENCY } },
      ratio: { value: ratio(replay.perSecond, spread.perSecond), of: 'rate' },
      figures: cpuFigures(replaySpent, replay.operations),
    },
    {
      id: 'usage.beforeSpendControl',
      group,
      label: 'floor, the statement before issue 14',
      latency: before.latency,
      rate: { perSecond: before.perSecond, unit: 'charges', concurrency: CONCURRENCY },
      baseline: { label: 'floor (today\'s statement)', latency: replay.latency, rate: { perSecond: replay.perSecond, unit: 'charges', concurrency: CONCURRENCY } },
      ratio: { value: ratio(before.perSecond, replay.perSecond), of: 'rate' },
      figures: cpuFigures(beforeSpent, before.operations),
      goals: [
        {
          text: `today's charge statement ≥ ${MIN_SHARE_OF_BEFORE}× the charges/s of the one before budget windows, cap, holds and alerts (both bare, named; issue 14)`,
          met: replay.perSecond >= MIN_SHARE_OF_BEFORE * before.perSecond,
          actual: `${ratio(replay.perSecond, before.perSecond).toFixed(3)}×`,
        },
      ],
    },
    {
      id: 'usage.hotUser',
      group,
      label: 'recordUsage, one hot user',
      latency: hot.latency,
      rate: { perSecond: hot.perSecond, unit: 'charges', concurrency: CONCURRENCY },
      baseline: { label: 'spread over users', latency: spread.latency, rate: { perSecond: spread.perSecond, unit: 'charges', concurrency: CONCURRENCY } },
      ratio: { value: ratio(hot.perSecond, spread.perSecond), of: 'rate' },
    },
  ];
}
