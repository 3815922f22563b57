/* op_get_resource_policy.c: GetResourcePolicy: the document attached to a stream's or a
 * consumer's ARN, or "{}" when it has none. */
#include "internal.h"

static const struct vfield schema[] = {
    F_RESOURCE_ARN,
    F_STREAM_ID,
    {0},
};

static int run(struct api_ctx *c)
{
    uint64_t uid;
    if (resource_uid(c, &uid))
        return -1;
    const char *text = resource_policies_text(c, req_str(c, "ResourceARN"), uid);
    enc_obj_begin(&c->out);
    enc_key(&c->out, "Policy"), enc_strz(&c->out, text ? text : "{}");
    enc_obj_end(&c->out);
    return 0;
}

const struct op_def op_get_resource_policy = {.schema = schema, .run = run};
