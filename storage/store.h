/* store.h: the storage front: append logs and a metadata map, durable, behind a backend table.
 *
 * Model. A store holds (1) a metadata map from short byte keys to byte values and (2) any
 * number of append logs, each named by a 64-bit log id chosen by the caller. A log is a
 * sequence of records at strictly increasing 64-bit positions. Positions are assigned by the
 * store at append time: the next position of a log is max(last + 1, floor), where the caller
 * supplies floor (kinesd passes the arrival time in milliseconds shifted left by 20, so a
 * position is also a timestamp). A log's last position survives restarts, crashes and trims,
 * so a position is never handed out twice.
 *
 * Durability. An append is reported (store_append returns, or store_append_async's callback
 * runs) only after its records are durably committed, unless the store was opened with sync
 * off. Concurrent appends are coalesced into one frame of a write-ahead log: one write and
 * one fsync (group commit); the records reach the backend later, in larger transactions, and
 * are readable from the moment they are acknowledged (see store.c).
 *
 * Records. A record is (partition key, data). The front seals it into the versioned on-disk
 * format (store_format.h) before it reaches a backend, so encryption at rest never needs a
 * backend's cooperation.
 *
 * Errors: 0 or a negative STORE_* code. This layer knows nothing of HTTP, JSON or Kinesis. */
#ifndef KINESD_STORE_H
#define KINESD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    STORE_OK = 0,
    STORE_NOTFOUND = -1, /* no such key / no such record */
    STORE_IO = -2,       /* the backend failed to read or write (disk full, I/O error) */
    STORE_CORRUPT = -3,  /* a stored record does not decode */
    STORE_NOMEM = -4,
    STORE_INVAL = -5,  /* bad argument or configuration */
    STORE_CLOSED = -6, /* the store is shutting down */
};

struct store;

struct store_config {
    const char *dir;      /* data directory, created if missing; borrowed during open */
    bool sync;            /* fsync every commit (durable acknowledgements) */
    uint64_t initial_map; /* initial map size in bytes, 0 for the default; the map grows */
};

/* One record to append. pk and data are borrowed for the duration of store_append. */
struct store_rec {
    const void *pk;
    size_t pk_len;
    const void *data;
    size_t data_len;
    uint64_t pos; /* out: the position assigned */
};

/* One record read back; pointers are valid only during the callback. */
struct store_view {
    uint64_t pos;
    const char *pk;
    size_t pk_len;
    const char *data;
    size_t data_len;
};

/* Called for each record of a scan, in position order. Return 0 to go on, 1 to stop after
 * this record, or a negative STORE_* code to abort the scan with that code. */
typedef int (*store_scan_fn)(void *ctx, const struct store_view *rec);

/* Open (creating if needed) the store in cfg->dir. *out owned by the caller until store_close.
 * Returns 0, STORE_IO, STORE_INVAL, STORE_NOMEM. */
int store_open(const struct store_config *cfg, struct store **out);

/* Finish pending appends, commit, and release everything. NULL is allowed. */
void store_close(struct store *s);

/* Name of the backend in use ("lmdb"). */
const char *store_backend_name(const struct store *s);

/* Records for one log within an append. */
struct store_batch {
    uint64_t log;
    uint64_t floor;
    struct store_rec *recs; /* borrowed; positions are filled in */
    size_t n;
};

/* Append every batch (each to its log, at consecutive positions >= its floor) in one atomic,
 * durable commit. Fills recs[i].pos. Blocks until committed.
 * Returns 0, STORE_IO, STORE_CLOSED, STORE_INVAL, STORE_NOMEM. */
int store_append(struct store *s, struct store_batch *batches, size_t nbatches);

/* The same without waiting: returns 0 once queued, and done(arg, rc) runs later on the store's
 * committer thread, after the records are durable (rc 0, positions filled) or failed. batches
 * and their records are borrowed until then; done must not block for long. Any other return
 * (STORE_CLOSED, STORE_INVAL for no records, STORE_NOMEM) means done will not be called. */
typedef void (*store_done_fn)(void *arg, int rc);
int store_append_async(struct store *s, struct store_batch *batches, size_t nbatches, store_done_fn done,
                       void *arg);

/* Visit records of log with position >= from, in order, until fn says stop, max_n records
 * were visited, or the data bytes visited reach max_bytes (the record that crosses it is still
 * visited). *last (if not NULL) gets the log's last position in the same snapshot, 0 if none.
 * Holds a read snapshot only for the duration of the call. Returns 0,
 * STORE_IO, STORE_CORRUPT, or fn's negative code. */
int store_scan(struct store *s, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes, store_scan_fn fn,
               void *ctx, uint64_t *last);

/* The last position ever assigned in log (0 if none) and the first position still stored
 * (0 if the log is empty). Either out-param may be NULL. Returns 0 or STORE_IO. */
int store_log_bounds(struct store *s, uint64_t log, uint64_t *last, uint64_t *first);

/* Delete at most max records of log with position < below, in one short transaction.
 * *deleted gets the count. Returns 0 or STORE_IO. Use below = UINT64_MAX to empty a log. */
int store_trim(struct store *s, uint64_t log, uint64_t below, size_t max, size_t *deleted);

/* Forget a log entirely, including its last position (after all its records were trimmed).
 * Used only when the owning stream is gone for good. */
int store_log_drop(struct store *s, uint64_t log);

/* Metadata map. key/val borrowed. A put with val NULL deletes. Durable on return. */
int store_meta_put(struct store *s, const char *key, const void *val, size_t len);

/* Copy the value of key into a malloc'd buffer (*val owned by the caller, NUL-terminated).
 * Returns 0 or STORE_NOTFOUND, STORE_IO. */
int store_meta_get(struct store *s, const char *key, char **val, size_t *len);

/* Visit every metadata entry whose key starts with prefix, in key order. fn returns 0 to go on,
 * non-zero to stop. Pointers valid only during the callback. */
typedef int (*store_meta_fn)(void *ctx, const char *key, size_t klen, const char *val, size_t vlen);
int store_meta_scan(struct store *s, const char *prefix, store_meta_fn fn, void *ctx);

/* Release the process's resident copies of data pages it is done with. The embedded backend
 * reads through a memory map, so every page a scan or a commit touched stays in the process's
 * resident set until released; the OS page cache keeps the pages, so a later read costs a
 * minor fault, not I/O. Called periodically, it keeps the server's RSS bounded by the data
 * touched per period instead of by the size of the data. */
void store_release_cache(struct store *s);

#endif
