-- Why: the seed must never clobber. It upserts the catalog from data/*.csv on every start, and a
-- catalog row may have been changed since by the cms (prompts, tools), an operator (a model's
-- price) or anyone else: that change must be kept, and reported, unless `seed --force` is asked
-- for. To tell "changed since the seed wrote it" from "the CSV line changed", the seed records what
-- it last wrote for each row: here, one row per seeded row, with a sha256 of each value written.
-- The owner's alone, like the migrator's ledger: app_user gets no privilege on it (the schema's
-- usage grant of 0001 lets it name the table, not read it), and no service needs it.

create table app.seed_rows (
  table_name text not null check (length(btrim(table_name)) > 0),
  -- The row's primary key values, as text, in the primary key's column order.
  row_key    text[] not null check (cardinality(row_key) > 0),
  -- Column name -> sha256 hex of the value's text form as stored (null for NULL), for the non-key
  -- columns the seed file gave when the seed last wrote the row.
  hashes     jsonb not null check (jsonb_typeof(hashes) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Serves: the seed's lookup of the entries of one table's rows, and its upsert by row.
  primary key (table_name, row_key)
);
comment on table app.seed_rows is
  'The seed''s ledger: what it last wrote to each catalog row (a sha256 per column), so that a row changed since is kept, not overwritten. Owner only.';

create trigger seed_rows_set_updated_at before update on app.seed_rows
  for each row execute function app.set_updated_at();
