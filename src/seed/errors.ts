/**
 * The seed's error. Every problem the seed finds in its files (or in the rows they would write) is
 * collected with its place, and the run then fails as a whole: nothing is written.
 */

/**
 * One problem of a seed run. `file` is the CSV file as the user sees it (relative to the working
 * directory when inside it), `line` the 1-based physical line in that file (a quoted field with
 * newlines spans several lines), `column` the table's SQL column, or '' when the problem concerns a
 * whole row, the header or the file.
 */
export interface SeedProblem {
  file: string;
  line: number;
  column: string;
  message: string;
}

/**
 * The seed files are wrong, or their rows were refused by the database; nothing was written.
 * `problems` lists every problem found, in file order, and the message lists them one per line as
 * `data/models.csv:5:cost_1k_input: not a number: "0.0o3"`.
 */
export class SeedError extends Error {
  override readonly name = 'SeedError';
  readonly problems: SeedProblem[];
  /** With `problems`, the message lists them; without, `summary` is the whole message. */
  constructor(problems: SeedProblem[], summary?: string, options?: { cause?: unknown }) {
    super(
      problems.length === 0
        ? (summary ?? 'the seed failed; nothing was written')
        : `${summary ?? `${problems.length} problem${problems.length === 1 ? '' : 's'} in the seed data; nothing was written`}:\n` +
            problems.map((p) => `  ${formatSeedProblem(p)}`).join('\n'),
      options,
    );
    this.problems = problems;
  }
}

/** `file:line:column: message` (the column left out when the problem has none). */
export function formatSeedProblem(problem: SeedProblem): string {
  const where = problem.column === '' ? `${problem.file}:${problem.line}` : `${problem.file}:${problem.line}:${problem.column}`;
  return `${where}: ${problem.message}`;
}
