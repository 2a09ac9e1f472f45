/**
 * Shared ending of the command-line entry points: run `main`, print any failure as one paragraph
 * prefixed with the command's name, and set a non-zero exit code.
 */
export function runCli(command: string, main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`${command}: ${message.replace(/\s*\n\s*/g, ' ')}`);
    process.exitCode = 1;
  });
}
