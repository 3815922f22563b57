/* op_describe_stream.c: DescribeStream, pages of at most 100 shards after
 * ExclusiveStartShardId, with HasMoreShards. */
#include <string.h>

#include "internal.h"

static const struct vfield schema[] = {
    {"Limit", VT_INTEGER, {GE(1), LE(10000)}, 0, 0, 0},
    {"ExclusiveStartShardId", VT_STRING, {REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

void enc_shard(struct api_ctx *c, const struct shard *sh)
{
    struct enc *e = &c->out;
    char id[32], num[40], seq[SEQ_LEN + 1];
    enc_obj_begin(e);
    shard_id(id, sh->index);
    enc_key(e, "ShardId"), enc_strz(e, id);
    if (sh->parent >= 0) {
        shard_id(id, (uint32_t)sh->parent);
        enc_key(e, "ParentShardId"), enc_strz(e, id);
    }
    if (sh->adjacent_parent >= 0) {
        shard_id(id, (uint32_t)sh->adjacent_parent);
        enc_key(e, "AdjacentParentShardId"), enc_strz(e, id);
    }
    enc_key(e, "HashKeyRange");
    enc_obj_begin(e);
    u128_str(num, sh->start);
    enc_key(e, "StartingHashKey"), enc_strz(e, num);
    u128_str(num, sh->end);
    enc_key(e, "EndingHashKey"), enc_strz(e, num);
    enc_obj_end(e);
    enc_key(e, "SequenceNumberRange");
    enc_obj_begin(e);
    seq_format(seq, sh->index, sh->created_ms, 0, 0);
    enc_key(e, "StartingSequenceNumber"), enc_strz(e, seq);
    if (sh->closed_ms) {
        seq_format_end(seq, sh->index, sh->created_ms, sh->closed_ms);
        enc_key(e, "EndingSequenceNumber"), enc_strz(e, seq);
    }
    enc_obj_end(e);
    enc_obj_end(e);
}

static int describe(struct api_ctx *c, struct stream *s)
{
    int64_t limit = 100;
    req_int(c, "Limit", &limit);
    if (limit > 100)
        limit = 100;
    const char *after = req_str(c, "ExclusiveStartShardId");
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "StreamDescription");
    enc_obj_begin(e);
    enc_stream_common(c, s);
    enc_key(e, "Shards");
    enc_arr_begin(e);
    bool more = false;
    if (stream_status(s, c->now_ms) != ST_CREATING) {
        int64_t n = 0;
        char id[32];
        for (uint32_t i = 0; i < s->nshards; i++) {
            shard_id(id, s->shards[i].index);
            if ((after && strcmp(id, after) <= 0) || !shard_visible(s, &s->shards[i], c->now_ms))
                continue;
            if (n == limit) {
                more = true;
                break;
            }
            enc_shard(c, &s->shards[i]);
            n++;
        }
    }
    enc_arr_end(e);
    enc_key(e, "HasMoreShards"), enc_bool(e, more);
    enc_obj_end(e);
    enc_obj_end(e);
    return 0;
}

static int run(struct api_ctx *c) { return with_stream(c, STREAM_READ, describe); }

const struct op_def op_describe_stream = {.schema = schema, .run = run};
