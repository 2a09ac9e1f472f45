/**
 * CPU time spent on a run, client and server: this process (process.cpuUsage) plus the server
 * backends of the bench database, read from /proc when the server runs on this machine. CPU per
 * operation gives the ceiling a CPU-bound scenario can reach on this machine's cores whatever
 * else is tuned, which tells "out of reach here" apart from "not tuned yet".
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Backend } from './backend.ts';

/** CPU milliseconds since start(), client and server; server undefined when it cannot be read. */
export interface CpuSpent {
  clientMs: number;
  serverMs: number | undefined;
}

const TICK_MS = 10; // USER_HZ = 100 on Linux

/** Starts measuring; call the returned function at the end of the run. */
export async function cpuMeter(backend: Backend): Promise<() => Promise<CpuSpent>> {
  const client = process.cpuUsage();
  const before = await serverTicks(backend);
  return async () => {
    const used = process.cpuUsage(client);
    const after = await serverTicks(backend);
    let serverMs: number | undefined;
    if (before !== undefined && after !== undefined) {
      serverMs = 0;
      for (const [pid, ticks] of after) serverMs += (ticks - (before.get(pid) ?? 0)) * TICK_MS;
    }
    return { clientMs: (used.user + used.system) / 1000, serverMs };
  };
}

/** Figures for a result: CPU per operation and the ceiling it implies on this machine's cores. */
export function cpuFigures(spent: CpuSpent, operations: number): Record<string, number> {
  if (spent.serverMs === undefined || operations === 0) return { 'client CPU ms/op': spent.clientMs / Math.max(1, operations) };
  const perOp = (spent.clientMs + spent.serverMs) / operations;
  return {
    'CPU ms/op (client+server)': perOp,
    'server CPU ms/op': spent.serverMs / operations,
    [`CPU-bound ceiling on ${os.availableParallelism()} cores /s`]: (os.availableParallelism() * 1000) / perOp,
  };
}

/** utime+stime ticks of each backend of the bench database (server on this machine only). */
async function serverTicks(backend: Backend): Promise<Map<number, number> | undefined> {
  if (backend.kind !== 'server') return undefined;
  const rows = await backend.bare.query<{ pid: number }>(`select pid from pg_stat_activity where datname = current_database()`);
  const ticks = new Map<number, number>();
  try {
    for (const { pid } of rows) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks.set(pid, Number(fields[11]) + Number(fields[12]));
    }
  } catch {
    return undefined; // not a local server
  }
  return ticks;
}
