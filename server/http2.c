/* http2.c: HTTP/2 (h2c with prior knowledge, and h2 over TLS) through nghttp2, on the loop.
 *
 * nghttp2 runs in memory: received bytes go to nghttp2_session_mem_recv, frames it wants to
 * send are copied into the connection's output by nghttp2_session_mem_send while that output
 * is below its low-water mark (so a client that does not read stops us from producing, and
 * flow control holds the rest inside nghttp2). Every stream whose request is complete
 * (END_STREAM) goes into the pipeline at once; one that waits for a commit comes back as a job
 * through the loop's queue, so the writes of all streams of all connections share group
 * commits. An answer's body goes out in DATA frames under flow control through a data provider;
 * a streaming answer's provider pulls from its producer and defers (NGHTTP2_ERR_DEFERRED) until
 * the producer wakes its sink. A large answer therefore never holds up the other streams.
 *
 * Bounds: concurrent streams (http_config.h2_streams, advertised and enforced by nghttp2),
 * 100 headers or 64 KiB of header text per stream (else the stream is reset), the HPACK table
 * at 4 KiB, SETTINGS with at most 32 entries, at most 1000 queued PING/SETTINGS acks (a flood
 * closes the connection), RST_STREAM at 1000 burst / 33 per second (rapid reset: GOAWAY), 8
 * CONTINUATION frames per header block. Bodies: past api_max_body the rest is discarded (the
 * window is still credited) and the stream answers 413; past the memory budget it answers 503.
 * A connection with answers the client does not take (zero window) for send_ms is closed.
 *
 * Draining: GOAWAY with the last stream processed; streams in flight finish, then the
 * connection closes. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"

#define H2_MAX_HEADERS 100
#define H2_MAX_HEADER_BYTES (64 * 1024)
#define H2_RMAX (64 * 1024)
#define H2_OUT_HIGH (256 * 1024) /* stop reading while this much output waits */

struct h2s {
    struct conn *c;
    int32_t id;
    char *method, *path, *query;
    int nh;
    size_t hbytes;
    char *hname[H2_MAX_HEADERS], *hvalue[H2_MAX_HEADERS];
    char *body;
    size_t len, cap, budget;
    bool too_large, ended, answered, owed;
    const char *unavailable;
    uint64_t announced;
    struct job *job;
    struct hresp resp;
    size_t sent;
    struct api_producer *prod;
    struct sink *sink;
    struct h2s *prev, *next;
};

struct h2c {
    nghttp2_session *s;
    struct h2s *streams;
    int receiving; /* streams whose request body is still arriving */
    bool goaway;
};

static const char *UNAVAILABLE = "The server's memory budget for requests is exhausted; retry the request.";

static char *dup_n(const uint8_t *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void stream_end_producer(struct h2s *st, enum api_stream_end why)
{
    if (!st->prod)
        return;
    st->prod->close(st->prod, why);
    st->prod = NULL;
    conn_sink_release(st->sink);
    st->sink = NULL;
}

static void stream_free(struct conn *c, struct h2c *hc, struct h2s *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        hc->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (!st->ended)
        hc->receiving--;
    if (st->owed)
        c->owes--;
    if (st->job)
        st->job->owner = NULL;
    stream_end_producer(st, API_STREAM_CLIENT_GONE);
    free(st->method);
    free(st->path);
    free(st->query);
    for (int i = 0; i < st->nh; i++) {
        free(st->hname[i]);
        free(st->hvalue[i]);
    }
    free(st->body);
    if (st->budget)
        conn_budget_give(c, st->budget);
    hresp_free(&st->resp);
    free(st);
}

static const char *header(void *ctx, const char *name)
{
    struct h2s *st = ctx;
    for (int i = 0; i < st->nh; i++)
        if (!strcasecmp(st->hname[i], name))
            return st->hvalue[i];
    return NULL;
}

static const char *header_at(void *ctx, int i, const char **value)
{
    struct h2s *st = ctx;
    if (i >= st->nh)
        return NULL;
    *value = st->hvalue[i];
    return st->hname[i];
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    struct conn *c = u;
    struct h2c *hc = c->ps;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2s *st = calloc(1, sizeof *st);
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->c = c;
    st->id = f->hd.stream_id;
    st->next = hc->streams;
    if (hc->streams)
        hc->streams->prev = st;
    hc->streams = st;
    hc->receiving++;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *u)
{
    (void)flags;
    struct conn *c = u;
    struct h2s *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    st->hbytes += nlen + vlen + 32;
    if (st->hbytes > H2_MAX_HEADER_BYTES || st->nh == H2_MAX_HEADERS)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    if (nlen == 7 && !memcmp(name, ":method", 7)) {
        free(st->method);
        st->method = dup_n(value, vlen);
    } else if (nlen == 5 && !memcmp(name, ":path", 5)) {
        const uint8_t *q = memchr(value, '?', vlen);
        free(st->path);
        free(st->query);
        st->path = dup_n(value, q ? (size_t)(q - value) : vlen);
        st->query = q ? dup_n(q + 1, vlen - (size_t)(q - value) - 1) : NULL;
    } else if (nlen && (name[0] != ':' || (nlen == 10 && !memcmp(name, ":authority", 10)))) {
        st->hname[st->nh] = dup_n(name, nlen);
        st->hvalue[st->nh] = dup_n(value, vlen);
        if (!st->hname[st->nh] || !st->hvalue[st->nh]) {
            free(st->hname[st->nh]);
            free(st->hvalue[st->nh]);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        st->nh++;
        if (nlen == 14 && !strncasecmp((const char *)name, "content-length", 14)) {
            st->announced = strtoull(st->hvalue[st->nh - 1], NULL, 10);
            st->too_large = st->announced > api_max_body(conn_pipeline(c)->api);
        }
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *u)
{
    (void)flags;
    struct conn *c = u;
    struct h2s *st = nghttp2_session_get_stream_user_data(s, id);
    size_t max = api_max_body(conn_pipeline(c)->api);
    if (!st)
        return 0;
    if (st->too_large || st->unavailable || st->len + len > max) {
        if (!st->unavailable)
            st->too_large = true;
        if (st->len + len > st->announced)
            st->announced = st->len + len;
        return 0;
    }
    if (st->len + len > st->cap) {
        size_t ncap = (st->len + len) * 2;
        if (st->announced >= st->len + len && st->announced <= max)
            ncap = (size_t)st->announced;
        if (ncap > max)
            ncap = max;
        if (!conn_budget_take(c, ncap - st->cap)) {
            st->unavailable = UNAVAILABLE;
            return 0;
        }
        st->budget += ncap - st->cap;
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

/* ---- answers ---- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *u)
{
    (void)s;
    (void)id;
    (void)u;
    struct h2s *st = src->ptr;
    if (st->prod) {
        long n = st->prod->pull(st->prod, (char *)buf, len);
        if (n == 0)
            return NGHTTP2_ERR_DEFERRED;
        if (n < 0) {
            stream_end_producer(st, API_STREAM_DONE);
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        return (ssize_t)n;
    }
    if (st->answered && !st->resp.body) { /* a producer that ended early (drain) */
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t left = st->resp.body_len - st->sent;
    size_t n = left < len ? left : len;
    if (n)
        memcpy(buf, st->resp.body + st->sent, n);
    st->sent += n;
    if (st->sent == st->resp.body_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        free(st->resp.body); /* sent: give the memory back now */
        st->resp.body = NULL;
        if (st->budget) {
            conn_budget_give(st->c, st->budget);
            st->budget = 0;
        }
    }
    return (ssize_t)n;
}

static void submit(struct conn *c, struct h2s *st)
{
    struct h2c *hc = c->ps;
    nghttp2_nv nv[HRESP_MAX_HEADERS + 2];
    char status[8], clen[24], lower[HRESP_MAX_HEADERS][48];
    snprintf(status, sizeof status, "%u", st->resp.status);
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE};
    st->prod = st->resp.producer;
    st->resp.producer = NULL;
    if (!st->prod) {
        snprintf(clen, sizeof clen, "%zu", st->resp.body_len);
        nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen),
                               NGHTTP2_NV_FLAG_NONE};
    }
    for (int i = 0; i < st->resp.nh; i++) {
        size_t k = 0; /* HTTP/2 header names are lower case */
        for (const char *p = st->resp.h[i].name; *p && k < sizeof lower[i] - 1; p++)
            lower[i][k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        lower[i][k] = 0;
        nv[n++] = (nghttp2_nv){(uint8_t *)lower[i], (uint8_t *)st->resp.h[i].value, k,
                               strlen(st->resp.h[i].value), NGHTTP2_NV_FLAG_NONE};
    }
    st->answered = true;
    if (st->prod) {
        st->sink = conn_sink_new(c, st);
        if (!st->sink) {
            st->prod->close(st->prod, API_STREAM_SHUTDOWN);
            st->prod = NULL;
            nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
            return;
        }
        st->prod->start(st->prod, &st->sink->base);
    } else {
        st->budget = st->resp.body_len; /* an unsent answer, until read_body sent it */
        conn_budget_force(c, st->budget);
        if (c->owes++ == 0)
            c->last_write = conn_now(c);
        st->owed = true;
    }
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body};
    if (nghttp2_submit_response(hc->s, st->id, nv, n, &dp))
        nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static void dispatch(struct conn *c, struct h2s *st)
{
    struct hreq r = {
        .method = st->method ? st->method : "GET",
        .path = st->path ? st->path : "/",
        .query = st->query,
        .header = header,
        .header_at = header_at,
        .hctx = st,
        .peer = c->peer,
        .tls = c->ssl != NULL,
        .body = st->body,
        .body_len = st->len,
        .too_large = st->too_large,
        .announced = st->announced,
        .unavailable = st->unavailable,
    };
    struct job *j = conn_job_new(c, st);
    if (!j) {
        nghttp2_submit_rst_stream(((struct h2c *)c->ps)->s, NGHTTP2_FLAG_NONE, st->id,
                                  NGHTTP2_INTERNAL_ERROR);
        return;
    }
    int pending = pipeline_start(conn_pipeline(c), &r, &j->resp, conn_job_done, j);
    free(st->body);
    st->body = NULL;
    st->len = st->cap = 0;
    if (pending) /* a copy of it, or what it decoded to, lives until the job comes back */
        j->budget = st->budget;
    else if (st->budget)
        conn_budget_give(c, st->budget);
    st->budget = 0;
    if (pending) {
        st->job = j;
        return;
    }
    c->refs--;
    st->resp = j->resp;
    free(j);
    submit(c, st);
}

static void job_done(struct conn *c, struct job *j)
{
    struct h2s *st = j->owner;
    st->job = NULL;
    st->resp = j->resp;
    j->resp = (struct hresp){0};
    conn_job_free(j);
    submit(c, st);
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    struct conn *c = u;
    struct h2c *hc = c->ps;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        struct h2s *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        /* the announced body must fit the budget before any of it is buffered */
        if (st && st->announced && !st->too_large && !st->budget) {
            if (conn_budget_take(c, (size_t)st->announced)) {
                st->budget = (size_t)st->announced;
                st->body = malloc((size_t)st->announced + 1);
                if (!st->body)
                    return NGHTTP2_ERR_CALLBACK_FAILURE;
                st->cap = (size_t)st->announced;
            } else {
                st->unavailable = UNAVAILABLE;
            }
        }
    }
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2s *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || st->ended)
        return 0;
    st->ended = true;
    hc->receiving--;
    dispatch(c, st);
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *u)
{
    (void)err;
    struct conn *c = u;
    struct h2s *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    stream_free(c, c->ps, st);
    return 0;
}

/* ---- the connection ---- */

static void arm(struct conn *c)
{
    struct h2c *hc = c->ps;
    const struct http_config *cfg = conn_cfg(c);
    if (!hc->streams && conn_pending(c) == 0)
        c->deadline = conn_now(c) + cfg->idle_ms;
    else if (hc->receiving > 0)
        c->deadline = conn_now(c) + cfg->body_ms; /* moved on by every read */
    else
        c->deadline = 0;
}

static void input(struct conn *c)
{
    struct h2c *hc = c->ps;
    if (c->rlen && conn_pending(c) < H2_OUT_HIGH) {
        ssize_t n = nghttp2_session_mem_recv(hc->s, (const uint8_t *)c->rbuf, c->rlen);
        if (n < 0) { /* a fatal protocol error or a flood: nghttp2 queued GOAWAY where it could */
            const uint8_t *data;
            ssize_t k;
            while ((k = nghttp2_session_mem_send(hc->s, &data)) > 0)
                conn_write(c, data, (size_t)k);
            conn_close_after_send(c);
            return;
        }
        conn_consume(c, (size_t)n);
        arm(c);
    }
    if (c->eof)
        conn_close(c); /* the client cannot send any more: it went away */
}

static void output(struct conn *c)
{
    struct h2c *hc = c->ps;
    while (conn_pending(c) < CONN_LOW_WATER) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(hc->s, &data);
        if (n < 0) {
            conn_close(c);
            return;
        }
        if (n == 0)
            break;
        conn_write(c, data, (size_t)n);
    }
    if (!nghttp2_session_want_read(hc->s) && !nghttp2_session_want_write(hc->s)) {
        conn_close_after_send(c);
        return;
    }
    arm(c);
}

static void wake(struct conn *c, struct sink *s)
{
    struct h2c *hc = c->ps;
    struct h2s *st = s->owner;
    nghttp2_session_resume_data(hc->s, st->id);
}

static void drain(struct conn *c)
{
    struct h2c *hc = c->ps;
    if (hc->goaway)
        return;
    hc->goaway = true;
    nghttp2_submit_goaway(hc->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(hc->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    for (struct h2s *st = hc->streams; st; st = st->next)
        if (st->prod) { /* a streaming answer ends here, cleanly */
            stream_end_producer(st, API_STREAM_SHUTDOWN);
            nghttp2_session_resume_data(hc->s, st->id);
        }
}

static void h2_free(struct conn *c)
{
    struct h2c *hc = c->ps;
    if (!hc)
        return;
    while (hc->streams) {
        nghttp2_session_set_stream_user_data(hc->s, hc->streams->id, NULL);
        stream_free(c, hc, hc->streams);
    }
    nghttp2_session_del(hc->s);
    free(hc);
    c->ps = NULL;
}

int http2_init(struct conn *c)
{
    const struct http_config *cfg = conn_cfg(c);
    struct h2c *hc = calloc(1, sizeof *hc);
    if (!hc)
        return -1;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb)) {
        free(hc);
        return -1;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cb);
        free(hc);
        return -1;
    }
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    int rc = nghttp2_session_server_new2(&hc->s, cb, c, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc) {
        free(hc);
        return -1;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)cfg->h2_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_BYTES},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096},
    };
    nghttp2_submit_settings(hc->s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(hc->s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    c->ps = hc;
    c->rmax = H2_RMAX;
    if (conn_draining(c))
        drain(c);
    return 0;
}

const struct proto http2_proto = {
    .name = "h2",
    .input = input,
    .output = output,
    .job_done = job_done,
    .wake = wake,
    .drain = drain,
    .free = h2_free,
};
