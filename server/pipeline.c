/* pipeline.c: the request pipeline's HTTP half, written once, in AWS's order:
 *
 *   0. budget / draining   503 ServiceUnavailable, retryable, before the body is buffered
 *   1. body size cap       413 before the body is buffered (the adapters stop reading)
 *   2. GET /healthcheck    200 once the server accepts requests
 *      GET /metrics        the Prometheus exposition (api_metrics); not under --auth, where
 *                          it would name every stream to anyone: --metrics-port serves it
 *      GET /console[/...]  the web console's compiled-in files (console.c), unless --no-console
 *   3. CORS                Origin -> Access-Control-Allow-Origin; OPTIONS preflight answered here
 *   4. test hooks          POST /_test/advance-clock?ms=N and /_test/stream?n=N&size=S,
 *                          only with --test-clock
 *   5. method              anything but POST -> 403 AccessDeniedException (XML, as AWS)
 *   6. api_handle          content type, decode, X-Amz-Target, authentication, validation,
 *                          operation, encoding (see api/api.c)
 * Every answer carries x-amzn-RequestId and x-amz-id-2.
 *
 * Threads: steps 0-5 run on the connection's loop, but for GET /metrics, rendered on a worker.
 * A call that may block (api_may_block: a
 * storage read, a metadata commit, PostgreSQL) goes to the worker pool with a copy of its
 * request, so the loop serves its other connections meanwhile; past the pool's queue it answers
 * 503 ServiceUnavailable at once, as for the memory budget (refusing to read instead would
 * stall every other stream of an HTTP/2 connection behind it). Writes run on the loop up to
 * their append; the answer, once the commit is durable, is written on the loop again (p->post),
 * not on the store's committer, which goes on to its next group commit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "console.h"
#include "pipeline.h"
#include "workers.h"

static void add(struct hresp *o, const char *name, const char *value)
{
    if (o->nh == HRESP_MAX_HEADERS || !value)
        return;
    o->h[o->nh].name = name;
    snprintf(o->h[o->nh].value, sizeof o->h[o->nh].value, "%s", value);
    o->nh++;
}

static void set_body(struct hresp *o, const char *text)
{
    o->body_len = strlen(text);
    o->body = malloc(o->body_len + 1);
    if (!o->body)
        abort();
    memcpy(o->body, text, o->body_len + 1);
}

/* x-amz-id-2: 72 random bytes in base64, as AWS sends (not a secret: a fast generator). */
static void id2(char out[100])
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 96; i += 8) {
        uint64_t r = api_rand64();
        for (int k = 0; k < 8; k++, r >>= 6)
            out[i + k] = t[r & 63];
    }
    out[96] = 0;
}

/* Every answer: the request id, x-amz-id-2, and CORS exposure when the request had an Origin. */
static void add_common(struct hresp *o, const char *rid, bool origin)
{
    char idv[100];
    add(o, "x-amzn-RequestId", rid);
    id2(idv);
    add(o, "x-amz-id-2", idv);
    if (origin) {
        add(o, "Access-Control-Allow-Origin", "*");
        add(o, "Access-Control-Expose-Headers",
            "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date");
    }
}

/* An API call that completes later: what its completion needs. One that runs on a worker
 * carries a copy of its request in the same allocation (the transport frees its own once
 * pipeline_start returns). */
struct pending {
    struct api_response ar;
    struct hresp *o;
    bool origin;
    pipeline_done_fn done;
    void *ctx;
    const struct pipeline *p;
    struct api_request req; /* a worker's: points into the copy */
    int nh;
    const char **hn, **hv;
};

static void from_api(struct hresp *o, struct api_response *ar, bool origin)
{
    o->status = (unsigned)ar->status;
    o->body = ar->body;
    o->body_len = ar->body_len;
    o->producer = ar->producer;
    add(o, "Content-Type", ar->content_type);
    add_common(o, ar->request_id, origin);
}

void pipeline_metrics(const struct pipeline *p, struct hresp *o)
{
    struct api_server_stats st = {0};
    if (p->stats)
        p->stats(p, &st);
    o->status = 200;
    o->body = api_metrics(p->api, p->stats ? &st : NULL, &o->body_len);
    add(o, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
}

static long query_num(const char *query, const char *name, long dflt)
{
    size_t n = strlen(name);
    for (const char *q = query; q && *q;) {
        if (!strncmp(q, name, n) && q[n] == '=')
            return strtol(q + n + 1, NULL, 10);
        q = strchr(q, '&');
        q = q ? q + 1 : NULL;
    }
    return dflt;
}

static void api_done(void *arg, struct api_response *ar)
{
    struct pending *pd = arg;
    from_api(pd->o, ar, pd->origin);
    pd->done(pd->ctx, pd->o);
    free(pd);
}

static void post_to_caller(void *arg, void (*run)(void *), void *rarg)
{
    struct pending *pd = arg;
    pd->p->post(pd->ctx, run, rarg);
}

static void api_request_of(struct api_request *req, const char *method, const char *path, const char *query,
                           const char *body, size_t body_len, const char *(*header)(void *, const char *),
                           void *hctx)
{
    *req = (struct api_request){
        .content_type = header(hctx, "Content-Type"),
        .target = header(hctx, "X-Amz-Target"),
        .authorization = header(hctx, "Authorization"),
        .amz_date = header(hctx, "X-Amz-Date"),
        .date = header(hctx, "Date"),
        .query = query,
        .body = body ? body : "",
        .body_len = body_len,
        .method = method,
        .path = path,
        .header = header,
        .hctx = hctx,
    };
}

/* ---- calls that may block: on a worker ---- */

static const char *copy_header(void *ctx, const char *name)
{
    struct pending *pd = ctx;
    for (int i = 0; i < pd->nh; i++)
        if (!strcasecmp(pd->hn[i], name))
            return pd->hv[i];
    return NULL;
}

static char *put_str(char **at, const char *s, size_t n)
{
    char *p = *at;
    memcpy(p, s, n);
    p[n] = 0;
    *at += n + 1;
    return p;
}

/* A pending call with a copy of r (method, path, query, every header, the body), in one
 * allocation; NULL when out of memory. */
static struct pending *pending_copy(const struct hreq *r)
{
    int nh = 0;
    size_t strings = strlen(r->method) + strlen(r->path) + (r->query ? strlen(r->query) : 0) + r->body_len +
                     (r->peer ? strlen(r->peer) : 0) + 5;
    const char *v, *n;
    for (; r->header_at && (n = r->header_at(r->hctx, nh, &v)); nh++)
        strings += strlen(n) + strlen(v) + 2;
    struct pending *pd = malloc(sizeof *pd + 2 * (size_t)nh * sizeof(char *) + strings);
    if (!pd)
        return NULL;
    *pd = (struct pending){.nh = nh};
    pd->hn = (const char **)(pd + 1);
    pd->hv = pd->hn + nh;
    char *at = (char *)(pd->hv + nh);
    for (int i = 0; i < nh; i++) {
        n = r->header_at(r->hctx, i, &v);
        pd->hn[i] = put_str(&at, n, strlen(n));
        pd->hv[i] = put_str(&at, v, strlen(v));
    }
    const char *method = put_str(&at, r->method, strlen(r->method));
    const char *path = put_str(&at, r->path, strlen(r->path));
    const char *query = r->query ? put_str(&at, r->query, strlen(r->query)) : NULL;
    const char *body = put_str(&at, r->body ? r->body : "", r->body_len);
    api_request_of(&pd->req, method, path, query, body, r->body_len, copy_header, pd);
    pd->req.source_ip = r->peer ? put_str(&at, r->peer, strlen(r->peer)) : NULL;
    pd->req.secure_transport = r->tls;
    return pd;
}

static void run_on_worker(void *arg)
{
    struct pending *pd = arg;
    if (!api_handle_async(pd->p->api, &pd->req, &pd->ar, api_done, pd))
        api_done(pd, &pd->ar);
}

/* GET /metrics on a worker: its rendering walks every stream and shard (and may reconcile the
 * metric families with the registry), work that grows with the store and has no place on a loop. */
struct metrics_job {
    const struct pipeline *p;
    struct hresp *o;
    bool origin;
    pipeline_done_fn done;
    void *ctx;
    char rid[40];
};

static void run_metrics(void *arg)
{
    struct metrics_job *m = arg;
    pipeline_metrics(m->p, m->o);
    add_common(m->o, m->rid, m->origin);
    m->done(m->ctx, m->o);
    free(m);
}

/* Whether the answer went to a worker (1: done follows); 0: render it here (out of memory, or
 * the queue is full: a scrape under overload is when its figures matter most, so it is answered
 * on the loop then rather than refused). */
static int metrics_on_worker(const struct pipeline *p, struct hresp *o, const char *rid, bool origin,
                             pipeline_done_fn done, void *ctx)
{
    struct metrics_job *m = malloc(sizeof *m);
    if (!m)
        return 0;
    *m = (struct metrics_job){.p = p, .o = o, .origin = origin, .done = done, .ctx = ctx};
    memcpy(m->rid, rid, sizeof m->rid);
    if (workers_submit(p->workers, run_metrics, m) == 0)
        return 1;
    free(m);
    return 0;
}

int pipeline_start(const struct pipeline *p, const struct hreq *r, struct hresp *o, pipeline_done_fn done,
                   void *ctx)
{
    memset(o, 0, sizeof *o);
    char rid[40];
    const char *origin = r->header(r->hctx, "Origin");
    if (r->unavailable) {
        struct api_response ar;
        api_unavailable(p->api, r->header(r->hctx, "Content-Type"), r->unavailable, &ar);
        from_api(o, &ar, origin != NULL);
        return 0;
    }
    if (r->too_large) {
        struct api_response ar;
        api_too_large(p->api, r->header(r->hctx, "Content-Type"), r->announced, &ar);
        o->status = (unsigned)ar.status;
        o->body = ar.body;
        o->body_len = ar.body_len;
        add(o, "Content-Type", ar.content_type);
        memcpy(rid, ar.request_id, sizeof rid);
        goto common;
    }
    api_request_id(rid);
    if (!strcmp(r->method, "GET") && !strcmp(r->path, "/healthcheck")) {
        o->status = 200;
        set_body(o, "{\"status\":\"ok\"}");
        add(o, "Content-Type", "application/json");
        goto common;
    }
    if (p->metrics && !strcmp(r->method, "GET") && !strcmp(r->path, "/metrics")) {
        if (done && p->workers && metrics_on_worker(p, o, rid, origin != NULL, done, ctx))
            return 1;
        pipeline_metrics(p, o);
        goto common;
    }
    if (console_wants(r->method, r->path)) {
        const char *type;
        o->status = console_serve(r->path, &o->body, &o->body_len, &type);
        add(o, "Content-Type", type);
        add(o, "Cache-Control", "no-cache");
        add(o, "Content-Security-Policy", CONSOLE_CSP);
        goto common;
    }
    if (!strcmp(r->method, "OPTIONS") && origin) {
        o->status = 200;
        set_body(o, "");
        add(o, "x-amzn-RequestId", rid);
        add(o, "Access-Control-Allow-Origin", "*");
        add(o, "Access-Control-Allow-Headers", r->header(r->hctx, "Access-Control-Request-Headers"));
        add(o, "Access-Control-Allow-Methods", r->header(r->hctx, "Access-Control-Request-Method"));
        add(o, "Access-Control-Max-Age", "172800");
        return 0;
    }
    if (p->test_clock && !strcmp(r->method, "POST") && !strcmp(r->path, "/_test/advance-clock")) {
        const char *q = r->query ? strstr(r->query, "ms=") : NULL;
        api_clock_advance(q ? strtoll(q + 3, NULL, 10) : 0);
        o->status = 200;
        set_body(o, "{}");
        goto common;
    }
    if (p->test_clock && !strcmp(r->method, "POST") && !strcmp(r->path, "/_test/stream")) {
        long n = query_num(r->query, "n", 10), size = query_num(r->query, "size", 64);
        o->producer = pipeline_test_producer(n < 0 ? 0 : n, size < 1 ? 1 : size > 65536 ? 65536 : size);
        o->status = 200;
        add(o, "Content-Type", "application/octet-stream");
        goto common;
    }
    if (strcmp(r->method, "POST")) {
        o->status = 403;
        set_body(o, "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be "
                    "authorized</Message>\n</AccessDeniedException>\n");
        goto common;
    }
    struct api_request req;
    api_request_of(&req, r->method, r->path, r->query, r->body, r->body_len, r->header, r->hctx);
    req.source_ip = r->peer;
    req.secure_transport = r->tls;
    if (!done) { /* pipeline_run: the API call may wait for its commit */
        struct api_response ar = {0};
        api_handle(p->api, &req, &ar);
        from_api(o, &ar, origin != NULL);
        return 0;
    }
    void (*post)(void *, void (*)(void *), void *) = p->post ? post_to_caller : NULL;
    if (p->workers && api_may_block(p->api, req.target)) {
        struct pending *pd = pending_copy(r);
        if (pd) {
            pd->o = o;
            pd->origin = origin != NULL;
            pd->done = done;
            pd->ctx = ctx;
            pd->p = p;
            pd->req.post = post;
            if (workers_submit(p->workers, run_on_worker, pd) == 0)
                return 1;
            free(pd);
        }
        struct api_response ar;
        api_unavailable(p->api, req.content_type,
                        "Too many requests are waiting to be served; retry the request.", &ar);
        from_api(o, &ar, origin != NULL);
        return 0;
    }
    req.post = post;
    struct pending *pd = malloc(sizeof *pd);
    if (!pd)
        abort();
    *pd = (struct pending){.o = o, .origin = origin != NULL, .done = done, .ctx = ctx, .p = p};
    if (api_handle_async(p->api, &req, &pd->ar, api_done, pd))
        return 1;
    from_api(o, &pd->ar, origin != NULL);
    free(pd);
    return 0;
common:
    add_common(o, rid, origin != NULL);
    return 0;
}

void pipeline_run(const struct pipeline *p, const struct hreq *r, struct hresp *o)
{
    pipeline_start(p, r, o, NULL, NULL);
}

void hresp_free(struct hresp *o)
{
    free(o->body);
    o->body = NULL;
    if (o->producer) {
        o->producer->close(o->producer, API_STREAM_SHUTDOWN);
        o->producer = NULL;
    }
}
