-- Why: reverses 0006_keep_chunk_text_inline (text columns back to the default, EXTENDED).

alter table vectors
  alter column content_tsv set storage extended,
  alter column content set storage extended;
