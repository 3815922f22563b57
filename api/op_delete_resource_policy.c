/* op_delete_resource_policy.c: DeleteResourcePolicy: detach the document from a stream's or a
 * consumer's ARN (a resource without one answers the same). */
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
    int rc = resource_policies_delete(c->api, req_str(c, "ResourceARN"));
    if (rc)
        return api_store_fail(c, rc);
    enc_obj_begin(&c->out);
    enc_obj_end(&c->out);
    return 0;
}

const struct op_def op_delete_resource_policy = {.schema = schema, .run = run};
