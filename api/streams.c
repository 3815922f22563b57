/* streams.c: the stream registry: every stream in memory, persisted in the store's metadata.
 *
 * Model. A sorted array of stream pointers behind one rwlock. Data-plane calls hold the read
 * lock only to route (find the stream and shard, copy ids), never across a storage call;
 * control-plane calls hold the write lock and persist the changed stream before they answer.
 * A stream is stored as "stream/<name>" -> JSON (this module's own format, versioned "v":1).
 *
 * Lifecycle. Transitions are timestamps, not timers: a stream stores its status and the time
 * it ends (CREATING -> ACTIVE, UPDATING -> ACTIVE, DELETING -> gone), and readers compute the
 * effective status from the clock without writing. The maintenance thread later makes the
 * change durable, and for a gone stream removes its records in bounded batches: it first
 * writes "drop/<uid>" so the removal resumes after a restart, then forgets the stream. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include "internal.h"

struct streams {
    pthread_rwlock_t lock;
    struct stream **v; /* owned, sorted by name */
    size_t n, cap;
    uint64_t next_uid;
};

static const char *const status_names[] = {"CREATING", "ACTIVE", "DELETING", "UPDATING", "GONE"};

const char *stream_status_name(int st) { return status_names[st]; }

int stream_status(const struct stream *s, int64_t now)
{
    if (s->resharding) /* UPDATING until the maintenance thread has applied it */
        return ST_UPDATING;
    switch (s->status) {
    case ST_CREATING:
    case ST_UPDATING: return now >= s->status_until ? ST_ACTIVE : s->status;
    case ST_DELETING: return now >= s->status_until ? ST_GONE : ST_DELETING;
    default: return s->status;
    }
}

void streams_rdlock(struct api *a) { pthread_rwlock_rdlock(&a->streams->lock); }
void streams_wrlock(struct api *a) { pthread_rwlock_wrlock(&a->streams->lock); }
void streams_unlock(struct api *a) { pthread_rwlock_unlock(&a->streams->lock); }

static size_t lower_bound(struct streams *r, const char *name)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(r->v[mid]->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct stream *find_any(struct streams *r, const char *name)
{
    size_t i = lower_bound(r, name);
    return i < r->n && !strcmp(r->v[i]->name, name) ? r->v[i] : NULL;
}

struct stream *streams_find(struct api *a, const char *name, int64_t now)
{
    struct stream *s = find_any(a->streams, name);
    return s && stream_status(s, now) != ST_GONE ? s : NULL;
}

struct stream **streams_list(struct api *a, size_t *n)
{
    *n = a->streams->n;
    return a->streams->v;
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
    free(s->scalings);
    free(s);
}

static void insert(struct streams *r, struct stream *s)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        struct stream **v = realloc(r->v, r->cap * sizeof *v);
        if (!v)
            abort();
        r->v = v;
    }
    size_t i = lower_bound(r, s->name);
    memmove(r->v + i + 1, r->v + i, (r->n - i) * sizeof *r->v);
    r->v[i] = s;
    r->n++;
}

/* ---- persistence ---- */

static void put_u128(struct enc *e, const char *k, u128 v)
{
    char t[40];
    u128_str(t, v);
    enc_key(e, k);
    enc_strz(e, t);
}

static int encode(struct api *a, struct stream *s)
{
    struct enc e;
    enc_init(&e, WIRE_JSON);
    enc_obj_begin(&e);
    enc_key(&e, "v"), enc_int(&e, 1);
    enc_key(&e, "name"), enc_strz(&e, s->name);
    enc_key(&e, "uid"), enc_int(&e, (int64_t)s->uid);
    enc_key(&e, "status"), enc_int(&e, s->status);
    enc_key(&e, "until"), enc_int(&e, s->status_until);
    enc_key(&e, "created"), enc_int(&e, s->created_ms);
    enc_key(&e, "retention"), enc_int(&e, s->retention_h);
    enc_key(&e, "onDemand"), enc_bool(&e, s->on_demand);
    enc_key(&e, "maxRecordKiB"), enc_int(&e, s->max_record_kib);
    enc_key(&e, "resharding"), enc_bool(&e, s->resharding);
    enc_key(&e, "scalings");
    enc_arr_begin(&e);
    for (uint32_t i = 0; i < s->nscalings; i++)
        enc_int(&e, s->scalings[i]);
    enc_arr_end(&e);
    enc_key(&e, "shards");
    enc_arr_begin(&e);
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        enc_obj_begin(&e);
        enc_key(&e, "i"), enc_int(&e, sh->index);
        put_u128(&e, "start", sh->start);
        put_u128(&e, "end", sh->end);
        enc_key(&e, "created"), enc_int(&e, sh->created_ms);
        enc_key(&e, "closed"), enc_int(&e, sh->closed_ms);
        enc_key(&e, "endPos"), enc_int(&e, (int64_t)sh->end_pos);
        enc_key(&e, "parent"), enc_int(&e, sh->parent);
        enc_key(&e, "adjacent"), enc_int(&e, sh->adjacent_parent);
        enc_key(&e, "pending"), enc_bool(&e, sh->pending);
        enc_key(&e, "closing"), enc_bool(&e, sh->closing);
        enc_obj_end(&e);
    }
    enc_arr_end(&e);
    enc_key(&e, "tags");
    enc_obj_begin(&e);
    for (uint32_t i = 0; i < s->ntags; i++) {
        enc_key(&e, s->tags[i].key);
        enc_strz(&e, s->tags[i].value);
    }
    enc_obj_end(&e);
    enc_obj_end(&e);
    char key[160];
    snprintf(key, sizeof key, "stream/%s", s->name);
    int rc = store_meta_put(a->store, key, e.b.p, e.b.len);
    buf_free(&e.b);
    return rc;
}

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

static struct stream *decode(const char *text, size_t len)
{
    struct arena ar;
    arena_init(&ar);
    struct kv *o;
    struct stream *s = NULL;
    if (json_parse_stored(&ar, text, len, &o) || o->type != KV_OBJ || iget(o, "v") != 1)
        goto out;
    const struct kv *name = kv_get(o, "name"), *shards = kv_get(o, "shards"), *tags = kv_get(o, "tags");
    if (!name || name->type != KV_STR || name->len > 128 || !shards || shards->type != KV_ARR)
        goto out;
    s = calloc(1, sizeof *s);
    if (!s)
        abort();
    memcpy(s->name, name->s, name->len + 1);
    s->uid = (uint64_t)iget(o, "uid");
    s->status = (int)iget(o, "status");
    s->status_until = iget(o, "until");
    s->created_ms = iget(o, "created");
    s->retention_h = (int32_t)iget(o, "retention");
    s->on_demand = bget(o, "onDemand");
    s->max_record_kib = (int32_t)iget(o, "maxRecordKiB");
    s->resharding = bget(o, "resharding");
    if (s->max_record_kib < 1024)
        s->max_record_kib = 1024;
    const struct kv *sc = kv_get(o, "scalings");
    if (sc && sc->type == KV_ARR && sc->n) {
        s->scalings = calloc(sc->n, sizeof *s->scalings);
        if (!s->scalings)
            abort();
        for (const struct kv *t = sc->child; t; t = t->next)
            if (t->type == KV_NUM)
                s->scalings[s->nscalings++] = t->i;
    }
    s->nshards = (uint32_t)shards->n;
    s->shards = calloc(s->nshards ? s->nshards : 1, sizeof *s->shards);
    if (!s->shards)
        abort();
    uint32_t i = 0;
    for (const struct kv *e = shards->child; e; e = e->next, i++) {
        struct shard *sh = &s->shards[i];
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
    }
    if (tags && tags->type == KV_OBJ)
        for (const struct kv *t = tags->child; t; t = t->next)
            if (t->type == KV_STR)
                stream_tag_set(s, t->key, t->s);
out:
    arena_free(&ar);
    return s;
}

/* Forget stream i for good: record that its logs must be dropped, then remove its entry.
 * Returns 0, or a STORE_* code with the stream left in place. */
static int retire(struct api *a, size_t i)
{
    struct streams *r = a->streams;
    struct stream *s = r->v[i];
    char key[160], val[32];
    snprintf(key, sizeof key, "drop/%" PRIu64, s->uid);
    int n = snprintf(val, sizeof val, "%" PRIu32, s->nshards);
    int rc = store_meta_put(a->store, key, val, (size_t)n);
    if (rc)
        return rc;
    snprintf(key, sizeof key, "stream/%s", s->name);
    store_meta_put(a->store, key, NULL, 0);
    stream_free(s);
    memmove(r->v + i, r->v + i + 1, (r->n - i - 1) * sizeof *r->v);
    r->n--;
    return 0;
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

static int load_one(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct api *a = ctx;
    struct stream *s = decode(val, vlen);
    if (!s) {
        fprintf(stderr, "kinesd: skipping unreadable stream entry %.*s\n", (int)klen, key);
        return 0;
    }
    insert(a->streams, s);
    if (s->uid >= a->streams->next_uid)
        a->streams->next_uid = s->uid + 1;
    return 0;
}

static int save_next_uid(struct api *a)
{
    char t[32];
    int n = snprintf(t, sizeof t, "%" PRIu64, a->streams->next_uid);
    return store_meta_put(a->store, "next-uid", t, (size_t)n);
}

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
    r->next_uid = 1;
    a->streams = r;
    char *v;
    size_t len;
    if (store_meta_get(a->store, "next-uid", &v, &len, NULL) == 0) {
        r->next_uid = strtoull(v, NULL, 10);
        free(v);
    }
    int rc = store_meta_scan(a->store, "stream/", load_one, a);
    update_max_body(a);
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
    free(r);
    a->streams = NULL;
}

int streams_save(struct api *a, struct stream *s)
{
    update_max_body(a);
    return encode(a, s);
}

int streams_create(struct api *a, const char *name, uint32_t nshards, bool on_demand, int32_t max_record_kib,
                   const struct tag *tags, uint32_t ntags, int64_t now, struct stream **out)
{
    struct streams *r = a->streams;
    /* a gone stream of the same name may still await its final removal */
    size_t at = lower_bound(r, name);
    if (at < r->n && !strcmp(r->v[at]->name, name)) {
        int rc = retire(a, at);
        if (rc)
            return rc;
    }
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    snprintf(s->name, sizeof s->name, "%s", name);
    s->uid = r->next_uid++;
    int rc = save_next_uid(a);
    if (rc) {
        free(s);
        return rc;
    }
    s->status = ST_CREATING;
    s->status_until = now + a->cfg.create_ms;
    s->created_ms = now;
    s->retention_h = 24;
    s->on_demand = on_demand;
    s->max_record_kib = max_record_kib;
    s->nshards = nshards;
    s->shards = calloc(nshards, sizeof *s->shards);
    if (!s->shards)
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
    rc = encode(a, s);
    if (rc) {
        stream_free(s);
        return rc;
    }
    insert(r, s);
    update_max_body(a);
    *out = s;
    return 0;
}

int streams_delete(struct api *a, struct stream *s, int64_t now)
{
    s->status = ST_DELETING;
    s->status_until = now + a->cfg.delete_ms;
    return encode(a, s);
}

uint32_t streams_open_shards(struct api *a, int64_t now)
{
    uint32_t n = 0;
    for (size_t i = 0; i < a->streams->n; i++) {
        struct stream *s = a->streams->v[i];
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
            char *nv = strdup(v);
            if (!nv)
                abort();
            free(s->tags[i].value);
            s->tags[i].value = nv;
            return;
        }
    }
    struct tag *t = realloc(s->tags, (s->ntags + 1) * sizeof *t);
    if (!t)
        abort();
    s->tags = t;
    t[s->ntags].key = strdup(k);
    t[s->ntags].value = strdup(v);
    if (!t[s->ntags].key || !t[s->ntags].value)
        abort();
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

/* ---- maintenance ---- */

#define MAINT_TICK_MS 100 /* lifecycle changes land this often; trimming every 5 ticks */

struct drop_list {
    char keys[64][48];
    int n;
};

static int collect_drop(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                        uint64_t version)
{
    (void)version;
    struct drop_list *d = ctx;
    (void)val;
    (void)vlen;
    if (d->n < 64 && klen < sizeof d->keys[0]) {
        memcpy(d->keys[d->n], key, klen);
        d->keys[d->n][klen] = 0;
        d->n++;
    }
    return d->n >= 64;
}

/* Remove the records of dropped streams, a bounded batch at a time. */
static void drop_logs(struct api *a)
{
    struct drop_list d = {.n = 0};
    store_meta_scan(a->store, "drop/", collect_drop, &d);
    for (int i = 0; i < d.n && !a->stopping; i++) {
        char *v;
        size_t len;
        if (store_meta_get(a->store, d.keys[i], &v, &len, NULL))
            continue;
        uint64_t uid = strtoull(d.keys[i] + 5, NULL, 10);
        uint32_t nshards = (uint32_t)strtoul(v, NULL, 10);
        free(v);
        bool empty = true; /* each drop removes a bounded batch and says whether more remain */
        for (uint32_t sh = 0; sh < nshards; sh++) {
            int rc = store_log_drop(a->store, log_id(uid, sh));
            if (rc == STORE_BUSY)
                empty = false;
            else if (rc)
                return;
        }
        if (empty)
            store_meta_put(a->store, d.keys[i], NULL, 0);
    }
}

static int apply_reshard(struct api *a, struct stream *s, int64_t now);

static bool needs_settling(struct api *a, int64_t now)
{
    bool any = false;
    streams_rdlock(a);
    for (size_t i = 0; i < a->streams->n && !any; i++)
        any = stream_status(a->streams->v[i], now) != a->streams->v[i]->status ||
              (a->streams->v[i]->resharding && now >= a->streams->v[i]->status_until);
    streams_unlock(a);
    return any;
}

/* Make lifecycle transitions durable and retire gone streams. */
static void settle(struct api *a, int64_t now)
{
    if (!needs_settling(a, now))
        return;
    streams_wrlock(a);
    struct streams *r = a->streams;
    for (size_t i = 0; i < r->n;) {
        struct stream *s = r->v[i];
        int st = stream_status(s, now);
        if (st == ST_GONE) {
            if (retire(a, i) == 0)
                continue;
        } else if (s->resharding) {
            if (now >= s->status_until)
                apply_reshard(a, s, now);
        } else if (st != s->status) {
            s->status = st;
            encode(a, s);
        }
        i++;
    }
    streams_unlock(a);
}

#define TRIM_BATCH 5000

/* Delete records past each stream's retention, TRIM_BATCH per short transaction, without
 * holding the registry lock while the store works. */
static void trim_expired(struct api *a, int64_t now)
{
    streams_rdlock(a);
    size_t n = 0;
    for (size_t i = 0; i < a->streams->n; i++)
        n += a->streams->v[i]->nshards;
    uint64_t *logs = malloc((n ? n : 1) * 2 * sizeof *logs);
    if (!logs)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < a->streams->n; i++) {
        struct stream *s = a->streams->v[i];
        uint64_t below = pos_floor(now - (int64_t)s->retention_h * 3600000);
        for (uint32_t j = 0; j < s->nshards; j++) {
            logs[k++] = log_id(s->uid, s->shards[j].index);
            logs[k++] = below;
        }
    }
    streams_unlock(a);
    for (size_t i = 0; i < k && !a->stopping; i += 2) {
        size_t del;
        do {
            del = 0;
            if (store_trim(a->store, logs[i], logs[i + 1], TRIM_BATCH, &del))
                break;
        } while (del == TRIM_BATCH && !a->stopping);
    }
    free(logs);
}

#define HOT_RECORDS 1000 /* one shard's write capacity per second */
#define HOT_BYTES (1u << 20)
#define HOT_TICKS 3 /* seconds above capacity before an on-demand shard splits */

/* On-demand capacity: a shard whose offered write rate stays above one shard's capacity for
 * HOT_TICKS seconds running is split at the middle of its range, through the same lineage as
 * SplitShard. Called once a second. */
static void scale_on_demand(struct api *a, int64_t now)
{
    streams_wrlock(a);
    for (size_t i = 0; i < a->streams->n; i++) {
        struct stream *s = a->streams->v[i];
        if (!s->on_demand || stream_status(s, now) != ST_ACTIVE)
            continue;
        for (uint32_t j = 0; j < s->nshards; j++) {
            struct shard *sh = &s->shards[j];
            uint64_t recs = __atomic_exchange_n(&sh->offered, 0, __ATOMIC_RELAXED);
            uint64_t bytes = __atomic_exchange_n(&sh->offered_bytes, 0, __ATOMIC_RELAXED);
            if (sh->closed_ms)
                continue;
            sh->hot_ticks = recs > HOT_RECORDS || bytes > HOT_BYTES ? sh->hot_ticks + 1 : 0;
            if (sh->hot_ticks < HOT_TICKS || sh->end - sh->start < 2 ||
                streams_open_shards(a, now) + 1 > (uint32_t)a->cfg.shard_limit)
                continue;
            sh->hot_ticks = 0;
            u128 mid = sh->start + (sh->end - sh->start) / 2 + 1;
            stream_split(a, s, sh->index, mid, now);
            break; /* one split per stream per second; shards moved */
        }
    }
    streams_unlock(a);
}

void *streams_maintain(void *arg)
{
    struct api *a = arg;
    pthread_mutex_lock(&a->maint_mu);
    int tick = 0;
    while (!a->stopping) {
        pthread_mutex_unlock(&a->maint_mu);
        int64_t now = clock_now_ms();
        settle(a, now); /* cheap when nothing is due: lifecycle changes land within a tick */
        if (tick++ % 5 == 0) {
            trim_expired(a, now);
            if (tick % 10 == 1)
                scale_on_demand(a, now);
            drop_logs(a);
        }
        pthread_mutex_lock(&a->maint_mu);
        if (a->stopping)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += MAINT_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&a->maint_cv, &a->maint_mu, &ts);
    }
    pthread_mutex_unlock(&a->maint_mu);
    return NULL;
}

/* ---- resharding ---- */

/* Close every closing shard: wait until no append routed before the write lock was taken is
 * still committing (the caller holds the write lock, so none can start), then fix each one's
 * last position. */
static int close_shards(struct api *a, struct stream *s, int64_t now)
{
    while (__atomic_load_n(&a->inflight, __ATOMIC_ACQUIRE) > 0)
        sched_yield();
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        if (!sh->closing || sh->closed_ms)
            continue;
        uint64_t last = 0;
        int rc = sh->pending ? 0 : store_log_bounds(a->store, log_id(s->uid, sh->index), &last, NULL);
        if (rc)
            return rc;
        sh->closed_ms = now;
        sh->end_pos = last > pos_floor(now) ? last : pos_floor(now);
    }
    return 0;
}

/* Complete a staged reshard (write lock held): parents close, children open. */
static int apply_reshard(struct api *a, struct stream *s, int64_t now)
{
    int rc = close_shards(a, s, now);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        if (sh->pending) {
            sh->pending = false;
            sh->created_ms = now;
        }
        sh->closing = false;
    }
    s->resharding = false;
    s->status = ST_ACTIVE;
    return streams_save(a, s);
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

static int finish(struct api *a, struct stream *s, int64_t now)
{
    s->status = ST_UPDATING;
    s->status_until = now + a->cfg.update_ms;
    s->resharding = true;
    if (a->cfg.update_ms <= 0)
        return apply_reshard(a, s, now);
    return streams_save(a, s);
}

int stream_split(struct api *a, struct stream *s, uint32_t shard, u128 new_start, int64_t now)
{
    s->shards[shard].closing = true;
    u128 start = s->shards[shard].start, end = s->shards[shard].end;
    add_shard(s, start, new_start - 1, (int32_t)shard, -1, now);
    add_shard(s, new_start, end, (int32_t)shard, -1, now);
    return finish(a, s, now);
}

int stream_merge(struct api *a, struct stream *s, uint32_t shard, uint32_t adjacent, int64_t now)
{
    s->shards[shard].closing = s->shards[adjacent].closing = true;
    add_shard(s, s->shards[shard].start, s->shards[adjacent].end, (int32_t)shard, (int32_t)adjacent, now);
    return finish(a, s, now);
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
 * A consumer that reads parents before children therefore keeps per-key order. */
int stream_scale(struct api *a, struct stream *s, uint32_t target, int64_t now)
{
    uint32_t nopen = 0;
    uint32_t *open = malloc(s->nshards * sizeof *open);
    if (!open)
        abort();
    for (uint32_t i = 0; i < s->nshards; i++)
        if (shard_open(&s->shards[i])) {
            open[nopen++] = i;
            s->shards[i].closing = true;
        }
    /* open shards in key order (they tile the key space) */
    struct shard **ord = malloc(nopen * sizeof *ord);
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
    int rc = finish(a, s, now);
    free(whole);
    free(frag);
    free(tgt);
    free(open);
    return rc;
}
