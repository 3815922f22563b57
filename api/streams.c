/* streams.c: the stream registry: every stream in memory, persisted as versioned metadata rows.
 *
 * Model. A sorted array of pointers to immutable stream versions. Two locks:
 *  - the rwlock routes: data-plane calls hold it for reading only to find a stream and shard
 *    and copy ids, never across a storage call; it is taken for writing only to swap a pointer;
 *  - the control mutex serializes every change (control-plane calls and maintenance); the
 *    data plane never takes it, so it may be held across a durable write.
 * A change is made by copy, persist, swap: the changed stream is built as a private copy, the
 * rows that differ are written in one compare-and-set on their versions, and only then is the
 * copy swapped in under the write lock (the old version is freed after, since no reader can
 * still hold it). A failed write changes nothing: routing stays as the disk has it.
 *
 * Rows. One per stream header, per shard and per tag set, so a change writes only what changed:
 *   "st/<uid>"               the header (name, status, retention, mode, ...; JSON "v":2)
 *   "shard/<uid>/<index>"    one shard (hash range, lineage, closing state)
 *   "tags/<uid>"             the tags, absent when there are none
 *   "name/<account>/<region>/<name>" -> uid
 *                            the stream holding the name in its account and region (so two
 *                            front-ends sharing a store cannot both create it)
 *   "drop/<uid>" -> shards   the logs of a retired stream still to be dropped
 *   "next-uid"               the next stream uid (taken by compare-and-set)
 * (uids have 20 digits and indices 8, so keys sort numerically). The older format, one JSON
 * value per stream at "stream/<name>" ("v":1), is read at startup and rewritten as rows.
 *
 * Accounts. A stream belongs to the account and region it was created in (its header's
 * "account" and "region"); the registry is ordered by (account, region, name), so one account's
 * streams of a region are one slice, and a look-up is one binary search. A header written before
 * accounts were kept has neither, and its name row is "name/<name>": it is read as a stream of
 * the server's --account-id and --region, and rewritten with both (and its name row moved) at
 * startup.
 *
 * Lifecycle. Transitions are timestamps, not timers: a stream stores its status and the time
 * it ends (CREATING -> ACTIVE, UPDATING -> ACTIVE, DELETING -> gone), and readers compute the
 * effective status from the clock without writing. The maintenance thread later makes the
 * change durable (a failed write is logged and retried), and retires a gone stream: one write
 * records "drop/<uid>" and deletes its rows, then its logs are dropped in bounded batches.
 *
 * Resharding completes in two durable steps: the parents are sealed (no longer routed to) and
 * the children opened; once every append routed to a parent before the swap has committed
 * (waited for without any registry lock), each parent is closed at its last position.
 *
 * Trimming. Each shard remembers (in memory) when its oldest record passes retention; the
 * sweep thread visits a shard only then, so an idle server writes nothing, and a closed shard
 * whose records are all gone is never visited again. Trimming and dropping the logs of deleted
 * streams are bulk deletes; they run on that thread of their own, beside the maintenance thread
 * that makes lifecycle transitions and completes reshards, so a slow store (on PostgreSQL a
 * commit per piece, seconds under a busy disk) delays only them, never a status a client waits
 * for.
 *
 * Front-ends sharing a store (PostgreSQL) each keep such a registry. Rows another one changed
 * are reported by the store (store_meta_watch); the maintenance thread reloads those streams
 * from their rows and swaps them in, so a change made anywhere is seen everywhere within a
 * tick. A change made from an outdated copy loses its compare-and-set and changes nothing.
 * Background work (lifecycle, reshards, trimming, drops) runs only on the front-end holding the
 * store's "maintenance" lease. A parent's log is sealed in the store before its children are
 * routed to, so a write that another front-end routes by its older layout is refused instead
 * of landing in it, and that front-end routes it again by the stream's rows (put.c).
 *
 * Ids. A log id is uid << 24 | shard index: a stream may have 2^24 shard indices over its life
 * and there may be 2^40 stream uids; a change that would need more is refused. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumers.h"
#include "internal.h"
#include "klog.h"
#include "kms/datakeys.h"
#include "kms/kms.h"

/* ---- the store's metadata rows ---- */

static int meta_cas(struct api *a, struct store_row *rows, size_t n)
{
    return store_meta_cas(a->store, rows, n);
}
#define meta_get(a, k, v, len) store_meta_get((a)->store, k, v, len, NULL)
#define meta_scan(a, prefix, fn, ctx) store_meta_scan((a)->store, prefix, fn, ctx)

struct streams {
    pthread_rwlock_t lock; /* routing; written only to swap pointers */
    pthread_mutex_t ctl;   /* serializes changes; never taken by the data plane */
    struct stream **v;     /* owned, sorted by (account, region, name) */
    size_t n, cap;
    uint64_t next_uid;     /* under ctl */
    uint64_t next_uid_ver; /* the version of the "next-uid" row it was read from */
    /* streams whose rows another front-end changed, for the maintenance thread */
    pthread_mutex_t dirty_mu;
    uint64_t dirty[64];
    size_t ndirty;
    bool dirty_all;
};

static const char *const status_names[] = {"CREATING", "ACTIVE", "DELETING", "UPDATING", "GONE"};

const char *stream_status_name(int st) { return status_names[st]; }

int stream_status(const struct stream *s, int64_t now)
{
    if (s->resharding && s->status != ST_DELETING) /* UPDATING until the reshard is applied */
        return ST_UPDATING;
    switch (s->status) {
    case ST_CREATING:
    case ST_UPDATING: return now >= s->status_until ? ST_ACTIVE : s->status;
    case ST_DELETING: return now >= s->status_until ? ST_GONE : ST_DELETING;
    default: return s->status;
    }
}

void streams_rdlock(struct api *a) { pthread_rwlock_rdlock(&a->streams->lock); }
void streams_unlock(struct api *a) { pthread_rwlock_unlock(&a->streams->lock); }
void streams_change_lock(struct api *a) { pthread_mutex_lock(&a->streams->ctl); }
void streams_change_unlock(struct api *a) { pthread_mutex_unlock(&a->streams->ctl); }
bool streams_change_trylock(struct api *a) { return pthread_mutex_trylock(&a->streams->ctl) == 0; }

/* The registry's order: account, region, name. */
static int owner_cmp(const struct stream *s, const char *account, const char *region, const char *name)
{
    int d = strcmp(s->account, account);
    if (!d)
        d = strcmp(s->region, region);
    return d ? d : strcmp(s->name, name);
}

static size_t lower_bound(struct streams *r, const char *account, const char *region, const char *name)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (owner_cmp(r->v[mid], account, region, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static size_t position(struct streams *r, const struct stream *s)
{
    return lower_bound(r, s->account, s->region, s->name);
}

static struct stream *find_any(struct streams *r, const char *account, const char *region, const char *name)
{
    size_t i = lower_bound(r, account, region, name);
    return i < r->n && !owner_cmp(r->v[i], account, region, name) ? r->v[i] : NULL;
}

struct stream *streams_find(struct api *a, const char *account, const char *region, const char *name,
                            int64_t now)
{
    struct stream *s = find_any(a->streams, account, region, name);
    return s && stream_status(s, now) != ST_GONE ? s : NULL;
}

struct stream **streams_list(struct api *a, size_t *n)
{
    *n = a->streams->n;
    return a->streams->v;
}

struct stream **streams_of(struct api *a, const char *account, const char *region, size_t *n)
{
    struct streams *r = a->streams;
    size_t i = lower_bound(r, account, region, ""), j = i;
    while (j < r->n && !strcmp(r->v[j]->account, account) && !strcmp(r->v[j]->region, region))
        j++;
    *n = j - i;
    return r->v + i;
}

static void stream_free(struct stream *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->ntags; i++) {
        free(s->tags[i].key);
        free(s->tags[i].value);
    }
    free(s->tags);
    free(s->shards);
    free(s->route);
    free(s->scalings);
    free(s);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

struct stream *stream_copy(const struct stream *s)
{
    struct stream *d = malloc(sizeof *d);
    if (!d)
        abort();
    *d = *s;
    d->route = NULL; /* the copy's shards change: it builds its own */
    d->shards = malloc((s->nshards ? s->nshards : 1) * sizeof *d->shards);
    d->scalings = malloc((s->nscalings ? s->nscalings : 1) * sizeof *d->scalings);
    d->tags = malloc((s->ntags ? s->ntags : 1) * sizeof *d->tags);
    if (!d->shards || !d->scalings || !d->tags)
        abort();
    if (s->nshards)
        memcpy(d->shards, s->shards, s->nshards * sizeof *d->shards);
    for (uint32_t i = 0; i < s->nshards; i++)
        d->shards[i].offered = d->shards[i].offered_bytes = d->shards[i].last = d->shards[i].last_bytes =
            d->shards[i].others = d->shards[i].others_bytes = 0;
    if (s->nscalings)
        memcpy(d->scalings, s->scalings, s->nscalings * sizeof *d->scalings);
    for (uint32_t i = 0; i < s->ntags; i++)
        d->tags[i] = (struct tag){xstrdup(s->tags[i].key), xstrdup(s->tags[i].value)};
    return d;
}

void stream_discard(struct stream *s) { stream_free(s); }

/* Publish: put next where cur is (cur NULL: insert; next NULL: remove), under the write lock
 * held for the swap only; then free cur, which no reader can hold any more. */
static void publish(struct api *a, struct stream *cur, struct stream *next)
{
    struct streams *r = a->streams;
    if (!cur && r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct stream **v = malloc(cap * sizeof *v);
        if (!v)
            abort();
        if (r->n)
            memcpy(v, r->v, r->n * sizeof *v);
        pthread_rwlock_wrlock(&r->lock);
        struct stream **old = r->v;
        r->v = v;
        r->cap = cap;
        pthread_rwlock_unlock(&r->lock);
        free(old);
    }
    pthread_rwlock_wrlock(&r->lock);
    if (cur && next) {
        r->v[position(r, cur)] = next;
    } else if (next) {
        size_t i = position(r, next);
        memmove(r->v + i + 1, r->v + i, (r->n - i) * sizeof *r->v);
        r->v[i] = next;
        r->n++;
    } else if (cur) {
        size_t i = position(r, cur);
        memmove(r->v + i, r->v + i + 1, (r->n - i - 1) * sizeof *r->v);
        r->n--;
    }
    pthread_rwlock_unlock(&r->lock);
    stream_free(cur);
}

/* ---- rows ---- */

static void put_u128(struct enc *e, const char *k, u128 v)
{
    char t[40];
    u128_str(t, v);
    enc_key(e, k);
    enc_strz(e, t);
}

static void header_key(char *out, size_t cap, uint64_t uid) { snprintf(out, cap, "st/%020" PRIu64, uid); }
/* The row holding s's name in its account and region (or the older one of a stream stored
 * before accounts were kept). */
static void name_key(char *out, size_t cap, const struct stream *s, bool old)
{
    if (old)
        snprintf(out, cap, "name/%s", s->name);
    else
        snprintf(out, cap, "name/%s/%s/%s", s->account, s->region, s->name);
}
static void tags_key(char *out, size_t cap, uint64_t uid) { snprintf(out, cap, "tags/%020" PRIu64, uid); }
static void shard_key(char *out, size_t cap, uint64_t uid, uint32_t ix)
{
    snprintf(out, cap, "shard/%020" PRIu64 "/%08" PRIu32, uid, ix);
}

static void enc_header(struct enc *e, const struct stream *s)
{
    enc_init(e, WIRE_JSON);
    enc_obj_begin(e);
    enc_key(e, "v"), enc_int(e, 2);
    enc_key(e, "name"), enc_strz(e, s->name);
    enc_key(e, "account"), enc_strz(e, s->account);
    enc_key(e, "region"), enc_strz(e, s->region);
    enc_key(e, "uid"), enc_int(e, (int64_t)s->uid);
    enc_key(e, "status"), enc_int(e, s->status);
    enc_key(e, "until"), enc_int(e, s->status_until);
    enc_key(e, "created"), enc_int(e, s->created_ms);
    enc_key(e, "retention"), enc_int(e, s->retention_h);
    enc_key(e, "onDemand"), enc_bool(e, s->on_demand);
    enc_key(e, "maxRecordKiB"), enc_int(e, s->max_record_kib);
    enc_key(e, "resharding"), enc_bool(e, s->resharding);
    enc_key(e, "nshards"), enc_int(e, s->nshards);
    enc_key(e, "scalings");
    enc_arr_begin(e);
    for (uint32_t i = 0; i < s->nscalings; i++)
        enc_int(e, s->scalings[i]);
    enc_arr_end(e);
    if (s->enc_key[0]) {
        enc_key(e, "encKey"), enc_strz(e, s->enc_key);
        enc_key(e, "encKid"), enc_strz(e, s->enc_kid);
    }
    if (s->metrics)
        enc_key(e, "metrics"), enc_int(e, s->metrics);
    if (s->warm) {
        enc_key(e, "warmTarget"), enc_int(e, s->warm_target);
        enc_key(e, "warmCurrent"), enc_int(e, s->warm_current);
        enc_key(e, "warmUntil"), enc_int(e, s->warm_until);
    }
    if (s->enc_switch_ms) {
        enc_key(e, "encPrev"), enc_strz(e, s->enc_prev_kid);
        enc_key(e, "encSwitch"), enc_int(e, s->enc_switch_ms);
    }
    enc_key(e, "encChanges");
    enc_arr_begin(e);
    for (uint32_t i = 0; i < s->nenc; i++)
        enc_int(e, s->enc_changes[i]);
    enc_arr_end(e);
    enc_obj_end(e);
}

static void enc_shard_row(struct enc *e, const struct shard *sh)
{
    enc_obj_begin(e);
    enc_key(e, "i"), enc_int(e, sh->index);
    put_u128(e, "start", sh->start);
    put_u128(e, "end", sh->end);
    enc_key(e, "created"), enc_int(e, sh->created_ms);
    enc_key(e, "closed"), enc_int(e, sh->closed_ms);
    enc_key(e, "endPos"), enc_int(e, (int64_t)sh->end_pos);
    enc_key(e, "parent"), enc_int(e, sh->parent);
    enc_key(e, "adjacent"), enc_int(e, sh->adjacent_parent);
    enc_key(e, "pending"), enc_bool(e, sh->pending);
    enc_key(e, "closing"), enc_bool(e, sh->closing);
    enc_key(e, "sealed"), enc_bool(e, sh->sealed);
    enc_obj_end(e);
}

static void enc_tags_row(struct enc *e, const struct stream *s)
{
    enc_init(e, WIRE_JSON);
    enc_obj_begin(e);
    for (uint32_t i = 0; i < s->ntags; i++) {
        enc_key(e, s->tags[i].key);
        enc_strz(e, s->tags[i].value);
    }
    enc_obj_end(e);
}

/* The persisted fields of two shards are equal. */
static bool shard_same(const struct shard *x, const struct shard *y)
{
    return x->index == y->index && x->start == y->start && x->end == y->end &&
           x->created_ms == y->created_ms && x->closed_ms == y->closed_ms && x->end_pos == y->end_pos &&
           x->parent == y->parent && x->adjacent_parent == y->adjacent_parent && x->pending == y->pending &&
           x->closing == y->closing && x->sealed == y->sealed;
}

/* The rows of one write: keys and values owned here, and where each new version goes. */
struct rows {
    struct store_row *v;
    char **own; /* keys and values to free */
    uint64_t **ver;
    size_t n, cap, nown;
};

static void rows_add(struct rows *w, const char *key, uint64_t expect, struct enc *val, uint64_t *ver)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 8;
        w->v = realloc(w->v, w->cap * sizeof *w->v);
        w->ver = realloc(w->ver, w->cap * sizeof *w->ver);
        w->own = realloc(w->own, 2 * w->cap * sizeof *w->own);
        if (!w->v || !w->ver || !w->own)
            abort();
    }
    char *k = xstrdup(key);
    w->own[w->nown++] = k;
    const void *p = NULL;
    size_t len = 0;
    if (val) {
        size_t cap;
        p = w->own[w->nown++] = buf_steal(&val->b, &cap);
        len = cap;
    }
    w->v[w->n] = (struct store_row){k, expect, p, len};
    w->ver[w->n++] = ver;
}

static void rows_free(struct rows *w)
{
    for (size_t i = 0; i < w->nown; i++)
        free(w->own[i]);
    free(w->own);
    free(w->v);
    free(w->ver);
}

/* Write the rows; on success store each new version where it belongs. */
static int rows_write(struct api *a, struct rows *w)
{
    if (!w->n)
        return 0;
    int rc = meta_cas(a, w->v, w->n);
    if (rc == 0)
        for (size_t i = 0; i < w->n; i++)
            if (w->ver[i])
                *w->ver[i] = w->v[i].version;
    return rc;
}

/* Add the rows that turn cur into next (cur NULL or legacy: every row is new; next NULL: every
 * row of cur is deleted). Versions land in next once written. */
static void rows_diff(struct rows *w, const struct stream *cur, struct stream *next)
{
    char key[256];
    const struct stream *s = next ? next : cur;
    bool fresh = !cur || cur->legacy;
    /* header */
    struct enc hn, ho;
    if (next) {
        enc_header(&hn, next);
        bool same = false;
        if (!fresh) {
            enc_header(&ho, cur);
            same = ho.b.len == hn.b.len && !memcmp(ho.b.p, hn.b.p, hn.b.len);
            buf_free(&ho.b);
        }
        header_key(key, sizeof key, s->uid);
        /* written even when unchanged: its version then moves with every change, which is
         * what another front-end sharing the store compares (streams_sync) */
        (void)same;
        rows_add(w, key, fresh ? 0 : cur->ver, &hn, &next->ver);
    } else if (!fresh) {
        header_key(key, sizeof key, s->uid);
        rows_add(w, key, cur->ver, NULL, NULL);
    }
    /* shards */
    uint32_t n = next ? next->nshards : 0, m = fresh ? 0 : cur->nshards;
    for (uint32_t i = 0; i < (n > m ? n : m); i++) {
        shard_key(key, sizeof key, s->uid, i);
        if (i >= n) {
            rows_add(w, key, cur->shards[i].ver, NULL, NULL);
            continue;
        }
        struct shard *sh = &next->shards[i];
        if (i < m && shard_same(&cur->shards[i], sh))
            continue;
        struct enc e;
        enc_init(&e, WIRE_JSON);
        enc_shard_row(&e, sh);
        rows_add(w, key, i < m ? cur->shards[i].ver : 0, &e, &sh->ver);
    }
    /* tags */
    tags_key(key, sizeof key, s->uid);
    bool had = !fresh && cur->ntags, has = next && next->ntags;
    if (has) {
        struct enc tn, to;
        enc_tags_row(&tn, next);
        bool same = false;
        if (had) {
            enc_tags_row(&to, cur);
            same = to.b.len == tn.b.len && !memcmp(to.b.p, tn.b.p, tn.b.len);
            buf_free(&to.b);
        }
        if (same)
            buf_free(&tn.b);
        else
            rows_add(w, key, had ? cur->tags_ver : 0, &tn, &next->tags_ver);
    } else if (had) {
        rows_add(w, key, cur->tags_ver, NULL, next ? &next->tags_ver : NULL);
    }
    /* the name, taken when the stream is created and given back when it is retired; a stream
     * stored before accounts were kept moves its name row to its account and region */
    bool moved = cur && next && cur->old_name_row;
    if (!next || moved) {
        name_key(key, sizeof key, cur, cur->old_name_row);
        rows_add(w, key, STORE_ANY_VERSION, NULL, NULL);
    }
    if (!cur || moved) {
        name_key(key, sizeof key, next, false);
        struct enc e;
        enc_init(&e, WIRE_JSON);
        enc_int(&e, (int64_t)s->uid);
        rows_add(w, key, 0, &e, NULL);
    }
    /* the older format's value goes once its rows are written */
    if (cur && cur->legacy) {
        snprintf(key, sizeof key, "stream/%s", cur->name);
        rows_add(w, key, STORE_ANY_VERSION, NULL, NULL);
    }
}

/* The HTTP body cap: 7 MiB fits 5 MiB of records in base64 with their names and keys; once a
 * stream takes records over 1 MiB, PutRecords may carry 10 MiB, so the cap grows to fit. */
static void update_max_body(struct api *a)
{
    size_t cap = DEFAULT_MAX_BODY;
    for (size_t i = 0; i < a->streams->n; i++)
        if (a->streams->v[i]->max_record_kib > 1024)
            cap = 15u << 20;
    __atomic_store_n(&a->max_body, cap, __ATOMIC_RELAXED);
}

/* Persist next in place of cur (change lock held; either may be NULL) and swap it in. On
 * failure nothing changed and next is still the caller's. */
static int commit(struct api *a, struct stream *cur, struct stream *next)
{
    struct rows w = {0};
    rows_diff(&w, cur, next);
    int rc = rows_write(a, &w);
    rows_free(&w);
    if (rc)
        return rc;
    if (next) {
        next->legacy = false;
        next->old_name_row = false;
        if (cur && cur->retention_h != next->retention_h)
            for (uint32_t i = 0; i < next->nshards; i++)
                next->shards[i].trim_at = 0;
    }
    publish(a, cur, next);
    update_max_body(a);
    return 0;
}

/* ---- loading ---- */

static int64_t iget(const struct kv *o, const char *k)
{
    const struct kv *v = kv_get(o, k);
    return v && v->type == KV_NUM ? v->i : 0;
}

static bool bget(const struct kv *o, const char *k)
{
    const struct kv *v = kv_get(o, k);
    return v && v->type == KV_BOOL && v->b;
}

static u128 uget(const struct kv *o, const char *k)
{
    const struct kv *v = kv_get(o, k);
    u128 r = 0;
    if (v && v->type == KV_STR)
        u128_parse(v->s, &r);
    return r;
}

static void decode_shard(const struct kv *e, struct shard *sh)
{
    sh->index = (uint32_t)iget(e, "i");
    sh->start = uget(e, "start");
    sh->end = uget(e, "end");
    sh->created_ms = iget(e, "created");
    sh->closed_ms = iget(e, "closed");
    sh->end_pos = (uint64_t)iget(e, "endPos");
    sh->parent = (int32_t)iget(e, "parent");
    sh->adjacent_parent = (int32_t)iget(e, "adjacent");
    sh->pending = bget(e, "pending");
    sh->closing = bget(e, "closing");
    sh->sealed = bget(e, "sealed");
}

/* A stream header (v 2) or a whole stream in the older format (v 1, shards and tags inline). */
static struct stream *decode(const struct api *a, const char *text, size_t len, int version)
{
    struct arena ar;
    arena_init(&ar);
    struct kv *o;
    struct stream *s = NULL;
    if (json_parse_stored(&ar, text, len, &o) || o->type != KV_OBJ || iget(o, "v") != version)
        goto out;
    const struct kv *name = kv_get(o, "name"), *shards = kv_get(o, "shards"), *tags = kv_get(o, "tags");
    int64_t nshards =
        version == 1 ? (shards && shards->type == KV_ARR ? (int64_t)shards->n : -1) : iget(o, "nshards");
    int64_t status = iget(o, "status");
    if (!name || name->type != KV_STR || name->len > 128 || nshards < 0 || nshards > SHARD_INDEX_LIMIT ||
        status < ST_CREATING || status > ST_GONE) /* (status_names is indexed by it) */
        goto out;
    s = calloc(1, sizeof *s);
    if (!s)
        abort();
    memcpy(s->name, name->s, name->len + 1);
    const struct kv *acct = kv_get(o, "account"), *region = kv_get(o, "region");
    if (acct && acct->type == KV_STR && acct->len < sizeof s->account && region && region->type == KV_STR &&
        region->len < sizeof s->region) {
        memcpy(s->account, acct->s, acct->len + 1);
        memcpy(s->region, region->s, region->len + 1);
    } else { /* stored before accounts were kept: the server's own */
        snprintf(s->account, sizeof s->account, "%s", a->account);
        snprintf(s->region, sizeof s->region, "%s", a->region);
        s->old_name_row = true;
    }
    s->uid = (uint64_t)iget(o, "uid");
    s->status = (int)status;
    s->status_until = iget(o, "until");
    s->created_ms = iget(o, "created");
    s->retention_h = (int32_t)iget(o, "retention");
    s->on_demand = bget(o, "onDemand");
    s->max_record_kib = (int32_t)iget(o, "maxRecordKiB");
    s->resharding = bget(o, "resharding");
    if (s->max_record_kib < 1024)
        s->max_record_kib = 1024;
    s->metrics = (uint32_t)iget(o, "metrics") & STREAM_METRICS_ALL;
    s->warm = kv_get(o, "warmTarget") != NULL;
    s->warm_target = (int32_t)iget(o, "warmTarget");
    s->warm_current = (int32_t)iget(o, "warmCurrent");
    s->warm_until = iget(o, "warmUntil");
    const struct kv *ek = kv_get(o, "encKey"), *eid = kv_get(o, "encKid"), *ech = kv_get(o, "encChanges");
    if (ek && ek->type == KV_STR && eid && eid->type == KV_STR && ek->len < sizeof s->enc_key &&
        eid->len < sizeof s->enc_kid) {
        memcpy(s->enc_key, ek->s, ek->len + 1);
        memcpy(s->enc_kid, eid->s, eid->len + 1);
    }
    const struct kv *ep = kv_get(o, "encPrev");
    if (ep && ep->type == KV_STR && ep->len < sizeof s->enc_prev_kid) {
        memcpy(s->enc_prev_kid, ep->s, ep->len + 1);
        s->enc_switch_ms = iget(o, "encSwitch");
    }
    for (const struct kv *t = ech && ech->type == KV_ARR ? ech->child : NULL;
         t && s->nenc < STREAM_ENC_CHANGES; t = t->next)
        if (t->type == KV_NUM)
            s->enc_changes[s->nenc++] = t->i;
    const struct kv *sc = kv_get(o, "scalings");
    s->scalings = calloc(sc && sc->type == KV_ARR && sc->n ? sc->n : 1, sizeof *s->scalings);
    if (!s->scalings)
        abort();
    if (sc && sc->type == KV_ARR)
        for (const struct kv *t = sc->child; t; t = t->next)
            if (t->type == KV_NUM)
                s->scalings[s->nscalings++] = t->i;
    s->nshards = (uint32_t)nshards;
    s->shards = calloc(s->nshards ? s->nshards : 1, sizeof *s->shards);
    if (!s->shards)
        abort();
    for (uint32_t i = 0; i < s->nshards; i++)
        s->shards[i].index = UINT32_MAX; /* not loaded yet */
    if (version == 1) {
        uint32_t i = 0;
        for (const struct kv *e = shards->child; e; e = e->next, i++)
            decode_shard(e, &s->shards[i]);
        if (tags && tags->type == KV_OBJ)
            for (const struct kv *t = tags->child; t; t = t->next)
                if (t->type == KV_STR)
                    stream_tag_set(s, t->key, t->s);
    }
out:
    arena_free(&ar);
    return s;
}

struct loading {
    struct api *a;
    struct stream **v; /* by uid */
    size_t n, cap;
    int bad;
};

static void loading_add(struct loading *l, struct stream *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    l->v[l->n++] = s;
}

static struct stream *loading_find(struct loading *l, uint64_t uid)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->v[mid]->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->v[lo]->uid == uid ? l->v[lo] : NULL;
}

static int load_header(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                       uint64_t version)
{
    struct loading *l = ctx;
    struct stream *s = decode(l->a, val, vlen, 2);
    if (!s) {
        klog(KLOG_WARN, "skipping unreadable stream row %.*s", (int)klen, key);
        return 0;
    }
    s->ver = version;
    loading_add(l, s); /* rows come in key order, which is uid order */
    return 0;
}

/* "<prefix><uid>[/<index>]" */
static bool parse_row_key(const char *key, size_t klen, size_t plen, uint64_t *uid, uint32_t *ix)
{
    char t[64];
    if (klen <= plen || klen - plen >= sizeof t)
        return false;
    memcpy(t, key + plen, klen - plen);
    t[klen - plen] = 0;
    char *end;
    *uid = strtoull(t, &end, 10);
    if (ix) {
        if (*end != '/')
            return false;
        *ix = (uint32_t)strtoul(end + 1, &end, 10);
    }
    return *end == 0;
}

static int load_shard(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    struct loading *l = ctx;
    uint64_t uid;
    uint32_t ix;
    struct stream *s;
    struct arena ar;
    struct kv *o;
    if (!parse_row_key(key, klen, 6, &uid, &ix) || !(s = loading_find(l, uid)) || ix >= s->nshards)
        return 0; /* a row of a stream that is gone: nothing routes by it */
    arena_init(&ar);
    if (json_parse_stored(&ar, val, vlen, &o) == 0 && o->type == KV_OBJ) {
        decode_shard(o, &s->shards[ix]);
        s->shards[ix].ver = version;
    }
    arena_free(&ar);
    return 0;
}

static int load_tags(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    struct loading *l = ctx;
    uint64_t uid;
    struct stream *s;
    struct arena ar;
    struct kv *o;
    if (!parse_row_key(key, klen, 5, &uid, NULL) || !(s = loading_find(l, uid)))
        return 0;
    arena_init(&ar);
    if (json_parse_stored(&ar, val, vlen, &o) == 0 && o->type == KV_OBJ)
        for (const struct kv *t = o->child; t; t = t->next)
            if (t->type == KV_STR)
                stream_tag_set(s, t->key, t->s);
    s->tags_ver = version;
    arena_free(&ar);
    return 0;
}

static int load_legacy(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                       uint64_t version)
{
    struct loading *l = ctx;
    (void)version;
    struct stream *s = decode(l->a, val, vlen, 1);
    if (!s) {
        klog(KLOG_WARN, "skipping unreadable stream entry %.*s", (int)klen, key);
        return 0;
    }
    s->legacy = true;
    loading_add(l, s);
    return 0;
}

static int by_uid(const void *x, const void *y)
{
    const struct stream *a = *(struct stream *const *)x, *b = *(struct stream *const *)y;
    return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static int by_owner(const void *x, const void *y)
{
    const struct stream *b = *(struct stream *const *)y;
    return owner_cmp(*(struct stream *const *)x, b->account, b->region, b->name);
}

static void on_row(void *arg, const char *key);

int streams_open(struct api *a)
{
    struct streams *r = calloc(1, sizeof *r);
    if (!r)
        return STORE_NOMEM;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&r->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&r->ctl, NULL);
    pthread_mutex_init(&r->dirty_mu, NULL);
    r->next_uid = 1;
    a->streams = r;
    char *v;
    size_t len;
    if (store_meta_get(a->store, "next-uid", &v, &len, &r->next_uid_ver) == 0) {
        r->next_uid = strtoull(v, NULL, 10);
        free(v);
    }
    struct loading l = {.a = a};
    int rc = meta_scan(a, "st/", load_header, &l);
    if (!rc && l.n)
        qsort(l.v, l.n, sizeof *l.v, by_uid); /* in key order already; kept for safety */
    if (!rc)
        rc = meta_scan(a, "shard/", load_shard, &l);
    if (!rc)
        rc = meta_scan(a, "tags/", load_tags, &l);
    size_t nrows = l.n;
    if (!rc)
        rc = meta_scan(a, "stream/", load_legacy, &l);
    /* keep whole streams only; a legacy entry whose rows exist is left over from a migration */
    size_t kept = 0;
    for (size_t i = 0; i < l.n; i++) {
        struct stream *s = l.v[i];
        bool ok = true;
        for (uint32_t j = 0; j < s->nshards && ok; j++)
            ok = s->shards[j].index == j;
        if (s->legacy && loading_find(&(struct loading){.v = l.v, .n = nrows}, s->uid)) {
            char key[160];
            snprintf(key, sizeof key, "stream/%s", s->name);
            store_meta_put(a->store, key, NULL, 0);
            ok = false;
        } else if (!ok) {
            klog(KLOG_WARN, "skipping stream %s: a shard row is missing", s->name);
        }
        if (!ok) {
            stream_free(s);
            continue;
        }
        if (s->uid >= r->next_uid)
            r->next_uid = s->uid + 1;
        l.v[kept++] = s;
    }
    l.n = kept;
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, by_owner);
    r->v = l.v;
    r->n = r->cap = l.n;
    /* rewrite the older formats as rows (and the name rows of streams stored before accounts
     * were kept); on failure it is kept and rewritten at the next change */
    for (size_t i = 0; i < r->n && !rc; i++) {
        struct stream *s = r->v[i];
        if (!s->legacy && !s->old_name_row)
            continue;
        struct stream *next = stream_copy(s);
        if (commit(a, s, next)) {
            klog(KLOG_WARN, "cannot rewrite stream %s in the row format yet", s->name);
            stream_free(next);
        }
    }
    update_max_body(a);
    /* other front-ends' changes, when the store is shared (rows of ours are told too: they are
     * reloaded, found as they are, and left) */
    if (!rc && store_shared(a->store))
        for (const char *const *p = (const char *const[]){"st/", "shard/", "tags/", NULL}; *p && !rc; p++)
            rc = store_meta_watch(a->store, *p, on_row, a);
    return rc;
}

void streams_close(struct api *a)
{
    struct streams *r = a->streams;
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        stream_free(r->v[i]);
    free(r->v);
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->ctl);
    pthread_mutex_destroy(&r->dirty_mu);
    free(r);
    a->streams = NULL;
}

/* ---- changes ---- */

/* Take the next uid (change lock held): a compare-and-set on "next-uid", so front-ends that
 * share a store never hand out one uid twice; on a conflict the row is read again. */
static int take_uid(struct api *a, uint64_t *uid)
{
    struct streams *r = a->streams;
    for (int attempt = 0; attempt < 8; attempt++) {
        char t[32];
        int n = snprintf(t, sizeof t, "%" PRIu64, r->next_uid + 1);
        struct store_row row = {"next-uid", r->next_uid_ver, t, (size_t)n};
        int rc = meta_cas(a, &row, 1);
        if (rc == 0) {
            r->next_uid_ver = row.version;
            *uid = r->next_uid++;
            return 0;
        }
        if (rc != STORE_CONFLICT)
            return rc;
        char *v;
        size_t len;
        uint64_t ver = 0;
        if ((rc = store_meta_get(a->store, "next-uid", &v, &len, &ver)) && rc != STORE_NOT_FOUND)
            return rc;
        uint64_t next = rc ? 1 : strtoull(v, NULL, 10);
        if (!rc)
            free(v);
        if (next > r->next_uid)
            r->next_uid = next;
        r->next_uid_ver = ver;
    }
    return STORE_CONFLICT;
}

/* Forget gone stream s for good (change lock held): one write records that its logs must be
 * dropped and deletes its rows; then it leaves the registry. Returns 0 or a STORE_* code. */
static int retire(struct api *a, struct stream *s)
{
    struct rows w = {0};
    char key[48];
    snprintf(key, sizeof key, "drop/%" PRIu64, s->uid);
    struct enc e;
    enc_init(&e, WIRE_JSON);
    enc_int(&e, s->nshards);
    rows_add(&w, key, STORE_ANY_VERSION, &e, NULL);
    rows_diff(&w, s, NULL);
    int rc = rows_write(a, &w);
    rows_free(&w);
    if (rc)
        return rc;
    publish(a, s, NULL);
    update_max_body(a);
    return 0;
}

int streams_create(struct api *a, const char *account, const char *region, const char *name, uint32_t nshards,
                   bool on_demand, int32_t max_record_kib, int32_t warm_mibps, const struct tag *tags,
                   uint32_t ntags, int64_t now, struct stream **out)
{
    struct streams *r = a->streams;
    if (nshards > SHARD_INDEX_LIMIT || r->next_uid >= UID_LIMIT)
        return STREAMS_NO_IDS;
    /* a gone stream of the same name may still await its final removal */
    struct stream *old = find_any(r, account, region, name);
    if (old) {
        uint64_t old_uid = old->uid;
        int rc = retire(a, old);
        /* a shared store: the front-end doing the background work may have retired it first */
        if (rc == STORE_CONFLICT && store_shared(a->store) && (rc = streams_reload(a, old_uid)) == 0 &&
            find_any(r, account, region, name))
            rc = STORE_CONFLICT;
        if (rc)
            return rc;
    }
    uint64_t uid;
    int rc = take_uid(a, &uid);
    if (rc)
        return rc;
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->account, sizeof s->account, "%s", account);
    snprintf(s->region, sizeof s->region, "%s", region);
    s->uid = uid;
    s->status = ST_CREATING;
    s->status_until = now + a->cfg.create_ms;
    s->created_ms = now;
    s->retention_h = 24;
    s->on_demand = on_demand;
    s->max_record_kib = max_record_kib;
    if (warm_mibps >= 0) { /* scaled to it by the time the stream is ACTIVE */
        s->warm = true;
        s->warm_target = warm_mibps;
        s->warm_current = (int32_t)nshards;
        s->warm_until = s->status_until;
    }
    s->nshards = nshards;
    s->shards = calloc(nshards ? nshards : 1, sizeof *s->shards);
    s->scalings = calloc(1, sizeof *s->scalings);
    if (!s->shards || !s->scalings)
        abort();
    for (uint32_t i = 0; i < nshards; i++) {
        struct shard *sh = &s->shards[i];
        sh->index = i;
        shard_range(i, nshards, &sh->start, &sh->end);
        sh->created_ms = now;
        sh->parent = sh->adjacent_parent = -1;
    }
    for (uint32_t i = 0; i < ntags; i++)
        stream_tag_set(s, tags[i].key, tags[i].value);
    rc = commit(a, NULL, s);
    if (rc) {
        /* another front-end sharing the store took the name first */
        char key[256], *v;
        size_t len;
        name_key(key, sizeof key, s, false);
        stream_free(s);
        if (rc == STORE_CONFLICT && store_meta_get(a->store, key, &v, &len, NULL) == 0) {
            free(v);
            return STREAMS_EXISTS;
        }
        return rc;
    }
    *out = s;
    return 0;
}

static int reshard_apply(struct api *a, struct stream *s, int64_t now);

int streams_commit(struct api *a, struct stream *cur, struct stream *next, int64_t now)
{
    int rc = commit(a, cur, next);
    if (rc)
        return rc;
    /* a reshard without an UPDATING period (--update-stream-ms 0) completes now */
    if (next->resharding && now >= next->status_until)
        reshard_apply(a, next, now);
    return 0;
}

uint32_t streams_open_shards(struct api *a, const char *account, const char *region, int64_t now)
{
    uint32_t n = 0;
    size_t ns;
    struct stream **v = streams_of(a, account, region, &ns);
    for (size_t i = 0; i < ns; i++) {
        struct stream *s = v[i];
        if (stream_status(s, now) == ST_GONE)
            continue;
        for (uint32_t j = 0; j < s->nshards; j++)
            n += shard_open(&s->shards[j]);
    }
    return n;
}

static int tag_cmp(const void *x, const void *y)
{
    return strcmp(((const struct tag *)x)->key, ((const struct tag *)y)->key);
}

void stream_tag_set(struct stream *s, const char *k, const char *v)
{
    for (uint32_t i = 0; i < s->ntags; i++) {
        if (!strcmp(s->tags[i].key, k)) {
            char *nv = xstrdup(v);
            free(s->tags[i].value);
            s->tags[i].value = nv;
            return;
        }
    }
    struct tag *t = realloc(s->tags, (s->ntags + 1) * sizeof *t);
    if (!t)
        abort();
    s->tags = t;
    t[s->ntags].key = xstrdup(k);
    t[s->ntags].value = xstrdup(v);
    s->ntags++;
    qsort(s->tags, s->ntags, sizeof *s->tags, tag_cmp);
}

void stream_tag_remove(struct stream *s, const char *k)
{
    for (uint32_t i = 0; i < s->ntags; i++) {
        if (!strcmp(s->tags[i].key, k)) {
            free(s->tags[i].key);
            free(s->tags[i].value);
            memmove(s->tags + i, s->tags + i + 1, (s->ntags - i - 1) * sizeof *s->tags);
            s->ntags--;
            return;
        }
    }
}

/* ---- resharding ---- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait, holding no registry lock, until no append routed before now is still committing:
 * true once the count of appends in flight was seen at zero, false after a second. */
static bool appends_drained(struct api *a)
{
    for (int i = 0; i < 1000; i++) {
        if (__atomic_load_n(&a->inflight, __ATOMIC_ACQUIRE) == 0)
            return true;
        sleep_ms(1);
    }
    return false;
}

/* Complete a staged reshard whose UPDATING period is over (change lock held; s is current).
 * Step 1: the parents are sealed (routed to no more) and the children open, written and
 * swapped in. Step 2, once every append routed to a parent before that swap has committed:
 * each parent closes at its last position and the stream is ACTIVE. Returns 0, a STORE_* code,
 * or 1 when appends are still committing (the maintenance thread tries again). */
static int reshard_apply(struct api *a, struct stream *s, int64_t now)
{
    bool staged = false;
    for (uint32_t i = 0; i < s->nshards && !staged; i++)
        staged =
            s->shards[i].pending || (s->shards[i].closing && !s->shards[i].sealed && !s->shards[i].closed_ms);
    if (staged) {
        /* a shared store: each parent's log is sealed before any front-end can route to a
         * child, so a write that another one routes by the older layout cannot land in the
         * parent after a later write of its key went to a child (it is refused, and re-routed) */
        for (uint32_t i = 0; i < s->nshards && store_shared(a->store); i++) {
            const struct shard *sh = &s->shards[i];
            int rc = sh->closing && !sh->closed_ms ? store_log_seal(a->store, log_id(s->uid, sh->index)) : 0;
            if (rc)
                return rc;
        }
        struct stream *next = stream_copy(s);
        for (uint32_t i = 0; i < next->nshards; i++) {
            struct shard *sh = &next->shards[i];
            if (sh->closing && !sh->closed_ms)
                sh->sealed = true;
            if (sh->pending) {
                sh->pending = false;
                sh->created_ms = now;
            }
        }
        int rc = commit(a, s, next);
        if (rc) {
            stream_free(next);
            return rc;
        }
        s = next;
    }
    if (!appends_drained(a))
        return 1;
    struct stream *next = stream_copy(s);
    for (uint32_t i = 0; i < next->nshards; i++) {
        struct shard *sh = &next->shards[i];
        if (sh->sealed) {
            /* the store refuses the parent's appends from here on, whichever front-end routes
             * them, and every acknowledged one is readable: its last position is final */
            uint64_t last = 0;
            int rc = store_log_seal(a->store, log_id(next->uid, sh->index));
            if (rc == 0)
                rc = store_log_bounds(a->store, log_id(next->uid, sh->index), &last, NULL);
            if (rc) {
                stream_free(next);
                return rc;
            }
            sh->closed_ms = now;
            sh->end_pos = last > pos_floor(now) ? last : pos_floor(now);
            sh->sealed = false;
            sh->trim_at = 0;
        }
        sh->closing = false;
    }
    next->resharding = false;
    if (next->status != ST_DELETING) /* deleted while UPDATING: it stays DELETING */
        next->status = ST_ACTIVE;
    int rc = commit(a, s, next);
    if (rc)
        stream_free(next);
    return rc;
}

/* Stage a new shard; returns its index. s->shards may move. */
static uint32_t add_shard(struct stream *s, u128 start, u128 end, int32_t parent, int32_t adjacent,
                          int64_t now)
{
    struct shard *v = realloc(s->shards, (s->nshards + 1) * sizeof *v);
    if (!v)
        abort();
    s->shards = v;
    uint32_t ix = s->nshards++;
    v[ix] = (struct shard){.index = ix,
                           .start = start,
                           .end = end,
                           .created_ms = now,
                           .parent = parent,
                           .adjacent_parent = adjacent,
                           .pending = true};
    return ix;
}

static void finish(struct api *a, struct stream *s, int64_t now)
{
    s->status = ST_UPDATING;
    s->status_until = now + (a->cfg.update_ms > 0 ? a->cfg.update_ms : 0);
    s->resharding = true;
}

bool stream_indices_left(const struct stream *s, uint32_t more)
{
    return (uint64_t)s->nshards + more <= SHARD_INDEX_LIMIT;
}

int stream_split(struct api *a, struct stream *s, uint32_t shard, u128 new_start, int64_t now)
{
    if (!stream_indices_left(s, 2))
        return STREAMS_NO_IDS;
    s->shards[shard].closing = true;
    u128 start = s->shards[shard].start, end = s->shards[shard].end;
    add_shard(s, start, new_start - 1, (int32_t)shard, -1, now);
    add_shard(s, new_start, end, (int32_t)shard, -1, now);
    finish(a, s, now);
    return 0;
}

int stream_merge(struct api *a, struct stream *s, uint32_t shard, uint32_t adjacent, int64_t now)
{
    if (!stream_indices_left(s, 1))
        return STREAMS_NO_IDS;
    s->shards[shard].closing = s->shards[adjacent].closing = true;
    add_shard(s, s->shards[shard].start, s->shards[adjacent].end, (int32_t)shard, (int32_t)adjacent, now);
    finish(a, s, now);
    return 0;
}

static int by_start(const void *x, const void *y)
{
    const struct shard *a = *(struct shard *const *)x, *b = *(struct shard *const *)y;
    return a->start < b->start ? -1 : a->start > b->start;
}

/* Uniform scaling as splits and merges, so that every new shard has at most two parents:
 * 1. each open shard is split at every target boundary strictly inside it (its fragments
 *    have it as their parent);
 * 2. the fragments that make up one target range are merged pairwise, left to right (an
 *    intermediate merge result is closed at once and has no records).
 * A consumer that reads parents before children therefore keeps per-key order. At most
 * 2 * (open + target) new shards are made; with fewer indices left the stream is unchanged. */
int stream_scale(struct api *a, struct stream *s, uint32_t target, int64_t now)
{
    uint32_t nopen = 0;
    for (uint32_t i = 0; i < s->nshards; i++)
        nopen += shard_open(&s->shards[i]);
    if (!stream_indices_left(s, 2 * (nopen + target)))
        return STREAMS_NO_IDS;
    uint32_t *open = malloc((nopen ? nopen : 1) * sizeof *open);
    if (!open)
        abort();
    nopen = 0;
    for (uint32_t i = 0; i < s->nshards; i++)
        if (shard_open(&s->shards[i])) {
            open[nopen++] = i;
            s->shards[i].closing = true;
        }
    /* open shards in key order (they tile the key space) */
    struct shard **ord = malloc((nopen ? nopen : 1) * sizeof *ord);
    if (!ord)
        abort();
    for (uint32_t i = 0; i < nopen; i++)
        ord[i] = &s->shards[open[i]];
    qsort(ord, nopen, sizeof *ord, by_start);
    for (uint32_t i = 0; i < nopen; i++)
        open[i] = ord[i]->index;
    free(ord);

    /* phase 1: fragments, each tagged with the target range it belongs to */
    uint32_t cap = nopen + target + 1, nfrag = 0;
    uint32_t *frag = malloc(cap * sizeof *frag), *tgt = malloc(cap * sizeof *tgt);
    bool *whole = malloc(cap * sizeof *whole); /* the fragment is an old shard, unsplit (closed) */
    if (!frag || !tgt || !whole)
        abort();
    uint32_t t = 0;
    for (uint32_t i = 0; i < nopen; i++) {
        uint32_t p = open[i];
        u128 lo = s->shards[p].start, hi = s->shards[p].end;
        for (;;) {
            u128 ts, te;
            shard_range(t, target, &ts, &te);
            while (te < lo) {
                t++;
                shard_range(t, target, &ts, &te);
            }
            u128 fe = te < hi ? te : hi;
            whole[nfrag] = lo == s->shards[p].start && fe == hi; /* no boundary inside */
            frag[nfrag] = whole[nfrag] ? p : add_shard(s, lo, fe, (int32_t)p, -1, now);
            tgt[nfrag++] = t;
            if (fe == hi)
                break;
            lo = fe + 1;
        }
    }
    /* phase 2: merge the fragments of each target range */
    for (uint32_t i = 0; i < nfrag;) {
        uint32_t j = i;
        while (j < nfrag && tgt[j] == tgt[i])
            j++;
        if (j - i == 1) {
            if (whole[i]) /* an old shard equal to its target range: one child replaces it */
                add_shard(s, s->shards[frag[i]].start, s->shards[frag[i]].end, (int32_t)frag[i], -1, now);
        } else {
            uint32_t acc = frag[i];
            for (uint32_t k = i + 1; k < j; k++) {
                uint32_t next = frag[k];
                /* a fragment merged away at once is an intermediate shard without records */
                s->shards[acc].closing = s->shards[next].closing = true;
                acc =
                    add_shard(s, s->shards[acc].start, s->shards[next].end, (int32_t)acc, (int32_t)next, now);
            }
        }
        i = j;
    }
    finish(a, s, now);
    free(whole);
    free(frag);
    free(tgt);
    free(open);
    return 0;
}

/* ---- maintenance ---- */

#define TRIM_BATCH 5000
#define MAINT_TICK_MS 100 /* lifecycle changes land this often */
#define SWEEP_TICK_MS 500 /* trimming and dropping this often */
#define SLOW_PASS_MS 1000 /* a maintenance pass that long is logged */

/* Drop a piece of log: 0 once it is gone, 1 while records remain, or a STORE_* code. */
static int drop_piece(struct api *a, uint64_t log)
{
    int rc = store_log_drop(a->store, log);
    return rc == STORE_BUSY ? 1 : rc;
}

struct drop_list {
    char keys[64][48];
    uint32_t nshards[64];
    int n;
};

static int collect_drop(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                        uint64_t version)
{
    struct drop_list *d = ctx;
    (void)version;
    if (d->n < 64 && klen < sizeof d->keys[0]) {
        char t[16] = {0};
        memcpy(t, val, vlen < sizeof t - 1 ? vlen : sizeof t - 1);
        memcpy(d->keys[d->n], key, klen);
        d->keys[d->n][klen] = 0;
        d->nshards[d->n] = (uint32_t)strtoul(t, NULL, 10);
        d->n++;
    }
    return d->n >= 64;
}

/* Remove the logs of retired streams, a bounded piece at a time (the sweep thread). Visits the
 * store only while some are left (known from the last pass or from a retirement since). */
static void drop_logs(struct api *a, bool *pending)
{
    if (!*pending)
        return;
    struct drop_list d = {.n = 0};
    if (meta_scan(a, "drop/", collect_drop, &d))
        return;
    *pending = d.n > 0;
    for (int i = 0; i < d.n && !a->stopping; i++) {
        uint64_t uid = strtoull(d.keys[i] + 5, NULL, 10);
        bool gone = true;
        for (uint32_t sh = 0; sh < d.nshards[i] && gone; sh++) {
            int rc = drop_piece(a, log_id(uid, sh));
            if (rc < 0) {
                klog(KLOG_WARN, "dropping the logs of stream %" PRIu64 ": storage error %d", uid, rc);
                return;
            }
            gone = rc == 0;
        }
        if (!gone)
            continue;
        struct store_row row = {d.keys[i], STORE_ANY_VERSION, NULL, 0};
        int rc = meta_cas(a, &row, 1);
        if (rc)
            klog(KLOG_WARN, "forgetting dropped stream %" PRIu64 ": storage error %d", uid, rc);
    }
}

static void warn_change(const struct stream *s, const char *what, int rc)
{
    klog(KLOG_WARN, "stream %s: cannot %s (storage error %d); retrying", s->name, what, rc);
}

/* Make lifecycle transitions durable, complete reshards, and retire gone streams (change lock
 * held). A failed write is logged and tried again at the next tick; memory keeps the version
 * on disk. Returns whether a stream was retired. */
static bool settle(struct api *a, int64_t now)
{
    struct streams *r = a->streams;
    bool retired = false;
    for (size_t i = 0; i < r->n;) {
        struct stream *s = r->v[i];
        int st = stream_status(s, now);
        int rc = 0;
        if (st == ST_GONE) {
            if ((rc = retire(a, s)) == 0) {
                retired = true;
                continue; /* r->v[i] is the next stream now */
            }
            warn_change(s, "retire it", rc);
        } else if (s->resharding) {
            if (now >= s->status_until && (rc = reshard_apply(a, s, now)) < 0)
                warn_change(s, "complete its reshard", rc);
        } else if (st != s->status) {
            struct stream *next = stream_copy(s);
            next->status = st;
            if ((rc = commit(a, s, next))) {
                warn_change(s, "record its status", rc);
                stream_free(next);
            }
        }
        i++;
    }
    return retired;
}

/* The shards whose trim is due, copied out so the store is called without the change lock. */
struct trim_job {
    uint64_t uid;
    uint32_t shard;
    uint64_t below;
    int64_t retention_ms;
    bool closed;
};

/* Delete records past each stream's retention, TRIM_BATCH per short transaction. A shard is
 * visited only when its oldest record is due (shard.trim_at), so nothing is written when
 * nothing is due; a closed shard whose records are all gone is not visited again. */
static void trim_expired(struct api *a, int64_t now)
{
    struct streams *r = a->streams;
    size_t n = 0, cap = 0;
    struct trim_job *jobs = NULL;
    streams_change_lock(a);
    for (size_t i = 0; i < r->n; i++) {
        struct stream *s = r->v[i];
        int64_t keep = (int64_t)s->retention_h * 3600000;
        for (uint32_t j = 0; j < s->nshards; j++) {
            struct shard *sh = &s->shards[j];
            if (sh->trim_at > now || sh->pending)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                jobs = realloc(jobs, cap * sizeof *jobs);
                if (!jobs)
                    abort();
            }
            jobs[n++] = (struct trim_job){s->uid, sh->index, pos_floor(now - keep), keep, sh->closed_ms != 0};
        }
    }
    streams_change_unlock(a);
    for (size_t i = 0; i < n && !a->stopping; i++) {
        struct trim_job *t = &jobs[i];
        uint64_t log = log_id(t->uid, t->shard), first = 0;
        size_t del;
        int rc;
        do {
            del = 0;
            rc = store_trim(a->store, log, t->below, TRIM_BATCH, &del);
        } while (!rc && del == TRIM_BATCH && !a->stopping);
        if (!rc)
            rc = store_log_bounds(a->store, log, NULL, &first);
        int64_t at;
        if (rc) {
            klog(KLOG_WARN, "trimming log %" PRIu64 ": storage error %d", log, rc);
            at = now + 5000; /* try again in a while */
        } else if (first) {
            at = pos_ms(first) + t->retention_ms + 1; /* when the oldest record expires */
        } else {
            at = t->closed ? INT64_MAX : now + t->retention_ms; /* a record written now */
        }
        /* the stream may have been replaced meanwhile: note it on the current version */
        streams_change_lock(a);
        for (size_t k = 0; k < r->n; k++) {
            struct stream *s = r->v[k];
            if (s->uid == t->uid && t->shard < s->nshards &&
                (s->shards[t->shard].closed_ms != 0) == t->closed &&
                (int64_t)s->retention_h * 3600000 == t->retention_ms)
                s->shards[t->shard].trim_at = at;
        }
        streams_change_unlock(a);
    }
    free(jobs);
}

#define HOT_RECORDS 1000 /* one shard's write capacity per second */
#define HOT_BYTES (1u << 20)
#define HOT_TICKS 3 /* seconds above capacity before an on-demand shard splits */

/* Every front-end, once a second, change lock held: what was routed to each shard of an
 * on-demand stream in the second that ended becomes its last second (published to the
 * leader by frontends.c). */
static void roll_offered(struct api *a)
{
    struct streams *r = a->streams;
    for (size_t i = 0; i < r->n; i++) {
        struct stream *s = r->v[i];
        for (uint32_t j = 0; s->on_demand && j < s->nshards; j++) {
            struct shard *sh = &s->shards[j];
            sh->last = __atomic_exchange_n(&sh->offered, 0, __ATOMIC_RELAXED);
            sh->last_bytes = __atomic_exchange_n(&sh->offered_bytes, 0, __ATOMIC_RELAXED);
        }
    }
}

size_t streams_offered_publish(struct api *a, char *out, size_t cap)
{
    struct streams *r = a->streams;
    size_t len = 0;
    streams_change_lock(a);
    for (size_t i = 0; i < r->n; i++) {
        struct stream *s = r->v[i];
        for (uint32_t j = 0; s->on_demand && j < s->nshards; j++) {
            struct shard *sh = &s->shards[j];
            if (!sh->last || !shard_open(sh))
                continue;
            uint64_t log = log_id(s->uid, sh->index);
            int n = snprintf(out + len, cap - len, " h%" PRIu64 "=%" PRIu64 " v%" PRIu64 "=%" PRIu64, log,
                             sh->last, log, sh->last_bytes);
            if (n < 0 || (size_t)n >= cap - len)
                goto full;
            len += (size_t)n;
        }
    }
full:
    if (cap)
        out[len] = 0;
    streams_change_unlock(a);
    return len;
}

void streams_offered_others(struct api *a, const struct offer *v, size_t n)
{
    struct streams *r = a->streams;
    streams_change_lock(a);
    for (size_t i = 0; i < r->n; i++) {
        struct stream *s = r->v[i];
        for (uint32_t j = 0; s->on_demand && j < s->nshards; j++) {
            struct shard *sh = &s->shards[j];
            uint64_t log = log_id(s->uid, sh->index);
            sh->others = sh->others_bytes = 0;
            for (size_t k = 0; k < n; k++)
                if (v[k].log == log) {
                    sh->others = v[k].recs;
                    sh->others_bytes = v[k].bytes;
                }
        }
    }
    streams_change_unlock(a);
}

/* On-demand capacity: a shard whose offered write rate (through every front-end) stays above
 * one shard's capacity for HOT_TICKS seconds running is split at the middle of its range,
 * through the same lineage as SplitShard. Called once a second after roll_offered, change
 * lock held. */
static void scale_on_demand(struct api *a, int64_t now)
{
    struct streams *r = a->streams;
    for (size_t i = 0; i < r->n; i++) {
        struct stream *s = r->v[i];
        if (!s->on_demand || stream_status(s, now) != ST_ACTIVE)
            continue;
        for (uint32_t j = 0; j < s->nshards; j++) {
            struct shard *sh = &s->shards[j];
            uint64_t recs = sh->last + sh->others, bytes = sh->last_bytes + sh->others_bytes;
            if (!shard_open(sh))
                continue;
            sh->hot_ticks = recs > HOT_RECORDS || bytes > HOT_BYTES ? sh->hot_ticks + 1 : 0;
            if (sh->hot_ticks < HOT_TICKS || sh->end - sh->start < 2 ||
                streams_open_shards(a, s->account, s->region, now) + 1 > (uint32_t)a->cfg.shard_limit)
                continue;
            sh->hot_ticks = 0;
            u128 mid = sh->start + (sh->end - sh->start) / 2 + 1;
            struct stream *next = stream_copy(s);
            int rc = stream_split(a, next, sh->index, mid, now);
            if (rc == 0 && (rc = streams_commit(a, s, next, now)) == 0)
                break; /* one split per stream per second; s is freed */
            if (rc)
                warn_change(s, "split a hot shard", rc);
            stream_free(next);
            break;
        }
    }
}

/* ---- changes made through other front-ends ---- */

/* The store's report of a changed row (an engine thread): remember its stream and wake the
 * maintenance thread. NULL: any row may have changed. */
static void on_row(void *arg, const char *key)
{
    struct api *a = arg;
    struct streams *r = a->streams;
    uint64_t uid = 0;
    bool all = !key;
    if (key) {
        const char *p = !strncmp(key, "st/", 3)      ? key + 3
                        : !strncmp(key, "shard/", 6) ? key + 6
                        : !strncmp(key, "tags/", 5)  ? key + 5
                                                     : NULL;
        if (!p)
            return;
        uid = strtoull(p, NULL, 10);
    }
    pthread_mutex_lock(&r->dirty_mu);
    bool known = false;
    for (size_t i = 0; i < r->ndirty && !known; i++)
        known = r->dirty[i] == uid;
    if (all || r->ndirty == sizeof r->dirty / sizeof *r->dirty)
        r->dirty_all = true;
    else if (!known)
        r->dirty[r->ndirty++] = uid;
    pthread_mutex_unlock(&r->dirty_mu);
    pthread_mutex_lock(&a->maint_mu);
    pthread_cond_signal(&a->maint_cv);
    pthread_mutex_unlock(&a->maint_mu);
}

static struct stream *find_uid(struct streams *r, uint64_t uid)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i]->uid == uid)
            return r->v[i];
    return NULL;
}

static bool same_versions(const struct stream *x, const struct stream *y)
{
    if (x->ver != y->ver || x->tags_ver != y->tags_ver || x->nshards != y->nshards)
        return false;
    for (uint32_t i = 0; i < x->nshards; i++)
        if (x->shards[i].ver != y->shards[i].ver)
            return false;
    return true;
}

/* Read stream uid from its rows and swap it in if they are newer than what this registry has
 * (change lock held); a stream whose header row is gone leaves. */
static int reload(struct api *a, uint64_t uid)
{
    struct streams *r = a->streams;
    char key[48];
    struct loading l = {.a = a};
    header_key(key, sizeof key, uid);
    int rc = meta_scan(a, key, load_header, &l);
    snprintf(key, sizeof key, "shard/%020" PRIu64 "/", uid);
    if (!rc && l.n)
        rc = meta_scan(a, key, load_shard, &l);
    tags_key(key, sizeof key, uid);
    if (!rc && l.n)
        rc = meta_scan(a, key, load_tags, &l);
    struct stream *fresh = l.n ? l.v[0] : NULL, *cur = find_uid(r, uid);
    free(l.v);
    bool whole = fresh != NULL;
    for (uint32_t j = 0; fresh && j < fresh->nshards && whole; j++)
        whole = fresh->shards[j].index == j;
    if (rc || (fresh && !whole)) { /* caught between two writes: the next report comes */
        stream_free(fresh);
        return rc;
    }
    if (cur && fresh && same_versions(cur, fresh)) {
        stream_free(fresh);
        return 0;
    }
    if (fresh) { /* a stream that took the name of one retired elsewhere replaces it */
        struct stream *other = find_any(r, fresh->account, fresh->region, fresh->name);
        if (other && other != cur)
            publish(a, other, NULL);
        if (fresh->uid >= r->next_uid)
            r->next_uid = fresh->uid + 1;
    }
    if (cur && fresh && owner_cmp(cur, fresh->account, fresh->region, fresh->name)) { /* names are fixed */
        stream_free(fresh);
        return 0;
    }
    /* a KMS-encrypted stream changed by another front-end: its keys here follow it */
    if (fresh && a->dk && (fresh->enc_kid[0] || fresh->enc_prev_kid[0]))
        datakeys_stream_key(a->dk, fresh->uid, fresh->enc_prev_kid, fresh->enc_kid, fresh->enc_switch_ms);
    publish(a, cur, fresh);
    update_max_body(a);
    return 0;
}

int streams_reload(struct api *a, uint64_t uid) { return reload(a, uid); }

static int collect_uid(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                       uint64_t version)
{
    (void)val, (void)vlen, (void)version;
    struct loading *l = ctx;
    uint64_t uid;
    if (parse_row_key(key, klen, 3, &uid, NULL)) {
        struct stream *s = calloc(1, sizeof *s);
        if (!s)
            return 1;
        s->uid = uid;
        loading_add(l, s);
    }
    return 0;
}

static void refresh(struct api *a);

struct versions {
    uint64_t uid[4096], ver[4096];
    size_t n;
    bool overflow;
};

static int collect_version(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                           uint64_t version)
{
    (void)val, (void)vlen;
    struct versions *v = ctx;
    uint64_t uid;
    if (!parse_row_key(key, klen, 3, &uid, NULL))
        return 0;
    if (v->n == sizeof v->uid / sizeof *v->uid) {
        v->overflow = true;
        return 1;
    }
    v->uid[v->n] = uid;
    v->ver[v->n++] = version;
    return 0;
}

void streams_sync(struct api *a)
{
    struct streams *r = a->streams;
    struct versions *v = malloc(sizeof *v);
    if (!v)
        return;
    v->n = 0;
    v->overflow = false;
    streams_change_lock(a);
    if (meta_scan(a, "st/", collect_version, v) == 0 && !v->overflow) {
        for (size_t i = 0; i < v->n; i++) {
            struct stream *s = find_uid(r, v->uid[i]);
            if (!s || s->ver != v->ver[i])
                reload(a, v->uid[i]);
        }
        for (size_t i = 0; i < r->n;) { /* gone from the rows: retired elsewhere */
            struct stream *s = r->v[i];
            bool listed = false;
            for (size_t k = 0; k < v->n && !listed; k++)
                listed = v->uid[k] == s->uid;
            if (!listed && !s->legacy) {
                publish(a, s, NULL);
                continue;
            }
            i++;
        }
        update_max_body(a);
    } else if (v->overflow) { /* very many streams: the full reload */
        pthread_mutex_lock(&r->dirty_mu);
        r->dirty_all = true;
        pthread_mutex_unlock(&r->dirty_mu);
        refresh(a);
    }
    streams_change_unlock(a);
    free(v);
}

bool streams_known(struct api *a, const char *account, const char *region, const char *name)
{
    streams_rdlock(a);
    bool known = find_any(a->streams, account, region, name) != NULL;
    streams_unlock(a);
    return known;
}

/* Reload what other front-ends changed (change lock held). */
static void refresh(struct api *a)
{
    struct streams *r = a->streams;
    uint64_t uids[64];
    pthread_mutex_lock(&r->dirty_mu);
    bool all = r->dirty_all;
    size_t n = r->ndirty;
    memcpy(uids, r->dirty, n * sizeof *uids);
    r->ndirty = 0;
    r->dirty_all = false;
    pthread_mutex_unlock(&r->dirty_mu);
    if (all) { /* every stream the rows name, and every one this registry has */
        struct loading l = {.a = a};
        if (meta_scan(a, "st/", collect_uid, &l) == 0) {
            for (size_t i = 0; i < l.n; i++)
                reload(a, l.v[i]->uid);
            for (size_t i = 0; i < r->n;) {
                struct stream *s = r->v[i];
                bool listed = loading_find(&l, s->uid) != NULL;
                if (!listed && !s->legacy) {
                    publish(a, s, NULL);
                    continue;
                }
                i++;
            }
        } else {
            pthread_mutex_lock(&r->dirty_mu);
            r->dirty_all = true; /* try again next tick */
            pthread_mutex_unlock(&r->dirty_mu);
        }
        for (size_t i = 0; i < l.n; i++) /* the uids are looked up until here */
            free(l.v[i]);
        free(l.v);
        update_max_body(a);
        return;
    }
    for (size_t i = 0; i < n; i++)
        reload(a, uids[i]);
}

/* Wait on cv (maint_mu held) for ms or until signalled. */
static void tick_wait(struct api *a, pthread_cond_t *cv, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(cv, &a->maint_mu, &ts);
}

/* One front-end of those sharing a store does the background work (an embedded store: this
 * one, always). */
static bool leading(struct api *a) { return store_lease(a->store, "maintenance") == 0; }

void *streams_maintain(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-maint"); /* top -H, perf */
    struct api *a = arg;
    pthread_mutex_lock(&a->maint_mu);
    int tick = 0;
    while (!a->stopping) {
        pthread_mutex_unlock(&a->maint_mu);
        int64_t now = clock_now_ms();
        bool leader = leading(a);
        frontends_tick(a);
        streams_change_lock(a);
        refresh(a);
        consumers_refresh(a);
        if (leader)
            consumers_settle(a, now);
        /* cheap when nothing is due: lifecycle changes land within a tick */
        if (leader && settle(a, now))
            __atomic_store_n(&a->drops, true, __ATOMIC_RELEASE);
        if (tick % 10 == 0)
            roll_offered(a);
        if (leader && tick % 10 == 0)
            scale_on_demand(a, now);
        streams_change_unlock(a);
        put_reroute(a, false);
        if (leader && tick % 600 == 0) /* a minute: every KMS operation also makes what is due */
            kms_maintain(a, now);      /* key deletions and automatic rotations that are due */
        int64_t took = clock_now_ms() - now;
        if (took >= SLOW_PASS_MS) /* transitions and reshards waited that long: the store is slow */
            klog(KLOG_WARN, "a maintenance pass took %" PRId64 " ms", took);
        tick++;
        pthread_mutex_lock(&a->maint_mu);
        if (!a->stopping)
            tick_wait(a, &a->maint_cv, MAINT_TICK_MS);
    }
    pthread_mutex_unlock(&a->maint_mu);
    put_reroute(a, true);
    return NULL;
}

void *streams_sweep(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-sweep"); /* top -H, perf */
    struct api *a = arg;
    pthread_mutex_lock(&a->maint_mu);
    while (!a->stopping) {
        pthread_mutex_unlock(&a->maint_mu);
        if (leading(a)) {
            trim_expired(a, clock_now_ms());
            bool drops = __atomic_exchange_n(&a->drops, false, __ATOMIC_ACQ_REL);
            drop_logs(a, &drops);
            if (drops) /* some left, or the store was away: the next pass goes on */
                __atomic_store_n(&a->drops, true, __ATOMIC_RELEASE);
        }
        pthread_mutex_lock(&a->maint_mu);
        if (!a->stopping)
            tick_wait(a, &a->sweep_cv, SWEEP_TICK_MS);
    }
    pthread_mutex_unlock(&a->maint_mu);
    return NULL;
}
