/* op_list_tags_for_stream.c: ListTagsForStream in key order, after ExclusiveStartTagKey. */
#include <string.h>

#include "internal.h"

static const struct vfield schema[] = {
    {"Limit", VT_INTEGER, {GE(1), LE(50)}, 0, 0, 0},
    {"ExclusiveStartTagKey", VT_STRING, {LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static int list(struct api_ctx *c, struct stream *s)
{
    int64_t limit = 50;
    req_int(c, "Limit", &limit);
    const char *after = req_str(c, "ExclusiveStartTagKey");
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Tags");
    enc_arr_begin(e);
    int64_t n = 0;
    bool more = false;
    for (uint32_t i = 0; i < s->ntags; i++) {
        if (after && strcmp(s->tags[i].key, after) <= 0)
            continue;
        if (n == limit) {
            more = true;
            break;
        }
        enc_obj_begin(e);
        enc_key(e, "Key"), enc_strz(e, s->tags[i].key);
        enc_key(e, "Value"), enc_strz(e, s->tags[i].value);
        enc_obj_end(e);
        n++;
    }
    enc_arr_end(e);
    enc_key(e, "HasMoreTags"), enc_bool(e, more);
    enc_obj_end(e);
    return 0;
}

static int run(struct api_ctx *c) { return with_stream(c, STREAM_READ, list); }

const struct op_def op_list_tags_for_stream = {.schema = schema, .run = run};
