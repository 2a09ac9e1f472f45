import { describe, expect, it } from 'vitest';
import type { ColumnInfo } from '../../src/seed/columns.ts';
import { convertText } from '../../src/seed/convert.ts';

/** A column as readTables reports it, of the given base type. */
function column(baseType: string, extra: Partial<ColumnInfo> = {}): ColumnInfo {
  return {
    name: 'c',
    castType: baseType,
    fullType: baseType,
    baseType,
    category: 'X',
    typmod: -1,
    notNull: false,
    hasDefault: false,
    identity: '',
    generated: false,
    sequence: null,
    enumLabels: null,
    ...extra,
  };
}

describe('convertText converts by the column type, not by the look of the value', () => {
  it('text keeps the field verbatim, numbers and JSON included', () => {
    for (const value of ['0012', ' 7 ', '{"a":1}', '[1,2]', 'true', '']) {
      expect(convertText(value, column('text'))).toEqual({ ok: true, value });
    }
    expect(convertText('abcd', column('varchar', { castType: 'character varying', typmod: 3 + 4 }))).toEqual({
      ok: false,
      message: '4 characters, longer than character varying(3) allows',
    });
  });

  it('integers are checked and range-checked', () => {
    expect(convertText('0012', column('int4'))).toEqual({ ok: true, value: '12' });
    expect(convertText('1.5', column('int4'))).toEqual({ ok: false, message: 'not an integer: "1.5"' });
    expect(convertText('2147483648', column('int4', { castType: 'integer' }))).toMatchObject({ ok: false, message: expect.stringMatching(/out of range for integer/) });
    expect(convertText('9007199254740993', column('int8'))).toEqual({ ok: true, value: '9007199254740993' });
  });

  it('numerics stay decimal strings, never JS floats', () => {
    expect(convertText('0.00075', column('numeric'))).toEqual({ ok: true, value: '0.00075' });
    expect(convertText('0.1000000000000000055511151231257827', column('numeric'))).toEqual({ ok: true, value: '0.1000000000000000055511151231257827' });
    expect(convertText('1,5', column('numeric'))).toMatchObject({ ok: false });
  });

  it('booleans are true or false; uuids, JSON and vectors are validated', () => {
    expect(convertText('TRUE', column('bool'))).toEqual({ ok: true, value: 'true' });
    expect(convertText('yes', column('bool'))).toMatchObject({ ok: false, message: expect.stringMatching(/^not a boolean/) });
    expect(convertText('0000000A-0000-4000-8000-000000000001', column('uuid'))).toEqual({ ok: true, value: '0000000a-0000-4000-8000-000000000001' });
    expect(convertText('0000000A-0000', column('uuid'))).toMatchObject({ ok: false, message: expect.stringMatching(/^not a UUID/) });
    expect(convertText('{"a":[1,"x"]}', column('jsonb'))).toEqual({ ok: true, value: '{"a":[1,"x"]}' });
    expect(convertText('42', column('jsonb'))).toEqual({ ok: true, value: '42' });
    expect(convertText('{a:1}', column('jsonb'))).toMatchObject({ ok: false, message: expect.stringMatching(/^not valid JSON/) });
    expect(convertText('[1, 2.5, -3]', column('vector', { typmod: 3 }))).toEqual({ ok: true, value: '[1,2.5,-3]' });
    expect(convertText('[1,2]', column('vector', { typmod: 3 }))).toMatchObject({ ok: false, message: 'a vector of 2 numbers; the column holds 3' });
  });

  it('an empty field is NULL in a column that is not text; enums take their labels', () => {
    expect(convertText('', column('int4'))).toEqual({ ok: true, value: null });
    expect(convertText('', column('jsonb'))).toEqual({ ok: true, value: null });
    const mood = column('mood', { enumLabels: ['happy', 'sad'] });
    expect(convertText('sad', mood)).toEqual({ ok: true, value: 'sad' });
    expect(convertText('meh', mood)).toMatchObject({ ok: false, message: '"meh" is not one of "happy", "sad"' });
  });
});
