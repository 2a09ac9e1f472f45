/** The search playground: pick a chunk, see its nearest neighbours and the hybrid result for a text query. */
import type { AppRole } from '../../db/config.ts';
import type { ChunkSummary, SearchResults } from '../search.ts';
import { html, type Html } from './html.ts';
import { tenantHref } from './layout.ts';

type Tenant = { id: string; role: AppRole };

/** The form: the chunk (by id, or picked from the list) and the text query. */
export function searchForm(tenant: Tenant, chunkId: string, query: string, contains: string): Html {
  return html`<form method="get" action="/tenants/${tenant.id}/search" class="filter" id="search">
    <input type="hidden" name="role" value="${tenant.role}">
    <label>chunk <input type="text" name="chunk" value="${chunkId}" size="38" placeholder="pick one below"></label>
    <label>text query <input type="text" name="q" value="${query}" placeholder="for the hybrid search"></label>
    <input type="hidden" name="contains" value="${contains}">
    <button type="submit">search</button>
  </form>`;
}

/** The chunks to pick from. */
export function chunkPicker(tenant: Tenant, chunks: ChunkSummary[], query: string, contains: string): Html {
  return html`<form method="get" action="/tenants/${tenant.id}/search" class="filter">
    <input type="hidden" name="role" value="${tenant.role}">
    <input type="hidden" name="q" value="${query}">
    <label>chunks containing <input type="text" name="contains" value="${contains}"></label>
    <button type="submit">list</button>
  </form>
  ${chunks.length === 0 ? html`<p class="empty">No chunks visible.</p>` : html`<table class="grid" id="chunks">
    <thead><tr><th>chunk</th><th class="num">position</th><th>text</th></tr></thead>
    <tbody>
    ${chunks.map((c) => html`<tr data-chunk="${c.id}">
      <td><a href="${tenantHref(tenant, '/search', { chunk: c.id, q: query, contains })}"><code>${c.id.slice(0, 8)}</code></a></td>
      <td class="num">${c.position}</td><td>${c.excerpt}</td>
    </tr>`)}
    </tbody></table>`}`;
}

/** The neighbours and the hybrid result. */
export function searchResults(results: SearchResults, query: string): Html {
  return html`<p>Picked chunk <code>${results.chunk.id}</code>: ${results.chunk.excerpt}</p>
  <h2>Nearest neighbours <span class="hint">similaritySearch, k = ${results.neighbours.length}, cosine distance</span></h2>
  <table class="grid" id="neighbours">
    <thead><tr><th class="num">#</th><th class="num">distance</th><th class="num">similarity</th><th>chunk</th><th>text</th></tr></thead>
    <tbody>
    ${results.neighbours.map((n, i) => html`<tr data-chunk="${n.id}">
      <td class="num">${i + 1}</td><td class="num">${n.distance.toFixed(4)}</td><td class="num">${n.similarity.toFixed(4)}</td>
      <td><code>${n.id.slice(0, 8)}</code></td><td>${n.content.slice(0, 200)}</td>
    </tr>`)}
    </tbody>
  </table>
  <h2>Hybrid result <span class="hint">hybridSearch: the text query's full-text leg fused with the picked chunk's embedding (reciprocal rank fusion)</span></h2>
  ${results.hybrid === null
    ? html`<p class="empty">Give a text query above.</p>`
    : results.hybrid.length === 0
      ? html`<p class="empty" id="hybrid">Nothing found for ${JSON.stringify(query)}.</p>`
      : html`<table class="grid" id="hybrid">
    <thead><tr><th class="num">#</th><th class="num">score</th><th class="num">vector rank</th><th class="num">text rank</th><th>chunk</th><th>text</th></tr></thead>
    <tbody>
    ${results.hybrid.map((h, i) => html`<tr data-chunk="${h.id}">
      <td class="num">${i + 1}</td><td class="num">${h.score.toFixed(5)}</td><td class="num">${h.vectorRank ?? '–'}</td><td class="num">${h.textRank ?? '–'}</td>
      <td><code>${h.id.slice(0, 8)}</code></td><td>${h.content.slice(0, 200)}</td>
    </tr>`)}
    </tbody>
  </table>`}`;
}
