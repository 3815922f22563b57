/* backend.h: what a storage backend implements (the front in store.c does everything else).
 *
 * A backend stores opaque sealed record values and metadata. It must make one append_batch
 * atomic and durable by the next sync call, assign positions as store.h describes (the front
 * passes the positions it already acknowledged as floors), and keep each log's last position
 * in the same commit as the records. Acknowledgements do not wait for a backend: the front's
 * write-ahead log (wal.h) holds every record until a sync of the backend has covered it. Every function
 * returns 0 or a negative STORE_* code. The interface is narrow on purpose so that a networked backend can
 * implement it: no callbacks run inside a write, no pointers into backend memory outlive a call
 * (scan callbacks excepted, for the duration of the callback). */
#ifndef KINESD_BACKEND_H
#define KINESD_BACKEND_H

#include "store.h"

/* One append of the batch: n sealed values for one log. */
struct backend_append {
    uint64_t log;
    uint64_t floor;
    size_t n;
    const char *const *vals; /* n sealed values, borrowed */
    const size_t *lens;
    uint64_t *pos; /* out: n positions */
};

typedef int (*backend_scan_fn)(void *ctx, uint64_t pos, const char *val, size_t len);

struct store_backend {
    const char *name;
    int (*open)(const struct store_config *cfg, void **impl);
    void (*close)(void *impl);
    /* All appends in one transaction: all are committed, or none and the error is returned.
     * With sync on, the data is durable on return but the commit itself only after the next
     * sync (this or a later commit's, or the sync call below). */
    int (*append_batch)(void *impl, struct backend_append *a, size_t n);
    int (*scan)(void *impl, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes, backend_scan_fn fn,
                void *ctx, uint64_t *last);
    int (*log_bounds)(void *impl, uint64_t log, uint64_t *last, uint64_t *first);
    int (*trim)(void *impl, uint64_t log, uint64_t below, size_t max, size_t *deleted);
    int (*log_drop)(void *impl, uint64_t log);
    int (*meta_put)(void *impl, const char *key, const void *val, size_t len);
    int (*meta_get)(void *impl, const char *key, char **val, size_t *len);
    int (*meta_scan)(void *impl, const char *prefix, store_meta_fn fn, void *ctx);
    /* Make every earlier commit durable. */
    int (*sync)(void *impl);
    /* Drop this process's mappings of cached data (the OS page cache keeps it); NULL if the
     * backend keeps no such cache. */
    void (*release_cache)(void *impl);
};

extern const struct store_backend store_backend_lmdb;

#endif
