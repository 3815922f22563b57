/* op_deregister_stream_consumer.c: DeregisterStreamConsumer: the consumer is DELETING for
 * --register-consumer-ms, then gone; its subscriptions end with ResourceNotFoundException. */
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

const struct op_def op_deregister_stream_consumer = {.schema = schema, .run = consumers_deregister};
