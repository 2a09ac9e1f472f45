import { createServer, type Server, type Socket } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { ConnectionError } from '../../src/db/errors.ts';

// A port that accepts TCP connections and never answers: what a firewalled or hung server looks like.
let silent: Server;
let silentPort: number;
const sockets: Socket[] = [];
// A port nobody listens on: taken from a server that was opened, then closed.
let closedPort: number;
beforeAll(async () => {
  silent = createServer((socket) => sockets.push(socket));
  await new Promise<void>((done) => silent.listen(0, '127.0.0.1', done));
  silentPort = (silent.address() as { port: number }).port;
  const probe = createServer();
  await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
  closedPort = (probe.address() as { port: number }).port;
  await new Promise((done) => probe.close(done));
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((done) => silent.close(done));
});

async function failure(url: string, connectTimeoutMs = 5_000): Promise<ConnectionError> {
  const db = createDb(postgresConfig({ connectionString: url, poolMax: 1, connectTimeoutMs }));
  try {
    const error = await sql`select 1`.execute(db).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectionError);
    return error as ConnectionError;
  } finally {
    await db.destroy();
  }
}

describe('a connection that cannot be made', () => {
  it('says which host, port, database and role it tried when the connect times out', async () => {
    const error = await failure(`postgres://chat_owner:pw-never-shown@127.0.0.1:${silentPort}/chat`, 300);
    expect(error.message).toBe(
      `could not connect to PostgreSQL 127.0.0.1:${silentPort}/chat as chat_owner: Connection terminated due to connection timeout`,
    );
    expect(error.target).toBe(`PostgreSQL 127.0.0.1:${silentPort}/chat as chat_owner`);
    expect(error.cause).toBeInstanceOf(Error);
    expect(error.message).not.toMatch(/pw-never-shown/);
  });

  it('keeps the driver code of a refused connection', async () => {
    const error = await failure(`postgres://chat_owner@127.0.0.1:${closedPort}/chat`);
    expect(error.code).toBe('ECONNREFUSED');
    expect(error.message).toMatch(new RegExp(`^could not connect to PostgreSQL 127\\.0\\.0\\.1:${closedPort}/chat as chat_owner: .*ECONNREFUSED`));
    expect((error.cause as { code?: string }).code).toBe('ECONNREFUSED');
  });
});
