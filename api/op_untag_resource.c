/* op_untag_resource.c: UntagResource on a stream's ARN (RemoveTagsFromStream's rules and code)
 * or a consumer's ARN; unknown keys are ignored. */
#include "consumers.h"
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
    struct consumer_info ci;
    int kind = api_resolve_any_resource(c, &ci);
    if (kind < 0)
        return -1;
    return kind ? consumer_tags_remove(c, &ci) : with_stream(c, STREAM_WRITE, stream_tags_remove);
}

const struct op_def op_untag_resource = {.schema = schema, .run = run};
