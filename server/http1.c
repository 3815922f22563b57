/* http1.c: HTTP/1.1, our own small strict parser, on the event loop.
 *
 * Why not libmicrohttpd: it would have to own the socket (its TLS is GnuTLS, not the OpenSSL
 * that serves h2 on the same port), it aborts when stopped with suspended connections, and its
 * suspend/resume model does not fit answers streamed from another thread. What HTTP/1.1 needs
 * here is small: one request at a time per connection, in order (pipelined requests wait in
 * the read buffer, which is bounded, so a client that pipelines only fills it), keep-alive,
 * Content-Length or chunked request bodies, Expect: 100-continue, and answers with a
 * Content-Length or, for streaming answers, chunked transfer.
 *
 * States: HEAD (waiting for a request's headers) -> BODY or CHUNK* (reading its body) -> WAIT
 * (in the pipeline, possibly waiting for a commit) -> HEAD again, or STREAM (a producer's
 * answer, pulled as the socket drains) -> HEAD. Strictness: a request line or header that does
 * not parse, a Content-Length that is not a number or disagrees with another, Transfer-Encoding
 * other than chunked or together with Content-Length, a NUL or bare CR anywhere in the head:
 * 400 and close. A head over 64 KiB or with more than 100 headers: 431 and close.
 *
 * Before a body is buffered: past api_max_body -> 413, past the memory budget -> 503 (both then
 * close without reading the body), otherwise 100 Continue when asked. While draining, a new
 * request is answered 503 with Connection: close. Deadlines: idle (nothing in flight), headers
 * (from the request's first byte), body (no progress). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"

#define H1_RMAX (64 * 1024)
#define H1_MAX_HEADERS 100
#define H1_CHUNK_LINE 1024

enum h1_state { H_HEAD, H_BODY, H_CHUNK_SIZE, H_CHUNK_DATA, H_CHUNK_CRLF, H_TRAILER, H_WAIT, H_STREAM };

struct h1 {
    enum h1_state state;
    char *head; /* the request's head, NUL-terminated in place */
    const char *method, *path, *query;
    int minor;
    int nh;
    const char *hn[H1_MAX_HEADERS], *hv[H1_MAX_HEADERS];
    uint64_t clen, chunk_left;
    bool chunked, keep, expect, head_only, too_large, started;
    const char *unavailable;
    char *body;
    size_t blen, bcap, budget;
    struct job *job;
    struct api_producer *prod;
    struct sink *sink;
    bool raw_stream; /* HTTP/1.0: the stream ends with the connection */
};

static const char *reason(unsigned s)
{
    switch (s) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 413: return "Request Entity Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return s < 300 ? "OK" : s < 500 ? "Bad Request" : "Internal Server Error";
    }
}

static const char *header(void *ctx, const char *name)
{
    struct h1 *h = ctx;
    for (int i = 0; i < h->nh; i++)
        if (!strcasecmp(h->hn[i], name))
            return h->hv[i];
    return NULL;
}

static const char *header_at(void *ctx, int i, const char **value)
{
    struct h1 *h = ctx;
    if (i >= h->nh)
        return NULL;
    *value = h->hv[i];
    return h->hn[i];
}

static void reset(struct conn *c, struct h1 *h)
{
    free(h->head);
    free(h->body);
    if (h->budget)
        conn_budget_give(c, h->budget);
    *h = (struct h1){.state = H_HEAD};
}

/* A protocol error: a short answer and close. */
static void fail(struct conn *c, struct h1 *h, unsigned status)
{
    char buf[160];
    int n = snprintf(buf, sizeof buf, "HTTP/1.1 %u %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     status, reason(status));
    conn_write(c, buf, (size_t)n);
    h->state = H_WAIT; /* read nothing more */
    c->deadline = 0;
    conn_close_after_send(c);
}

static void set_idle(struct conn *c, struct h1 *h)
{
    const struct http_config *cfg = conn_cfg(c);
    if (h->state != H_HEAD)
        return;
    c->deadline = conn_now(c) + (c->rlen ? cfg->header_ms : cfg->idle_ms);
}

/* ---- answers ---- */

static void put_head(struct conn *c, struct h1 *h, const struct hresp *o, bool close, bool stream)
{
    char buf[2048];
    size_t n = 0;
#define PUT(...) n += (size_t)snprintf(buf + n, sizeof buf - n, __VA_ARGS__)
    PUT("HTTP/1.1 %u %s\r\n", o->status, reason(o->status));
    for (int i = 0; i < o->nh && n < sizeof buf - 200; i++)
        PUT("%s: %s\r\n", o->h[i].name, o->h[i].value);
    if (!stream)
        PUT("Content-Length: %zu\r\n", o->body_len);
    else if (!h->raw_stream)
        PUT("Transfer-Encoding: chunked\r\n");
    PUT("Date: %s\r\n", conn_date(c));
    if (close)
        PUT("Connection: close\r\n");
    else if (h->minor == 0)
        PUT("Connection: keep-alive\r\n");
    PUT("\r\n");
#undef PUT
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    conn_write(c, buf, n);
}

static void stream_end(struct h1 *h, enum api_stream_end why)
{
    if (!h->prod)
        return;
    h->prod->close(h->prod, why);
    h->prod = NULL;
    conn_sink_release(h->sink);
    h->sink = NULL;
}

static void answer(struct conn *c, struct h1 *h, struct hresp *o)
{
    bool close = !h->keep || h->too_large || h->unavailable || conn_draining(c);
    if (o->producer) {
        h->prod = o->producer;
        o->producer = NULL;
        h->raw_stream = h->minor == 0;
        if (h->raw_stream)
            close = true;
        h->keep = !close;
        put_head(c, h, o, close, true);
        h->sink = conn_sink_new(c, h);
        if (!h->sink) {
            h->prod->close(h->prod, API_STREAM_SHUTDOWN);
            h->prod = NULL;
            conn_close(c);
            return;
        }
        h->state = H_STREAM;
        h->prod->start(h->prod, &h->sink->base);
        return;
    }
    put_head(c, h, o, close, false);
    if (!h->head_only && o->body_len) {
        if (o->body_len <= 4096) {
            conn_write(c, o->body, o->body_len);
        } else {
            conn_write_body(c, o->body, o->body_len);
            o->body = NULL;
        }
    }
    if (close) {
        h->state = H_WAIT;
        conn_close_after_send(c);
        return;
    }
    reset(c, h);
    set_idle(c, h);
}

/* Run the buffered request through the pipeline. */
static void dispatch(struct conn *c, struct h1 *h)
{
    h->state = H_WAIT;
    c->deadline = 0;
    if (!h->unavailable && conn_draining(c))
        h->unavailable = "The server is shutting down; retry the request.";
    struct hreq r = {
        .method = h->method,
        .path = h->path,
        .query = h->query,
        .header = header,
        .header_at = header_at,
        .hctx = h,
        .peer = c->peer,
        .tls = c->ssl != NULL,
        .body = h->body,
        .body_len = h->blen,
        .too_large = h->too_large,
        .announced = h->too_large ? h->clen : h->blen,
        .unavailable = h->unavailable,
    };
    struct job *j = conn_job_new(c, h);
    if (!j) {
        fail(c, h, 503);
        return;
    }
    int pending = pipeline_start(conn_pipeline(c), &r, &j->resp, conn_job_done, j);
    free(h->body); /* needed only until pipeline_start returned */
    h->body = NULL;
    h->blen = h->bcap = 0;
    if (pending) /* a copy of it, or what it decoded to, lives until the job comes back */
        j->budget = h->budget;
    else if (h->budget)
        conn_budget_give(c, h->budget);
    h->budget = 0;
    if (pending) {
        h->job = j;
        return;
    }
    c->refs--;
    answer(c, h, &j->resp);
    hresp_free(&j->resp);
    free(j);
}

static void job_done(struct conn *c, struct job *j)
{
    struct h1 *h = c->ps;
    h->job = NULL;
    answer(c, h, &j->resp);
    conn_job_free(j);
}

/* ---- parsing ---- */

static bool tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool parse_u64(const char *s, int base, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        int d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (base == 16 && ((*s | 32) >= 'a' && (*s | 32) <= 'f'))
            d = (*s | 32) - 'a' + 10;
        else
            return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    *out = v;
    return true;
}

static const char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* Parse the head (h->head, len bytes without the final CRLF CRLF). Returns 0 or an HTTP status. */
static unsigned parse_head(struct h1 *h, size_t len)
{
    char *p = h->head;
    for (size_t i = 0; i < len; i++)
        if (p[i] == 0 || (p[i] == '\r' && p[i + 1] != '\n'))
            return 400;
    char *eol = strstr(p, "\r\n");
    if (eol)
        *eol = 0;
    char *sp1 = strchr(p, ' ');
    if (!sp1 || sp1 == p)
        return 400;
    *sp1 = 0;
    for (char *m = p; *m; m++)
        if (!tchar(*m))
            return 400;
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2 || sp2 == target)
        return 400;
    *sp2 = 0;
    const char *ver = sp2 + 1;
    if (strncmp(ver, "HTTP/1.", 7) || (ver[7] != '0' && ver[7] != '1') || ver[8])
        return strncmp(ver, "HTTP/", 5) ? 400 : 505;
    h->minor = ver[7] - '0';
    h->method = p;
    if (!strncasecmp(target, "http://", 7) || !strncasecmp(target, "https://", 8)) {
        char *slash = strchr(strstr(target, "//") + 2, '/');
        target = slash ? slash : "/";
    }
    if (target[0] != '/' && strcmp(target, "*"))
        return 400;
    char *q = strchr(target, '?');
    if (q) {
        *q = 0;
        h->query = q + 1;
    }
    h->path = target;
    h->keep = h->minor == 1;
    bool have_clen = false;
    for (char *line = eol ? eol + 2 : NULL; line && *line;) {
        char *next = strstr(line, "\r\n");
        if (next) {
            *next = 0;
            next += 2;
        }
        if (*line == ' ' || *line == '\t')
            return 400; /* obsolete line folding */
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            return 400;
        *colon = 0;
        for (char *k = line; *k; k++)
            if (!tchar(*k))
                return 400;
        if (h->nh == H1_MAX_HEADERS)
            return 431;
        const char *v = trim(colon + 1);
        h->hn[h->nh] = line;
        h->hv[h->nh] = v;
        h->nh++;
        if (!strcasecmp(line, "Content-Length")) {
            uint64_t n;
            if (!parse_u64(v, 10, &n) || (have_clen && n != h->clen))
                return 400;
            h->clen = n;
            have_clen = true;
        } else if (!strcasecmp(line, "Transfer-Encoding")) {
            if (strcasecmp(v, "chunked"))
                return 501;
            h->chunked = true;
        } else if (!strcasecmp(line, "Connection")) {
            if (strcasestr(v, "close"))
                h->keep = false;
            else if (strcasestr(v, "keep-alive"))
                h->keep = true;
        } else if (!strcasecmp(line, "Expect")) {
            if (strcasecmp(v, "100-continue"))
                return 417;
            h->expect = true;
        }
        line = next;
    }
    if (h->chunked && have_clen)
        return 400;
    h->head_only = !strcmp(h->method, "HEAD");
    return 0;
}

/* Headers are complete: decide about the body. */
static void begin_body(struct conn *c, struct h1 *h)
{
    size_t max = api_max_body(conn_pipeline(c)->api);
    if (!h->chunked && h->clen == 0) {
        dispatch(c, h);
        return;
    }
    if (!h->chunked && h->clen > max) {
        h->too_large = true; /* answered before any of the body is read */
        dispatch(c, h);
        return;
    }
    size_t want = h->chunked ? 0 : (size_t)h->clen;
    if (want && !conn_budget_take(c, want)) {
        h->unavailable = "The server's memory budget for requests is exhausted; retry the request.";
        dispatch(c, h);
        return;
    }
    h->budget = want;
    if (want) {
        h->body = malloc(want + 1);
        if (!h->body) {
            fail(c, h, 503);
            return;
        }
        h->bcap = want;
    }
    if (h->expect)
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    h->state = h->chunked ? H_CHUNK_SIZE : H_BODY;
    c->deadline = conn_now(c) + conn_cfg(c)->body_ms;
}

static bool chunk_append(struct conn *c, struct h1 *h, const char *p, size_t n)
{
    size_t max = api_max_body(conn_pipeline(c)->api);
    if (h->blen + n > max) {
        h->too_large = true;
        h->clen = h->blen + n;
        dispatch(c, h);
        return false;
    }
    if (h->blen + n > h->bcap) {
        size_t ncap = (h->blen + n) * 2;
        if (ncap > max)
            ncap = max;
        if (!conn_budget_take(c, ncap - h->bcap)) {
            h->unavailable = "The server's memory budget for requests is exhausted; retry the request.";
            dispatch(c, h);
            return false;
        }
        h->budget += ncap - h->bcap;
        char *nb = realloc(h->body, ncap + 1);
        if (!nb) {
            fail(c, h, 503);
            return false;
        }
        h->body = nb;
        h->bcap = ncap;
    }
    memcpy(h->body + h->blen, p, n);
    h->blen += n;
    return true;
}

static void input(struct conn *c)
{
    struct h1 *h = c->ps;
    for (;;) {
        if (c->dead)
            return;
        switch (h->state) {
        case H_HEAD: {
            if (c->wbody) /* the previous answer is still going out */
                return;
            size_t skip = 0; /* empty lines before a request line are allowed */
            while (skip + 1 < c->rlen && c->rbuf[skip] == '\r' && c->rbuf[skip + 1] == '\n')
                skip += 2;
            if (skip)
                conn_consume(c, skip);
            char *end = c->rlen >= 4 ? memmem(c->rbuf, c->rlen, "\r\n\r\n", 4) : NULL;
            if (!end) {
                if (c->rlen >= c->rmax) {
                    fail(c, h, 431);
                    return;
                }
                if (c->eof) { /* the client is done: send what is queued, then close */
                    if (conn_pending(c))
                        conn_close_after_send(c);
                    else
                        conn_close(c);
                    return;
                }
                if (c->rlen && !h->started) {
                    h->started = true;
                    c->deadline = conn_now(c) + conn_cfg(c)->header_ms;
                } else if (!c->rlen) {
                    set_idle(c, h);
                }
                return;
            }
            size_t len = (size_t)(end - c->rbuf);
            h->head = malloc(len + 3);
            if (!h->head) {
                conn_close(c);
                return;
            }
            memcpy(h->head, c->rbuf, len + 2);
            h->head[len + 2] = 0;
            conn_consume(c, len + 4);
            unsigned st = parse_head(h, len);
            if (st) {
                fail(c, h, st);
                return;
            }
            begin_body(c, h);
            break;
        }
        case H_BODY: {
            size_t n = c->rlen < h->clen - h->blen ? c->rlen : (size_t)(h->clen - h->blen);
            memcpy(h->body + h->blen, c->rbuf, n);
            h->blen += n;
            conn_consume(c, n);
            if (n)
                c->deadline = conn_now(c) + conn_cfg(c)->body_ms;
            if (h->blen == h->clen) {
                dispatch(c, h);
                break;
            }
            if (c->eof)
                conn_close(c);
            return;
        }
        case H_CHUNK_SIZE:
        case H_TRAILER: {
            char *nl = memmem(c->rbuf, c->rlen, "\r\n", 2);
            if (!nl) {
                if (c->rlen > H1_CHUNK_LINE)
                    fail(c, h, 400);
                else if (c->eof)
                    conn_close(c);
                return;
            }
            size_t len = (size_t)(nl - c->rbuf);
            c->deadline = conn_now(c) + conn_cfg(c)->body_ms;
            if (h->state == H_TRAILER) {
                conn_consume(c, len + 2);
                if (len == 0)
                    dispatch(c, h);
                break;
            }
            char line[H1_CHUNK_LINE + 1];
            memcpy(line, c->rbuf, len);
            line[len] = 0;
            conn_consume(c, len + 2);
            char *semi = strchr(line, ';'); /* chunk extensions are ignored */
            if (semi)
                *semi = 0;
            uint64_t size;
            if (!parse_u64(trim(line), 16, &size)) {
                fail(c, h, 400);
                return;
            }
            if (size == 0) {
                h->state = H_TRAILER;
                break;
            }
            if (size > api_max_body(conn_pipeline(c)->api)) {
                h->too_large = true;
                h->clen = h->blen + size;
                dispatch(c, h);
                return;
            }
            h->chunk_left = size;
            h->state = H_CHUNK_DATA;
            break;
        }
        case H_CHUNK_DATA: {
            size_t n = c->rlen < h->chunk_left ? c->rlen : (size_t)h->chunk_left;
            if (n && !chunk_append(c, h, c->rbuf, n))
                return;
            conn_consume(c, n);
            h->chunk_left -= n;
            if (n)
                c->deadline = conn_now(c) + conn_cfg(c)->body_ms;
            if (h->chunk_left == 0) {
                h->state = H_CHUNK_CRLF;
                break;
            }
            if (c->eof)
                conn_close(c);
            return;
        }
        case H_CHUNK_CRLF:
            if (c->rlen < 2) {
                if (c->eof)
                    conn_close(c);
                return;
            }
            if (c->rbuf[0] != '\r' || c->rbuf[1] != '\n') {
                fail(c, h, 400);
                return;
            }
            conn_consume(c, 2);
            h->state = H_CHUNK_SIZE;
            break;
        case H_WAIT:
            /* pipelined bytes wait in rbuf; a client that went away is noticed when the answer
             * is written */
            return;
        case H_STREAM:
            if (c->eof && c->rlen == 0) { /* the client went away */
                stream_end(h, API_STREAM_CLIENT_GONE);
                conn_close(c);
            }
            return;
        }
    }
}

/* Streaming: pull frames while the socket takes them. */
static void output(struct conn *c)
{
    struct h1 *h = c->ps;
    if (h->state == H_HEAD && c->rlen && !c->wbody) {
        input(c); /* a pipelined request waited for the previous answer */
        return;
    }
    if (h->state != H_STREAM || !h->prod)
        return;
    static _Thread_local char buf[65536 + 32];
    while (!c->dead && conn_pending(c) < CONN_LOW_WATER) {
        long n = h->prod->pull(h->prod, buf + 16, 65536);
        if (n == 0)
            return;
        if (n < 0) {
            if (!h->raw_stream)
                conn_write(c, "0\r\n\r\n", 5);
            stream_end(h, API_STREAM_DONE);
            if (!h->keep) {
                h->state = H_WAIT;
                conn_close_after_send(c);
                return;
            }
            reset(c, h);
            set_idle(c, h);
            return;
        }
        if (h->raw_stream) {
            conn_write(c, buf + 16, (size_t)n);
            continue;
        }
        char len[20];
        int k = snprintf(len, sizeof len, "%lx\r\n", n);
        memcpy(buf + 16 - k, len, (size_t)k);
        memcpy(buf + 16 + n, "\r\n", 2);
        conn_write(c, buf + 16 - k, (size_t)k + (size_t)n + 2);
    }
}

static void wake(struct conn *c, struct sink *s)
{
    (void)c;
    (void)s; /* conn_kick runs output next */
}

static void drain(struct conn *c)
{
    struct h1 *h = c->ps;
    switch (h->state) {
    case H_HEAD:
        if (c->rlen == 0 && conn_pending(c) == 0)
            conn_close(c); /* idle: nothing to answer */
        else if (c->rlen == 0)
            conn_close_after_send(c);
        break; /* a request on its way is answered 503 with Connection: close */
    case H_STREAM:
        if (!h->raw_stream)
            conn_write(c, "0\r\n\r\n", 5);
        stream_end(h, API_STREAM_SHUTDOWN);
        h->state = H_WAIT;
        conn_close_after_send(c);
        break;
    default: break; /* in flight: answered with Connection: close */
    }
}

static void h1_free(struct conn *c)
{
    struct h1 *h = c->ps;
    if (!h)
        return;
    if (h->job)
        h->job->owner = NULL; /* it comes back to be freed */
    stream_end(h, API_STREAM_CLIENT_GONE);
    free(h->head);
    free(h->body);
    if (h->budget)
        conn_budget_give(c, h->budget);
    free(h);
    c->ps = NULL;
}

int http1_init(struct conn *c)
{
    struct h1 *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->state = H_HEAD;
    c->ps = h;
    c->rmax = H1_RMAX;
    return 0;
}

const struct proto http1_proto = {
    .name = "http/1.1",
    .input = input,
    .output = output,
    .job_done = job_done,
    .wake = wake,
    .drain = drain,
    .free = h1_free,
};
