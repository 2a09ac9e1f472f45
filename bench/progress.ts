/**
 * Progress lines on stderr while data loads and indexes build: redrawn in place on a terminal,
 * one line per tenth otherwise (CI logs).
 */
import { performance } from 'node:perf_hooks';

/** A progress bar for one step. */
export interface Progress {
  update(done: number): void;
  /** Ends the step; returns its seconds. */
  finish(note?: string): number;
}

/** Starts reporting the step `label` of `total` units (`unit`: rows, chunks, …). */
export function progress(label: string, total: number, unit = 'rows'): Progress {
  const started = performance.now();
  const tty = process.stderr.isTTY === true;
  let lastTenth = -1;
  let lastDraw = 0;
  const line = (done: number) => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? Math.round(done / seconds) : 0;
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    return `  ${label}: ${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')} ${unit} (${pct}%, ${rate.toLocaleString('en-US')} ${unit}/s, ${seconds.toFixed(1)} s)`;
  };
  return {
    update(done) {
      if (tty) {
        const now = performance.now();
        if (now - lastDraw > 200) {
          lastDraw = now;
          process.stderr.write(`\r${line(done)}\u001b[K`);
        }
      } else {
        const tenth = total > 0 ? Math.floor((done / total) * 10) : 10;
        if (tenth > lastTenth && tenth < 10) {
          lastTenth = tenth;
          process.stderr.write(`${line(done)}\n`);
        }
      }
    },
    finish(note) {
      const seconds = (performance.now() - started) / 1000;
      process.stderr.write(`${tty ? '\r' : ''}${line(total)}${note === undefined ? '' : ` ${note}`}${tty ? '\u001b[K' : ''}\n`);
      return seconds;
    },
  };
}

/** A one-line note on stderr (a step without units). */
export function say(text: string): void {
  process.stderr.write(`${text}\n`);
}
