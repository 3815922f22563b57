/* consumers.c: enhanced fan-out consumers: registration, lookup, listing, deregistration.
 *
 * Model. An array of consumers sorted by (stream uid, name), guarded by a mutex that is held
 * only to read or swap entries, never across a storage call. Every change runs under the
 * stream registry's change lock (so it is serialized with DeleteStream, and a consumer is never
 * registered on a stream being deleted): the row is written first, then the array changed.
 *
 * Rows. "consumer/<uid, 20 digits>/<name>" ->
 * {"v":1,"uid","name","created","active"[,"gone"],"tags"}. Statuses are the row's timestamps
 * read against the clock: CREATING until "active", then ACTIVE; deregistration rewrites the
 * row with "gone" (DELETING until then, --register-consumer-ms later). Once gone and the second
 * of its creation is over (so a name registered again always gets a later ARN: its creation
 * second ends the ARN), the maintenance leader deletes the row (consumers_settle). So every
 * transition is either a timestamp every front-end reads alike, or one write by one front-end.
 * TagResource and UntagResource on the consumer's ARN rewrite its row with new "tags"
 * (compare-and-set on the version read).
 *
 * Front-ends sharing a store (PostgreSQL). Each keeps this array. The store reports rows
 * another front-end changed (store_meta_watch); their streams' consumers are reloaded by the
 * maintenance thread within a tick (consumers_refresh; every consumer after lost
 * notifications), and a control-plane call first compares the rows' versions with the array
 * (consumers_sync), so a consumer registered or deregistered anywhere is seen at once by the
 * next call that names it, wherever it lands.
 *
 * Bounds: CONSUMERS_PER_STREAM per stream (DELETING ones included, until gone), of which
 * CONSUMERS_CREATING may be CREATING at once; DIRTY_MAX streams remembered as changed
 * elsewhere, beyond which the next refresh reloads every consumer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers.h"
#include "internal.h"
#include "subscribe.h"

struct consumer {
    uint64_t uid;
    char name[129];
    int64_t created_ms, active_ms; /* ACTIVE from active_ms */
    int64_t gone_ms;               /* 0, or DELETING until then */
    uint64_t ver;                  /* its row's version */
    uint64_t generation;
};

#define DIRTY_MAX 64

struct consumers {
    pthread_mutex_t mu;
    struct consumer *v; /* owned, sorted by (uid, name) */
    size_t n, cap;
    uint64_t next_gen;
    /* streams whose consumer rows another front-end changed, for the maintenance thread */
    pthread_mutex_t dirty_mu;
    uint64_t dirty[DIRTY_MAX];
    size_t ndirty;
    bool dirty_all;
};

struct vregex vre_consumer_arn = {
    "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+", 0, {0}};

static const char *const status_names[] = {"CREATING", "ACTIVE", "DELETING", "GONE"};
const char *consumer_status_name(int st) { return status_names[st]; }

static int status_at(const struct consumer *k, int64_t now)
{
    if (k->gone_ms)
        return now >= k->gone_ms ? CONSUMER_GONE : CONSUMER_DELETING;
    return now >= k->active_ms ? CONSUMER_ACTIVE : CONSUMER_CREATING;
}

static int cmp(uint64_t uid, const char *name, const struct consumer *k)
{
    if (uid != k->uid)
        return uid < k->uid ? -1 : 1;
    return strcmp(name, k->name);
}

static size_t lower_bound(struct consumers *r, uint64_t uid, const char *name)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp(uid, name, &r->v[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The live (not gone) entry, or NULL. mu held. */
static struct consumer *find(struct consumers *r, uint64_t uid, const char *name, int64_t now)
{
    size_t i = lower_bound(r, uid, name);
    if (i < r->n && !cmp(uid, name, &r->v[i]) && status_at(&r->v[i], now) != CONSUMER_GONE)
        return &r->v[i];
    return NULL;
}

/* Whether k's row may be deleted: gone, and the second its ARN ends with is over. */
static bool finished(const struct consumer *k, int64_t now)
{
    return status_at(k, now) == CONSUMER_GONE && now >= (k->created_ms / 1000 + 1) * 1000;
}

static void insert(struct consumers *r, const struct consumer *k)
{
    size_t i = lower_bound(r, k->uid, k->name);
    if (i < r->n && !cmp(k->uid, k->name, &r->v[i])) { /* a gone entry of the same name */
        r->v[i] = *k;
        return;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct consumer *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            abort();
        r->v = v, r->cap = cap;
    }
    memmove(&r->v[i + 1], &r->v[i], (r->n - i) * sizeof *r->v);
    r->v[i] = *k;
    r->n++;
}

static void row_key(char out[200], uint64_t uid, const char *name)
{
    snprintf(out, 200, "consumer/%020" PRIu64 "/%s", uid, name);
}

/* ---- rows ---- */

static int64_t iget(const struct kv *o, const char *k)
{
    const struct kv *v = kv_get(o, k);
    return v && v->type == KV_NUM && v->is_int ? v->i : 0;
}

/* A consumer from its row's value (its generation left 0); false for a row it cannot read. */
static bool parse_row(const char *val, size_t vlen, uint64_t version, struct consumer *out)
{
    struct arena ar;
    arena_init(&ar);
    struct kv *o;
    bool ok = false;
    if (json_parse_stored(&ar, val, vlen, &o) == 0 && o->type == KV_OBJ && iget(o, "v") == 1) {
        const struct kv *name = kv_get(o, "name");
        if (name && name->type == KV_STR && name->len >= 1 && name->len <= 128) {
            *out = (struct consumer){.uid = (uint64_t)iget(o, "uid"),
                                     .created_ms = iget(o, "created"),
                                     .active_ms = iget(o, "active"),
                                     .gone_ms = iget(o, "gone"),
                                     .ver = version};
            memcpy(out->name, name->s, name->len + 1);
            ok = true;
        }
    }
    arena_free(&ar);
    return ok;
}

/* A row's value: k's fields and tags (a KV_OBJ of strings, or NULL). Caller frees e->b. */
static void enc_row(struct enc *e, const struct consumer *k, const struct kv *tags)
{
    enc_init(e, WIRE_JSON);
    enc_obj_begin(e);
    enc_key(e, "v"), enc_int(e, 1);
    enc_key(e, "uid"), enc_int(e, (int64_t)k->uid);
    enc_key(e, "name"), enc_strz(e, k->name);
    enc_key(e, "created"), enc_int(e, k->created_ms);
    enc_key(e, "active"), enc_int(e, k->active_ms);
    if (k->gone_ms)
        enc_key(e, "gone"), enc_int(e, k->gone_ms);
    enc_key(e, "tags");
    enc_obj_begin(e);
    if (tags && tags->type == KV_OBJ)
        for (const struct kv *t = tags->child; t; t = t->next) {
            enc_key(e, t->key);
            enc_strz(e, t->type == KV_STR ? t->s : "");
        }
    enc_obj_end(e);
    enc_obj_end(e);
}

/* ---- loading, and reloading what other front-ends changed ---- */

struct scanned {
    struct consumer *v;
    size_t n, cap;
    bool nomem;
};

static int scan_row(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)key, (void)klen;
    struct scanned *sc = ctx;
    struct consumer k;
    if (!parse_row(val, vlen, version, &k))
        return 0;
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 16;
        struct consumer *v = realloc(sc->v, cap * sizeof *v);
        if (!v) {
            sc->nomem = true;
            return 1;
        }
        sc->v = v, sc->cap = cap;
    }
    sc->v[sc->n++] = k;
    return 0;
}

static int by_key(const void *x, const void *y)
{
    const struct consumer *b = y;
    return cmp(((const struct consumer *)x)->uid, ((const struct consumer *)x)->name, b);
}

/* Replace the entries of stream uid (every entry when all) by the rows of sc (steals sc->v).
 * A consumer keeps its generation while its registration (creation time) is the same; an entry
 * whose row is gone leaves. Returns whether anything changed. mu not held. */
static bool merge(struct consumers *r, bool all, uint64_t uid, struct scanned *sc)
{
    bool changed = false;
    pthread_mutex_lock(&r->mu);
    size_t kept = 0;
    for (size_t i = 0; i < r->n; i++)
        kept += !all && r->v[i].uid != uid;
    struct consumer *v = malloc((kept + sc->n + 1) * sizeof *v);
    if (!v)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (!all && r->v[i].uid != uid)
            v[n++] = r->v[i];
    for (size_t i = 0; i < sc->n; i++) {
        struct consumer *k = &sc->v[i];
        size_t j = lower_bound(r, k->uid, k->name);
        struct consumer *old = j < r->n && !cmp(k->uid, k->name, &r->v[j]) ? &r->v[j] : NULL;
        if (old && old->created_ms == k->created_ms)
            k->generation = old->generation;
        else
            k->generation = ++r->next_gen;
        changed |= !old || old->ver != k->ver;
        v[n++] = *k;
    }
    changed |= n != r->n;
    qsort(v, n, sizeof *v, by_key);
    free(r->v);
    r->v = v;
    r->n = n;
    r->cap = kept + sc->n + 1;
    pthread_mutex_unlock(&r->mu);
    free(sc->v);
    sc->v = NULL;
    return changed;
}

/* Reload the consumers of stream uid (or every one) from their rows (change lock held).
 * 0 or a STORE_* code (nothing changed). */
static int reload(struct api *a, bool all, uint64_t uid)
{
    char prefix[48];
    if (all)
        snprintf(prefix, sizeof prefix, "consumer/");
    else
        snprintf(prefix, sizeof prefix, "consumer/%020" PRIu64 "/", uid);
    struct scanned sc = {0};
    int rc = store_meta_scan(a->store, prefix, scan_row, &sc);
    if (!rc && sc.nomem)
        rc = STORE_NOMEM;
    if (rc) {
        free(sc.v);
        return rc;
    }
    if (merge(a->consumers, all, uid, &sc) && a->subs)
        subs_notify(a); /* subscriptions look again: their consumer may be gone */
    return 0;
}

/* The store's report of a changed consumer row (an engine thread): remember its stream and
 * wake the maintenance thread. NULL: any row may have changed. */
static void on_row(void *arg, const char *key)
{
    struct api *a = arg;
    struct consumers *r = a->consumers;
    uint64_t uid = key ? strtoull(key + strlen("consumer/"), NULL, 10) : 0;
    pthread_mutex_lock(&r->dirty_mu);
    bool known = false;
    for (size_t i = 0; i < r->ndirty && !known; i++)
        known = r->dirty[i] == uid;
    if (!key || r->ndirty == DIRTY_MAX)
        r->dirty_all = true;
    else if (!known)
        r->dirty[r->ndirty++] = uid;
    pthread_mutex_unlock(&r->dirty_mu);
    pthread_mutex_lock(&a->maint_mu);
    pthread_cond_signal(&a->maint_cv);
    pthread_mutex_unlock(&a->maint_mu);
}

void consumers_refresh(struct api *a)
{
    struct consumers *r = a->consumers;
    uint64_t uids[DIRTY_MAX];
    pthread_mutex_lock(&r->dirty_mu);
    bool all = r->dirty_all;
    size_t n = r->ndirty;
    memcpy(uids, r->dirty, n * sizeof *uids);
    r->ndirty = 0;
    r->dirty_all = false;
    pthread_mutex_unlock(&r->dirty_mu);
    int rc = 0;
    if (all)
        rc = reload(a, true, 0);
    for (size_t i = 0; i < n && !all && !rc; i++)
        rc = reload(a, false, uids[i]);
    if (rc) { /* the store is away: everything again next tick */
        pthread_mutex_lock(&r->dirty_mu);
        r->dirty_all = true;
        pthread_mutex_unlock(&r->dirty_mu);
    }
}

struct versions {
    struct consumers *r;
    bool differ;
    size_t n;
};

static int compare_version(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                           uint64_t version)
{
    (void)val, (void)vlen;
    struct versions *v = ctx;
    char name[129];
    const char *p = key + strlen("consumer/");
    char *e;
    uint64_t uid = strtoull(p, &e, 10);
    size_t nlen = klen - (size_t)(e + 1 - key);
    if (*e != '/' || nlen >= sizeof name)
        return 0;
    memcpy(name, e + 1, nlen);
    name[nlen] = 0;
    size_t i = lower_bound(v->r, uid, name);
    v->n++;
    v->differ = i == v->r->n || cmp(uid, name, &v->r->v[i]) || v->r->v[i].ver != version;
    return v->differ;
}

void consumers_sync(struct api *a)
{
    struct consumers *r = a->consumers;
    streams_change_lock(a);
    struct versions v = {.r = r}; /* the array changes only under the change lock, held */
    int rc = store_meta_scan(a->store, "consumer/", compare_version, &v);
    if (!rc && (v.differ || v.n != r->n))
        reload(a, true, 0);
    streams_change_unlock(a);
}

void consumers_settle(struct api *a, int64_t now)
{
    struct consumers *r = a->consumers;
    char key[200];
    for (size_t i = 0; i < r->n;) { /* entries move only under the change lock, held */
        struct consumer *k = &r->v[i];
        if (!finished(k, now)) {
            i++;
            continue;
        }
        row_key(key, k->uid, k->name);
        struct store_row sr = {.key = key, .version = k->ver, .val = NULL, .len = 0};
        int rc = store_meta_cas(a->store, &sr, 1);
        if (rc == STORE_CONFLICT) { /* rewritten elsewhere: its reload comes */
            i++;
            continue;
        }
        if (rc && rc != STORE_NOT_FOUND)
            return; /* the store is away: next tick */
        pthread_mutex_lock(&r->mu);
        memmove(k, k + 1, (r->n - i - 1) * sizeof *k);
        r->n--;
        pthread_mutex_unlock(&r->mu);
    }
}

int consumers_open(struct api *a)
{
    struct consumers *r = calloc(1, sizeof *r);
    if (!r)
        return STORE_NOMEM;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->dirty_mu, NULL);
    a->consumers = r;
    int rc = reload(a, true, 0); /* a->subs is not open yet: nobody to tell */
    if (!rc && store_shared(a->store))
        rc = store_meta_watch(a->store, "consumer/", on_row, a);
    return rc;
}

void consumers_close(struct api *a)
{
    struct consumers *r = a->consumers;
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->dirty_mu);
    free(r->v);
    free(r);
    a->consumers = NULL;
}

/* ---- reading ---- */

uint32_t consumers_count(struct api *a, uint64_t uid, int64_t now)
{
    struct consumers *r = a->consumers;
    uint32_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = lower_bound(r, uid, ""); i < r->n && r->v[i].uid == uid; i++)
        n += status_at(&r->v[i], now) <= CONSUMER_ACTIVE;
    pthread_mutex_unlock(&r->mu);
    return n;
}

bool consumers_alive(struct api *a, const struct consumer_info *ci, int64_t now)
{
    struct consumers *r = a->consumers;
    pthread_mutex_lock(&r->mu);
    struct consumer *k = find(r, ci->uid, ci->name, now);
    bool ok = k && k->generation == ci->generation && status_at(k, now) != CONSUMER_DELETING;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

const char *consumer_arn(struct api_ctx *c, const struct consumer_info *ci)
{
    return arena_printf(&c->arena, "arn:aws:kinesis:%s:%s:stream/%s/consumer/%s:%" PRId64, ci->region,
                        ci->account, ci->stream, ci->name, ci->created_ms / 1000);
}

static void fill_info(struct consumer_info *out, const struct consumer *k, const struct stream *s,
                      int64_t now)
{
    memcpy(out->name, k->name, sizeof out->name);
    memcpy(out->stream, s->name, sizeof out->stream);
    memcpy(out->account, s->account, sizeof out->account);
    memcpy(out->region, s->region, sizeof out->region);
    out->uid = k->uid;
    out->created_ms = k->created_ms;
    out->stream_created_ms = s->created_ms;
    out->status = status_at(k, now);
    out->generation = k->generation;
}

/* The stream a stream ARN of this region names (up to end): its name and owner's account
 * (arena); -1 with the error recorded. */
static int arn_stream(struct api_ctx *c, const char *arn, const char *end, const char **name,
                      const char **account)
{
    struct arn_parts p;
    if (arn_split(arn, end, &p))
        return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid ARN: %s", arn);
    return arn_owner(c, &p, name, account);
}

static int resolve(struct api_ctx *c, const char *carn, const char *sarn, const char *cname,
                   struct consumer_info *out)
{
    const char *stream = NULL, *name = cname, *acct = NULL;
    int64_t epoch = -1;
    if (carn) {
        const char *slash = strstr(carn, "/consumer/");
        const char *colon = slash ? strrchr(slash, ':') : NULL;
        if (!colon)
            return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid ConsumerARN: %s", carn);
        if (arn_stream(c, carn, slash, &stream, &acct))
            return -1;
        name = arena_strndup(&c->arena, slash + 10, (size_t)(colon - slash - 10));
        char *e;
        epoch = (int64_t)strtoll(colon + 1, &e, 10);
        if (*e || !*name)
            return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid ConsumerARN: %s", carn);
        if (cname && strcmp(cname, name))
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "ConsumerARN %s and ConsumerName %s do not refer to the "
                            "same consumer.",
                            carn, cname); /* unverified wording */
        if (sarn) {
            const char *s2, *a2;
            if (arn_stream(c, sarn, NULL, &s2, &a2))
                return -1;
            if (strcmp(s2, stream) || strcmp(a2, acct))
                return api_fail(c, KERR_INVALID_ARGUMENT,
                                "ConsumerARN %s and StreamARN %s do not refer to the "
                                "same stream.",
                                carn, sarn); /* unverified wording */
        }
    } else {
        if (!sarn || !cname)
            return api_fail(
                c, KERR_INVALID_ARGUMENT,
                "Either ConsumerARN or both ConsumerName and StreamARN must be specified."); /* unverified */
        if (arn_stream(c, sarn, NULL, &stream, &acct))
            return -1;
    }
    struct api *a = c->api;
    streams_rdlock(a);
    struct stream *s = streams_find(a, acct, c->region, stream, c->now_ms);
    struct consumer *k = NULL;
    pthread_mutex_lock(&a->consumers->mu);
    if (s && (k = find(a->consumers, s->uid, name, c->now_ms)) && epoch >= 0 && k->created_ms / 1000 != epoch)
        k = NULL;
    if (k)
        fill_info(out, k, s, c->now_ms);
    pthread_mutex_unlock(&a->consumers->mu);
    streams_unlock(a);
    if (!s)
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", stream, acct);
    if (!k) {
        if (epoch >= 0)
            return api_fail(c, KERR_RESOURCE_NOT_FOUND,
                            "Consumer %s with creation timestamp %" PRId64
                            " under stream: %s, account %s not found.",
                            name, epoch, stream, acct);
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Consumer %s under stream: %s, account %s not found.",
                        name, stream, acct); /* unverified wording */
    }
    return 0;
}

int consumers_resolve(struct api_ctx *c, struct consumer_info *out)
{
    return resolve(c, req_str(c, "ConsumerARN"), req_str(c, "StreamARN"), req_str(c, "ConsumerName"), out);
}

int consumers_resolve_arn(struct api_ctx *c, const char *arn, struct consumer_info *out)
{
    return resolve(c, arn, NULL, NULL, out);
}

/* ---- tags (TagResource & co. on a consumer's ARN): the "tags" member of its row ---- */

/* ci's row: the consumer it holds (*k) and its tags (*tags, a KV_OBJ in the arena, or NULL);
 * STORE_NOT_FOUND when it is no longer registered as ci. */
static int read_row(struct api_ctx *c, const struct consumer_info *ci, struct consumer *k,
                    const struct kv **tags)
{
    char key[200], *v;
    size_t len;
    uint64_t ver;
    row_key(key, ci->uid, ci->name);
    int rc = store_meta_get(c->api->store, key, &v, &len, &ver);
    if (rc)
        return rc;
    struct kv *o;
    *tags = NULL;
    if (!parse_row(v, len, ver, k) || k->created_ms != ci->created_ms)
        rc = STORE_NOT_FOUND;
    else if (json_parse_stored(&c->arena, v, len, &o) == 0)
        *tags = kv_get(o, "tags");
    free(v);
    return rc;
}

int consumers_tags_get(struct api_ctx *c, const struct consumer_info *ci, const struct kv **tags)
{
    struct consumer k;
    return read_row(c, ci, &k, tags);
}

int consumers_tags_set(struct api_ctx *c, const struct consumer_info *ci, const struct tag *tags, uint32_t n)
{
    struct consumer k;
    const struct kv *old;
    int rc = read_row(c, ci, &k, &old);
    if (rc)
        return rc;
    /* the new tags as the tree enc_row takes */
    struct kv *obj = arena_alloc(&c->arena, (n + 1) * sizeof *obj);
    obj[0] = (struct kv){.type = KV_OBJ, .n = n, .child = n ? &obj[1] : NULL};
    for (uint32_t i = 0; i < n; i++)
        obj[i + 1] = (struct kv){.type = KV_STR,
                                 .key = tags[i].key,
                                 .s = tags[i].value,
                                 .len = strlen(tags[i].value),
                                 .next = i + 1 < n ? &obj[i + 2] : NULL};
    struct enc e;
    enc_row(&e, &k, obj);
    char key[200];
    row_key(key, ci->uid, ci->name);
    struct store_row sr = {.key = key, .version = k.ver, .val = e.b.p, .len = e.b.len};
    rc = store_meta_cas(c->api->store, &sr, 1);
    buf_free(&e.b);
    if (rc)
        return rc;
    pthread_mutex_lock(&c->api->consumers->mu);
    struct consumer *cur = find(c->api->consumers, ci->uid, ci->name, c->now_ms);
    if (cur && cur->generation == ci->generation)
        cur->ver = sr.version;
    pthread_mutex_unlock(&c->api->consumers->mu);
    return 0;
}

/* ---- changes (the stream registry's change lock held) ---- */

static void enc_consumer(struct api_ctx *c, const struct consumer_info *ci)
{
    struct enc *e = &c->out;
    enc_key(e, "ConsumerName"), enc_strz(e, ci->name);
    enc_key(e, "ConsumerARN"), enc_strz(e, consumer_arn(c, ci));
    enc_key(e, "ConsumerStatus"), enc_strz(e, consumer_status_name(ci->status));
    enc_key(e, "ConsumerCreationTimestamp"), enc_time_ms(e, ci->created_ms);
}

int consumers_register(struct api_ctx *c)
{
    struct api *a = c->api;
    struct consumers *r = a->consumers;
    const char *name = req_str(c, "ConsumerName");
    const struct kv *tags = kv_get(c->req, "Tags");
    if (tags && tags->type == KV_OBJ && tags->n > 50)
        return api_fail(
            c, KERR_INVALID_ARGUMENT,
            "Failed to register consumer %s because a given consumer cannot have more than 50 tags "
            "associated with it.",
            name); /* unverified wording */
    if (tags && check_tag_texts(c, tags, NULL))
        return -1;
    int rc = -1;
    streams_change_lock(a);
    struct stream *s = ctx_stream(c);
    if (!s)
        goto unlock;
    int st = stream_status(s, c->now_ms);
    if (st != ST_ACTIVE && st != ST_UPDATING) {
        fail_not_active(c, s, st);
        goto unlock;
    }
    pthread_mutex_lock(&r->mu);
    uint32_t total = 0, creating = 0;
    int64_t after_ms = 0;  /* a gone registration of the same name: its ARN's second is taken */
    uint64_t prev_ver = 0; /* and its row, not deleted yet, is overwritten */
    bool exists = false;
    for (size_t i = lower_bound(r, s->uid, ""); i < r->n && r->v[i].uid == s->uid; i++) {
        int ks = status_at(&r->v[i], c->now_ms);
        if (!strcmp(r->v[i].name, name)) {
            if (ks != CONSUMER_GONE)
                exists = true;
            after_ms = (r->v[i].created_ms / 1000 + 1) * 1000;
            prev_ver = r->v[i].ver;
        }
        total += ks != CONSUMER_GONE;
        creating += ks == CONSUMER_CREATING;
    }
    pthread_mutex_unlock(&r->mu);
    if (exists) {
        api_fail(c, KERR_RESOURCE_IN_USE, "Consumer %s under stream %s already exists for account %s.", name,
                 s->name, s->account); /* unverified wording */
        goto unlock;
    }
    if (total >= CONSUMERS_PER_STREAM) {
        api_fail(c, KERR_LIMIT_EXCEEDED,
                 "Stream %s under account %s has reached its limit of %d registered consumers.", s->name,
                 s->account, CONSUMERS_PER_STREAM); /* unverified wording */
        goto unlock;
    }
    if (creating >= CONSUMERS_CREATING) {
        api_fail(c, KERR_LIMIT_EXCEEDED,
                 "Stream %s under account %s already has %d consumers in CREATING status.", s->name,
                 s->account, CONSUMERS_CREATING); /* unverified wording */
        goto unlock;
    }
    struct consumer k = {.uid = s->uid, .created_ms = c->now_ms > after_ms ? c->now_ms : after_ms};
    k.active_ms = k.created_ms + a->cfg.register_consumer_ms;
    memcpy(k.name, name, strlen(name) + 1);
    struct enc row;
    enc_row(&row, &k, tags);
    char key[200];
    row_key(key, k.uid, k.name);
    struct store_row sr = {.key = key, .version = prev_ver, .val = row.b.p, .len = row.b.len};
    int src = store_meta_cas(a->store, &sr, 1);
    buf_free(&row.b);
    if (src) {
        api_store_fail(c, src);
        goto unlock;
    }
    k.ver = sr.version;
    pthread_mutex_lock(&r->mu);
    k.generation = ++r->next_gen;
    insert(r, &k);
    pthread_mutex_unlock(&r->mu);
    struct consumer_info ci;
    fill_info(&ci, &k, s, c->now_ms);
    ci.status = CONSUMER_CREATING; /* as AWS answers, even when ACTIVE follows at once */
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Consumer");
    enc_obj_begin(e);
    enc_consumer(c, &ci);
    enc_obj_end(e);
    enc_obj_end(e);
    rc = 0;
unlock:
    streams_change_unlock(a);
    return rc;
}

/* Rewrite k's row as DELETING until --register-consumer-ms from now, and k with it (its tags
 * kept as the row has them). mu not held; the change lock is. 0 or a STORE_* code. */
static int deregister_one(struct api *a, struct consumer *k, int64_t now)
{
    char key[200];
    row_key(key, k->uid, k->name);
    char *val;
    size_t len;
    uint64_t ver;
    int rc = store_meta_get(a->store, key, &val, &len, &ver);
    struct consumer stored;
    if (rc == 0 && (!parse_row(val, len, ver, &stored) || stored.created_ms != k->created_ms)) {
        free(val); /* another registration of the name, made elsewhere: ours is gone */
        rc = STORE_NOT_FOUND;
    }
    if (rc == STORE_NOT_FOUND) { /* deleted elsewhere already: gone here too */
        pthread_mutex_lock(&a->consumers->mu);
        if (!k->gone_ms || k->gone_ms > now)
            k->gone_ms = now;
        pthread_mutex_unlock(&a->consumers->mu);
        return 0;
    }
    if (rc)
        return rc;
    struct arena ar;
    arena_init(&ar);
    struct kv *o = NULL;
    const struct kv *tags = NULL;
    if (json_parse_stored(&ar, val, len, &o) == 0 && o->type == KV_OBJ)
        tags = kv_get(o, "tags");
    struct consumer next = *k;
    next.gone_ms = now + (a->cfg.register_consumer_ms > 0 ? a->cfg.register_consumer_ms : 1);
    struct enc row;
    enc_row(&row, &next, tags);
    struct store_row sr = {.key = key, .version = ver, .val = row.b.p, .len = row.b.len};
    rc = store_meta_cas(a->store, &sr, 1);
    buf_free(&row.b);
    arena_free(&ar);
    free(val);
    if (rc)
        return rc; /* STORE_CONFLICT: changed elsewhere meanwhile, retryable */
    pthread_mutex_lock(&a->consumers->mu);
    k->gone_ms = next.gone_ms;
    k->ver = sr.version;
    pthread_mutex_unlock(&a->consumers->mu);
    return 0;
}

int consumers_deregister(struct api_ctx *c)
{
    struct api *a = c->api;
    struct consumer_info ci;
    if (consumers_resolve(c, &ci))
        return -1;
    int rc = 0;
    streams_change_lock(a);
    pthread_mutex_lock(&a->consumers->mu);
    struct consumer *k = find(a->consumers, ci.uid, ci.name, c->now_ms);
    bool same = k && k->generation == ci.generation && status_at(k, c->now_ms) != CONSUMER_DELETING;
    pthread_mutex_unlock(&a->consumers->mu);
    if (same) { /* entries move only under the change lock, which is held */
        int src = deregister_one(a, k, c->now_ms);
        if (src)
            rc = api_store_fail(c, src);
        else
            subs_notify(a);
    }
    streams_change_unlock(a);
    if (rc == 0) {
        enc_obj_begin(&c->out);
        enc_obj_end(&c->out);
    }
    return rc;
}

int consumers_drop_stream(struct api *a, uint64_t uid, int64_t now)
{
    struct consumers *r = a->consumers;
    for (size_t i = lower_bound(r, uid, ""); i < r->n && r->v[i].uid == uid; i++) {
        if (status_at(&r->v[i], now) > CONSUMER_ACTIVE)
            continue;
        int rc = deregister_one(a, &r->v[i], now);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- ListStreamConsumers ---- */

#define TOKEN_TTL_MS 300000
#define PAGE_MAX 100

int consumers_list(struct api_ctx *c)
{
    struct api *a = c->api;
    int64_t limit = 100;
    req_int(c, "MaxResults", &limit);
    if (limit > PAGE_MAX)
        limit = PAGE_MAX;
    const char *token = req_str(c, "NextToken");
    const char *after = "";
    uint64_t token_uid = 0;
    if (token) {
        unsigned char *p;
        size_t len;
        if (open_text(c, token, &p, &len) || len < 17 || p[0] != 'C')
            return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
        int64_t issued = (int64_t)get64(p + 1);
        if (c->now_ms - issued > TOKEN_TTL_MS)
            return api_fail(c, KERR_EXPIRED_NEXT_TOKEN, "The NextToken has expired.");
        token_uid = get64(p + 9);
        after = (const char *)p + 17;
    }
    int64_t created_ms;
    bool has_created = req_time_ms(c, "StreamCreationTimestamp", &created_ms);
    streams_rdlock(a);
    struct stream *s = ctx_stream(c);
    if (!s || (has_created && created_ms / 1000 != s->created_ms / 1000)) {
        if (s)
            api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", s->name,
                     s->account);
        streams_unlock(a);
        return -1;
    }
    if (token && token_uid != s->uid) {
        streams_unlock(a);
        return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
    }
    struct consumer_info *page = arena_alloc(&c->arena, (size_t)(limit + 1) * sizeof *page);
    size_t n = 0;
    struct consumers *r = a->consumers;
    pthread_mutex_lock(&r->mu);
    for (size_t i = lower_bound(r, s->uid, after); i < r->n && r->v[i].uid == s->uid && n <= (size_t)limit;
         i++) {
        if (strcmp(r->v[i].name, after) <= 0 || status_at(&r->v[i], c->now_ms) == CONSUMER_GONE)
            continue;
        fill_info(&page[n++], &r->v[i], s, c->now_ms);
    }
    pthread_mutex_unlock(&r->mu);
    streams_unlock(a);
    bool more = n > (size_t)limit;
    if (more)
        n = (size_t)limit;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Consumers");
    enc_arr_begin(e);
    for (size_t i = 0; i < n; i++) {
        enc_obj_begin(e);
        enc_consumer(c, &page[i]);
        enc_obj_end(e);
    }
    enc_arr_end(e);
    if (more) {
        size_t nl = strlen(page[n - 1].name);
        unsigned char *p = arena_alloc(&c->arena, 17 + nl);
        p[0] = 'C';
        put64(p + 1, (uint64_t)c->now_ms);
        put64(p + 9, page[n - 1].uid);
        memcpy(p + 17, page[n - 1].name, nl);
        enc_key(e, "NextToken"), enc_strz(e, seal_text(c, p, 17 + nl));
    }
    enc_obj_end(e);
    return 0;
}
