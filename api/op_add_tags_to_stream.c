/* op_add_tags_to_stream.c: AddTagsToStream: upsert up to 50 tags per stream. */
#include <string.h>

#include "internal.h"

static const struct vfield tag_value = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield schema[] = {
    {"Tags",
     VT_MAP,
     {NOT_NULL, LEN_GE(1), LEN_LE(200), CHILD_KEY_LEN(1, 128), CHILD_VAL_LEN(0, 256)},
     0,
     &tag_value,
     0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static int run(struct api_ctx *c) { return with_stream(c, STREAM_WRITE, stream_tags_add); }

const struct op_def op_add_tags_to_stream = {.schema = schema, .run = run};
