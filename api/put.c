/* put.c: the write path shared by PutRecord and PutRecords.
 *
 * Hash keys are computed before any lock; the registry's read lock is held only to map hash
 * keys to open shards and copy the stream uid; then the records of every shard go to the store
 * in one append (one group-commit job). The call does not wait: the operation's second half
 * (c->resume, which writes the answer) runs when the commit is durable, on the caller's
 * thread (the connection's event loop) or else on the store's committer thread, and api_finish
 * hands the answer back. */
#include <string.h>

#include "internal.h"
#include "kms/kms.h"

static int admit_and_append(struct api_ctx *c, struct put_state *ps);

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
    streams_rdlock(c->api);
    struct stream *s = ctx_stream(c);
    if (!s) {
        streams_unlock(c->api);
        return -1;
    }
    int st = stream_status(s, c->now_ms);
    if (st != ST_ACTIVE && st != ST_UPDATING) {
        streams_unlock(c->api);
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", s->name,
                        c->api->account);
    }
    ps->uid = s->uid;
    c->m.uid = s->uid;
    c->m.levels = stream_metrics(s);
    char kid[40];
    snprintf(kid, sizeof kid, "%s", kms_stream_kid(s, c->now_ms));
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
        if (s->on_demand) { /* demand, throttled or not, drives on-demand scaling */
            __atomic_add_fetch(&sh->offered, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&sh->offered_bytes, items[i].pk_len + items[i].data_len, __ATOMIC_RELAXED);
        }
    }
    /* a reshard waits for this before it closes a shard (see stream_close_shards) */
    __atomic_add_fetch(&c->api->inflight, 1, __ATOMIC_ACQ_REL);
    streams_unlock(c->api);
    /* a KMS-encrypted stream: its key's state applies to every write at once, to the whole call */
    if (kid[0] && kms_stream_key_check(c, kid)) {
        __atomic_sub_fetch(&c->api->inflight, 1, __ATOMIC_ACQ_REL);
        return -1;
    }
    ps->kms = kid[0] != 0;
    int rc = admit_and_append(c, ps);
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
        if (!ps->items[i].err)
            ps->items[i].pos = ps->recs[ps->slot[i]].pos;
    return c->resume(c);
}

/* The store's callback (committer thread): the answer is written elsewhere (api_continue), so
 * that the committer goes on to the next group commit at once. */
static void committed(void *arg, int rc)
{
    struct api_ctx *c = arg;
    __atomic_sub_fetch(&c->api->inflight, 1, __ATOMIC_ACQ_REL);
    ((struct put_state *)c->op_state)->rc = rc;
    api_continue(c, answer_committed);
}

static int admit_and_append(struct api_ctx *c, struct put_state *ps)
{
    struct put_item *items = ps->items;
    size_t n = ps->n;
    uint64_t uid = ps->uid;

    /* turn away what the shards' write limits do not admit, and injected failures */
    size_t admitted = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].err = 0;
        if (api_inject_fault(c->api))
            items[i].err = api_rand64() & 1 ? KERR_THROUGHPUT_EXCEEDED : KERR_INTERNAL_FAILURE;
        else if (c->api->limits && !limits_write(c->api->limits, log_id(uid, items[i].shard),
                                                 items[i].pk_len + items[i].data_len))
            items[i].err = KERR_THROUGHPUT_EXCEEDED;
        admitted += !items[i].err;
    }
    if (!admitted)
        return c->resume(c);

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
        *r = (struct store_rec){items[i].pk, items[i].pk_len, items[i].data, items[i].data_len, 0};
        slot[i] = (size_t)(r - recs);
    }
    ps->recs = recs;
    ps->slot = slot;
    int rc = store_append_async(c->api->store, batches, nb, committed, c);
    return rc ? api_store_fail(c, rc) : API_PENDING;
}
