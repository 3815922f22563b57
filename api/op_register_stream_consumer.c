/* op_register_stream_consumer.c: RegisterStreamConsumer. The consumer is CREATING for
 * --register-consumer-ms, then ACTIVE (consumers.c keeps the registry). */
#include "consumers.h"
#include "internal.h"

static const struct vfield tag_value = {"member", VT_STRING, {{0}}, 0, 0, 0};

/* clang-format off */
static const struct vfield schema[] = {
    {"StreamARN", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048), REGEX(vre_stream_arn)}, 0, 0, 0},
    {"ConsumerName", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"Tags", VT_MAP, {LEN_GE(1), LEN_LE(200), CHILD_KEY_LEN(1, 128), CHILD_VAL_LEN(0, 256)}, 0, &tag_value, 0},
    F_STREAM_ID,
    {0},
};
/* clang-format on */

const struct op_def op_register_stream_consumer = {.schema = schema, .run = consumers_register};
