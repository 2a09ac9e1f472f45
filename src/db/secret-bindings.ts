/**
 * Where each encrypted column's values live, as the associated data they are sealed with
 * (secrets.ts): a value opens only in the row it was sealed for. The seed, the query functions
 * and rotateSecrets all bind through these.
 */

/** The binding of providers.api_key of provider `providerId`: `providers.api_key:2`. */
export function providerKeyBinding(providerId: number | string): string {
  return `providers.api_key:${String(providerId)}`;
}

/** The binding of user_tools.credential of (tenant, user, tool): `user_tools.credential:<tenant>:<user>:<tool>`. */
export function userToolBinding(tenantId: string, userId: string, toolId: number | string): string {
  return `user_tools.credential:${tenantId.toLowerCase()}:${userId.toLowerCase()}:${String(toolId)}`;
}

/** How user_tools.credential holds a sealed credential: `{"v": 1, "enc": "<envelope of the JSON text>"}`. */
export interface SealedCredential {
  v: 1;
  enc: string;
}
