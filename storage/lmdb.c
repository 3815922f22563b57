/* lmdb.c: the embedded default backend, one LMDB environment in the data directory.
 *
 * Databases:
 *   "log"  key = log id (8 bytes BE) . position (8 bytes BE)  -> sealed record
 *          key = log id . 0xFFFFFFFFFFFFFFFF                  -> last position (8 bytes BE)
 *   "meta" key = text                                         -> bytes
 * Big-endian keys make LMDB's byte order the (log, position) order, so a log is one key range
 * and a scan is one cursor walk. The last position of a log is written in the same transaction
 * as its records, which is what makes positions unique across crashes; it is kept at the end
 * of the log's own key range, on the page the append already dirties, so a commit writes no
 * extra B-tree pages for it.
 *
 * The map grows: every transaction holds `resize` for reading; a transaction that hits
 * MDB_MAP_FULL is aborted, the map is doubled under the write lock (no transaction can be
 * open in this process then, as LMDB requires), and the work is retried. Read transactions
 * live only for one call (MDB_NOTLS, so any thread may run one). */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "backend.h"

#define DEFAULT_MAP (256ull << 20)
#define LAST_KEY UINT64_MAX /* the position under which a log keeps its last position */
#define MAX_GROW_STEP (8ull << 30)

struct lm {
    MDB_env *env;
    MDB_dbi log, meta;
    pthread_rwlock_t resize;
    uint64_t mapsize;
    char path[4096];
    char real_path[4096]; /* as the kernel names the mapping */
    bool sync;
    pthread_mutex_t map_mu; /* guards the three below */
    void *map_addr;         /* where the map is, found for map_for (a map size) */
    size_t map_len;
    uint64_t map_for;
};

static void be64(unsigned char *o, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        o[i] = (unsigned char)v;
        v >>= 8;
    }
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int map_rc(int rc)
{
    if (rc == 0)
        return STORE_OK;
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc == ENOMEM)
        return STORE_NOMEM;
    return STORE_IO;
}

/* Double the map after MDB_MAP_FULL. seen is the size the failing transaction had. */
static int grow(struct lm *m, uint64_t seen)
{
    int rc = 0;
    pthread_rwlock_wrlock(&m->resize);
    if (m->mapsize == seen) {
        uint64_t step = seen < MAX_GROW_STEP ? seen : MAX_GROW_STEP;
        rc = mdb_env_set_mapsize(m->env, (size_t)(seen + step));
        if (rc == 0)
            m->mapsize = seen + step;
    }
    pthread_rwlock_unlock(&m->resize);
    return rc;
}

static int lm_open(const struct store_config *cfg, void **impl)
{
    struct lm *m = calloc(1, sizeof *m);
    if (!m)
        return STORE_NOMEM;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&m->resize, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&m->map_mu, NULL);
    snprintf(m->path, sizeof m->path, "%s/data.mdb", cfg->dir);
    m->mapsize = cfg->initial_map ? cfg->initial_map : DEFAULT_MAP;

    int rc = mdb_env_create(&m->env);
    if (rc)
        goto fail;
    mdb_env_set_maxdbs(m->env, 4);
    mdb_env_set_maxreaders(m->env, 1024);
    /* keep the size the file already has if it is larger (a reopened, grown store) */
    struct stat st;
    if (stat(m->path, &st) == 0 && (uint64_t)st.st_size > m->mapsize)
        m->mapsize = (uint64_t)st.st_size;
    mdb_env_set_mapsize(m->env, (size_t)m->mapsize);
    /* durable mode: data pages synced at commit, the meta page by the next sync (store.c) */
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (cfg->sync ? MDB_NOMETASYNC : MDB_NOSYNC);
    m->sync = cfg->sync;
    rc = mdb_env_open(m->env, cfg->dir, flags, 0644);
    if (rc)
        goto fail_env;
    int dead;
    mdb_reader_check(m->env, &dead); /* slots of a killed process */
    if (!realpath(m->path, m->real_path))
        m->real_path[0] = 0;
    MDB_envinfo info;
    if (mdb_env_info(m->env, &info) == 0)
        m->mapsize = info.me_mapsize;

    MDB_txn *txn;
    rc = mdb_txn_begin(m->env, NULL, 0, &txn);
    if (rc)
        goto fail_env;
    if ((rc = mdb_dbi_open(txn, "log", MDB_CREATE, &m->log)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &m->meta))) {
        mdb_txn_abort(txn);
        goto fail_env;
    }
    rc = mdb_txn_commit(txn);
    if (rc)
        goto fail_env;
    *impl = m;
    return 0;

fail_env:
    mdb_env_close(m->env);
fail:
    fprintf(stderr, "kinesd: lmdb: %s: %s\n", cfg->dir, mdb_strerror(rc));
    pthread_rwlock_destroy(&m->resize);
    pthread_mutex_destroy(&m->map_mu);
    free(m);
    return map_rc(rc) == STORE_NOTFOUND ? STORE_IO : map_rc(rc);
}

static void lm_close(void *impl)
{
    struct lm *m = impl;
    if (!m)
        return;
    mdb_env_sync(m->env, 1);
    mdb_env_close(m->env);
    pthread_rwlock_destroy(&m->resize);
    pthread_mutex_destroy(&m->map_mu);
    free(m);
}

/* Begin a transaction under the resize read lock. On success the lock is held. */
static int txn_begin(struct lm *m, unsigned flags, MDB_txn **txn, uint64_t *seen)
{
    pthread_rwlock_rdlock(&m->resize);
    *seen = m->mapsize;
    int rc = mdb_txn_begin(m->env, NULL, flags, txn);
    if (rc)
        pthread_rwlock_unlock(&m->resize);
    return rc;
}

static void txn_abort(struct lm *m, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&m->resize);
}

static int txn_commit(struct lm *m, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&m->resize);
    return rc;
}

static int append_in(struct lm *m, MDB_txn *txn, struct backend_append *a)
{
    unsigned char lk[16];
    be64(lk, a->log);
    be64(lk + 8, LAST_KEY);
    MDB_val k = {16, lk}, v;
    uint64_t last = 0;
    int rc = mdb_get(txn, m->log, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        last = rd64(v.mv_data);
    else if (rc && rc != MDB_NOTFOUND)
        return rc;
    uint64_t pos = last + 1 > a->floor ? last + 1 : a->floor;
    unsigned char key[16];
    memcpy(key, lk, 8);
    for (size_t i = 0; i < a->n; i++, pos++) {
        be64(key + 8, pos);
        MDB_val rk = {16, key}, rv = {a->lens[i], (void *)a->vals[i]};
        rc = mdb_put(txn, m->log, &rk, &rv, 0);
        if (rc)
            return rc;
        a->pos[i] = pos;
    }
    unsigned char lv[8];
    be64(lv, pos - 1);
    v.mv_size = 8;
    v.mv_data = lv;
    return mdb_put(txn, m->log, &k, &v, 0);
}

static int lm_append_batch(void *impl, struct backend_append *a, size_t n)
{
    struct lm *m = impl;
    for (;;) {
        MDB_txn *txn;
        uint64_t seen;
        int rc = txn_begin(m, 0, &txn, &seen);
        if (rc == 0) {
            for (size_t i = 0; i < n && rc == 0; i++)
                rc = append_in(m, txn, &a[i]);
            if (rc == 0)
                rc = txn_commit(m, txn);
            else
                txn_abort(m, txn);
        }
        if (rc == MDB_MAP_FULL && grow(m, seen) == 0)
            continue;
        return map_rc(rc);
    }
}

static int lm_scan(void *impl, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
                   backend_scan_fn fn, void *ctx, uint64_t *last)
{
    struct lm *m = impl;
    MDB_txn *txn;
    MDB_cursor *cur;
    uint64_t seen;
    int rc = txn_begin(m, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    rc = mdb_cursor_open(txn, m->log, &cur);
    if (rc) {
        txn_abort(m, txn);
        return map_rc(rc);
    }
    unsigned char key[16];
    be64(key, log);
    be64(key + 8, from);
    MDB_val k = {16, key}, v;
    size_t count = 0, bytes = 0;
    int out = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && count < max_n && bytes < max_bytes) {
        if (k.mv_size != 16 || memcmp(k.mv_data, key, 8) || rd64((unsigned char *)k.mv_data + 8) == LAST_KEY)
            break;
        int r = fn(ctx, rd64((unsigned char *)k.mv_data + 8), v.mv_data, v.mv_size);
        count++;
        bytes += v.mv_size;
        if (r) {
            out = r < 0 ? r : 0;
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND)
        out = map_rc(rc);
    if (last && out == 0) { /* the log's last position, in the same snapshot */
        be64(key + 8, LAST_KEY);
        k.mv_size = 16;
        k.mv_data = key;
        rc = mdb_get(txn, m->log, &k, &v);
        *last = rc == 0 && v.mv_size == 8 ? rd64(v.mv_data) : 0;
        if (rc && rc != MDB_NOTFOUND)
            out = map_rc(rc);
    }
    mdb_cursor_close(cur);
    txn_abort(m, txn);
    return out;
}

static int lm_log_bounds(void *impl, uint64_t log, uint64_t *last, uint64_t *first)
{
    struct lm *m = impl;
    MDB_txn *txn;
    uint64_t seen;
    int rc = txn_begin(m, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    unsigned char lk[16];
    be64(lk, log);
    be64(lk + 8, LAST_KEY);
    MDB_val k = {16, lk}, v;
    if (last) {
        rc = mdb_get(txn, m->log, &k, &v);
        *last = (rc == 0 && v.mv_size == 8) ? rd64(v.mv_data) : 0;
        if (rc && rc != MDB_NOTFOUND)
            goto out;
    }
    be64(lk + 8, 0);
    if (first) {
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, m->log, &cur);
        if (rc)
            goto out;
        k.mv_size = 16;
        k.mv_data = lk;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        uint64_t p = rc == 0 && k.mv_size == 16 && !memcmp(k.mv_data, lk, 8)
                         ? rd64((unsigned char *)k.mv_data + 8)
                         : LAST_KEY;
        *first = p == LAST_KEY ? 0 : p; /* only the last-position entry: empty */
        mdb_cursor_close(cur);
    }
    rc = 0;
out:
    txn_abort(m, txn);
    return rc == MDB_NOTFOUND ? 0 : map_rc(rc);
}

static int trim_in(struct lm *m, MDB_txn *txn, uint64_t log, uint64_t below, size_t max, size_t *deleted)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, m->log, &cur);
    if (rc)
        return rc;
    unsigned char key[16];
    be64(key, log);
    be64(key + 8, 0);
    MDB_val k = {16, key}, v;
    size_t n = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && n < max) {
        if (k.mv_size != 16 || memcmp(k.mv_data, key, 8) || rd64((unsigned char *)k.mv_data + 8) >= below)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc)
            break;
        n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
        if (rc == EINVAL || rc == MDB_NOTFOUND) /* deleted the last item */
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    *deleted = n;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int lm_trim(void *impl, uint64_t log, uint64_t below, size_t max, size_t *deleted)
{
    struct lm *m = impl;
    for (;;) {
        MDB_txn *txn;
        uint64_t seen;
        int rc = txn_begin(m, 0, &txn, &seen);
        if (rc)
            return map_rc(rc);
        rc = trim_in(m, txn, log, below, max, deleted);
        if (rc == 0)
            rc = txn_commit(m, txn);
        else
            txn_abort(m, txn);
        if (rc == MDB_MAP_FULL && grow(m, seen) == 0)
            continue;
        return map_rc(rc);
    }
}

static int lm_log_drop(void *impl, uint64_t log)
{
    struct lm *m = impl;
    MDB_txn *txn;
    uint64_t seen;
    int rc = txn_begin(m, 0, &txn, &seen);
    if (rc)
        return map_rc(rc);
    unsigned char lk[16];
    be64(lk, log);
    be64(lk + 8, LAST_KEY);
    MDB_val k = {16, lk};
    rc = mdb_del(txn, m->log, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) {
        txn_abort(m, txn);
        return map_rc(rc);
    }
    return map_rc(txn_commit(m, txn));
}

static int lm_meta_put(void *impl, const char *key, const void *val, size_t len)
{
    struct lm *m = impl;
    for (;;) {
        MDB_txn *txn;
        uint64_t seen;
        int rc = txn_begin(m, 0, &txn, &seen);
        if (rc)
            return map_rc(rc);
        MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
        rc = val ? mdb_put(txn, m->meta, &k, &v, 0) : mdb_del(txn, m->meta, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
        if (rc == 0)
            rc = txn_commit(m, txn);
        else
            txn_abort(m, txn);
        if (rc == MDB_MAP_FULL && grow(m, seen) == 0)
            continue;
        if (rc == 0 && m->sync) /* metadata is durable on return (the commit record too) */
            rc = mdb_env_sync(m->env, 1);
        return map_rc(rc);
    }
}

static int lm_meta_get(void *impl, const char *key, char **val, size_t *len)
{
    struct lm *m = impl;
    MDB_txn *txn;
    uint64_t seen;
    int rc = txn_begin(m, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    MDB_val k = {strlen(key), (void *)key}, v;
    rc = mdb_get(txn, m->meta, &k, &v);
    if (rc == 0) {
        char *p = malloc(v.mv_size + 1);
        if (!p) {
            rc = ENOMEM;
        } else {
            memcpy(p, v.mv_data, v.mv_size);
            p[v.mv_size] = 0;
            *val = p;
            *len = v.mv_size;
        }
    }
    txn_abort(m, txn);
    return map_rc(rc);
}

static int lm_meta_scan(void *impl, const char *prefix, store_meta_fn fn, void *ctx)
{
    struct lm *m = impl;
    MDB_txn *txn;
    MDB_cursor *cur;
    uint64_t seen;
    int rc = txn_begin(m, MDB_RDONLY, &txn, &seen);
    if (rc)
        return map_rc(rc);
    rc = mdb_cursor_open(txn, m->meta, &cur);
    if (rc) {
        txn_abort(m, txn);
        return map_rc(rc);
    }
    size_t pl = strlen(prefix);
    MDB_val k = {pl, (void *)prefix}, v;
    rc = pl ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size < pl || memcmp(k.mv_data, prefix, pl))
            break;
        if (fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    txn_abort(m, txn);
    return rc == MDB_NOTFOUND ? 0 : map_rc(rc);
}

static int lm_sync(void *impl)
{
    struct lm *m = impl;
    return m->sync ? map_rc(mdb_env_sync(m->env, 1)) : 0;
}

/* Where LMDB mapped the data file: LMDB does not say (me_mapaddr is only set for
 * MDB_FIXEDMAP), so read it from /proc/self/maps. */
static int find_map(const char *path, void **addr, size_t *len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[4400];
    int rc = -1;
    size_t pl = strlen(path);
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = 0;
        if (n < pl || strcmp(line + n - pl, path))
            continue;
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
            *addr = (void *)lo;
            *len = hi - lo;
            rc = 0;
        }
        break;
    }
    fclose(f);
    return rc;
}

/* LMDB maps the file read-only (no MDB_WRITEMAP) and never changes a page a reader can see,
 * so dropping the mapping of any page is safe at any time: the next access re-reads the same
 * bytes from the page cache. */
static void lm_release_cache(void *impl)
{
    struct lm *m = impl;
    pthread_rwlock_rdlock(&m->resize); /* the map does not move meanwhile */
    pthread_mutex_lock(&m->map_mu);
    if (m->map_for != m->mapsize) { /* look it up again only after the map grew */
        m->map_for = find_map(m->real_path, &m->map_addr, &m->map_len) == 0 ? m->mapsize : 0;
    }
    void *addr = m->map_for ? m->map_addr : NULL;
    size_t len = m->map_len;
    pthread_mutex_unlock(&m->map_mu);
    if (addr)
        madvise(addr, len, MADV_DONTNEED);
    pthread_rwlock_unlock(&m->resize);
}

const struct store_backend store_backend_lmdb = {
    .name = "lmdb",
    .open = lm_open,
    .close = lm_close,
    .append_batch = lm_append_batch,
    .scan = lm_scan,
    .log_bounds = lm_log_bounds,
    .trim = lm_trim,
    .log_drop = lm_log_drop,
    .meta_put = lm_meta_put,
    .meta_get = lm_meta_get,
    .meta_scan = lm_meta_scan,
    .release_cache = lm_release_cache,
    .sync = lm_sync,
};
