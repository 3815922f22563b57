/* op_split_shard.c: SplitShard and MergeShards: the parent(s) close now, the children open
 * now, and the stream is UPDATING for --update-stream-ms (reads and writes go on). */
#include "internal.h"

static const struct vfield split_schema[] = {
    {"NewStartingHashKey", VT_STRING, {NOT_NULL, REGEX(vre_hash_key)}, 0, 0, 0},
    F_STREAM_NAME,
    {"ShardToSplit", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static const struct vfield merge_schema[] = {
    {"ShardToMerge", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"AdjacentShardToMerge", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

/* The stream, ACTIVE and provisioned, for a reshard (a copy, change lock held); -1 with the error. */
int reshard_check(struct api_ctx *c, struct stream *s)
{
    if (s->on_demand)
        return api_fail(c, KERR_VALIDATION,
                        "Request is invalid. Stream %s under account %s is in On-Demand mode.", s->name,
                        ctx_stream_account(c));
    int st = stream_status(s, c->now_ms);
    return st == ST_ACTIVE ? 0 : fail_not_active(c, s, st);
}

/* The open shard named by `given` (change lock held); NULL with the error. */
static struct shard *open_shard(struct api_ctx *c, struct stream *s, const char *given)
{
    uint32_t ix;
    char id[32];
    shard_parse(given, &ix); /* parsed before the stream was looked up */
    shard_id(id, ix);
    struct shard *sh = shard_by_index(s, ix);
    if (!sh) {
        api_fail(c, KERR_RESOURCE_NOT_FOUND, "Could not find shard %s in stream %s under account %s.", id,
                 s->name, ctx_stream_account(c));
        return NULL;
    }
    if (sh->closed_ms) {
        api_fail(c, KERR_INVALID_ARGUMENT,
                 "Shard %s in stream %s under account %s has already been merged or split, and thus is not "
                 "eligible for merging or splitting.",
                 id, s->name, ctx_stream_account(c));
        return NULL;
    }
    return sh;
}

/* Would adding `more` open shards pass the account's shard limit? (lock held) */
int check_shard_limit(struct api_ctx *c, uint32_t more)
{
    const char *acct = ctx_stream_account(c);
    uint32_t open = streams_open_shards(c->api, acct, c->region, c->now_ms);
    if ((int64_t)open + more <= c->api->cfg.shard_limit)
        return 0;
    return api_fail(c, KERR_LIMIT_EXCEEDED,
                    "This request would exceed the shard limit for the account %s in %s. Current shard count "
                    "for the account: %u. Limit: %d. Number of additional shards that would have resulted "
                    "from this request: %u. Refer to the AWS Service Limits page "
                    "(http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current "
                    "limits and how to request higher limits.",
                    acct, c->region, open, c->api->cfg.shard_limit, more);
}

int fail_no_indices(struct api_ctx *c, const struct stream *s)
{
    return api_fail(c, KERR_LIMIT_EXCEEDED,
                    "Stream %s under account %s has used all %u shard ids a stream can have over its "
                    "life; it cannot be resharded further.",
                    s->name, ctx_stream_account(c), SHARD_INDEX_LIMIT);
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
                            ctx_stream_account(c));
    }
    return 0;
}

static int split_stream(struct api_ctx *c, struct stream *s)
{
    u128 hk;
    const char *hks = req_str(c, "NewStartingHashKey");
    bool beyond = u128_parse(hks, &hk) != 0; /* above 2^128-1: past every shard's end */
    struct shard *sh;
    if (reshard_check(c, s) || !(sh = open_shard(c, s, req_str(c, "ShardToSplit"))) ||
        check_shard_limit(c, 1))
        return -1;
    if (beyond || hk <= sh->start + 1 || hk >= sh->end) {
        char id[32], a[40], b[40];
        shard_id(id, sh->index);
        u128_str(a, sh->start);
        u128_str(b, sh->end);
        return api_fail(
            c, KERR_INVALID_ARGUMENT,
            "NewStartingHashKey %s used in SplitShard() on shard %s in stream %s under account %s is "
            "not both greater than one plus the shard's StartingHashKey %s and less than the "
            "shard's EndingHashKey %s.",
            hks, id, s->name, ctx_stream_account(c), a, b);
    }
    return stream_split(c->api, s, sh->index, hk, c->now_ms) ? fail_no_indices(c, s) : 0;
}

static int split(struct api_ctx *c)
{
    static const char *const ids[] = {"ShardToSplit"};
    return shard_ids_parse(c, ids, 1) ? -1 : with_stream(c, STREAM_WRITE, split_stream);
}

static int merge_stream(struct api_ctx *c, struct stream *s)
{
    struct shard *a, *b;
    if (reshard_check(c, s) || !(a = open_shard(c, s, req_str(c, "ShardToMerge"))) ||
        !(b = open_shard(c, s, req_str(c, "AdjacentShardToMerge"))))
        return -1;
    if (a == b || a->end == ~(u128)0 || a->end + 1 != b->start) {
        char ida[32], idb[32];
        shard_id(ida, a->index);
        shard_id(idb, b->index);
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Shards %s and %s in stream %s under account %s are not an adjacent pair of shards "
                        "eligible for merging",
                        ida, idb, s->name, ctx_stream_account(c));
    }
    return stream_merge(c->api, s, a->index, b->index, c->now_ms) ? fail_no_indices(c, s) : 0;
}

static int merge(struct api_ctx *c)
{
    static const char *const ids[] = {"ShardToMerge", "AdjacentShardToMerge"};
    return shard_ids_parse(c, ids, 2) ? -1 : with_stream(c, STREAM_WRITE, merge_stream);
}

const struct op_def op_split_shard = {.schema = split_schema, .run = split};
const struct op_def op_merge_shards = {.schema = merge_schema, .run = merge};
