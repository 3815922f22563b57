/* op_list_tags_for_resource.c: ListTagsForResource on a stream's or a consumer's ARN: every
 * tag, in key order (at most 50, so no paging). */
#include "consumers.h"
#include "internal.h"

static const struct vfield schema[] = {
    F_RESOURCE_ARN,
    F_STREAM_ID,
    {0},
};

static int list(struct api_ctx *c, struct stream *s)
{
    enc_tag_list(c, s);
    return 0;
}

static int run(struct api_ctx *c)
{
    struct consumer_info ci;
    int kind = api_resolve_any_resource(c, &ci);
    if (kind < 0)
        return -1;
    return kind ? consumer_tags_list(c, &ci) : with_stream(c, STREAM_READ, list);
}

const struct op_def op_list_tags_for_resource = {.schema = schema, .run = run};
