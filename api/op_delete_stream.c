/* op_delete_stream.c: DeleteStream. The stream is DELETING for --delete-stream-ms, then gone;
 * its records are removed in the background. A CREATING stream can be deleted too. */
#include "consumers.h"
#include "internal.h"
#include "subscribe.h"

static const struct vfield schema[] = {
    F_STREAM_NAME, {"EnforceConsumerDeletion", VT_BOOLEAN, {{0}}, 0, 0, 0}, F_STREAM_ARN, F_STREAM_ID, {0},
};

static int delete_(struct api_ctx *c, struct stream *s)
{
    int st = stream_status(s, c->now_ms); /* CREATING may be deleted, as on AWS */
    if (st == ST_DELETING)
        return 0;
    if (consumers_count(c->api, s->uid, c->now_ms)) {
        const struct kv *force = kv_get(c->req, "EnforceConsumerDeletion");
        if (!force || force->type != KV_BOOL || !force->b)
            return api_fail(
                c, KERR_RESOURCE_IN_USE,
                "DeleteStream can\u2019t delete %s:%s because there are consumers associated with this "
                "data stream. To delete %s anyway, set the EnforceConsumerDeletion parameter to true "
                "to force the deletion of all the consumers that are associated with it.",
                ctx_stream_account(c), s->name, s->name);
        int rc = consumers_drop_stream(c->api, s->uid, c->now_ms);
        if (rc)
            return api_store_fail(c, rc);
    }
    subs_notify(c->api); /* its subscriptions look again: their consumers are gone */
    s->status = ST_DELETING;
    s->status_until = c->now_ms + c->api->cfg.delete_ms;
    return 0;
}

static int run(struct api_ctx *c) { return with_stream(c, STREAM_WRITE, delete_); }

const struct op_def op_delete_stream = {.schema = schema, .run = run};
