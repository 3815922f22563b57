/* store.h: the storage front: append logs and versioned metadata rows, behind an engine table.
 *
 * Model. A store holds (1) metadata rows: short text keys to byte values, each with a version
 * that a compare-and-set checks, and (2) any number of append logs, each named by a 64-bit log
 * id chosen by the caller. A log is a sequence of records at strictly increasing 64-bit
 * positions. The engine assigns positions when it commits an append: the next position of a
 * log is max(last + 1, floor), where the caller supplies floor (kinesd passes the arrival time
 * in milliseconds shifted left by 20, so a position is also a timestamp). A log's last position
 * survives restarts, crashes, power loss and trims, so a position is never handed out twice, and
 * an acknowledged position always names the record it was acknowledged for.
 *
 * Indexes. The engine also counts each log's records, in the same commit as their positions: a
 * log's first record takes its position as its index, every later one the index one above its
 * predecessor's. So indexes step by one per record and, like positions, strictly increase and
 * are never handed out twice; every index of a log is at or above its first record's position,
 * and no record's index is above its own position (a log that held records from before
 * indexes counts on from its last position, which every earlier record's index is taken to
 * be). Sequence numbers count records with it.
 *
 * Durability. An append is reported (its callback runs with rc 0) only after its records are
 * durable, unless the store was opened with sync off. Concurrent appends share commits.
 *
 * Records. A record is (partition key, data). The record format (format.h) seals it once its
 * position is known, so a seal can bind the position; engines never interpret record bytes.
 *
 * Engines. store_open picks the engine from cfg->engine ("lmdb", the default, embedded; "pg",
 * PostgreSQL, shared by any number of processes); engine.h is the table each one implements. This layer knows
 * nothing of HTTP, JSON or Kinesis: it returns 0 or a negative STORE_* code and the caller translates it
 * where it knows the context. */
#ifndef KINESD_STORE_H
#define KINESD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    STORE_OK = 0,
    STORE_NOT_FOUND = -1,   /* no such key, log or record */
    STORE_IO = -2,          /* the engine failed to read or write (an I/O error) */
    STORE_CORRUPT = -3,     /* stored bytes do not decode or do not check out */
    STORE_NOMEM = -4,       /* out of memory */
    STORE_INVALID = -5,     /* bad argument or configuration */
    STORE_CLOSED = -6,      /* the store is shutting down */
    STORE_FULL = -7,        /* no space left (disk or map); retry after space is freed */
    STORE_BUSY = -8,        /* backpressure: too much is not yet flushed; retry shortly */
    STORE_UNAVAILABLE = -9, /* the engine cannot serve now (a failed sync, a lost connection) */
    STORE_CONFLICT = -10,   /* a compare-and-set found another version */
    STORE_NEWER = -11,      /* the store was laid out by a newer kinesd: left untouched */
};

/* A short, static name for a STORE_* code ("io", "busy", ...), for logs. */
const char *store_strerror(int rc);

struct store;

/* File I/O as the lmdb engine's write-ahead log does it. NULL in store_config means the OS
 * calls. Tests put a shim here to inject faults and to model a power loss: every write made
 * after the file's last completed datasync may be lost or torn. Each function returns what the
 * system call it stands for returns, with errno set on failure. */
struct store_io {
    int (*open)(void *ctx, const char *path, int flags, int mode);
    int (*close)(void *ctx, int fd);
    long (*pwrite)(void *ctx, int fd, const void *buf, size_t len, uint64_t off);
    long (*pread)(void *ctx, int fd, void *buf, size_t len, uint64_t off);
    int (*datasync)(void *ctx, int fd); /* fdatasync; on a directory fd, fsync */
    int (*truncate)(void *ctx, int fd, uint64_t len);
    /* Called after the engine made its database durable (an LMDB env sync) with the data
     * directory's path; NULL for none. A power-loss model snapshots the database here. */
    void (*db_synced)(void *ctx, const char *dir);
    void *ctx;
};

struct store_config {
    const char *engine;        /* "lmdb" (default when NULL) or "pg" */
    const char *dir;           /* lmdb: data directory, created if missing; pg: a libpq
                                  connection string; borrowed during open */
    bool sync;                 /* durable acknowledgements (fdatasync per group commit) */
    uint64_t initial_map;      /* lmdb: initial map size in bytes, 0 for the default */
    uint64_t max_unflushed;    /* backpressure cap on committed bytes not yet in the database;
                                  0 for the default (256 MiB) */
    const struct store_io *io; /* borrowed until store_close; NULL for the OS */
    /* the data keys records are sealed with (keyring.h), borrowed until store_close; NULL:
       records are not encrypted (only for measurements) */
    const struct store_keyring *keyring;
};

/* Open (creating if needed) the store. Recovery runs here: whatever the engine acknowledged
 * before a crash or power loss is readable when this returns. *out owned by the caller until
 * store_close. Returns 0, STORE_IO, STORE_CORRUPT, STORE_INVALID, STORE_NOMEM, STORE_NEWER (a schema
 * newer than this binary knows; nothing was changed). */
int store_open(const struct store_config *cfg, struct store **out);

/* Finish appends already queued, make everything durable, release everything. NULL allowed. */
void store_close(struct store *s);

/* The engine's name ("lmdb", "pg"). */
const char *store_engine_name(const struct store *s);

/* True if other processes may share the store (then rows change under this one's feet). */
bool store_shared(const struct store *s);

/* ---- appending ---- */

/* One record to append. pk and data are borrowed until the append is reported. */
struct store_rec {
    const void *pk;
    size_t pk_len; /* at most 65535 */
    const void *data;
    size_t data_len;
    uint64_t pos; /* out: the position assigned */
    uint64_t ix;  /* out: the index assigned (the log's records counted, from its first's position) */
};

/* Records for one log within an append. */
struct store_batch {
    uint64_t log;
    uint64_t floor;
    struct store_rec *recs; /* borrowed until reported; positions are filled in */
    size_t n;
};

/* Append every batch (each to its log, at consecutive positions >= its floor) in one atomic,
 * durable commit, without waiting: returns 0 once queued, and done(arg, rc) runs later on an
 * engine thread, after the records are durable (rc 0, positions filled in) or with the error
 * that stopped them (nothing of this append was acknowledged; STORE_IO, STORE_FULL,
 * STORE_UNAVAILABLE, STORE_NOT_FOUND for a dropped log). batches and their records are
 * borrowed until then; done must not block. Any other return means done will not be called:
 * STORE_CLOSED, STORE_INVALID (no records, a key too long, a dropped log), STORE_NOMEM,
 * STORE_BUSY (backpressure: retry later), STORE_UNAVAILABLE (the log is broken: restart). */
typedef void (*store_done_fn)(void *arg, int rc);
int store_append_async(struct store *s, struct store_batch *batches, size_t nbatches, store_done_fn done,
                       void *arg);

/* The same, waiting for the report. Returns 0 or any code of either form above. */
int store_append(struct store *s, struct store_batch *batches, size_t nbatches);

/* ---- reading ---- */

#define STORE_IX_NONE UINT64_MAX /* store_records.index_only: a record that does not check out */
/* One record read back. pk and data point into memory from the caller's allocator. */
struct store_read {
    uint64_t pos;
    uint64_t ix;        /* its index (store_rec's); its position if it was written before indexes */
    uint32_t key_class; /* the keyring's class of the data key that sealed it (keyring.h); 0 if none */
    const char *pk;
    size_t pk_len;
    const char *data;
    size_t data_len;
};

/* What a scan fills. The caller sets alloc/actx (an arena: memory is not freed one by one);
 * the scan sets the rest. */
struct store_records {
    void *(*alloc)(void *actx, size_t n); /* returns NULL when out of memory */
    void *actx;
    /* set by the caller: each record is checked as a read checks it, and kept with only its pos
       and ix (pk and data empty); one that does not check out (corrupt, moved, or its data key
       gone) is kept with ix STORE_IX_NONE instead of ending the scan */
    bool index_only;
    struct store_read *v; /* from alloc, n entries, position order */
    size_t n;
    size_t bytes;     /* pk + data bytes in v */
    uint64_t last;    /* the log's last position in the same snapshot, 0 if none */
    uint64_t last_ix; /* ... and its last index (store_rec's), 0 if none */
};

/* Copy records of log with position >= from into out, in order, until max_n records were read
 * or their bytes reach max_bytes (the record that crosses it is still read, so one record is
 * always read if there is one). No lock or transaction is held once it returns. Returns 0,
 * STORE_IO, STORE_CORRUPT, STORE_NOMEM (alloc failed; out holds what was read before). */
int store_scan(struct store *s, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
               struct store_records *out);

/* The last position ever assigned in log (0 if none) and the first position still stored
 * (0 if the log is empty). Either out-param may be NULL. Returns 0 or STORE_IO. */
int store_log_bounds(struct store *s, uint64_t log, uint64_t *last, uint64_t *first);

/* Wake when log has a committed record past position after: fn(arg) runs at most once, on an
 * engine thread (or at once, on the caller's, if there is one already), and must neither block
 * nor call the store. *w names the watch; call store_unwatch exactly once for it, fired or not
 * (that frees it). Returns 0, STORE_NOMEM, STORE_CLOSED. Used by long-lived readers
 * (SubscribeToShard). */
struct store_watch;
typedef void (*store_watch_fn)(void *arg);
int store_watch(struct store *s, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                struct store_watch **w);

/* Cancel a watch. When it returns, fn is not running and will not run. Returns true if it was
 * cancelled before fn ran. w may have fired already (then this only forgets it). */
bool store_unwatch(struct store *s, struct store_watch *w);

/* ---- trimming and dropping ---- */

/* Delete at most max records of log with position < below. *deleted gets the count. Costs no
 * write when nothing is below. With a keyring, the data keys no record left needs (keyring.h)
 * are deleted in the same transaction as the records, so a crash leaves neither a key without
 * its bucket's records gone nor records without their key. Returns 0, STORE_IO, STORE_FULL. */
int store_trim(struct store *s, uint64_t log, uint64_t below, size_t max, size_t *deleted);

/* A metadata row a trim deletes in its own transaction once no record of the log below `end`
 * is left (the log's first position after the trim, or `below` if it is then empty); the
 * engine sets gone when it did. tag is the keyring's. */
struct store_trim_row {
    char key[48];
    uint64_t end, tag;
    bool gone;
};

/* Forget a log entirely, with its last position, for good (its owner is gone). Fenced:
 * appends to it that are queued or later fail with STORE_NOT_FOUND/STORE_INVALID, and nothing
 * of it comes back after a crash. Drops in bounded pieces: returns STORE_BUSY while records
 * remain (call again), 0 when the log is gone. Returns 0, STORE_BUSY, STORE_IO, STORE_FULL. */
int store_log_drop(struct store *s, uint64_t log);

/* Close a log to appends for good (a reshard closed its shard): appends to it that are queued
 * or later fail with STORE_CONFLICT (nothing of that append is written: a front-end routing
 * by an outdated layout routes it again by a fresh one); its records stay readable. When this
 * returns 0, every append that was acknowledged for the log is readable, so its last position
 * is final. Returns 0, STORE_IO, STORE_UNAVAILABLE. */
int store_log_seal(struct store *s, uint64_t log);

/* ---- coordination ---- */

/* Try to hold the lease `name` (background work that one process at a time does: lifecycle
 * transitions, trimming). Returns 0 while this process holds it (it keeps it until close or
 * until the engine loses its connection), STORE_BUSY while another one does, or
 * STORE_UNAVAILABLE. Cheap to call often: an embedded engine always holds every lease. */
int store_lease(struct store *s, const char *name);

/* Be told when a metadata row whose key starts with prefix is changed, by this process or
 * (for a shared engine) another one: fn(arg, key) runs on an engine thread, must not block
 * and must not call the store; key is valid during the call, and NULL when any row may have
 * changed (a shared engine lost its notifications for a while). A change may be told twice. At most
 * STORE_MAX_ROW_WATCHES are kept; they live until store_close. Returns 0, STORE_NOMEM, STORE_INVALID. */
#define STORE_MAX_ROW_WATCHES 8
typedef void (*store_row_fn)(void *arg, const char *key);
int store_meta_watch(struct store *s, const char *prefix, store_row_fn fn, void *arg);

/* ---- metadata rows ---- */

/* A version that matches whatever is stored (an unconditional put or delete). */
#define STORE_ANY_VERSION UINT64_MAX

/* One row of a compare-and-set. */
struct store_row {
    const char *key;  /* borrowed, at most 256 bytes */
    uint64_t version; /* in: the version expected now (0: the row must not exist, or
                         STORE_ANY_VERSION); out: the row's new version (0 once deleted) */
    const void *val;  /* borrowed; NULL deletes the row */
    size_t len;
};

/* Write every row in one atomic, durable commit if each row's version is as expected; a row's
 * version then becomes the old one plus one (or 1 for a new row). Returns 0, STORE_CONFLICT
 * (nothing written), STORE_IO, STORE_FULL, STORE_INVALID. */
int store_meta_cas(struct store *s, struct store_row *rows, size_t n);

/* The same for one row, whatever its version (an unconditional put; val NULL deletes). */
int store_meta_put(struct store *s, const char *key, const void *val, size_t len);

/* Copy the value of key into a malloc'd buffer (*val owned by the caller, NUL-terminated) and
 * its version into *version (may be NULL). Returns 0, STORE_NOT_FOUND, STORE_IO, STORE_NOMEM. */
int store_meta_get(struct store *s, const char *key, char **val, size_t *len, uint64_t *version);

/* Visit every row whose key starts with prefix, in key order, from one snapshot. fn returns 0
 * to go on, non-zero to stop. Pointers are valid only during the callback; fn must not call
 * the store. Returns 0, STORE_IO. */
typedef int (*store_meta_fn)(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                             uint64_t version);
int store_meta_scan(struct store *s, const char *prefix, store_meta_fn fn, void *ctx);

/* ---- observing ---- */

/* The latency buckets of durable commits: at most store_sync_bounds_ns[i] each, and the last
 * one above them all. */
#define STORE_SYNC_BUCKETS 14
extern const uint64_t store_sync_bounds_ns[STORE_SYNC_BUCKETS];

struct store_stats {
    uint64_t unflushed_bytes;                      /* committed, not yet in the database */
    uint64_t wal_bytes;                            /* in the write-ahead log's live segments */
    uint64_t syncs;                                /* datasyncs of the log since open */
    uint64_t sync_ns_total;                        /* their summed latency */
    uint64_t sync_buckets[STORE_SYNC_BUCKETS + 1]; /* the same syncs by latency */
    uint64_t checkpoints;                          /* segments retired since open */
    uint64_t checkpoint_ns_total;                  /* the time their retiring took */
    uint64_t flushes;        /* moves of committed records into the database since open */
    uint64_t flush_ns_total; /* their summed time */
    uint64_t db_bytes;       /* size of the database file */
    uint64_t db_free_pages;  /* pages inside it free for reuse, as last counted (after a flush) */
    uint64_t db_page_size;
    uint64_t db_write_txns; /* write transactions begun since open (each takes LMDB's writer
                               lock, even one that turns out to change nothing) */
    uint64_t trims;         /* store_trim calls that deleted records, since open */
    uint64_t trimmed;       /* the records they deleted */
};

/* Count one durable commit of ns nanoseconds into buckets (atomic; for engines). */
void store_sync_observe(uint64_t buckets[STORE_SYNC_BUCKETS + 1], uint64_t ns);

/* Fill *st without taking a lock a writer or reader needs. */
void store_stats(struct store *s, struct store_stats *st);

#endif
