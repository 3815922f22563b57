/* op_describe_stream_consumer.c: DescribeStreamConsumer, by ConsumerARN, or StreamARN and
 * ConsumerName, or all three when they agree. */
#include "consumers.h"
#include "internal.h"

/* clang-format off */
static const struct vfield schema[] = {
    F_STREAM_ARN,
    {"ConsumerName", VT_STRING, {REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    F_CONSUMER_ARN,
    F_STREAM_ID,
    {0},
};
/* clang-format on */

static int run(struct api_ctx *c)
{
    struct consumer_info ci;
    if (consumers_resolve(c, &ci))
        return -1;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "ConsumerDescription");
    enc_obj_begin(e);
    enc_key(e, "ConsumerName"), enc_strz(e, ci.name);
    enc_key(e, "ConsumerARN"), enc_strz(e, consumer_arn(c, &ci));
    enc_key(e, "ConsumerStatus"), enc_strz(e, consumer_status_name(ci.status));
    enc_key(e, "ConsumerCreationTimestamp"), enc_time_ms(e, ci.created_ms);
    enc_key(e, "StreamARN"), enc_strz(e, arena_printf(&c->arena, "arn:aws:kinesis:%s:%s:stream/%s", c->region,
                                                      ci.account, ci.stream));
    enc_obj_end(e);
    enc_obj_end(e);
    return 0;
}

const struct op_def op_describe_stream_consumer = {.schema = schema, .run = run};
