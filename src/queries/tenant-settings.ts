/**
 * The known keys of tenants.settings and their validation. The database checks the same types
 * (app.tenant_settings_problem, migration 0014: keep the two in step); unknown keys are refused
 * here only, so that settings stored before stay writable. A new setting is added in both places.
 */
import { ValidationError } from '../db/errors.ts';
import { decimal } from './validate.ts';

/** The settings a tenant may have; every key is optional. */
export interface TenantSettings {
  /** The tenant's spend cap per calendar month (UTC), exact decimal text ('1000', '250.5'). */
  maxMonthlySpend?: string;
  /** Percentages of a budget (user window or tenant month) whose crossing records an alert; default [80, 100]. */
  budgetAlertThresholds?: number[];
  /** Origins or hosts the tenant's widgets may run on ('https://acme.com'). */
  allowedDomains?: string[];
  /** Feature flags ('chat', 'knowledge-base'). */
  features?: string[];
}

/** A change of settings: a key set to a value replaces it, `null` removes it, a key left out stays. */
export type TenantSettingsPatch = { [K in keyof TenantSettings]?: TenantSettings[K] | number | null };

/** The keys updateTenant accepts. */
export const TENANT_SETTING_KEYS = ['maxMonthlySpend', 'budgetAlertThresholds', 'allowedDomains', 'features'] as const;

const MAX_LIST = 100;
const LIST_ITEM = /^\S{1,255}$/;
const FEATURE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/**
 * Validates a settings patch: what to set (as JSON text of an object) and which keys to remove.
 * An unknown key or a bad value → ValidationError naming `settings.<key>`.
 */
export function settingsPatch(value: unknown): { set: string; remove: string[] } {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new ValidationError('settings', 'must be an object of settings');
  }
  const set: Record<string, unknown> = {};
  const remove: string[] = [];
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    const field = `settings.${key}`;
    if (!(TENANT_SETTING_KEYS as readonly string[]).includes(key)) {
      throw new ValidationError(field, `is not a known setting (known: ${TENANT_SETTING_KEYS.join(', ')})`);
    }
    if (item === undefined) continue;
    if (item === null) {
      remove.push(key);
      continue;
    }
    if (key === 'maxMonthlySpend') set[key] = canonicalDecimal(decimal(field, item));
    else if (key === 'budgetAlertThresholds') set[key] = thresholds(field, item);
    else set[key] = stringList(field, item, key === 'features' ? FEATURE : LIST_ITEM);
  }
  if (Object.keys(set).length === 0 && remove.length === 0) throw new ValidationError('settings', 'names no setting to change');
  return { set: JSON.stringify(set), remove };
}

/** At most 10 whole percentages 1..1000, kept in ascending order without repeats. */
function thresholds(field: string, value: unknown): number[] {
  if (!Array.isArray(value)) throw new ValidationError(field, 'must be an array of whole percentages (e.g. [80, 100])');
  if (value.length > 10) throw new ValidationError(field, `must hold at most 10 thresholds, got ${value.length}`);
  value.forEach((item, i) => {
    if (!Number.isInteger(item) || (item as number) < 1 || (item as number) > 1000) {
      throw new ValidationError(`${field}[${i}]`, `must be a whole percentage from 1 to 1000, got ${JSON.stringify(item)}`);
    }
  });
  return [...new Set(value as number[])].sort((a, b) => a - b);
}

function stringList(field: string, value: unknown, pattern: RegExp): string[] {
  if (!Array.isArray(value)) throw new ValidationError(field, 'must be an array of strings');
  if (value.length > MAX_LIST) throw new ValidationError(field, `must hold at most ${MAX_LIST} items, got ${value.length}`);
  value.forEach((item, i) => {
    if (typeof item !== 'string' || !pattern.test(item)) {
      throw new ValidationError(`${field}[${i}]`, `must match ${pattern.source}, got ${JSON.stringify(item)}`);
    }
  });
  return [...new Set(value as string[])];
}

/** '0012.500' → '12.5', '0.000' → '0': the package's one decimal form (see decimalText). */
function canonicalDecimal(text: string): string {
  const [whole, fraction = ''] = text.split('.') as [string, string?];
  const w = whole.replace(/^0+(?=\d)/, '');
  const f = fraction.replace(/0+$/, '');
  return f === '' ? w : `${w}.${f}`;
}
