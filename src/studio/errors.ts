/** Errors of the studio, in the package's style (a name and the fields a caller needs). */

/** The studio's server could not listen: `host`/`port` it tried, `code` from Node (`EADDRINUSE`, `EADDRNOTAVAIL`, …). */
export class StudioListenError extends Error {
  override readonly name = 'StudioListenError';
  readonly host: string;
  readonly port: number;
  readonly code: string | undefined;
  constructor(host: string, port: number, cause: unknown) {
    const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
    const hint =
      code === 'EADDRINUSE'
        ? ': the port is in use (another studio?); --port N picks another, --port 0 any free one'
        : code === 'EADDRNOTAVAIL'
          ? ': no interface of this machine has that address'
          : '';
    super(`cannot listen on ${host}:${port}: ${cause instanceof Error ? cause.message : String(cause)}${hint}`, { cause });
    this.host = host;
    this.port = port;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

/** The role the studio browses as may not read what a page needs (a key column, any column): shown as 403. */
export class ColumnPermissionError extends Error {
  override readonly name = 'ColumnPermissionError';
  readonly table: string;
  constructor(table: string, message: string) {
    super(message);
    this.table = table;
  }
}
