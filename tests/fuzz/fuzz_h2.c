/* fuzz_h2.c: libFuzzer harness for the HTTP/2 request path: the input is what a client sends on
 * a cleartext HTTP/2 connection after the preface, fed through nghttp2_session_mem_recv of a
 * server session whose callbacks build requests the way the front does (headers with a count
 * and size bound, a body with a byte cap), then answer each completed stream: its body is
 * decoded (JSON or CBOR by content-type) and validated against the schema x-amz-target names
 * (fuzz_tree.h), and a response with a body is submitted and drained with
 * nghttp2_session_mem_send. Every stream's state is freed on close, so LeakSanitizer checks the
 * bookkeeping; ASan and UBSan check nghttp2's use and ours. */
#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_tree.h"

#define H2_MAX_HEADERS 32
#define H2_MAX_HEADER_BYTES 8192
#define H2_MAX_BODY 65536
#define H2_MAX_STREAMS 16

struct h2_req {
    int32_t id;
    char ctype[64], target[96], method[8];
    size_t header_bytes;
    int nheaders;
    char *body; /* owned */
    size_t len;
    int answered;
};

struct h2_conn {
    struct h2_req *reqs[H2_MAX_STREAMS]; /* owned: the open streams' requests */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct h2_req *find(struct h2_conn *c, int32_t id)
{
    for (int i = 0; i < H2_MAX_STREAMS; i++)
        if (c->reqs[i] && c->reqs[i]->id == id)
            return c->reqs[i];
    return NULL;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    struct h2_conn *c = u;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    for (int i = 0; i < H2_MAX_STREAMS; i++) {
        if (!c->reqs[i]) {
            struct h2_req *r = calloc(1, sizeof *r);
            if (!r)
                abort();
            r->id = f->hd.stream_id;
            c->reqs[i] = r;
            return 0;
        }
    }
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *u)
{
    (void)flags;
    struct h2_req *r = find(u, f->hd.stream_id);
    if (!r)
        return 0;
    r->header_bytes += nlen + vlen;
    if (++r->nheaders > H2_MAX_HEADERS || r->header_bytes > H2_MAX_HEADER_BYTES) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_ENHANCE_YOUR_CALM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (nlen == 7 && !memcmp(name, ":method", 7))
        copy_value(r->method, sizeof r->method, value, vlen);
    else if (nlen == 12 && !memcmp(name, "content-type", 12))
        copy_value(r->ctype, sizeof r->ctype, value, vlen);
    else if (nlen == 12 && !memcmp(name, "x-amz-target", 12))
        copy_value(r->target, sizeof r->target, value, vlen);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *u)
{
    (void)flags;
    struct h2_req *r = find(u, id);
    if (!r)
        return 0;
    if (len > H2_MAX_BODY - r->len) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    char *b = realloc(r->body, r->len + len + 1);
    if (!b)
        abort();
    memcpy(b + r->len, data, len);
    r->body = b;
    r->len += len;
    return 0;
}

static ssize_t read_answer(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                           nghttp2_data_source *src, void *u)
{
    (void)s, (void)id, (void)u;
    const char *msg = src->ptr;
    size_t n = strlen(msg);
    if (n > len)
        n = len;
    memcpy(buf, msg, n);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* The request is complete: decode and validate it as the API would, then answer. */
static void answer(nghttp2_session *s, struct h2_req *r)
{
    if (r->answered)
        return;
    r->answered = 1;
    fuzz_decode_fn decode = strstr(r->ctype, "cbor") ? cbor_parse : json_parse;
    const struct op_def *op = fuzz_ops[0];
    const char *dot = strchr(r->target, '.');
    if (dot && !strcmp(dot + 1, "GetShardIterator"))
        op = &op_get_shard_iterator;
    else if (dot && !strcmp(dot + 1, "ListShards"))
        op = &op_list_shards;
    struct arena a;
    arena_init(&a);
    struct kv *v;
    int status = 400;
    if (r->body && !decode(&a, r->body, r->len, &v) && v->type == KV_OBJ) {
        int kind;
        const char *msg;
        fuzz_check_tree(v, 0);
        if (!validate_request(&a, v, op->schema, 1048576, &kind, &msg))
            status = 200;
    }
    arena_free(&a);
    const nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)(status == 200 ? "200" : "400"), 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/x-amz-json-1.1", 12, 26, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider dp = {.source.ptr = (void *)(status == 200 ? "{}" : "{\"__type\":\"x\"}"),
                                .read_callback = read_answer};
    nghttp2_submit_response(s, r->id, nv, 2, &dp);
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct h2_req *r = find(u, f->hd.stream_id);
        if (r)
            answer(s, r);
    }
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *u)
{
    (void)s, (void)err;
    struct h2_conn *c = u;
    for (int i = 0; i < H2_MAX_STREAMS; i++) {
        if (c->reqs[i] && c->reqs[i]->id == id) {
            free(c->reqs[i]->body);
            free(c->reqs[i]);
            c->reqs[i] = NULL;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h2_conn c = {{0}};
    nghttp2_session_callbacks *cb;
    nghttp2_session *s;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_max_outbound_ack(opt, 100);
    if (nghttp2_session_server_new2(&s, cb, &c, opt))
        abort();
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
                                   {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_BYTES}};
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 2);
    static const char preface[] = NGHTTP2_CLIENT_MAGIC;
    if (nghttp2_session_mem_recv(s, (const uint8_t *)preface, sizeof preface - 1) >= 0) {
        /* in slices, as a socket delivers it: the first byte says how large */
        size_t slice = size ? (size_t)data[0] * 16 + 1 : 1, off = size ? 1 : 0;
        while (off < size) {
            size_t n = size - off < slice ? size - off : slice;
            if (nghttp2_session_mem_recv(s, data + off, n) < 0)
                break;
            off += n;
            const uint8_t *out;
            for (int i = 0; i < 64 && nghttp2_session_mem_send(s, &out) > 0; i++)
                ;
        }
        const uint8_t *out;
        for (int i = 0; i < 64 && nghttp2_session_mem_send(s, &out) > 0; i++)
            ;
    }
    nghttp2_session_del(s); /* frees its streams without calling on_close */
    for (int i = 0; i < H2_MAX_STREAMS; i++) {
        if (c.reqs[i]) { /* streams still open when the input ended */
            free(c.reqs[i]->body);
            free(c.reqs[i]);
        }
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return 0;
}
