/* op_tag_resource.c: TagResource on a stream's ARN (AddTagsToStream's rules and code: 50 tags
 * per stream, AWS's characters) or a consumer's ARN (the same bounds, kept in its row). */
#include "consumers.h"
#include "internal.h"

static const struct vfield tag_value = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield schema[] = {
    {"Tags",
     VT_MAP,
     {NOT_NULL, LEN_GE(1), LEN_LE(200), CHILD_KEY_LEN(1, 128), CHILD_VAL_LEN(0, 256)},
     0,
     &tag_value,
     0},
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
    return kind ? consumer_tags_add(c, &ci) : with_stream(c, STREAM_WRITE, stream_tags_add);
}

const struct op_def op_tag_resource = {.schema = schema, .run = run};
