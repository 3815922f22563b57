/* engine.c: the lmdb engine: group commit through a write-ahead log, an in-memory tail,
 * a flusher into LMDB, checkpoints that do not stop writers, recovery, fenced drops, watches.
 *
 * Group commit. store_append_async queues a job (the caller's batches, borrowed). A committer
 * takes every queued job at once (up to BATCH_BYTES), and under wal_mu assigns positions and
 * indexes from `last` (the one place they are decided), seals each record with them straight
 * from the caller's memory into one frame buffer, and writes the frame to the log. It then
 * syncs the frame outside the lock through a descriptor of its own, while the other committer
 * may write and sync the next frame. Frames are published to the tail in the order they were
 * written (a sync covers every earlier write, so no frame is durable before an earlier one)
 * and only if the log is not broken by then; the jobs are then reported.
 *
 * The tail. A published frame is where readers find its records until the flusher has stored
 * them in LMDB (every FLUSH_MS, or sooner past FLUSH_BYTES, in transactions of at most
 * FLUSH_TXN_BYTES, as LMDB holds a transaction's dirty pages in memory). Its bytes are the
 * frame buffer it was written from while the tail's buffers stay within TAIL_MEM, else a
 * read-only view of the log segment it was written to (page cache, not the process's memory):
 * when flushing lags, the tail grows on the disk, up to the cap on unflushed bytes, not in
 * memory. A segment is rewritten only once retired, after every frame of it was flushed and
 * let go of. A scan reads LMDB's snapshot and then the tail, holding tail_rw for reading
 * across both, so a record is readable from the moment it is acknowledged; the flusher takes
 * tail_rw for writing only to unlink frames it has stored. No caller code runs under it: scans
 * copy records into the caller's batch.
 *
 * Checkpoints. Once the active log segment holds SEG_SWITCH bytes, the next frame goes to the
 * other segment (wal_switch, no I/O, under wal_mu); the flusher later stores every frame of the
 * old segment, syncs LMDB and retires the old segment. Writers never wait for that. If the
 * other segment is not retired yet, the active one just grows; the cap on unflushed bytes
 * (backpressure, STORE_BUSY) bounds it, and the tail with it.
 *
 * Recovery. store_open replays both segments into LMDB (records at or below a log's stored
 * last position, or of a dropped log, are skipped), syncs LMDB, and starts both segments with
 * new runs, so nothing of a replayed run is continued. On a full disk the frames LMDB cannot
 * take stay in the tail (readable); writes are refused until the flusher has stored them,
 * and only then does the log start anew.
 *
 * Fail-stop. If LMDB is found to hold a position the engine handed out again (a flush finds a
 * record at or below a log's stored last position), the engine refuses every later write with
 * STORE_UNAVAILABLE and keeps its log for the next start; it never renumbers.
 *
 * Locks, in this order: wal_mu (positions, frame writes, segment switch; drops' fence),
 * flush_mu (one flush at a time), tail_rw, then tail_mu (the tail's links, turns and counters,
 * held briefly) and the watch list's (a frame's watches fire under tail_mu, as it is published).
 * mu guards the queue. No lock is held across a sync except
 * flush_mu (by the flusher, which no request waits for). */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "../engine.h"
#include "../format.h"
#include "../watch.h"
#include "db.h"
#include "wal.h"
#include "klog.h"

#define BATCH_BYTES (64u << 20)          /* data budget for one frame */
#define FLUSH_MS 50                      /* the tail is flushed this often */
#define FLUSH_BYTES (1u << 20)           /* or as soon as it holds this much */
#define FLUSH_TXN_BYTES (4u << 20)       /* sealed bytes per LMDB transaction of a flush */
#define TAIL_MEM (4u << 20)              /* frame bytes the tail holds in memory */
#define FLUSH_RETRY_MS 500               /* after a failed flush, wait this long */
#define FREE_COUNT_MS 5000               /* the database's free pages are counted this often */
#define SEG_SWITCH (32ull << 20)         /* switch log segments at this size */
#define DEFAULT_UNFLUSHED (256ull << 20) /* backpressure cap */
#define DROP_BATCH 4096                  /* records deleted per call of a drop */
#define COMMITTERS WAL_SYNCERS

struct job {
    struct store_batch *batches; /* the caller's, borrowed until reported */
    size_t nb, nrec;
    size_t bytes; /* sealed bytes */
    store_done_fn done;
    void *arg;
    int rc; /* set when the job fails before its frame */
    struct job *next;
};

/* One run of consecutive positions (and indexes) of one log within a frame. */
struct run {
    uint64_t log, first;
    uint64_t ix; /* the first record's index */
    size_t n;
    size_t ent; /* index of its first entry in the frame's ents */
};

struct ent {
    uint32_t off; /* the sealed value's offset in buf */
    uint32_t len;
};

struct frame {
    char *buf; /* WAL_HDR + payload: a copy of ours (held) or the log's file pages (view) */
    size_t len;
    bool held;            /* buf is malloc'd and counted in tail_mem */
    struct wal_view view; /* else, once written: the frame's bytes in the log */
    uint64_t at;          /* the frame's offset in its segment */
    struct run *runs;
    size_t nruns;
    struct ent *ents;
    size_t nents;
    uint64_t bytes; /* sealed bytes of its jobs, counted as unflushed until flushed */
    uint64_t seq;
    int seg;
    int64_t at_ms;
    struct frame *next;
};

/* log id -> last position and index handed out (and whether the log was dropped). */
struct posmap {
    struct pm_slot {
        uint64_t key, val, ix;
        bool used, dropped, sealed;
    } * v;
    size_t cap, n;
};

struct lmdb {
    struct db *db;
    struct wal *wal;
    int lock_fd; /* flock'd: the data directory is this process's */
    const struct store_io *io;
    const struct store_keyring *kr; /* the records' data keys (NULL: not encrypted) */
    char dir[4096];
    bool sync;
    uint64_t max_unflushed;

    pthread_mutex_t mu;
    pthread_cond_t work;
    struct job *head, *tail; /* queued, under mu */
    bool closing;
    int next_committer; /* under mu: each committer takes an index for its syncs */
    pthread_t committer[COMMITTERS];

    pthread_mutex_t wal_mu;
    struct posmap last;
    uint64_t next_seq;
    int retiring;          /* segment to retire, -1 for none (under tail_mu) */
    uint64_t retire_after; /* ... once every frame up to this seq is flushed */
    bool failed;           /* fail-stop (atomic) */
    bool recovering;       /* replayed frames LMDB could not take are in the tail: no writes
                              until the flusher stored them and restarted the log (atomic) */

    pthread_mutex_t flush_mu;
    pthread_rwlock_t tail_rw;
    pthread_mutex_t tail_mu;
    pthread_cond_t tail_cv; /* the flusher */
    pthread_cond_t turn;    /* frames publish in seq order */
    struct frame *t_head, *t_last;
    uint64_t published; /* frames published (or failed), in seq order */
    uint64_t flushed;   /* every frame with seq < flushed is in LMDB */
    bool flusher_stop;
    pthread_t flusher;

    uint64_t unflushed;                   /* atomic: queued and tail bytes */
    uint64_t tail_mem;                    /* atomic: bytes of the frames held in memory */
    uint64_t syncs, sync_ns, checkpoints; /* atomic */
    uint64_t sync_buckets[STORE_SYNC_BUCKETS + 1], checkpoint_ns, flushes, flush_ns, free_pages; /* atomic */
    int64_t free_counted_ms; /* the flusher's: when free_pages was last counted */

    struct watchlist watches;
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t ns = ts->tv_nsec + ms * 1000000;
    ts->tv_sec += ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

/* ---- position map ---- */

static size_t pm_slot(const struct posmap *m, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
}

static struct pm_slot *pm_find(struct posmap *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = pm_slot(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (!m->v[i].used)
            return NULL;
        if (m->v[i].key == key)
            return &m->v[i];
    }
}

/* The slot for key, inserted (val 0) if missing; NULL when out of memory. */
static struct pm_slot *pm_get(struct posmap *m, uint64_t key)
{
    struct pm_slot *e = pm_find(m, key);
    if (e)
        return e;
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct pm_slot *v = calloc(cap, sizeof *v);
        if (!v)
            return NULL;
        struct posmap g = {v, cap, 0};
        for (size_t i = 0; i < m->cap; i++)
            if (m->v[i].used)
                *pm_get(&g, m->v[i].key) = m->v[i];
        free(m->v);
        *m = g;
    }
    size_t i = pm_slot(m, key);
    while (m->v[i].used)
        i = (i + 1) & (m->cap - 1);
    m->v[i] = (struct pm_slot){.key = key, .used = true};
    m->n++;
    return &m->v[i];
}

/* The slot of log with its last position, read from LMDB the first time (wal_mu held). */
static int last_of(struct lmdb *e, uint64_t log, struct pm_slot **out)
{
    struct pm_slot *p = pm_find(&e->last, log);
    if (!p) {
        uint64_t last, ix;
        bool dropped, sealed;
        int rc = db_bounds(e->db, log, &last, &ix, NULL, &dropped, &sealed);
        if (rc)
            return rc;
        if (!(p = pm_get(&e->last, log)))
            return STORE_NOMEM;
        p->val = last;
        p->ix = ix;
        p->dropped = dropped;
        p->sealed = sealed;
    }
    *out = p;
    return 0;
}

/* ---- watches ---- */

/* Fire the watches that frame f satisfies (after it was published). */
static void fire_watches(struct lmdb *e, const struct frame *f)
{
    for (size_t i = 0; i < f->nruns && __atomic_load_n(&e->watches.n, __ATOMIC_RELAXED); i++)
        watchlist_fire(&e->watches, f->runs[i].log, f->runs[i].first + f->runs[i].n - 1);
}

/* ---- the tail ---- */

/* A frame with room for nruns runs, nents entries and len bytes of buf (held until the frame
 * is written: frame_settle). Returns NULL when out of memory. */
static struct frame *frame_new(size_t nruns, size_t nents, size_t len)
{
    size_t off_runs = (sizeof(struct frame) + 15) & ~(size_t)15;
    size_t off_ents = off_runs + nruns * sizeof(struct run);
    char *mem = malloc(off_ents + nents * sizeof(struct ent));
    char *buf = malloc(len);
    if (!mem || !buf) {
        free(mem);
        free(buf);
        return NULL;
    }
    struct frame *f = (struct frame *)mem;
    *f = (struct frame){.runs = (struct run *)(mem + off_runs),
                        .ents = (struct ent *)(mem + off_ents),
                        .buf = buf,
                        .len = len};
    return f;
}

/* The frame's bytes as the tail keeps them once written: the copy in memory while the tail's
 * copies stay within TAIL_MEM, else the log's file pages (reclaimable page cache, read back
 * from the disk if the kernel dropped them), so a tail that grows because flushing lags costs
 * no memory of the process. If the log cannot be mapped, the copy stays. */
static void frame_settle(struct lmdb *e, struct frame *f)
{
    const char *data;
    if (__atomic_add_fetch(&e->tail_mem, f->len, __ATOMIC_RELAXED) > TAIL_MEM &&
        wal_map(e->wal, f->seg, f->at, f->len, &f->view, &data) == 0) {
        __atomic_sub_fetch(&e->tail_mem, f->len, __ATOMIC_RELAXED);
        free(f->buf);
        f->buf = (char *)data; /* read only, as every reader of a frame's bytes does */
        return;
    }
    f->held = true;
}

static void frame_free(struct lmdb *e, struct frame *f)
{
    if (f->view.map)
        wal_unmap(&f->view);
    else
        free(f->buf);
    if (f->held)
        __atomic_sub_fetch(&e->tail_mem, f->len, __ATOMIC_RELAXED);
    free(f);
}

/* The first and last position of log in the tail (0 if none); tail_rw held for reading. */
static void tail_bounds(struct lmdb *e, uint64_t log, uint64_t *lo, uint64_t *hi)
{
    pthread_mutex_lock(&e->tail_mu);
    struct frame *first = e->t_head, *last = e->t_last;
    pthread_mutex_unlock(&e->tail_mu);
    *lo = *hi = 0;
    for (struct frame *f = first; f; f = f == last ? NULL : f->next)
        for (size_t i = 0; i < f->nruns; i++)
            if (f->runs[i].log == log) {
                if (!*lo)
                    *lo = f->runs[i].first;
                *hi = f->runs[i].first + f->runs[i].n - 1;
            }
}

/* Store the frames first..last (consecutive, published; n entries, `bytes` sealed bytes) in
 * LMDB in one transaction, then drop them from the tail (flush_mu held). Returns 0 or LMDB's
 * error (the tail is kept, to be flushed later). */
static int store_frames(struct lmdb *e, struct frame *first, struct frame *last, size_t n, uint64_t bytes)
{
    struct db_rec *r = malloc(n * sizeof *r);
    if (!r)
        return STORE_NOMEM;
    size_t k = 0;
    for (struct frame *f = first;; f = f->next) {
        for (size_t i = 0; i < f->nruns; i++) {
            const struct run *u = &f->runs[i];
            for (size_t j = 0; j < u->n; j++) {
                const struct ent *x = &f->ents[u->ent + j];
                r[k++] = (struct db_rec){u->log, u->first + j, f->buf + x->off, x->len};
            }
        }
        if (f == last)
            break;
    }
    /* while recovering, the tail holds replayed frames, parts of which LMDB may hold already */
    bool recovering = __atomic_load_n(&e->recovering, __ATOMIC_ACQUIRE);
    int rc = db_append(e->db, r, n, recovering);
    free(r);
    if (rc == STORE_CORRUPT) {
        /* LMDB holds a position handed out again: stop writing, keep the log */
        __atomic_store_n(&e->failed, true, __ATOMIC_RELEASE);
        klog(KLOG_ERROR, "storage: the database already holds a position the log assigned; "
                         "refusing writes (the log is kept for the next start)");
    }
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&e->tail_rw);
    pthread_mutex_lock(&e->tail_mu);
    e->t_head = last->next;
    if (!e->t_head)
        e->t_last = NULL;
    e->flushed = last->seq + 1;
    pthread_mutex_unlock(&e->tail_mu);
    pthread_rwlock_unlock(&e->tail_rw);
    last->next = NULL;
    for (struct frame *f = first, *next; f; f = next) {
        next = f->next;
        frame_free(e, f);
    }
    __atomic_sub_fetch(&e->unflushed, bytes, __ATOMIC_RELAXED);
    return 0;
}

/* Store every frame published by now in LMDB, in transactions of about FLUSH_TXN_BYTES (an
 * LMDB transaction holds each page it dirties in memory until it commits), then drop them
 * from the tail. Returns 0 or LMDB's error (what is not stored stays in the tail). */
static int flush(struct lmdb *e)
{
    pthread_mutex_lock(&e->flush_mu);
    pthread_mutex_lock(&e->tail_mu);
    struct frame *first = e->t_head, *end = e->t_last;
    pthread_mutex_unlock(&e->tail_mu);
    int rc = 0;
    while (first && rc == 0) {
        /* frames up to end are linked (and stay so) before end was read under tail_mu */
        struct frame *last = first;
        size_t n = first->nents;
        uint64_t bytes = first->bytes;
        while (last != end && bytes + last->next->bytes <= FLUSH_TXN_BYTES) {
            last = last->next;
            n += last->nents;
            bytes += last->bytes;
        }
        struct frame *next = last == end ? NULL : last->next;
        rc = store_frames(e, first, last, n, bytes);
        first = next;
    }
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

/* Flush every frame numbered below `upto` (waiting for those still being synced). */
static int flush_upto(struct lmdb *e, uint64_t upto)
{
    pthread_mutex_lock(&e->tail_mu);
    while (e->published < upto)
        pthread_cond_wait(&e->turn, &e->tail_mu);
    bool done = e->flushed >= upto;
    pthread_mutex_unlock(&e->tail_mu);
    return done ? 0 : flush(e);
}

/* LMDB durable, then the hook a power-loss model snapshots it at. */
static int db_durable(struct lmdb *e)
{
    int rc = db_sync(e->db);
    if (rc == 0 && e->io && e->io->db_synced)
        e->io->db_synced(e->io->ctx, e->dir);
    return rc;
}

/* Retire the segment the committers switched away from once its frames are in LMDB. */
static int retire(struct lmdb *e)
{
    if (__atomic_load_n(&e->recovering, __ATOMIC_ACQUIRE)) {
        /* the replayed frames are stored: make that durable, then the log can start anew */
        pthread_mutex_lock(&e->tail_mu);
        bool empty = !e->t_head;
        pthread_mutex_unlock(&e->tail_mu);
        int rc = empty ? db_durable(e) : 0;
        if (rc == 0 && empty) {
            pthread_mutex_lock(&e->wal_mu);
            rc = wal_restart(e->wal);
            if (rc == 0)
                __atomic_store_n(&e->recovering, false, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&e->wal_mu);
        }
        return rc;
    }
    pthread_mutex_lock(&e->tail_mu);
    int seg = e->retiring;
    bool ready = seg >= 0 && e->flushed > e->retire_after;
    pthread_mutex_unlock(&e->tail_mu);
    if (!ready)
        return 0;
    uint64_t t0 = now_ns();
    int rc = db_durable(e);
    if (rc == 0)
        rc = wal_retire(e->wal, seg);
    if (rc == 0) {
        pthread_mutex_lock(&e->tail_mu);
        e->retiring = -1;
        pthread_mutex_unlock(&e->tail_mu);
        uint64_t took = now_ns() - t0;
        __atomic_add_fetch(&e->checkpoints, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&e->checkpoint_ns, took, __ATOMIC_RELAXED);
        klog(KLOG_DEBUG, "storage: checkpoint: log segment %d retired in %.1f ms", seg, (double)took / 1e6);
    }
    return rc;
}

static void *flush_loop(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-flush"); /* top -H, perf */
    struct lmdb *e = arg;
    int64_t retry_at = 0;
    pthread_mutex_lock(&e->tail_mu);
    while (!e->flusher_stop) {
        /* due: FLUSH_MS after the oldest frame, at once when the tail is large or a segment
         * is ready to retire, never before retry_at after a failure */
        int64_t t = now_ms(), due = INT64_MAX;
        if (e->t_head)
            due = __atomic_load_n(&e->unflushed, __ATOMIC_RELAXED) >= FLUSH_BYTES
                      ? t
                      : e->t_head->at_ms + FLUSH_MS;
        if ((e->retiring >= 0 && e->flushed > e->retire_after) || (e->recovering && !e->t_head))
            due = t;
        if (due != INT64_MAX && due < retry_at)
            due = retry_at;
        if (t < due) {
            struct timespec ts;
            deadline(&ts, due - t < 1000 ? due - t : 1000);
            pthread_cond_timedwait(&e->tail_cv, &e->tail_mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&e->tail_mu);
        uint64_t t0 = now_ns();
        int rc = flush(e);
        __atomic_add_fetch(&e->flushes, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&e->flush_ns, now_ns() - t0, __ATOMIC_RELAXED);
        if (rc == 0)
            rc = retire(e);
        if (rc == 0 && now_ms() - e->free_counted_ms >= FREE_COUNT_MS) { /* a read, off the data plane */
            uint64_t free_pages;
            if (db_free_pages(e->db, &free_pages) == 0)
                __atomic_store_n(&e->free_pages, free_pages, __ATOMIC_RELAXED);
            e->free_counted_ms = now_ms();
        }
        if (rc && rc != STORE_CORRUPT)
            klog(KLOG_WARN, "storage: flush failed (%s); retrying", store_strerror(rc));
        retry_at = rc ? now_ms() + FLUSH_RETRY_MS : 0;
        pthread_mutex_lock(&e->tail_mu);
    }
    pthread_mutex_unlock(&e->tail_mu);
    return NULL;
}

/* ---- committing ---- */

/* Fill the positions and indexes frame f assigned into its jobs' records, before f is
 * published (after that the flusher may free it at any time). */
static void fill_positions(struct job *j, const struct frame *f)
{
    size_t run = 0;
    for (; j; j = j->next) {
        if (j->rc)
            continue;
        for (size_t b = 0; b < j->nb; b++, run++)
            for (size_t i = 0; i < j->batches[b].n; i++) {
                j->batches[b].recs[i].pos = f->runs[run].first + i;
                j->batches[b].recs[i].ix = f->runs[run].ix + i;
            }
    }
}

/* Report every job of the chain and free it. */
static void report(struct job *j, int rc)
{
    for (struct job *next; j; j = next) {
        next = j->next;
        j->done(j->arg, j->rc ? j->rc : rc);
        free(j);
    }
}

/* Build the frame for a chain of jobs and write it (wal_mu held). Jobs naming a dropped log
 * fail (j->rc) and stay out of the frame. Returns 0 with *out the frame written (NULL if no
 * job is left), or the error for every job. */
static int write_frame(struct lmdb *e, struct job *jobs, struct frame **out)
{
    *out = NULL;
    if (__atomic_load_n(&e->failed, __ATOMIC_ACQUIRE) || wal_broken(e->wal))
        return STORE_UNAVAILABLE;
    if (__atomic_load_n(&e->recovering, __ATOMIC_ACQUIRE))
        return STORE_FULL;
    size_t nruns = 0, nents = 0, payload = 0, sealed = 0;
    for (struct job *j = jobs; j; j = j->next) {
        for (size_t b = 0; b < j->nb && !j->rc; b++) {
            struct pm_slot *p;
            int rc = last_of(e, j->batches[b].log, &p);
            if (rc)
                return rc;
            if (p->dropped)
                j->rc = STORE_NOT_FOUND;
            else if (p->sealed)
                j->rc = STORE_CONFLICT;
        }
        if (j->rc)
            continue;
        nruns += j->nb;
        nents += j->nrec;
        sealed += j->bytes;
        payload += j->bytes + WAL_ENTRY * j->nrec;
    }
    if (!nents)
        return 0;
    struct frame *f = frame_new(nruns, nents, WAL_HDR + payload);
    if (!f)
        return STORE_NOMEM;
    f->bytes = sealed;
    size_t off = WAL_HDR;
    struct format_sealer sealer;
    format_sealer_init(&sealer, e->kr);
    for (struct job *j = jobs; j; j = j->next) {
        if (j->rc)
            continue;
        for (size_t b = 0; b < j->nb; b++) {
            const struct store_batch *sb = &j->batches[b];
            struct pm_slot *p = pm_find(&e->last, sb->log);
            uint64_t pos = p->val + 1 > sb->floor ? p->val + 1 : sb->floor, ix = p->ix ? p->ix + 1 : pos;
            f->runs[f->nruns++] =
                (struct run){.log = sb->log, .first = pos, .ix = ix, .n = sb->n, .ent = f->nents};
            for (size_t i = 0; i < sb->n; i++, pos++, ix++) {
                const struct store_rec *r = &sb->recs[i];
                off += wal_put_entry(f->buf + off, sb->log, pos,
                                     format_sealed_len(e->kr, r->pk_len, r->data_len));
                size_t len;
                int rc = format_seal(&sealer, f->buf + off, sb->log, pos, ix, sb->n - i, r, &len);
                if (rc) { /* no data key: the positions and indexes handed out so far are skipped */
                    p->val = pos;
                    p->ix = ix;
                    format_sealer_done(&sealer);
                    frame_free(e, f);
                    return rc;
                }
                f->ents[f->nents++] = (struct ent){(uint32_t)off, (uint32_t)len};
                off += len;
            }
            p->val = pos - 1;
            p->ix = ix - 1;
        }
    }
    format_sealer_done(&sealer);
    int rc = wal_write(e->wal, f->buf, f->len, &f->seg, &f->at);
    if (rc) {
        frame_free(e, f);
        return rc;
    }
    int old = wal_switch(e->wal, SEG_SWITCH);
    f->seq = e->next_seq++;
    if (old >= 0) {
        pthread_mutex_lock(&e->tail_mu);
        e->retiring = old;
        e->retire_after = f->seq;
        pthread_mutex_unlock(&e->tail_mu);
    }
    *out = f;
    return 0;
}

static void *commit_loop(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-commit"); /* top -H, perf */
    struct lmdb *e = arg;
    pthread_mutex_lock(&e->mu);
    int me = e->next_committer++;
    for (;;) {
        while (!e->head && !e->closing)
            pthread_cond_wait(&e->work, &e->mu);
        if (!e->head)
            break;
        struct job *first = e->head, *j = first;
        size_t bytes = j->bytes;
        while (j->next && bytes + j->next->bytes <= BATCH_BYTES) {
            j = j->next;
            bytes += j->bytes;
        }
        e->head = j->next;
        if (!e->head)
            e->tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&e->mu);

        struct frame *f;
        pthread_mutex_lock(&e->wal_mu);
        int rc = write_frame(e, first, &f);
        pthread_mutex_unlock(&e->wal_mu);
        if (rc || !f) {
            __atomic_sub_fetch(&e->unflushed, bytes, __ATOMIC_RELAXED);
            report(first, rc);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        __atomic_sub_fetch(&e->unflushed, bytes - f->bytes, __ATOMIC_RELAXED);
        frame_settle(e, f);
        uint64_t t0 = now_ns();
        rc = wal_sync(e->wal, f->seg, me);
        uint64_t took = now_ns() - t0;
        __atomic_add_fetch(&e->syncs, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&e->sync_ns, took, __ATOMIC_RELAXED);
        store_sync_observe(e->sync_buckets, took);
        if (rc == 0)
            fill_positions(first, f);
        pthread_mutex_lock(&e->tail_mu);
        while (e->published != f->seq)
            pthread_cond_wait(&e->turn, &e->tail_mu);
        if (rc == 0 && wal_broken(e->wal)) /* an earlier frame's sync failed meanwhile */
            rc = STORE_UNAVAILABLE;
        if (rc == 0) {
            f->at_ms = now_ms();
            if (e->t_last)
                e->t_last->next = f;
            else
                e->t_head = f;
            e->t_last = f;
            /* the flusher sleeps while the tail is empty, and flushes early when it is large */
            if (e->t_head == f || __atomic_load_n(&e->unflushed, __ATOMIC_RELAXED) >= FLUSH_BYTES)
                pthread_cond_signal(&e->tail_cv);
            fire_watches(e, f); /* before tail_mu is let go: the flusher may free f after */
        } else if (e->flushed == f->seq) {
            e->flushed++; /* nothing of it will be flushed */
        }
        e->published++;
        pthread_cond_broadcast(&e->turn);
        pthread_mutex_unlock(&e->tail_mu);
        if (rc) {
            __atomic_sub_fetch(&e->unflushed, f->bytes, __ATOMIC_RELAXED);
            frame_free(e, f);
        }
        report(first, rc);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static int lm_append(void *impl, struct store_batch *batches, size_t nbatches, store_done_fn done, void *arg)
{
    struct lmdb *e = impl;
    if (__atomic_load_n(&e->failed, __ATOMIC_ACQUIRE) || wal_broken(e->wal))
        return STORE_UNAVAILABLE;
    size_t bytes = 0, nrec = 0;
    for (size_t b = 0; b < nbatches; b++) {
        if (!batches[b].n)
            return STORE_INVALID;
        for (size_t i = 0; i < batches[b].n; i++)
            bytes += format_sealed_len(e->kr, batches[b].recs[i].pk_len, batches[b].recs[i].data_len);
        nrec += batches[b].n;
    }
    if (!nrec)
        return STORE_INVALID;
    uint64_t u = __atomic_add_fetch(&e->unflushed, bytes, __ATOMIC_RELAXED);
    if (u > e->max_unflushed && u != bytes) { /* one append alone always gets in */
        __atomic_sub_fetch(&e->unflushed, bytes, __ATOMIC_RELAXED);
        return STORE_BUSY;
    }
    struct job *j = malloc(sizeof *j);
    if (!j) {
        __atomic_sub_fetch(&e->unflushed, bytes, __ATOMIC_RELAXED);
        return STORE_NOMEM;
    }
    *j = (struct job){
        .batches = batches, .nb = nbatches, .nrec = nrec, .bytes = bytes, .done = done, .arg = arg};
    pthread_mutex_lock(&e->mu);
    if (e->closing) {
        pthread_mutex_unlock(&e->mu);
        __atomic_sub_fetch(&e->unflushed, bytes, __ATOMIC_RELAXED);
        free(j);
        return STORE_CLOSED;
    }
    if (e->tail)
        e->tail->next = j;
    else
        e->head = j;
    e->tail = j;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

/* ---- reading ---- */

static int lm_scan(void *impl, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
                   struct store_records *out)
{
    struct lmdb *e = impl;
    uint64_t stored = 0, stored_ix = 0;
    out->n = 0;
    out->bytes = 0;
    out->v = NULL;
    pthread_rwlock_rdlock(&e->tail_rw);
    pthread_mutex_lock(&e->tail_mu);
    struct frame *first = e->t_head, *tl = e->t_last;
    pthread_mutex_unlock(&e->tail_mu);
    struct format_opener o;
    format_opener_init(&o, e->kr);
    int rc = db_scan(e->db, &o, log, from, max_n, max_bytes, out, &stored, &stored_ix);
    /* then the tail: records past the snapshot's, as far as the limits allow, and the log's
     * newest position and index */
    uint64_t newest = stored, newest_ix = stored_ix;
    for (struct frame *f = first; f && rc == 0; f = f == tl ? NULL : f->next)
        for (size_t i = 0; i < f->nruns && rc == 0; i++) {
            const struct run *u = &f->runs[i];
            if (u->log != log)
                continue;
            uint64_t end = u->first + u->n - 1;
            if (end > newest) {
                newest = end;
                newest_ix = u->ix + u->n - 1;
            }
            for (size_t k = 0; k < u->n && rc == 0; k++) {
                uint64_t pos = u->first + k;
                if (pos < from || pos <= stored)
                    continue;
                if (out->n >= max_n || out->bytes >= max_bytes)
                    break;
                const struct ent *x = &f->ents[u->ent + k];
                rc = format_open_with(&o, f->buf + x->off, x->len, log, pos, out);
            }
        }
    pthread_rwlock_unlock(&e->tail_rw);
    format_opener_done(&o);
    if (rc == 0) {
        out->last = newest;
        out->last_ix = newest_ix;
    }
    return rc;
}

static int lm_log_bounds(void *impl, uint64_t log, uint64_t *last, uint64_t *first)
{
    struct lmdb *e = impl;
    uint64_t l = 0, f = 0, lo, hi;
    pthread_rwlock_rdlock(&e->tail_rw);
    int rc = db_bounds(e->db, log, &l, NULL, &f, NULL, NULL);
    tail_bounds(e, log, &lo, &hi);
    pthread_rwlock_unlock(&e->tail_rw);
    if (last)
        *last = hi > l ? hi : l;
    if (first)
        *first = f ? f : lo;
    return rc;
}

static int last_of_log(void *ctx, uint64_t log, uint64_t *last)
{
    return lm_log_bounds(ctx, log, last, NULL);
}

static int lm_watch(void *impl, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                    struct store_watch **out)
{
    return watchlist_watch(&((struct lmdb *)impl)->watches, log, after, fn, arg, out, last_of_log, impl);
}

static bool lm_unwatch(void *impl, struct store_watch *w)
{
    return watchlist_unwatch(&((struct lmdb *)impl)->watches, w);
}

/* ---- trimming and dropping ---- */

static int lm_trim(void *impl, uint64_t log, uint64_t below, size_t max, size_t *deleted,
                   struct store_trim_row *rows, size_t nrows)
{
    struct lmdb *e = impl;
    uint64_t lo, hi;
    pthread_rwlock_rdlock(&e->tail_rw);
    tail_bounds(e, log, &lo, &hi);
    pthread_rwlock_unlock(&e->tail_rw);
    *deleted = 0;
    int rc = lo && lo < below ? flush(e) : 0; /* records to trim are still in the tail */
    return rc ? rc : db_trim(e->db, log, below, max, deleted, rows, nrows);
}

static int lm_log_drop(void *impl, uint64_t log)
{
    struct lmdb *e = impl;
    /* the fence: no position of this log is handed out from here on, and every frame that
     * may hold one is numbered below `upto` */
    pthread_mutex_lock(&e->wal_mu);
    struct pm_slot *p;
    int rc = last_of(e, log, &p);
    if (rc == 0)
        p->dropped = true;
    uint64_t upto = e->next_seq;
    pthread_mutex_unlock(&e->wal_mu);
    if (rc)
        return rc;
    if ((rc = flush_upto(e, upto)))
        return rc;
    bool more;
    if ((rc = db_drop(e->db, log, DROP_BATCH, &more)))
        return rc;
    return more ? STORE_BUSY : db_durable(e);
}

static int lm_log_seal(void *impl, uint64_t log)
{
    struct lmdb *e = impl;
    pthread_mutex_lock(&e->wal_mu);
    struct pm_slot *p;
    int rc = last_of(e, log, &p);
    if (rc == 0)
        p->sealed = true;
    uint64_t upto = e->next_seq;
    pthread_mutex_unlock(&e->wal_mu);
    if (rc)
        return rc;
    /* every frame that may hold an append of it is published (readable) before this returns */
    pthread_mutex_lock(&e->tail_mu);
    while (e->published < upto)
        pthread_cond_wait(&e->turn, &e->tail_mu);
    pthread_mutex_unlock(&e->tail_mu);
    if ((rc = db_seal(e->db, log)) == 0)
        rc = db_durable(e);
    return rc;
}

/* ---- metadata ---- */

static int lm_meta_cas(void *impl, struct store_row *rows, size_t n)
{
    return db_meta_cas(((struct lmdb *)impl)->db, rows, n);
}

static int lm_meta_get(void *impl, const char *key, char **val, size_t *len, uint64_t *version)
{
    return db_meta_get(((struct lmdb *)impl)->db, key, val, len, version);
}

static int lm_meta_scan(void *impl, const char *prefix, store_meta_fn fn, void *ctx)
{
    return db_meta_scan(((struct lmdb *)impl)->db, prefix, fn, ctx);
}

static void lm_stats(void *impl, struct store_stats *st)
{
    struct lmdb *e = impl;
    *st = (struct store_stats){
        .unflushed_bytes = __atomic_load_n(&e->unflushed, __ATOMIC_RELAXED),
        .wal_bytes = wal_used(e->wal),
        .syncs = __atomic_load_n(&e->syncs, __ATOMIC_RELAXED),
        .sync_ns_total = __atomic_load_n(&e->sync_ns, __ATOMIC_RELAXED),
        .checkpoints = __atomic_load_n(&e->checkpoints, __ATOMIC_RELAXED),
        .checkpoint_ns_total = __atomic_load_n(&e->checkpoint_ns, __ATOMIC_RELAXED),
        .flushes = __atomic_load_n(&e->flushes, __ATOMIC_RELAXED),
        .flush_ns_total = __atomic_load_n(&e->flush_ns, __ATOMIC_RELAXED),
        .db_free_pages = __atomic_load_n(&e->free_pages, __ATOMIC_RELAXED),
        .db_page_size = db_page_size(e->db),
        .db_bytes = db_file_bytes(e->db),
        .db_write_txns = db_write_txns(e->db),
    };
    for (int i = 0; i <= STORE_SYNC_BUCKETS; i++)
        st->sync_buckets[i] = __atomic_load_n(&e->sync_buckets[i], __ATOMIC_RELAXED);
}

/* ---- recovery, open and close ---- */

/* A replayed frame as a tail frame (recovery on a full disk): entries in runs of consecutive
 * positions of one log. Returns NULL when out of memory. */
static struct frame *frame_of(struct lmdb *e, const char *payload, size_t len, size_t n)
{
    struct frame *f = frame_new(n, n, WAL_HDR + len);
    if (!f)
        return NULL;
    f->seq = e->next_seq++;
    f->at_ms = now_ms();
    f->held = true; /* the log is started anew once these are stored: they stay in memory */
    e->tail_mem += f->len;
    memcpy(f->buf + WAL_HDR, payload, len);
    size_t off = 0, vlen;
    uint64_t log, pos;
    const char *val;
    while (wal_next_entry(f->buf + WAL_HDR, len, &off, &log, &pos, &val, &vlen) == 1) {
        struct run *u = f->nruns ? &f->runs[f->nruns - 1] : NULL;
        if (!u || u->log != log || u->first + u->n != pos) {
            u = &f->runs[f->nruns++];
            *u = (struct run){.log = log, .first = pos, .ix = format_index(val, vlen, pos), .ent = f->nents};
        }
        u->n++;
        f->ents[f->nents++] = (struct ent){(uint32_t)(val - f->buf), (uint32_t)vlen};
        f->bytes += vlen;
    }
    return f;
}

/* Recovery's first pass over a frame: every entry parses and its record checks out for the log
 * and position it is filed under (as far as that needs no key), or recovery stops before
 * anything is stored. */
static int check_frame(void *ctx, const char *payload, size_t len)
{
    (void)ctx;
    size_t off = 0, vlen;
    uint64_t log, pos;
    const char *val;
    int rc;
    while ((rc = wal_next_entry(payload, len, &off, &log, &pos, &val, &vlen)) == 1)
        if (format_check_keyless(val, vlen, log, pos, NULL)) {
            klog(KLOG_ERROR,
                 "storage: a log frame that checks out holds a malformed entry, a record sealed "
                 "for another place "
                 "(log %" PRIu64 ", position %" PRIu64 "); nothing was recovered",
                 log, pos);
            return STORE_CORRUPT;
        }
    if (rc < 0)
        klog(KLOG_ERROR, "storage: a log frame that checks out holds malformed entries; nothing was "
                         "recovered");
    return rc < 0 ? rc : 0;
}

/* One replayed frame: its records go to LMDB as they are (skipping what it holds already).
 * If LMDB cannot take them (a full disk), this and every later frame stay in the tail, to be
 * stored by the flusher once there is room; writes wait for that (see `recovering`). */
static int replay_frame(void *ctx, const char *payload, size_t len)
{
    struct lmdb *e = ctx;
    size_t off = 0, n = 0, vlen;
    uint64_t log, pos;
    const char *val;
    int rc;
    while ((rc = wal_next_entry(payload, len, &off, &log, &pos, &val, &vlen)) == 1)
        n++;
    if (rc < 0) /* check_frame saw it first */
        return rc;
    if (!n)
        return 0;
    if (!e->recovering) {
        struct db_rec *r = malloc(n * sizeof *r);
        if (!r)
            return STORE_NOMEM;
        off = 0;
        for (size_t i = 0; i < n; i++) {
            wal_next_entry(payload, len, &off, &log, &pos, &val, &vlen);
            r[i] = (struct db_rec){log, pos, val, vlen};
        }
        rc = db_append(e->db, r, n, true);
        free(r);
        /* LMDB reports a short write on a full disk as an I/O error: either is retried */
        if (rc != STORE_FULL && rc != STORE_IO)
            return rc;
        klog(KLOG_ERROR,
             "storage: cannot store the log's records (%s); serving them from memory, "
             "writes refused until they are stored",
             store_strerror(rc));
        e->recovering = true;
    }
    struct frame *f = frame_of(e, payload, len, n);
    if (!f)
        return STORE_NOMEM;
    if (e->t_last)
        e->t_last->next = f;
    else
        e->t_head = f;
    e->t_last = f;
    e->published = e->next_seq;
    e->unflushed += f->bytes;
    return 0;
}

static void stop_threads(struct lmdb *e, int committers, bool flusher)
{
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->work);
    pthread_mutex_unlock(&e->mu);
    while (committers)
        pthread_join(e->committer[--committers], NULL);
    if (!flusher)
        return;
    pthread_mutex_lock(&e->tail_mu);
    e->flusher_stop = true;
    pthread_cond_signal(&e->tail_cv);
    pthread_mutex_unlock(&e->tail_mu);
    pthread_join(e->flusher, NULL);
}

static void destroy(struct lmdb *e)
{
    wal_close(e->wal);
    db_close(e->db);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    pthread_mutex_destroy(&e->wal_mu);
    pthread_mutex_destroy(&e->flush_mu);
    pthread_rwlock_destroy(&e->tail_rw);
    pthread_mutex_destroy(&e->tail_mu);
    pthread_cond_destroy(&e->tail_cv);
    pthread_cond_destroy(&e->turn);
    watchlist_destroy(&e->watches); /* their owners cancel them; forget any left */
    free(e->last.v);
    close(e->lock_fd); /* lets the directory go */
    free(e);
}

/* One process at a time per data directory: a second one would write the same log. */
static int lock_dir(const char *dir, int *fd)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) {
        klog(KLOG_ERROR, "%s: %s", path, strerror(errno));
        return STORE_IO;
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    klog(KLOG_ERROR, "%s is in use by another process", dir);
    close(*fd);
    *fd = -1;
    return STORE_BUSY;
}

static int lm_open(const struct store_config *cfg, struct store *owner, void **impl)
{
    (void)owner; /* rows change only through this process: store.c reports them */
    int lock_fd;
    int rc = lock_dir(cfg->dir, &lock_fd);
    if (rc)
        return rc;
    struct lmdb *e = calloc(1, sizeof *e);
    if (!e) {
        close(lock_fd);
        return STORE_NOMEM;
    }
    e->lock_fd = lock_fd;
    if ((size_t)snprintf(e->dir, sizeof e->dir, "%s", cfg->dir) >= sizeof e->dir) {
        close(lock_fd);
        free(e);
        return STORE_INVALID;
    }
    e->io = cfg->io;
    e->kr = cfg->keyring;
    e->sync = cfg->sync;
    e->max_unflushed = cfg->max_unflushed ? cfg->max_unflushed : DEFAULT_UNFLUSHED;
    e->retiring = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_mutex_init(&e->wal_mu, NULL);
    pthread_mutex_init(&e->flush_mu, NULL);
    pthread_rwlockattr_t ra; /* readers overlap all the time; the flusher must still get in */
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&e->tail_rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&e->tail_mu, NULL);
    pthread_cond_init(&e->tail_cv, NULL);
    pthread_cond_init(&e->turn, NULL);
    watchlist_init(&e->watches);
    rc = db_open(cfg->dir, cfg->sync, cfg->initial_map, &e->db);
    if (rc == 0)
        rc = wal_open(cfg->dir, cfg->sync, cfg->io, &e->wal);
    if (rc == 0)
        rc = wal_replay(e->wal, check_frame, e); /* a bad log modifies nothing */
    if (rc == 0)
        rc = wal_replay(e->wal, replay_frame, e);
    if (rc == 0)
        rc = db_durable(e);
    if (rc == 0 && !e->recovering) /* else the flusher restarts it once the tail is stored */
        rc = wal_restart(e->wal);
    bool flusher = rc == 0 && pthread_create(&e->flusher, NULL, flush_loop, e) == 0;
    int started = 0;
    while (flusher && started < COMMITTERS &&
           pthread_create(&e->committer[started], NULL, commit_loop, e) == 0)
        started++;
    if (started < COMMITTERS) {
        stop_threads(e, started, flusher);
        destroy(e);
        return rc ? rc : STORE_NOMEM;
    }
    *impl = e;
    return 0;
}

static void lm_close(void *impl)
{
    struct lmdb *e = impl;
    if (!e)
        return;
    stop_threads(e, COMMITTERS, true);
    /* store what the tail holds and make LMDB durable; on failure the log keeps it */
    if (flush(e) == 0 && db_durable(e) == 0 && !wal_broken(e->wal) &&
        !__atomic_load_n(&e->failed, __ATOMIC_ACQUIRE))
        wal_restart(e->wal); /* everything is in LMDB (a recovery's tail too, now) */
    for (struct frame *f = e->t_head, *next; f; f = next) {
        next = f->next;
        frame_free(e, f);
    }
    destroy(e);
}

const struct store_engine store_engine_lmdb = {
    .name = "lmdb",
    .open = lm_open,
    .close = lm_close,
    .append = lm_append,
    .scan = lm_scan,
    .log_bounds = lm_log_bounds,
    .watch = lm_watch,
    .unwatch = lm_unwatch,
    .trim = lm_trim,
    .log_drop = lm_log_drop,
    .log_seal = lm_log_seal,
    .meta_cas = lm_meta_cas,
    .meta_get = lm_meta_get,
    .meta_scan = lm_meta_scan,
    .stats = lm_stats,
};
