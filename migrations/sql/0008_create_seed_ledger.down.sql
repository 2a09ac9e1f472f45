-- Why: reverses 0008_create_seed_ledger (its trigger and primary key index go with the table).

drop table app.seed_rows;
