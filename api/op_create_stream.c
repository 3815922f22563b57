/* op_create_stream.c: CreateStream. A provisioned stream gets ShardCount shards splitting the
 * hash key space uniformly; an on-demand stream starts with 4, as AWS's do. The stream is
 * CREATING for --create-stream-ms, then ACTIVE. */
#include <string.h>

#include "internal.h"

#define ON_DEMAND_SHARDS 4

static const char *const stream_modes[] = {"PROVISIONED", "ON_DEMAND", NULL};

static const struct vfield mode_fields[] = {
    {"StreamMode", VT_STRING, {NOT_NULL, ENUM(stream_modes)}, 0, 0, 0},
    {0},
};
static const struct vfield tag_value = {"member", VT_STRING, {{0}}, 0, 0, 0};

/* clang-format off */
static const struct vfield schema[] = {
    {"ShardCount", VT_INTEGER, {GE(1), LE(100000)}, 0, 0, 0},
    {"StreamName", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"StreamModeDetails", VT_STRUCT, {{0}}, mode_fields, 0, 0},
    {"Tags", VT_MAP, {LEN_GE(1), LEN_LE(200), CHILD_KEY_LEN(1, 128), CHILD_VAL_LEN(0, 256)}, 0, &tag_value, 0},
    {"WarmThroughputMiBps", VT_INTEGER, {GE(0)}, 0, 0, 0},
    {"MaxRecordSizeInKiB", VT_INTEGER, {GE(1024), LE(10240)}, 0, 0, 0},
    {0},
};
/* clang-format on */

static int run(struct api_ctx *c)
{
    const char *name = req_str(c, "StreamName");
    const struct kv *mode = kv_get(kv_get(c->req, "StreamModeDetails"), "StreamMode");
    int64_t count = 0;
    bool has_count = req_int(c, "ShardCount", &count);
    /* neither a count nor a mode makes an on-demand stream, as AWS does */
    bool on_demand = mode ? mode->type == KV_STR && !strcmp(mode->s, "ON_DEMAND") : !has_count;
    if (on_demand && has_count)
        return api_fail(c, KERR_VALIDATION, "ShardCount is not expected when StreamMode=ON_DEMAND");
    if (!on_demand && !has_count)
        return api_fail(c, KERR_VALIDATION,
                        "1 validation error detected: Value null at 'shardCount' failed to satisfy "
                        "constraint: Member must not be null");
    if (on_demand)
        count = ON_DEMAND_SHARDS;

    const struct kv *tags = kv_get(c->req, "Tags");
    uint32_t ntags = 0;
    struct tag *tv = NULL;
    if (tags && tags->type == KV_OBJ) {
        if (tags->n > 50)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "Failed to create stream %s under account %s because a given stream cannot "
                            "have more than 50 tags associated with it.",
                            name, api_account(c));
        if (check_tag_texts(c, tags, NULL))
            return -1;
        tv = arena_alloc(&c->arena, (tags->n + 1) * sizeof *tv);
        for (const struct kv *t = tags->child; t; t = t->next)
            tv[ntags++] = (struct tag){(char *)t->key, t->type == KV_STR ? (char *)t->s : ""};
    }

    int64_t kib = 1024, warm = -1;
    req_int(c, "MaxRecordSizeInKiB", &kib);
    /* warm throughput applies to an on-demand stream of a committed account (else it is ignored) */
    if (on_demand && req_int(c, "WarmThroughputMiBps", &warm) && warm_throughput_check(c, warm, &warm))
        return -1;
    streams_change_lock(c->api);
    int rc = -1;
    struct stream *s;
    if (streams_find(c->api, api_account(c), c->region, name, c->now_ms))
        api_fail(c, KERR_RESOURCE_IN_USE, "Stream %s under account %s already exists.", name, api_account(c));
    else if (check_shard_limit(c, (uint32_t)count) == 0) {
        int src = streams_create(c->api, api_account(c), c->region, name, (uint32_t)count, on_demand,
                                 (int32_t)kib, (int32_t)warm, tv, ntags, c->now_ms, &s);
        if (src == STREAMS_EXISTS)
            api_fail(c, KERR_RESOURCE_IN_USE, "Stream %s under account %s already exists.", name,
                     api_account(c));
        else if (src == STREAMS_NO_IDS)
            api_fail(c, KERR_LIMIT_EXCEEDED,
                     "Account %s has created the %llu streams a data directory can name; no stream can "
                     "be created in it any more.",
                     api_account(c), (unsigned long long)UID_LIMIT - 1);
        else if (src)
            rc = api_store_fail(c, src);
        else {
            rc = 0;
            metrics_stream_created(c->api, s); /* its series exist, at zero, from now on */
        }
    }
    streams_change_unlock(c->api);
    return rc;
}

const struct op_def op_create_stream = {.schema = schema, .run = run};
