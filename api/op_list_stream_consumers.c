/* op_list_stream_consumers.c: ListStreamConsumers in name order, at most 100 a page whatever
 * MaxResults asks; a sealed NextToken carries the stream incarnation, the last name returned
 * and when it was issued (it expires after 300 s). */
#include "consumers.h"
#include "internal.h"

/* clang-format off */
static const struct vfield schema[] = {
    {"StreamARN", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048), REGEX(vre_stream_arn)}, 0, 0, 0},
    {"NextToken", VT_STRING, {LEN_GE(1), LEN_LE(1048576)}, 0, 0, 0},
    {"MaxResults", VT_INTEGER, {GE(1), LE(10000)}, 0, 0, 0},
    {"StreamCreationTimestamp", VT_TIMESTAMP, {{0}}, 0, 0, 0},
    F_STREAM_ID,
    {0},
};
/* clang-format on */

const struct op_def op_list_stream_consumers = {.schema = schema, .run = consumers_list};
