/**
 * `database secrets rotate`: re-encrypt every secret at rest under the current key. The database
 * and the keys come from the environment (DATABASE_URL / PG* / DB_STORAGE; DB_SECRET_KEYS,
 * DB_SECRET_KEY_ID), as for createDb().
 */
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { rotateSecrets } from '../db/rotate-secrets.ts';
import { describeTarget } from '../db/target.ts';
import { noExtraArguments, parseCommandLine, UsageError } from './args.ts';
import { askYesNo, canAsk } from './confirm.ts';
import { embeddedStoreMissing } from './embedded-store.ts';
import { EXIT } from './run-cli.ts';

const USAGE_ROTATE = `usage: database secrets rotate [--yes] [--batch-size N]

Re-encrypts every secret at rest — providers.api_key, and user_tools.credential of every tenant —
under the current key: DB_SECRET_KEY_ID, else the first key of DB_SECRET_KEYS (the embedded default
without DB_SECRET_KEYS: its key file). Values under another key of DB_SECRET_KEYS are decrypted and
encrypted again, values stored in plaintext before migration 0012 are encrypted, values already
under the current key are left. Runs as the owner (a superuser or BYPASSRLS role), in batches of
one transaction each, and can be run again at any time: it rewrites only what is not yet under the
current key. Prints the counts per column and key id. Exit 1 when a value could not be decrypted
(its key is not in DB_SECRET_KEYS, or it was changed): it is left as it is and named.
Shows the target and the key and asks on a terminal; without a terminal it refuses (exit 1,
nothing changed) unless --yes is given.

  --batch-size N   rows per transaction (default 500)
  --yes, -y        do not ask`;

/** Every form of `database secrets`, for `database secrets --help`. */
export const SECRETS_USAGE = `usage: database secrets rotate [--yes] [--batch-size N]   re-encrypt every secret under the current key

  database secrets rotate --help                             more about it`;

/** Runs `database secrets ARGS…`; resolves to the exit code. */
export async function runSecrets(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { yes: { type: 'boolean', short: 'y' }, 'batch-size': { type: 'string' } },
    SECRETS_USAGE,
  );
  const [command, ...rest] = positionals;
  if (command === undefined) {
    if (values.help) {
      console.log(SECRETS_USAGE);
      return EXIT.ok;
    }
    throw new UsageError('secrets takes a subcommand', SECRETS_USAGE);
  }
  if (command !== 'rotate') throw new UsageError(`unknown subcommand ${JSON.stringify(command)}`, SECRETS_USAGE);
  if (values.help) {
    console.log(USAGE_ROTATE);
    return EXIT.ok;
  }
  noExtraArguments(rest, 0, USAGE_ROTATE);
  const batchText = values['batch-size'];
  if (batchText !== undefined && !/^[1-9]\d{0,6}$/.test(batchText)) {
    throw new UsageError(`--batch-size must be an integer from 1 to 9999999, got ${JSON.stringify(batchText)}`, USAGE_ROTATE);
  }

  const config = loadConfig();
  const target = describeTarget(config);
  console.log(target);
  if (embeddedStoreMissing(config)) {
    console.log('the embedded store does not exist yet: it holds no secrets, nothing to rotate');
    return EXIT.ok;
  }
  const keys = config.secretKeys;
  const key = keys === undefined ? 'the key of the embedded store\'s key file (no DB_SECRET_KEYS)' : `key ${keys.currentId} (DB_SECRET_KEYS holds ${keys.ids.join(', ')})`;
  if (!values.yes) {
    if (!canAsk()) {
      console.error(
        `would re-encrypt every secret on ${target} under ${key}\n` +
          'refusing without a terminal to confirm: nothing was changed. Add --yes to rotate without asking.',
      );
      return EXIT.failed;
    }
    if (!(await askYesNo(`re-encrypt every secret on ${target} under ${key}?`))) {
      console.log('nothing was changed');
      return EXIT.failed;
    }
  }
  const db = createDb(config);
  try {
    const rotation = await rotateSecrets(db, {
      ...(batchText === undefined ? {} : { batchSize: Number(batchText) }),
      log: (line) => console.log(line),
    });
    if (rotation.failed > 0) {
      console.error(
        `secrets: ${rotation.failed} value${rotation.failed === 1 ? '' : 's'} could not be decrypted and ${rotation.failed === 1 ? 'was' : 'were'} left as ${rotation.failed === 1 ? 'it is' : 'they are'}: ` +
          'add the key they name to DB_SECRET_KEYS and run `database secrets rotate` again',
      );
      return EXIT.failed;
    }
    console.log(`secrets: ${rotation.rewritten} rewritten; every secret is under ${rotation.keyId ?? 'the current key'}`);
    return EXIT.ok;
  } finally {
    await db.destroy();
  }
}
