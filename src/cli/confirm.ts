import { createInterface } from 'node:readline';

/** True when a person can be asked: both stdin and stdout are terminals. */
export function canAsk(): boolean {
  return process.stdin.isTTY === true && process.stdout.isTTY === true;
}

/**
 * Asks `question` on the terminal and resolves true only for `y` or `yes` (any case); anything
 * else, an empty line, Ctrl-D or Ctrl-C is no.
 */
export function askYesNo(question: string): Promise<boolean> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    let answered = false;
    rl.on('SIGINT', () => {
      process.stdout.write('\n');
      rl.close();
    });
    rl.on('close', () => {
      if (!answered) resolve(false);
    });
    rl.question(`${question} [y/N] `, (answer) => {
      answered = true;
      rl.close();
      resolve(/^\s*y(es)?\s*$/i.test(answer));
    });
  });
}
