/* op_untag_resource.c: UntagResource on a stream's ARN: RemoveTagsFromStream's rules and code,
 * addressed by ResourceARN; unknown keys are ignored. */
#include "internal.h"

static const struct vfield key_elem = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield schema[] = {
    {"TagKeys", VT_LIST, {NOT_NULL, LEN_GE(1), LEN_LE(50), CHILD_LEN(1, 128)}, 0, &key_elem, 0},
    F_RESOURCE_ARN,
    F_STREAM_ID,
    {0},
};

static int run(struct api_ctx *c)
{
    if (api_resolve_resource(c))
        return -1;
    return with_stream(c, STREAM_WRITE, stream_tags_remove);
}

const struct op_def op_untag_resource = {.schema = schema, .run = run};
