/**
 * The spend page's data, inside a tenant transaction: cost per UTC day and model from the
 * package's own costSummary (so the role rules apply: it is app_server's), the model names, and
 * the budget state of the tenant's users.
 */
import { sql, type Kysely } from 'kysely';
import { ValidationError } from '../db/errors.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { costSummary } from '../queries/usage.ts';

/** Longest range the spend page charts, in days. */
export const MAX_SPEND_DAYS = 366;
/** Most users listed with their budgets. */
export const MAX_BUDGET_USERS = 500;

/** A UTC date range `[from, to)` of whole days. */
export interface DayRange {
  from: Date;
  to: Date;
}

/** One model's series: cost per day of the range (exact decimal text), in range order. */
export interface ModelSeries {
  modelId: number;
  modelName: string;
  costs: string[];
  total: string;
  calls: number;
}

/** The chart's data: the days of the range and one series per model that was charged in it. */
export interface SpendByDay {
  days: string[];
  series: ModelSeries[];
  total: string;
}

/** A user's budget state, and what the user spent in the range. */
export interface BudgetState {
  userId: string;
  email: string;
  status: string;
  budget: string | null;
  remaining: string | null;
  spentInRange: string;
}

/**
 * The range from `from` to `to` (both `YYYY-MM-DD`, UTC, `to` included), by default the last 30
 * days up to today. ValidationError naming the field otherwise.
 */
export function dayRange(fromText: string | undefined, toText: string | undefined, now = new Date()): DayRange {
  const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  const lastDay = toText === undefined || toText === '' ? today : parseDay('to', toText);
  const from = fromText === undefined || fromText === '' ? addDays(lastDay, -29) : parseDay('from', fromText);
  const to = addDays(lastDay, 1);
  if (from.getTime() >= to.getTime()) throw new ValidationError('from', 'must not be after to');
  if ((to.getTime() - from.getTime()) / 86_400_000 > MAX_SPEND_DAYS) {
    throw new ValidationError('from', `the range may span at most ${MAX_SPEND_DAYS} days`);
  }
  return { from, to };
}

/** A day as `YYYY-MM-DD` (UTC). */
export function dayText(day: Date): string {
  return day.toISOString().slice(0, 10);
}

/** Cost per day stacked by model over `range` (costSummary: app_server's, or app_user's). */
export async function spendByDay(tx: TenantTx, range: DayRange): Promise<SpendByDay> {
  const rows = await costSummary(tx, { from: range.from, to: range.to, groupBy: 'day', by: 'model' });
  const days: string[] = [];
  for (let d = range.from; d.getTime() < range.to.getTime(); d = addDays(d, 1)) days.push(dayText(d));
  const modelIds = [...new Set(rows.map((r) => Number(r.key)))].sort((a, b) => a - b);
  const names = await modelNames(tx, modelIds);
  const series = modelIds.map((modelId) => {
    const mine = rows.filter((r) => Number(r.key) === modelId);
    const byDay = new Map(mine.map((r) => [dayText(new Date(r.period)), r.cost]));
    return {
      modelId,
      modelName: names.get(modelId) ?? `model ${modelId}`,
      costs: days.map((d) => byDay.get(d) ?? '0'),
      total: sumDecimals(mine.map((r) => r.cost)),
      calls: mine.reduce((n, r) => n + r.calls, 0),
    };
  });
  return { days, series, total: sumDecimals(series.map((s) => s.total)) };
}

/** The tenant's users with their budgets and what each spent in `range`, least remaining first. */
export async function budgetStates(db: Kysely<any>, tenantId: string, range: DayRange): Promise<{ users: BudgetState[]; more: boolean }> {
  const { rows } = await sql<{
    user_id: string;
    email: string;
    status: string;
    budget: string | null;
    remaining: string | null;
    spent: string | null;
  }>`
    select u.id as user_id, u.email, u.status, trim_scale(u.budget)::text as budget, trim_scale(u.remaining)::text as remaining,
           (select trim_scale(sum(g.cost))::text from usage g
            where g.tenant_id = u.tenant_id and g.user_id = u.id
              and g.created_at >= ${range.from.toISOString()}::timestamptz and g.created_at < ${range.to.toISOString()}::timestamptz) as spent
    from users u
    where u.tenant_id = ${tenantId}::uuid
    order by u.remaining asc nulls last, u.email, u.id
    limit ${MAX_BUDGET_USERS + 1}`.execute(db.withoutPlugins());
  return {
    users: rows.slice(0, MAX_BUDGET_USERS).map((r) => ({
      userId: r.user_id,
      email: r.email,
      status: r.status,
      budget: r.budget,
      remaining: r.remaining,
      spentInRange: r.spent ?? '0',
    })),
    more: rows.length > MAX_BUDGET_USERS,
  };
}

async function modelNames(db: Kysely<any>, ids: number[]): Promise<Map<number, string>> {
  if (ids.length === 0) return new Map();
  const { rows } = await sql<{ id: number; name: string }>`
    select id, name from models where id in (${sql.join(ids)})`.execute(db.withoutPlugins());
  return new Map(rows.map((r) => [Number(r.id), r.name]));
}

function parseDay(field: string, text: string): Date {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const day = match === null ? undefined : new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])));
  if (day === undefined || Number.isNaN(day.getTime()) || dayText(day) !== text) {
    throw new ValidationError(field, `must be a date as YYYY-MM-DD, got ${JSON.stringify(text)}`);
  }
  return day;
}

function addDays(day: Date, days: number): Date {
  return new Date(day.getTime() + days * 86_400_000);
}

/** Exact sum of decimal texts (BigInt on a common scale; the inputs are numeric text, never floats). */
export function sumDecimals(values: string[]): string {
  const scale = Math.max(0, ...values.map((v) => (v.split('.')[1] ?? '').length));
  let total = 0n;
  for (const v of values) {
    const negative = v.startsWith('-');
    const [whole, fraction = ''] = (negative ? v.slice(1) : v).split('.');
    const units = BigInt(`${whole}${fraction.padEnd(scale, '0')}`);
    total += negative ? -units : units;
  }
  const negative = total < 0n;
  const digits = (negative ? -total : total).toString().padStart(scale + 1, '0');
  const whole = digits.slice(0, digits.length - scale);
  const fraction = digits.slice(digits.length - scale).replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction === '' ? '' : `.${fraction}`}`;
}
