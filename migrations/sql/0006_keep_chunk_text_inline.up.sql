-- Why: hybridSearch's full-text leg ranks every match of the query (ts_rank_cd over content_tsv),
-- hundreds of rows in a big tenant. A vectors row is over 6 kB with its embedding kept inline
-- (storage PLAIN, 0004), so the toaster moved content_tsv and content out of line: each match cost
-- a TOAST index lookup and a TOAST heap read on top of its heap page (bench, 100,000 chunks: a
-- median 850 matches, 4,356 buffers and 8.6 ms per query). With storage MAIN they stay in the row
-- (compressed when that helps) as long as the row fits its 8 kB page; longer texts still go out of
-- line. Only new rows are stored this way: rows written before this migration move in when they
-- are rewritten (VACUUM FULL, or a dump and restore). Metadata only: no rewrite, a brief lock.

alter table vectors
  alter column content_tsv set storage main,
  alter column content set storage main;
