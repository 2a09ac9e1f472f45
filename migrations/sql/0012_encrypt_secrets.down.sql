-- Why: reverses 0012_encrypt_secrets. The values stay sealed (a down migration has no key to
-- open them with): the package's reads open them as before.

revoke execute on function app.provider_credentials(integer) from app_gateway;
drop function app.provider_credentials(integer);
drop index user_tools_tenant_user_created_idx;
alter table user_tools drop constraint user_tools_credential_sealed;
alter table providers drop constraint providers_api_key_sealed;
