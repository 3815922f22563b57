/* op_describe_stream_summary.c: DescribeStreamSummary. StreamId is derived from the stream's
 * uid and creation time (AWS's shape, [a-z0-9]{20}-[a-z0-9]{3}), so it is stable across restarts
 * and differs between two incarnations of one name. WarmThroughput is present for on-demand
 * streams of an account with the minimum throughput billing commitment on, as on AWS. */
#include "consumers.h"
#include "internal.h"

static const struct vfield schema[] = {
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void base36(char *out, int n, uint64_t v)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    for (int i = n - 1; i >= 0; i--, v /= 36)
        out[i] = digits[v % 36];
}

static void stream_id_text(char out[25], const struct stream *s)
{
    uint64_t a = mix(s->uid), b = mix(a ^ (uint64_t)s->created_ms);
    base36(out, 10, a);
    base36(out + 10, 10, b);
    out[20] = '-';
    base36(out + 21, 3, mix(b));
    out[24] = 0;
}

static int describe(struct api_ctx *c, struct stream *s)
{
    bool warm = *(bool *)c->op_state && s->on_demand;
    char id[25];
    stream_id_text(id, s);
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "StreamDescriptionSummary");
    enc_obj_begin(e);
    enc_stream_common(c, s);
    enc_key(e, "StreamId"), enc_strz(e, id);
    enc_key(e, "OpenShardCount"), enc_int(e, stream_open_shards(s));
    enc_key(e, "ConsumerCount"), enc_int(e, consumers_count(c->api, s->uid, c->now_ms));
    if (warm)
        enc_key(e, "WarmThroughput"), enc_warm_throughput(e, s, c->now_ms);
    enc_key(e, "MaxRecordSizeInKiB"), enc_int(e, s->max_record_kib);
    enc_obj_end(e);
    enc_obj_end(e);
    return 0;
}

static int run(struct api_ctx *c)
{
    /* the account's commitment is read before the lookup, outside the routing lock, and only
       when the stream is on demand */
    streams_rdlock(c->api);
    struct stream *s = streams_find(c->api, ctx_stream_account(c), c->region, c->stream_name, c->now_ms);
    bool on_demand = s && s->on_demand;
    streams_unlock(c->api);
    int src = 0;
    bool warm = on_demand && warm_throughput_commitment(c, &src);
    if (src)
        return api_store_fail(c, src);
    c->op_state = &warm;
    int rc = with_stream(c, STREAM_READ, describe);
    c->op_state = NULL;
    return rc;
}

const struct op_def op_describe_stream_summary = {.schema = schema, .run = run};
