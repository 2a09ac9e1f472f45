import { sql, type ExpressionBuilder, type Kysely, type Selectable } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { BudgetExceededError, IdempotencyConflictError, NotFoundError, ValidationError } from '../db/errors.ts';
import type { DB, Usage } from '../db/schema.generated.ts';
import { statementTemplate } from '../db/statement-template.ts';
import { tenantOf } from '../db/tenant.ts';
import { decimalText } from './decimal.ts';
import { MAX_COST_SUMMARY_ROWS, MAX_COST_SUMMARY_ROWS_CEILING } from './limits.ts';
import { assertDate, assertInt, assertText, assertUuid, limitName, limitOption } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';
import { visibleAgent } from './agents.ts';
import { uncharged } from './users.ts';

/** The largest value of an SQL `integer` (token counts and catalog ids are `integer` columns). */
const MAX_INT4 = 2_147_483_647;
/** Longest usage `type` accepted ('chat', 'embedding', 'title', ...). */
const MAX_TYPE_LENGTH = 100;
/** Longest idempotency key (the column's check: `length between 1 and 200`). */
const MAX_IDEMPOTENCY_KEY_LENGTH = 200;
/** Attempts of recordUsage when a conflicting idempotency key vanished before it could be read. */
const MAX_ATTEMPTS = 4;

/** A row of `usage`: one charged model call, its tokens and exact cost (decimal text). */
export type UsageRow = Pick<
  Selectable<Usage>,
  | 'id'
  | 'userId'
  | 'modelId'
  | 'agentId'
  | 'messageId'
  | 'type'
  | 'inputTokens'
  | 'outputTokens'
  | 'cacheReadTokens'
  | 'cacheWriteTokens'
  | 'cost'
  | 'idempotencyKey'
  | 'createdAt'
>;

/** The columns of a UsageRow as stored; read them with {@link usageColumns} (cost as canonical decimal text). */
const USAGE_COLUMNS = [
  'id',
  'userId',
  'modelId',
  'agentId',
  'messageId',
  'type',
  'inputTokens',
  'outputTokens',
  'cacheReadTokens',
  'cacheWriteTokens',
  'cost',
  'idempotencyKey',
  'createdAt',
] as const satisfies readonly (keyof UsageRow)[];

/** USAGE_COLUMNS for a select, `cost` as canonical decimal text (see decimalText). */
export function usageColumns(eb: ExpressionBuilder<DB, 'usage'>) {
  return [...USAGE_COLUMNS.filter((c) => c !== 'cost'), decimalText(eb.ref('cost')).as('cost')] as const;
}

/** What recordUsage charges: a model call of a user, with its token counts. */
export interface RecordUsageParams {
  userId: string;
  /** A model of the catalog; its per-1k prices at the time of the call give the cost. */
  modelId: number;
  /** What the call was ('chat', 'embedding', 'title', ...): non-empty text. */
  type: string;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  /**
   * The agent the call ran for: one the user may use (global, tenant-wide, the user's own or
   * shared with the user); any other → NotFoundError('agent') and nothing charged.
   */
  agentId?: string | null;
  /** The tenant's message the call answered. */
  messageId?: string | null;
  /**
   * Charge once per key and tenant: a repeat of the same request (every other field equal, an
   * omitted field counting as its default) returns the first usage row as it is and charges
   * nothing, also when the budget no longer covers it or the price changed since; a repeat with
   * any other field different is refused with IdempotencyConflictError, and charges nothing.
   */
  idempotencyKey?: string | null;
}

/** The bucket size of costSummary. `week` buckets start on Monday (ISO weeks), all in UTC. */
export type CostPeriod = 'day' | 'week' | 'month';
/** The optional second grouping of costSummary. */
export type CostGrouping = 'model' | 'user' | 'agent';

/** Parameters of costSummary: usage with `from <= created_at < to`, bucketed by `groupBy`. */
export interface CostSummaryParams {
  /** Years 1..9999 (MIN_DATE .. MAX_DATE), like `to`. */
  from: Date;
  to: Date;
  groupBy: CostPeriod;
  by?: CostGrouping;
  /** Most rows the call may return (default MAX_COST_SUMMARY_ROWS, 10,000; at most MAX_COST_SUMMARY_ROWS_CEILING). */
  maxRows?: number;
}

/** One bucket of costSummary. */
export interface CostSummaryRow {
  /** Start of the bucket (UTC midnight of the day, of the ISO week's Monday, of the month's 1st). */
  period: Date;
  /** The model id (number), user id or agent id (string; null for calls without an agent); absent without `by`. */
  key?: string | number | null;
  /** Exact sum of the costs, decimal text without trailing zeros ('0.012207'). */
  cost: string;
  inputTokens: number;
  outputTokens: number;
  /** Number of usage rows (charged calls) in the bucket. */
  calls: number;
}

/**
 * Charges a model call to a user in the current tenant: inserts the usage row, with its cost
 * computed in SQL from the model's numeric per-1k prices, and takes that cost off the user's
 * `remaining` budget in the same statement (no decrement when the user has no budget). Not enough
 * budget → BudgetExceededError and nothing written, even when the caller catches it and goes on in
 * the same transaction. A repeated idempotencyKey charges nothing: with the same parameters
 * (userId, modelId, type, the four token counts, agentId, messageId; an omitted one counts as 0 or
 * null; UUIDs in any case) it returns the first row as stored, its cost included even when the
 * model's price changed since; with any of them different it throws IdempotencyConflictError
 * naming the key and the differing fields (never the first request's values). Also when the calls
 * race. The agent, message, model and user are checked first (NotFoundError); an `agentId` the
 * user may not use (another user's private agent, another tenant's) is refused exactly like one
 * that does not exist: NotFoundError('agent'), nothing charged. One round trip; two on a repeated
 * key, a refusal, a crossed alert threshold, or the first charge of this process for a capped tenant.
 *
 * Spend control (migration 0015): the charge must fit what is left of the user's budget window
 * (less the user's active reservations) and of the tenant's monthly cap (less the tenant's), else
 * BudgetExceededError with `limit` 'user' or 'tenant'. A charge counts in the window its
 * transaction's instant falls in; the first charge of a new window starts it at the full budget
 * (no scheduler). When a charge of a later instant opened a later window first, this one counts
 * there, its createdAt that window's start: no charge goes back into a closed window. A charge
 * that crosses an alert threshold records the alert (see listBudgetAlerts) in one more statement.
 *
 * Concurrency: the statement locks the user's row (`for no key update`, only when the user has a
 * budget) before it inserts, and holds the lock until the caller's transaction ends, so charges of
 * one budgeted user are serialized and each sees the remaining budget the previous one left. For
 * a tenant with a cap it locks the tenant's tenant_spend row too: its charges are serialized.
 * The usage row's trigger adds it to its usage_rollups bucket (tenant, UTC day, user, model,
 * agent) and its usage_day_rollups bucket (tenant, UTC day, model, agent, stripe of the user),
 * whose rows stay locked until the transaction ends: charges of one user in one bucket take turns
 * even without a budget; another user's charge waits only when its user shares the stripe (1 in 8).
 *
 * @example
 * const usage = await withTenant(db, tenantId, (tx) =>
 *   recordUsage(tx, { userId, modelId, type: 'chat', inputTokens: 1234, outputTokens: 567, idempotencyKey: requestId }));
 * usage.cost; // '0.012207' at 0.003 / 0.015 per 1k tokens
 *
 * Roles: app_gateway (README, "Production roles").
 */
export async function recordUsage(db: TenantTx, params: RecordUsageParams): Promise<UsageRow> {
  assertRole(db, 'recordUsage');
  const tenantId = tenantOf(db);
  return charge(db, tenantId, validateRecordUsage(params), false);
}

/**
 * recordUsage's loop, also settleUsage's (`settle`: charged whatever is left of the budgets, the
 * user's remaining floored at 0; see settleUsage for the bound).
 */
export async function charge(db: TenantTx, tenantId: string, call: ValidCall, settle: boolean): Promise<UsageRow> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await chargeOnce(db, tenantId, call, settle);
    if (outcome.modelFound !== true) throw new NotFoundError('model', call.modelId);
    if (outcome.userFound !== true) throw await uncharged(db, tenantId, call.userId);
    if (outcome.agentFound !== true) throw new NotFoundError('agent', call.agentId ?? '');
    if (outcome.messageFound !== true) throw new NotFoundError('message', call.messageId ?? '');
    if (outcome.inserted !== null) {
      await recordAlerts(db, tenantId, outcome.inserted, outcome.alertInputs);
      return outcome.inserted;
    }
    // Nothing inserted: the key was used before (the conflict, or a repeat the budget no longer
    // covers) or the budget is short. A new statement sees rows committed since the first began.
    if (call.idempotencyKey !== null) {
      const existing = await db
        .selectFrom('usage')
        .select(usageColumns)
        .where('tenantId', '=', tenantId)
        .where('idempotencyKey', '=', call.idempotencyKey)
        .executeTakeFirst();
      if (existing !== undefined) return firstRowOf(call.idempotencyKey, call, existing);
    }
    if (outcome.retryCapped) {
      // The tenant has a cap this process did not know of: charge again, in the capped shape.
    } else if (!outcome.tenantOpen) {
      // The tenant's first charge under a cap: create its spend row, then charge again.
      await sql`select app.open_tenant_spend()`.execute(db);
    } else if (outcome.budgetShort) {
      throw new BudgetExceededError(call.userId, outcome.cost ?? '', outcome.remaining ?? '', 'user');
    } else if (outcome.tenantShort) {
      throw new BudgetExceededError(call.userId, outcome.cost ?? '', outcome.tenantRemaining ?? '', 'tenant');
    }
    // A conflicting row that was deleted before we could read it: charge again.
    if (attempt >= MAX_ATTEMPTS) {
      throw new Error(`recordUsage: idempotency key ${JSON.stringify(call.idempotencyKey)} conflicted ${attempt} times but its row cannot be read`);
    }
  }
}

/**
 * Cost, tokens and calls of the current tenant's usage per UTC day, ISO week or month, and
 * optionally per model, user or agent; sums are exact, in SQL. The whole UTC days of the range are
 * summed from exact buckets kept by the charge's own statement (usage_day_rollups, per UTC day, model,
 * agent and stripe of users, migration 0025; by user usage_rollups, per UTC day, user, model and
 * agent, 0021), the partial days at its ends from usage. At most `maxRows` rows (default
 * MAX_COST_SUMMARY_ROWS, 10,000): a range and grouping with more → ValidationError('maxRows')
 * saying how to narrow it (the rows past the limit are never sent). `from` and `to` are Dates of
 * years 1..9999 (ValidationError otherwise, never PostgreSQL's 22008).
 *
 * @example
 * const perModel = await withTenant(db, tenantId, (tx) =>
 *   costSummary(tx, { from: new Date('2025-01-01'), to: new Date('2025-02-01'), groupBy: 'day', by: 'model' }));
 * // [{ period: 2025-01-01T00:00:00.000Z, key: 3, cost: '1.25', inputTokens: 120000, outputTokens: 8000, calls: 42 }, ...]
 *
 * Roles: app_server (README, "Production roles").
 */
export async function costSummary(db: TenantTx, params: CostSummaryParams): Promise<CostSummaryRow[]> {
  assertRole(db, 'costSummary');
  const tenantId = tenantOf(db);
  const { from, to, groupBy, by, maxRows } = validateCostSummary(params);
  // The whole UTC days of [from, to) come from the rollups, kept exact by the charge's own
  // statement: usage_day_rollups (migration 0025: one row per tenant, UTC day, model, agent and
  // stripe of users, so a month is a bounded number of rows however many users charge) for every
  // grouping but by user, usage_rollups (0021: one row per tenant, UTC day, user, model and agent)
  // by user; the partial days at either end from usage itself. With c1 = from rounded up to a UTC midnight and c2 = to rounded
  // down: days [c1, c2) from the buckets, usage rows [from, least(c1, to)) and
  // [greatest(c2, least(c1, to)), to) — all of [from, to) once when it lies within one day.
  const utcFrom = sql`(${from}::timestamptz at time zone 'UTC')`;
  const utcTo = sql`(${to}::timestamptz at time zone 'UTC')`;
  const c1 = sql`(date_trunc('day', ${utcFrom} + interval '1 day' - interval '1 microsecond') at time zone 'UTC')`;
  const c2 = sql`(date_trunc('day', ${utcTo}) at time zone 'UTC')`;
  const firstDay = sql`(${utcFrom} + interval '1 day' - interval '1 microsecond')::date`;
  const endDay = sql`${utcTo}::date`;
  const key = by === undefined ? undefined : KEY_COLUMNS[by];
  const keyOf = (alias: string) => (key === undefined ? sql`` : sql`, ${sql.id(alias, key)} as key`);
  // groupBy is one of three words (checked above): a literal, so that the select list and the
  // GROUP BY hold the same expression.
  const period = sql`date_trunc(${sql.lit(groupBy)}, p.utc_day) at time zone 'UTC'`;
  const { rows } = await sql<{ period: Date; key?: string | number | null; cost: string; inputTokens: string | number; outputTokens: string | number; calls: string | number }>`
    with p as (
      select r.day::timestamp as utc_day${keyOf('r')}, r.cost, r.input_tokens, r.output_tokens, r.calls
      from ${by === 'user' ? sql`usage_rollups` : sql`usage_day_rollups`} r
      where r.tenant_id = ${tenantId}::uuid and r.day >= ${firstDay} and r.day < ${endDay}
      union all
      select u.created_at at time zone 'UTC'${keyOf('u')}, u.cost, u.input_tokens, u.output_tokens, 1
      from usage u
      where u.tenant_id = ${tenantId}::uuid and u.created_at >= ${from}::timestamptz and u.created_at < least(${c1}, ${to}::timestamptz)
      union all
      select u.created_at at time zone 'UTC'${keyOf('u')}, u.cost, u.input_tokens, u.output_tokens, 1
      from usage u
      where u.tenant_id = ${tenantId}::uuid and u.created_at >= greatest(${c2}, least(${c1}, ${to}::timestamptz)) and u.created_at < ${to}::timestamptz
    )
    select ${period} as period${key === undefined ? sql`` : sql`, p.key`},
           trim_scale(sum(p.cost)) as cost,
           -- pg returns int8/numeric sums as text and PGlite as number: Number() below makes both a number.
           sum(p.input_tokens) as input_tokens, sum(p.output_tokens) as output_tokens, sum(p.calls) as calls
    from p
    group by 1${key === undefined ? sql`` : sql`, p.key`}
    order by 1${key === undefined ? sql`` : sql`, p.key`}
    limit ${maxRows + 1}`.execute(db);
  if (rows.length > maxRows) {
    const limit = limitName(maxRows, MAX_COST_SUMMARY_ROWS, 'MAX_COST_SUMMARY_ROWS', 'maxRows');
    const narrower = [
      'narrow from..to',
      ...(groupBy === 'month' ? [] : [`ask for a longer groupBy (${groupBy === 'day' ? "'week' or 'month'" : "'month'"})`]),
      ...(by === undefined ? [] : ['leave out by']),
      `pass a larger maxRows (at most ${MAX_COST_SUMMARY_ROWS_CEILING})`,
    ];
    throw new ValidationError(
      'maxRows',
      `costSummary from ${from.toISOString()} to ${to.toISOString()} by ${groupBy}${by === undefined ? '' : ` and ${by}`} has more than ` +
        `${maxRows} rows (${limit}): ${narrower.join(', ')}`,
    );
  }
  return rows.map((row) => ({
    period: row.period,
    ...(key === undefined ? {} : { key: row.key ?? null }),
    cost: row.cost,
    inputTokens: Number(row.inputTokens),
    outputTokens: Number(row.outputTokens),
    calls: Number(row.calls),
  }));
}

/**
 * The parameters that make a call the same request as the usage row its key wrote: all of them but
 * the key, and not the cost, which follows the model's price at the time of the call (a repeat
 * after a price change is still the same request). Rows written before keys were bound to their
 * request hold the same columns, so they compare the same way. A row whose agent or message was
 * deleted since holds null there (`on delete set null`): a repeat naming it is refused earlier, by
 * the charge statement's NotFoundError.
 */
const REQUEST_FIELDS = [
  'userId',
  'modelId',
  'type',
  'inputTokens',
  'outputTokens',
  'cacheReadTokens',
  'cacheWriteTokens',
  'agentId',
  'messageId',
] as const satisfies readonly (keyof ValidCall & keyof UsageRow)[];

/** UUID parameters: accepted in either case (assertUuid), stored and read back in lower case. */
const UUID_FIELDS: ReadonlySet<string> = new Set(['userId', 'agentId', 'messageId']);

/** The row `key` wrote when `call` is the same request (REQUEST_FIELDS); IdempotencyConflictError naming the differing fields otherwise. */
function firstRowOf(key: string, call: ValidCall, row: UsageRow): UsageRow {
  const differing = REQUEST_FIELDS.filter((field) => {
    const given = call[field];
    const stored = row[field];
    return UUID_FIELDS.has(field) && typeof given === 'string' && typeof stored === 'string'
      ? given.toLowerCase() !== stored.toLowerCase()
      : given !== stored;
  });
  if (differing.length > 0) throw new IdempotencyConflictError(key, differing);
  return row;
}

/** The column of usage and of the rollups that each `by` of costSummary groups by. */
const KEY_COLUMNS = { model: 'model_id', user: 'user_id', agent: 'agent_id' } as const;

export interface ValidCall {
  userId: string;
  modelId: number;
  type: string;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  agentId: string | null;
  messageId: string | null;
  idempotencyKey: string | null;
}

export function validateRecordUsage(params: RecordUsageParams): ValidCall {
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  assertUuid('userId', params.userId);
  assertInt4('modelId', params.modelId, 1);
  assertText('type', params.type, MAX_TYPE_LENGTH);
  const cacheReadTokens = params.cacheReadTokens ?? 0;
  const cacheWriteTokens = params.cacheWriteTokens ?? 0;
  assertInt4('inputTokens', params.inputTokens, 0);
  assertInt4('outputTokens', params.outputTokens, 0);
  assertInt4('cacheReadTokens', cacheReadTokens, 0);
  assertInt4('cacheWriteTokens', cacheWriteTokens, 0);
  const agentId = params.agentId ?? null;
  const messageId = params.messageId ?? null;
  const idempotencyKey = params.idempotencyKey ?? null;
  if (agentId !== null) assertUuid('agentId', agentId);
  if (messageId !== null) assertUuid('messageId', messageId);
  if (idempotencyKey !== null) assertText('idempotencyKey', idempotencyKey, MAX_IDEMPOTENCY_KEY_LENGTH);
  return {
    userId: params.userId,
    modelId: params.modelId,
    type: params.type,
    inputTokens: params.inputTokens,
    outputTokens: params.outputTokens,
    cacheReadTokens,
    cacheWriteTokens,
    agentId,
    messageId,
    idempotencyKey,
  };
}

function validateCostSummary(params: CostSummaryParams): Omit<CostSummaryParams, 'maxRows'> & { maxRows: number } {
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  const { from, to, groupBy, by } = params;
  assertDate('from', from);
  assertDate('to', to);
  if (from.getTime() > to.getTime()) throw new ValidationError('to', 'must not be before from');
  const maxRows = limitOption('maxRows', params.maxRows, MAX_COST_SUMMARY_ROWS, MAX_COST_SUMMARY_ROWS_CEILING);
  if (!(['day', 'week', 'month'] as unknown[]).includes(groupBy)) {
    throw new ValidationError('groupBy', `must be 'day', 'week' or 'month', got ${JSON.stringify(groupBy)}`);
  }
  if (by !== undefined && !Object.hasOwn(KEY_COLUMNS, by)) {
    throw new ValidationError('by', `must be 'model', 'user' or 'agent', got ${JSON.stringify(by)}`);
  }
  return by === undefined ? { from, to, groupBy, maxRows } : { from, to, groupBy, by, maxRows };
}

/** A safe integer that fits an SQL `integer` column, >= min. */
function assertInt4(field: string, value: unknown, min: number): asserts value is number {
  assertInt(field, value, min);
  if (value > MAX_INT4) throw new ValidationError(field, `must be at most ${MAX_INT4}, got ${value}`);
}

interface ChargeOutcome {
  modelFound: boolean | null;
  userFound: boolean | null;
  agentFound: boolean | null;
  messageFound: boolean | null;
  /** The user has a budget and what is left of its window (less active holds) is less than the cost. */
  budgetShort: boolean;
  /** The tenant has a monthly cap and what is left of it (less active holds) is less than the cost. */
  tenantShort: boolean;
  /** False: the tenant has a cap but no tenant_spend row yet (nothing charged). */
  tenantOpen: boolean;
  /** The uncapped shape ran for a tenant with a cap: nothing charged, charge again (capped). */
  retryCapped: boolean;
  cost: string | null;
  remaining: string | null;
  tenantRemaining: string | null;
  inserted: UsageRow | null;
  /** The budgets as the charge read them, for recordAlerts. */
  alertInputs: AlertInputs;
}

/** The budgets a charge read under its locks, and the tenant's alert thresholds (percent). */
interface AlertInputs {
  budget: string | null;
  spentBefore: string | null;
  windowStart: Date | null;
  cap: string | null;
  tenantSpentBefore: string | null;
  tenantWindowStart: Date | null;
  thresholds: number[];
}

/**
 * Records the alerts a charge raised: each threshold of the user's budget window and of the
 * tenant's month that the charge took spend past (before < threshold % of the budget <= after),
 * compared exactly, from the values the charge statement read under its row locks. Crossings are
 * rare (a few per window), so the charge statement stays small and this second statement runs
 * only then, in the same transaction; once per window and threshold (unique index, DO NOTHING,
 * also when charges race); each new alert notifies channel budget_alerts at commit.
 */
async function recordAlerts(db: TenantTx, tenantId: string, usage: UsageRow, a: AlertInputs): Promise<void> {
  const rows: { userId: string | null; scope: 'user' | 'tenant'; windowStart: Date | null; threshold: number; budget: string; spent: string }[] = [];
  const crossed = (budget: string, before: string) =>
    a.thresholds.filter((t) => {
      // Most charges cross nothing: decided in floating point when the spend is clearly apart
      // from the threshold (a margin far above doubles' error on these decimals), exactly otherwise.
      const line = (Number(budget) * t) / 100;
      const margin = Math.abs(line) * 1e-9 + 1e-12;
      if (Number(before) + Number(usage.cost) < line - margin || Number(before) > line + margin) return false;
      const b = exact(budget);
      if (b.value <= 0n) return false;
      const lhsBefore = mul(exact(before), 100n);
      const lhsAfter = mul(add(exact(before), exact(usage.cost)), 100n);
      const rhs = mul(b, BigInt(t));
      return cmp(lhsBefore, rhs) < 0 && cmp(lhsAfter, rhs) >= 0;
    });
  if (a.budget !== null && a.spentBefore !== null) {
    for (const t of crossed(a.budget, a.spentBefore)) {
      rows.push({ userId: usage.userId, scope: 'user', windowStart: a.windowStart, threshold: t, budget: a.budget, spent: a.spentBefore });
    }
  }
  if (a.cap !== null && a.tenantSpentBefore !== null) {
    for (const t of crossed(a.cap, a.tenantSpentBefore)) {
      rows.push({ userId: null, scope: 'tenant', windowStart: a.tenantWindowStart, threshold: t, budget: a.cap, spent: a.tenantSpentBefore });
    }
  }
  if (rows.length === 0) return;
  const values = rows.map(
    (r) => sql`(${tenantId}::uuid, ${r.userId}::uuid, ${r.scope}::text, coalesce(${r.windowStart}::timestamptz, '-infinity'), ${r.threshold}::integer,
      ${r.threshold >= 100 ? 'critical' : 'warning'}::text, ${r.budget}::numeric, ${r.spent}::numeric + ${usage.cost}::numeric, ${usage.id}::uuid)`,
  );
  await sql`
    with al as (
      insert into budget_alerts (tenant_id, user_id, scope, window_start, threshold, severity, budget, spent, usage_id)
      values ${sql.join(values)}
      on conflict do nothing
      returning tenant_id, id
    )
    select count(pg_notify('budget_alerts', json_build_object('tenantId', al.tenant_id, 'alertId', al.id)::text)) as notified from al`.execute(db);
}

/** An exact decimal as an integer and a power-of-ten scale ('0.15' → 15n, 2). */
interface Exact {
  value: bigint;
  scale: number;
}
function exact(text: string): Exact {
  const negative = text.startsWith('-');
  const [whole, fraction = ''] = (negative ? text.slice(1) : text).split('.') as [string, string?];
  const value = BigInt(whole + fraction);
  return { value: negative ? -value : value, scale: fraction.length };
}
function rescale(x: Exact, scale: number): bigint {
  return x.value * 10n ** BigInt(scale - x.scale);
}
function add(x: Exact, y: Exact): Exact {
  const scale = Math.max(x.scale, y.scale);
  return { value: rescale(x, scale) + rescale(y, scale), scale };
}
function mul(x: Exact, n: bigint): Exact {
  return { value: x.value * n, scale: x.scale };
}
function cmp(x: Exact, y: Exact): number {
  const scale = Math.max(x.scale, y.scale);
  const d = rescale(x, scale) - rescale(y, scale);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** The shapes of the charge statement: agentId and messageId given or not; a settle or a charge. */
interface ChargeShape {
  agent: boolean;
  message: boolean;
  settle: boolean;
  /** The tenant has a spend cap: lock and raise its tenant_spend row (see {@link cappedTenants}). */
  capped: boolean;
}

/**
 * Tenants last seen with a spend cap (true) or without (false), in this process: which shape of
 * the charge statement to try first. Only a hint: the statement checks the cap itself, and a
 * wrong guess costs one more round trip (recordUsage charges again in the other shape).
 */
const cappedTenants = new Map<string, boolean>();
const MAX_CAPPED_TENANTS = 10_000;

function rememberCapped(tenantId: string, capped: boolean): void {
  if (cappedTenants.get(tenantId) === capped) return;
  if (cappedTenants.size >= MAX_CAPPED_TENANTS) cappedTenants.clear();
  cappedTenants.set(tenantId, capped);
}

/** Runs the charge statement once and reads what it did. */
async function chargeOnce(db: TenantTx, tenantId: string, call: ValidCall, settle: boolean): Promise<ChargeOutcome> {
  const capped = cappedTenants.get(tenantId) ?? false;
  const shape: ChargeShape = { agent: call.agentId !== null, message: call.messageId !== null, settle, capped };
  const { rows } = await chargeStatement(db, { ...call, tenantId }, shape).execute(db);
  const row = rows[0];
  if (row === undefined) throw new Error('recordUsage: the charge statement returned no row');

  // The inserted row: its id, cost and instant as the server decided them, every other field the
  // call's (inserted as given: UUIDs in their canonical lower case, text stored exactly, see
  // validateRecordUsage), which the statement need not send back.
  const inserted: UsageRow | null =
    row.id === null
      ? null
      : {
          id: row.id,
          userId: call.userId.toLowerCase(),
          modelId: call.modelId,
          agentId: call.agentId === null ? null : call.agentId.toLowerCase(),
          messageId: call.messageId === null ? null : call.messageId.toLowerCase(),
          type: call.type,
          inputTokens: call.inputTokens,
          outputTokens: call.outputTokens,
          cacheReadTokens: call.cacheReadTokens,
          cacheWriteTokens: call.cacheWriteTokens,
          cost: row.insertedCost!,
          idempotencyKey: call.idempotencyKey,
          createdAt: row.createdAt!,
        };
  const tenantOpen = row.tenantOpen ?? true;
  const tenantRemaining = row.tenantRemaining ?? null;
  rememberCapped(tenantId, row.capped);
  const budgeted = row.remaining !== null;
  if (inserted !== null && ((budgeted && !row.charged) || (tenantRemaining !== null && row.tenantCharged !== true))) {
    // Cannot happen while the locks taken in `b` and `tb` hold; this keeps a future edit of the SQL honest.
    throw new Error('recordUsage: a usage row was inserted without charging the budget');
  }
  return {
    modelFound: row.modelFound,
    userFound: row.userFound,
    agentFound: row.agentFound,
    messageFound: row.messageFound,
    budgetShort: inserted === null && row.budgetShort === true,
    tenantShort: inserted === null && row.tenantShort === true,
    tenantOpen,
    retryCapped: inserted === null && row.capped && !capped,
    cost: row.cost,
    remaining: row.remaining,
    tenantRemaining,
    inserted,
    alertInputs: {
      budget: row.budget,
      spentBefore: row.spentBefore,
      windowStart: row.windowStart,
      cap: row.cap,
      tenantSpentBefore: row.tenantSpentBefore ?? null,
      tenantWindowStart: row.tenantWindowStart ?? null,
      thresholds: Array.isArray(row.thresholds) ? (row.thresholds as number[]) : [],
    },
  };
}

/**
 * The one statement of recordUsage, compiled once per shape (agentId and messageId given or not;
 * see statementTemplate). In order of evaluation:
 *   m     the cost, from the model's prices (exact: `* 0.001` multiplies, it never rounds);
 *   u     the user, when visible in this tenant (not locked);
 *   b     the same row when it has a budget (`remaining is not null`), locked FOR NO KEY UPDATE:
 *         waits for a concurrent charge to end and then reads the `remaining` it left (READ
 *         COMMITTED re-reads a row it had to wait for); a user without a budget is not locked;
 *   refs  the agent's scope when the agent, if given, is one the charged user may use
 *         (visibleAgent: global, tenant-wide, the user's own or shared with the user; NULL
 *         otherwise), and whether the message, when given, is the tenant's;
 *   ins   the usage row, only when all of the above hold and the locked budget covers the cost;
 *         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING waits for a concurrent insert of
 *         the same key and then inserts nothing;
 *   dec   `remaining - cost` for the row `ins` returned (none on a conflict: no double charge),
 *         the one conditional update of the budget.
 * The final select reports what happened, so that errors need no further query.
 */
const chargeStatement = statementTemplate(
  (db: Kysely<DB>, call: ValidCall & { tenantId: string }, shape: ChargeShape) =>
    db
      .with('m', (qb) =>
        qb
          .selectFrom('models')
          .select((eb) =>
            sql<string>`trim_scale((${call.inputTokens}::numeric * ${eb.ref('cost1kInput')}
              + ${call.outputTokens}::numeric * ${eb.ref('cost1kOutput')}
              + ${call.cacheReadTokens}::numeric * ${eb.ref('cost1kCacheRead')}
              + ${call.cacheWriteTokens}::numeric * ${eb.ref('cost1kCacheWrite')}) * 0.001)`.as('cost'),
          )
          .where('id', '=', call.modelId),
      )
      .with('u', (qb) =>
        qb
          .selectFrom('users')
          .select(sql<boolean>`true`.as('found'))
          .where('tenantId', '=', call.tenantId)
          .where('id', '=', call.userId).where('status', '=', sql.lit('active')),
      )
      .with('b', (qb) =>
        qb
          .selectFrom('users')
          .select([
            'remaining',
            'budget',
            // What is left of the window the charge counts in: the full budget when the charge
            // opens a window after the stored one, else the stored remaining (also when a charge of
            // a later instant opened a later window first: this one counts there, see recordUsage).
            sql<string>`case when budget_period <> 'none' and (budget_window_start is null
              or budget_window_start < app.budget_window_start(budget_period, budget_window_offset_ms, now()))
              then budget else remaining end`.as('base'),
            sql<Date | null>`case when budget_period <> 'none'
              then greatest(budget_window_start, app.budget_window_start(budget_period, budget_window_offset_ms, now())) end`.as('windowStart'),
            sql<string>`case when held_until > now() then held else 0 end`.as('held'),
          ])
          .where('tenantId', '=', call.tenantId)
          .where('id', '=', call.userId)
          .where('remaining', 'is not', null)
          .forNoKeyUpdate(),
      )
      // The tenant's monthly cap (NULL: none) and alert thresholds (percent).
      .with('tc', (qb) =>
        qb
          .selectFrom('tenants')
          .select([
            sql<string | null>`(settings ->> 'maxMonthlySpend')::numeric`.as('cap'),
            sql<unknown>`coalesce(settings -> 'budgetAlertThresholds', '[80, 100]'::jsonb)`.as('thresholds'),
          ])
          .where('id', '=', call.tenantId),
      )
      // The tenant's spend row, locked, when it has a cap: spent in the month of the charge (the
      // row's month, or nothing yet of a month after it) and its active holds.
      .with('tb', (qb) =>
        shape.capped
          ? qb
              .selectFrom('tenantSpend')
              .select([
                sql<string>`case when window_start >= app.budget_window_start('month', 0, now()) then spent else 0 end`.as('spent'),
                sql<Date>`greatest(window_start, app.budget_window_start('month', 0, now()))`.as('windowStart'),
                sql<string>`case when held_until > now() then held else 0 end`.as('held'),
              ])
              .where('tenantId', '=', call.tenantId)
              .where(sql<boolean>`exists (select from tc where cap is not null)`)
              .forNoKeyUpdate()
          : // Uncapped shape: no spend row to lock or raise (a tenant that has a cap after all is
            // refused below, and recordUsage charges again in the capped shape).
            (qb
              .selectNoFrom([sql<string>`null::numeric`.as('spent'), sql<Date>`null::timestamptz`.as('windowStart'), sql<string>`null::numeric`.as('held')])
              .where(sql<boolean>`false`) as never),
      )
      .with('refs', (qb) =>
        qb.selectNoFrom((eb) => [
          // The agent's scope when the charged user may use it (NULL otherwise, and without an
          // agent): the row's half of the key (agent_scope, agent_id) -> agents (scope, id).
          sql<string | null>`${
            shape.agent
              ? eb
                  .selectFrom('agents as a')
                  .select('a.scope')
                  .where('a.id', '=', call.agentId)
                  .where((eb) => visibleAgent(eb, call.tenantId, { userId: call.userId }))
              : sql`null::uuid`
          }`.as('agentScope'),
          sql<boolean>`${
            !shape.message
              ? sql`true`
              : eb.exists(
                  eb
                    .selectFrom('messages')
                    .select('messages.id')
                    .where('messages.tenantId', '=', call.tenantId)
                    .where('messages.id', '=', call.messageId),
                )
          }`.as('messageFound'),
        ]),
      )
      .with('ins', (qb) =>
        qb
          .insertInto('usage')
          .columns([
            'tenantId',
            'userId',
            'modelId',
            'agentId',
            'agentScope',
            'messageId',
            'type',
            'inputTokens',
            'outputTokens',
            'cacheReadTokens',
            'cacheWriteTokens',
            'cost',
            'idempotencyKey',
            'createdAt',
          ])
          .expression((eb) =>
            eb
              .selectFrom('m')
              .innerJoin('u', (join) => join.onTrue())
              .innerJoin('refs', (join) => join.onTrue())
              .leftJoin('b', (join) => join.onTrue())
              .leftJoin('tc', (join) => join.onTrue())
              .$if(shape.capped, (qb) => qb.leftJoin('tb', (join) => join.onTrue()))
              .select([
                sql<string>`${call.tenantId}::uuid`.as('tenantId'),
                sql<string>`${call.userId}::uuid`.as('userId'),
                sql<number>`${call.modelId}::integer`.as('modelId'),
                sql<string | null>`${call.agentId}::uuid`.as('agentId'),
                'refs.agentScope',
                sql<string | null>`${call.messageId}::uuid`.as('messageId'),
                sql<string>`${call.type}::text`.as('type'),
                sql<number>`${call.inputTokens}::integer`.as('inputTokens'),
                sql<number>`${call.outputTokens}::integer`.as('outputTokens'),
                sql<number>`${call.cacheReadTokens}::integer`.as('cacheReadTokens'),
                sql<number>`${call.cacheWriteTokens}::integer`.as('cacheWriteTokens'),
                'm.cost',
                sql<string | null>`${call.idempotencyKey}::text`.as('idempotencyKey'),
                // The charge's instant: its transaction's, or the start of a later window a
                // charge of a later instant already opened (it never counts in a closed window).
                (shape.capped ? sql<Date>`greatest(now(), b.window_start, tb.window_start)` : sql<Date>`greatest(now(), b.window_start)`).as('createdAt'),
              ])
              // Literals, not parameters: every parameter of a template comes from its values.
              .$if(shape.agent, (qb) => qb.where('refs.agentScope', 'is not', null))
              .where('refs.messageFound', '=', sql.lit(true))
              // A settle (settleUsage) is charged whatever is left: the call happened.
              .$if(!shape.settle, (qb) =>
                qb
                  .where(sql<boolean>`(b.remaining is null or b.base - b.held >= m.cost)`)
                  .where(shape.capped ? sql<boolean>`(tc.cap is null or tb.spent + tb.held + m.cost <= tc.cap)` : sql<boolean>`true`),
              )
              .$if(shape.settle && shape.capped, (qb) => qb.where(sql<boolean>`(tc.cap is null or tb.spent is not null)`))
              .$if(!shape.capped, (qb) => qb.where(sql<boolean>`tc.cap is null`)),
          )
          .onConflict((oc) => oc.columns(['tenantId', 'idempotencyKey']).doNothing())
          // What dec and tdec read; the row's other fields are the call's own (see chargeOnce).
          .returning(['id', 'tenantId', 'userId', 'cost', 'createdAt']),
      )
      .with('dec', (qb) =>
        qb
          .updateTable('users')
          .from(['ins', 'b'])
          .set({
            remaining: shape.settle ? sql<string>`greatest(b.base - ins.cost, 0)` : sql<string>`b.base - ins.cost`,
            budgetWindowStart: sql<Date | null>`b.window_start`,
          })
          .whereRef('users.tenantId', '=', 'ins.tenantId')
          .whereRef('users.id', '=', 'ins.userId')
          .$if(!shape.settle, (qb) => qb.whereRef('b.base', '>=', 'ins.cost'))
          .returning('users.id'),
      )
      .with('tdec', (qb) =>
        shape.capped
          ? qb
              .updateTable('tenantSpend')
              .from(['ins', 'tb'])
              .set({ spent: sql<string>`tb.spent + ins.cost`, windowStart: sql<Date>`tb.window_start` })
              .whereRef('tenantSpend.tenantId', '=', 'ins.tenantId')
              .returning('tenantSpend.tenantId')
          : (qb.selectNoFrom(sql<string>`null::uuid`.as('tenantId')).where(sql<boolean>`false`) as never),
      )
      .selectFrom('refs')
      .leftJoin('m', (join) => join.onTrue())
      .leftJoin('u', (join) => join.onTrue())
      .leftJoin('b', (join) => join.onTrue())
      .leftJoin('tc', (join) => join.onTrue())
      .$if(shape.capped, (qb) => qb.leftJoin('tb', (join) => join.onTrue()))
      .leftJoin('ins', (join) => join.onTrue())
      .select((eb) => [
        sql<boolean>`m.cost is not null`.as('modelFound'),
        sql<boolean>`u.found is not null`.as('userFound'),
        (shape.agent ? sql<boolean>`${sql.ref('refs.agentScope')} is not null` : sql<boolean>`true`).as('agentFound'),
        'refs.messageFound',
        'm.cost',
        sql<string | null>`case when b.remaining is not null then trim_scale(greatest(b.base - b.held, 0)) end`.as('remaining'),
        sql<boolean | null>`b.base - b.held < m.cost`.as('budgetShort'),
        sql<boolean>`tc.cap is not null`.as('capped'),
        eb.exists(eb.selectFrom('dec').select(sql.lit(1).as('one'))).as('charged'),
        // What the alerts need (see recordAlerts): the budgets and what was spent before this
        // charge, as read under the locks, and the tenant's thresholds.
        sql<string | null>`trim_scale(b.budget)`.as('budget'),
        sql<string | null>`trim_scale(b.budget - b.base)`.as('spentBefore'),
        sql<Date | null>`b.window_start`.as('windowStart'),
        sql<string | null>`trim_scale(tc.cap)`.as('cap'),
        sql<unknown>`tc.thresholds`.as('thresholds'),
        // Of the inserted row, what the server decided; the rest is the call's (see chargeOnce).
        'ins.id',
        decimalText(eb.ref('ins.cost')).as('insertedCost'),
        'ins.createdAt',
      ])
      // The tenant's spend row, in the capped shape only (the uncapped one has none: chargeOnce
      // reads these as absent).
      .$if(shape.capped, (qb) =>
        qb.select((eb) => [
          sql<boolean>`tc.cap is null or tb.spent is not null`.as('tenantOpen'),
          sql<string | null>`case when tb.spent is not null then trim_scale(greatest(tc.cap - tb.spent - tb.held, 0)) end`.as('tenantRemaining'),
          sql<boolean | null>`tb.spent + tb.held + m.cost > tc.cap`.as('tenantShort'),
          eb.exists(eb.selectFrom('tdec').select(sql.lit(1).as('one'))).as('tenantCharged'),
          sql<string | null>`trim_scale(tb.spent)`.as('tenantSpentBefore'),
          sql<Date | null>`tb.window_start`.as('tenantWindowStart'),
        ]),
      )
);
