/** Listens with the studio's app on one address (loopback unless told otherwise). */
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type { Server } from 'node:http';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.generated.ts';
import { createStudioApp } from './app.ts';
import { StudioListenError } from './errors.ts';
import { createToken, TOKEN_PARAMETER } from './token.ts';

/** The address the studio listens on unless `--host` says otherwise. */
export const DEFAULT_HOST = '127.0.0.1';
/** The port the studio listens on unless `--port` says otherwise. */
export const DEFAULT_PORT = 4800;

/** Options of {@link startStudio}. */
export interface StartStudioOptions {
  db: Kysely<DB>;
  /** The target line the pages show (describeTarget of the config `db` was made from). */
  target: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 4800; 0 lets the system pick a free port. */
  port?: number;
  /** Default: a new random token. */
  token?: string;
}

/** A studio that is listening. */
export interface RunningStudio {
  /** The URL to open, with the token: `http://127.0.0.1:4800/?token=…`. */
  url: string;
  /** The URL without the token. */
  origin: string;
  token: string;
  host: string;
  port: number;
  /** Stops listening and closes open connections (the database is the caller's to close). */
  close(): Promise<void>;
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Starts the studio's HTTP server on `host:port`; StudioListenError when it cannot listen there.
 *
 * @example
 * const studio = await startStudio({ db, target: describeTarget(config), port: 0 });
 * console.log(studio.url);
 */
export async function startStudio(options: StartStudioOptions): Promise<RunningStudio> {
  const host = options.host ?? DEFAULT_HOST;
  const requested = options.port ?? DEFAULT_PORT;
  const token = options.token ?? createToken();
  const app = createStudioApp({ db: options.db, target: options.target, token });
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve, reject) => {
    const failed = (error: unknown) => reject(new StudioListenError(host, requested, error));
    server.once('error', failed);
    server.listen(requested, host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url: `${origin}/?${TOKEN_PARAMETER}=${token}`,
    origin,
    token,
    host,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        // A browser keeps idle connections open: without this, close() would wait for them.
        server.closeAllConnections();
      }),
  };
}
