/* op_list_streams.c: ListStreams in name order, after ExclusiveStartStreamName or a NextToken,
 * with StreamSummaries. A NextToken carries the last name returned and when it was issued. */
#include <string.h>

#include "internal.h"

static const struct vfield schema[] = {
    {"Limit", VT_INTEGER, {GE(1), LE(10000)}, 0, 0, 0},
    {"ExclusiveStartStreamName", VT_STRING, {REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"NextToken", VT_STRING, {LEN_GE(1), LEN_LE(1048576)}, 0, 0, 0},
    {0},
};

#define TOKEN_TTL_MS 300000

static int run(struct api_ctx *c)
{
    int64_t limit = 100;
    req_int(c, "Limit", &limit);
    const char *after = req_str(c, "ExclusiveStartStreamName");
    const char *token = req_str(c, "NextToken");
    if (token) {
        unsigned char *p;
        size_t len;
        if (after)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "ExclusiveStartStreamName and NextToken cannot be provided together.");
        if (open_text(c, token, &p, &len) || len < 9 || p[0] != 'L')
            return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
        int64_t issued = (int64_t)get64(p + 1);
        if (c->now_ms - issued > TOKEN_TTL_MS)
            return api_fail(c, KERR_EXPIRED_NEXT_TOKEN, "The NextToken has expired.");
        after = (const char *)p + 9;
    }
    streams_rdlock(c->api);
    size_t n;
    struct stream **all = streams_of(c->api, api_account(c), c->region, &n);
    size_t i = 0;
    while (i < n && after && strcmp(all[i]->name, after) <= 0)
        i++;
    size_t start = i;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "StreamNames");
    enc_arr_begin(e);
    size_t shown = 0;
    const char *last = NULL;
    for (i = start; i < n && shown < (size_t)limit; i++) {
        if (stream_status(all[i], c->now_ms) == ST_GONE)
            continue;
        enc_strz(e, all[i]->name);
        last = all[i]->name;
        shown++;
    }
    size_t end = i;
    bool more = false;
    for (; i < n && !more; i++)
        more = stream_status(all[i], c->now_ms) != ST_GONE;
    enc_arr_end(e);
    enc_key(e, "HasMoreStreams"), enc_bool(e, more);
    enc_key(e, "StreamSummaries");
    enc_arr_begin(e);
    for (i = start; i < end; i++) {
        struct stream *s = all[i];
        if (stream_status(s, c->now_ms) == ST_GONE)
            continue;
        enc_obj_begin(e);
        enc_key(e, "StreamName"), enc_strz(e, s->name);
        enc_key(e, "StreamARN"), enc_strz(e, stream_arn(c, s));
        enc_key(e, "StreamStatus"), enc_strz(e, stream_status_name(stream_status(s, c->now_ms)));
        enc_key(e, "StreamModeDetails"), enc_stream_mode(e, s);
        enc_key(e, "StreamCreationTimestamp"), enc_time_ms(e, s->created_ms);
        enc_obj_end(e);
    }
    enc_arr_end(e);
    if (more && last) {
        size_t nl = strlen(last);
        unsigned char *p = arena_alloc(&c->arena, 9 + nl);
        p[0] = 'L';
        put64(p + 1, (uint64_t)c->now_ms);
        memcpy(p + 9, last, nl);
        enc_key(e, "NextToken"), enc_strz(e, seal_text(c, p, 9 + nl));
    }
    enc_obj_end(e);
    streams_unlock(c->api);
    return 0;
}

const struct op_def op_list_streams = {.schema = schema, .run = run};
