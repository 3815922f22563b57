/* h2.c: HTTP/2 over cleartext with prior knowledge (h2c), through nghttp2.
 *
 * The AWS SDK for JavaScript v3 speaks HTTP/2 to Kinesis; against an http:// endpoint it
 * opens the connection with the HTTP/2 preface. One thread serves one connection: it feeds
 * received bytes to nghttp2, runs every request that completed (END_STREAM) through
 * pipeline_run in arrival order, and writes what nghttp2 queues. Bodies are capped as in
 * HTTP/1.1: past api_max_body the rest of the body is discarded (flow control still
 * credited) and the request answers 413. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pipeline.h"

#define MAX_HEADERS 48

struct h2stream {
    int32_t id;
    char *method, *path, *query;
    int nh;
    char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS];
    char *body;
    size_t len, cap;
    bool too_large;
    uint64_t announced;
    bool ready;
    struct hresp resp;
    size_t sent;
    struct h2stream *next_ready;
};

struct h2conn {
    int fd;
    nghttp2_session *s;
    const struct pipeline *p;
    size_t max_body;
    struct h2stream *ready_head, **ready_tail;
};

static char *dup_n(const uint8_t *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        abort();
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void stream_free(struct h2stream *st)
{
    free(st->method);
    free(st->path);
    free(st->query);
    for (int i = 0; i < st->nh; i++) {
        free(st->hname[i]);
        free(st->hvalue[i]);
    }
    free(st->body);
    hresp_free(&st->resp);
    free(st);
}

static const char *header(void *ctx, const char *name)
{
    struct h2stream *st = ctx;
    for (int i = 0; i < st->nh; i++)
        if (!strcasecmp(st->hname[i], name))
            return st->hvalue[i];
    return NULL;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    (void)u;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2stream *st = calloc(1, sizeof *st);
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->id = f->hd.stream_id;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *u)
{
    (void)flags;
    struct h2conn *c = u;
    struct h2stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    if (nlen == 7 && !memcmp(name, ":method", 7)) {
        free(st->method);
        st->method = dup_n(value, vlen);
    } else if (nlen == 5 && !memcmp(name, ":path", 5)) {
        const uint8_t *q = memchr(value, '?', vlen);
        free(st->path);
        free(st->query);
        st->path = dup_n(value, q ? (size_t)(q - value) : vlen);
        st->query = q ? dup_n(q + 1, vlen - (size_t)(q - value) - 1) : NULL;
    } else if (nlen && (name[0] != ':' || (nlen == 10 && !memcmp(name, ":authority", 10))) &&
               st->nh < MAX_HEADERS) { /* :authority is the host a signature covers */
        st->hname[st->nh] = dup_n(name, nlen);
        st->hvalue[st->nh] = dup_n(value, vlen);
        st->nh++;
        if (nlen == 14 && !strncasecmp((const char *)name, "content-length", 14)) {
            st->announced = strtoull(st->hvalue[st->nh - 1], NULL, 10);
            st->too_large = st->announced > c->max_body;
        }
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *u)
{
    (void)flags;
    struct h2conn *c = u;
    struct h2stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st)
        return 0;
    if (st->too_large || st->len + len > c->max_body) {
        st->too_large = true;
        if (st->len + len > st->announced)
            st->announced = st->len + len;
        return 0;
    }
    if (st->len + len > st->cap) {
        size_t ncap = (st->len + len) * 2;
        if (ncap > c->max_body)
            ncap = c->max_body;
        char *nb = realloc(st->body, ncap + 1);
        if (!nb)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        st->body = nb;
        st->cap = ncap;
    }
    memcpy(st->body + st->len, data, len);
    st->len += len;
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    struct h2conn *c = u;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || st->ready)
        return 0;
    st->ready = true;
    *c->ready_tail = st;
    c->ready_tail = &st->next_ready;
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *u)
{
    (void)err;
    struct h2conn *c = u;
    struct h2stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st)
        return 0;
    /* a stream still queued for processing is unlinked first */
    for (struct h2stream **pp = &c->ready_head; *pp; pp = &(*pp)->next_ready)
        if (*pp == st) {
            *pp = st->next_ready;
            if (c->ready_tail == &st->next_ready)
                c->ready_tail = pp;
            break;
        }
    nghttp2_session_set_stream_user_data(s, id, NULL);
    stream_free(st);
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *u)
{
    (void)s;
    (void)id;
    (void)u;
    struct h2stream *st = src->ptr;
    size_t left = st->resp.body_len - st->sent;
    size_t n = left < len ? left : len;
    memcpy(buf, st->resp.body + st->sent, n);
    st->sent += n;
    if (st->sent == st->resp.body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int answer(struct h2conn *c, struct h2stream *st)
{
    struct hreq r = {
        .method = st->method ? st->method : "GET",
        .path = st->path ? st->path : "/",
        .query = st->query,
        .header = header,
        .hctx = st,
        .body = st->body,
        .body_len = st->len,
        .too_large = st->too_large,
        .announced = st->announced,
    };
    pipeline_run(c->p, &r, &st->resp);
    nghttp2_nv nv[HRESP_MAX_HEADERS + 2];
    char status[8], clen[24], lower[HRESP_MAX_HEADERS][48];
    snprintf(status, sizeof status, "%u", st->resp.status);
    snprintf(clen, sizeof clen, "%zu", st->resp.body_len);
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE};
    nv[n++] =
        (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen), NGHTTP2_NV_FLAG_NONE};
    for (int i = 0; i < st->resp.nh; i++) {
        size_t k = 0; /* HTTP/2 header names are lower case */
        for (const char *p = st->resp.h[i].name; *p && k < sizeof lower[i] - 1; p++)
            lower[i][k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        lower[i][k] = 0;
        nv[n++] = (nghttp2_nv){(uint8_t *)lower[i], (uint8_t *)st->resp.h[i].value, k,
                               strlen(st->resp.h[i].value), NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body};
    return nghttp2_submit_response(c->s, st->id, nv, n, &dp);
}

static int flush(struct h2conn *c)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->s, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        while (n > 0) {
            ssize_t w = send(c->fd, data, (size_t)n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
            data += w;
            n -= w;
        }
    }
}

void h2_serve(const struct pipeline *p, int fd)
{
    struct h2conn c = {.fd = fd, .p = p, .max_body = api_max_body(p->api)};
    c.ready_tail = &c.ready_head;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb)) {
        close(fd);
        return;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rc = nghttp2_session_server_new(&c.s, cb, &c);
    nghttp2_session_callbacks_del(cb);
    if (rc) {
        close(fd);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(c.s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(c.s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    uint8_t *buf = malloc(65536);
    if (!buf) {
        nghttp2_session_del(c.s);
        close(fd);
        return;
    }
    while (flush(&c) == 0 && (nghttp2_session_want_read(c.s) || nghttp2_session_want_write(c.s))) {
        ssize_t n = recv(fd, buf, 65536, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || nghttp2_session_mem_recv(c.s, buf, (size_t)n) < 0)
            break;
        while (c.ready_head) {
            struct h2stream *st = c.ready_head;
            c.ready_head = st->next_ready;
            if (!c.ready_head)
                c.ready_tail = &c.ready_head;
            st->next_ready = NULL;
            if (answer(&c, st))
                nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        }
    }
    flush(&c);
    free(buf);
    nghttp2_session_del(c.s); /* frees the remaining streams through on_close */
    close(fd);
}
