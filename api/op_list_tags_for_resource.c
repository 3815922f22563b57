/* op_list_tags_for_resource.c: ListTagsForResource on a stream's ARN: every tag, in key order
 * (at most 50, so no paging). */
#include "internal.h"

static const struct vfield schema[] = {
    F_RESOURCE_ARN,
    F_STREAM_ID,
    {0},
};

static int list(struct api_ctx *c, struct stream *s)
{
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Tags");
    enc_arr_begin(e);
    for (uint32_t i = 0; i < s->ntags; i++) {
        enc_obj_begin(e);
        enc_key(e, "Key"), enc_strz(e, s->tags[i].key);
        enc_key(e, "Value"), enc_strz(e, s->tags[i].value);
        enc_obj_end(e);
    }
    enc_arr_end(e);
    enc_obj_end(e);
    return 0;
}

static int run(struct api_ctx *c)
{
    if (api_resolve_resource(c))
        return -1;
    return with_stream(c, STREAM_READ, list);
}

const struct op_def op_list_tags_for_resource = {.schema = schema, .run = run};
