import type { ColumnInfo } from './columns.ts';

/** A value ready to bind (`value` is sent as text and cast to the column's type; null is NULL), or why not. */
export type Converted = { ok: true; value: string | null } | { ok: false; message: string };

const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name', 'citext', 'char']);
const INTEGER_RANGES: Record<string, readonly [bigint, bigint]> = {
  int2: [-32768n, 32767n],
  int4: [-2147483648n, 2147483647n],
  int8: [-9223372036854775808n, 9223372036854775807n],
};
const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const FLOAT_WORDS = /^[+-]?(infinity|inf)$|^nan$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Converts a field's text by the column's SQL type (from the catalog, never by the look of the
 * text): text types keep it verbatim (`0012` stays `0012`); integers, numerics, floats, booleans,
 * uuids, enums, json/jsonb and vectors are checked here and returned in a form PostgreSQL casts
 * exactly (a numeric stays a decimal string, never a JS float). An empty field is '' in a text
 * column and NULL in any other. Types not checked here (dates, arrays, …) pass through for the
 * database to cast.
 *
 * @example
 * convertText('0.00075', numericColumn) // { ok: true, value: '0.00075' }
 * convertText('lots', integerColumn)    // { ok: false, message: 'not an integer: "lots"' }
 */
export function convertText(text: string, column: ColumnInfo): Converted {
  const { baseType } = column;
  // PostgreSQL text (and json) cannot hold U+0000: refuse it here, where the field is known.
  const nul = text.indexOf('\u0000');
  if (nul >= 0) return fail(`contains a NUL character (at position ${nul + 1}), which PostgreSQL cannot store in text`);
  if (TEXT_TYPES.has(baseType)) return checkLength(text, column);
  const value = text.trim();
  if (value === '') return { ok: true, value: null };
  if (baseType in INTEGER_RANGES) {
    if (!INTEGER.test(value)) return fail(`not an integer: ${show(value)}`);
    const n = BigInt(value);
    const [min, max] = INTEGER_RANGES[baseType]!;
    if (n < min || n > max) return fail(`${value} is out of range for ${column.castType} (${min} to ${max})`);
    return { ok: true, value: n.toString() };
  }
  switch (baseType) {
    case 'numeric':
      return DECIMAL.test(value) ? { ok: true, value } : fail(`not a number: ${show(value)} (write a decimal such as 0.00075)`);
    case 'float4':
    case 'float8':
      return DECIMAL.test(value) || FLOAT_WORDS.test(value) ? { ok: true, value } : fail(`not a number: ${show(value)}`);
    case 'bool':
      return /^(true|false)$/i.test(value) ? { ok: true, value: value.toLowerCase() } : fail(`not a boolean: ${show(value)} (write true or false)`);
    case 'uuid':
      return UUID.test(value) ? { ok: true, value: value.toLowerCase() } : fail(`not a UUID: ${show(value)}`);
    case 'json':
    case 'jsonb':
      return checkJson(value);
    case 'vector':
      return checkVector(value, column.typmod);
  }
  if (column.enumLabels !== null) {
    return column.enumLabels.includes(value)
      ? { ok: true, value }
      : fail(`${show(value)} is not one of ${column.enumLabels.map(show).join(', ')}`);
  }
  return { ok: true, value };
}

function checkLength(text: string, column: ColumnInfo): Converted {
  // varchar(n) and char(n) store n + 4 in atttypmod; text has -1.
  const max = (column.baseType === 'varchar' || column.baseType === 'bpchar') && column.typmod > 4 ? column.typmod - 4 : undefined;
  if (max !== undefined && [...text].length > max) return fail(`${[...text].length} characters, longer than ${column.castType}(${max}) allows`);
  return { ok: true, value: text };
}

function checkJson(value: string): Converted {
  try {
    JSON.parse(value);
    return { ok: true, value };
  } catch (error) {
    return fail(`not valid JSON: ${(error as Error).message} in ${show(value)}`);
  }
}

function checkVector(value: string, dimensions: number): Converted {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return fail(`not a vector: ${show(value)} (write a JSON array of numbers such as [0.1,0.2])`);
  }
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    return fail(`not a vector: ${show(value)} (write a JSON array of numbers such as [0.1,0.2])`);
  }
  if (dimensions > 0 && parsed.length !== dimensions) return fail(`a vector of ${parsed.length} numbers; the column holds ${dimensions}`);
  return { ok: true, value: `[${parsed.join(',')}]` };
}

function fail(message: string): Converted {
  return { ok: false, message };
}

/** A value quoted for a message, shortened when long. */
export function show(value: string): string {
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
}
