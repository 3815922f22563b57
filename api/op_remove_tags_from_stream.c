/* op_remove_tags_from_stream.c: RemoveTagsFromStream; unknown keys are ignored. */
#include <string.h>

#include "internal.h"

static const struct vfield key_elem = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield schema[] = {
    {"TagKeys", VT_LIST, {NOT_NULL, LEN_GE(1), LEN_LE(50), CHILD_LEN(1, 128)}, 0, &key_elem, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static int run(struct api_ctx *c) { return with_stream(c, STREAM_WRITE, stream_tags_remove); }

const struct op_def op_remove_tags_from_stream = {.schema = schema, .run = run};
