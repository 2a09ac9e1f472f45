-- Why: reverses 0004_create_vectors (its indexes go with the table).

drop table vectors;
