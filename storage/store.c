/* store.c: the storage front: record sealing, group commit, and dispatch to the backend.
 *
 * Group commit. An append seals its records in the caller's thread and queues one job. A
 * committer thread takes every queued job at once (up to a byte budget), hands them to the
 * backend as one batch (one transaction), and reports each job through its callback. While a
 * batch commits, new jobs queue up for the next one, so batch size follows load by itself.
 * Callers do not wait: store_append_async returns at once and the callback runs on the
 * committer thread, so a server can park a request instead of a thread (store_append is the
 * same with a wait).
 *
 * One sync per commit. The backend commits without syncing its commit record (LMDB's
 * MDB_NOMETASYNC: the data is synced, the small meta page is written but not synced); the
 * next sync of the file makes it durable. So a batch is acknowledged after the next commit
 * (whose data sync covers it) when more work is queued, or after an explicit sync when not.
 * A lone writer pays two syncs; under load each commit pays one.
 *
 * Invariant: a job's callback runs exactly once, after its records are durable (or with the
 * error that stopped them), with its positions filled in; only the committer thread touches
 * the backend's write path. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "format.h"

#define BATCH_BYTES (64u << 20)  /* data budget for one commit */
#define RELEASE_BYTES (1u << 20) /* release resident pages after this much data was touched */

struct job {
    struct backend_append *a; /* nb appends, in mem */
    size_t nb;
    size_t bytes;
    struct store_batch *batches; /* the caller's, to fill positions into */
    size_t nbatches;
    uint64_t *pos; /* in mem */
    store_done_fn done;
    void *arg;
    char *mem; /* owned: sealed values and the arrays above */
    struct job *next;
};

struct store {
    const struct store_backend *be;
    void *impl;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* the committer: jobs queued, or closing */
    struct job *head, *tail; /* queued jobs, guarded by mu */
    int closing;
    pthread_t committer;
    bool sync;        /* durable acknowledgements */
    uint64_t touched; /* bytes read or written since the last release (atomic) */
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

/* Report every job of a chain and free it (committer thread, mu not held). */
static void complete(struct job *j, int rc)
{
    while (j) {
        struct job *next = j->next;
        if (rc == 0) {
            size_t k = 0;
            for (size_t b = 0; b < j->nbatches; b++)
                for (size_t i = 0; i < j->batches[b].n; i++)
                    j->batches[b].recs[i].pos = j->pos[k++];
        }
        j->done(j->arg, rc);
        free(j->mem);
        j = next;
    }
}

static void *commit_loop(void *arg)
{
    struct store *s = arg;
    struct backend_append *batch = NULL;
    size_t cap = 0;
    struct job *pending = NULL; /* committed; durable with the next sync */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->closing)
            pthread_cond_wait(&s->work, &s->mu);
        if (!s->head)
            break;
        struct job *first = s->head, *j = first, *last = NULL;
        size_t na = 0, bytes = 0;
        while (j && (!last || bytes + j->bytes <= BATCH_BYTES)) {
            bytes += j->bytes;
            na += j->nb;
            last = j;
            j = j->next;
        }
        s->head = j;
        if (!j)
            s->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        if (na > cap) {
            cap = na * 2;
            struct backend_append *nb = realloc(batch, cap * sizeof *nb);
            if (!nb)
                abort();
            batch = nb;
        }
        size_t k = 0;
        for (j = first; j; j = j->next)
            for (size_t b = 0; b < j->nb; b++)
                batch[k++] = j->a[b];
        int rc = s->be->append_batch(s->impl, batch, na);
        touch(s, bytes);

        pthread_mutex_lock(&s->mu);
        bool more = s->head != NULL;
        pthread_mutex_unlock(&s->mu);
        if (rc == 0) {
            complete(pending, 0); /* this commit's data sync covered its commit record */
            pending = NULL;
            if (s->sync && more)
                pending = first; /* the next commit will cover this one's */
            else
                complete(first, s->sync ? s->be->sync(s->impl) : 0);
        } else {
            if (pending)
                complete(pending, s->be->sync(s->impl));
            pending = NULL;
            complete(first, rc);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    complete(pending, s->sync ? s->be->sync(s->impl) : 0); /* never left here, but be sure */
    free(batch);
    return NULL;
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
    s->sync = cfg->sync;
    if (pthread_create(&s->committer, NULL, commit_loop, s)) {
        s->be->close(s->impl);
        free(s);
        return STORE_NOMEM;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->closing = 1; /* jobs still queued are committed first */
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->committer, NULL);
    s->be->close(s->impl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
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
    /* one allocation: sealed values, then the job, the appends and their value, length and
     * position arrays */
    size_t voff = 0;
    size_t joff = (total + 15) & ~(size_t)15;
    size_t arrays = sizeof(struct job) + nbatches * sizeof(struct backend_append) +
                    nrec * (sizeof(char *) + sizeof(size_t) + sizeof(uint64_t));
    char *mem = malloc(joff + arrays);
    if (!mem)
        return STORE_NOMEM;
    struct job *j = (struct job *)(mem + joff);
    struct backend_append *ap = (struct backend_append *)(j + 1);
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
    *j = (struct job){.a = ap,
                      .nb = nbatches,
                      .bytes = total,
                      .batches = batches,
                      .nbatches = nbatches,
                      .pos = pos,
                      .done = done,
                      .arg = arg,
                      .mem = mem};
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->mu);
        free(mem);
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

struct scan_ctx {
    struct store *s;
    store_scan_fn fn;
    void *ctx;
    uint64_t bytes; /* not yet counted by touch */
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
    if (sc->bytes >= RELEASE_BYTES) { /* a long scan releases as it goes */
        touch(sc->s, sc->bytes);
        sc->bytes = 0;
    }
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
               void *ctx, uint64_t *last)
{
    struct scan_ctx sc = {s, fn, ctx, 0};
    int rc = s->be->scan(s->impl, log, from, max_n, max_bytes, unseal, &sc, last);
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
