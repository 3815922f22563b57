/* store.c: the storage front: record sealing, group commit, and dispatch to the backend.
 *
 * Group commit. store_append seals its records in the caller's thread, queues one job and
 * waits. One committer thread takes every queued job at once (up to a byte budget), hands them
 * to the backend as one batch (one transaction, one fsync) and wakes the waiters. While a batch
 * commits, new jobs queue up for the next one, so batch size follows load by itself: one
 * writer gets a commit of its own, a hundred concurrent writers share a few.
 *
 * Invariant: a job's positions are filled, and its rc set, before `done` is set under `mu`. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "format.h"

#define BATCH_BYTES (64u << 20) /* data budget for one commit */

struct job {
    struct backend_append *a; /* nb appends, in the job's own allocation */
    size_t nb;
    size_t bytes;
    int rc;
    int done;
    struct job *next;
};

struct store {
    const struct store_backend *be;
    void *impl;
    pthread_mutex_t mu;
    pthread_cond_t work; /* committer: jobs queued or closing */
    pthread_cond_t done; /* waiters: a batch finished */
    struct job *head, *tail;
    int closing;
    pthread_t committer;
};

static void *commit_loop(void *arg)
{
    struct store *s = arg;
    struct backend_append *batch = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->closing)
            pthread_cond_wait(&s->work, &s->mu);
        if (!s->head && s->closing)
            break;
        /* take jobs up to the byte budget (at least one) */
        struct job *first = s->head, *j = first, *last = NULL;
        size_t n = 0, bytes = 0;
        size_t na = 0;
        while (j && (n == 0 || bytes + j->bytes <= BATCH_BYTES)) {
            bytes += j->bytes;
            na += j->nb;
            last = j;
            j = j->next;
            n++;
        }
        s->head = j;
        if (!j)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mu);

        if (na > cap) {
            cap = na * 2;
            struct backend_append *nb = realloc(batch, cap * sizeof *batch);
            if (!nb)
                abort();
            batch = nb;
        }
        j = first;
        size_t k = 0;
        for (size_t i = 0; i < n; i++, j = j->next)
            for (size_t b = 0; b < j->nb; b++)
                batch[k++] = j->a[b];
        int rc = s->be->append_batch(s->impl, batch, na);

        pthread_mutex_lock(&s->mu);
        j = first;
        for (size_t i = 0; i < n; i++) {
            struct job *nx = j->next;
            j->rc = rc;
            j->done = 1;
            if (j == last)
                break;
            j = nx;
        }
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
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
    pthread_cond_init(&s->done, NULL);
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
    s->closing = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->committer, NULL);
    s->be->close(s->impl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->done);
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
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->mu);
        free(mem);
        return STORE_CLOSED;
    }
    if (s->tail)
        s->tail->next = &j;
    else
        s->head = &j;
    s->tail = &j;
    pthread_cond_signal(&s->work);
    while (!j.done)
        pthread_cond_wait(&s->done, &s->mu);
    pthread_mutex_unlock(&s->mu);
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
    struct scan_ctx sc = {fn, ctx};
    return s->be->scan(s->impl, log, from, max_n, max_bytes, unseal, &sc);
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

int store_disk_bytes(struct store *s, uint64_t *bytes) { return s->be->disk_bytes(s->impl, bytes); }
