/* op_put_resource_policy.c: PutResourcePolicy: an IAM policy document (at most 20 KiB, every
 * statement with a Principal) attached to a stream's or a consumer's ARN, replacing any before
 * it. The document is validated and compiled before it is stored; --auth enforces it. */
#include <string.h>

#include "consumers.h"
#include "internal.h"

static const struct vfield schema[] = {
    F_RESOURCE_ARN,
    F_STREAM_ID,
    {"Policy", VT_STRING, {NOT_NULL}, 0, 0, 0},
    {0},
};

static int run(struct api_ctx *c)
{
    uint64_t uid;
    if (resource_uid(c, &uid))
        return -1;
    const char *text = req_str(c, "Policy");
    char why[256];
    struct policy *p = policy_parse(text, strlen(text), true, why, sizeof why);
    if (!p)
        return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid policy document: %s", why);
    int rc = resource_policies_put(c->api, req_str(c, "ResourceARN"), uid, text, strlen(text), p);
    if (rc == 1)
        return api_fail(c, KERR_LIMIT_EXCEEDED, "Too many resource policies under account %s.",
                        api_account(c));
    if (rc)
        return api_store_fail(c, rc);
    enc_obj_begin(&c->out);
    enc_obj_end(&c->out);
    return 0;
}

const struct op_def op_put_resource_policy = {.schema = schema, .run = run};
