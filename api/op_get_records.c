/* op_get_records.c: GetRecords, the read hot path. The store copies the records into the
 * request's arena (no lock or snapshot is held afterwards), and they are written from there
 * into the answer buffer (base64 inline). Reads start no earlier than the retention horizon, so records past
 * retention are never returned even before the trimmer removes them. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "kms/datakeys.h"
#include "kms/kms.h"

#define MAX_ANSWER_BYTES (10u << 20)
#define ITERATOR_TTL_MS 300000

static const struct vfield schema[] = {
    {"Limit", VT_INTEGER, {GE(1), LE(10000)}, 0, 0, 0},
    {"ShardIterator", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(512)}, 0, 0, 0},
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static void emit(struct enc *e, struct seq_shard *shard, const struct store_read *v)
{
    enc_obj_begin(e);
    ENC_KEY(e, "SequenceNumber"), enc_str_ascii(e, seq_next(shard, v->ix, v->pos), SEQ_LEN);
    ENC_KEY(e, "ApproximateArrivalTimestamp"), enc_time_ms(e, pos_ms(v->pos));
    ENC_KEY(e, "Data"), enc_blob(e, v->data, v->data_len);
    ENC_KEY(e, "PartitionKey"), enc_str(e, v->pk, v->pk_len);
    if (v->key_class >= DATAKEYS_CLASS_KMS) {
        ENC_KEY(e, "EncryptionType"), enc_str_ascii(e, "KMS", 3);
    }
    enc_obj_end(e);
}

static void amz_time(char out[40], int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 40, "%a %b %d %H:%M:%S UTC %Y", &tm);
}

static int run(struct api_ctx *c)
{
    /* opened by the pipeline (it names the stream authorization checks); an iterator reads only
     * in its region, and only for the account it was issued to */
    const struct iter *it = c->iter;
    if (!it || it->issued_ms > c->now_ms + 1000 || strcmp(it->region, c->region) ||
        strcmp(it->holder, api_account(c)))
        return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid ShardIterator.");
    const char *name = it->stream, *acct = it->account;
    uint64_t uid = it->uid, pos = it->pos;
    uint32_t ix = it->shard;
    int64_t issued = it->issued_ms;
    if (c->now_ms - issued > ITERATOR_TTL_MS) {
        char t1[40], t2[40];
        amz_time(t1, issued);
        amz_time(t2, c->now_ms);
        return api_fail(c, KERR_EXPIRED_ITERATOR,
                        "Iterator expired. The iterator was created at time %s while right now it is %s "
                        "which is further in the future than the tolerated delay of 300000 milliseconds.",
                        t1, t2);
    }
    /* an iterator reads only its own stream: a StreamARN naming another one is refused */
    const char *arn = req_str(c, "StreamARN");
    if (arn && strcmp(arn, arena_printf(&c->arena, "arn:aws:kinesis:%s:%s:stream/%s", c->region, acct, name)))
        return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid ShardIterator.");
    char id[32];
    shard_id(id, ix);
    streams_rdlock(c->api);
    struct stream *s = streams_find(c->api, acct, c->region, name, c->now_ms);
    struct shard *sh = s ? shard_by_index(s, ix) : NULL;
    if (sh && sh->pending)
        sh = NULL;
    bool successor = s && s->uid != uid; /* the stream was deleted and created again */
    int64_t horizon = s ? c->now_ms - (int64_t)s->retention_h * 3600000 : 0;
    bool closed = sh && sh->closed_ms;
    int64_t created = sh ? sh->created_ms : 0;
    if (sh && !successor) { /* for metrics: shard-level series are an open shard's */
        c->m.uid = uid;
        c->m.shard = ix;
        c->m.has_shard = !closed;
        c->m.levels = stream_metrics(s);
    }
    /* the children, for the answer that reaches the end of a closed shard */
    struct shard *kids = NULL;
    uint32_t nkids = 0;
    if (closed) {
        kids = arena_alloc(&c->arena, (s->nshards + 1) * sizeof *kids);
        for (uint32_t i = 0; i < s->nshards; i++)
            if (s->shards[i].parent == (int32_t)ix || s->shards[i].adjacent_parent == (int32_t)ix)
                kids[nkids++] = s->shards[i];
    }
    streams_unlock(c->api);
    if (!sh)
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Shard %s in stream %s under account %s does not exist",
                        id, name, acct);
    struct enc *e = &c->out;
    if (successor) { /* as AWS: an iterator of the old stream reads nothing from the new one */
        enc_obj_begin(e);
        enc_key(e, "Records");
        enc_arr_begin(e);
        enc_arr_end(e);
        enc_key(e, "MillisBehindLatest"), enc_int(e, 0);
        enc_key(e, "NextShardIterator"),
            enc_strz(
                e, iter_seal(c, &(struct iter){name, acct, c->region, it->holder, uid, ix, pos, c->now_ms}));
        enc_obj_end(e);
        return 0;
    }
    bool fault = api_inject_fault(c->api);
    if (fault && api_rand64() & 1)
        return api_fail(c, KERR_INTERNAL_FAILURE, NULL);
    if (fault || (c->api->limits && !limits_read_call(c->api->limits, log_id(uid, ix))))
        return api_fail(c, KERR_THROUGHPUT_EXCEEDED, "%s",
                        record_error_message(c, KERR_THROUGHPUT_EXCEEDED, ix));
    int64_t limit = 10000;
    req_int(c, "Limit", &limit);
    uint64_t from = pos > pos_floor(horizon) ? pos : pos_floor(horizon);

    /* the records, and the shard's newest position from the same snapshot */
    struct store_records got = {.alloc = arena_alloc_fn, .actx = &c->arena};
    int rc = store_scan(c->api->store, log_id(uid, ix), from, (size_t)limit, MAX_ANSWER_BYTES, &got);
    if (rc)
        return kms_scan_fail(c, log_id(uid, ix), rc);
    /* the state of each KMS key that sealed records applies to the whole call */
    if (kms_records_check(c, got.v, got.n))
        return -1;
    uint64_t last = got.last;
    /* the answer's size, so its buffer is allocated once: per record the member names, the
     * sequence number and timestamp (under 160 bytes), the key, and the data (base64 in JSON);
     * then the page's end and its iterator */
    size_t size = 1024;
    for (size_t i = 0; i < got.n; i++)
        size += 160 + got.v[i].pk_len +
                (e->fmt == WIRE_JSON ? (got.v[i].data_len + 2) / 3 * 4 : got.v[i].data_len);
    buf_grow(&e->b, size);
    enc_obj_begin(e);
    enc_key(e, "Records");
    enc_arr_begin(e);
    struct seq_shard numbers;
    seq_shard_init(&numbers, ix, created);
    for (size_t i = 0; i < got.n; i++)
        emit(e, &numbers, &got.v[i]);
    enc_arr_end(e);
    if (c->api->limits)
        limits_read_bytes(c->api->limits, log_id(uid, ix), got.bytes);
    uint64_t next = got.n ? got.v[got.n - 1].pos + 1 : from;
    int64_t behind = next <= last ? c->now_ms - pos_ms(next) : 0;
    c->m.records = got.n;
    c->m.bytes = got.bytes;
    c->m.age_ms = got.n ? c->now_ms - pos_ms(got.v[got.n - 1].pos) : behind > 0 ? behind : 0;
    enc_key(e, "MillisBehindLatest"), enc_int(e, behind > 0 ? behind : 0);
    /* a closed shard takes no more records: having read its last one is its end */
    if (!(closed && next > last)) {
        enc_key(e, "NextShardIterator"),
            enc_strz(
                e, iter_seal(c, &(struct iter){name, acct, c->region, it->holder, uid, ix, next, c->now_ms}));
    } else {
        enc_child_shards(e, kids, nkids);
    }
    enc_obj_end(e);
    return 0;
}

const struct op_def op_get_records = {.schema = schema, .run = run};
