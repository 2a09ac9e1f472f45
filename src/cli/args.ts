import { parseArgs, type ParseArgsConfig } from 'node:util';

/** The command line is wrong: the CLI prints `message` and the usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** The usage text of the command that refused the arguments. */
  readonly usage: string;
  constructor(message: string, usage: string) {
    super(message);
    this.usage = usage;
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs, strict, with `--help`/`-h` added: unknown flags, a missing flag value or
 * a value given to a boolean flag become a {@link UsageError} carrying `usage`.
 */
export function parseCommandLine<T extends Options>(args: string[], options: T, usage: string) {
  try {
    return parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { ...options, help: { type: 'boolean', short: 'h', default: false } } as T & {
        help: { type: 'boolean'; short: 'h'; default: false };
      },
    });
  } catch (error) {
    // parseArgs throws TypeErrors with codes ERR_PARSE_ARGS_UNKNOWN_OPTION / _INVALID_OPTION_VALUE.
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) {
      throw new UsageError((error as Error).message.split(/\.\s|\n/, 1)[0]!, usage);
    }
    throw error;
  }
}

/** Refuses positional arguments beyond the `allowed` count. */
export function noExtraArguments(positionals: string[], allowed: number, usage: string): void {
  if (positionals.length > allowed) {
    const extra = positionals.slice(allowed).map((p) => JSON.stringify(p)).join(' ');
    throw new UsageError(`unexpected argument${positionals.length - allowed === 1 ? '' : 's'} ${extra}`, usage);
  }
}
