/**
 * The studio's access token: random per run, printed in the studio's URL. A browser that opens
 * that URL gets it back as an HttpOnly cookie (and is redirected to the same page without it, so
 * that it stays out of the history and of Referer headers); scripts may send it as a bearer token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** The query parameter of the printed URL that carries the token. */
export const TOKEN_PARAMETER = 'token';

/** A new token: 32 random bytes, base64url (43 characters). */
export function createToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The cookie's name for `token`: distinct per studio run, since cookies are not kept apart by
 * port and two studios on one host would otherwise overwrite each other's.
 */
export function cookieName(token: string): string {
  return `studio_${createHash('sha256').update(token).digest('hex').slice(0, 12)}`;
}

/** True when `given` is `token` (compared in constant time). */
export function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

/** Where a request may carry the token. */
export interface TokenSources {
  query: string | undefined;
  cookie: string | undefined;
  authorization: string | undefined;
}

/** Which source of a request carries `token`, if any. */
export function tokenSource(sources: TokenSources, token: string): 'query' | 'cookie' | 'header' | undefined {
  if (tokenMatches(sources.cookie, token)) return 'cookie';
  const bearer = /^Bearer\s+(\S+)$/i.exec(sources.authorization ?? '')?.[1];
  if (tokenMatches(bearer, token)) return 'header';
  if (tokenMatches(sources.query, token)) return 'query';
  return undefined;
}
