import Papa from 'papaparse';

/** One field of a CSV record: its text and the physical line (1-based) it starts on. */
export interface CsvField {
  value: string;
  line: number;
}

/** One record of a CSV file: its fields and the physical line (1-based) it starts on. */
export interface CsvRecord {
  line: number;
  fields: CsvField[];
  /** True when the record has a quoting problem (its fields cannot be trusted). */
  broken: boolean;
}

/** A quoting problem: the physical line of the field it is in, the field's 0-based index, what is wrong. */
export interface CsvSyntaxProblem {
  line: number;
  field: number;
  message: string;
}

/** What {@link parseCsv} found: the records (the header first) and the quoting problems. */
export interface ParsedCsv {
  records: CsvRecord[];
  problems: CsvSyntaxProblem[];
}

const MESSAGES: Record<string, string> = {
  MissingQuotes:
    'unclosed quote: the quoted field that starts here has no closing quote, so the rest of the file was read into it',
  InvalidQuotes:
    'malformed quotes: text follows the closing quote of this quoted field (inside a quoted field, write a quote as "")',
};

/**
 * Parses comma-separated text with papaparse (RFC 4180: a quoted field may hold commas, newlines
 * and doubled quotes) into records that know the physical line of every field. A leading BOM and
 * blank lines are skipped; line ends (`\r\n`, `\r`) become `\n` first, inside quoted fields too, so
 * a file saved on Windows or with mixed line ends loads the same values. Never throws: quoting
 * problems are returned, located by line and field.
 *
 * @example
 * parseCsv('id,text\n1,"two\nlines"\n2,x\n').records.map((r) => r.line) // [1, 2, 4]
 */
export function parseCsv(text: string): ParsedCsv {
  const source = (text.startsWith('\uFEFF') ? text.slice(1) : text).replace(/\r\n?/g, '\n');
  const lineOf = lineLocator(source);
  const records: CsvRecord[] = [];
  const problems: CsvSyntaxProblem[] = [];
  let start = 0;
  // A string input is parsed synchronously; `meta.cursor` is the offset just past each record.
  Papa.parse<string[]>(source, {
    delimiter: ',',
    newline: '\n',
    step: (result) => {
      const values = result.data;
      const offsets = fieldOffsets(source, start, values);
      start = result.meta.cursor;
      const fields = values.map((value, i) => ({ value, line: lineOf(offsets[i]!) }));
      const seen = new Set<number>();
      for (const error of result.errors) {
        // Papaparse reports quote errors with `index` just past the quote that opened the field.
        const index = error.index ?? offsets[0]!;
        let field = 0;
        while (field + 1 < offsets.length && offsets[field + 1]! <= index) field++;
        if (seen.has(field)) continue; // a malformed quote is also reported as unclosed: once is enough
        seen.add(field);
        problems.push({ line: lineOf(offsets[field]!), field, message: MESSAGES[error.code] ?? error.message });
      }
      const blank = values.length === 1 && values[0] === '';
      if (!blank || seen.size > 0) records.push({ line: fields[0]?.line ?? lineOf(offsets[0]!), fields, broken: seen.size > 0 });
    },
  });
  return { records, problems };
}

/**
 * Where each field of a record starts in `source`, given where the record starts and papaparse's
 * values: a quoted field takes its value's length, plus its doubled quotes, plus the two quotes.
 * (Newlines inside quoted fields are kept verbatim by papaparse, so lengths match.)
 */
function fieldOffsets(source: string, start: number, values: string[]): number[] {
  const offsets: number[] = [];
  let pos = start;
  for (const value of values) {
    offsets.push(pos);
    const quoted = source[pos] === '"';
    const rawLength = quoted ? value.length + countQuotes(value) + 2 : value.length;
    pos += rawLength + 1; // the delimiter
  }
  if (offsets.length === 0) offsets.push(start);
  return offsets;
}

function countQuotes(value: string): number {
  let n = 0;
  for (const ch of value) if (ch === '"') n++;
  return n;
}

/** A function from an offset in `text` to its 1-based line. */
function lineLocator(text: string): (offset: number) => number {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
}
