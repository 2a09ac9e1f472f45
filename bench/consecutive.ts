/**
 * Issue 18: "every bench goal holds in three consecutive full runs". Runs the full server bench
 * (`node bench/run.ts`, the same as `npm run bench`) N times one after the other, keeps each run's
 * results as bench/results/server-run-<i>.json, and prints every goal with its verdict and measured
 * value in each run, and whether it held in all of them.
 *
 *   node bench/consecutive.ts [N]        (default 3; ~4.5 minutes a run on the project's machine)
 *   node bench/consecutive.ts --from FILE FILE …   the same table from results files already made
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { resultsPath, type Report } from './report.ts';

const args = process.argv.slice(2);
let files: string[];
if (args[0] === '--from') {
  files = args.slice(1);
  if (files.length === 0) throw new Error('--from needs results files (bench/results/server*.json)');
} else {
  const runs = Number(args[0] ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`the number of runs must be a positive integer, got ${args[0]}`);
  files = [];
  for (let i = 1; i <= runs; i += 1) {
    console.log(`\n== full run ${i} of ${runs}`);
    execFileSync(process.execPath, [new URL('./run.ts', import.meta.url).pathname], { stdio: 'inherit' });
    const kept = resultsPath('server', 'full').replace(/\.json$/, `-run-${i}.json`);
    copyFileSync(resultsPath('server', 'full'), kept);
    files.push(kept);
  }
}

const reports = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Report);
for (const [i, r] of reports.entries()) {
  if (r.backend !== 'server' || r.mode !== 'full') throw new Error(`${files[i]} is a ${r.backend} ${r.mode} run; the goals are judged on full server runs`);
}
console.log(`\nGoals in ${reports.length} consecutive full runs (${reports.map((r) => `${r.startedAt.slice(0, 16)}Z, load ${String(r.machine.loadAverage ?? "?")}`).join('; ')}):`);
const rows = new Map<string, { label: string; verdicts: string[] }>();
for (const [i, r] of reports.entries()) {
  for (const result of r.results) {
    for (const goal of result.goals ?? []) {
      const key = `${result.id} ${goal.text}`;
      const row = rows.get(key) ?? { label: `${result.label}: ${goal.text}`, verdicts: Array.from({ length: reports.length }, () => 'not measured') };
      row.verdicts[i] = `${goal.met ? 'met' : 'NOT met'} (${goal.actual})`;
      rows.set(key, row);
    }
  }
}
let held = 0;
for (const row of rows.values()) {
  const all = row.verdicts.every((v) => v.startsWith('met'));
  if (all) held += 1;
  console.log(`  ${all ? 'HELD    ' : 'NOT HELD'}  ${row.label}\n            ${row.verdicts.join(' | ')}`);
}
console.log(`\n${held} of ${rows.size} goals held in every run.`);
