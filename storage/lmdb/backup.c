/* backup.c: read-only views of an lmdb data directory, and backup, restore, compact (backup.h).
 *
 * Why this is safe while a server runs. The server's flock on "lock" keeps out other writers,
 * not readers: LMDB lets any number of processes read through its lock file's reader table,
 * and a reader's snapshot stays whole while the server commits (its pages are not reused
 * while the snapshot lives). The write-ahead log is read through read-only descriptors with
 * the engine's own replay (wal.c), which checks every frame's checksum and run: a segment the
 * server retires while it is read ends early, and a frame it writes meanwhile is either whole
 * or fails its checksum. Neither loses an acknowledged record, because the log is read before
 * the snapshot is begun: a frame is retired only once LMDB durably holds its records, so a
 * frame missing from what was read is in the snapshot. Nothing is asked of the server.
 *
 * The view. The frames' records past each log's last position in the snapshot (and not of a
 * dropped log) are kept in memory, sorted by (log, position): their number is bounded by what
 * the server lets stay unflushed (its backpressure cap), so the view is too. The snapshot's
 * read transaction lives as long as the view; a long one keeps the server from reusing pages
 * freed meanwhile, so the file may grow while a long admin command runs. A view is used by one
 * thread.
 *
 * Copies. LMDB copies a snapshot of its own (mdb_env_copyfd2, begun after the log was read, so
 * the argument above holds), and the log's newer records are stored into the copy with the
 * engine's database code, as recovery would; the copy then needs no log. Compacting in place
 * copies to a new file and renames it over the old one under the directory's lock; the LMDB
 * lock file is removed with it (it names transaction ids of the old file). */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine.h"
#include "../format.h"
#include "backup.h"
#include "db.h"
#include "wal.h"

#define COPY_BATCH 4096 /* log records stored into a copy per transaction */

struct went {
    uint64_t log, pos;
    const char *val;
    uint32_t len;
};

struct backup_snap {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi log, rows;
    const struct store_keyring *kr; /* as a store: records are opened with it */
    MDB_txn *pre;                   /* the snapshot begun before the log is read (see keep_frame) */
    char **bufs;                    /* copies of the log's records, owned */
    size_t nbufs, capbufs, nframes;
    struct went *ents; /* sorted; only records past the snapshot's last positions */
    size_t nents, capents;
    uint64_t wal_bytes[2];
    char dir[4096];
};

/* ---- reading the log without changing it ---- */

/* The log's files as read-only descriptors; a missing segment reads as empty. */
static int ro_open(void *ctx, const char *path, int flags, int mode)
{
    (void)ctx, (void)mode;
    int fd = open(path, O_RDONLY | O_CLOEXEC | (flags & O_DIRECTORY));
    if (fd < 0 && errno == ENOENT && !(flags & O_DIRECTORY))
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}
static int ro_close(void *ctx, int fd) { return (void)ctx, close(fd); }
static long ro_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off)
{
    return (void)ctx, pread(fd, buf, len, (off_t)off);
}
static long ro_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off)
{
    (void)ctx, (void)fd, (void)buf, (void)len, (void)off;
    errno = EROFS;
    return -1;
}
static int ro_datasync(void *ctx, int fd) { return (void)ctx, (void)fd, 0; }
static int ro_truncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx, (void)fd, (void)len;
    errno = EROFS;
    return -1;
}
static const struct store_io ro_io = {ro_open,     ro_close,    ro_pwrite, ro_pread,
                                      ro_datasync, ro_truncate, NULL,      NULL};

/* A segment whose header has our magic but a newer version (wal.c would take it for empty). */
static int get_last_in(struct backup_snap *s, MDB_txn *txn, uint64_t log, uint64_t *last, int *state);

static int check_segments(struct backup_snap *s)
{
    for (int i = 0; i < 2; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/wal.%d", s->dir, i);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        unsigned char h[8];
        struct stat st;
        if (fstat(fd, &st) == 0)
            s->wal_bytes[i] = (uint64_t)st.st_size;
        ssize_t n = pread(fd, h, sizeof h, 0);
        close(fd);
        uint32_t magic = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        uint32_t ver = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
        if (n == 8 && magic == WAL_SEG_MAGIC && ver > WAL_SEG_VERSION)
            return STORE_INVALID;
    }
    return 0;
}

/* One frame of the log: copy the records that the snapshot begun before the log was read does
 * not hold (past their log's last position there), so a view keeps about what the server has
 * not flushed yet, not the whole log. The later snapshot holds at least as much (a last
 * position never goes down), and settle() filters against that one. */
static int keep_frame(void *ctx, const char *payload, size_t len)
{
    struct backup_snap *s = ctx;
    size_t off = 0, vlen, keep = 0;
    uint64_t log, pos, last = 0, cur = UINT64_MAX;
    int state = BACKUP_LOG_OPEN, rc;
    const char *val;
    s->nframes++;
    for (int pass = 0; pass < 2; pass++) {
        char *p = NULL;
        if (pass) {
            if (!keep)
                return 0;
            if (s->nbufs == s->capbufs) {
                size_t cap = s->capbufs ? 2 * s->capbufs : 16;
                char **v = realloc(s->bufs, cap * sizeof *v);
                if (!v)
                    return STORE_NOMEM;
                s->bufs = v, s->capbufs = cap;
            }
            if (!(p = s->bufs[s->nbufs++] = malloc(keep)))
                return s->nbufs--, STORE_NOMEM;
        }
        off = 0;
        while ((rc = wal_next_entry(payload, len, &off, &log, &pos, &val, &vlen)) == 1) {
            if (log != cur) {
                cur = log;
                if ((rc = get_last_in(s, s->pre, log, &last, &state)))
                    return rc;
            }
            if (state == BACKUP_LOG_DROPPED || pos <= last)
                continue;
            if (!pass) {
                keep += vlen ? vlen : 1;
                continue;
            }
            if (s->nents == s->capents) {
                size_t cap = s->capents ? 2 * s->capents : 256;
                struct went *v = realloc(s->ents, cap * sizeof *v);
                if (!v)
                    return STORE_NOMEM;
                s->ents = v, s->capents = cap;
            }
            memcpy(p, val, vlen);
            s->ents[s->nents++] = (struct went){log, pos, p, (uint32_t)vlen};
            p += vlen ? vlen : 1;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int went_cmp(const void *a, const void *b)
{
    const struct went *x = a, *y = b;
    if (x->log != y->log)
        return x->log < y->log ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* ---- the snapshot ---- */

/* The last-position entry of log in snapshot txn (ix may be NULL). */
static int get_last_ix(struct backup_snap *s, MDB_txn *txn, uint64_t log, uint64_t *last, uint64_t *ix,
                       int *state)
{
    int st, rc = db_store_rc(db_txn_last(txn, s->log, log, last, ix, &st));
    *state = st == DB_LOG_DROPPED  ? BACKUP_LOG_DROPPED
             : st == DB_LOG_SEALED ? BACKUP_LOG_SEALED
                                   : BACKUP_LOG_OPEN;
    return rc;
}

static int get_last_in(struct backup_snap *s, MDB_txn *txn, uint64_t log, uint64_t *last, int *state)
{
    return get_last_ix(s, txn, log, last, NULL, state);
}

static int get_last(struct backup_snap *s, uint64_t log, uint64_t *last, int *state)
{
    return get_last_in(s, s->txn, log, last, state);
}

/* Keep the log's records that the snapshot does not hold: past each log's last position. */
static int settle(struct backup_snap *s)
{
    if (s->nents)
        qsort(s->ents, s->nents, sizeof *s->ents, went_cmp);
    size_t n = 0;
    uint64_t cur = 0, last = 0;
    int state = BACKUP_LOG_OPEN;
    for (size_t i = 0; i < s->nents; i++) {
        struct went *e = &s->ents[i];
        if (i == 0 || e->log != cur) {
            cur = e->log;
            int rc = get_last(s, cur, &last, &state);
            if (rc)
                return rc;
        }
        if (state == BACKUP_LOG_DROPPED || e->pos <= last ||
            (n && s->ents[n - 1].log == e->log && s->ents[n - 1].pos == e->pos))
            continue;
        s->ents[n++] = *e;
    }
    s->nents = n;
    return 0;
}

static int begin(struct backup_snap *s, MDB_txn **txn)
{
    for (int attempt = 0;; attempt++) {
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc != MDB_MAP_RESIZED || attempt == 8)
            return rc;
        mdb_env_set_mapsize(s->env, 0); /* the server grew the map: adopt its size */
    }
}

static int env_open(const char *dir, MDB_env **env)
{
    int rc = mdb_env_create(env);
    if (rc)
        return rc;
    mdb_env_set_maxdbs(*env, 4);
    mdb_env_set_maxreaders(*env, 1024);
    /* NOTLS: a copy begins a read transaction of its own beside the view's */
    if ((rc = mdb_env_open(*env, dir, MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0644))) {
        mdb_env_close(*env);
        *env = NULL;
    }
    return rc;
}

int backup_snap_open(const char *dir, struct backup_snap **out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (access(path, F_OK))
        return errno == ENOENT || errno == ENOTDIR ? STORE_NOT_FOUND : STORE_IO;
    struct backup_snap *s = calloc(1, sizeof *s);
    if (!s)
        return STORE_NOMEM;
    if ((size_t)snprintf(s->dir, sizeof s->dir, "%s", dir) >= sizeof s->dir) {
        free(s);
        return STORE_INVALID;
    }
    int rc = check_segments(s);
    if (rc == 0 && (rc = db_store_rc(env_open(dir, &s->env))) == 0 &&
        (rc = db_store_rc(begin(s, &s->pre))) == 0) {
        rc = db_store_rc(mdb_dbi_open(s->pre, "log", 0, &s->log));
        if (rc == 0)
            rc = db_store_rc(mdb_dbi_open(s->pre, "rows", 0, &s->rows));
        if (rc == STORE_NOT_FOUND) /* no database of ours in it */
            rc = STORE_CORRUPT;
    }
    /* the log, then the view's snapshot (see the file comment) */
    struct wal *w = NULL;
    if (rc == 0 && (rc = wal_open(dir, false, &ro_io, &w)) == 0) {
        rc = wal_replay(w, keep_frame, s);
        wal_close(w);
    }
    if (s->pre) { /* a read-only commit ends the snapshot and keeps the database handles */
        int crc = mdb_txn_commit(s->pre);
        s->pre = NULL;
        if (rc == 0)
            rc = db_store_rc(crc);
    }
    if (rc == 0)
        rc = db_store_rc(begin(s, &s->txn));
    if (rc == 0)
        rc = settle(s);
    if (rc) {
        backup_snap_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void backup_snap_close(struct backup_snap *s)
{
    if (!s)
        return;
    if (s->txn)
        mdb_txn_abort(s->txn);
    if (s->env)
        mdb_env_close(s->env);
    if (s->pre)
        mdb_txn_abort(s->pre);
    for (size_t i = 0; i < s->nbufs; i++)
        free(s->bufs[i]);
    free(s->bufs);
    free(s->ents);
    free(s);
}

/* The first of the log's records past the snapshot, at or after from. */
static size_t ents_from(const struct backup_snap *s, uint64_t log, uint64_t from)
{
    size_t lo = 0, hi = s->nents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct went *e = &s->ents[mid];
        if (e->log < log || (e->log == log && e->pos < from))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int backup_snap_records(struct backup_snap *s, uint64_t log, uint64_t from, backup_rec_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(s->txn, s->log, &cur);
    if (rc)
        return db_store_rc(rc);
    unsigned char key[16];
    db_be64(key, log);
    db_be64(key + 8, from);
    MDB_val k = {16, key}, v;
    int out = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && !out;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || memcmp(k.mv_data, key, 8))
            break;
        uint64_t pos = db_rd64((char *)k.mv_data + 8);
        if (pos == DB_LAST_KEY)
            break;
        out = fn(ctx, log, pos, v.mv_data, v.mv_size, false);
    }
    mdb_cursor_close(cur);
    if (!out && rc && rc != MDB_NOTFOUND)
        return db_store_rc(rc);
    for (size_t i = ents_from(s, log, from); !out && i < s->nents && s->ents[i].log == log; i++)
        out = fn(ctx, log, s->ents[i].pos, s->ents[i].val, s->ents[i].len, true);
    return out;
}

int backup_snap_logs(struct backup_snap *s, backup_log_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(s->txn, s->log, &cur);
    if (rc)
        return db_store_rc(rc);
    MDB_val k, v;
    size_t ei = 0; /* the log's records not in the snapshot, merged in log order */
    int out = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (!out) {
        uint64_t db_log = UINT64_MAX;
        bool have = rc == 0;
        if ((rc && rc != MDB_NOTFOUND) || (have && k.mv_size != 16)) {
            out = rc ? db_store_rc(rc) : STORE_CORRUPT; /* not a key the engine writes */
            break;
        }
        if (have)
            db_log = db_rd64(k.mv_data);
        uint64_t wal_log = ei < s->nents ? s->ents[ei].log : UINT64_MAX;
        if (!have && wal_log == UINT64_MAX)
            break;
        struct backup_log l = {.log = db_log < wal_log ? db_log : wal_log};
        if ((out = get_last(s, l.log, &l.last, &l.state)))
            break;
        for (; ei < s->nents && s->ents[ei].log == l.log; ei++) {
            l.wal_records++;
            l.last = s->ents[ei].pos;
        }
        if ((out = fn(ctx, &l)))
            break;
        if (have && db_log == l.log) { /* on to the next log: past this one's last-position entry */
            unsigned char nk[16];
            if (l.log == UINT64_MAX)
                break;
            db_be64(nk, l.log + 1);
            db_be64(nk + 8, 0);
            k = (MDB_val){16, nk};
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
    }
    mdb_cursor_close(cur);
    return out;
}

void backup_snap_info(struct backup_snap *s, struct backup_info *info)
{
    *info = (struct backup_info){
        .wal_bytes = {s->wal_bytes[0], s->wal_bytes[1]}, .wal_frames = s->nframes, .wal_records = s->nents};
    MDB_envinfo ei;
    MDB_stat st;
    if (mdb_env_info(s->env, &ei) == 0 && mdb_env_stat(s->env, &st) == 0) {
        info->map_bytes = ei.me_mapsize;
        info->page_bytes = st.ms_psize;
        info->pages_used = ei.me_last_pgno + 1;
    }
    info->txn_id = mdb_txn_id(s->txn);
    char path[4200];
    struct stat fs;
    snprintf(path, sizeof path, "%s/data.mdb", s->dir);
    if (stat(path, &fs) == 0)
        info->file_bytes = (uint64_t)fs.st_size;
    MDB_cursor *cur; /* the free list: each entry is a count of pages, then their numbers */
    if (mdb_cursor_open(s->txn, 0, &cur) == 0) {
        MDB_val k, v;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            if (v.mv_size >= sizeof(size_t)) {
                size_t n;
                memcpy(&n, v.mv_data, sizeof n);
                info->free_pages += n;
            }
        mdb_cursor_close(cur);
    }
}

/* ---- the view as a read-only store engine ---- */

static int sn_open(const struct store_config *cfg, struct store *owner, void **impl)
{
    (void)owner;
    struct backup_snap *s;
    int rc = backup_snap_open(cfg->dir, &s);
    if (rc == 0) {
        s->kr = cfg->keyring;
        *impl = s;
    }
    return rc;
}

static void sn_close(void *impl) { backup_snap_close(impl); }

static int sn_append(void *impl, struct store_batch *b, size_t nb, store_done_fn done, void *arg)
{
    (void)impl, (void)b, (void)nb, (void)done, (void)arg;
    return STORE_INVALID;
}

struct scan_ctx {
    struct format_opener o;
    size_t max_n, max_bytes;
    struct store_records *out;
};

static int scan_one(void *ctx, uint64_t log, uint64_t pos, const char *val, size_t len, bool in_wal)
{
    (void)in_wal;
    struct scan_ctx *c = ctx;
    if (c->out->n >= c->max_n || c->out->bytes >= c->max_bytes)
        return 1;
    int rc = format_open_with(&c->o, val, len, log, pos, c->out);
    return rc ? rc : 0;
}

static int sn_scan(void *impl, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
                   struct store_records *out)
{
    struct backup_snap *s = impl;
    out->n = 0, out->bytes = 0, out->v = NULL;
    struct scan_ctx c = {.max_n = max_n, .max_bytes = max_bytes, .out = out};
    format_opener_init(&c.o, s->kr);
    int rc = backup_snap_records(s, log, from, scan_one, &c);
    format_opener_done(&c.o);
    if (rc < 0)
        return rc;
    uint64_t last, ix;
    int state;
    if ((rc = get_last_ix(s, s->txn, log, &last, &ix, &state)))
        return rc;
    size_t i = ents_from(s, log, UINT64_MAX);
    if (i && s->ents[i - 1].log == log) {
        const struct went *e = &s->ents[i - 1];
        last = e->pos;
        ix = format_index(e->val, e->len, e->pos);
    }
    out->last = last;
    out->last_ix = ix;
    return 0;
}

static int first_of(void *ctx, uint64_t log, uint64_t pos, const char *val, size_t len, bool in_wal)
{
    (void)log, (void)val, (void)len, (void)in_wal;
    *(uint64_t *)ctx = pos;
    return 1;
}

static int sn_log_bounds(void *impl, uint64_t log, uint64_t *last, uint64_t *first)
{
    struct backup_snap *s = impl;
    uint64_t l, f = 0;
    int state;
    int rc = get_last(s, log, &l, &state);
    if (rc)
        return rc;
    size_t i = ents_from(s, log, UINT64_MAX);
    if (i && s->ents[i - 1].log == log)
        l = s->ents[i - 1].pos;
    if ((rc = backup_snap_records(s, log, 0, first_of, &f)) < 0)
        return rc;
    if (last)
        *last = l;
    if (first)
        *first = f;
    return 0;
}

static int sn_watch(void *impl, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                    struct store_watch **w)
{
    (void)impl, (void)log, (void)after, (void)fn, (void)arg, (void)w;
    return STORE_INVALID;
}

static bool sn_unwatch(void *impl, struct store_watch *w) { return (void)impl, (void)w, false; }

static int sn_trim(void *impl, uint64_t log, uint64_t below, size_t max, size_t *deleted,
                   struct store_trim_row *rows, size_t nrows)
{
    (void)impl, (void)log, (void)below, (void)max, (void)rows, (void)nrows;
    *deleted = 0;
    return STORE_INVALID;
}

static int sn_log_op(void *impl, uint64_t log) { return (void)impl, (void)log, STORE_INVALID; }

static int sn_meta_cas(void *impl, struct store_row *rows, size_t n)
{
    (void)impl, (void)rows, (void)n;
    return STORE_INVALID;
}

static int sn_meta_get(void *impl, const char *key, char **val, size_t *len, uint64_t *version)
{
    struct backup_snap *s = impl;
    return db_store_rc(db_txn_row_get(s->txn, s->rows, key, val, len, version));
}

static int sn_meta_scan(void *impl, const char *prefix, store_meta_fn fn, void *ctx)
{
    struct backup_snap *s = impl;
    return db_store_rc(db_txn_rows_scan(s->txn, s->rows, prefix, fn, ctx));
}

const struct store_engine store_engine_snapshot = {
    .name = "snapshot",
    .open = sn_open,
    .close = sn_close,
    .append = sn_append,
    .scan = sn_scan,
    .log_bounds = sn_log_bounds,
    .watch = sn_watch,
    .unwatch = sn_unwatch,
    .trim = sn_trim,
    .log_drop = sn_log_op,
    .log_seal = sn_log_op,
    .meta_cas = sn_meta_cas,
    .meta_get = sn_meta_get,
    .meta_scan = sn_meta_scan,
};

struct backup_snap *backup_snap_of(struct store *s) { return store_engine_impl(s, &store_engine_snapshot); }

/* ---- copies ---- */

int backup_lock(const char *dir, int *fd)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? STORE_NOT_FOUND : STORE_IO;
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    close(*fd);
    *fd = -1;
    return STORE_BUSY;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 && fsync(fd) == 0 ? 0 : STORE_IO;
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Copy file name of src into dest (mode kept), durably; a missing one is no error. */
static int copy_file(const char *src, const char *dest, const char *name)
{
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/%s", src, name);
    snprintf(to, sizeof to, "%s/%s", dest, name);
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT ? 0 : STORE_IO;
    struct stat st;
    int rc = fstat(in, &st) ? STORE_IO : 0;
    int out = rc ? -1 : open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
    if (out < 0)
        rc = STORE_IO;
    char buf[1 << 16];
    for (ssize_t n; rc == 0 && (n = read(in, buf, sizeof buf)) != 0;)
        if (n < 0 || write(out, buf, (size_t)n) != n)
            rc = errno == ENOSPC ? STORE_FULL : STORE_IO;
    if (rc == 0 && fsync(out))
        rc = STORE_IO;
    if (out >= 0)
        close(out);
    close(in);
    return rc;
}

/* dest exists as an empty directory (created if missing). */
static int empty_dir(const char *dest)
{
    if (mkdir(dest, 0755) && errno != EEXIST)
        return errno == ENOENT ? STORE_NOT_FOUND : STORE_IO;
    char path[4200];
    static const char *const names[] = {"data.mdb", "wal.0", "wal.1", "wal", "node.key", "root.key"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dest, names[i]);
        if (access(path, F_OK) == 0)
            return STORE_CONFLICT;
    }
    return 0;
}

/* Store the view's log records into the database at dest, as recovery would. */
static int store_log_records(struct backup_snap *s, const char *dest)
{
    if (!s->nents)
        return 0;
    struct db *d;
    int rc = db_open(dest, true, 0, &d);
    if (rc)
        return rc;
    struct db_rec *r = malloc(COPY_BATCH * sizeof *r);
    if (!r)
        rc = STORE_NOMEM;
    for (size_t i = 0; rc == 0 && i < s->nents; i += COPY_BATCH) {
        size_t n = s->nents - i < COPY_BATCH ? s->nents - i : COPY_BATCH;
        for (size_t j = 0; j < n; j++) {
            const struct went *e = &s->ents[i + j];
            r[j] = (struct db_rec){e->log, e->pos, e->val, e->len};
        }
        rc = db_append(d, r, n, true);
    }
    free(r);
    if (rc == 0)
        rc = db_sync(d);
    db_close(d);
    return rc;
}

/* Remove what a failed copy left in dest, so that it can be run again. */
static void undo_copy(const char *dest)
{
    static const char *const names[] = {"data.mdb", "lock.mdb", "node.key", "root.key"};
    char path[4200];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dest, names[i]);
        unlink(path);
    }
}

/* LMDB's copy of a snapshot it begins itself. The view's own snapshot is ended first (the log's
 * records it kept do not need it): a server that grows the map meanwhile makes the copy's
 * transaction fail with MDB_MAP_RESIZED, and the map can only be adopted with no transaction of
 * this process open. */
static int copy_env(struct backup_snap *s, int fd, bool compact)
{
    mdb_txn_abort(s->txn);
    s->txn = NULL;
    for (int attempt = 0;; attempt++) {
        int rc = mdb_env_copyfd2(s->env, fd, compact ? MDB_CP_COMPACT : 0);
        if (rc != MDB_MAP_RESIZED || attempt == 8)
            return rc;
        mdb_env_set_mapsize(s->env, 0);
        if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET))
            return EIO;
    }
}

int backup_copy(const char *src, const char *dest, bool compact, uint64_t *wal_records)
{
    int rc = empty_dir(dest), lock_fd = -1;
    if (rc == 0)
        rc = backup_lock(dest, &lock_fd);
    struct backup_snap *s = NULL;
    if (rc == 0)
        rc = backup_snap_open(src, &s);
    if (rc)
        goto out;
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dest);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = STORE_IO;
        goto out;
    }
    rc = db_store_rc(copy_env(s, fd, compact));
    if (rc == 0 && fsync(fd))
        rc = STORE_IO;
    close(fd);
    if (rc == 0)
        rc = store_log_records(s, dest);
    if (rc == 0)
        rc = copy_file(src, dest, "node.key");
    if (rc == 0)
        rc = copy_file(src, dest, "root.key");
    if (rc == 0)
        rc = sync_dir(dest);
    if (rc == 0 && wal_records)
        *wal_records = s->nents;
    if (rc)
        undo_copy(dest);
out:
    backup_snap_close(s);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int backup_compact(const char *dir, uint64_t *before, uint64_t *after)
{
    char path[4200], tmp[4200], lockmdb[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    snprintf(tmp, sizeof tmp, "%s/data.mdb.compact", dir);
    snprintf(lockmdb, sizeof lockmdb, "%s/lock.mdb", dir);
    if (access(path, F_OK))
        return STORE_NOT_FOUND;
    int lock_fd;
    int rc = backup_lock(dir, &lock_fd);
    if (rc)
        return rc;
    *before = file_size(path);
    MDB_env *env;
    if ((rc = db_store_rc(env_open(dir, &env)))) {
        close(lock_fd);
        return rc;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    rc = fd < 0 ? STORE_IO : db_store_rc(mdb_env_copyfd2(env, fd, MDB_CP_COMPACT));
    if (rc == 0 && fsync(fd))
        rc = STORE_IO;
    if (fd >= 0)
        close(fd);
    mdb_env_close(env);
    if (rc == 0 && rename(tmp, path))
        rc = STORE_IO;
    if (rc == 0 && unlink(lockmdb) && errno != ENOENT)
        rc = STORE_IO;
    if (rc == 0)
        rc = sync_dir(dir);
    if (rc)
        unlink(tmp);
    *after = file_size(path);
    close(lock_fd);
    return rc;
}
