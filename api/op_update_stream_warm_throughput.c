/* op_update_stream_warm_throughput.c: UpdateStreamWarmThroughput, and the WarmThroughput member
 * of DescribeStreamSummary.
 *
 * As on AWS, warm throughput belongs to on-demand streams in accounts whose minimum throughput
 * billing commitment is on (ENABLED, or ENABLED_UNTIL_EARLIEST_ALLOWED_END); the stream must be
 * ACTIVE and becomes UPDATING for --update-stream-ms, after which the target is current. The
 * header row keeps the target, the value current before the update and when the update ends,
 * so readers compute the current value from the clock, as they do the status. A stream never
 * given a target reports its present write capacity (1 MiB/s per open shard) as both.
 *
 * AWS's texts for the mode, the commitment and the 10 GiB/s cap are not published: the three
 * messages below are written in AWS's style and unverified. */
#include "internal.h"

#define WARM_MAX_MIBPS 10240 /* 10 GiB/s, AWS's default cap */

static const struct vfield schema[] = {
    F_STREAM_ARN, F_STREAM_NAME, F_STREAM_ID, {"WarmThroughputMiBps", VT_INTEGER, {NOT_NULL, GE(0)}, 0, 0, 0},
    {0},
};

static int32_t current_mibps(const struct stream *s, int64_t now)
{
    if (!s->warm)
        return (int32_t)stream_open_shards(s);
    return now >= s->warm_until ? s->warm_target : s->warm_current;
}

static int32_t target_mibps(const struct stream *s, int64_t now)
{
    return s->warm ? s->warm_target : current_mibps(s, now);
}

void enc_warm_throughput(struct enc *e, const struct stream *s, int64_t now)
{
    enc_obj_begin(e);
    enc_key(e, "TargetMiBps"), enc_int(e, target_mibps(s, now));
    enc_key(e, "CurrentMiBps"), enc_int(e, current_mibps(s, now));
    enc_obj_end(e);
}

bool warm_throughput_commitment(struct api_ctx *c, int *store_rc)
{
    struct account_settings st;
    *store_rc = account_settings_load(c, &st);
    return !*store_rc && st.status != COMMIT_DISABLED;
}

static int no_commitment(struct api_ctx *c)
{
    return api_fail(c, KERR_INVALID_ARGUMENT,
                    "Warm throughput requires the minimum throughput billing commitment, which is not "
                    "enabled for account %s.",
                    ctx_stream_account(c));
}

static int over_limit(struct api_ctx *c, int64_t mibps, const char *stream)
{
    return api_fail(c, KERR_LIMIT_EXCEEDED,
                    "Requested warm throughput of %lld MiBps for stream %s under account %s exceeds the "
                    "limit of %d MiBps.",
                    (long long)mibps, stream, ctx_stream_account(c), WARM_MAX_MIBPS);
}

int warm_throughput_check(struct api_ctx *c, int64_t mibps, int64_t *out)
{
    int src;
    if (!warm_throughput_commitment(c, &src)) {
        *out = -1;
        return src ? api_store_fail(c, src) : 0;
    }
    if (mibps > WARM_MAX_MIBPS)
        return over_limit(c, mibps, req_str(c, "StreamName"));
    *out = mibps;
    return 0;
}

struct change {
    int32_t target, current;
    const char *arn; /* arena */
};

static int apply(struct api_ctx *c, struct stream *s)
{
    struct change *ch = c->op_state;
    int64_t mibps = 0;
    req_int(c, "WarmThroughputMiBps", &mibps);
    if (!s->on_demand)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Warm throughput is not supported for stream %s under account %s because its "
                        "capacity mode is PROVISIONED. Only ON_DEMAND streams support warm throughput.",
                        s->name, ctx_stream_account(c));
    int src; /* the change lock may be held across a read of the store */
    if (!warm_throughput_commitment(c, &src))
        return src ? api_store_fail(c, src) : no_commitment(c);
    if (mibps > WARM_MAX_MIBPS)
        return over_limit(c, mibps, s->name);
    ch->current = current_mibps(s, c->now_ms);
    ch->target = (int32_t)mibps;
    ch->arn = stream_arn(c, s);
    s->warm = true;
    s->warm_current = ch->current;
    s->warm_target = ch->target;
    s->status = ST_UPDATING;
    s->status_until = s->warm_until = c->now_ms + c->api->cfg.update_ms;
    return 0;
}

static int run(struct api_ctx *c)
{
    struct change ch = {0};
    c->op_state = &ch;
    int rc = with_stream(c, STREAM_ACTIVE, apply);
    c->op_state = NULL;
    if (rc)
        return rc;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "StreamARN"), enc_strz(e, ch.arn);
    enc_key(e, "StreamName"), enc_strz(e, c->stream_name);
    enc_key(e, "WarmThroughput");
    enc_obj_begin(e);
    enc_key(e, "TargetMiBps"), enc_int(e, ch.target);
    enc_key(e, "CurrentMiBps"), enc_int(e, ch.current);
    enc_obj_end(e);
    enc_obj_end(e);
    return 0;
}

const struct op_def op_update_stream_warm_throughput = {.schema = schema, .run = run};
