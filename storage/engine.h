/* engine.h: what a storage engine implements; store.c dispatches to it (storage-internal).
 *
 * An engine owns everything about where records live: it assigns positions (the only place
 * they are decided), makes appends durable, and keeps each log's last position with the
 * records. It seals each record through the record format (format.h) once its position is
 * known, and opens it the same way when reading, so it never interprets record bytes and never
 * writes a plaintext record anywhere. Whatever stores records below an engine stores the
 * positions it is given; a mismatch is a fail-stop (refuse writes, keep the log), never a
 * renumbering.
 *
 * Every entry has the meaning of the store.h function of the same name, with the same codes.
 * The table is cut so that a networked engine can implement it. The mapping for PostgreSQL
 * (a later engine, storage/pg/):
 *   open        connect, create or migrate the schema (a schema_version row), LISTEN.
 *   append      queue; a connection thread takes every queued append and runs one
 *               transaction: per log `UPDATE logs SET last = GREATEST(last + n, floor + n - 1),
 *               ix = ... WHERE log = $1 RETURNING last, ix` gives the positions and indexes
 *               (store.h), then one multi-row INSERT
 *               of the sealed records and a NOTIFY per log; done() runs after COMMIT returns
 *               (synchronous_commit on). A lost connection reports STORE_UNAVAILABLE.
 *   scan        SELECT pos, rec FROM records WHERE log = $1 AND pos >= $2 ORDER BY pos LIMIT n,
 *               and last from logs, in one REPEATABLE READ snapshot; opened into out.
 *   log_bounds  SELECT last FROM logs, min(pos) FROM records.
 *   watch       a local waiter list woken by NOTIFY (writes through any front-end).
 *   trim        DELETE ... WHERE log = $1 AND pos < $2 (bounded by a LIMITed sub-select), and
 *               in the same statement the given meta rows whose end is at or below the log's
 *               first position left (store_trim_row).
 *   log_drop    DELETE in bounded pieces, then the logs row; a dropped flag row fences appends
 *               (the append transaction checks it).
 *   meta_cas    UPDATE meta SET val, version = version + 1 WHERE key AND version = $v (INSERT
 *               ... ON CONFLICT DO NOTHING for version 0), all rows in one transaction;
 *               any row not matched rolls back and reports STORE_CONFLICT.
 *   meta_get / meta_scan   SELECT key, version, val FROM meta WHERE key LIKE prefix || '%'.
 *   log_seal    UPDATE logs SET sealed: the append transaction's UPDATE of the log row skips a
 *               sealed log, so a write routed by another front-end's old layout fails.
 *   lease       pg_try_advisory_lock on a connection of its own.
 *   row changes meta_cas NOTIFYs the changed keys; every front-end LISTENs and forwards them
 *               to store_meta_watch's callbacks (store.c runs those for local changes).
 *   stats       counters kept by the engine itself.
 * Optional entries may be NULL. */
#ifndef KINESD_ENGINE_H
#define KINESD_ENGINE_H

#include "store.h"

struct store_engine {
    const char *name;
    bool shared; /* other processes may open the same store */
    /* owner: the store being opened, for store_rows_changed (borrowed until close) */
    int (*open)(const struct store_config *cfg, struct store *owner, void **impl);
    void (*close)(void *impl);
    int (*append)(void *impl, struct store_batch *batches, size_t nbatches, store_done_fn done, void *arg);
    int (*scan)(void *impl, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
                struct store_records *out);
    int (*log_bounds)(void *impl, uint64_t log, uint64_t *last, uint64_t *first);
    int (*watch)(void *impl, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                 struct store_watch **w);
    bool (*unwatch)(void *impl, struct store_watch *w);
    /* rows (nrows, may be 0): deleted in the trim's transaction as store_trim_row says */
    int (*trim)(void *impl, uint64_t log, uint64_t below, size_t max, size_t *deleted,
                struct store_trim_row *rows, size_t nrows);
    int (*log_drop)(void *impl, uint64_t log);
    int (*log_seal)(void *impl, uint64_t log);
    int (*lease)(void *impl, const char *name); /* optional: NULL always holds */
    int (*meta_cas)(void *impl, struct store_row *rows, size_t n);
    int (*meta_get)(void *impl, const char *key, char **val, size_t *len, uint64_t *version);
    int (*meta_scan)(void *impl, const char *prefix, store_meta_fn fn, void *ctx);
    void (*stats)(void *impl, struct store_stats *st); /* optional */
};

extern const struct store_engine store_engine_lmdb;
extern const struct store_engine store_engine_pg;
extern const struct store_engine store_engine_snapshot; /* read-only view (lmdb/backup.h) */
struct store;

/* The engine's handle of s if s runs on engine e, else NULL (for code beside an engine that
 * offers more than the table: lmdb/backup.h). */
void *store_engine_impl(struct store *s, const struct store_engine *e);

/* An engine calls this with each metadata key another process changed (pg's notifications),
 * or NULL when any may have, so store_meta_watch's callbacks run; store.c calls it itself
 * after every local meta_cas. */
void store_rows_changed(struct store *s, const char *key);

/* Engines that wrap another, chosen by a cfg->engine of "NAME:INNER" (tests only): the
 * fault-injecting engine is "fault:lmdb". */
struct store_wrapper {
    const char *name;
    /* Open around an inner engine that this call opens itself with cfg. */
    int (*open)(const struct store_engine *inner, const struct store_config *cfg, struct store *owner,
                void **impl);
    const struct store_engine *table; /* every entry but open, on the wrapper's impl */
};

/* Register a wrapper (the fault engine's test harness calls this before store_open). */
void store_register_wrapper(const struct store_wrapper *w);

#endif
