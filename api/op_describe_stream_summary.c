/* op_describe_stream_summary.c: DescribeStreamSummary. */
#include "consumers.h"
#include "internal.h"

static const struct vfield schema[] = {
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static int describe(struct api_ctx *c, struct stream *s)
{
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "StreamDescriptionSummary");
    enc_obj_begin(e);
    enc_stream_common(c, s);
    enc_key(e, "OpenShardCount"), enc_int(e, stream_open_shards(s));
    enc_key(e, "ConsumerCount"), enc_int(e, consumers_count(c->api, s->uid, c->now_ms));
    enc_key(e, "MaxRecordSizeInKiB"), enc_int(e, s->max_record_kib);
    enc_obj_end(e);
    enc_obj_end(e);
    return 0;
}

static int run(struct api_ctx *c) { return with_stream(c, STREAM_READ, describe); }

const struct op_def op_describe_stream_summary = {.schema = schema, .run = run};
