-- Why: secrets at rest were plaintext: providers.api_key (no app role reads it, but a dump or a
-- backup does) and user_tools.credential (readable by every cms transaction of the tenant). They
-- are now AES-256-GCM envelopes sealed by the package with a key from the environment
-- (DB_SECRET_KEYS), `v1.<key id>.<iv>.<ciphertext+tag>`, bound to their row; the database never
-- sees a key or a plaintext, so this migration cannot encrypt the values already stored. The
-- checks below are NOT VALID: rows written from now on must be sealed, whatever writes them;
-- values stored before stay readable as they are until `database secrets rotate` (or, for
-- providers.api_key, the next seed run) seals them, and the package's reads refuse them meanwhile.

-- Serves: every write of providers.api_key: NULL (no key) or an envelope, never plaintext.
alter table providers add constraint providers_api_key_sealed
  check (api_key is null or api_key ~ '^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22,}$') not valid;
comment on constraint providers_api_key_sealed on providers is
  'providers.api_key is NULL or an AES-256-GCM envelope sealed by the package (README, "Secrets"); NOT VALID: values stored before 0012 are sealed by `database secrets rotate`.';

-- Serves: every write of user_tools.credential: {} (none) or {"v": 1, "enc": "<envelope>"}.
alter table user_tools add constraint user_tools_credential_sealed
  check (credential = '{}'::jsonb
         or (credential - 'v' - 'enc' = '{}'::jsonb
             and credential -> 'v' = '1'::jsonb
             and coalesce(credential ->> 'enc', '') ~ '^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22,}$')) not valid;
comment on constraint user_tools_credential_sealed on user_tools is
  'user_tools.credential is {} or {"v":1,"enc":"<AES-256-GCM envelope>"} (README, "Secrets"); NOT VALID: values stored before 0012 are sealed by `database secrets rotate`.';

-- Serves: listUserTools, a user's tools newest first (keyset on created_at desc, id desc).
create index user_tools_tenant_user_created_idx on user_tools (tenant_id, user_id, created_at desc, id desc);

-- Serves: getProviderCredentials, the gateway's lookup of the key it calls a provider with. No
-- app role can read providers.api_key; this returns one provider's row, the key still sealed (the
-- client opens it). SECURITY DEFINER runs it as the owner; the pinned search_path keeps a
-- caller's objects out of it. Only the gateway may call it.
create function app.provider_credentials(provider integer)
  returns table (id integer, name text, endpoint text, api_key text)
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select p.id, p.name, p.endpoint, p.api_key
  from public.providers p
  where p.id = provider
$$;
comment on function app.provider_credentials(integer) is
  'One provider with its api_key, still sealed (the package opens it): for the gateway (app_gateway) only.';
revoke all on function app.provider_credentials(integer) from public;
grant execute on function app.provider_credentials(integer) to app_gateway;
