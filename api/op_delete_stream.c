/* op_delete_stream.c: DeleteStream. The stream is DELETING for --delete-stream-ms, then gone;
 * its records are removed in the background. */
#include "internal.h"

static const struct vfield schema[] = {
    F_STREAM_NAME,
    {"EnforceConsumerDeletion", VT_BOOLEAN, {{0}}, 0, 0, 0},
    F_STREAM_ARN,
    {0},
};

static int run(struct api_ctx *c)
{
    streams_wrlock(c->api);
    int rc = -1;
    struct stream *s = ctx_stream(c);
    if (!s)
        goto out;
    int st = stream_status(s, c->now_ms);
    if (st == ST_CREATING) {
        fail_not_active(c, s, st);
        goto out;
    }
    if (st != ST_DELETING) {
        int src = streams_delete(c->api, s, c->now_ms);
        if (src) {
            api_store_fail(c, src);
            goto out;
        }
    }
    rc = 0;
out:
    streams_unlock(c->api);
    return rc;
}

const struct op_def op_delete_stream = {.schema = schema, .run = run};
