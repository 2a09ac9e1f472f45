/**
 * Size limits of the query functions, in one place (README, "Limits"). Each is checked before
 * any SQL with a ValidationError naming the field and the limit. A limit marked "per call" can be
 * changed for one call by the option named beside it, up to its ceiling; the others are fixed by
 * the schema or by PostgreSQL. Message content has its own, MAX_MESSAGE_CONTENT_BYTES (messages.ts).
 *
 * Bytes are UTF-8 bytes, as PostgreSQL stores and sends text.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** Rows per page of a list when `limit` is not given. */
export const DEFAULT_PAGE_SIZE = 50;
/** The largest `limit` of a list. */
export const MAX_PAGE_SIZE = 200;
/** The largest `k` of similaritySearch and hybridSearch (default 10). */
export const MAX_SEARCH_K = 1000;
/** The largest `textCandidates` of hybridSearch (full-text matches ranked; app.search_text takes an integer). */
export const MAX_TEXT_CANDIDATES = 1_000_000;

/**
 * Default byte budget of one call's answer: the most bytes of content (and other variable-length
 * text) that a page of listResources or listMessages, a getThread path or a search may return.
 * Per call: `maxPageBytes`, 1 .. MAX_PAGE_BYTES. A list stops its page before the first row that
 * would pass it (nextCursor continues there); a row that alone passes it, a thread or a search
 * result that passes it, is refused with ValidationError('maxPageBytes') naming the bytes needed.
 */
export const DEFAULT_PAGE_BYTES = 32 * MiB;
/** The largest `maxPageBytes` (1 GiB, the most PostgreSQL holds in one value: any stored row fits). */
export const MAX_PAGE_BYTES = 1024 * MiB;

/**
 * Default most bytes of a resource's `content`. Per call: createResource `maxContentBytes`, up
 * to MAX_CONTENT_BYTES_CEILING. Below DEFAULT_PAGE_BYTES with the other columns, so a resource
 * written within the defaults always fits a page read with the defaults.
 */
export const MAX_RESOURCE_CONTENT_BYTES = 16 * MiB;
/** The largest `maxContentBytes` createResource and addChunks accept. */
export const MAX_CONTENT_BYTES_CEILING = 256 * MiB;

/** Default most bytes of a resource's `metadata` as JSON text. Per call: createResource `maxMetadataBytes`, up to MAX_CONTENT_BYTES_CEILING. */
export const MAX_METADATA_BYTES = 64 * KiB;

/**
 * Default most bytes of a chunk's `content`. Per call: addChunks `maxContentBytes`, up to
 * MAX_CONTENT_BYTES_CEILING. Whatever the limit, a chunk whose full-text vector PostgreSQL
 * cannot build (more than TSVECTOR_MAX_BYTES of distinct words) is refused with a
 * ValidationError naming it (see addChunks).
 */
export const MAX_CHUNK_CONTENT_BYTES = 256 * KiB;

/**
 * PostgreSQL's limit on a tsvector's lexemes and positions (MAXSTRPOS, 2^20 - 1 bytes): past it
 * `to_tsvector` fails with 54000 "string is too long for tsvector". It counts each distinct
 * lexeme's bytes plus 2-byte positions and alignment, so text can pass it with fewer bytes of its
 * own: 1,000,000 characters of distinct words need 1.6 MB. (Lexemes longer than 2047 bytes are
 * left out with a notice, and positions past 16,383 or the 256th of a lexeme are dropped: those
 * never fail.)
 */
export const TSVECTOR_MAX_BYTES = 1_048_575;

/** Default most rows of costSummary. Per call: `maxRows`, up to MAX_COST_SUMMARY_ROWS_CEILING. */
export const MAX_COST_SUMMARY_ROWS = 10_000;
/** The largest `maxRows` of costSummary. */
export const MAX_COST_SUMMARY_ROWS_CEILING = 100_000;

/**
 * The earliest date the date parameters accept (costSummary `from`/`to`): years 1 through 9999, UTC.
 * PostgreSQL's timestamptz goes from 4714 BC to 294276 AD, but PGlite sends a Date as
 * `toISOString()`, whose six-digit years (`+010000-…`, `-000001-…`) PostgreSQL refuses (22009),
 * and year 0 (1 BC) as `0000-…` (22008); these are the dates both backends read alike.
 */
export const MIN_DATE = '0001-01-01T00:00:00.000Z';
/** The latest date the date parameters accept; see {@link MIN_DATE}. */
export const MAX_DATE = '9999-12-31T23:59:59.999Z';
