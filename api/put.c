/* put.c: the write path shared by PutRecord and PutRecords.
 *
 * Hash keys are computed before any lock; the registry's read lock is held only to map hash
 * keys to open shards and copy the stream uid; then the records of every shard go to the store
 * in one append (one group-commit job). The call does not wait: the operation's second half
 * (c->resume, which writes the answer) runs when the commit is durable, on the caller's
 * thread (the connection's event loop) or else on the store's committer thread, and api_finish
 * hands the answer back.
 *
 * Re-routing. An append the store refuses because a shard's log was sealed or dropped (another
 * front-end sharing the store resharded or deleted the stream, and this one routed by its older
 * layout) wrote nothing: the call is queued for the maintenance thread (the loop and the
 * committer must not wait on the database), which reads the stream's rows again and routes and
 * appends the same records by the layout they hold now, at most PUT_REROUTES times, before the
 * retryable InternalFailure. Per-key order holds: a child shard is routed to only once its
 * parent's log is sealed (streams.c), so nothing can land in the parent after it. */
#include <string.h>

#include "internal.h"
#include "kms/kms.h"

#define PUT_REROUTES 3    /* layout refreshes a write refused by the store is routed again after */
#define PUT_REROUTE_MS 50 /* apart by this times the refreshes so far */

static int append(struct api_ctx *c, struct put_state *ps);

/* Map every item to the open shard holding its hash key, by the registry's current layout, and
 * count the call as in flight (a reshard waits for it, see reshard_apply). kid (40 bytes)
 * gets the stream's KMS key id, or "". Again (a re-route): the stream must still be the one
 * first routed to. Returns 0, or -1 with the error recorded. */
static int route(struct api_ctx *c, struct put_state *ps, char *kid, bool again)
{
    struct put_item *items = ps->items;
    size_t n = ps->n;
    streams_rdlock(c->api);
    struct stream *s = ctx_stream(c);
    if (!s) {
        streams_unlock(c->api);
        return -1;
    }
    int st = stream_status(s, c->now_ms);
    if ((st != ST_ACTIVE && st != ST_UPDATING) || (again && s->uid != ps->uid)) {
        streams_unlock(c->api);
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", s->name,
                        s->account);
    }
    ps->uid = s->uid;
    c->m.uid = s->uid;
    c->m.levels = stream_metrics(s);
    snprintf(kid, 40, "%s", kms_stream_kid(s, c->now_ms));
    /* the record size limit is the stream's (1 MiB unless raised), partition key included;
     * validation already held the data alone to it */
    size_t max = (size_t)s->max_record_kib * 1024, total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sz = items[i].pk_len + items[i].data_len;
        total += sz;
        if (sz > max) {
            streams_unlock(c->api);
            const char *at =
                n > 1 || c->batch ? arena_printf(&c->arena, "records.%zu.member.data", i + 1) : "data";
            return api_fail(
                c, KERR_VALIDATION,
                "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=%zu cap=%zu]' "
                "at '%s' failed to satisfy constraint: Member must have length less than or equal "
                "to %zu",
                items[i].data_len, items[i].data_len, at, max - items[i].pk_len);
        }
    }
    if (c->batch && total > PUT_RECORDS_LIMIT(s->max_record_kib)) {
        int mb = s->max_record_kib > 1024 ? 10 : 5;
        streams_unlock(c->api);
        return api_fail(c, KERR_INVALID_ARGUMENT, "Records size exceeds %d MB limit", mb);
    }
    for (size_t i = 0; i < n; i++) {
        struct shard *sh = shard_for_hash(s, items[i].hash);
        if (!sh) { /* cannot happen: open shards always cover the key space */
            streams_unlock(c->api);
            return api_fail(c, KERR_INTERNAL_FAILURE, NULL);
        }
        items[i].shard = sh->index;
        items[i].shard_created_ms = sh->created_ms;
        if (s->on_demand && !again) { /* demand, throttled or not, drives on-demand scaling */
            __atomic_add_fetch(&sh->offered, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&sh->offered_bytes, items[i].pk_len + items[i].data_len, __ATOMIC_RELAXED);
        }
    }
    __atomic_add_fetch(&c->api->inflight, 1, __ATOMIC_ACQ_REL);
    streams_unlock(c->api);
    return 0;
}

/* Turn away what the shards' write limits do not admit, and injected failures (each item's
 * err says why); returns how many items are left to write. Once per call: a re-route appends
 * what was admitted. */
static size_t admit(struct api_ctx *c, struct put_state *ps)
{
    struct put_item *items = ps->items;
    size_t admitted = 0;
    for (size_t i = 0; i < ps->n; i++) {
        items[i].err = 0;
        if (api_inject_fault(c->api))
            items[i].err = api_rand64() & 1 ? KERR_THROUGHPUT_EXCEEDED : KERR_INTERNAL_FAILURE;
        else if (c->api->limits && !limits_write(c->api->limits, log_id(ps->uid, items[i].shard),
                                                 items[i].pk_len + items[i].data_len))
            items[i].err = KERR_THROUGHPUT_EXCEEDED;
        admitted += !items[i].err;
    }
    return admitted;
}

int put_records_append(struct api_ctx *c, struct put_item *items, size_t n, int (*resume)(struct api_ctx *c))
{
    struct put_state *ps = arena_zalloc(&c->arena, sizeof *ps);
    ps->items = items;
    ps->n = n;
    c->op_state = ps;
    c->resume = resume;
    for (size_t i = 0; i < n; i++) {
        if (items[i].ehk) {
            if (u128_parse(items[i].ehk, &items[i].hash))
                return api_fail(c, KERR_INVALID_ARGUMENT,
                                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, "
                                "2^128-1]. Specified value was %s",
                                items[i].ehk);
        } else {
            items[i].hash = hash_key(items[i].pk, items[i].pk_len);
        }
    }
    char kid[40];
    if (route(c, ps, kid, false))
        return -1;
    /* a KMS-encrypted stream: its key's state applies to every write at once, to the whole call */
    int rc;
    ps->kms = kid[0] != 0;
    if (ps->kms && kms_stream_key_check(c, kid))
        rc = -1;
    else if (!admit(c, ps))
        rc = c->resume(c);
    else
        rc = append(c, ps);
    if (rc != API_PENDING)
        __atomic_sub_fetch(&c->api->inflight, 1, __ATOMIC_ACQ_REL);
    return rc;
}

/* The answer once the records are durable, or failed (on the caller's thread, see committed). */
static int answer_committed(struct api_ctx *c)
{
    struct put_state *ps = c->op_state;
    if (ps->rc)
        return api_store_fail(c, ps->rc);
    for (size_t i = 0; i < ps->n; i++)
        if (!ps->items[i].err) {
            ps->items[i].pos = ps->recs[ps->slot[i]].pos;
            ps->items[i].ix = ps->recs[ps->slot[i]].ix;
        }
    return c->resume(c);
}

static int failed(struct api_ctx *c)
{
    (void)c;
    return -1; /* the error is recorded */
}

/* The store's callback (committer thread): the answer is written elsewhere (api_continue), so
 * that the committer goes on to the next group commit at once. An append refused because a
 * log was sealed or dropped waits for the maintenance thread to route it again (put_reroute). */
static void committed(void *arg, int rc)
{
    struct api_ctx *c = arg;
    struct api *a = c->api;
    struct put_state *ps = c->op_state;
    __atomic_sub_fetch(&a->inflight, 1, __ATOMIC_ACQ_REL);
    if ((rc == STORE_CONFLICT || rc == STORE_NOT_FOUND) && ps->reroutes < PUT_REROUTES) {
        pthread_mutex_lock(&a->maint_mu);
        bool queued = !a->stopping;
        if (queued) {
            ps->due_ms = clock_now_ms() + (int64_t)ps->reroutes * PUT_REROUTE_MS;
            ps->next = a->reroute;
            a->reroute = c;
            pthread_cond_signal(&a->maint_cv);
        }
        pthread_mutex_unlock(&a->maint_mu);
        if (queued)
            return;
    }
    ps->rc = rc;
    api_continue(c, answer_committed);
}

static struct put_state *state_of(struct api_ctx *c) { return c->op_state; }

void put_reroute(struct api *a, bool stopping)
{
    int64_t now = clock_now_ms();
    struct api_ctx *due = NULL, **at = &a->reroute;
    pthread_mutex_lock(&a->maint_mu);
    while (*at) { /* the due ones move to due, in the order they came (the list is newest first) */
        struct api_ctx *c = *at;
        struct put_state *ps = c->op_state;
        if (stopping || ps->due_ms <= now) {
            *at = ps->next;
            ps->next = due;
            due = c;
        } else {
            at = &ps->next;
        }
    }
    pthread_mutex_unlock(&a->maint_mu);
    if (!due)
        return;
    if (!stopping && store_shared(a->store)) { /* each stream's layout as its rows have it now */
        streams_change_lock(a);
        for (struct api_ctx *c = due; c; c = state_of(c)->next) {
            bool seen = false; /* each stream once: an earlier call of the list reloaded it */
            for (struct api_ctx *o = due; o != c && !seen; o = state_of(o)->next)
                seen = state_of(o)->uid == state_of(c)->uid;
            if (!seen)
                streams_reload(a, state_of(c)->uid);
        }
        streams_change_unlock(a);
    }
    while (due) {
        struct api_ctx *c = due;
        struct put_state *ps = c->op_state;
        due = ps->next;
        if (stopping) {
            ps->rc = STORE_UNAVAILABLE;
            api_continue(c, answer_committed);
            continue;
        }
        ps->reroutes++;
        c->now_ms = clock_now_ms();
        char kid[40];
        if (route(c, ps, kid, true)) {
            api_continue(c, failed);
            continue;
        }
        int rc = append(c, ps); /* the records it had admitted, nothing counted twice */
        if (rc != API_PENDING) {
            __atomic_sub_fetch(&a->inflight, 1, __ATOMIC_ACQ_REL);
            api_continue(c, failed);
        }
    }
}

static int append(struct api_ctx *c, struct put_state *ps)
{
    struct put_item *items = ps->items;
    size_t n = ps->n;
    uint64_t uid = ps->uid;

    /* one batch per distinct shard, in order of first appearance, records in request order
     * within it: each record finds its shard's batch in a small hash table (open addressing,
     * at most half full), then the batches are laid out one after the other */
    struct store_rec *recs = arena_alloc(&c->arena, n * sizeof *recs);
    struct store_batch *batches = arena_alloc(&c->arena, n * sizeof *batches);
    size_t *slot = arena_alloc(&c->arena, n * sizeof *slot); /* first its batch, then its rec */
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *tshard = arena_alloc(&c->arena, cap * sizeof *tshard),
             *tbatch = arena_alloc(&c->arena, cap * sizeof *tbatch);
    memset(tshard, 0xFF, cap * sizeof *tshard); /* UINT32_MAX: empty (an index is at most INT32_MAX) */
    size_t nb = 0;
    uint64_t floor = pos_floor(c->now_ms);
    for (size_t i = 0; i < n; i++) {
        if (items[i].err)
            continue;
        size_t h = (items[i].shard * 2654435761u) & (cap - 1);
        while (tshard[h] != items[i].shard && tshard[h] != UINT32_MAX)
            h = (h + 1) & (cap - 1);
        if (tshard[h] == UINT32_MAX) {
            tshard[h] = items[i].shard;
            tbatch[h] = (uint32_t)nb;
            batches[nb++] = (struct store_batch){log_id(uid, items[i].shard), floor, NULL, 0};
        }
        slot[i] = tbatch[h];
        batches[tbatch[h]].n++;
    }
    for (size_t b = 0, k = 0; b < nb; k += batches[b].n, batches[b].n = 0, b++)
        batches[b].recs = recs + k;
    for (size_t i = 0; i < n; i++) {
        if (items[i].err)
            continue;
        struct store_batch *sb = &batches[slot[i]];
        struct store_rec *r = sb->recs + sb->n++;
        *r = (struct store_rec){items[i].pk, items[i].pk_len, items[i].data, items[i].data_len, 0, 0};
        slot[i] = (size_t)(r - recs);
    }
    ps->recs = recs;
    ps->slot = slot;
    int rc = store_append_async(c->api->store, batches, nb, committed, c);
    return rc ? api_store_fail(c, rc) : API_PENDING;
}
