/* store.c: the storage front: argument checks, engine selection and dispatch (see store.h).
 *
 * Everything about where records live belongs to the engine (engine.h); this file picks one
 * by name, checks what every engine would check (key lengths, row keys), and offers the
 * waiting form of an append. Wrappers (a fault-injecting engine for tests) are registered by
 * name and chosen by "NAME:INNER".
 *
 * Keys. With a keyring, an append first makes sure the data key of each batch's bucket exists
 * (creating one is a durable metadata write, better made here than on the engine's committer
 * thread under its locks). A trim asks the keyring for the rows of the log's oldest keys and
 * the engine deletes those no record is left for in the trim's own transaction; the keyring
 * then wipes them (crypto-shredding). A drop tells the keyring afterwards (a drop interrupted
 * by a crash is finished after the restart, so it is told then). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "format.h"

struct store {
    const struct store_engine *e;
    void *impl;
    pthread_mutex_t watch_mu;
    struct {
        char prefix[64];
        store_row_fn fn;
        void *arg;
    } watch[STORE_MAX_ROW_WATCHES];
    int nwatch;
    const struct store_keyring *kr;
    uint64_t trims, trimmed; /* atomic, for store_stats */
};

#define MAX_WRAPPERS 4
static const struct store_wrapper *wrappers[MAX_WRAPPERS];
static pthread_mutex_t wrappers_mu = PTHREAD_MUTEX_INITIALIZER;

void store_register_wrapper(const struct store_wrapper *w)
{
    pthread_mutex_lock(&wrappers_mu);
    for (int i = 0; i < MAX_WRAPPERS; i++)
        if (!wrappers[i] || wrappers[i] == w) {
            wrappers[i] = w;
            break;
        }
    pthread_mutex_unlock(&wrappers_mu);
}

static const struct store_engine *engine_named(const char *name, size_t len)
{
    static const struct store_engine *const engines[] = {&store_engine_lmdb, &store_engine_pg,
                                                         &store_engine_snapshot};
    for (size_t i = 0; i < sizeof engines / sizeof *engines; i++)
        if (strlen(engines[i]->name) == len && !memcmp(engines[i]->name, name, len))
            return engines[i];
    return NULL;
}

const char *store_strerror(int rc)
{
    switch (rc) {
    case STORE_OK: return "ok";
    case STORE_NOT_FOUND: return "not found";
    case STORE_IO: return "i/o error";
    case STORE_CORRUPT: return "corrupt";
    case STORE_NOMEM: return "out of memory";
    case STORE_INVALID: return "invalid";
    case STORE_CLOSED: return "closed";
    case STORE_FULL: return "no space";
    case STORE_BUSY: return "busy";
    case STORE_UNAVAILABLE: return "unavailable";
    case STORE_CONFLICT: return "conflict";
    case STORE_NEWER: return "made by a newer kinesd";
    default: return "unknown";
    }
}

int store_open(const struct store_config *cfg, struct store **out)
{
    if (!cfg || !cfg->dir)
        return STORE_INVALID;
    const char *name = cfg->engine ? cfg->engine : "lmdb";
    const char *colon = strchr(name, ':');
    const struct store_engine *inner =
        engine_named(colon ? colon + 1 : name, strlen(colon ? colon + 1 : name));
    const struct store_wrapper *wrap = NULL;
    if (colon) {
        pthread_mutex_lock(&wrappers_mu);
        for (int i = 0; i < MAX_WRAPPERS && wrappers[i]; i++)
            if (strlen(wrappers[i]->name) == (size_t)(colon - name) &&
                !memcmp(wrappers[i]->name, name, (size_t)(colon - name)))
                wrap = wrappers[i];
        pthread_mutex_unlock(&wrappers_mu);
        if (!wrap)
            return STORE_INVALID;
    }
    if (!inner)
        return STORE_INVALID;
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return STORE_NOMEM;
    s->e = wrap ? wrap->table : inner;
    pthread_mutex_init(&s->watch_mu, NULL);
    s->kr = cfg->keyring;
    int rc = wrap ? wrap->open(inner, cfg, s, &s->impl) : inner->open(cfg, s, &s->impl);
    if (rc) {
        pthread_mutex_destroy(&s->watch_mu);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    s->e->close(s->impl);
    pthread_mutex_destroy(&s->watch_mu);
    free(s);
}

const char *store_engine_name(const struct store *s) { return s->e->name; }

bool store_shared(const struct store *s) { return s->e->shared; }

void *store_engine_impl(struct store *s, const struct store_engine *e) { return s->e == e ? s->impl : NULL; }

int store_append_async(struct store *s, struct store_batch *batches, size_t nbatches, store_done_fn done,
                       void *arg)
{
    size_t nrec = 0;
    for (size_t b = 0; b < nbatches; b++) {
        for (size_t i = 0; i < batches[b].n; i++)
            if (batches[b].recs[i].pk_len > FORMAT_MAX_PK)
                return STORE_INVALID;
        nrec += batches[b].n;
    }
    if (!nrec)
        return STORE_INVALID;
    for (size_t b = 0; s->kr && b < nbatches; b++) {
        uint64_t id;
        const unsigned char *key;
        int rc = s->kr->seal_key(s->kr->ctx, batches[b].log, keyring_bucket(batches[b].floor), 0, &id, &key);
        if (rc)
            return rc;
    }
    return s->e->append(s->impl, batches, nbatches, done, arg);
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

int store_scan(struct store *s, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
               struct store_records *out)
{
    return s->e->scan(s->impl, log, from, max_n, max_bytes, out);
}

int store_log_bounds(struct store *s, uint64_t log, uint64_t *last, uint64_t *first)
{
    return s->e->log_bounds(s->impl, log, last, first);
}

int store_watch(struct store *s, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                struct store_watch **w)
{
    return s->e->watch(s->impl, log, after, fn, arg, w);
}

bool store_unwatch(struct store *s, struct store_watch *w) { return s->e->unwatch(s->impl, w); }

#define SHRED_ROWS 64 /* data keys a trim deletes at most (older ones first; the next trim goes on) */

int store_trim(struct store *s, uint64_t log, uint64_t below, size_t max, size_t *deleted)
{
    size_t d = 0, n = 0;
    struct store_trim_row rows[SHRED_ROWS];
    if (s->kr && s->kr->shred_rows(s->kr->ctx, log, rows, SHRED_ROWS, &n))
        n = 0; /* the keys wait for the next trim */
    int rc = s->e->trim(s->impl, log, below, max, &d, rows, n);
    if (deleted)
        *deleted = d;
    if (d) {
        __atomic_add_fetch(&s->trims, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->trimmed, d, __ATOMIC_RELAXED);
    }
    if (rc == 0 && n)
        s->kr->shredded(s->kr->ctx, log, rows, n);
    return rc;
}

int store_log_drop(struct store *s, uint64_t log)
{
    int rc = s->e->log_drop(s->impl, log);
    if (rc == 0 && s->kr)
        rc = s->kr->dropped(s->kr->ctx, log);
    return rc;
}

int store_log_seal(struct store *s, uint64_t log) { return s->e->log_seal(s->impl, log); }

int store_lease(struct store *s, const char *name) { return s->e->lease ? s->e->lease(s->impl, name) : 0; }

int store_meta_watch(struct store *s, const char *prefix, store_row_fn fn, void *arg)
{
    if (strlen(prefix) >= sizeof s->watch[0].prefix)
        return STORE_INVALID;
    pthread_mutex_lock(&s->watch_mu);
    int rc = s->nwatch < STORE_MAX_ROW_WATCHES ? 0 : STORE_NOMEM;
    if (rc == 0) {
        snprintf(s->watch[s->nwatch].prefix, sizeof s->watch[0].prefix, "%s", prefix);
        s->watch[s->nwatch].fn = fn;
        s->watch[s->nwatch].arg = arg;
        s->nwatch++;
    }
    pthread_mutex_unlock(&s->watch_mu);
    return rc;
}

void store_rows_changed(struct store *s, const char *key)
{
    pthread_mutex_lock(&s->watch_mu);
    for (int i = 0; i < s->nwatch; i++)
        if (!key || !strncmp(key, s->watch[i].prefix, strlen(s->watch[i].prefix)))
            s->watch[i].fn(s->watch[i].arg, key);
    pthread_mutex_unlock(&s->watch_mu);
}

int store_meta_cas(struct store *s, struct store_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!rows[i].key || !rows[i].key[0] || strlen(rows[i].key) > 256)
            return STORE_INVALID;
    int rc = s->e->meta_cas(s->impl, rows, n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        store_rows_changed(s, rows[i].key);
    return rc;
}

int store_meta_put(struct store *s, const char *key, const void *val, size_t len)
{
    struct store_row r = {.key = key, .version = STORE_ANY_VERSION, .val = val, .len = len};
    return store_meta_cas(s, &r, 1);
}

int store_meta_get(struct store *s, const char *key, char **val, size_t *len, uint64_t *version)
{
    return s->e->meta_get(s->impl, key, val, len, version);
}

int store_meta_scan(struct store *s, const char *prefix, store_meta_fn fn, void *ctx)
{
    return s->e->meta_scan(s->impl, prefix, fn, ctx);
}

void store_stats(struct store *s, struct store_stats *st)
{
    memset(st, 0, sizeof *st);
    if (s->e->stats)
        s->e->stats(s->impl, st);
    st->trims = __atomic_load_n(&s->trims, __ATOMIC_RELAXED);
    st->trimmed = __atomic_load_n(&s->trimmed, __ATOMIC_RELAXED);
}

const uint64_t store_sync_bounds_ns[STORE_SYNC_BUCKETS] = {
    50000,    100000,   250000,   500000,    1000000,   2500000,   5000000,
    10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000,
};

void store_sync_observe(uint64_t buckets[STORE_SYNC_BUCKETS + 1], uint64_t ns)
{
    int i = 0;
    while (i < STORE_SYNC_BUCKETS && ns > store_sync_bounds_ns[i])
        i++;
    __atomic_add_fetch(&buckets[i], 1, __ATOMIC_RELAXED);
}
