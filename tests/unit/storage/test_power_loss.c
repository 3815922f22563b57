/* A power-loss model for the lmdb engine. SIGKILL alone cannot find what this finds: the page
 * cache survives it. So a child process runs a workload (threads appending concurrently, random
 * sizes and logs, a trim, a drop) with sync on, through an I/O shim that journals every write of
 * the log segments in memory shared with the parent, and every completed datasync as the point
 * up to which a file's writes are durable (the writes completed before the datasync began).
 * The child reports each acknowledged record in the same memory. The parent kills the child at
 * a random moment, then rebuilds each segment as a power loss may leave it: its image before
 * the trial, every durable write, and a random subset of the later ones, any of them torn at a
 * random byte. For the database it takes either the copy made at the engine's last database
 * sync (io->db_synced) or the file as it is: LMDB syncs a commit's data before its meta page, so
 * after a power loss the database is at one of its commits since that sync.
 *
 * Then it reopens and checks: every acknowledged record is there, at its position, with its
 * bytes, in order; no record appears that was never sent; every record an earlier trial found
 * is still there; a dropped log stays dropped; new appends get positions above everything ever
 * acknowledged. Trials run in chains of a few on one data directory, each starting from what
 * the previous one left (after the parent's checks and a clean close).
 *
 * The shim performs the writes (zeros past the end of a file as an extension, which reads the
 * same) but not the datasyncs: durability is what the model says it is. PL_SEED=n replays the
 * chains from seed n (each failure prints its chain's seed and how to replay it). By default
 * 40 chains of 5 trials run, then 3 big chains of one trial (one writer appends records of up to
 * 1 MiB, so the log switches segments at 32 MiB and retires one within the trial; half of them
 * are killed right around the retire's header write);
 * PL_CHAINS=n runs n chains (no big one), PL_BIG=1 makes them big. Under AddressSanitizer the
 * default is 10 chains and no big one: that pass looks for memory errors, the plain one for
 * coverage. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "store.h"
#include "tmpdir.h"

#define GENS 5     /* trials per chain */
#define BIG_GENS 1 /* trials per big chain */
#define BIG_CHAINS 3
#define NW 3        /* writer threads */
#define NLOGS 4     /* logs 1..NLOGS, plus one log per trial that is dropped */
#define MAX_REC 400 /* records per writer per trial */
#define MAX_J 60000 /* journalled writes per trial */
#define ARENA (96u << 20)
#define NFILES 2 /* wal.0, wal.1 */
#define DROP_LOG(g) (100 + (uint64_t)(g))

/* ---- random numbers ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    return mix(*s);
}

#define MAX_DATA (1u << 20)

/* The data of record seq of writer w in trial g of the chain seeded seed (MAX_DATA bytes of
 * room in buf). */
static size_t rec_data(uint64_t seed, bool big, unsigned g, unsigned w, unsigned seq, char *buf)
{
    uint64_t s = mix(seed ^ mix((uint64_t)g << 40 | (uint64_t)w << 32 | seq));
    uint64_t k = rnd(&s) % 100;
    size_t len = k < 70 ? rnd(&s) % 200 : k < 95 ? 200 + rnd(&s) % 3800 : 4000 + rnd(&s) % 36000;
    if (big && w == 2)
        len = (256u << 10) + rnd(&s) % (MAX_DATA - (256u << 10));
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)rnd(&s);
    return len;
}

/* ---- memory shared with the child ---- */

struct jentry {
    uint32_t file;
    uint32_t kind; /* 0 write, 1 zeros (an extension), 2 truncate */
    uint64_t off, len;
    uint64_t data; /* offset in the arena */
};

struct sent {
    uint64_t log;
};

struct ack {
    uint32_t w, seq;
    uint64_t log, pos, ix;
};

struct shared {
    uint32_t nj; /* journal entries complete (release/acquire) */
    uint64_t arena_used;
    uint32_t durable[NFILES]; /* writes of file f with index < durable[f] are durable */
    int opened;               /* store_open returned */
    uint32_t headers;         /* segment headers written (two at open, one per retire) */
    uint32_t nsent[NW];
    struct sent sent[NW][MAX_REC];
    uint32_t nacks;
    struct ack acks[NW * MAX_REC];
    uint64_t trim_below[NLOGS + 1]; /* intent, set before the trim */
    int drop_state;                 /* 1: the drop began, 2: it returned 0 */
    struct jentry j[MAX_J];
    char arena[];
};

static struct shared *sh;

/* ---- the child's I/O shim ---- */

static pthread_mutex_t jmu = PTHREAD_MUTEX_INITIALIZER;
static int fd_file[4096]; /* file index + 1 */

static int file_of_path(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return !strcmp(b, "wal.0") ? 0 : !strcmp(b, "wal.1") ? 1 : -1;
}

static int pl_open(void *ctx, const char *path, int flags, int mode)
{
    (void)ctx;
    int fd = open(path, flags, mode);
    if (fd >= 0 && fd < 4096)
        fd_file[fd] = file_of_path(path) + 1;
    return fd;
}

static int pl_close(void *ctx, int fd)
{
    (void)ctx;
    if (fd >= 0 && fd < 4096)
        fd_file[fd] = 0;
    return close(fd);
}

static bool zeros(const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* Journal one completed operation on file f (jmu held). Returns false when full. */
static bool journal(int f, uint32_t kind, const void *buf, uint64_t off, uint64_t len)
{
    uint32_t n = sh->nj;
    if (n == MAX_J || (kind == 0 && sh->arena_used + len > ARENA))
        return false;
    struct jentry *e = &sh->j[n];
    *e = (struct jentry){.file = (uint32_t)f, .kind = kind, .off = off, .len = len, .data = sh->arena_used};
    if (kind == 0) {
        memcpy(sh->arena + sh->arena_used, buf, len);
        sh->arena_used += len;
    }
    __atomic_store_n(&sh->nj, n + 1, __ATOMIC_RELEASE);
    return true;
}

static long pl_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off)
{
    (void)ctx;
    int f = fd >= 0 && fd < 4096 ? fd_file[fd] - 1 : -1;
    if (f < 0)
        return pwrite(fd, buf, len, (off_t)off);
    pthread_mutex_lock(&jmu);
    bool z = zeros(buf, len);
    struct stat st;
    long n;
    if (z && fstat(fd, &st) == 0 && (uint64_t)st.st_size <= off) /* an extension: reads the same */
        n = ftruncate(fd, (off_t)(off + len)) == 0 ? (long)len : -1;
    else
        n = pwrite(fd, buf, len, (off_t)off);
    if (n > 0 && off == 0 && len == 4096)
        __atomic_add_fetch(&sh->headers, 1, __ATOMIC_RELEASE);
    if (n > 0 && !journal(f, z ? 1 : 0, buf, off, (uint64_t)n)) {
        errno = ENOSPC; /* the model is full: the engine sees a full disk, the trial goes on */
        n = -1;
    }
    pthread_mutex_unlock(&jmu);
    return n;
}

static long pl_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off)
{
    (void)ctx;
    return pread(fd, buf, len, (off_t)off);
}

static int pl_datasync(void *ctx, int fd)
{
    (void)ctx;
    int f = fd >= 0 && fd < 4096 ? fd_file[fd] - 1 : -1;
    if (f < 0)
        return 0; /* the directory: its entries are not modelled */
    uint32_t begin = __atomic_load_n(&sh->nj, __ATOMIC_ACQUIRE);
    /* a real sync takes time: other frames are written meanwhile */
    usleep(300);
    pthread_mutex_lock(&jmu);
    if (sh->durable[f] < begin)
        __atomic_store_n(&sh->durable[f], begin, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&jmu);
    return 0;
}

static int pl_truncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx;
    int f = fd >= 0 && fd < 4096 ? fd_file[fd] - 1 : -1;
    pthread_mutex_lock(&jmu);
    int rc = ftruncate(fd, (off_t)len);
    if (rc == 0 && f >= 0)
        journal(f, 2, NULL, len, 0);
    pthread_mutex_unlock(&jmu);
    return rc;
}

static const struct store_io pl_io = {pl_open,     pl_close,    pl_pwrite, pl_pread,
                                      pl_datasync, pl_truncate, h_snap_db, NULL};

/* ---- the child's workload ---- */

struct trial {
    const char *dir;
    uint64_t seed;
    bool big;
    unsigned g;
    uint64_t dropped_before[GENS]; /* logs dropped by earlier trials: fenced */
};

struct writer {
    struct store *s;
    const struct trial *t;
    unsigned w;
};

static void *writer_thread(void *arg)
{
    struct writer *wr = arg;
    const struct trial *t = wr->t;
    unsigned w = wr->w;
    uint64_t r = mix(t->seed ^ (uint64_t)(t->g * 7 + w + 1));
    char *data[3], pk[3][32];
    for (int i = 0; i < 3; i++)
        data[i] = malloc(MAX_DATA);
    uint64_t lastpos[NLOGS + 1] = {0};
    bool dropped = false;
    unsigned drop_at = 20 + (unsigned)(rnd(&r) % 100), trim_at = 30 + (unsigned)(rnd(&r) % 200), step = 0;
    while (sh->nsent[w] + 3 <= MAX_REC && sh->arena_used + 4 * MAX_DATA < ARENA) {
        step++;
        uint64_t log = 1 + rnd(&r) % NLOGS;
        if (w == 1 && !dropped && rnd(&r) % 3 == 0)
            log = DROP_LOG(t->g); /* writer 1 feeds the log it drops later */
        size_t n = t->big && w == 2 ? 1 : 1 + rnd(&r) % 3;
        struct store_rec recs[3];
        unsigned first = sh->nsent[w];
        for (size_t i = 0; i < n; i++) {
            unsigned seq = first + (unsigned)i;
            size_t len = rec_data(t->seed, t->big, t->g, w, seq, data[i]);
            snprintf(pk[i], sizeof pk[i], "g%u.w%u.%u", t->g, w, seq);
            recs[i] = (struct store_rec){pk[i], strlen(pk[i]), data[i], len, 0, 0};
            sh->sent[w][seq].log = log;
        }
        __atomic_store_n(&sh->nsent[w], first + (unsigned)n, __ATOMIC_RELEASE); /* sent before the append */
        uint64_t li = log <= NLOGS ? log : 0;
        uint64_t floor = rnd(&r) % 20 == 0 ? lastpos[li] + 1 + rnd(&r) % 1000 : 0;
        struct store_batch b = {log, floor, recs, n};
        int rc = store_append(wr->s, &b, 1);
        if (rc == 0) {
            pthread_mutex_lock(&jmu); /* acks from several threads */
            for (size_t i = 0; i < n; i++)
                sh->acks[sh->nacks + i] = (struct ack){w, first + (unsigned)i, log, recs[i].pos, recs[i].ix};
            __atomic_store_n(&sh->nacks, sh->nacks + (uint32_t)n, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&jmu);
            lastpos[li] = recs[n - 1].pos;
        } else if (rc != STORE_FULL && rc != STORE_BUSY &&
                   !(rc == STORE_NOT_FOUND && log > NLOGS && dropped)) {
            fprintf(stderr, "power loss: append answered %s\n", store_strerror(rc));
        }
        if (w == 0 && step == trim_at && lastpos[1] > 5) {
            __atomic_store_n(&sh->trim_below[1], lastpos[1] - 5, __ATOMIC_RELEASE);
            size_t del;
            store_trim(wr->s, 1, lastpos[1] - 5, 1000, &del);
        }
        if (w == 1 && step == drop_at) {
            __atomic_store_n(&sh->drop_state, 1, __ATOMIC_RELEASE);
            int d;
            while ((d = store_log_drop(wr->s, DROP_LOG(t->g))) == STORE_BUSY)
                ;
            if (d == 0)
                __atomic_store_n(&sh->drop_state, 2, __ATOMIC_RELEASE);
            dropped = true;
        }
        usleep((useconds_t)(rnd(&r) % 200));
    }
    for (int i = 0; i < 3; i++)
        free(data[i]);
    return NULL;
}

static void child(const struct trial *t)
{
    struct store_config cfg = {.dir = t->dir, .sync = true, .initial_map = 1u << 20, .io = &pl_io};
    struct store *s = NULL;
    if (store_open(&cfg, &s) != 0)
        _exit(3);
    sh->opened = 1;
    pthread_t th[NW];
    struct writer wr[NW];
    for (unsigned w = 0; w < NW; w++) {
        wr[w] = (struct writer){s, t, w};
        pthread_create(&th[w], NULL, writer_thread, &wr[w]);
    }
    for (unsigned w = 0; w < NW; w++)
        pthread_join(th[w], NULL);
    for (;;) /* until killed */
        pause();
}

/* ---- the parent: rebuilding the files ---- */

struct image {
    char *b;
    size_t len;
};

static void img_write(struct image *im, uint64_t off, const char *src, size_t len)
{
    if (off + len > im->len) {
        im->b = realloc(im->b, off + len);
        memset(im->b + im->len, 0, off + len - im->len);
        im->len = off + len;
    }
    if (!len)
        return;
    if (src)
        memcpy(im->b + off, src, len);
    else
        memset(im->b + off, 0, len);
}

static void apply(struct image *im, const struct jentry *e, uint64_t len)
{
    if (e->kind == 2) {
        if (e->off < im->len)
            im->len = e->off;
        else
            img_write(im, e->off, NULL, 0);
        return;
    }
    img_write(im, e->off, e->kind == 0 ? sh->arena + e->data : NULL, len);
}

/* Write buf as the whole of path, leaving holes where it holds zeros (a segment is mostly
 * its zero-filled extension). Returns 0 or -1. */
static int spit_sparse(const char *path, const char *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    int rc = ftruncate(fd, (off_t)len);
    for (size_t off = 0; rc == 0 && off < len; off += 4096) {
        size_t n = len - off < 4096 ? len - off : 4096;
        if (!zeros(buf + off, n) && pwrite(fd, buf + off, n, (off_t)off) != (ssize_t)n)
            rc = -1;
    }
    return close(fd) || rc ? -1 : 0;
}

/* Rebuild dir's segment files from base (their images before the trial) and the journal;
 * *kept counts the writes after the last sync that were kept. */
static void rebuild(const char *dir, struct image base[NFILES], uint64_t *r, unsigned *lost, unsigned *torn)
{
    uint32_t nj = __atomic_load_n(&sh->nj, __ATOMIC_ACQUIRE);
    for (int f = 0; f < NFILES; f++) {
        struct image im = {NULL, 0};
        img_write(&im, 0, base[f].b, base[f].len);
        im.len = base[f].len;
        for (uint32_t i = 0; i < nj; i++) {
            const struct jentry *e = &sh->j[i];
            if ((int)e->file != f)
                continue;
            if (i < sh->durable[f]) {
                apply(&im, e, e->len);
                continue;
            }
            uint64_t k = rnd(r) % 3;
            if (k == 0) {
                (*lost)++;
            } else if (k == 1 || e->kind != 0 || e->len < 2) {
                apply(&im, e, e->len);
            } else {
                (*torn)++;
                apply(&im, e, rnd(r) % e->len);
            }
        }
        char p[512];
        snprintf(p, sizeof p, "%s/wal.%d", dir, f);
        CHECK(spit_sparse(p, im.b, im.len) == 0);
        free(im.b);
    }
}

/* ---- the parent: what is known ---- */

struct known {
    uint64_t log, pos, ix, sum;
    char pk[32];
};

struct model {
    struct known *v; /* what the last check found (and appended), every log */
    size_t n, cap;
    uint64_t dropped[GENS]; /* logs dropped for good */
    int ndropped;
    uint64_t unknown[GENS]; /* logs whose drop began but did not finish: not checked again */
    int nunknown;
    uint64_t max_pos[200]; /* highest position ever acknowledged or found, per log id */
    uint64_t max_ix[200];  /* ... and index */
};

static uint64_t sum_of(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ^ n;
}

static void known_add(struct model *m, uint64_t log, uint64_t pos, uint64_t ix, const char *pk, size_t pkl,
                      uint64_t sum)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 1024;
        m->v = realloc(m->v, m->cap * sizeof *m->v);
    }
    struct known *k = &m->v[m->n++];
    *k = (struct known){.log = log, .pos = pos, .ix = ix, .sum = sum};
    snprintf(k->pk, sizeof k->pk, "%.*s", (int)pkl, pk);
    if (pos > m->max_pos[log < 200 ? log : 0])
        m->max_pos[log < 200 ? log : 0] = pos;
    if (ix > m->max_ix[log < 200 ? log : 0])
        m->max_ix[log < 200 ? log : 0] = ix;
}

/* Check the reopened store against the model and this trial's reports; update the model.
 * Returns the number of problems (each printed). */
static int verify(struct store *s, const struct trial *t, struct model *m)
{
    int bad = 0;
#define BAD(...)                                                                                            \
    do {                                                                                                    \
        if (bad++ < 8)                                                                                      \
            fprintf(stderr, "power loss (chain seed %llu, trial %u): ", (unsigned long long)t->seed, t->g), \
                fprintf(stderr, __VA_ARGS__), fprintf(stderr, "\n");                                        \
    } while (0)
    uint64_t logs[NLOGS + 1 + GENS];
    int nlogs = 0;
    for (uint64_t l = 1; l <= NLOGS; l++)
        logs[nlogs++] = l;
    logs[nlogs++] = DROP_LOG(t->g);
    struct model next = {0};
    memcpy(next.dropped, m->dropped, sizeof m->dropped);
    next.ndropped = m->ndropped;
    memcpy(next.unknown, m->unknown, sizeof m->unknown);
    next.nunknown = m->nunknown;
    memcpy(next.max_pos, m->max_pos, sizeof m->max_pos);
    memcpy(next.max_ix, m->max_ix, sizeof m->max_ix);
    int drop = __atomic_load_n(&sh->drop_state, __ATOMIC_ACQUIRE);
    uint32_t nacks = __atomic_load_n(&sh->nacks, __ATOMIC_ACQUIRE);
    static char buf[MAX_DATA];
    static unsigned char seen[NW][MAX_REC];
    memset(seen, 0, sizeof seen);
    for (int li = 0; li < nlogs; li++) {
        uint64_t log = logs[li];
        bool is_drop = log == DROP_LOG(t->g);
        if (is_drop && drop == 1) { /* began, not finished: either outcome */
            next.unknown[next.nunknown++] = log;
            continue;
        }
        struct h_arena a = {0};
        struct store_read *v = NULL;
        size_t n = 0;
        uint64_t last = 0;
        int rc = h_scan_all(s, log, &a, &v, &n, &last);
        if (rc) {
            BAD("log %llu: scan answered %s", (unsigned long long)log, store_strerror(rc));
            h_arena_free(&a);
            continue;
        }
        if (is_drop && drop == 2) {
            if (n)
                BAD("log %llu was dropped, %zu records came back", (unsigned long long)log, n);
            next.dropped[next.ndropped++] = log;
            h_arena_free(&a);
            continue;
        }
        uint64_t trim = log <= NLOGS ? __atomic_load_n(&sh->trim_below[log], __ATOMIC_ACQUIRE) : 0;
        /* what is there: each record one that was sent (or known before), once */
        for (size_t i = 0; i < n; i++) {
            unsigned g, w, seq;
            const struct store_read *x = &v[i];
            char pkz[40];
            snprintf(pkz, sizeof pkz, "%.*s", (int)(x->pk_len < 39 ? x->pk_len : 39), x->pk);
            if (i && x->pos <= v[i - 1].pos)
                BAD("log %llu: positions out of order", (unsigned long long)log);
            if (i && x->ix <= v[i - 1].ix)
                BAD("log %llu: indexes out of order", (unsigned long long)log);
            if (sscanf(pkz, "g%u.w%u.%u", &g, &w, &seq) == 3 && g == t->g) {
                if (w >= NW || seq >= sh->nsent[w] || sh->sent[w][seq].log != log) {
                    BAD("log %llu pos %llu: record %s was never sent to it", (unsigned long long)log,
                        (unsigned long long)x->pos, pkz);
                } else if (seen[w][seq]++) {
                    BAD("log %llu: record %s appears twice", (unsigned long long)log, pkz);
                } else {
                    size_t len = rec_data(t->seed, t->big, g, w, seq, buf);
                    if (len != x->data_len || memcmp(buf, x->data, len))
                        BAD("log %llu pos %llu: record %s has other bytes", (unsigned long long)log,
                            (unsigned long long)x->pos, pkz);
                }
            } else {
                /* from an earlier trial: it must be one the model knows, at that position */
                bool found = false;
                for (size_t k = 0; k < m->n && !found; k++)
                    found = m->v[k].log == log && m->v[k].pos == x->pos && m->v[k].ix == x->ix &&
                            !strcmp(m->v[k].pk, pkz) && m->v[k].sum == sum_of(x->data, x->data_len);
                if (!found)
                    BAD("log %llu pos %llu: record %s is unknown", (unsigned long long)log,
                        (unsigned long long)x->pos, pkz);
            }
            known_add(&next, log, x->pos, x->ix, x->pk, x->pk_len, sum_of(x->data, x->data_len));
        }
        /* what must be there: everything known before, everything acknowledged */
        for (size_t k = 0; k < m->n; k++) {
            if (m->v[k].log != log || m->v[k].pos < trim)
                continue;
            bool found = false;
            for (size_t i = 0; i < n && !found; i++)
                found = v[i].pos == m->v[k].pos;
            if (!found)
                BAD("log %llu pos %llu: record %s of an earlier trial is gone", (unsigned long long)log,
                    (unsigned long long)m->v[k].pos, m->v[k].pk);
        }
        uint64_t prev_pos[NW] = {0};
        unsigned prev_seq[NW] = {0};
        for (uint32_t k = 0; k < nacks; k++) {
            const struct ack *c = &sh->acks[k];
            if (c->log != log)
                continue;
            if (c->pos > next.max_pos[log < 200 ? log : 0])
                next.max_pos[log < 200 ? log : 0] = c->pos;
            if (c->ix > next.max_ix[log < 200 ? log : 0])
                next.max_ix[log < 200 ? log : 0] = c->ix;
            if (prev_pos[c->w] && c->seq > prev_seq[c->w] && c->pos <= prev_pos[c->w])
                BAD("log %llu: writer %u's records acknowledged out of order", (unsigned long long)log, c->w);
            prev_pos[c->w] = c->pos;
            prev_seq[c->w] = c->seq;
            if (c->pos < trim)
                continue;
            char want[32];
            snprintf(want, sizeof want, "g%u.w%u.%u", t->g, c->w, c->seq);
            bool found = false;
            for (size_t i = 0; i < n && !found; i++)
                found = v[i].pos == c->pos && v[i].ix == c->ix && v[i].pk_len == strlen(want) &&
                        !memcmp(v[i].pk, want, v[i].pk_len);
            if (!found)
                BAD("log %llu pos %llu: acknowledged record %s is missing", (unsigned long long)log,
                    (unsigned long long)c->pos, want);
        }
        h_arena_free(&a);
        /* no position is handed out twice: the next one is above everything ever seen */
        uint64_t lb = 0, p = 0, ix = 0;
        char pk[32];
        snprintf(pk, sizeof pk, "p%u.%llu", t->g, (unsigned long long)log);
        if (store_log_bounds(s, log, &lb, NULL) || lb < next.max_pos[log < 200 ? log : 0])
            BAD("log %llu: last position %llu below %llu, which was acknowledged", (unsigned long long)log,
                (unsigned long long)lb, (unsigned long long)next.max_pos[log < 200 ? log : 0]);
        if ((rc = h_append1x(s, log, pk, pk, strlen(pk), &p, &ix)) || p <= next.max_pos[log < 200 ? log : 0])
            BAD("log %llu: a new append answered %s at %llu, not above %llu", (unsigned long long)log,
                store_strerror(rc), (unsigned long long)p,
                (unsigned long long)next.max_pos[log < 200 ? log : 0]);
        else if (ix <= next.max_ix[log < 200 ? log : 0])
            BAD("log %llu: a new append took index %llu, not above %llu", (unsigned long long)log,
                (unsigned long long)ix, (unsigned long long)next.max_ix[log < 200 ? log : 0]);
        if (rc == 0)
            known_add(&next, log, p, ix, pk, strlen(pk), sum_of(pk, strlen(pk)));
    }
    /* logs dropped in earlier trials stay dropped */
    for (int i = 0; i < next.ndropped; i++) {
        uint64_t first = 1, p = 0;
        store_log_bounds(s, next.dropped[i], NULL, &first);
        if (first)
            BAD("dropped log %llu has records again", (unsigned long long)next.dropped[i]);
        if (h_append1(s, next.dropped[i], "z", "z", 1, &p) != STORE_NOT_FOUND)
            BAD("dropped log %llu takes appends again", (unsigned long long)next.dropped[i]);
    }
    free(m->v);
    *m = next;
    return bad;
#undef BAD
}

/* ---- trials ---- */

static int64_t env_int(const char *name, int64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoll(v, NULL, 10) : def;
}

struct totals {
    unsigned trials, opened, acks, lost, torn, snaps, retires;
};

/* One chain of GENS trials on one directory. Returns the problems found. */
static int chain(uint64_t seed, bool big, struct totals *tot)
{
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct model m = {0};
    uint64_t r = mix(seed);
    int bad = 0;
    for (unsigned g = 0; g < (big ? BIG_GENS : GENS) && !bad; g++) {
        struct trial t = {.dir = d, .seed = seed, .big = big, .g = g};
        /* the segments as they are before the trial */
        struct image base[NFILES];
        for (int f = 0; f < NFILES; f++) {
            char p[512];
            snprintf(p, sizeof p, "%s/wal.%d", d, f);
            base[f].len = 0;
            base[f].b = h_slurp(p, &base[f].len);
        }
        char snap[512];
        h_path(snap, sizeof snap, d, "data.snap");
        unlink(snap);
        memset(sh, 0, offsetof(struct shared, j));
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            child(&t);
        if (big && rnd(&r) % 2) {
            /* around a checkpoint: once a retire has written its segment header (or up to 5 s),
             * then 0-3 ms more */
            for (int i = 0; i < 5000 && __atomic_load_n(&sh->headers, __ATOMIC_ACQUIRE) < 3; i++)
                usleep(1000);
            usleep((useconds_t)(rnd(&r) % 3000));
        } else {
            int64_t ms = big ? 300 + (int64_t)(rnd(&r) % 1200) : 5 + (int64_t)(rnd(&r) % 80);
            struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st)) {
            fprintf(stderr, "power loss (chain seed %llu, trial %u): the child exited %d\n",
                    (unsigned long long)seed, g, WEXITSTATUS(st));
            bad++;
        }
        /* the power loss */
        rebuild(d, base, &r, &tot->lost, &tot->torn);
        for (int f = 0; f < NFILES; f++)
            free(base[f].b);
        if (rnd(&r) % 2 && access(snap, F_OK) == 0) {
            CHECK(h_use_snap(d) == 0);
            tot->snaps++;
        } else {
            char lock[512];
            h_path(lock, sizeof lock, d, "lock.mdb");
            unlink(lock);
        }
        tot->trials++;
        tot->opened += (unsigned)sh->opened;
        tot->acks += sh->nacks;
        unsigned headers = 0; /* segment headers written: two at open, one per retire begun */
        for (uint32_t i = 0; i < sh->nj; i++)
            headers += sh->j[i].kind == 0 && sh->j[i].off == 0 && sh->j[i].len == 4096;
        tot->retires += headers > 2 ? headers - 2 : 0;
        struct store_config cfg = {.dir = d, .sync = false};
        struct store *s = NULL;
        int rc = store_open(&cfg, &s);
        if (rc) {
            fprintf(stderr, "power loss (chain seed %llu, trial %u): recovery answered %s\n",
                    (unsigned long long)seed, g, store_strerror(rc));
            bad++;
            break;
        }
        bad += verify(s, &t, &m);
        store_close(s);
    }
    free(m.v);
    if (bad)
        fprintf(stderr, "power loss: replay with PL_SEED=%llu PL_CHAINS=1%s\n", (unsigned long long)seed,
                big ? " PL_BIG=1" : "");
    fflush(stderr);
    tmpdir_remove(d);
    return bad;
}

static void acknowledged_records_survive_power_loss_at_random_moments(void)
{
    sh = h_shared(sizeof *sh + ARENA);
#if defined(__SANITIZE_ADDRESS__)
    const int64_t small = 10, big = 0;
#else
    const int64_t small = 40, big = BIG_CHAINS;
#endif
    int64_t chains = env_int("PL_CHAINS", 0);
    bool all_big = env_int("PL_BIG", 0) != 0;
    int64_t plus_big = chains ? 0 : big;
    if (!chains)
        chains = small;
    uint64_t seed0 = (uint64_t)env_int("PL_SEED", (int64_t)time(NULL));
    h_watchdog("power loss", 300);
    struct totals tot = {0};
    int failed = 0;
    for (int64_t c = 0; c < chains + plus_big; c++)
        failed += chain(seed0 + (uint64_t)c, all_big || c >= chains, &tot) != 0;
    h_watchdog_off();
    printf("power loss: %u trials (%u opened), %u acknowledged records checked, %u writes lost and %u torn "
           "after "
           "the last sync, %u with the database as of its last sync, %u segment retires begun; %d chains "
           "failed\n",
           tot.trials, tot.opened, tot.acks, tot.lost, tot.torn, tot.snaps, tot.retires, failed);
    CHECK(failed == 0);
    CHECK(tot.trials >= 200 || !plus_big || small < 40);
}

CHECK_RUN("storage/power-loss", T(acknowledged_records_survive_power_loss_at_random_moments))
