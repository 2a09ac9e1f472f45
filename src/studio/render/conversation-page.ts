/** The conversation list and the conversation viewer: the message tree with its branches, and the usage charged. */
import type { AppRole } from '../../db/config.ts';
import type { ChargedUsage, ConversationHeader, ConversationSummary, TreeMessage } from '../conversations.ts';
import { sumDecimals } from '../spend.ts';
import { count, html, timestamp, type Html } from './html.ts';
import { tenantHref } from './layout.ts';

type Tenant = { id: string; role: AppRole };

/** The tenant's conversations, newest activity first. */
export function conversationListBody(tenant: Tenant, conversations: ConversationSummary[]): Html {
  if (conversations.length === 0) return html`<p class="empty">No conversations visible.</p>`;
  return html`<table class="grid" id="conversations">
  <thead><tr><th>title</th><th>user</th><th class="num">messages</th><th>last activity</th><th></th></tr></thead>
  <tbody>
  ${conversations.map(
    (c) => html`<tr data-conversation="${c.id}">
      <td><a href="${tenantHref(tenant, `/conversations/${c.id}`)}">${c.title === '' ? '(untitled)' : c.title}</a></td>
      <td>${c.userEmail ?? ''}</td><td class="num">${count(c.messages)}</td><td>${timestamp(c.lastActivityAt)}</td>
      <td>${c.deleted ? html`<span class="badge warn">deleted</span>` : ''}</td>
    </tr>`,
  )}
  </tbody>
</table>`;
}

/** The conversation's header and totals. */
export function conversationHeaderBody(header: ConversationHeader, usage: ChargedUsage[] | Html): Html {
  return html`<section class="facts"><dl>
  <dt>user</dt><dd>${header.userEmail ?? header.userId}</dd>
  <dt>agent</dt><dd>${header.agentName ?? 'none'}</dd>
  <dt>created</dt><dd>${timestamp(header.createdAt)}</dd>
  <dt>last activity</dt><dd>${timestamp(header.lastActivityAt)}</dd>
  ${header.deleted ? html`<dt>state</dt><dd><span class="badge warn">soft-deleted</span></dd>` : ''}
  </dl></section>
  <h2>Usage charged</h2>
  ${Array.isArray(usage) ? usageTotals(usage) : usage}`;
}

function usageTotals(usage: ChargedUsage[]): Html {
  if (usage.length === 0) return html`<p class="empty" id="usage-total">Nothing charged for this conversation.</p>`;
  const byModel = new Map<string, ChargedUsage[]>();
  for (const u of usage) byModel.set(u.modelName ?? '?', [...(byModel.get(u.modelName ?? '?') ?? []), u]);
  return html`<p id="usage-total">${usage.length} calls, ${count(usage.reduce((n, u) => n + u.inputTokens, 0))} input and
    ${count(usage.reduce((n, u) => n + u.outputTokens, 0))} output tokens, cost <strong>${sumDecimals(usage.map((u) => u.cost))}</strong></p>
  <table class="grid" id="usage-by-model"><thead><tr><th>model</th><th class="num">calls</th><th class="num">cost</th></tr></thead><tbody>
  ${[...byModel].map(([model, rows]) => html`<tr><td>${model}</td><td class="num">${rows.length}</td><td class="num">${sumDecimals(rows.map((r) => r.cost))}</td></tr>`)}
  </tbody></table>`;
}

/**
 * The message tree: a chain of single replies stays flat; where a message has several children
 * (an edit, a regenerated answer) each branch is shown side by side as its own chain.
 */
export function messageTree(messages: TreeMessage[], usage: ChargedUsage[], more: boolean): Html {
  if (messages.length === 0) return html`<p class="empty">No messages visible.</p>`;
  const ids = new Set(messages.map((m) => m.id));
  const children = new Map<string | null, TreeMessage[]>();
  for (const m of messages) {
    const parent = m.parentId !== null && ids.has(m.parentId) ? m.parentId : null;
    children.set(parent, [...(children.get(parent) ?? []), m]);
  }
  const charged = new Map<string, ChargedUsage[]>();
  for (const u of usage) charged.set(u.messageId, [...(charged.get(u.messageId) ?? []), u]);

  const chain = (first: TreeMessage): Html => {
    const nodes: Html[] = [];
    let node: TreeMessage | undefined = first;
    while (node !== undefined) {
      nodes.push(messageCard(node, charged.get(node.id) ?? []));
      const next: TreeMessage[] = children.get(node.id) ?? [];
      if (next.length === 1) node = next[0];
      else {
        if (next.length > 1) nodes.push(branches(next));
        node = undefined;
      }
    }
    return html`<div class="chain">${nodes}</div>`;
  };
  const branches = (heads: TreeMessage[]): Html =>
    html`<div class="branches" data-branches="${heads.length}">
      <div class="branch-label">${heads.length} branches</div>
      <div class="branch-row">${heads.map((h, i) => html`<div class="branch"><div class="branch-name">branch ${i + 1} of ${heads.length}</div>${chain(h)}</div>`)}</div>
    </div>`;
  const roots = children.get(null) ?? [];
  return html`<div class="tree" id="tree">
    ${roots.length > 1 ? branches(roots) : chain(roots[0]!)}
    ${more ? html`<p class="hint">Only the first ${count(messages.length)} messages are shown.</p>` : ''}
  </div>`;
}

function messageCard(m: TreeMessage, usage: ChargedUsage[]): Html {
  let text: string | undefined;
  let pretty = m.content;
  try {
    const value: unknown = JSON.parse(m.content);
    pretty = JSON.stringify(value, null, 2);
    if (typeof value === 'object' && value !== null && typeof (value as { text?: unknown }).text === 'string') text = (value as { text: string }).text;
  } catch {
    // not JSON: shown as it is
  }
  return html`<article class="message role-${m.role}" data-message="${m.id}">
    <header><span class="role">${m.role}</span> <time>${timestamp(m.createdAt)}</time> <code class="id">${m.id.slice(0, 8)}</code></header>
    ${text === undefined ? html`<pre class="content">${pretty}</pre>` : html`<div class="content">${text}</div><details><summary>content</summary><pre>${pretty}</pre></details>`}
    ${usage.map((u) => html`<div class="charge">${u.modelName ?? '?'} · ${u.type} · ${count(u.inputTokens)} in / ${count(u.outputTokens)} out · <strong>${u.cost}</strong></div>`)}
  </article>`;
}
