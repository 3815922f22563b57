/* op_common.c: pieces several operations share: naming the request's stream, ARNs, the
 * common parts of stream descriptions, tag character rules. */
#include <string.h>

#include "internal.h"

struct stream *ctx_stream(struct api_ctx *c)
{
    struct stream *s = streams_find(c->api, ctx_stream_account(c), c->region, c->stream_name, c->now_ms);
    if (!s)
        api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", c->stream_name,
                 ctx_stream_account(c));
    return s;
}

int with_stream(struct api_ctx *c, enum stream_access access, int (*fn)(struct api_ctx *c, struct stream *s))
{
    int rc = -1;
    if (access == STREAM_READ) {
        streams_rdlock(c->api);
        struct stream *s = ctx_stream(c);
        if (s)
            rc = fn(c, s);
        streams_unlock(c->api);
        return rc;
    }
    /* change by copy, persist, swap: routing goes on by the current version meanwhile. A
     * shared store: a change that lost its compare-and-set to another front-end's (a
     * lifecycle step of the leader's, say) is made again on the stream as that one left it */
    streams_change_lock(c->api);
    for (int attempt = 0;; attempt++) {
        struct stream *s = ctx_stream(c);
        if (!s)
            break;
        int st = stream_status(s, c->now_ms);
        if (access == STREAM_ACTIVE && st != ST_ACTIVE) {
            rc = fail_not_active(c, s, st);
            break;
        }
        struct stream *next = stream_copy(s);
        rc = fn(c, next);
        int src = rc == 0 ? streams_commit(c->api, s, next, c->now_ms) : 0;
        if (src == STORE_CONFLICT && attempt < 3 && store_shared(c->api->store) &&
            streams_reload(c->api, s->uid) == 0) {
            stream_discard(next);
            buf_free(&c->out.b); /* the answer fn began is written again */
            enc_init(&c->out, c->fmt);
            continue;
        }
        if (src)
            rc = api_store_fail(c, src);
        if (rc)
            stream_discard(next);
        break;
    }
    streams_change_unlock(c->api);
    return rc;
}

void enc_stream_mode(struct enc *e, const struct stream *s)
{
    enc_obj_begin(e);
    enc_key(e, "StreamMode"), enc_strz(e, s->on_demand ? "ON_DEMAND" : "PROVISIONED");
    enc_obj_end(e);
}

const char *stream_arn(struct api_ctx *c, const struct stream *s)
{
    return arena_printf(&c->arena, "arn:aws:kinesis:%s:%s:stream/%s", s->region, s->account, s->name);
}

uint32_t stream_open_shards(const struct stream *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nshards; i++)
        n += shard_open(&s->shards[i]);
    return n;
}

void enc_stream_common(struct api_ctx *c, const struct stream *s)
{
    struct enc *e = &c->out;
    enc_key(e, "StreamName"), enc_strz(e, s->name);
    enc_key(e, "StreamARN"), enc_strz(e, stream_arn(c, s));
    enc_key(e, "StreamStatus"), enc_strz(e, stream_status_name(stream_status(s, c->now_ms)));
    enc_key(e, "StreamModeDetails"), enc_stream_mode(e, s);
    enc_key(e, "RetentionPeriodHours"), enc_int(e, s->retention_h);
    enc_key(e, "StreamCreationTimestamp"), enc_time_ms(e, s->created_ms);
    enc_key(e, "EnhancedMonitoring");
    enc_arr_begin(e);
    enc_obj_begin(e);
    enc_key(e, "ShardLevelMetrics"), enc_metrics(e, stream_metrics(s));
    enc_obj_end(e);
    enc_arr_end(e);
    enc_key(e, "EncryptionType"), enc_strz(e, s->enc_key[0] ? "KMS" : "NONE");
    if (s->enc_key[0]) {
        enc_key(e, "KeyId"), enc_strz(e, s->enc_key);
    }
}

/* [\u00C0-\u1FFF\u2C00-\uD7FF\w./\-=+_ @%] per character (AWS's tag character class) */
static bool tag_chars_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned cp;
        if (*p < 0x80) {
            cp = *p++;
            if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') ||
                strchr("./-=+_ @%", (int)cp))
                continue;
            return false;
        }
        int n = *p >= 0xF0 ? 3 : *p >= 0xE0 ? 2 : 1;
        cp = *p & (0x3F >> n);
        p++;
        for (int i = 0; i < n; i++) {
            if ((*p & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (*p++ & 0x3F);
        }
        if (!((cp >= 0xC0 && cp <= 0x1FFF) || (cp >= 0x2C00 && cp <= 0xD7FF)))
            return false;
    }
    return true;
}

int fail_not_active(struct api_ctx *c, const struct stream *s, int status)
{
    return api_fail(c, KERR_RESOURCE_IN_USE, "Stream %s under account %s not ACTIVE, instead in state %s",
                    s->name, s->account, stream_status_name(status));
}

/* Whether f holds for every tag text of a Tags map (keys and values) or TagKeys list. */
static bool all_texts(const struct kv *tags, bool (*f)(const char *))
{
    for (const struct kv *t = tags->child; t; t = t->next)
        if ((tags->type == KV_OBJ && !f(t->key)) || (t->type == KV_STR && !f(t->s)))
            return false;
    return true;
}

static bool no_percent(const char *s) { return !strchr(s, '%'); }

int check_tag_texts(struct api_ctx *c, const struct kv *tags, const char *action)
{
    if (!all_texts(tags, tag_chars_ok))
        return api_fail(
            c, KERR_INVALID_ARGUMENT,
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white "
            "space, _ . / = + - %% @.");
    if (action && !all_texts(tags, no_percent))
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Failed to %s stream %s under account %s because some tags contained illegal "
                        "characters. The allowed characters are Unicode letters, white-spaces, "
                        "'_',',','/','=','+','-','@'.",
                        action, c->stream_name, ctx_stream_account(c));
    return 0;
}

#define MAX_TAGS 50

int stream_tags_add(struct api_ctx *c, struct stream *s)
{
    const struct kv *tags = kv_get(c->req, "Tags");
    /* AWS looks the stream up before it checks the tags' characters */
    if (check_tag_texts(c, tags, "add tags to"))
        return -1;
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
                        s->name, s->account, MAX_TAGS);
    for (const struct kv *t = tags->child; t; t = t->next)
        stream_tag_set(s, t->key, t->type == KV_STR ? t->s : "");
    return 0;
}

int stream_tags_remove(struct api_ctx *c, struct stream *s)
{
    /* AWS looks the stream up before it checks the keys' characters */
    if (check_tag_texts(c, kv_get(c->req, "TagKeys"), "remove tags from"))
        return -1;
    for (const struct kv *k = kv_get(c->req, "TagKeys")->child; k; k = k->next)
        if (k->type == KV_STR)
            stream_tag_remove(s, k->s);
    return 0;
}

/* The "ChildShards" member of an answer that reaches a closed shard's end (GetRecords,
 * SubscribeToShard): each child with its parents and hash range. */
void enc_child_shards(struct enc *e, const struct shard *kids, uint32_t n)
{
    enc_key(e, "ChildShards");
    enc_arr_begin(e);
    for (uint32_t i = 0; i < n; i++) {
        char kid[32], num[40];
        enc_obj_begin(e);
        shard_id(kid, kids[i].index);
        enc_key(e, "ShardId"), enc_strz(e, kid);
        enc_key(e, "ParentShards");
        enc_arr_begin(e);
        shard_id(kid, (uint32_t)kids[i].parent);
        enc_strz(e, kid);
        if (kids[i].adjacent_parent >= 0) {
            shard_id(kid, (uint32_t)kids[i].adjacent_parent);
            enc_strz(e, kid);
        }
        enc_arr_end(e);
        enc_key(e, "HashKeyRange");
        enc_obj_begin(e);
        u128_str(num, kids[i].start);
        enc_key(e, "StartingHashKey"), enc_strz(e, num);
        u128_str(num, kids[i].end);
        enc_key(e, "EndingHashKey"), enc_strz(e, num);
        enc_obj_end(e);
        enc_obj_end(e);
    }
    enc_arr_end(e);
}

/* The position and index of log's first record at or after from that checks out, passing by
 * those that do not (corrupt, moved, their data key gone) but none at or past hi: 1 with *pos
 * and *ix set (*ix STORE_IX_NONE only past hi), 0 when there is none, or a STORE_* code. */
static int probe(struct store *st, uint64_t log, uint64_t from, uint64_t hi, uint64_t *pos, uint64_t *ix)
{
    for (;;) {
        struct arena ar; /* one record's worth, freed at once */
        arena_init(&ar);
        struct store_records got = {.alloc = arena_alloc_fn, .actx = &ar, .index_only = true};
        int rc = store_scan(st, log, from, 1, 1, &got);
        if (!rc && got.n) {
            *pos = got.v[0].pos;
            *ix = got.v[0].ix;
            rc = 1;
        }
        arena_free(&ar);
        if (rc != 1 || *ix != STORE_IX_NONE || *pos >= hi)
            return rc;
        from = *pos + 1;
    }
}

int seq_start(struct store *st, uint64_t log, const struct seq_num *q, bool after, uint64_t *pos)
{
    if (q->layout != SEQ_AWS2 || q->pos == SEQ_IX_END) { /* a position, or past the shard's end */
        *pos = q->pos + after;
        return 0;
    }
    if (q->pos == 0) { /* the starting number: every record is at or after it */
        *pos = 0;
        return 0;
    }
    /* the least position p from which the first record that checks out has an index >= want
     * or lies past the number's second (a predicate that only turns true as p grows: indexes
     * increase with positions): a binary search that reads a record per step and skips past
     * each one it finds too low. If the record it ends at is the one wanted, the read starts
     * there; else (a number of no record, or of one that does not check out) at p, so that a
     * record passed by as not checking out is read, and fails as its own read would. */
    uint64_t want = q->pos + after, lo = pos_floor(q->time_ms), hi = pos_floor(q->time_ms + 1000), p, ix;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int rc = probe(st, log, mid, hi, &p, &ix);
        if (rc < 0)
            return rc;
        if (rc && p < hi && ix < want)
            lo = p + 1;
        else
            hi = mid;
    }
    int rc = probe(st, log, lo, UINT64_MAX, &p, &ix);
    if (rc < 0)
        return rc;
    *pos = rc && ix == want ? p : lo;
    return 0;
}
