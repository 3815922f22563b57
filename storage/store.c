/* store.c: the storage front: record sealing, group commit, a write-ahead log, and dispatch
 * to the backend.
 *
 * Group commit. An append seals its records in the caller's thread and queues one job. A
 * committer thread takes every queued job at once (up to a byte budget), assigns positions,
 * writes them all as one frame of the write-ahead log (wal.h), syncs it, and reports each job
 * through its callback. While a frame syncs, new jobs queue up for the next one, so the batch
 * size follows load by itself. There are two committers: while one syncs its frame, the other
 * writes and syncs the next, because two syncs in flight finish sooner than two in a row. A
 * sync covers every frame written before it, so no frame is durable before an earlier one;
 * frames are linked into the tail and reported in the order they were written. Callers do
 * not wait: store_append_async returns at once and the callback runs on a committer thread,
 * so a server can park a request instead of a thread (store_append is the same with a wait).
 *
 * The tail. A committed job stays in memory, in commit order (the tail), until a flusher
 * thread has written it to the backend: every FLUSH_MS, or sooner past FLUSH_BYTES, in one
 * backend transaction. Reads see the backend's snapshot and then the tail, so a record is
 * readable from the moment it is acknowledged. The backend syncs its own commits (LMDB: data
 * pages at commit, meta page at the next sync), but no acknowledgement waits for that.
 *
 * Checkpoint. Once the log holds WAL_RESET bytes, the committers are paused, the tail flushed,
 * the backend synced, and the log reset; a log drop does the same, so no frame of a dropped
 * log can be replayed into it. After a crash, store_open replays the log: entries past the
 * backend's last position of their log go back into the tail, and are flushed as usual.
 *
 * Locks, always taken in this order: wal_mu (positions and the frame write; a checkpoint),
 * flush_mu (one flush at a time), tail_rw (held for reading by a reader across its backend
 * snapshot and its walk of the tail; for writing only to remove flushed jobs), tail_mu (the
 * tail's links, counters and turns, held briefly). mu guards the queue.
 *
 * Invariant: a job's callback runs exactly once, after its records are durable (or with the
 * error that stopped them), with its positions filled in; positions are handed out only under
 * wal_mu, from `last`, so none is handed out twice. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "backend.h"
#include "format.h"
#include "wal.h"

#define BATCH_BYTES (64u << 20)    /* data budget for one commit */
#define RELEASE_BYTES (512u << 10) /* release resident pages after this much data was touched */
#define FLUSH_MS 50                /* the tail is flushed to the backend this often */
#define FLUSH_BYTES (1u << 20)     /* or as soon as it holds this much */
#define FLUSH_RETRY_MS 500         /* after a failed flush, wait this long before the next */
#define WAL_RESET (32ull << 20)    /* checkpoint and reset the log once it holds this much */
#define FRAME_KEEP (8u << 20)      /* a frame buffer larger than this is not kept */
#define COMMITTERS 2               /* frames in flight: two syncs overlap on a disk */

struct job {
    struct backend_append *a; /* nb appends, in mem; a[i].floor becomes its first position */
    size_t nb;
    size_t bytes;
    struct store_batch *batches; /* the caller's, to fill positions into; not used after */
    size_t nbatches;
    uint64_t *pos; /* in mem */
    store_done_fn done;
    void *arg;
    char *mem; /* owned (job_alloc): sealed values and the arrays above */
    size_t mem_len;
    int64_t at_ms; /* when it joined the tail */
    struct job *next;
};

/* log id -> last position handed out: open addressing, linear probing. */
struct posmap {
    struct pm_slot {
        uint64_t key, val;
        uint64_t run; /* the log run that last named this log, 0 for none */
        bool used;
    } * v;
    size_t cap, n;
};

struct store {
    const struct store_backend *be;
    void *impl;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* the committers: jobs queued, or closing */
    struct job *head, *tail; /* queued jobs, guarded by mu */
    int closing;
    pthread_t committer[COMMITTERS];
    bool sync;        /* durable acknowledgements */
    uint64_t touched; /* bytes read or written since the last release (atomic) */

    struct wal *wal;
    pthread_mutex_t wal_mu;
    struct posmap last; /* under wal_mu */
    uint64_t run;       /* counts log runs (resets), under wal_mu */
    char *frame;        /* the frame being built, under wal_mu */
    size_t frame_cap;
    uint64_t next_seq; /* frames are numbered as written, under wal_mu */

    pthread_mutex_t flush_mu;
    pthread_rwlock_t tail_rw;
    pthread_mutex_t tail_mu;
    pthread_cond_t tail_cv;       /* the flusher: jobs became flushable, or stopping */
    struct job *t_head, *t_last;  /* the tail, oldest first */
    struct job *t_done;           /* the newest job whose callback ran: flushable up to it */
    size_t t_bytes;               /* data in the tail */
    pthread_cond_t turn;          /* frames in flight take turns in number order */
    uint64_t published, reported; /* frames linked into the tail / reported, in order */
    int inflight;                 /* frames written but not yet reported */
    bool flusher_stop;
    pthread_t flusher;
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Job memory. A job lives in the tail for up to FLUSH_MS, much longer than the request
 * memory around it, so large jobs (PutRecords) are mapped on their own instead of coming from
 * the heap, where freeing them would leave holes the process keeps resident. */
#define JOB_MMAP (64u << 10)

static char *job_alloc(size_t n)
{
    if (n < JOB_MMAP)
        return malloc(n);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void job_free(char *p, size_t n)
{
    if (n < JOB_MMAP)
        free(p);
    else if (p)
        munmap(p, n);
}

/* A new job: `bytes` of room for sealed values at j->mem, then the job and, in the same
 * allocation, room for nb appends and the value, length and position arrays of nrec records. */
static struct job *job_new(size_t bytes, size_t nb, size_t nrec, const char ***vals, size_t **lens)
{
    size_t joff = (bytes + 15) & ~(size_t)15;
    size_t len = joff + sizeof(struct job) + nb * sizeof(struct backend_append) +
                 nrec * (sizeof(char *) + sizeof(size_t) + sizeof(uint64_t));
    char *mem = job_alloc(len);
    if (!mem)
        return NULL;
    struct job *j = (struct job *)(mem + joff);
    *j = (struct job){.mem = mem, .mem_len = len};
    j->a = (struct backend_append *)(j + 1);
    *vals = (const char **)(j->a + nb);
    *lens = (size_t *)(*vals + nrec);
    j->pos = (uint64_t *)(*lens + nrec);
    return j;
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

static int pm_put(struct posmap *m, uint64_t key, uint64_t val, uint64_t run)
{
    struct pm_slot *e = pm_find(m, key);
    if (e) {
        e->val = val;
        e->run = run;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap) {
        struct posmap g = {calloc(m->cap ? m->cap * 2 : 64, sizeof *g.v), m->cap ? m->cap * 2 : 64, 0};
        if (!g.v)
            return STORE_NOMEM;
        for (size_t i = 0; i < m->cap; i++)
            if (m->v[i].used)
                pm_put(&g, m->v[i].key, m->v[i].val, m->v[i].run);
        free(m->v);
        *m = g;
    }
    size_t i = pm_slot(m, key);
    while (m->v[i].used)
        i = (i + 1) & (m->cap - 1);
    m->v[i] = (struct pm_slot){key, val, run, true};
    m->n++;
    return 0;
}

/* Remove key: re-insert the rest of its probe run (rare: log drops only). */
static void pm_del(struct posmap *m, uint64_t key)
{
    struct pm_slot *e = pm_find(m, key);
    if (!e)
        return;
    e->used = false;
    m->n--;
    for (size_t i = ((size_t)(e - m->v) + 1) & (m->cap - 1); m->v[i].used; i = (i + 1) & (m->cap - 1)) {
        struct pm_slot s = m->v[i];
        m->v[i].used = false;
        m->n--;
        pm_put(m, s.key, s.val, s.run);
    }
}

/* Count bytes that went through the backend's cache; past RELEASE_BYTES, whoever crosses the
 * mark releases the resident pages, so RSS stays bounded however fast data streams through. */
static void touch(struct store *s, uint64_t bytes)
{
    uint64_t t = __atomic_add_fetch(&s->touched, bytes, __ATOMIC_RELAXED);
    if (t >= RELEASE_BYTES &&
        __atomic_compare_exchange_n(&s->touched, &t, 0, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        store_release_cache(s);
}

static void free_jobs(struct job *j)
{
    while (j) {
        struct job *next = j->next;
        job_free(j->mem, j->mem_len);
        j = next;
    }
}

/* Report every job from first to last (inclusive). Failed jobs are freed; committed ones
 * belong to the tail. */
static void complete(struct job *first, struct job *last, int rc)
{
    for (struct job *j = first, *next; j; j = next) {
        next = j == last ? NULL : j->next;
        if (rc == 0) {
            size_t k = 0;
            for (size_t b = 0; b < j->nbatches; b++)
                for (size_t i = 0; i < j->batches[b].n; i++)
                    j->batches[b].recs[i].pos = j->pos[k++];
        }
        j->done(j->arg, rc);
        if (rc)
            job_free(j->mem, j->mem_len);
    }
}

/* ---- the tail ---- */

/* Link a chain of jobs (first..last, last->next NULL) at the end of the tail (tail_mu held). */
static void tail_link(struct store *s, struct job *first, struct job *last)
{
    int64_t t = now_ms();
    for (struct job *j = first; j; j = j->next) {
        j->at_ms = t;
        s->t_bytes += j->bytes;
    }
    if (s->t_last)
        s->t_last->next = first;
    else
        s->t_head = first;
    s->t_last = last;
}

/* The tail as it is now, for a reader holding tail_rw: jobs from *first to *last are linked
 * and stay until the reader lets go of tail_rw. */
static void tail_view(struct store *s, struct job **first, struct job **last)
{
    pthread_mutex_lock(&s->tail_mu);
    *first = s->t_head;
    *last = s->t_last;
    pthread_mutex_unlock(&s->tail_mu);
}

/* Write the flushable part of the tail to the backend in one transaction and drop it from the
 * tail. Returns 0 or the backend's error (the tail is then kept, to be flushed later). */
static int flush(struct store *s)
{
    pthread_mutex_lock(&s->flush_mu);
    pthread_mutex_lock(&s->tail_mu);
    struct job *first = s->t_done ? s->t_head : NULL, *last = s->t_done;
    pthread_mutex_unlock(&s->tail_mu);
    int rc = 0;
    if (first) {
        size_t na = 0, bytes = 0, nrec = 0;
        for (struct job *j = first;; j = j->next) {
            na += j->nb;
            bytes += j->bytes;
            for (size_t b = 0; b < j->nb; b++)
                nrec += j->a[b].n;
            if (j == last)
                break;
        }
        /* the backend reports positions into an array of its own: readers may be reading the
         * jobs' */
        struct backend_append *batch = malloc(na * sizeof *batch + nrec * sizeof(uint64_t));
        if (!batch) {
            pthread_mutex_unlock(&s->flush_mu);
            return STORE_NOMEM;
        }
        uint64_t *pos = (uint64_t *)(batch + na);
        size_t k = 0;
        for (struct job *j = first;; j = j->next) {
            for (size_t b = 0; b < j->nb; b++) {
                batch[k] = j->a[b]; /* floor is the first position handed out */
                batch[k++].pos = pos;
                pos += j->a[b].n;
            }
            if (j == last)
                break;
        }
        rc = s->be->append_batch(s->impl, batch, na);
        for (size_t i = 0; rc == 0 && i < na; i++)
            if (batch[i].pos[0] != batch[i].floor) /* cannot happen: positions come from `last` */
                fprintf(stderr, "kinesd: storage: log %llu stored at %llu, not %llu\n",
                        (unsigned long long)batch[i].log, (unsigned long long)batch[i].pos[0],
                        (unsigned long long)batch[i].floor);
        free(batch);
        if (rc == 0) {
            pthread_rwlock_wrlock(&s->tail_rw);
            pthread_mutex_lock(&s->tail_mu);
            s->t_head = last->next;
            if (!s->t_head)
                s->t_last = NULL;
            if (s->t_done == last)
                s->t_done = NULL;
            s->t_bytes -= bytes;
            pthread_mutex_unlock(&s->tail_mu);
            pthread_rwlock_unlock(&s->tail_rw);
            last->next = NULL;
            free_jobs(first);
            touch(s, bytes);
        }
    }
    pthread_mutex_unlock(&s->flush_mu);
    return rc;
}

/* Flush every job in the tail now, once those still being reported are done. */
static int flush_published(struct store *s)
{
    pthread_mutex_lock(&s->tail_mu);
    uint64_t want = s->published;
    while (s->reported < want)
        pthread_cond_wait(&s->turn, &s->tail_mu);
    pthread_mutex_unlock(&s->tail_mu);
    return flush(s);
}

/* Flush everything, make the backend durable, and start a new log run. wal_mu held: no frame
 * can be written; the ones in flight are waited for, so the whole tail is flushable. */
static int checkpoint_locked(struct store *s)
{
    pthread_mutex_lock(&s->tail_mu);
    while (s->inflight)
        pthread_cond_wait(&s->turn, &s->tail_mu);
    pthread_mutex_unlock(&s->tail_mu);
    int rc = flush(s);
    if (rc == 0)
        rc = s->be->sync(s->impl);
    if (rc == 0)
        rc = wal_reset(s->wal, 2 * WAL_RESET);
    if (rc == 0)
        s->run++;
    return rc;
}

/* Return free heap pages to the system. Jobs outlive the requests that made them, so a burst
 * of writes leaves the heap holed; once the tail is empty the holes are only resident. */
static void give_back_heap(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void *flush_loop(void *arg)
{
    struct store *s = arg;
    int64_t trimmed = 0, retry_at = 0;
    pthread_mutex_lock(&s->tail_mu);
    for (;;) {
        while (!s->t_done && !s->flusher_stop)
            pthread_cond_wait(&s->tail_cv, &s->tail_mu);
        if (s->flusher_stop)
            break;
        /* let the tail gather: FLUSH_MS after its oldest job, sooner when it is large; after
         * a failed flush (a full disk, say), not before retry_at whatever the tail holds */
        int64_t due = s->t_head->at_ms + FLUSH_MS, t;
        if (due < retry_at)
            due = retry_at;
        while (!s->flusher_stop && (s->t_bytes < FLUSH_BYTES || retry_at) && (t = now_ms()) < due) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (due - t) * 1000000;
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&s->tail_cv, &s->tail_mu, &ts);
        }
        pthread_mutex_unlock(&s->tail_mu);
        int rc = flush(s);
        if (rc == 0) {
            pthread_mutex_lock(&s->wal_mu);
            if (wal_used(s->wal) >= WAL_RESET)
                rc = checkpoint_locked(s);
            pthread_mutex_unlock(&s->wal_mu);
        }
        retry_at = rc ? now_ms() + FLUSH_RETRY_MS : 0;
        pthread_mutex_lock(&s->tail_mu);
        if (!s->t_head && now_ms() - trimmed >= 1000) { /* idle: hand the heap's holes back */
            trimmed = now_ms();
            pthread_mutex_unlock(&s->tail_mu);
            give_back_heap();
            pthread_mutex_lock(&s->tail_mu);
        }
    }
    pthread_mutex_unlock(&s->tail_mu);
    return NULL;
}

/* ---- committing ---- */

/* The last position handed out in log (wal_mu held). */
static int last_pos(struct store *s, uint64_t log, uint64_t *last)
{
    struct pm_slot *e = pm_find(&s->last, log);
    if (e) {
        *last = e->val;
        return 0;
    }
    int rc = s->be->log_bounds(s->impl, log, last, NULL);
    return rc ? rc : pm_put(&s->last, log, *last, 0);
}

/* Hand out positions to a chain of jobs and write them as one frame (wal_mu held). On
 * success the frame is in flight with number *seq. */
static int write_chain(struct store *s, struct job *first, uint64_t *seq)
{
    size_t size = WAL_HDR;
    for (struct job *j = first; j; j = j->next) {
        size += j->bytes;
        for (size_t b = 0; b < j->nb; b++)
            size += WAL_ENTRY * j->a[b].n;
    }
    if (size > s->frame_cap) {
        char *f = malloc(size);
        if (!f)
            return STORE_NOMEM;
        free(s->frame);
        s->frame = f;
        s->frame_cap = size;
    }
    size_t off = WAL_HDR;
    for (struct job *j = first; j; j = j->next) {
        for (size_t b = 0; b < j->nb; b++) {
            struct backend_append *a = &j->a[b];
            uint64_t last_p;
            int rc = last_pos(s, a->log, &last_p);
            if (rc)
                return rc;
            uint64_t pos = last_p + 1 > a->floor ? last_p + 1 : a->floor;
            a->floor = pos;
            for (size_t i = 0; i < a->n; i++, pos++) {
                a->pos[i] = pos;
                off += wal_put_entry(s->frame + off, a->log, pos, a->vals[i], a->lens[i]);
            }
            if ((rc = pm_put(&s->last, a->log, pos - 1, s->run)))
                return rc;
        }
    }
    int rc = wal_write(s->wal, s->frame, off);
    if (s->frame_cap > FRAME_KEEP) { /* do not keep a huge frame buffer around */
        free(s->frame);
        s->frame = NULL;
        s->frame_cap = 0;
    }
    if (rc == 0) {
        *seq = s->next_seq++;
        pthread_mutex_lock(&s->tail_mu);
        s->inflight++;
        pthread_mutex_unlock(&s->tail_mu);
    }
    return rc;
}

/* Wait for frame seq's turn at *turn (tail_mu held). */
static void await_turn(struct store *s, const uint64_t *turn, uint64_t seq)
{
    while (*turn != seq)
        pthread_cond_wait(&s->turn, &s->tail_mu);
}

/* A committer: take the queued jobs, write them as one frame, sync it (while another
 * committer may be writing or syncing the next frame), then, in frame order, publish the
 * jobs to the tail, report them, and make them flushable. */
static void *commit_loop(void *arg)
{
    struct store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->closing)
            pthread_cond_wait(&s->work, &s->mu);
        if (!s->head)
            break;
        struct job *first = s->head, *j = first, *last = NULL;
        size_t bytes = 0;
        while (j && (!last || bytes + j->bytes <= BATCH_BYTES)) {
            bytes += j->bytes;
            last = j;
            j = j->next;
        }
        s->head = j;
        if (!j)
            s->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        uint64_t seq = 0;
        pthread_mutex_lock(&s->wal_mu);
        int rc = write_chain(s, first, &seq);
        pthread_mutex_unlock(&s->wal_mu);
        if (rc) {
            complete(first, last, rc);
        } else {
            rc = wal_sync(s->wal); /* covers every frame written before it, so earlier ones too */
            pthread_mutex_lock(&s->tail_mu);
            await_turn(s, &s->published, seq);
            if (rc == 0)
                tail_link(s, first, last);
            s->published++;
            pthread_cond_broadcast(&s->turn);
            pthread_mutex_unlock(&s->tail_mu);
            complete(first, last, rc);
            pthread_mutex_lock(&s->tail_mu);
            await_turn(s, &s->reported, seq);
            if (rc == 0) {
                if (!s->t_done || s->t_bytes >= FLUSH_BYTES) /* else the flusher has a timer */
                    pthread_cond_signal(&s->tail_cv);
                s->t_done = last;
            }
            s->reported++;
            s->inflight--;
            pthread_cond_broadcast(&s->turn);
            pthread_mutex_unlock(&s->tail_mu);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- recovery ---- */

struct replay {
    struct store *s;
    struct posmap stored; /* log -> the backend's last position */
};

/* One frame of the log: its entries past the backend's last position become a job of the
 * tail, in appends of consecutive positions of one log. */
static int replay_frame(void *ctx, const char *payload, size_t len)
{
    struct replay *r = ctx;
    struct store *s = r->s;
    size_t off = 0, n = 0, bytes = 0;
    uint64_t log, pos;
    const char *val;
    size_t vlen;
    int rc;
    while ((rc = wal_next_entry(payload, len, &off, &log, &pos, &val, &vlen)) == 1) {
        n++;
        bytes += vlen;
    }
    if (rc < 0 || n == 0)
        return rc;
    const char **vals;
    size_t *lens;
    struct job *j = job_new(bytes, n, n, &vals, &lens);
    if (!j)
        return STORE_NOMEM;
    size_t k = 0, voff = 0;
    off = 0;
    while (wal_next_entry(payload, len, &off, &log, &pos, &val, &vlen) == 1) {
        struct pm_slot *e = pm_find(&r->stored, log);
        if (!e) {
            uint64_t stored;
            if ((rc = s->be->log_bounds(s->impl, log, &stored, NULL)) ||
                (rc = pm_put(&r->stored, log, stored, 0)))
                goto fail;
            e = pm_find(&r->stored, log);
        }
        if (pos <= e->val)
            continue; /* in the backend already */
        struct backend_append *a = j->nb ? &j->a[j->nb - 1] : NULL;
        if (!a || a->log != log || a->pos[a->n - 1] + 1 != pos) {
            a = &j->a[j->nb++];
            *a = (struct backend_append){
                .log = log, .floor = pos, .vals = vals + k, .lens = lens + k, .pos = j->pos + k};
        }
        memcpy(j->mem + voff, val, vlen);
        vals[k] = j->mem + voff;
        lens[k] = vlen;
        j->pos[k] = pos;
        voff += vlen;
        j->bytes += vlen;
        k++;
        a->n++;
        struct pm_slot *l = pm_find(&s->last, log);
        if ((rc = pm_put(&s->last, log, l && l->val > pos ? l->val : pos, s->run)))
            goto fail;
    }
    if (j->nb == 0) {
        job_free(j->mem, j->mem_len);
        return 0;
    }
    pthread_mutex_lock(&s->tail_mu);
    tail_link(s, j, j);
    s->t_done = j;
    pthread_mutex_unlock(&s->tail_mu);
    return 0;
fail:
    job_free(j->mem, j->mem_len);
    return rc;
}

/* ---- open and close ---- */

/* Stop the first n committers (jobs still queued are committed first), then the flusher. */
static void stop_threads(struct store *s, int n, bool flusher)
{
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    while (n)
        pthread_join(s->committer[--n], NULL);
    if (!flusher)
        return;
    pthread_mutex_lock(&s->tail_mu);
    s->flusher_stop = true;
    pthread_cond_signal(&s->tail_cv);
    pthread_mutex_unlock(&s->tail_mu);
    pthread_join(s->flusher, NULL);
}

int store_open(const struct store_config *cfg, struct store **out)
{
    if (!cfg || !cfg->dir)
        return STORE_INVAL;
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return STORE_NOMEM;
    s->be = &store_backend_lmdb;
    int rc = s->be->open(cfg, &s->impl);
    if (rc) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_mutex_init(&s->wal_mu, NULL);
    pthread_mutex_init(&s->flush_mu, NULL);
    pthread_rwlockattr_t ra; /* readers overlap all the time; the flusher must still get in */
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->tail_rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->tail_mu, NULL);
    pthread_cond_init(&s->tail_cv, NULL);
    pthread_cond_init(&s->turn, NULL);
    s->sync = cfg->sync;
    s->run = 1;
    struct replay r = {.s = s};
    rc = wal_open(cfg->dir, cfg->sync, &s->wal);
    if (rc == 0)
        rc = wal_replay(s->wal, replay_frame, &r);
    free(r.stored.v);
    bool flusher = rc == 0 && pthread_create(&s->flusher, NULL, flush_loop, s) == 0;
    int started = 0;
    while (flusher && started < COMMITTERS &&
           pthread_create(&s->committer[started], NULL, commit_loop, s) == 0)
        started++;
    if (started < COMMITTERS) {
        stop_threads(s, started, flusher);
        free_jobs(s->t_head);
        free(s->last.v);
        wal_close(s->wal);
        s->be->close(s->impl);
        free(s);
        return rc ? rc : STORE_NOMEM;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    stop_threads(s, COMMITTERS, true);
    pthread_mutex_lock(&s->wal_mu);
    checkpoint_locked(s); /* on failure the log keeps the tail for the next open */
    pthread_mutex_unlock(&s->wal_mu);
    free_jobs(s->t_head);
    wal_close(s->wal);
    s->be->close(s->impl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->wal_mu);
    pthread_mutex_destroy(&s->flush_mu);
    pthread_rwlock_destroy(&s->tail_rw);
    pthread_mutex_destroy(&s->tail_mu);
    pthread_cond_destroy(&s->tail_cv);
    pthread_cond_destroy(&s->turn);
    free(s->last.v);
    free(s->frame);
    free(s);
}

const char *store_backend_name(const struct store *s) { return s->be->name; }

static void seal(char *o, const struct store_rec *r)
{
    struct format_hdr h = {0};
    h.version = FORMAT_VERSION;
    h.pk_len[0] = (uint8_t)r->pk_len;
    h.pk_len[1] = (uint8_t)(r->pk_len >> 8);
    memcpy(o, &h, FORMAT_HDR);
    memcpy(o + FORMAT_HDR, r->pk, r->pk_len);
    if (r->data_len)
        memcpy(o + FORMAT_HDR + r->pk_len, r->data, r->data_len);
}

int store_append_async(struct store *s, struct store_batch *batches, size_t nbatches, store_done_fn done,
                       void *arg)
{
    size_t total = 0, nrec = 0;
    for (size_t b = 0; b < nbatches; b++) {
        for (size_t i = 0; i < batches[b].n; i++) {
            const struct store_rec *r = &batches[b].recs[i];
            if (r->pk_len > 0xFFFF)
                return STORE_INVAL;
            total += FORMAT_HDR + r->pk_len + r->data_len;
        }
        nrec += batches[b].n;
    }
    if (nrec == 0)
        return STORE_INVAL;
    const char **vals;
    size_t *lens;
    struct job *j = job_new(total, nbatches, nrec, &vals, &lens);
    if (!j)
        return STORE_NOMEM;
    size_t k = 0, voff = 0;
    for (size_t b = 0; b < nbatches; b++) {
        j->a[b] = (struct backend_append){.log = batches[b].log,
                                          .floor = batches[b].floor,
                                          .n = batches[b].n,
                                          .vals = vals + k,
                                          .lens = lens + k,
                                          .pos = j->pos + k};
        for (size_t i = 0; i < batches[b].n; i++, k++) {
            const struct store_rec *r = &batches[b].recs[i];
            seal(j->mem + voff, r);
            vals[k] = j->mem + voff;
            lens[k] = FORMAT_HDR + r->pk_len + r->data_len;
            voff += lens[k];
        }
    }
    j->nb = nbatches;
    j->bytes = total;
    j->batches = batches;
    j->nbatches = nbatches;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->mu);
        job_free(j->mem, j->mem_len);
        return STORE_CLOSED;
    }
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc;
};

static void wake(void *arg, int rc)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->done = 1;
    pthread_cond_signal(&w->cv); /* under the lock: the waiter cannot leave before we are done */
    pthread_mutex_unlock(&w->mu);
}

int store_append(struct store *s, struct store_batch *batches, size_t nbatches)
{
    size_t nrec = 0;
    for (size_t b = 0; b < nbatches; b++)
        nrec += batches[b].n;
    if (nrec == 0)
        return 0;
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    int rc = store_append_async(s, batches, nbatches, wake, &w);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.rc;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

/* ---- reading ---- */

struct scan_ctx {
    struct store *s;
    store_scan_fn fn;
    void *ctx;
    uint64_t bytes; /* read from the backend, not yet counted by touch */
    size_t n, data; /* records and value bytes visited */
    bool stopped;   /* fn said stop */
};

static int visit(struct scan_ctx *sc, uint64_t pos, const char *val, size_t len)
{
    if (len < FORMAT_HDR)
        return STORE_CORRUPT;
    struct format_hdr h;
    memcpy(&h, val, FORMAT_HDR);
    size_t pk_len = (size_t)h.pk_len[0] | (size_t)h.pk_len[1] << 8;
    if (h.version != FORMAT_VERSION || (h.flags & FORMAT_F_SEALED) || pk_len > len - FORMAT_HDR)
        return STORE_CORRUPT;
    sc->n++;
    sc->data += len;
    struct store_view v = {
        .pos = pos,
        .pk = val + FORMAT_HDR,
        .pk_len = pk_len,
        .data = val + FORMAT_HDR + pk_len,
        .data_len = len - FORMAT_HDR - pk_len,
    };
    int r = sc->fn(sc->ctx, &v);
    if (r)
        sc->stopped = true;
    return r;
}

static int visit_stored(void *ctx, uint64_t pos, const char *val, size_t len)
{
    struct scan_ctx *sc = ctx;
    sc->bytes += len;
    if (sc->bytes >= RELEASE_BYTES) { /* a long scan releases as it goes */
        touch(sc->s, sc->bytes);
        sc->bytes = 0;
    }
    return visit(sc, pos, val, len);
}

/* The first and last position of log in the tail from first to last (0 if none). */
static void tail_bounds(struct job *first, struct job *last, uint64_t log, uint64_t *lo, uint64_t *hi)
{
    *lo = *hi = 0;
    for (struct job *j = first; j; j = j == last ? NULL : j->next)
        for (size_t b = 0; b < j->nb; b++)
            if (j->a[b].log == log) {
                if (!*lo)
                    *lo = j->a[b].pos[0];
                *hi = j->a[b].pos[j->a[b].n - 1];
            }
}

int store_scan(struct store *s, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes, store_scan_fn fn,
               void *ctx, uint64_t *last)
{
    struct scan_ctx sc = {.s = s, .fn = fn, .ctx = ctx};
    struct job *first, *tl;
    uint64_t stored = 0;
    pthread_rwlock_rdlock(&s->tail_rw);
    tail_view(s, &first, &tl);
    int rc = s->be->scan(s->impl, log, from, max_n, max_bytes, visit_stored, &sc, &stored);
    /* then the tail, in one walk: records past what the backend's snapshot holds, as long as
     * fn and the limits allow, and the log's newest position */
    uint64_t newest = stored;
    for (struct job *j = first; j && rc == 0; j = j == tl ? NULL : j->next)
        for (size_t b = 0; b < j->nb && rc == 0; b++) {
            const struct backend_append *a = &j->a[b];
            if (a->log != log)
                continue;
            if (a->pos[a->n - 1] > newest)
                newest = a->pos[a->n - 1];
            for (size_t i = 0; i < a->n && rc == 0 && !sc.stopped; i++) {
                if (a->pos[i] < from || a->pos[i] <= stored)
                    continue;
                if (sc.n >= max_n || sc.data >= max_bytes) {
                    sc.stopped = true;
                    break;
                }
                int r = visit(&sc, a->pos[i], a->vals[i], a->lens[i]);
                rc = r < 0 ? r : 0;
            }
        }
    if (last && rc == 0)
        *last = newest;
    pthread_rwlock_unlock(&s->tail_rw);
    touch(s, sc.bytes);
    return rc;
}

int store_log_bounds(struct store *s, uint64_t log, uint64_t *last, uint64_t *first)
{
    struct job *tf, *tl;
    uint64_t l = 0, f = 0, lo, hi;
    pthread_rwlock_rdlock(&s->tail_rw);
    tail_view(s, &tf, &tl);
    int rc = s->be->log_bounds(s->impl, log, &l, &f);
    tail_bounds(tf, tl, log, &lo, &hi);
    pthread_rwlock_unlock(&s->tail_rw);
    if (last)
        *last = hi > l ? hi : l;
    if (first)
        *first = f ? f : lo;
    return rc;
}

/* ---- trimming and dropping ---- */

int store_trim(struct store *s, uint64_t log, uint64_t below, size_t max, size_t *deleted)
{
    struct job *tf, *tl;
    uint64_t lo, hi;
    pthread_rwlock_rdlock(&s->tail_rw);
    tail_view(s, &tf, &tl);
    tail_bounds(tf, tl, log, &lo, &hi);
    pthread_rwlock_unlock(&s->tail_rw);
    size_t d = 0;
    int rc = lo && lo < below ? flush_published(s) : 0; /* records to trim are in the tail */
    if (rc == 0)
        rc = s->be->trim(s->impl, log, below, max, &d);
    if (deleted)
        *deleted = d;
    return rc;
}

int store_log_drop(struct store *s, uint64_t log)
{
    pthread_mutex_lock(&s->wal_mu);
    struct pm_slot *e = pm_find(&s->last, log);
    /* a frame of the current run that names this log must not be replayed into it later */
    int rc = e && e->run == s->run ? checkpoint_locked(s) : 0;
    if (rc == 0)
        rc = s->be->log_drop(s->impl, log);
    if (rc == 0)
        pm_del(&s->last, log);
    pthread_mutex_unlock(&s->wal_mu);
    return rc;
}

/* ---- metadata ---- */

int store_meta_put(struct store *s, const char *key, const void *val, size_t len)
{
    return s->be->meta_put(s->impl, key, val, len);
}

int store_meta_get(struct store *s, const char *key, char **val, size_t *len)
{
    return s->be->meta_get(s->impl, key, val, len);
}

int store_meta_scan(struct store *s, const char *prefix, store_meta_fn fn, void *ctx)
{
    return s->be->meta_scan(s->impl, prefix, fn, ctx);
}

void store_release_cache(struct store *s)
{
    if (s->be->release_cache)
        s->be->release_cache(s->impl);
}
