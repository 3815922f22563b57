/* op_subscribe_to_shard.c: SubscribeToShard: its schema; subscribe.c streams the answer. */
#include "consumers.h"
#include "internal.h"
#include "subscribe.h"

static const char *const position_types[] = {
    "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", NULL};

/* clang-format off */
static const struct vfield position[] = {
    {"Type", VT_STRING, {NOT_NULL, ENUM(position_types)}, 0, 0, 0},
    {"SequenceNumber", VT_STRING, {REGEX(vre_seq)}, 0, 0, 0},
    {"Timestamp", VT_TIMESTAMP, {{0}}, 0, 0, 0},
    {0},
};
static const struct vfield schema[] = {
    {"ConsumerARN", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048), REGEX(vre_consumer_arn)}, 0, 0, 0},
    {"ShardId", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"StartingPosition", VT_STRUCT, {NOT_NULL}, position, 0, 0},
    F_STREAM_ID,
    {0},
};
/* clang-format on */

const struct op_def op_subscribe_to_shard = {.schema = schema, .run = subs_subscribe};
