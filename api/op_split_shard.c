/* op_split_shard.c: SplitShard and MergeShards: the parent(s) close now, the children open
 * now, and the stream is UPDATING for --update-stream-ms (reads and writes go on). */
#include "internal.h"

static const struct vfield split_schema[] = {
    {"NewStartingHashKey", VT_STRING, {NOT_NULL, REGEX(vre_hash_key)}, 0, 0, 0},
    F_STREAM_NAME,
    {"ShardToSplit", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    F_STREAM_ARN,
    {0},
};

static const struct vfield merge_schema[] = {
    {"ShardToMerge", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"AdjacentShardToMerge", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    {0},
};

/* The stream, ACTIVE and provisioned, for a reshard (write lock held); NULL with the error. */
struct stream *reshard_stream(struct api_ctx *c, const char *op)
{
    struct stream *s = ctx_stream(c);
    if (!s)
        return NULL;
    (void)op;
    if (s->on_demand) {
        api_fail(c, KERR_VALIDATION, "Request is invalid. Stream %s under account %s is in On-Demand mode.",
                 s->name, c->api->account);
        return NULL;
    }
    int st = stream_status(s, c->now_ms);
    if (st != ST_ACTIVE) {
        fail_not_active(c, s, st);
        return NULL;
    }
    return s;
}

/* The open shard named by `given` (write lock held); NULL with the error. */
static struct shard *open_shard(struct api_ctx *c, struct stream *s, const char *given)
{
    uint32_t ix;
    char id[32];
    shard_parse(given, &ix); /* parsed before the stream was looked up */
    shard_id(id, ix);
    struct shard *sh = shard_by_index(s, ix);
    if (!sh) {
        api_fail(c, KERR_RESOURCE_NOT_FOUND, "Could not find shard %s in stream %s under account %s.", id,
                 s->name, c->api->account);
        return NULL;
    }
    if (sh->closed_ms) {
        api_fail(c, KERR_INVALID_ARGUMENT,
                 "Shard %s in stream %s under account %s has already been merged or split, and thus is not "
                 "eligible for merging or splitting.",
                 id, s->name, c->api->account);
        return NULL;
    }
    return sh;
}

/* Would adding `more` open shards pass the account's shard limit? (lock held) */
int check_shard_limit(struct api_ctx *c, uint32_t more)
{
    uint32_t open = streams_open_shards(c->api, c->now_ms);
    if ((int64_t)open + more <= c->api->cfg.shard_limit)
        return 0;
    return api_fail(c, KERR_LIMIT_EXCEEDED,
                    "This request would exceed the shard limit for the account %s in %s. Current shard count "
                    "for the account: %u. Limit: %d. Number of additional shards that would have resulted "
                    "from this request: %u. Refer to the AWS Service Limits page "
                    "(http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current "
                    "limits and how to request higher limits.",
                    c->api->account, c->region, open, c->api->cfg.shard_limit, more);
}

/* AWS checks shard ids are well formed before it looks the stream up. */
static int shard_ids_parse(struct api_ctx *c, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        const char *given = req_str(c, names[i]);
        uint32_t ix;
        if (shard_parse(given, &ix))
            return api_fail(c, KERR_RESOURCE_NOT_FOUND,
                            "Could not find shard %s in stream %s under account %s.", given, c->stream_name,
                            c->api->account);
    }
    return 0;
}

static int split(struct api_ctx *c)
{
    static const char *const ids[] = {"ShardToSplit"};
    if (shard_ids_parse(c, ids, 1))
        return -1;
    u128 hk;
    const char *hks = req_str(c, "NewStartingHashKey");
    bool beyond = u128_parse(hks, &hk) != 0; /* above 2^128-1: past every shard's end */
    streams_wrlock(c->api);
    int rc = -1;
    struct stream *s = reshard_stream(c, "SplitShard");
    struct shard *sh = s ? open_shard(c, s, req_str(c, "ShardToSplit")) : NULL;
    if (!sh || check_shard_limit(c, 1))
        goto out;
    if (beyond || hk <= sh->start + 1 || hk >= sh->end) {
        char id[32], a[40], b[40];
        shard_id(id, sh->index);
        u128_str(a, sh->start);
        u128_str(b, sh->end);
        api_fail(
            c, KERR_INVALID_ARGUMENT,
            "NewStartingHashKey %s used in SplitShard() on shard %s in stream %s under account %s is not "
            "both greater than one plus the shard's StartingHashKey %s and less than the shard's "
            "EndingHashKey %s.",
            hks, id, s->name, c->api->account, a, b);
        goto out;
    }
    int src = stream_split(c->api, s, sh->index, hk, c->now_ms);
    if (src) {
        api_store_fail(c, src);
        goto out;
    }
    rc = 0;
out:
    streams_unlock(c->api);
    return rc;
}

static int merge(struct api_ctx *c)
{
    static const char *const ids[] = {"ShardToMerge", "AdjacentShardToMerge"};
    if (shard_ids_parse(c, ids, 2))
        return -1;
    streams_wrlock(c->api);
    int rc = -1;
    struct stream *s = reshard_stream(c, "MergeShards");
    struct shard *a = s ? open_shard(c, s, req_str(c, "ShardToMerge")) : NULL;
    struct shard *b = a ? open_shard(c, s, req_str(c, "AdjacentShardToMerge")) : NULL;
    if (!b)
        goto out;
    if (a == b || a->end == ~(u128)0 || a->end + 1 != b->start) {
        char ida[32], idb[32];
        shard_id(ida, a->index);
        shard_id(idb, b->index);
        api_fail(c, KERR_INVALID_ARGUMENT,
                 "Shards %s and %s in stream %s under account %s are not an adjacent pair of shards eligible "
                 "for merging",
                 ida, idb, s->name, c->api->account);
        goto out;
    }
    int src = stream_merge(c->api, s, a->index, b->index, c->now_ms);
    if (src) {
        api_store_fail(c, src);
        goto out;
    }
    rc = 0;
out:
    streams_unlock(c->api);
    return rc;
}

const struct op_def op_split_shard = {.schema = split_schema, .run = split};
const struct op_def op_merge_shards = {.schema = merge_schema, .run = merge};
