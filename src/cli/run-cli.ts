import { UsageError } from './args.ts';

/** Exit codes of the `database` command. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/**
 * Runs one command and sets the process's exit code: `main`'s result (0 or 1), 2 with the usage
 * on stderr for a {@link UsageError}, 1 with the error as one paragraph prefixed by the command's
 * name for anything else.
 */
export async function runCli(command: string, main: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await main()) ?? EXIT.ok;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${command}: ${error.message}\n\n${error.usage}`);
      process.exitCode = EXIT.usage;
      return;
    }
    console.error(`${command}: ${oneParagraph(error)}`);
    process.exitCode = EXIT.failed;
  }
}

// Some libraries throw plain objects (PGlite has thrown `{ message, code }`): never `[object Object]`.
function oneParagraph(error: unknown): string {
  let message: string;
  if (error instanceof Error) message = error.message || error.name;
  else if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    message = (error as { message: string }).message;
  } else if (typeof error === 'object' && error !== null) message = JSON.stringify(error);
  else message = String(error);
  return message.replace(/\s*\n\s*/g, ' ');
}
