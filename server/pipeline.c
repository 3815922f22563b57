/* pipeline.c: the request pipeline's HTTP half, written once, in AWS's order:
 *
 *   0. budget / draining   503 ServiceUnavailable, retryable, before the body is buffered
 *   1. body size cap       413 before the body is buffered (the adapters stop reading)
 *   2. GET /healthcheck    200 once the server accepts requests
 *      GET /console[/...]  the web console's compiled-in files (console.c), unless --no-console
 *   3. CORS                Origin -> Access-Control-Allow-Origin; OPTIONS preflight answered here
 *   4. test hooks          POST /_test/advance-clock?ms=N and /_test/stream?n=N&size=S,
 *                          only with --test-clock
 *   5. method              anything but POST -> 403 AccessDeniedException (XML, as AWS)
 *   6. api_handle          content type, decode, X-Amz-Target, authentication, validation,
 *                          operation, encoding (see api/api.c)
 * Every answer carries x-amzn-RequestId and x-amz-id-2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "pipeline.h"

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

/* An API call that waits for its commit: what its completion needs. */
struct pending {
    struct api_response ar;
    struct hresp *o;
    bool origin;
    pipeline_done_fn done;
    void *ctx;
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
    struct api_request req = {
        .content_type = r->header(r->hctx, "Content-Type"),
        .target = r->header(r->hctx, "X-Amz-Target"),
        .authorization = r->header(r->hctx, "Authorization"),
        .amz_date = r->header(r->hctx, "X-Amz-Date"),
        .date = r->header(r->hctx, "Date"),
        .query = r->query,
        .body = r->body ? r->body : "",
        .body_len = r->body_len,
        .method = r->method,
        .path = r->path,
        .header = r->header,
        .hctx = r->hctx,
    };
    if (!done) { /* pipeline_run: the API call may wait for its commit */
        struct api_response ar = {0};
        api_handle(p->api, &req, &ar);
        from_api(o, &ar, origin != NULL);
        return 0;
    }
    struct pending *pd = malloc(sizeof *pd);
    if (!pd)
        abort();
    *pd = (struct pending){.o = o, .origin = origin != NULL, .done = done, .ctx = ctx};
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
