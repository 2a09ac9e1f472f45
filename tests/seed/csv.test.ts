import { describe, expect, it } from 'vitest';
import { parseCsv } from '../../src/seed/csv.ts';

const values = (text: string) => parseCsv(text).records.map((r) => r.fields.map((f) => f.value));

describe('parseCsv', () => {
  it('reads quoted fields with commas, line breaks and doubled quotes', () => {
    expect(values('id,text\n1,"a, b"\n2,"two\nlines"\n3,"say ""hi"""\n')).toEqual([
      ['id', 'text'],
      ['1', 'a, b'],
      ['2', 'two\nlines'],
      ['3', 'say "hi"'],
    ]);
  });

  it('gives every record and field its physical line, counting the lines inside quoted fields', () => {
    const { records } = parseCsv('id,a,b\n1,"x\ny\nz","p\nq"\n2,c,d\n');
    expect(records.map((r) => r.line)).toEqual([1, 2, 6]);
    expect(records[1]!.fields.map((f) => f.line)).toEqual([2, 2, 4]);
    expect(records[2]!.fields.map((f) => f.line)).toEqual([6, 6, 6]);
  });

  it('skips blank lines and a BOM, and reads CRLF files like LF files', () => {
    const { records } = parseCsv('\uFEFFid,a\r\n\r\n1,"x\r\ny"\r\n2,z');
    expect(records.map((r) => [r.line, ...r.fields.map((f) => f.value)])).toEqual([
      [1, 'id', 'a'],
      [3, '1', 'x\ny'],
      [5, '2', 'z'],
    ]);
  });

  it('reports an unclosed quote at the line and field where it opens', () => {
    const { records, problems } = parseCsv('id,a,b\n1,"ok\nok",x\n2,y,"never closed\n3,z,w\n');
    expect(problems).toEqual([{ line: 4, field: 2, message: expect.stringMatching(/^unclosed quote/) }]);
    expect(records.at(-1)).toMatchObject({ line: 4, broken: true });
  });

  it('reports text after a closing quote once, at its field', () => {
    const { problems } = parseCsv('id,a,b\n1,"x"y,z\n');
    expect(problems).toEqual([{ line: 2, field: 1, message: expect.stringMatching(/^malformed quotes/) }]);
  });

  it('returns no records for an empty file', () => {
    expect(parseCsv('')).toEqual({ records: [], problems: [] });
  });
});
