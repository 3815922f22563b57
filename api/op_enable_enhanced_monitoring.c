/* op_enable_enhanced_monitoring.c: EnableEnhancedMonitoring and its twin
 * DisableEnhancedMonitoring: one handler, told apart by direction. The stream's set of
 * shard-level metrics is a bit mask in its header row; "ALL" names every metric, and answers
 * always list the metrics one by one (AWS never answers "ALL"). As on AWS the stream must be
 * ACTIVE, and a change makes it UPDATING for --update-stream-ms (a call that changes nothing
 * leaves it ACTIVE). The answer gives the set before (Current) and after (Desired) the call. */
#include <string.h>

#include "internal.h"

const char *const stream_metric_names[STREAM_METRIC_COUNT] = {
    [STREAM_METRIC_INCOMING_BYTES] = "IncomingBytes",
    [STREAM_METRIC_INCOMING_RECORDS] = "IncomingRecords",
    [STREAM_METRIC_OUTGOING_BYTES] = "OutgoingBytes",
    [STREAM_METRIC_OUTGOING_RECORDS] = "OutgoingRecords",
    [STREAM_METRIC_WRITE_EXCEEDED] = "WriteProvisionedThroughputExceeded",
    [STREAM_METRIC_READ_EXCEEDED] = "ReadProvisionedThroughputExceeded",
    [STREAM_METRIC_ITERATOR_AGE] = "IteratorAgeMilliseconds",
};

/* The order AWS lists them in (its answers come from a hash set, so the order is fixed). */
static const enum stream_metric aws_order[STREAM_METRIC_COUNT] = {
    STREAM_METRIC_INCOMING_BYTES,   STREAM_METRIC_OUTGOING_RECORDS, STREAM_METRIC_ITERATOR_AGE,
    STREAM_METRIC_INCOMING_RECORDS, STREAM_METRIC_READ_EXCEEDED,    STREAM_METRIC_WRITE_EXCEEDED,
    STREAM_METRIC_OUTGOING_BYTES,
};

void enc_metrics(struct enc *e, uint32_t set)
{
    enc_arr_begin(e);
    for (int i = 0; i < STREAM_METRIC_COUNT; i++)
        if (set >> aws_order[i] & 1)
            enc_strz(e, stream_metric_names[aws_order[i]]);
    enc_arr_end(e);
}

/* the model's enum, in the model's order (AWS prints it so in its validation messages) */
static const char *const metric_enum[] = {
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
    "ALL",
    NULL,
};

static const struct vfield metric_elem = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield schema[] = {
    F_STREAM_NAME,
    {"ShardLevelMetrics",
     VT_LIST,
     {NOT_NULL, LEN_GE(1), LEN_LE(7), CHILD_ENUM(metric_enum)},
     0,
     &metric_elem,
     0},
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

struct change {
    uint32_t before, after;
    const char *arn; /* arena */
};

/* The request's metrics as a set (validated: each is one of metric_enum). */
static uint32_t requested(struct api_ctx *c)
{
    uint32_t set = 0;
    for (const struct kv *m = kv_get(c->req, "ShardLevelMetrics")->child; m; m = m->next) {
        if (!strcmp(m->s, "ALL"))
            return STREAM_METRICS_ALL;
        for (int i = 0; i < STREAM_METRIC_COUNT; i++)
            if (!strcmp(m->s, stream_metric_names[i]))
                set |= 1u << i;
    }
    return set;
}

static int apply(struct api_ctx *c, struct stream *s, bool enable)
{
    struct change *ch = c->op_state;
    uint32_t set = requested(c);
    ch->before = s->metrics;
    ch->after = enable ? s->metrics | set : s->metrics & ~set;
    ch->arn = stream_arn(c, s);
    if (ch->after != ch->before) {
        s->metrics = ch->after;
        s->status = ST_UPDATING;
        s->status_until = c->now_ms + c->api->cfg.update_ms;
    }
    return 0;
}

static int apply_enable(struct api_ctx *c, struct stream *s) { return apply(c, s, true); }
static int apply_disable(struct api_ctx *c, struct stream *s) { return apply(c, s, false); }

static int run(struct api_ctx *c, bool enable)
{
    struct change ch = {0};
    c->op_state = &ch;
    int rc = with_stream(c, STREAM_ACTIVE, enable ? apply_enable : apply_disable);
    c->op_state = NULL;
    if (rc)
        return rc;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "StreamName"), enc_strz(e, c->stream_name);
    enc_key(e, "CurrentShardLevelMetrics"), enc_metrics(e, ch.before);
    enc_key(e, "DesiredShardLevelMetrics"), enc_metrics(e, ch.after);
    enc_key(e, "StreamARN"), enc_strz(e, ch.arn);
    enc_obj_end(e);
    return 0;
}

static int enable(struct api_ctx *c) { return run(c, true); }
static int disable(struct api_ctx *c) { return run(c, false); }

const struct op_def op_enable_enhanced_monitoring = {.schema = schema, .run = enable};
const struct op_def op_disable_enhanced_monitoring = {.schema = schema, .run = disable};
