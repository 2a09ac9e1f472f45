/**
 * One variant of one lookup (or recordUsage's charge, without an idempotency key: each call inserts) in a loop, to be profiled (bench/profile-buckets.ts reads the profile):
 * `package` runs the query function inside withTenant; `floor` sends the same statement (captured
 * from the package) through a bare pg.Client as a named prepared statement in withTenant's
 * transaction shape. Prints wall time and client CPU per call. Runs on the server of DATABASE_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres) in a database of its own, created,
 * migrated and dropped here; its world is one tenant, one user, one conversation of ten messages.
 *
 *   node --cpu-prof --cpu-prof-interval 50 --cpu-prof-dir /tmp/prof bench/profile-loop.ts package getUser 4000
 *   node --cpu-prof --cpu-prof-interval 50 --cpu-prof-dir /tmp/prof bench/profile-loop.ts floor getUser 4000
 */
import { postgresConfig } from '../src/db/config.ts';
import { createDb } from '../src/db/create-db.ts';
import { withTenant } from '../src/db/tenant.ts';
import type { TenantTx } from '../src/db/tenant-tx.ts';
import { listConversations } from '../src/queries/conversations.ts';
import { appendMessage, listMessages } from '../src/queries/messages.ts';
import { recordUsage } from '../src/queries/usage.ts';
import { getUser } from '../src/queries/users.ts';
import { serverClient } from './backend.ts';
import { captureStatements } from './capture.ts';
import { openScratchDatabase } from './scratch-db.ts';

const WARMUP = 500;
const [variant, lookup, count] = process.argv.slice(2);
const calls = Number(count ?? 4000);
const lookups = ['getUser', 'listConversations', 'listMessages', 'recordUsage'] as const;
if ((variant !== 'package' && variant !== 'floor') || !lookups.includes(lookup as never) || !(calls > 0)) {
  console.error(`usage: node bench/profile-loop.ts package|floor ${lookups.join('|')} [CALLS]`);
  process.exit(2);
}

const scratch = await openScratchDatabase('profile');
const { url, tenantId, userId, setup } = scratch;
try {
  const conversation = (
    await setup.query(`insert into conversations (tenant_id, user_id, title) values ($1, $2, 'profile') returning id`, [tenantId, userId])
  ).rows[0] as { id: string };
  // recordUsage charges a model of the catalog against a budget that outlasts the loop.
  const modelId = (
    await setup.query(
      `with p as (insert into providers (name) values ('profile') returning id)
       insert into models (provider_id, name, internal_name, type, cost_1k_input, cost_1k_output)
       select p.id, 'profile', 'profile', 'chat', 0.003, 0.015 from p returning id`,
    )
  ).rows[0].id as number;
  await setup.query(`update users set budget = 1000000000, remaining = 1000000000 where id = $1`, [userId]);

  const db = createDb(postgresConfig({ connectionString: url, poolMax: 1 }));
  for (let i = 0; i < 10; i += 1) {
    await withTenant(db, tenantId, (tx) => appendMessage(tx, { conversationId: conversation.id, role: 'user', content: { text: `m${i}` } }));
  }
  const call: (tx: TenantTx) => Promise<unknown> =
    lookup === 'getUser' ? (tx) => getUser(tx, { userId })
    : lookup === 'listConversations' ? (tx) => listConversations(tx, { userId })
    : lookup === 'listMessages' ? (tx) => listMessages(tx, { conversationId: conversation.id })
    : (tx) => recordUsage(tx, { userId, modelId, type: 'chat', inputTokens: 200, outputTokens: 50 });

  let one: () => Promise<unknown>;
  let close: () => Promise<void>;
  if (variant === 'package') {
    one = () => withTenant(db, tenantId, call);
    close = () => db.destroy();
  } else {
    const [statement] = await captureStatements(db, tenantId, call);
    await db.destroy();
    // The bench's own bare connection: the floor of the lookups scenario, in withTenant's shape.
    const client = await serverClient(url);
    one = () => client.tenantTransaction(tenantId, (_query, named) => named(statement!.sql, statement!.parameters));
    close = () => client.close();
  }
  for (let i = 0; i < WARMUP; i += 1) await one();
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < calls; i += 1) await one();
  const used = process.cpuUsage(cpu);
  console.log(
    `${variant} ${lookup}: ${((performance.now() - started) / calls).toFixed(3)} ms/call, ` +
      `client CPU ${((used.user + used.system) / calls).toFixed(0)} µs/call (${calls} calls after ${WARMUP} warm-up)`,
  );
  await close();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await scratch.drop();
}
