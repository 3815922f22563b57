/* op_add_tags_to_stream.c: AddTagsToStream: upsert up to 50 tags per stream. */
#include <string.h>

#include "internal.h"

#define MAX_TAGS 50

static const struct vfield tag_value = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield schema[] = {
    {"Tags",
     VT_MAP,
     {NOT_NULL, LEN_GE(1), LEN_LE(200), CHILD_KEY_LEN(1, 128), CHILD_VAL_LEN(0, 256)},
     0,
     &tag_value,
     0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    {0},
};

static int add(struct api_ctx *c, struct stream *s)
{
    const struct kv *tags = kv_get(c->req, "Tags");
    uint32_t total = s->ntags;
    for (const struct kv *t = tags->child; t; t = t->next) {
        bool known = false;
        for (uint32_t i = 0; i < s->ntags && !known; i++)
            known = !strcmp(s->tags[i].key, t->key);
        total += !known;
    }
    if (total > MAX_TAGS)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Failed to add tags to stream %s under account %s because a given stream cannot "
                        "have more than %d tags associated with it.",
                        s->name, c->api->account, MAX_TAGS);
    for (const struct kv *t = tags->child; t; t = t->next)
        stream_tag_set(s, t->key, t->type == KV_STR ? t->s : "");
    return save_stream(c, s);
}

static int run(struct api_ctx *c)
{
    if (check_tag_texts(c, kv_get(c->req, "Tags"), "add tags to"))
        return -1;
    return with_stream(c, STREAM_WRITE, add);
}

const struct op_def op_add_tags_to_stream = {.schema = schema, .run = run};
