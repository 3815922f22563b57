/* fault.c: the fault-injecting engine and I/O shim (see fault.h).
 *
 * Model. One process-wide state under one mutex: per engine entry a call counter and at most
 * one armed fault (the call number it fires at, and the code); per I/O class the same, plus a
 * counter of returned calls. The shim remembers, per file descriptor, whether it names a
 * write-ahead log segment ("wal.N" in any directory) and, per segment path, whether a header
 * was written since the last datasync of that path, which is what makes a datasync a header
 * sync. Blocked calls wait on a condition variable for a release generation to pass; no lock
 * is held while the real system call runs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../engine.h"
#include "fault.h"

#define MAX_FDS 4096
#define SEG_HDR 4096u
#define MAX_SEGS 64 /* segment paths remembered for header-sync classification */
#define MAX_ARMED 4 /* armed faults per I/O class */

struct armed {
    unsigned at; /* fires when the counter reaches this; 0 for none */
    int rc;
    enum fault_action act;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned calls[FAULT_OPS];
    struct armed fail[FAULT_OPS];
    unsigned io_calls[FAULT_IO_OPS], io_returned[FAULT_IO_OPS];
    struct armed io[FAULT_IO_OPS][MAX_ARMED];
    int blocked;
    unsigned release_gen;
    int fd_seg[MAX_FDS]; /* index into segs + 1, 0 for a file that is not a segment */
    char segs[MAX_SEGS][256];
    bool hdr_dirty[MAX_SEGS];
    int nsegs;
    bool snapshots;
} st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* ---- the engine ---- */

struct fault_impl {
    const struct store_engine *inner;
    void *impl;
};

/* Count a call of op; return the armed code if it fires now, else 0. */
static int hit(enum fault_op op)
{
    pthread_mutex_lock(&st.mu);
    unsigned n = ++st.calls[op];
    int rc = 0;
    if (st.fail[op].at && n == st.fail[op].at) {
        rc = st.fail[op].rc;
        st.fail[op].at = 0;
    }
    pthread_mutex_unlock(&st.mu);
    return rc;
}

static int f_open(const struct store_engine *inner, const struct store_config *cfg, struct store *owner,
                  void **impl)
{
    struct fault_impl *f = calloc(1, sizeof *f);
    if (!f)
        return STORE_NOMEM;
    f->inner = inner;
    int rc = inner->open(cfg, owner, &f->impl);
    if (rc) {
        free(f);
        return rc;
    }
    *impl = f;
    return 0;
}

static void f_close(void *impl)
{
    struct fault_impl *f = impl;
    f->inner->close(f->impl);
    free(f);
}

static int f_append(void *impl, struct store_batch *b, size_t nb, store_done_fn done, void *arg)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_APPEND);
    return rc ? rc : f->inner->append(f->impl, b, nb, done, arg);
}

static int f_scan(void *impl, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
                  struct store_records *out)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_SCAN);
    if (rc) {
        out->n = 0;
        out->bytes = 0;
        out->v = NULL;
        return rc;
    }
    return f->inner->scan(f->impl, log, from, max_n, max_bytes, out);
}

static int f_log_bounds(void *impl, uint64_t log, uint64_t *last, uint64_t *first)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_LOG_BOUNDS);
    return rc ? rc : f->inner->log_bounds(f->impl, log, last, first);
}

static int f_watch(void *impl, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                   struct store_watch **w)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_WATCH);
    return rc ? rc : f->inner->watch(f->impl, log, after, fn, arg, w);
}

static bool f_unwatch(void *impl, struct store_watch *w)
{
    struct fault_impl *f = impl;
    return f->inner->unwatch(f->impl, w);
}

static int f_trim(void *impl, uint64_t log, uint64_t below, size_t max, size_t *deleted,
                  struct store_trim_row *rows, size_t nrows)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_TRIM);
    return rc ? rc : f->inner->trim(f->impl, log, below, max, deleted, rows, nrows);
}

static int f_log_drop(void *impl, uint64_t log)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_LOG_DROP);
    return rc ? rc : f->inner->log_drop(f->impl, log);
}

static int f_log_seal(void *impl, uint64_t log)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_LOG_SEAL);
    return rc ? rc : f->inner->log_seal(f->impl, log);
}

static int f_lease(void *impl, const char *name)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_LEASE);
    return rc ? rc : f->inner->lease ? f->inner->lease(f->impl, name) : 0;
}

static int f_meta_cas(void *impl, struct store_row *rows, size_t n)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_META_CAS);
    return rc ? rc : f->inner->meta_cas(f->impl, rows, n);
}

static int f_meta_get(void *impl, const char *key, char **val, size_t *len, uint64_t *version)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_META_GET);
    return rc ? rc : f->inner->meta_get(f->impl, key, val, len, version);
}

static int f_meta_scan(void *impl, const char *prefix, store_meta_fn fn, void *ctx)
{
    struct fault_impl *f = impl;
    int rc = hit(FAULT_META_SCAN);
    return rc ? rc : f->inner->meta_scan(f->impl, prefix, fn, ctx);
}

static void f_stats(void *impl, struct store_stats *s)
{
    struct fault_impl *f = impl;
    if (f->inner->stats)
        f->inner->stats(f->impl, s);
}

static const struct store_engine fault_table = {
    .name = "fault",
    .close = f_close,
    .append = f_append,
    .scan = f_scan,
    .log_bounds = f_log_bounds,
    .watch = f_watch,
    .unwatch = f_unwatch,
    .trim = f_trim,
    .log_drop = f_log_drop,
    .log_seal = f_log_seal,
    .lease = f_lease,
    .meta_cas = f_meta_cas,
    .meta_get = f_meta_get,
    .meta_scan = f_meta_scan,
    .stats = f_stats,
};

static const struct store_wrapper fault_wrapper = {.name = "fault", .open = f_open, .table = &fault_table};

void fault_register(void) { store_register_wrapper(&fault_wrapper); }

void fault_reset(void)
{
    pthread_mutex_lock(&st.mu);
    memset(st.calls, 0, sizeof st.calls);
    memset(st.fail, 0, sizeof st.fail);
    memset(st.io_calls, 0, sizeof st.io_calls);
    memset(st.io_returned, 0, sizeof st.io_returned);
    memset(st.io, 0, sizeof st.io);
    st.snapshots = false;
    st.release_gen++;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
}

void fault_fail(enum fault_op op, unsigned nth, int rc)
{
    pthread_mutex_lock(&st.mu);
    st.fail[op] = (struct armed){.at = st.calls[op] + nth, .rc = rc};
    pthread_mutex_unlock(&st.mu);
}

unsigned fault_calls(enum fault_op op)
{
    pthread_mutex_lock(&st.mu);
    unsigned n = st.calls[op];
    pthread_mutex_unlock(&st.mu);
    return n;
}

/* ---- the I/O shim ---- */

void fault_io_arm(enum fault_io_op op, unsigned nth, enum fault_action act, int err)
{
    pthread_mutex_lock(&st.mu);
    int k = 0;
    while (k < MAX_ARMED - 1 && st.io[op][k].at)
        k++;
    st.io[op][k] = (struct armed){.at = st.io_calls[op] + nth, .rc = err, .act = act};
    pthread_mutex_unlock(&st.mu);
}

unsigned fault_io_calls(enum fault_io_op op)
{
    pthread_mutex_lock(&st.mu);
    unsigned n = st.io_calls[op];
    pthread_mutex_unlock(&st.mu);
    return n;
}

unsigned fault_io_returned(enum fault_io_op op)
{
    pthread_mutex_lock(&st.mu);
    unsigned n = st.io_returned[op];
    pthread_mutex_unlock(&st.mu);
    return n;
}

static void deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    long ns = ts->tv_nsec + (long)(ms % 1000) * 1000000;
    ts->tv_sec += ms / 1000 + ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

bool fault_wait_blocked(int timeout_ms)
{
    struct timespec ts;
    deadline(&ts, timeout_ms);
    pthread_mutex_lock(&st.mu);
    int rc = 0;
    while (!st.blocked && rc == 0)
        rc = pthread_cond_timedwait(&st.cv, &st.mu, &ts);
    bool ok = st.blocked > 0;
    pthread_mutex_unlock(&st.mu);
    return ok;
}

bool fault_wait_returned(enum fault_io_op op, unsigned n, int timeout_ms)
{
    struct timespec ts;
    deadline(&ts, timeout_ms);
    pthread_mutex_lock(&st.mu);
    int rc = 0;
    while (st.io_returned[op] < n && rc == 0)
        rc = pthread_cond_timedwait(&st.cv, &st.mu, &ts);
    bool ok = st.io_returned[op] >= n;
    pthread_mutex_unlock(&st.mu);
    return ok;
}

void fault_release(void)
{
    pthread_mutex_lock(&st.mu);
    st.release_gen++;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
}

/* Count a call of class op (mu held); the armed action if it fires now, else -1. */
static int io_hit(enum fault_io_op op, int *err)
{
    unsigned n = ++st.io_calls[op];
    for (int k = 0; k < MAX_ARMED; k++)
        if (st.io[op][k].at && n == st.io[op][k].at) {
            st.io[op][k].at = 0;
            *err = st.io[op][k].rc;
            return (int)st.io[op][k].act;
        }
    return -1;
}

/* Wait for a release if act blocks (mu held). */
static void maybe_block(int act)
{
    if (act != FAULT_BLOCK && act != FAULT_BLOCK_FAIL)
        return;
    unsigned gen = st.release_gen;
    st.blocked++;
    pthread_cond_broadcast(&st.cv);
    while (st.release_gen == gen)
        pthread_cond_wait(&st.cv, &st.mu);
    st.blocked--;
}

static void io_done(enum fault_io_op op)
{
    pthread_mutex_lock(&st.mu);
    st.io_returned[op]++;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
}

/* The segment index of a path ending in "/wal.N", or -1 (mu held). */
static int seg_of_path(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (strncmp(b, "wal.", 4) || !b[4] || b[5] || b[4] < '0' || b[4] > '9')
        return -1;
    for (int i = 0; i < st.nsegs; i++)
        if (!strcmp(st.segs[i], path))
            return i;
    if (st.nsegs == MAX_SEGS || strlen(path) >= sizeof st.segs[0])
        return -1;
    memcpy(st.segs[st.nsegs], path, strlen(path) + 1);
    st.hdr_dirty[st.nsegs] = false;
    return st.nsegs++;
}

static int seg_of_fd(int fd) { return fd >= 0 && fd < MAX_FDS ? st.fd_seg[fd] - 1 : -1; }

static int s_open(void *ctx, const char *path, int flags, int mode)
{
    (void)ctx;
    int fd = open(path, flags, mode);
    if (fd >= 0 && fd < MAX_FDS) {
        pthread_mutex_lock(&st.mu);
        st.fd_seg[fd] = seg_of_path(path) + 1;
        pthread_mutex_unlock(&st.mu);
    }
    return fd;
}

static int s_close(void *ctx, int fd)
{
    (void)ctx;
    if (fd >= 0 && fd < MAX_FDS) {
        pthread_mutex_lock(&st.mu);
        st.fd_seg[fd] = 0;
        pthread_mutex_unlock(&st.mu);
    }
    return close(fd);
}

static bool all_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static long s_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off)
{
    (void)ctx;
    pthread_mutex_lock(&st.mu);
    int seg = seg_of_fd(fd), act = -1, err = 0;
    enum fault_io_op op = FAULT_IO_WRITE;
    if (seg >= 0) {
        op = off == 0 && len == SEG_HDR             ? FAULT_IO_HDR
             : off >= SEG_HDR && all_zero(buf, len) ? FAULT_IO_ZERO
                                                    : FAULT_IO_WRITE;
        if (op == FAULT_IO_HDR)
            st.hdr_dirty[seg] = true;
        act = io_hit(op, &err);
        maybe_block(act);
    }
    pthread_mutex_unlock(&st.mu);
    long n;
    if (act == FAULT_FAIL || act == FAULT_BLOCK_FAIL) {
        errno = err;
        n = -1;
    } else if (act == FAULT_SHORT || act == FAULT_SHORT_FAIL) {
        size_t half = len > 1 ? len / 2 : len;
        n = pwrite(fd, buf, half, (off_t)off);
        if (n >= 0 && act == FAULT_SHORT_FAIL) {
            errno = err;
            n = -1;
        }
    } else {
        n = pwrite(fd, buf, len, (off_t)off);
    }
    if (seg >= 0)
        io_done(op);
    return n;
}

static long s_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off)
{
    (void)ctx;
    return pread(fd, buf, len, (off_t)off);
}

static int s_datasync(void *ctx, int fd)
{
    (void)ctx;
    pthread_mutex_lock(&st.mu);
    int seg = seg_of_fd(fd), act = -1, err = 0;
    enum fault_io_op op = FAULT_IO_SYNC;
    if (seg >= 0) {
        op = st.hdr_dirty[seg] ? FAULT_IO_HDR_SYNC : FAULT_IO_SYNC;
        act = io_hit(op, &err);
        maybe_block(act);
    }
    pthread_mutex_unlock(&st.mu);
    int rc;
    if (act == FAULT_FAIL || act == FAULT_BLOCK_FAIL) {
        errno = err;
        rc = -1;
    } else {
        rc = fdatasync(fd);
        if (seg >= 0 && rc == 0 && op == FAULT_IO_HDR_SYNC) {
            pthread_mutex_lock(&st.mu);
            st.hdr_dirty[seg] = false;
            pthread_mutex_unlock(&st.mu);
        }
    }
    if (seg >= 0)
        io_done(op);
    return rc;
}

static int s_truncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx;
    return ftruncate(fd, (off_t)len);
}

/* Copy from to to; false on any error. */
static bool copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = in < 0 ? -1 : open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool ok = in >= 0 && out >= 0;
    static char buf[1 << 16];
    for (ssize_t n; ok && (n = read(in, buf, sizeof buf)) != 0;)
        ok = n > 0 && write(out, buf, (size_t)n) == n;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out))
        ok = false;
    return ok;
}

static void s_db_synced(void *ctx, const char *dir)
{
    (void)ctx;
    pthread_mutex_lock(&st.mu);
    bool on = st.snapshots;
    pthread_mutex_unlock(&st.mu);
    if (!on)
        return;
    char from[4200], tmp[4200], to[4200];
    snprintf(from, sizeof from, "%s/data.mdb", dir);
    snprintf(tmp, sizeof tmp, "%s/data.snap.tmp", dir);
    snprintf(to, sizeof to, "%s/data.snap", dir);
    /* a commit may run meanwhile: keep a copy only if the meta pages (the first two pages;
     * every commit writes one) did not change during it */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* syncs from two threads */
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 8; i++) {
        static char before[8192], after[8192];
        int fd = open(from, O_RDONLY);
        if (fd < 0)
            break;
        ssize_t nb = pread(fd, before, sizeof before, 0);
        bool ok = copy_file(from, tmp);
        ssize_t na = pread(fd, after, sizeof after, 0);
        close(fd);
        if (ok && nb == na && nb > 0 && !memcmp(before, after, (size_t)nb)) {
            rename(tmp, to);
            pthread_mutex_unlock(&mu);
            return;
        }
    }
    unlink(to); /* no consistent copy: the test takes the file as it is */
    pthread_mutex_unlock(&mu);
}

void fault_io_snapshots(bool on)
{
    pthread_mutex_lock(&st.mu);
    st.snapshots = on;
    pthread_mutex_unlock(&st.mu);
}

static const struct store_io shim = {
    .open = s_open,
    .close = s_close,
    .pwrite = s_pwrite,
    .pread = s_pread,
    .datasync = s_datasync,
    .truncate = s_truncate,
    .db_synced = s_db_synced,
};

const struct store_io *fault_io(void) { return &shim; }
