/* store.c: the storage front: record sealing, group commit, and dispatch to the backend.
 *
 * Group commit (the leader/follower queue of LevelDB's writer). store_append seals its
 * records in the caller's thread and queues one job. The job at the front of the queue is the
 * leader: it takes every queued job (up to a byte budget), hands them to the backend as one
 * batch (one transaction, one fsync), then marks them done, wakes each owner on its own
 * condition variable, and wakes the next front job, which leads the next batch. While a batch
 * commits, new jobs queue behind it, so batch size follows load by itself: a lone writer
 * commits its own records with no thread hand-off, a hundred concurrent writers share a few
 * commits, and nobody is woken who has nothing to do.
 *
 * One sync per commit. The backend commits without syncing its commit record (LMDB's
 * MDB_NOMETASYNC: the data is synced, the small meta page is written but not synced); the
 * next sync of the file makes it durable. So a batch is acknowledged after the next commit
 * (whose data sync covers it) when more work is queued, or after an explicit sync when not.
 * A lone writer pays two syncs as before; under load each commit pays one.
 *
 * Invariant: a job's positions are filled and its rc set before `done` is set under `mu`;
 * only the leader (the queue's front, not done) touches the backend's write path. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "format.h"

#define BATCH_BYTES (64u << 20)  /* data budget for one commit */
#define RELEASE_BYTES (2u << 20) /* release resident pages after this much data was touched */

struct job {
    struct backend_append *a; /* nb appends, in the job's own allocation */
    size_t nb;
    size_t bytes;
    int rc;
    int done;
    pthread_cond_t cv;
    struct job *next;
};

struct store {
    const struct store_backend *be;
    void *impl;
    pthread_mutex_t mu;
    struct job *head, *tail; /* queued jobs; head leads */
    int closing;
    struct backend_append *batch; /* the leader's scratch array, guarded by leadership */
    size_t batch_cap;
    bool sync;                                /* durable acknowledgements */
    struct job *pending_first, *pending_last; /* committed, acknowledged after the next sync */
    uint64_t touched;                         /* bytes read or written since the last release (atomic) */
};

/* Count bytes that went through the backend's cache; past RELEASE_BYTES, whoever crosses the
 * mark releases the resident pages, so RSS stays bounded however fast data streams through. */
static void touch(struct store *s, uint64_t bytes)
{
    uint64_t t = __atomic_add_fetch(&s->touched, bytes, __ATOMIC_RELAXED);
    if (t >= RELEASE_BYTES &&
        __atomic_compare_exchange_n(&s->touched, &t, 0, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        store_release_cache(s);
}

/* Mark the chain first..last done with rc and wake their owners (mu held). A job may be
 * freed by its owner as soon as it is done, so its successor is read first. */
static void ack(struct job *first, struct job *last, int rc, const struct job *self)
{
    struct job *j = first;
    for (;;) {
        struct job *next = j->next;
        bool end = j == last;
        j->rc = rc;
        j->done = 1;
        if (j != self)
            pthread_cond_signal(&j->cv);
        if (end || !next)
            return;
        j = next;
    }
}

/* Called by the leader with mu held; returns with mu held. Its own job is done on return,
 * unless its batch was left to the next commit's sync (then a later leader acknowledges it). */
static void lead(struct store *s, struct job *self)
{
    struct job *first = s->head, *j = first, *last = NULL;
    size_t n = 0, na = 0, bytes = 0;
    while (j && (n == 0 || bytes + j->bytes <= BATCH_BYTES)) {
        bytes += j->bytes;
        na += j->nb;
        last = j;
        j = j->next;
        n++;
    }
    pthread_mutex_unlock(&s->mu);

    if (na > s->batch_cap) {
        s->batch_cap = na * 2;
        struct backend_append *nb = realloc(s->batch, s->batch_cap * sizeof *nb);
        if (!nb)
            abort();
        s->batch = nb;
    }
    size_t k = 0;
    j = first;
    for (size_t i = 0; i < n; i++, j = j->next)
        for (size_t b = 0; b < j->nb; b++)
            s->batch[k++] = j->a[b];
    int rc = s->be->append_batch(s->impl, s->batch, na);
    touch(s, bytes);

    pthread_mutex_lock(&s->mu);
    s->head = last->next; /* the batch leaves the queue; first..last keep their links */
    if (!s->head)
        s->tail = NULL;
    /* The commit's own sync made the previous batch's commit record durable. */
    struct job *pf = s->pending_first, *pl = s->pending_last;
    s->pending_first = s->pending_last = NULL;
    if (pf && rc == 0)
        ack(pf, pl, 0, self);
    if (rc == 0 && s->sync && s->head) {
        /* more work is queued: its commit will make this batch durable; acknowledge then */
        s->pending_first = first;
        s->pending_last = last;
        pthread_cond_signal(&s->head->cv);
        return;
    }
    if (s->head)
        pthread_cond_signal(&s->head->cv); /* the next leader may commit while we sync */
    if (rc == 0 && s->sync) {
        pthread_mutex_unlock(&s->mu);
        rc = s->be->sync(s->impl);
        pthread_mutex_lock(&s->mu);
    } else if (rc && pf) {
        pthread_mutex_unlock(&s->mu);
        int prc = s->be->sync(s->impl);
        pthread_mutex_lock(&s->mu);
        ack(pf, pl, prc, self);
    }
    ack(first, last, rc, self);
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
    s->sync = cfg->sync;
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_mutex_unlock(&s->mu);
    /* the caller has stopped its writers; any job still queued finishes before close */
    s->be->close(s->impl);
    pthread_mutex_destroy(&s->mu);
    free(s->batch);
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

int store_append(struct store *s, struct store_batch *batches, size_t nbatches)
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
        return 0;
    /* one allocation: sealed values, then the appends and their value, length, position arrays */
    size_t voff = 0;
    size_t aoff = (total + 15) & ~(size_t)15;
    size_t arrays = nbatches * sizeof(struct backend_append) +
                    nrec * (sizeof(char *) + sizeof(size_t) + sizeof(uint64_t));
    char *mem = malloc(aoff + arrays);
    if (!mem)
        return STORE_NOMEM;
    struct backend_append *ap = (struct backend_append *)(mem + aoff);
    const char **vals = (const char **)(ap + nbatches);
    size_t *lens = (size_t *)(vals + nrec);
    uint64_t *pos = (uint64_t *)(lens + nrec);
    size_t k = 0;
    for (size_t b = 0; b < nbatches; b++) {
        ap[b] = (struct backend_append){.log = batches[b].log,
                                        .floor = batches[b].floor,
                                        .n = batches[b].n,
                                        .vals = vals + k,
                                        .lens = lens + k,
                                        .pos = pos + k};
        for (size_t i = 0; i < batches[b].n; i++, k++) {
            const struct store_rec *r = &batches[b].recs[i];
            seal(mem + voff, r);
            vals[k] = mem + voff;
            lens[k] = FORMAT_HDR + r->pk_len + r->data_len;
            voff += lens[k];
        }
    }
    struct job j = {.a = ap, .nb = nbatches, .bytes = total};
    pthread_cond_init(&j.cv, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->mu);
        pthread_cond_destroy(&j.cv);
        free(mem);
        return STORE_CLOSED;
    }
    if (s->tail)
        s->tail->next = &j;
    else
        s->head = &j;
    s->tail = &j;
    while (!j.done && s->head != &j)
        pthread_cond_wait(&j.cv, &s->mu);
    if (!j.done)
        lead(s, &j);
    while (!j.done) /* left to the next commit's sync */
        pthread_cond_wait(&j.cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&j.cv);
    if (j.rc == 0) {
        k = 0;
        for (size_t b = 0; b < nbatches; b++)
            for (size_t i = 0; i < batches[b].n; i++)
                batches[b].recs[i].pos = pos[k++];
    }
    free(mem);
    return j.rc;
}

struct scan_ctx {
    store_scan_fn fn;
    void *ctx;
    uint64_t bytes;
};

static int unseal(void *ctx, uint64_t pos, const char *val, size_t len)
{
    struct scan_ctx *sc = ctx;
    if (len < FORMAT_HDR)
        return STORE_CORRUPT;
    struct format_hdr h;
    memcpy(&h, val, FORMAT_HDR);
    size_t pk_len = (size_t)h.pk_len[0] | (size_t)h.pk_len[1] << 8;
    if (h.version != FORMAT_VERSION || (h.flags & FORMAT_F_SEALED) || pk_len > len - FORMAT_HDR)
        return STORE_CORRUPT;
    sc->bytes += len;
    struct store_view v = {
        .pos = pos,
        .pk = val + FORMAT_HDR,
        .pk_len = pk_len,
        .data = val + FORMAT_HDR + pk_len,
        .data_len = len - FORMAT_HDR - pk_len,
    };
    return sc->fn(sc->ctx, &v);
}

int store_scan(struct store *s, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes, store_scan_fn fn,
               void *ctx)
{
    struct scan_ctx sc = {fn, ctx, 0};
    int rc = s->be->scan(s->impl, log, from, max_n, max_bytes, unseal, &sc);
    touch(s, sc.bytes);
    return rc;
}

int store_log_bounds(struct store *s, uint64_t log, uint64_t *last, uint64_t *first)
{
    return s->be->log_bounds(s->impl, log, last, first);
}

int store_trim(struct store *s, uint64_t log, uint64_t below, size_t max, size_t *deleted)
{
    size_t d = 0;
    int rc = s->be->trim(s->impl, log, below, max, &d);
    if (deleted)
        *deleted = d;
    return rc;
}

int store_log_drop(struct store *s, uint64_t log) { return s->be->log_drop(s->impl, log); }

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

