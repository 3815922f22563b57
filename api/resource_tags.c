/* resource_tags.c: what the resource operations (TagResource, UntagResource,
 * ListTagsForResource and the resource policies) share: telling a stream's ARN from a
 * consumer's, and a consumer's tags.
 *
 * A consumer's tags live in its row (consumers.c), so they are read from the store when asked
 * and rewritten by compare-and-set under the stream registry's change lock; they are a sorted
 * set of at most 50, edited on a scratch copy (the stream model's tag helpers) and written only
 * when the whole edit is valid. */
#include <stdlib.h>
#include <string.h>

#include "consumers.h"
#include "internal.h"

#define MAX_TAGS 50

int api_resolve_any_resource(struct api_ctx *c, struct consumer_info *ci)
{
    const char *arn = req_str(c, "ResourceARN");
    if (!strstr(arn, "/consumer/"))
        return api_resolve_resource(c) ? -1 : 0;
    if (consumers_resolve_arn(c, arn, ci))
        return -1;
    c->stream_name = arena_strndup(&c->arena, ci->stream, strlen(ci->stream));
    c->stream_acct = arena_strndup(&c->arena, ci->account, strlen(ci->account));
    return 1;
}

static int stream_uid(struct api_ctx *c, struct stream *s)
{
    *(uint64_t *)c->op_state = s->uid;
    return 0;
}

int resource_uid(struct api_ctx *c, uint64_t *uid)
{
    struct consumer_info ci;
    int kind = api_resolve_any_resource(c, &ci);
    if (kind > 0)
        *uid = ci.uid;
    if (kind)
        return kind < 0 ? -1 : 0;
    c->op_state = uid;
    int rc = with_stream(c, STREAM_READ, stream_uid);
    c->op_state = NULL;
    return rc;
}

static int consumer_gone(struct api_ctx *c, const struct consumer_info *ci)
{
    return api_fail(c, KERR_RESOURCE_NOT_FOUND,
                    "Consumer %s with creation timestamp %lld under stream: %s, account %s not found.",
                    ci->name, (long long)(ci->created_ms / 1000), ci->stream, ci->account);
}

/* The consumer's tags into a scratch stream (the caller frees it with stream_discard), or NULL
 * with the error recorded. */
static struct stream *load(struct api_ctx *c, const struct consumer_info *ci)
{
    const struct kv *tags = NULL;
    int rc = consumers_tags_get(c, ci, &tags);
    if (rc == STORE_NOT_FOUND) {
        consumer_gone(c, ci);
        return NULL;
    }
    if (rc) {
        api_store_fail(c, rc);
        return NULL;
    }
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    for (const struct kv *t = tags && tags->type == KV_OBJ ? tags->child : NULL; t; t = t->next)
        if (t->type == KV_STR)
            stream_tag_set(s, t->key, t->s);
    return s;
}

static int add(struct api_ctx *c, const struct consumer_info *ci, struct stream *s)
{
    const struct kv *tags = kv_get(c->req, "Tags");
    for (const struct kv *t = tags->child; t; t = t->next)
        stream_tag_set(s, t->key, t->type == KV_STR ? t->s : "");
    if (s->ntags > MAX_TAGS) /* unverified wording */
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Failed to add tags to consumer %s under stream %s under account %s because a given "
                        "consumer cannot have more than %d tags associated with it.",
                        ci->name, ci->stream, ci->account, MAX_TAGS);
    return 0;
}

static int remove_keys(struct api_ctx *c, const struct consumer_info *ci, struct stream *s)
{
    (void)ci;
    for (const struct kv *k = kv_get(c->req, "TagKeys")->child; k; k = k->next)
        if (k->type == KV_STR)
            stream_tag_remove(s, k->s);
    return 0;
}

static int edit(struct api_ctx *c, const struct consumer_info *ci,
                int (*fn)(struct api_ctx *c, const struct consumer_info *ci, struct stream *s))
{
    streams_change_lock(c->api);
    int rc = -1;
    struct stream *s = load(c, ci);
    if (s && fn(c, ci, s) == 0) {
        int src = consumers_tags_set(c, ci, s->tags, s->ntags);
        rc = src == STORE_NOT_FOUND ? consumer_gone(c, ci) : src ? api_store_fail(c, src) : 0;
    }
    stream_discard(s);
    streams_change_unlock(c->api);
    return rc;
}

int consumer_tags_add(struct api_ctx *c, const struct consumer_info *ci)
{
    /* the characters AWS allows in tags; '%' is refused for streams only by their own operations */
    if (check_tag_texts(c, kv_get(c->req, "Tags"), NULL))
        return -1;
    return edit(c, ci, add);
}

int consumer_tags_remove(struct api_ctx *c, const struct consumer_info *ci)
{
    if (check_tag_texts(c, kv_get(c->req, "TagKeys"), NULL))
        return -1;
    return edit(c, ci, remove_keys);
}

int consumer_tags_list(struct api_ctx *c, const struct consumer_info *ci)
{
    struct stream *s = load(c, ci);
    if (!s)
        return -1;
    enc_tag_list(c, s);
    stream_discard(s);
    return 0;
}

void enc_tag_list(struct api_ctx *c, const struct stream *s)
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
}
