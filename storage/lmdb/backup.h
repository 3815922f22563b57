/* backup.h: a consistent, read-only view of an lmdb data directory, whether a server runs on it
 * or not, and the copies made from one: backup, restore, compact (for kinesd-admin).
 *
 * A view reads the write-ahead log's frames first and then begins one LMDB read transaction,
 * kept until it is closed. A frame leaves the log only after the flusher stored its records
 * in LMDB and made that durable (wal.h), so every record that was acknowledged before the view
 * was opened is either in the frames read or in the snapshot begun after them: the view holds
 * every acknowledged record and nothing that was not written. The view is the snapshot plus
 * the frames' records past each log's last position in it. Opening one changes nothing in the
 * directory (LMDB readers share its lock file with the server; the log is read through
 * read-only descriptors). Functions return 0 or a negative STORE_* code. */
#ifndef KINESD_LMDB_BACKUP_H
#define KINESD_LMDB_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store.h"

struct backup_snap;

/* Open a view of data directory dir. *out owned by the caller until backup_snap_close.
 * Returns 0, STORE_NOT_FOUND (no dir/data.mdb: not a data directory), STORE_INVALID (a log
 * segment of a newer format version), STORE_CORRUPT, STORE_IO, STORE_NOMEM. */
int backup_snap_open(const char *dir, struct backup_snap **out);
void backup_snap_close(struct backup_snap *s);

/* The view as a read-only store: store_open with cfg->engine "snapshot" opens a view of
 * cfg->dir and serves scans, bounds and metadata rows from it, opening records with
 * cfg->keyring; every write answers STORE_INVALID. The view of such a store, or NULL if s is
 * not one (borrowed until store_close). */
struct backup_snap *backup_snap_of(struct store *s);

enum { BACKUP_LOG_OPEN, BACKUP_LOG_SEALED, BACKUP_LOG_DROPPED };

/* One log of the view. */
struct backup_log {
    uint64_t log;
    uint64_t last;        /* its last position (the log's, not only of records still stored) */
    int state;            /* BACKUP_LOG_* */
    uint64_t wal_records; /* records only in the write-ahead log, not yet in LMDB */
};

/* Visit every log in log id order; fn returns 0 to go on, anything else stops the walk and is
 * returned. */
typedef int (*backup_log_fn)(void *ctx, const struct backup_log *l);
int backup_snap_logs(struct backup_snap *s, backup_log_fn fn, void *ctx);

/* Visit the sealed bytes of every record of log at position >= from, in the order stored
 * (LMDB's, then the log's newer ones); val valid during the call. fn returns as above. */
typedef int (*backup_rec_fn)(void *ctx, uint64_t log, uint64_t pos, const char *val, size_t len, bool in_wal);
int backup_snap_records(struct backup_snap *s, uint64_t log, uint64_t from, backup_rec_fn fn, void *ctx);

struct backup_info {
    uint64_t file_bytes;   /* data.mdb */
    uint64_t map_bytes;    /* LMDB's map size */
    uint64_t page_bytes;   /* LMDB's page size */
    uint64_t pages_used;   /* pages up to the last one in use */
    uint64_t free_pages;   /* pages on LMDB's free list, reused before the file grows */
    uint64_t txn_id;       /* of the snapshot */
    uint64_t wal_bytes[2]; /* sizes of wal.0 and wal.1 */
    uint64_t wal_frames;   /* frames read from them */
    uint64_t wal_records;  /* records of those frames not yet in LMDB */
};
void backup_snap_info(struct backup_snap *s, struct backup_info *info);

/* Copy the data directory src, live or not, into dest (created, or an empty directory) as a
 * directory a server can start on: LMDB's copy of a snapshot begun after the log was read,
 * with the log's newer records stored into it, so it needs no log; node.key and root.key are
 * copied as they are. compact leaves out free pages. dest is locked as a server locks its
 * directory while this runs. *wal_records (may be NULL) gets the records taken from the log.
 * Returns 0, STORE_NOT_FOUND (src is no data directory), STORE_CONFLICT (dest is not empty),
 * STORE_BUSY (dest is in use), STORE_INVALID, STORE_IO, STORE_FULL, STORE_NOMEM. */
int backup_copy(const char *src, const char *dest, bool compact, uint64_t *wal_records);

/* Rewrite dir's database without free pages, in place; the server must not run (the
 * directory is locked for it). *before and *after get the file's sizes. Returns 0,
 * STORE_NOT_FOUND, STORE_BUSY (a server runs on it), STORE_IO, STORE_FULL. */
int backup_compact(const char *dir, uint64_t *before, uint64_t *after);

/* Lock dir as a server does (its file "lock"), for an offline tool; *fd to close when done.
 * Returns 0, STORE_BUSY (in use), STORE_IO. */
int backup_lock(const char *dir, int *fd);

#endif
