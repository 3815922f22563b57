/* op_update_shard_count.c: UpdateShardCount (UNIFORM_SCALING), UpdateStreamMode,
 * UpdateMaxRecordSize and DescribeLimits: the stream-wide capacity settings. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DAY_MS 86400000LL
#define ON_DEMAND_STREAM_LIMIT 50

static const char *const scaling_types[] = {"UNIFORM_SCALING", NULL};
static const char *const stream_modes[] = {"PROVISIONED", "ON_DEMAND", NULL};

static const struct vfield scale_schema[] = {
    F_STREAM_NAME,
    {"TargetShardCount", VT_INTEGER, {NOT_NULL, GE(1)}, 0, 0, 0},
    {"ScalingType", VT_STRING, {NOT_NULL, ENUM(scaling_types)}, 0, 0, 0},
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static int scale_stream(struct api_ctx *c, struct stream *s)
{
    if (reshard_check(c, s))
        return -1;
    int64_t target = 0;
    req_int(c, "TargetShardCount", &target);
    uint32_t open = stream_open_shards(s);
    uint32_t total_open = streams_open_shards(c->api, s->account, s->region, c->now_ms);
    if (target > c->api->cfg.shard_limit || (int64_t)total_open - open + target > c->api->cfg.shard_limit)
        return api_fail(c, KERR_LIMIT_EXCEEDED,
                        "Target shard count or number of open shards cannot be greater than %d. Current open "
                        "shard count: %u, Target shard count: %lld",
                        c->api->cfg.shard_limit, open, (long long)target);
    if (target > 2 * (int64_t)open)
        return api_fail(c, KERR_LIMIT_EXCEEDED,
                        "UpdateShardCount cannot scale up over double your current open shard count. Current "
                        "open shard count: %u, Target shard count: %lld",
                        open, (long long)target);
    if (2 * target < (int64_t)open)
        return api_fail(
            c, KERR_LIMIT_EXCEEDED,
            "UpdateShardCount cannot scale down below half your current open shard count. Current "
            "open shard count: %u, Target shard count: %lld",
            open, (long long)target);
    if (target > 10000 && target > open)
        return api_fail(c, KERR_LIMIT_EXCEEDED,
                        "Cannot scale a stream beyond 10000 shards. Stream %s under account %s.", s->name,
                        ctx_stream_account(c));
    /* the rolling 24-hour window of scalings */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < s->nscalings; i++)
        if (s->scalings[i] > c->now_ms - DAY_MS)
            s->scalings[kept++] = s->scalings[i];
    s->nscalings = kept;
    if ((int64_t)kept >= c->api->cfg.scalings_per_day)
        return api_fail(c, KERR_LIMIT_EXCEEDED,
                        "Stream %s under account %s has reached its limit of %d UpdateShardCount calls in a "
                        "rolling 24 hour period.",
                        s->name, ctx_stream_account(c), c->api->cfg.scalings_per_day);
    if (target != open) {
        if (stream_scale(c->api, s, (uint32_t)target, c->now_ms))
            return fail_no_indices(c, s);
        int64_t *v = realloc(s->scalings, (kept + 1) * sizeof *v);
        if (!v)
            abort();
        s->scalings = v;
        s->scalings[s->nscalings++] = c->now_ms;
    }
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "StreamName"), enc_strz(e, s->name);
    enc_key(e, "StreamARN"), enc_strz(e, stream_arn(c, s));
    enc_key(e, "CurrentShardCount"), enc_int(e, open);
    enc_key(e, "TargetShardCount"), enc_int(e, target);
    enc_obj_end(e);
    return 0;
}

static int scale(struct api_ctx *c) { return with_stream(c, STREAM_WRITE, scale_stream); }

static const struct vfield mode_fields[] = {
    {"StreamMode", VT_STRING, {NOT_NULL, ENUM(stream_modes)}, 0, 0, 0},
    {0},
};

static const struct vfield mode_schema[] = {
    {"StreamARN", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048), REGEX(vre_stream_arn)}, 0, 0, 0},
    F_STREAM_ID,
    {"StreamModeDetails", VT_STRUCT, {NOT_NULL}, mode_fields, 0, 0},
    {"WarmThroughputMiBps", VT_INTEGER, {GE(0)}, 0, 0, 0},
    {0},
};

static int on_demand_streams(struct api_ctx *c)
{
    size_t n;
    struct stream **all = streams_of(c->api, ctx_stream_account(c), c->region, &n);
    int count = 0;
    for (size_t i = 0; i < n; i++)
        count += all[i]->on_demand && stream_status(all[i], c->now_ms) != ST_GONE;
    return count;
}

static int set_stream_mode(struct api_ctx *c, struct stream *s)
{
    const struct kv *m = kv_get(kv_get(c->req, "StreamModeDetails"), "StreamMode");
    bool on_demand = !strcmp(m->s, "ON_DEMAND");
    if (s->on_demand == on_demand)
        return 0;
    if (on_demand && on_demand_streams(c) >= ON_DEMAND_STREAM_LIMIT)
        return api_fail(c, KERR_LIMIT_EXCEEDED, "Limit for on-demand streams has been reached: %d.",
                        ON_DEMAND_STREAM_LIMIT);
    s->on_demand = on_demand;
    s->status = ST_UPDATING;
    s->status_until = c->now_ms + c->api->cfg.update_ms;
    return 0;
}

static int set_mode(struct api_ctx *c) { return with_stream(c, STREAM_ACTIVE, set_stream_mode); }

static const struct vfield record_size_schema[] = {
    {"StreamARN", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048), REGEX(vre_stream_arn)}, 0, 0, 0},
    F_STREAM_ID,
    {"MaxRecordSizeInKiB", VT_INTEGER, {NOT_NULL, GE(1024), LE(10240)}, 0, 0, 0},
    {0},
};

static int set_stream_record_size(struct api_ctx *c, struct stream *s)
{
    int64_t kib = 1024;
    req_int(c, "MaxRecordSizeInKiB", &kib);
    s->max_record_kib = (int32_t)kib;
    return 0;
}

static int set_record_size(struct api_ctx *c)
{
    return with_stream(c, STREAM_ACTIVE, set_stream_record_size);
}

static const struct vfield no_fields[] = {{0}};

static int describe_limits(struct api_ctx *c)
{
    streams_rdlock(c->api);
    uint32_t open = streams_open_shards(c->api, api_account(c), c->region, c->now_ms);
    int od = on_demand_streams(c);
    streams_unlock(c->api);
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "ShardLimit"), enc_int(e, c->api->cfg.shard_limit);
    enc_key(e, "OpenShardCount"), enc_int(e, open);
    enc_key(e, "OnDemandStreamCount"), enc_int(e, od);
    enc_key(e, "OnDemandStreamCountLimit"), enc_int(e, ON_DEMAND_STREAM_LIMIT);
    enc_obj_end(e);
    return 0;
}

const struct op_def op_update_shard_count = {.schema = scale_schema, .run = scale};
const struct op_def op_update_stream_mode = {.schema = mode_schema, .run = set_mode};
const struct op_def op_update_max_record_size = {.schema = record_size_schema, .run = set_record_size};
const struct op_def op_describe_limits = {.schema = no_fields, .run = describe_limits};
