/* db.h: the lmdb engine's database: records, each log's last position, and metadata rows, in
 * one LMDB environment (engine-internal; engine.c uses it).
 *
 * The database stores the positions it is given. db_append refuses a record at or below its
 * log's last position (STORE_CORRUPT), except during recovery, where such records are the
 * ones already stored and are skipped. Functions return 0 or a negative STORE_* code. */
#ifndef KINESD_LMDB_DB_H
#define KINESD_LMDB_DB_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store.h"

struct format_opener;

/* The log table's keys: a log and a position, 8 bytes each, big-endian, so keys sort by log
 * and then position; a log's last position is kept under position DB_LAST_KEY. Here so that
 * the backup's read-only view decodes the same layout. */
#define DB_LAST_KEY UINT64_MAX

static inline void db_be64(unsigned char *o, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        o[i] = (unsigned char)v;
}

static inline uint64_t db_rd64(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

struct store_keyring;

struct db;

/* One sealed record to store. val borrowed for the call. */
struct db_rec {
    uint64_t log, pos;
    const char *val;
    size_t len;
};

/* Open or create dir/data.mdb. sync: every commit's data pages are synced before its meta
 * page is written (LMDB's MDB_NOMETASYNC), so the file is consistent after a power loss;
 * db_sync makes every earlier commit durable. */
int db_open(const char *dir, bool sync, uint64_t initial_map, struct db **out);
void db_close(struct db *d);

/* Store every record in one transaction; records of one log come in position order. With
 * replay, records at or below their log's last position (and those of dropped logs) are
 * skipped; without, they fail the whole call with STORE_CORRUPT (nothing stored) and a
 * dropped log fails it with STORE_NOT_FOUND. */
int db_append(struct db *d, const struct db_rec *r, size_t n, bool replay);

/* Open records of log from position from into out (format_open_with o), as store_scan. *last and
 * *last_ix get the log's last position and index in the same snapshot. */
int db_scan(struct db *d, struct format_opener *o, uint64_t log, uint64_t from, size_t max_n,
            size_t max_bytes, struct store_records *out, uint64_t *last, uint64_t *last_ix);

/* The log's last position (0 if none), last index (store.h; 0 if none), first stored position
 * (0 if none), and whether it was dropped or sealed. Any out-param may be NULL. */
int db_bounds(struct db *d, uint64_t log, uint64_t *last, uint64_t *ix, uint64_t *first, bool *dropped,
              bool *sealed);

/* Mark the log sealed (see store_log_seal); its last position stays. */
int db_seal(struct db *d, uint64_t log);

/* Delete at most max records below `below`; no write transaction when there are none. */
int db_trim(struct db *d, uint64_t log, uint64_t below, size_t max, size_t *deleted,
            struct store_trim_row *rows, size_t nrows);

/* Delete at most max records of log; once none remain, mark the log dropped (its last
 * position stays, so no record of it is ever stored again). *more: records remain. */
int db_drop(struct db *d, uint64_t log, size_t max, bool *more);

int db_meta_cas(struct db *d, struct store_row *rows, size_t n);
int db_meta_get(struct db *d, const char *key, char **val, size_t *len, uint64_t *version);
int db_meta_scan(struct db *d, const char *prefix, store_meta_fn fn, void *ctx);

/* Make every earlier commit durable (mdb_env_sync); a no-op without sync. */
int db_sync(struct db *d);

/* Size of the data file in bytes. */
uint64_t db_file_bytes(struct db *d);

/* The pages on LMDB's free list (free for reuse inside the file) into *out, from a read
 * transaction (it walks the free list: call it off the data plane). Returns 0 or STORE_IO. */
int db_free_pages(struct db *d, uint64_t *out);

/* The database's page size in bytes. */
uint64_t db_page_size(struct db *d);

/* Write transactions begun since open. */
uint64_t db_write_txns(struct db *d);

/* ---- reading within a transaction of the caller's (lmdb/backup.c's views of a directory
 * another process may be writing); dbi is the database "log" or "rows", as opened by name.
 * These return LMDB's codes; db_store_rc turns one into a STORE_* code. ---- */

enum { DB_LOG_OPEN = 0, DB_LOG_DROPPED = 'D', DB_LOG_SEALED = 'S' };

/* The log's last position (0 if none), its last index (may be NULL) and its DB_LOG_* state. */
int db_txn_last(MDB_txn *txn, MDB_dbi dbi, uint64_t log, uint64_t *last, uint64_t *ix, int *state);
/* As db_meta_get. */
int db_txn_row_get(MDB_txn *txn, MDB_dbi dbi, const char *key, char **val, size_t *len, uint64_t *version);
/* As db_meta_scan. */
int db_txn_rows_scan(MDB_txn *txn, MDB_dbi dbi, const char *prefix, store_meta_fn fn, void *ctx);
int db_store_rc(int lmdb_rc);

#endif
