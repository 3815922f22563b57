/* db.c: the lmdb engine's database, one LMDB environment in the data directory (see db.h).
 *
 * Databases:
 *   "log"  key = log id (8 bytes BE) . position (8 bytes BE)  -> sealed record
 *          key = log id . 0xFFFFFFFFFFFFFFFF                  -> last position (8 bytes BE),
 *                                                                then "D" once dropped or
 *                                                                "S" once sealed
 *   "rows" key = text                                         -> version (8 bytes BE) . value
 *   "meta" the unversioned rows of earlier releases, moved into "rows" (version 1) at open.
 * Big-endian keys make LMDB's byte order the (log, position) order, so a log is one key range
 * and a scan is one cursor walk. The last position of a log is written in the same transaction
 * as its records, on the page the append already dirties. A dropped log keeps its last-position
 * entry as a tombstone (17 bytes), so a record of it replayed from the write-ahead log after a
 * crash is recognised and skipped instead of bringing the log back.
 *
 * The map grows: every transaction holds `resize` for reading, and never takes it twice; a
 * transaction that hits MDB_MAP_FULL is aborted, the map is enlarged under the write lock (no
 * transaction of this process is open then, as LMDB requires), and the work is retried. Read
 * transactions live for one call (MDB_NOTLS, so any thread may run one). */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../format.h"
#include "db.h"
#include "klog.h"

#define DEFAULT_MAP (256ull << 20)
#define MAX_GROW_STEP (8ull << 30)
#define MAX_KEY 256

struct db {
    MDB_env *env;
    MDB_dbi log, rows;
    pthread_rwlock_t resize;
    uint64_t mapsize;    /* under resize */
    uint64_t write_txns; /* begun (atomic) */
    uint64_t page_size;  /* read once at open: mdb_env_stat reads the map, which growing remaps */
    bool sync;
    char path[4096];
};

static int map_rc(int rc)
{
    switch (rc) {
    case 0: return STORE_OK;
    case MDB_NOTFOUND: return STORE_NOT_FOUND;
    case ENOMEM: return STORE_NOMEM;
    case ENOSPC:
    case EDQUOT:
    case MDB_MAP_FULL: return STORE_FULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID: return STORE_CORRUPT;
    case MDB_VERSION_MISMATCH: return STORE_INVALID; /* a newer LMDB file format */
    default:
        klog(KLOG_ERROR, "lmdb: %s", mdb_strerror(rc)); /* what the code does not name */
        return STORE_IO;
    }
}

/* Enlarge the map after MDB_MAP_FULL; seen is the size the failing transaction had. */
static int grow(struct db *d, uint64_t seen)
{
    int rc = 0;
    pthread_rwlock_wrlock(&d->resize);
    if (d->mapsize == seen) {
        uint64_t step = seen < MAX_GROW_STEP ? seen : MAX_GROW_STEP;
        rc = mdb_env_set_mapsize(d->env, (size_t)(seen + step));
        if (rc == 0)
            d->mapsize = seen + step;
    }
    pthread_rwlock_unlock(&d->resize);
    return rc;
}

static int txn_begin(struct db *d, unsigned flags, MDB_txn **txn, uint64_t *seen)
{
    pthread_rwlock_rdlock(&d->resize);
    *seen = d->mapsize;
    int rc = mdb_txn_begin(d->env, NULL, flags, txn);
    if (rc)
        pthread_rwlock_unlock(&d->resize);
    return rc;
}

static void txn_abort(struct db *d, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&d->resize);
}

static int txn_commit(struct db *d, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&d->resize);
    return rc;
}

/* Run a write transaction: fn(d, txn, ctx) does the work; MDB_MAP_FULL grows the map and runs
 * it again. Returns LMDB's code. */
static int write_txn(struct db *d, int (*fn)(struct db *, MDB_txn *, void *), void *ctx)
{
    for (;;) {
        MDB_txn *txn;
        uint64_t seen;
        __atomic_add_fetch(&d->write_txns, 1, __ATOMIC_RELAXED);
        int rc = txn_begin(d, 0, &txn, &seen);
        if (rc)
            return rc;
        rc = fn(d, txn, ctx);
        if (rc == 0)
            rc = txn_commit(d, txn);
        else
            txn_abort(d, txn);
        if (rc == MDB_MAP_FULL && grow(d, seen) == 0)
            continue;
        return rc;
    }
}

/* Move the unversioned rows of earlier releases into "rows", at version 1. */
static int migrate(struct db *d, MDB_txn *txn, void *ctx)
{
    (void)ctx;
    MDB_dbi old;
    if (mdb_dbi_open(txn, "meta", 0, &old))
        return 0; /* none */
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, old, &cur);
    MDB_val k, v;
    for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        MDB_val nv = {8 + v.mv_size, NULL};
        if ((rc = mdb_put(txn, d->rows, &k, &nv, MDB_RESERVE)))
            break;
        db_be64(nv.mv_data, 1);
        memcpy((char *)nv.mv_data + 8, v.mv_data, v.mv_size);
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    mdb_cursor_close(cur);
    return rc ? rc : mdb_drop(txn, old, 1);
}

int db_open(const char *dir, bool sync, uint64_t initial_map, struct db **out)
{
    struct db *d = calloc(1, sizeof *d);
    if (!d)
        return STORE_NOMEM;
    pthread_rwlockattr_t ra; /* transactions overlap all the time; growing must still get in */
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&d->resize, &ra);
    pthread_rwlockattr_destroy(&ra);
    snprintf(d->path, sizeof d->path, "%s/data.mdb", dir);
    d->mapsize = initial_map ? initial_map : DEFAULT_MAP;
    d->sync = sync;
    int rc = mdb_env_create(&d->env);
    if (rc)
        goto fail;
    mdb_env_set_maxdbs(d->env, 4);
    mdb_env_set_maxreaders(d->env, 1024);
    struct stat st; /* keep the size the file already has if it is larger (a grown store) */
    if (stat(d->path, &st) == 0 && (uint64_t)st.st_size > d->mapsize)
        d->mapsize = (uint64_t)st.st_size;
    mdb_env_set_mapsize(d->env, (size_t)d->mapsize);
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (sync ? MDB_NOMETASYNC : MDB_NOSYNC);
    if ((rc = mdb_env_open(d->env, dir, flags, 0644)))
        goto fail_env;
    int dead;
    mdb_reader_check(d->env, &dead); /* slots of a killed process */
    MDB_envinfo info;
    if (mdb_env_info(d->env, &info) == 0)
        d->mapsize = info.me_mapsize;
    MDB_stat ms;
    if (mdb_env_stat(d->env, &ms) == 0)
        d->page_size = ms.ms_psize;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(d->env, NULL, 0, &txn)))
        goto fail_env;
    if ((rc = mdb_dbi_open(txn, "log", MDB_CREATE, &d->log)) ||
        (rc = mdb_dbi_open(txn, "rows", MDB_CREATE, &d->rows)) || (rc = migrate(d, txn, NULL))) {
        mdb_txn_abort(txn);
        goto fail_env;
    }
    if ((rc = mdb_txn_commit(txn)))
        goto fail_env;
    *out = d;
    return 0;
fail_env:
    mdb_env_close(d->env);
fail:
    klog(KLOG_ERROR, "lmdb: %s: %s", dir, mdb_strerror(rc));
    pthread_rwlock_destroy(&d->resize);
    free(d);
    rc = map_rc(rc);
    return rc == STORE_NOT_FOUND ? STORE_IO : rc;
}

void db_close(struct db *d)
{
    if (!d)
        return;
    if (d->sync)
        mdb_env_sync(d->env, 1);
    mdb_env_close(d->env);
    pthread_rwlock_destroy(&d->resize);
    free(d);
}

int db_sync(struct db *d) { return d->sync ? map_rc(mdb_env_sync(d->env, 1)) : 0; }

uint64_t db_write_txns(struct db *d) { return __atomic_load_n(&d->write_txns, __ATOMIC_RELAXED); }

uint64_t db_file_bytes(struct db *d)
{
    struct stat st;
    return stat(d->path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* (Not mdb_env_stat here: it reads the meta pages through the map, which a growing thread may
 * be replacing: a stats call during map growth crashed on it.) */
uint64_t db_page_size(struct db *d) { return d->page_size; }

int db_free_pages(struct db *d, uint64_t *out)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint64_t seen, n = 0;
    int rc = txn_begin(d, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    rc = mdb_cursor_open(txn, 0, &cur); /* dbi 0: LMDB's free list, one entry per freeing txn */
    if (rc == 0) {
        MDB_val k, v;
        for (MDB_cursor_op op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT)
            if (v.mv_size >= sizeof(size_t)) { /* a page list: its count, then the pages */
                size_t count;
                memcpy(&count, v.mv_data, sizeof count);
                n += count;
            }
        mdb_cursor_close(cur);
    }
    txn_abort(d, txn);
    if (rc != MDB_NOTFOUND)
        return map_rc(rc);
    *out = n;
    return 0;
}

/* ---- records ---- */

enum { OPEN = DB_LOG_OPEN, DROPPED = DB_LOG_DROPPED, SEALED = DB_LOG_SEALED };

/* The last-position entry's value: the last position (8 bytes), the last index (8; absent in
 * entries written before indexes: the index is then the position), and a state byte unless
 * the log is open. */
int db_txn_last(MDB_txn *txn, MDB_dbi dbi, uint64_t log, uint64_t *last, uint64_t *ix, int *state)
{
    unsigned char lk[16];
    db_be64(lk, log);
    db_be64(lk + 8, DB_LAST_KEY);
    MDB_val k = {16, lk}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    uint64_t x;
    ix = ix ? ix : &x;
    *last = *ix = 0;
    *state = OPEN;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    const char *b = v.mv_data;
    size_t n = v.mv_size & ~(size_t)1;
    if ((n != 8 && n != 16) || (v.mv_size & 1 && b[n] != DROPPED && b[n] != SEALED))
        return MDB_CORRUPTED;
    *last = db_rd64(b);
    *ix = n == 16 ? db_rd64(b + 8) : *last;
    *state = v.mv_size & 1 ? b[n] : OPEN;
    return 0;
}

/* The last-position entry of log: *last, *ix and *state, or 0 / OPEN when there is none. */
static int get_last(struct db *d, MDB_txn *txn, uint64_t log, uint64_t *last, uint64_t *ix, int *state)
{
    return db_txn_last(txn, d->log, log, last, ix, state);
}

/* The last-position entry through cur when the caller has one on d->log (see append_in), else
 * by a search of its own. */
static int put_last_at(struct db *d, MDB_txn *txn, MDB_cursor *cur, uint64_t log, uint64_t last, uint64_t ix,
                       int state)
{
    unsigned char lk[16], lv[17];
    db_be64(lk, log);
    db_be64(lk + 8, DB_LAST_KEY);
    db_be64(lv, last);
    db_be64(lv + 8, ix);
    lv[16] = (unsigned char)state;
    MDB_val k = {16, lk}, v = {state == OPEN ? 16 : 17, lv};
    return cur ? mdb_cursor_put(cur, &k, &v, 0) : mdb_put(txn, d->log, &k, &v, 0);
}

static int put_last(struct db *d, MDB_txn *txn, uint64_t log, uint64_t last, uint64_t ix, int state)
{
    return put_last_at(d, txn, NULL, log, last, ix, state);
}

struct append_ctx {
    const struct db_rec *r;
    size_t n;
    bool replay;
};

/* The records go in through one cursor: each key follows the one before, so LMDB finds its
 * place on the page the cursor is on (two key compares and a search of that page) instead of
 * descending the tree from the root for every record as mdb_put does (per level a search of the
 * transaction's dirty pages and of the node). */
static int append_run(struct db *d, MDB_txn *txn, MDB_cursor *cur, struct append_ctx *a);

static int append_in(struct db *d, MDB_txn *txn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, d->log, &cur);
    if (rc)
        return rc;
    rc = append_run(d, txn, cur, ctx);
    mdb_cursor_close(cur);
    return rc;
}

static int append_run(struct db *d, MDB_txn *txn, MDB_cursor *cur, struct append_ctx *a)
{
    for (size_t i = 0; i < a->n;) {
        uint64_t log = a->r[i].log, last, ix;
        int state;
        int rc = get_last(d, txn, log, &last, &ix, &state);
        if (rc)
            return rc;
        bool dropped = state == DROPPED;
        size_t j = i, stored = SIZE_MAX;
        for (; j < a->n && a->r[j].log == log; j++) {
            const struct db_rec *r = &a->r[j];
            /* a sealed log still takes what was acknowledged before the seal (a replay, or a
             * flush of frames written before it): the seal fenced later appends upstream */
            if (r->pos <= last || dropped) {
                if (a->replay)
                    continue;
                return dropped ? MDB_NOTFOUND : MDB_KEYEXIST;
            }
            unsigned char key[16];
            db_be64(key, log);
            db_be64(key + 8, r->pos);
            MDB_val k = {16, key}, v = {r->len, NULL};
            if ((rc = mdb_cursor_put(cur, &k, &v, MDB_RESERVE)))
                return rc;
            memcpy(v.mv_data, r->val, r->len);
            last = r->pos;
            stored = j;
        }
        /* the log's last index is its last record's (read from the record's header) */
        if (stored != SIZE_MAX)
            ix = format_index(a->r[stored].val, a->r[stored].len, last);
        if (!dropped && (rc = put_last_at(d, txn, cur, log, last, ix, state)))
            return rc;
        i = j;
    }
    return 0;
}

int db_append(struct db *d, const struct db_rec *r, size_t n, bool replay)
{
    struct append_ctx a = {r, n, replay};
    int rc = write_txn(d, append_in, &a);
    return rc == MDB_KEYEXIST ? STORE_CORRUPT : map_rc(rc);
}

int db_scan(struct db *d, struct format_opener *o, uint64_t log, uint64_t from, size_t max_n,
            size_t max_bytes, struct store_records *out, uint64_t *last, uint64_t *last_ix)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint64_t seen;
    int rc = txn_begin(d, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    if ((rc = mdb_cursor_open(txn, d->log, &cur))) {
        txn_abort(d, txn);
        return map_rc(rc);
    }
    unsigned char key[16];
    db_be64(key, log);
    db_be64(key + 8, from);
    MDB_val k = {16, key}, v;
    size_t count = 0, bytes = 0;
    int out_rc = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && count < max_n && bytes < max_bytes;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t pos = db_rd64((char *)k.mv_data + 8);
        if (k.mv_size != 16 || memcmp(k.mv_data, key, 8) || pos == DB_LAST_KEY)
            break;
        if ((out_rc = format_open_with(o, v.mv_data, v.mv_size, log, pos, out)))
            break;
        count++;
        bytes += v.mv_size;
    }
    if (rc && rc != MDB_NOTFOUND && !out_rc)
        out_rc = map_rc(rc);
    mdb_cursor_close(cur);
    int state;
    if (!out_rc && last && (rc = get_last(d, txn, log, last, last_ix, &state)))
        out_rc = map_rc(rc);
    txn_abort(d, txn);
    return out_rc;
}

int db_bounds(struct db *d, uint64_t log, uint64_t *last, uint64_t *ix, uint64_t *first, bool *dropped,
              bool *sealed)
{
    MDB_txn *txn;
    uint64_t seen, l;
    int state;
    int rc = txn_begin(d, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    if ((rc = get_last(d, txn, log, &l, ix, &state)))
        goto out;
    if (last)
        *last = l;
    if (dropped)
        *dropped = state == DROPPED;
    if (sealed)
        *sealed = state == SEALED;
    if (first) {
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(txn, d->log, &cur)))
            goto out;
        unsigned char lk[16];
        db_be64(lk, log);
        db_be64(lk + 8, 0);
        MDB_val k = {16, lk}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        uint64_t p = rc == 0 && k.mv_size == 16 && !memcmp(k.mv_data, lk, 8) ? db_rd64((char *)k.mv_data + 8)
                                                                             : DB_LAST_KEY;
        *first = p == DB_LAST_KEY ? 0 : p;
        mdb_cursor_close(cur);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
out:
    txn_abort(d, txn);
    return map_rc(rc);
}

struct trim_ctx {
    uint64_t log, below;
    size_t max, deleted;
    bool more;                   /* drop: records remain */
    struct store_trim_row *rows; /* deleted with the records (store_trim_row) */
    size_t nrows;
};

/* Delete up to max records of log below `below`; t->more if one is left over. */
static int trim_in(struct db *d, MDB_txn *txn, void *ctx)
{
    struct trim_ctx *t = ctx;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, d->log, &cur);
    if (rc)
        return rc;
    unsigned char key[16];
    db_be64(key, t->log);
    db_be64(key + 8, 0);
    MDB_val k = {16, key}, v;
    t->deleted = 0;
    t->more = false;
    for (size_t i = 0; i < t->nrows; i++)
        t->rows[i].gone = false;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size != 16 || memcmp(k.mv_data, key, 8) || db_rd64((char *)k.mv_data + 8) >= t->below)
            break;
        if (t->deleted == t->max) {
            t->more = true;
            break;
        }
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        t->deleted++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
        if (rc == EINVAL || rc == MDB_NOTFOUND) /* deleted the last item of a page */
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    /* the cursor is on the log's first record left, if there is one */
    uint64_t bound = t->below;
    if (rc == 0 && k.mv_size == 16 && !memcmp(k.mv_data, key, 8) &&
        db_rd64((char *)k.mv_data + 8) != DB_LAST_KEY)
        bound = db_rd64((char *)k.mv_data + 8);
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    for (size_t i = 0; i < t->nrows; i++) {
        struct store_trim_row *r = &t->rows[i];
        MDB_val rk = {strlen(r->key), r->key};
        if (r->end > bound)
            continue;
        if ((rc = mdb_del(txn, d->rows, &rk, NULL)) && rc != MDB_NOTFOUND)
            return rc;
        r->gone = true;
    }
    return 0;
}

int db_trim(struct db *d, uint64_t log, uint64_t below, size_t max, size_t *deleted,
            struct store_trim_row *rows, size_t nrows)
{
    uint64_t first = 0;
    int rc = db_bounds(d, log, NULL, NULL, &first, NULL, NULL); /* a read: most calls find nothing due */
    *deleted = 0;
    for (size_t i = 0; i < nrows; i++)
        rows[i].gone = false;
    bool trim = first && first < below && max, rows_due = false;
    for (size_t i = 0; i < nrows && !trim && !rows_due; i++) /* else trim_in decides */
        rows_due = rows[i].end <= (first ? first : below);
    if (rc || (!trim && !rows_due))
        return rc;
    struct trim_ctx t = {.log = log, .below = below, .max = max, .rows = rows, .nrows = nrows};
    rc = write_txn(d, trim_in, &t);
    if (rc == 0)
        *deleted = t.deleted;
    else
        for (size_t i = 0; i < nrows; i++)
            rows[i].gone = false;
    return map_rc(rc);
}

static int drop_in(struct db *d, MDB_txn *txn, void *ctx)
{
    struct trim_ctx *t = ctx;
    int rc = trim_in(d, txn, ctx);
    if (rc || t->more)
        return rc;
    uint64_t last, ix;
    int state;
    if ((rc = get_last(d, txn, t->log, &last, &ix, &state)))
        return rc;
    return put_last(d, txn, t->log, last, ix, DROPPED);
}

int db_drop(struct db *d, uint64_t log, size_t max, bool *more)
{
    struct trim_ctx t = {.log = log, .below = DB_LAST_KEY, .max = max};
    int rc = write_txn(d, drop_in, &t);
    *more = t.more;
    return map_rc(rc);
}

struct seal_ctx {
    uint64_t log;
};

static int seal_in(struct db *d, MDB_txn *txn, void *ctx)
{
    uint64_t log = ((struct seal_ctx *)ctx)->log, last, ix;
    int state;
    int rc = get_last(d, txn, log, &last, &ix, &state);
    return rc || state != OPEN ? rc : put_last(d, txn, log, last, ix, SEALED);
}

int db_seal(struct db *d, uint64_t log)
{
    struct seal_ctx c = {log};
    return map_rc(write_txn(d, seal_in, &c));
}

/* ---- rows ---- */

struct cas_ctx {
    const struct store_row *rows;
    size_t n;
    uint64_t *nv; /* the versions written, reported once committed */
};

static int cas_in(struct db *d, MDB_txn *txn, void *ctx)
{
    struct cas_ctx *c = ctx;
    for (size_t i = 0; i < c->n; i++) {
        const struct store_row *r = &c->rows[i];
        MDB_val k = {strlen(r->key), (void *)r->key}, v;
        int rc = mdb_get(txn, d->rows, &k, &v);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        uint64_t have = rc ? 0 : v.mv_size >= 8 ? db_rd64(v.mv_data) : 1;
        if (r->version != STORE_ANY_VERSION && r->version != have)
            return MDB_KEYEXIST; /* the conflict */
        if (!r->val) {
            if (have && (rc = mdb_del(txn, d->rows, &k, NULL)))
                return rc;
            c->nv[i] = 0;
            continue;
        }
        MDB_val nv = {8 + r->len, NULL};
        if ((rc = mdb_put(txn, d->rows, &k, &nv, MDB_RESERVE)))
            return rc;
        db_be64(nv.mv_data, have + 1);
        if (r->len)
            memcpy((char *)nv.mv_data + 8, r->val, r->len);
        c->nv[i] = have + 1;
    }
    return 0;
}

int db_meta_cas(struct db *d, struct store_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(rows[i].key);
        if (!kl || kl > MAX_KEY)
            return STORE_INVALID;
    }
    struct cas_ctx c = {rows, n, malloc((n ? n : 1) * sizeof(uint64_t))};
    if (!c.nv)
        return STORE_NOMEM;
    int rc = write_txn(d, cas_in, &c);
    if (rc == 0 && d->sync) /* durable on return, the commit record too */
        rc = mdb_env_sync(d->env, 1);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rows[i].version = c.nv[i];
    free(c.nv);
    return rc == MDB_KEYEXIST ? STORE_CONFLICT : map_rc(rc);
}

int db_txn_row_get(MDB_txn *txn, MDB_dbi dbi, const char *key, char **val, size_t *len, uint64_t *version)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == 0 && v.mv_size < 8)
        rc = MDB_CORRUPTED;
    if (rc)
        return rc;
    char *p = malloc(v.mv_size - 8 + 1);
    if (!p)
        return ENOMEM;
    memcpy(p, (char *)v.mv_data + 8, v.mv_size - 8);
    p[v.mv_size - 8] = 0;
    *val = p;
    *len = v.mv_size - 8;
    if (version)
        *version = db_rd64(v.mv_data);
    return 0;
}

int db_meta_get(struct db *d, const char *key, char **val, size_t *len, uint64_t *version)
{
    MDB_txn *txn;
    uint64_t seen;
    int rc = txn_begin(d, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    rc = db_txn_row_get(txn, d->rows, key, val, len, version);
    txn_abort(d, txn);
    return map_rc(rc);
}

int db_txn_rows_scan(MDB_txn *txn, MDB_dbi dbi, const char *prefix, store_meta_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    size_t pl = strlen(prefix);
    MDB_val k = {pl, (void *)prefix}, v;
    for (rc = pl ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < pl || memcmp(k.mv_data, prefix, pl))
            break;
        if (v.mv_size < 8) {
            rc = MDB_CORRUPTED;
            break;
        }
        if (fn(ctx, k.mv_data, k.mv_size, (char *)v.mv_data + 8, v.mv_size - 8, db_rd64(v.mv_data)))
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int db_meta_scan(struct db *d, const char *prefix, store_meta_fn fn, void *ctx)
{
    MDB_txn *txn;
    uint64_t seen;
    int rc = txn_begin(d, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    rc = db_txn_rows_scan(txn, d->rows, prefix, fn, ctx);
    txn_abort(d, txn);
    return map_rc(rc);
}

int db_store_rc(int rc) { return map_rc(rc); }
