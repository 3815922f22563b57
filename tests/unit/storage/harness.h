/* harness.h: helpers shared by the storage unit tests: files, scans into an arena, a watchdog.
 * Everything is static inline; a test includes it once. */
#ifndef KINESD_STORAGE_HARNESS_H
#define KINESD_STORAGE_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

/* ---- files ---- */

/* The whole file at path in a malloc'd buffer (*len bytes), or NULL if it cannot be read. */
static inline char *h_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *b = malloc(n ? n : 1);
    while (b && got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)got);
        if (r <= 0) {
            free(b);
            b = NULL;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (b)
        *len = n;
    return b;
}

/* Write len bytes as the whole content of path. Returns 0 or -1. */
static inline int h_spit(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, (const char *)buf + done, len - done, (off_t)done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    return close(fd);
}

/* Copy file from to file to (absent from: to removed). Returns 0 or -1. */
static inline int h_copy(const char *from, const char *to)
{
    size_t len;
    char *b = h_slurp(from, &len);
    if (!b)
        return unlink(to) == 0 || errno == ENOENT ? 0 : -1;
    int rc = h_spit(to, b, len);
    free(b);
    return rc;
}

static inline void h_path(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Copy the store's files (database and log segments) from dir a to dir b. */
static inline int h_copy_store(const char *a, const char *b)
{
    static const char *const names[] = {"data.mdb", "wal.0", "wal.1"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char pa[512], pb[512];
        h_path(pa, sizeof pa, a, names[i]);
        h_path(pb, sizeof pb, b, names[i]);
        if (h_copy(pa, pb))
            return -1;
    }
    char lock[512];
    h_path(lock, sizeof lock, b, "lock.mdb");
    unlink(lock);
    return 0;
}

/* True if two files have the same bytes (both absent counts as the same). */
static inline int h_same_file(const char *a, const char *b)
{
    size_t la = 0, lb = 0;
    char *x = h_slurp(a, &la), *y = h_slurp(b, &lb);
    int same = (!x && !y) || (x && y && la == lb && !memcmp(x, y, la));
    free(x);
    free(y);
    return same;
}

/* ---- reading a log back ---- */

/* An arena for store_records: blocks freed together. */
struct h_arena {
    void **p;
    size_t n, cap;
};

static inline void *h_alloc(void *ctx, size_t n)
{
    struct h_arena *a = ctx;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        void **p = realloc(a->p, cap * sizeof *p);
        if (!p)
            return NULL;
        a->p = p;
        a->cap = cap;
    }
    void *m = malloc(n);
    if (m)
        a->p[a->n++] = m;
    return m;
}

static inline void h_arena_free(struct h_arena *a)
{
    while (a->n)
        free(a->p[--a->n]);
    free(a->p);
    a->p = NULL;
    a->cap = 0;
}

/* Every record of log, in one array (owned by the arena). Returns store_scan's code. */
static inline int h_scan_all(struct store *s, uint64_t log, struct h_arena *a, struct store_read **v,
                             size_t *n, uint64_t *last)
{
    struct store_read *all = NULL;
    size_t cnt = 0, cap = 0;
    uint64_t from = 0;
    *last = 0;
    for (;;) {
        struct store_records out = {.alloc = h_alloc, .actx = a};
        int rc = store_scan(s, log, from, 1000, SIZE_MAX, &out);
        if (rc)
            return rc;
        *last = out.last;
        if (cnt + out.n > cap) {
            cap = (cnt + out.n) * 2;
            struct store_read *nv = h_alloc(a, cap * sizeof *nv);
            if (!nv)
                return STORE_NOMEM;
            if (cnt)
                memcpy(nv, all, cnt * sizeof *nv);
            all = nv;
        }
        if (out.n)
            memcpy(all + cnt, out.v, out.n * sizeof *out.v);
        cnt += out.n;
        if (out.n < 1000)
            break;
        from = out.v[out.n - 1].pos + 1;
    }
    *v = all;
    *n = cnt;
    return 0;
}

/* Append one record to log (floor 0); its position in *pos and index in *ix (either may be NULL). */
static inline int h_append1x(struct store *s, uint64_t log, const char *pk, const void *data, size_t len,
                             uint64_t *pos, uint64_t *ix)
{
    struct store_rec r = {pk, strlen(pk), data, len, 0, 0};
    struct store_batch b = {log, 0, &r, 1};
    int rc = store_append(s, &b, 1);
    if (rc == 0 && pos)
        *pos = r.pos;
    if (rc == 0 && ix)
        *ix = r.ix;
    return rc;
}

static inline int h_append1(struct store *s, uint64_t log, const char *pk, const void *data, size_t len,
                            uint64_t *pos)
{
    return h_append1x(s, log, pk, data, len, pos, NULL);
}

/* ---- a watchdog: a hang fails the test binary instead of hanging it ---- */

__attribute__((unused)) static const char *h_watchdog_what = "";
__attribute__((unused)) static char h_watchdog_dir_[256];

static inline void h_watchdog_fire(int sig)
{
    (void)sig;
    static const char msg[] = "\nwatchdog: a test did not finish in time (a hang): ";
    if (write(2, msg, sizeof msg - 1) < 0 || write(2, h_watchdog_what, strlen(h_watchdog_what)) < 0 ||
        write(2, "\n", 1) < 0)
        _exit(2);
    if (h_watchdog_dir_[0]) { /* do not leave a test's files behind */
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/rm", "rm", "-rf", h_watchdog_dir_, (char *)NULL);
            _exit(1);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
    _exit(2);
}

/* The directory the watchdog removes when it fires (NULL for none). */
static inline void h_watchdog_dir(const char *dir)
{
    snprintf(h_watchdog_dir_, sizeof h_watchdog_dir_, "%s", dir ? dir : "");
}

/* Fail (exit 2) if not disarmed within seconds; what names the test. */
static inline void h_watchdog(const char *what, unsigned seconds)
{
    h_watchdog_what = what;
    signal(SIGALRM, h_watchdog_fire);
    alarm(seconds);
}

static inline void h_watchdog_off(void)
{
    alarm(0);
    h_watchdog_dir_[0] = 0;
}

/* ---- crashing children ---- */

/* n bytes of zeroed memory shared with children forked later (never freed: tests are short). */
static inline void *h_shared(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        abort();
    return p;
}

/* Run fn(arg) in a child that then dies without closing anything (as SIGKILL would). Returns
 * true if the child's checks passed. */
static inline int h_in_child(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        check_failures_ = 0; /* the child's own checks, not the parent's so far */
        fn(arg);
        _exit(check_failures_ ? 1 : 0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "child: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ---- the OS as a store_io, snapshotting the database at every sync ---- */

static inline int h_os_open(void *ctx, const char *path, int flags, int mode)
{
    (void)ctx;
    return open(path, flags, mode);
}
static inline int h_os_close(void *ctx, int fd)
{
    (void)ctx;
    return close(fd);
}
static inline long h_os_pwrite(void *ctx, int fd, const void *b, size_t n, uint64_t off)
{
    (void)ctx;
    return pwrite(fd, b, n, (off_t)off);
}
static inline long h_os_pread(void *ctx, int fd, void *b, size_t n, uint64_t off)
{
    (void)ctx;
    return pread(fd, b, n, (off_t)off);
}
static inline int h_os_datasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd);
}
static inline int h_os_truncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx;
    return ftruncate(fd, (off_t)len);
}

/* Copy dir/data.mdb to dir/data.snap atomically (through a temporary name and a rename). */
static inline void h_snap_db(void *ctx, const char *dir)
{
    (void)ctx;
    char from[512], tmp[512], to[512];
    h_path(from, sizeof from, dir, "data.mdb");
    h_path(tmp, sizeof tmp, dir, "data.snap.tmp");
    h_path(to, sizeof to, dir, "data.snap");
    /* a commit may run meanwhile (a drop syncs beside the flusher): a copy is kept only if
     * the meta pages (the first two pages; every commit writes one) did not change during it */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* syncs from two threads */
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 8; i++) {
        static char before[8192], after[8192];
        size_t lb = 0, la = 0;
        int fd = open(from, O_RDONLY);
        if (fd < 0)
            break;
        ssize_t n = pread(fd, before, sizeof before, 0);
        lb = n > 0 ? (size_t)n : 0;
        int rc = h_copy(from, tmp);
        n = pread(fd, after, sizeof after, 0);
        la = n > 0 ? (size_t)n : 0;
        close(fd);
        if (rc == 0 && la == lb && !memcmp(before, after, la)) {
            rename(tmp, to);
            pthread_mutex_unlock(&mu);
            return;
        }
    }
    unlink(to); /* no consistent copy: let the test take the file as it is */
    pthread_mutex_unlock(&mu);
}

/* The OS, with a snapshot of the database at each of the engine's database syncs: the state a
 * power loss can leave the database in (later commits' meta pages not synced). */
__attribute__((unused)) static const struct store_io h_snap_io = {
    h_os_open, h_os_close, h_os_pwrite, h_os_pread, h_os_datasync, h_os_truncate, h_snap_db, NULL};

/* Put dir/data.snap in place of dir/data.mdb (and forget the lock file). */
static inline int h_use_snap(const char *dir)
{
    char snap[512], db[512], lock[512];
    h_path(snap, sizeof snap, dir, "data.snap");
    h_path(db, sizeof db, dir, "data.mdb");
    h_path(lock, sizeof lock, dir, "lock.mdb");
    unlink(lock);
    return rename(snap, db);
}

#endif
