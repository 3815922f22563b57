/* op_list_shards.c: ListShards, by StreamName/StreamARN or by a NextToken that carries the
 * stream, its uid, the last shard listed and when it was issued (expires after 300 s). */
#include <string.h>

#include "internal.h"

static const struct vfield schema[] = {
    {"ExclusiveStartShardId", VT_STRING, {REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"MaxResults", VT_INTEGER, {GE(1), LE(10000)}, 0, 0, 0},
    {"NextToken", VT_STRING, {LEN_GE(1), LEN_LE(1048576)}, 0, 0, 0},
    {"StreamCreationTimestamp", VT_TIMESTAMP, {{0}}, 0, 0, 0},
    F_STREAM_NAME_OPT,
    F_STREAM_ARN,
    {0},
};

#define TOKEN_TTL_MS 300000
#define TOKEN_FIXED (1 + 8 + 8 + 4)

static int run(struct api_ctx *c)
{
    const char *token = req_str(c, "NextToken");
    const char *name = req_str(c, "StreamName");
    const char *arn = req_str(c, "StreamARN");
    const char *after = req_str(c, "ExclusiveStartShardId");
    int64_t max = 1000;
    req_int(c, "MaxResults", &max);
    uint64_t uid = 0;
    int64_t after_index = -1;
    if (token) {
        if (name || arn)
            return api_fail(c, KERR_INVALID_ARGUMENT, "NextToken and %s cannot be provided together.",
                            name ? "StreamName" : "StreamARN");
        if (after)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "NextToken and ExclusiveStartShardId cannot be provided together.");
        unsigned char *p;
        size_t len;
        if (open_text(c, token, &p, &len) || len <= TOKEN_FIXED || p[0] != 'H')
            return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
        int64_t issued = (int64_t)get64(p + 1);
        if (c->now_ms - issued > TOKEN_TTL_MS)
            return api_fail(c, KERR_EXPIRED_NEXT_TOKEN, "The NextToken has expired.");
        uid = get64(p + 9);
        after_index = (int64_t)((uint32_t)p[17] << 24 | (uint32_t)p[18] << 16 | (uint32_t)p[19] << 8 | p[20]);
        c->stream_name = (const char *)p + TOKEN_FIXED;
    } else {
        if (!name && !arn)
            return api_fail(c, KERR_INVALID_ARGUMENT, "Either NextToken or StreamName should be provided.");
        if (api_resolve_stream(c))
            return -1;
        if (after) {
            uint32_t ix;
            after_index = shard_parse(after, &ix) ? -1 : (int64_t)ix;
        }
    }
    streams_rdlock(c->api);
    int rc = -1;
    struct stream *s = ctx_stream(c);
    if (!s)
        goto out;
    if (token && s->uid != uid) {
        api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", s->name,
                 c->api->account);
        goto out;
    }
    int st = stream_status(s, c->now_ms);
    if (st == ST_CREATING) {
        api_fail(c, KERR_RESOURCE_IN_USE, "Stream %s under account %s not ACTIVE, instead in state %s",
                 s->name, c->api->account, stream_status_name(st));
        goto out;
    }
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Shards");
    enc_arr_begin(e);
    int64_t n = 0;
    uint32_t last = 0;
    bool more = false;
    for (uint32_t i = 0; i < s->nshards; i++) {
        if ((int64_t)s->shards[i].index <= after_index || shard_expired(s, &s->shards[i], c->now_ms))
            continue;
        if (n == max) {
            more = true;
            break;
        }
        enc_shard(c, s, &s->shards[i]);
        last = s->shards[i].index;
        n++;
    }
    enc_arr_end(e);
    if (more) {
        size_t nl = strlen(s->name);
        unsigned char *p = arena_alloc(&c->arena, TOKEN_FIXED + nl);
        p[0] = 'H';
        put64(p + 1, (uint64_t)c->now_ms);
        put64(p + 9, s->uid);
        p[17] = (unsigned char)(last >> 24);
        p[18] = (unsigned char)(last >> 16);
        p[19] = (unsigned char)(last >> 8);
        p[20] = (unsigned char)last;
        memcpy(p + TOKEN_FIXED, s->name, nl);
        enc_key(e, "NextToken"), enc_strz(e, seal_text(c, p, TOKEN_FIXED + nl));
    }
    enc_obj_end(e);
    rc = 0;
out:
    streams_unlock(c->api);
    return rc;
}

const struct op_def op_list_shards = {.schema = schema, .run = run};
