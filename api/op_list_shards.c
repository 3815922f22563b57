/* op_list_shards.c: ListShards, by StreamName/StreamARN with an optional ShardFilter, or by a
 * NextToken. A token carries everything the next page needs, because AWS refuses the stream,
 * the start and the filter beside it: the stream and its uid, the last shard listed, the
 * filter, and when it was issued (it expires after 300 s). */
#include <string.h>

#include "internal.h"

static const char *const filter_types[] = {"AFTER_SHARD_ID",
                                           "AT_TRIM_HORIZON",
                                           "FROM_TRIM_HORIZON",
                                           "AT_LATEST",
                                           "AT_TIMESTAMP",
                                           "FROM_TIMESTAMP",
                                           NULL};
enum {
    F_NONE = -1,
    F_AFTER_SHARD_ID,
    F_AT_TRIM_HORIZON,
    F_FROM_TRIM_HORIZON,
    F_AT_LATEST,
    F_AT_TIMESTAMP,
    F_FROM_TIMESTAMP
};

static const struct vfield filter_fields[] = {
    {"Type", VT_STRING, {NOT_NULL, ENUM(filter_types)}, 0, 0, 0},
    {"ShardId", VT_STRING, {REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"Timestamp", VT_TIMESTAMP, {{0}}, 0, 0, 0},
    {0},
};

static const struct vfield schema[] = {
    {"ExclusiveStartShardId", VT_STRING, {REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"MaxResults", VT_INTEGER, {GE(1), LE(10000)}, 0, 0, 0},
    {"NextToken", VT_STRING, {LEN_GE(1), LEN_LE(1048576)}, 0, 0, 0},
    {"StreamCreationTimestamp", VT_TIMESTAMP, {{0}}, 0, 0, 0},
    F_STREAM_NAME_OPT,
    {"ShardFilter", VT_STRUCT, {{0}}, filter_fields, 0, 0},
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

#define TOKEN_TTL_MS 300000
/* 'H' | issued ms (8) | stream uid (8) | last shard (4) | filter type (1) | filter time (8) | name */
#define TOKEN_FIXED (1 + 8 + 8 + 4 + 1 + 8)
/* After the fixed part: the stream's name, then (NUL-separated) its owner's account and the
 * account the token was issued to; a token of the release before accounts has the name alone
 * (the server's account, issued to it). */

struct token {
    const unsigned char *p; /* the opened token (arena) */
    size_t len;
    const char *name, *owner, *holder;
};

/* Open a NextToken: 0, or -1 when it is not one of ours. */
static int token_open(struct api_ctx *c, const char *text, struct token *t)
{
    unsigned char *p;
    size_t len;
    if (open_text(c, text, &p, &len) || len <= TOKEN_FIXED || p[0] != 'H')
        return -1;
    *t = (struct token){.p = p, .len = len, .name = (const char *)p + TOKEN_FIXED};
    const char *end = (const char *)p + len, *o = t->name + strlen(t->name);
    if (o == end) {
        t->owner = t->holder = c->api->account;
        return 0;
    }
    t->owner = o + 1;
    t->holder = o + 1 < end ? t->owner + strlen(t->owner) + 1 : end;
    return t->holder < end && t->holder + strlen(t->holder) == end ? 0 : -1;
}

/* Before authorization: a NextToken names the stream (and owner) the call lists, which is
 * what authorization checks; one that does not open is run's to answer. */
static int check(struct api_ctx *c)
{
    const char *text = req_str(c, "NextToken");
    struct token t;
    if (text && !req_str(c, "StreamName") && !req_str(c, "StreamARN") && token_open(c, text, &t) == 0) {
        c->stream_name = t.name;
        c->stream_acct = t.owner;
    }
    return 0;
}

struct filter {
    int type;
    int64_t ts; /* AT_/FROM_TIMESTAMP */
};

/* Whether a shard belongs in the answer under the filter (the trim horizon is the later of the
 * stream's creation and now minus retention). */
static bool keep(const struct stream *s, const struct shard *sh, const struct filter *f, int64_t now)
{
    if (!shard_visible(s, sh, now))
        return false;
    int64_t horizon = now - (int64_t)s->retention_h * 3600000;
    if (horizon < s->created_ms)
        horizon = s->created_ms;
    bool open = shard_open(sh);
    switch (f->type) {
    case F_AT_LATEST: return open;
    case F_AT_TRIM_HORIZON: return sh->created_ms <= horizon && (open || sh->closed_ms >= horizon);
    case F_AT_TIMESTAMP: return sh->created_ms <= f->ts && (open || sh->closed_ms >= f->ts);
    case F_FROM_TIMESTAMP: return open || sh->closed_ms >= (f->ts > horizon ? f->ts : horizon);
    default: return true; /* none, FROM_TRIM_HORIZON, AFTER_SHARD_ID (by position) */
    }
}

static int read_filter(struct api_ctx *c, struct filter *f, int64_t *after_index)
{
    const struct kv *sf = kv_get(c->req, "ShardFilter");
    f->type = F_NONE;
    f->ts = 0;
    if (!sf || sf->type != KV_OBJ)
        return 0;
    const struct kv *t = kv_get(sf, "Type");
    for (int i = 0; filter_types[i]; i++)
        if (!strcmp(t->s, filter_types[i]))
            f->type = i;
    const struct kv *id = kv_get(sf, "ShardId");
    if (f->type == F_AFTER_SHARD_ID) {
        uint32_t ix;
        if (!id || id->type != KV_STR)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "ShardId must be supplied in a ShardFilter with a Type of AFTER_SHARD_ID");
        if (shard_parse(id->s, &ix) == 0 && (int64_t)ix > *after_index)
            *after_index = ix;
    }
    if ((f->type == F_AT_TIMESTAMP || f->type == F_FROM_TIMESTAMP) &&
        !kv_time_ms(c, kv_get(sf, "Timestamp"), &f->ts))
        return api_fail(
            c, KERR_INVALID_ARGUMENT,
            "Timestamp must be supplied in a ShardFilter with a Type of FROM_TIMESTAMP or AT_TIMESTAMP");
    return 0;
}

static int run(struct api_ctx *c)
{
    const char *token = req_str(c, "NextToken");
    const char *name = req_str(c, "StreamName");
    const char *arn = req_str(c, "StreamARN");
    const char *after = req_str(c, "ExclusiveStartShardId");
    int64_t max = 1000, ignored;
    req_int(c, "MaxResults", &max);
    if (max > 1000)
        max = 1000; /* AWS: "at most 1000 results are returned" */
    uint64_t uid = 0;
    int64_t after_index = -1;
    struct filter f;
    if (token) {
        if (name || arn)
            return api_fail(c, KERR_INVALID_ARGUMENT, "NextToken and %s cannot be provided together.",
                            name ? "StreamName" : "StreamARN");
        if (after)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "NextToken and ExclusiveStartShardId cannot be provided together.");
        if (kv_get(c->req, "ShardFilter"))
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "NextToken and ShardFilter cannot be provided together.");
        if (req_time_ms(c, "StreamCreationTimestamp", &ignored))
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "NextToken and StreamCreationTimestamp cannot be provided together.");
        struct token t;
        if (token_open(c, token, &t) || strcmp(t.holder, api_account(c)))
            return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
        const unsigned char *p = t.p;
        if (c->now_ms - (int64_t)get64(p + 1) > TOKEN_TTL_MS)
            return api_fail(c, KERR_EXPIRED_NEXT_TOKEN, "The timestamp on the NextToken has expired.");
        uid = get64(p + 9);
        after_index = (int64_t)((uint32_t)p[17] << 24 | (uint32_t)p[18] << 16 | (uint32_t)p[19] << 8 | p[20]);
        f.type = (int8_t)p[21];
        f.ts = (int64_t)get64(p + 22);
        c->stream_name = t.name;
        c->stream_acct = t.owner;
    } else {
        if (!name && !arn)
            return api_fail(c, KERR_INVALID_ARGUMENT, "Either NextToken or StreamName should be provided.");
        if (api_resolve_stream(c))
            return -1;
        if (after) {
            uint32_t ix;
            after_index = shard_parse(after, &ix) ? -1 : (int64_t)ix;
        }
        if (read_filter(c, &f, &after_index))
            return -1;
    }
    streams_rdlock(c->api);
    int rc = -1;
    struct stream *s = ctx_stream(c);
    if (!s)
        goto out;
    if (token && s->uid != uid) {
        api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", s->name,
                 ctx_stream_account(c));
        goto out;
    }
    int st = stream_status(s, c->now_ms);
    if (st == ST_CREATING) {
        fail_not_active(c, s, st);
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
        if ((int64_t)s->shards[i].index <= after_index || !keep(s, &s->shards[i], &f, c->now_ms))
            continue;
        if (n == max) {
            more = true;
            break;
        }
        enc_shard(c, &s->shards[i]);
        last = s->shards[i].index;
        n++;
    }
    enc_arr_end(e);
    if (more) {
        size_t nl = strlen(s->name), al = strlen(s->account), hl = strlen(api_account(c));
        size_t len = TOKEN_FIXED + nl + 1 + al + 1 + hl;
        unsigned char *p = arena_alloc(&c->arena, len);
        p[0] = 'H';
        put64(p + 1, (uint64_t)c->now_ms);
        put64(p + 9, s->uid);
        p[17] = (unsigned char)(last >> 24);
        p[18] = (unsigned char)(last >> 16);
        p[19] = (unsigned char)(last >> 8);
        p[20] = (unsigned char)last;
        p[21] = (unsigned char)(int8_t)f.type;
        put64(p + 22, (uint64_t)f.ts);
        memcpy(p + TOKEN_FIXED, s->name, nl);
        p[TOKEN_FIXED + nl] = 0;
        memcpy(p + TOKEN_FIXED + nl + 1, s->account, al);
        p[TOKEN_FIXED + nl + 1 + al] = 0;
        memcpy(p + TOKEN_FIXED + nl + 2 + al, api_account(c), hl);
        enc_key(e, "NextToken"), enc_strz(e, seal_text(c, p, len));
    }
    enc_obj_end(e);
    rc = 0;
out:
    streams_unlock(c->api);
    return rc;
}

const struct op_def op_list_shards = {.schema = schema, .check = check, .run = run};
