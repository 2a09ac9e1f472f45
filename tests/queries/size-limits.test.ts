import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/db/errors.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import {
  MAX_CHUNK_CONTENT_BYTES,
  MAX_CONTENT_BYTES_CEILING,
  MAX_METADATA_BYTES,
  MAX_RESOURCE_CONTENT_BYTES,
  TSVECTOR_MAX_BYTES,
} from '../../src/queries/limits.ts';
import { createResource } from '../../src/queries/resources.ts';
import { addChunks } from '../../src/queries/vectors.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { QueryRecorder } from '../support/query-recorder.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let a: { tenantId: string; userId: string };
const recorder = new QueryRecorder();
let recorded: Kysely<DB>;

function axis(i: number): number[] {
  const v = new Array<number>(1536).fill(0);
  v[i % 1536] = 1;
  return v;
}

/** `length` characters of distinct words (`qa qb … qz qba …`: letters only, so no two are alike), as in the issue. */
function distinctWords(length: number): string {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < length; i += 1) {
    let word = 'q';
    let x = i;
    do {
      word += letters[x % 26];
      x = Math.floor(x / 26);
    } while (x > 0);
    parts.push(`${word} `);
    size += word.length + 1;
  }
  return parts.join('').slice(0, length);
}

async function count(table: 'resources' | 'vectors'): Promise<number> {
  const { rows } = await sql<{ n: number | string }>`select count(*) as n from ${sql.table(table)} where tenant_id = ${a.tenantId}`.execute(t.db);
  return Number(rows[0]!.n);
}

/** Runs `fn` in a's tenant and says how many statements it sent. */
async function statementsOf(fn: (tx: TenantTx) => Promise<unknown>): Promise<{ error: unknown; statements: number }> {
  return withTenant(recorded, a.tenantId, async (tx) => {
    recorder.reset();
    const error = await fn(tx).then(() => undefined, (e: unknown) => e);
    return { error, statements: recorder.count };
  });
}

beforeAll(async () => {
  t = await openTestDb();
  const { roleId } = await insertCatalog(t.db);
  a = await insertTenant(t.db, roleId, 'limits-a');
  recorded = t.db.withPlugin(recorder);
});
afterAll(() => t?.close());

describe('resource size limits', () => {
  it('refuses content over MAX_RESOURCE_CONTENT_BYTES (counted in UTF-8 bytes) before any SQL, naming the field and the limit', async () => {
    const before = await count('resources');
    const ascii = 'x'.repeat(MAX_RESOURCE_CONTENT_BYTES + 1);
    const attempt = await statementsOf((tx) => createResource(tx, { name: 'big', type: 'text', content: ascii }));
    expect(attempt.error).toBeInstanceOf(ValidationError);
    expect(attempt.error).toMatchObject({ field: 'content', message: expect.stringContaining('MAX_RESOURCE_CONTENT_BYTES') });
    expect(attempt.statements).toBe(0);
    // Fewer characters than the limit, more bytes: é is two bytes in UTF-8.
    const accented = 'é'.repeat(MAX_RESOURCE_CONTENT_BYTES / 2 + 1);
    await expect(withTenant(t.db, a.tenantId, (tx) => createResource(tx, { name: 'é', type: 'text', content: accented }))).rejects.toMatchObject({
      field: 'content',
      message: expect.stringContaining(`got ${MAX_RESOURCE_CONTENT_BYTES + 2}`),
    });
    expect(await count('resources')).toBe(before);
    // Exactly the limit is accepted.
    const exact = await withTenant(t.db, a.tenantId, (tx) =>
      createResource(tx, { name: 'exact', type: 'text', content: 'y'.repeat(MAX_RESOURCE_CONTENT_BYTES) }),
    );
    expect(exact.content!.length).toBe(MAX_RESOURCE_CONTENT_BYTES);
  });

  it('maxContentBytes changes the limit for one call, up to MAX_CONTENT_BYTES_CEILING', async () => {
    const content = 'z'.repeat(MAX_RESOURCE_CONTENT_BYTES + 1000);
    const stored = await withTenant(t.db, a.tenantId, (tx) =>
      createResource(tx, { name: 'raised', type: 'text', content, maxContentBytes: MAX_RESOURCE_CONTENT_BYTES + 1000 }),
    );
    expect(stored.content).toBe(content);
    await expect(withTenant(t.db, a.tenantId, (tx) => createResource(tx, { name: 'small', type: 'text', content: 'abcdef', maxContentBytes: 5 }))).rejects.toMatchObject({
      field: 'content',
      message: expect.stringContaining('(maxContentBytes)'),
    });
    for (const maxContentBytes of [0, MAX_CONTENT_BYTES_CEILING + 1, 1.5, '10' as unknown as number]) {
      await expect(withTenant(t.db, a.tenantId, (tx) => createResource(tx, { name: 'n', type: 't', content: 'c', maxContentBytes }))).rejects.toMatchObject({
        name: 'ValidationError',
        field: 'maxContentBytes',
      });
    }
  });

  it('refuses metadata over MAX_METADATA_BYTES of JSON, unless maxMetadataBytes allows it', async () => {
    const metadata = { notes: 'm'.repeat(MAX_METADATA_BYTES) };
    const attempt = await statementsOf((tx) => createResource(tx, { name: 'meta', type: 'text', metadata }));
    expect(attempt.error).toMatchObject({ name: 'ValidationError', field: 'metadata', message: expect.stringContaining('MAX_METADATA_BYTES') });
    expect(attempt.statements).toBe(0);
    const stored = await withTenant(t.db, a.tenantId, (tx) =>
      createResource(tx, { name: 'meta', type: 'text', metadata, maxMetadataBytes: 2 * MAX_METADATA_BYTES }),
    );
    expect(stored.metadata).toEqual(metadata);
  });

  it('keeps the name, type and s3Uri limits', async () => {
    for (const [field, params] of [
      ['name', { name: 'n'.repeat(501), type: 't' }],
      ['type', { name: 'n', type: 't'.repeat(101) }],
      ['s3Uri', { name: 'n', type: 't', s3Uri: `s3://${'u'.repeat(2044)}` }],
    ] as const) {
      await expect(withTenant(t.db, a.tenantId, (tx) => createResource(tx, params)), field).rejects.toMatchObject({ name: 'ValidationError', field });
    }
  });
});

describe('chunk size limits', () => {
  it('refuses a chunk over MAX_CHUNK_CONTENT_BYTES (UTF-8 bytes) before any SQL, naming the chunk', async () => {
    const chunks = [
      { content: 'fine', embedding: axis(1) },
      { content: 'é'.repeat(MAX_CHUNK_CONTENT_BYTES / 2 + 1), embedding: axis(2) },
    ];
    const attempt = await statementsOf((tx) => addChunks(tx, { chunks }));
    expect(attempt.error).toMatchObject({
      name: 'ValidationError',
      field: 'chunks[1].content',
      message: expect.stringContaining('MAX_CHUNK_CONTENT_BYTES'),
    });
    expect(attempt.statements).toBe(0);
  });

  it("refuses the issue's 1,000,000-character chunk of distinct words with a ValidationError, never PostgreSQL's 54000", async () => {
    const before = await count('vectors');
    const huge = distinctWords(1_000_000);
    // Within the default limit it is refused by its size…
    await expect(withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { chunks: [{ content: huge, embedding: axis(3) }] }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'chunks[0].content',
      message: expect.stringContaining('MAX_CHUNK_CONTENT_BYTES'),
    });
    // …and with a limit that lets it through, by what PostgreSQL's tsvector holds. The caller's
    // transaction goes on: nothing of the refused call is left, the next call is stored.
    const stored = await withTenant(t.db, a.tenantId, async (tx) => {
      const error = await addChunks(tx, {
        maxContentBytes: 2_000_000,
        chunks: [{ content: 'a small chunk', embedding: axis(4) }, { content: huge, embedding: axis(5) }, { content: 'another', embedding: axis(6) }],
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ field: 'chunks[1].content', message: expect.stringContaining(`more than ${TSVECTOR_MAX_BYTES} (TSVECTOR_MAX_BYTES)`) });
      expect((error as { code?: unknown }).code).toBeUndefined();
      return addChunks(tx, { chunks: [{ content: 'after the refusal', embedding: axis(7) }] });
    });
    expect(stored).toEqual({ inserted: 1 });
    expect(await count('vectors')).toBe(before + 1);
  });

  it('also refuses it within a call of several statements (more than 500 chunks), writing none of them', async () => {
    const before = await count('vectors');
    const chunks = Array.from({ length: 700 }, (_, i) => ({ content: `chunk ${i}`, embedding: axis(i) }));
    chunks[650] = { content: distinctWords(1_000_000), embedding: axis(650) };
    await expect(withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { chunks, maxContentBytes: 2_000_000 }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'chunks[650].content',
    });
    expect(await count('vectors')).toBe(before);
  });

  it('stores a large chunk whose words repeat: the limit is the tsvector, not the length', async () => {
    const content = 'the whale surfaced near the boat. '.repeat(30_000); // 1,020,000 characters, a handful of lexemes
    const result = await withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { maxContentBytes: 1_100_000, chunks: [{ content, embedding: axis(8) }] }));
    expect(result).toEqual({ inserted: 1 });
  });
});
