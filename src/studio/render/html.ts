/**
 * HTML templates on Hono's `html` helper: every interpolated value is escaped unless it is itself
 * a template result, so text from the database can never become markup.
 */
import { html as honoHtml, raw } from 'hono/html';

/** An escaped HTML fragment. */
export type Html = ReturnType<typeof raw>;

/**
 * `html\`…\`` that is always synchronous: the studio interpolates only strings, numbers and other
 * fragments (Hono's helper returns a Promise only when a value is one).
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  const out = honoHtml(strings, ...values);
  if (out instanceof Promise) throw new Error('studio html: a Promise was interpolated; await the data before rendering');
  return out;
}

/** Joins fragments (an empty list is an empty fragment). */
export function join(parts: readonly Html[], separator: Html = html``): Html {
  return html`${parts.flatMap((p, i) => (i === 0 ? [p] : [separator, p]))}`;
}

/** JSON for a `<script type="application/json">` block: `<` escaped, so that no `</script>` can end it. */
export function jsonScript(id: string, value: unknown): Html {
  return raw(`<script type="application/json" id="${id}">${JSON.stringify(value).replace(/</g, '\\u003c')}</script>`);
}

/** A URL path with query parameters (empty and undefined ones left out). */
export function href(path: string, query: Record<string, string | number | undefined | null> = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
  }
  const text = params.toString();
  return text === '' ? path : `${path}?${text}`;
}

/** A count with thousands separators. */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** Bytes as B, kB, MB, GB (1024-based). */
export function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A timestamp as `YYYY-MM-DD HH:MM:SS` UTC. */
export function timestamp(value: Date): string {
  return `${value.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
