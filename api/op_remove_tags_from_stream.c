/* op_remove_tags_from_stream.c: RemoveTagsFromStream; unknown keys are ignored. */
#include <string.h>

#include "internal.h"

static const struct vfield key_elem = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield schema[] = {
    {"TagKeys", VT_LIST, {NOT_NULL, LEN_GE(1), LEN_LE(50), CHILD_LEN(1, 128)}, 0, &key_elem, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    {0},
};

static int remove_tags(struct api_ctx *c, struct stream *s)
{
    for (const struct kv *k = kv_get(c->req, "TagKeys")->child; k; k = k->next)
        if (k->type == KV_STR)
            stream_tag_remove(s, k->s);
    return save_stream(c, s);
}

static int run(struct api_ctx *c)
{
    if (check_tag_texts(c, kv_get(c->req, "TagKeys"), "remove tags from"))
        return -1;
    return with_stream(c, STREAM_WRITE, remove_tags);
}

const struct op_def op_remove_tags_from_stream = {.schema = schema, .run = run};
