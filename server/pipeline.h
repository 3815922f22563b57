/* pipeline.h: the HTTP half of the request pipeline, independent of the HTTP version.
 * http1.c (our own HTTP/1.1 parser) and http2.c (nghttp2) each turn a request into a struct
 * hreq, call pipeline_start, and send the struct hresp back when it is done. */
#ifndef KINESD_PIPELINE_H
#define KINESD_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"

struct hreq {
    const char *method;
    const char *path;  /* without the query */
    const char *query; /* raw query string, or NULL */
    /* header value by case-insensitive name, or NULL; valid for the call */
    const char *(*header)(void *ctx, const char *name);
    /* the i-th header: its name, with *value; NULL past the last (for a copy of the request) */
    const char *(*header_at)(void *ctx, int i, const char **value);
    void *hctx;
    const char *body;
    size_t body_len;
    bool too_large;     /* the body exceeded api_max_body: answer 413 */
    uint64_t announced; /* its announced or received size */
    /* set by the transport: answer 503 ServiceUnavailable with this message (memory budget
     * exhausted, server draining) without looking further */
    const char *unavailable;
    const char *peer; /* the client's address (aws:SourceIp), or NULL */
    bool tls;         /* it came over TLS (aws:SecureTransport) */
};

#define HRESP_MAX_HEADERS 10

struct hresp {
    unsigned status;
    char *body; /* malloc'd, owned by the hresp until sent */
    size_t body_len;
    /* a streaming answer instead of body: owned by the hresp until the transport takes it
     * (then the transport calls its close exactly once) */
    struct api_producer *producer;
    int nh;
    struct {
        const char *name; /* static */
        char value[200];
    } h[HRESP_MAX_HEADERS];
};

struct workers;

struct pipeline {
    struct api *api;
    bool test_clock;
    bool metrics; /* GET /metrics is answered here */
    /* API calls that may block (api_may_block) run on these; NULL: on the caller's thread */
    struct workers *workers;
    /* post(ctx, run, arg), from any thread: make run(arg) run soon on the thread of the
     * request whose done callback takes ctx (a write's answer is written there, not on the
     * store's committer); NULL: wherever the call completes */
    void (*post)(void *ctx, void (*run)(void *arg), void *arg);
    /* the HTTP front's own figures for GET /metrics (loop.c); NULL: none */
    void (*stats)(const struct pipeline *p, struct api_server_stats *out);
};

/* The answer of GET /metrics into out (body owned by out). */
void pipeline_metrics(const struct pipeline *p, struct hresp *out);

/* Run one request through every step; fills out (body owned by out). */
void pipeline_run(const struct pipeline *p, const struct hreq *r, struct hresp *out);

/* The same without waiting: returns 0 with out filled, or 1 when the request waits for a
 * durable commit or went to a worker (p->workers, for a call that may block; a copy of r goes
 * with it, and a full queue answers 503 at once); then done(ctx, out) runs later, on a worker,
 * the store's committer or the thread p->post chose. r is needed only until the call returns;
 * out must live until done. With done NULL it waits (that is pipeline_run), runs everything on
 * the caller's thread and always returns 0. */
typedef void (*pipeline_done_fn)(void *ctx, struct hresp *out);
int pipeline_start(const struct pipeline *p, const struct hreq *r, struct hresp *out, pipeline_done_fn done,
                   void *ctx);

/* Free what pipeline_run left in out (a producer not taken is closed as SHUTDOWN). */
void hresp_free(struct hresp *out);

/* The test producer behind POST /_test/stream?n=N&size=S (only with --test-clock): N frames of
 * S bytes, each made ready by a timer thread one millisecond after the previous one was
 * pulled. Returns NULL when out of memory. (teststream.c) */
struct api_producer *pipeline_test_producer(long n, long size);

#endif
