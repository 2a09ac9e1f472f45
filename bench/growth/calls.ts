/**
 * The calls measured at each size of the growing tenant, through the package's exported
 * functions inside withTenant (as bench/scenarios/lookups.ts and search.ts call them):
 * listConversations (first page, and a page from the middle of a power user's list, reached by
 * walking the pages with the package's own cursors), listMessages (first page of a conversation),
 * getThread at depth 100, costSummary for a month by day and by day and model, similaritySearch
 * and hybridSearch (k = 10; recall@10 of similaritySearch against exact search, index scans off).
 * The calls run interleaved, round by round (bench/measure.ts), so load from other work on the
 * machine hits every size's calls alike within a size.
 */
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { withTenant } from '../../src/db/tenant.ts';
import { listConversations } from '../../src/queries/conversations.ts';
import { getThread, listMessages } from '../../src/queries/messages.ts';
import { costSummary } from '../../src/queries/usage.ts';
import { hybridSearch, similaritySearch } from '../../src/queries/vectors.ts';
import type { Backend } from '../backend.ts';
import type { World } from '../data.ts';
import { interleaved, summarize, type Latency } from '../measure.ts';
import { progress, say } from '../progress.ts';
import type { GrowthTenant } from './load.ts';
import type { GrowthSettings } from './settings.ts';

/** A search query: an embedding and a text of the same topic cluster. */
export interface GrowthQuery {
  embedding: number[];
  text: string;
}

/** The calls, in the order of the table and the chart; `axis`: which size the call grows with. */
export const GROWTH_CALLS = [
  { id: 'listConversations.first', label: 'listConversations, first page', axis: 'rows' },
  { id: 'listConversations.deep', label: 'listConversations, page from the middle', axis: 'rows' },
  { id: 'listMessages', label: 'listMessages, first page', axis: 'rows' },
  { id: 'getThread', label: 'getThread, depth 100', axis: 'rows' },
  { id: 'costSummary.day', label: 'costSummary, a month by day', axis: 'rows' },
  { id: 'costSummary.dayModel', label: 'costSummary, a month by day and model', axis: 'rows' },
  { id: 'similaritySearch', label: 'similaritySearch, k = 10', axis: 'chunks' },
  { id: 'hybridSearch', label: 'hybridSearch, k = 10', axis: 'chunks' },
] as const;

export type GrowthCallId = (typeof GROWTH_CALLS)[number]['id'];

/** What one size measured. */
export interface SizeMeasure {
  latency: Record<GrowthCallId, Latency>;
  /** Mean recall@10 of similaritySearch against exact search, and over how many queries. */
  recall: number;
  recallQueries: number;
  /** Rows per call (mean), a check that each call did its work. */
  rows: Record<GrowthCallId, number>;
  /** Live conversations of the users whose lists are walked, and the depth of the deep page. */
  listedUsers: { conversations: number; deepAt: number }[];
}

const K = 10;
/** The month costSummary sums (inside the usage window of load.ts). */
const MONTH = { from: new Date('2025-05-01T00:00:00Z'), to: new Date('2025-06-01T00:00:00Z') };
/** Thread length of getThread's targets: k = 116 is at depth 116 − ⌊116/7⌋ = 100 (see load.ts). */
const DEPTH_100_K = 116;
const RECALL_MAX_MS = 180_000;
const ROUNDS_MAX_MS = 240_000;

/** md5(text)::uuid, as the load computes ids. */
export function md5Uuid(text: string): string {
  const h = createHash('md5').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Measures every call at the tenant's current size. The HNSW index must be in place. */
export async function measureSize(backend: Backend, g: GrowthTenant, queries: GrowthQuery[], s: GrowthSettings): Promise<SizeMeasure> {
  const tenantId = g.info.id;
  const db = backend.db;
  const r = g.random;

  // listConversations: the 5 users with the most live conversations; the deep page starts halfway down each list.
  const live = new Map<number, number>();
  for (const c of g.conversations) if (!c.deleted) live.set(c.user, (live.get(c.user) ?? 0) + 1);
  const top = [...live.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
  const deepCursors: { userId: string; cursor: string }[] = [];
  const listedUsers: SizeMeasure['listedUsers'] = [];
  for (const [user, count] of top) {
    const userId = g.info.users[user]!;
    let cursor: string | null = null;
    let walked = 0;
    const half = Math.floor(count / 2);
    while (walked < half) {
      const limit = Math.min(200, half - walked);
      const page = await withTenant(db, tenantId, (tx) => listConversations(tx, { userId, limit, cursor }));
      walked += page.items.length;
      cursor = page.nextCursor;
      if (cursor === null) break;
    }
    if (cursor !== null) deepCursors.push({ userId, cursor });
    listedUsers.push({ conversations: count, deepAt: walked });
  }
  if (deepCursors.length === 0) throw new Error('no user has a second page of conversations: the size is too small');

  const conversationIds = Array.from({ length: 50 }, () => md5Uuid(`gc:${Math.floor(r() * g.conversations.length)}`));
  const threadTargets = g.conversations
    .map((c, j) => ({ c, j }))
    .filter(({ c }) => c.length > DEPTH_100_K)
    .slice(0, 20)
    .map(({ j }) => md5Uuid(`gm:${j}:${DEPTH_100_K}`));
  if (threadTargets.length === 0) throw new Error('no conversation is long enough for a thread of depth 100');

  const search = (q: GrowthQuery) => withTenant(db, tenantId, (tx) => similaritySearch(tx, { embedding: q.embedding, k: K }));
  const exact = (q: GrowthQuery) =>
    withTenant(db, tenantId, async (tx) => {
      await sql`set local enable_indexscan = off`.execute(tx);
      return similaritySearch(tx, { embedding: q.embedding, k: K });
    });

  const recalls: number[] = [];
  const bar = progress('recall@10: exact top-10 (index scans off)', s.recallQueries, 'queries');
  const deadline = performance.now() + RECALL_MAX_MS;
  for (let i = 0; i < s.recallQueries; i += 1) {
    if (i >= 10 && performance.now() > deadline) break;
    const q = queries[i % queries.length]!;
    const truth = await exact(q);
    const want = new Set(truth.map((row) => row.id));
    const found = await search(q);
    recalls.push(found.filter((row) => want.has(row.id)).length / Math.max(1, want.size));
    bar.update(i + 1);
  }
  bar.finish(recalls.length < s.recallQueries ? `(stopped after ${recalls.length} queries: time cap)` : undefined);

  const rows = Object.fromEntries(GROWTH_CALLS.map((c) => [c.id, 0])) as Record<GrowthCallId, number>;
  const count = (id: GrowthCallId) => (n: number) => {
    rows[id] += n;
  };
  const at = <T>(list: readonly T[], i: number) => list[i % list.length]!;
  say(`  ${s.rounds} rounds × ${GROWTH_CALLS.length} calls, interleaved…`);
  const samples = await interleaved<GrowthCallId>(
    {
      'listConversations.first': async (i) =>
        count('listConversations.first')((await withTenant(db, tenantId, (tx) => listConversations(tx, { userId: at(deepCursors, i).userId }))).items.length),
      'listConversations.deep': async (i) => {
        const { userId, cursor } = at(deepCursors, i);
        count('listConversations.deep')((await withTenant(db, tenantId, (tx) => listConversations(tx, { userId, cursor }))).items.length);
      },
      listMessages: async (i) =>
        count('listMessages')((await withTenant(db, tenantId, (tx) => listMessages(tx, { conversationId: at(conversationIds, i) }))).items.length),
      getThread: async (i) => count('getThread')((await withTenant(db, tenantId, (tx) => getThread(tx, { messageId: at(threadTargets, i) }))).length),
      'costSummary.day': async () => count('costSummary.day')((await withTenant(db, tenantId, (tx) => costSummary(tx, { ...MONTH, groupBy: 'day' }))).length),
      'costSummary.dayModel': async () =>
        count('costSummary.dayModel')((await withTenant(db, tenantId, (tx) => costSummary(tx, { ...MONTH, groupBy: 'day', by: 'model' }))).length),
      similaritySearch: async (i) => count('similaritySearch')((await search(at(queries, i))).length),
      hybridSearch: async (i) => {
        const q = at(queries, i);
        count('hybridSearch')((await withTenant(db, tenantId, (tx) => hybridSearch(tx, { query: q.text, embedding: q.embedding, k: K }))).length);
      },
    },
    { iterations: s.rounds, warmup: s.warmup, maxMs: ROUNDS_MAX_MS, minIterations: 30 },
  );
  const calls = samples.similaritySearch.length + s.warmup;
  const latency = Object.fromEntries(GROWTH_CALLS.map((c) => [c.id, summarize(samples[c.id])])) as Record<GrowthCallId, Latency>;
  for (const c of GROWTH_CALLS) rows[c.id] /= calls;
  return {
    latency,
    recall: recalls.reduce((a, b) => a + b, 0) / Math.max(1, recalls.length),
    recallQueries: recalls.length,
    rows,
    listedUsers,
  };
}

/** Search queries drawn once, the same at every size: a topic cluster's embedding and words. */
export function growthQueries(world: World, n: number): GrowthQuery[] {
  return Array.from({ length: n }, () => {
    const cluster = Math.floor(world.random() * world.settings.clusters);
    return { embedding: world.points.point(cluster), text: world.texts.query(world.random, cluster) };
  });
}
