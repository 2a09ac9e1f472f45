/** Which database the tests run on; chosen once in global-setup.ts, read by every test file. */
export type TestBackend =
  | {
      kind: 'postgres';
      adminUrl: string;
      template: string;
      source: 'TEST_DATABASE_URL' | 'testcontainers';
      /** On a Citus coordinator: its workers' admin URLs (each test database is made on every node). */
      workers: string[];
    }
  | { kind: 'pglite' };

declare module 'vitest' {
  export interface ProvidedContext {
    testBackend: TestBackend;
  }
}

/** `postgres://…/name` with the database part replaced. */
export function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}
