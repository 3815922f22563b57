/* http.c: the request pipeline's HTTP half, written once, in AWS's order:
 *
 *   1. body size cap       413 as soon as Content-Length (or the bytes received) exceed the
 *                          cap, before buffering the rest
 *   2. GET /healthcheck    200 once the server accepts requests
 *   3. CORS                Origin -> Access-Control-Allow-Origin; OPTIONS preflight answered here
 *   4. method              anything but POST -> 403 AccessDeniedException (api's raw form)
 *   5. api_handle          content type, decode, X-Amz-Target, authentication, validation,
 *                          operation, encoding (see api/api.c)
 * Every answer carries x-amzn-RequestId and x-amz-id-2.
 *
 * Threads: MHD_USE_THREAD_PER_CONNECTION. A PutRecord waits for its group commit, so each
 * connection needs a thread that may block; concurrent writers then share commits. */
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "http.h"

struct http {
    struct MHD_Daemon *d;
    struct api *api;
    int test_clock;
};

struct conn {
    char *body; /* owned; grows to the announced length */
    size_t len, cap;
    int too_large;
    uint64_t announced;
};

static void add_common(struct MHD_Response *r, const char *rid, struct MHD_Connection *c)
{
    MHD_add_response_header(r, "x-amzn-RequestId", rid);
    unsigned char raw[72];
    randombytes_buf(raw, sizeof raw);
    char id2[sizeof raw / 3 * 4 + 1];
    sodium_bin2base64(id2, sizeof id2, raw, sizeof raw, sodium_base64_VARIANT_ORIGINAL);
    MHD_add_response_header(r, "x-amz-id-2", id2);
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin")) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Expose-Headers",
                                "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,"
                                "x-amzn-ErrorMessage,Date");
    }
}

static enum MHD_Result send_api(struct MHD_Connection *c, struct api_response *ar)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(ar->body_len, ar->body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(ar->body);
        return MHD_NO;
    }
    if (ar->content_type)
        MHD_add_response_header(r, "Content-Type", ar->content_type);
    add_common(r, ar->request_id, c);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)ar->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    char rid[40];
    api_request_id(rid);
    add_common(r, rid, c);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *hdr(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* The raw query string of the request line, if any (MHD splits it into arguments). */
static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    char **q = cls;
    size_t old = *q ? strlen(*q) : 0, add = strlen(key) + (value ? strlen(value) + 1 : 0) + 2;
    char *n = realloc(*q, old + add);
    if (!n)
        return MHD_NO;
    snprintf(n + old, add, "%s%s%s%s", old ? "&" : "", key, value ? "=" : "", value ? value : "");
    *q = n;
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **ctx)
{
    (void)version;
    struct http *h = cls;
    struct conn *cn = *ctx;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        if (!cn)
            return MHD_NO;
        *ctx = cn;
        const char *cl = hdr(c, "Content-Length");
        if (cl) {
            cn->announced = strtoull(cl, NULL, 10);
            if (cn->announced > api_max_body(h->api))
                cn->too_large = 1;
        }
        if (cn->too_large) { /* refuse before reading any of the body */
            struct api_response ar;
            api_too_large(h->api, hdr(c, "Content-Type"), cn->announced, &ar);
            return send_api(c, &ar);
        }
        if (cn->announced) {
            cn->cap = cn->announced;
            cn->body = malloc(cn->cap + 1);
            if (!cn->body)
                return MHD_NO;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cn->too_large) {
            if (cn->len + *upload_size > api_max_body(h->api)) {
                cn->too_large = 1;
                cn->announced = cn->len + *upload_size;
            } else {
                if (cn->len + *upload_size > cn->cap) {
                    size_t ncap = (cn->len + *upload_size) * 2;
                    if (ncap > api_max_body(h->api))
                        ncap = api_max_body(h->api);
                    char *nb = realloc(cn->body, ncap + 1);
                    if (!nb)
                        return MHD_NO;
                    cn->body = nb;
                    cn->cap = ncap;
                }
                memcpy(cn->body + cn->len, upload, *upload_size);
                cn->len += *upload_size;
            }
        }
        if (cn->too_large) {
            /* answer now; MHD closes the connection instead of reading the rest */
            struct api_response ar;
            api_too_large(h->api, hdr(c, "Content-Type"), cn->announced, &ar);
            *upload_size = 0;
            return send_api(c, &ar);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->too_large) {
        struct api_response ar;
        api_too_large(h->api, hdr(c, "Content-Type"), cn->announced, &ar);
        return send_api(c, &ar);
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/healthcheck"))
        return send_text(c, 200, "{\"status\":\"ok\"}");
    if (!strcmp(method, "OPTIONS") && hdr(c, "Origin")) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        char rid[40];
        api_request_id(rid);
        MHD_add_response_header(r, "x-amzn-RequestId", rid);
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        const char *rh = hdr(c, "Access-Control-Request-Headers"),
                   *rm = hdr(c, "Access-Control-Request-Method");
        if (rh)
            MHD_add_response_header(r, "Access-Control-Allow-Headers", rh);
        if (rm)
            MHD_add_response_header(r, "Access-Control-Allow-Methods", rm);
        MHD_add_response_header(r, "Access-Control-Max-Age", "172800");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (h->test_clock && !strcmp(method, "POST") && !strcmp(url, "/_test/advance-clock")) {
        const char *ms = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ms");
        api_clock_advance(ms ? strtoll(ms, NULL, 10) : 0);
        return send_text(c, 200, "{}");
    }
    if (strcmp(method, "POST"))
        return send_text(c, 403,
                         "<AccessDeniedException>\n  <Message>Unable to determine service/operation name "
                         "to be authorized</Message>\n</AccessDeniedException>\n");
    char *query = NULL;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &query);
    struct api_request req = {
        .content_type = hdr(c, "Content-Type"),
        .target = hdr(c, "X-Amz-Target"),
        .authorization = hdr(c, "Authorization"),
        .amz_date = hdr(c, "X-Amz-Date"),
        .date = hdr(c, "Date"),
        .query = query,
        .body = cn->body ? cn->body : "",
        .body_len = cn->len,
    };
    struct api_response ar;
    api_handle(h->api, &req, &ar);
    free(query);
    return send_api(c, &ar);
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct conn *cn = *ctx;
    if (cn) {
        free(cn->body);
        free(cn);
        *ctx = NULL;
    }
}

int http_start(struct api *a, const char *host, uint16_t port, int test_clock, struct http **out)
{
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->api = a;
    h->test_clock = test_clock;
    struct sockaddr_in6 a6 = {0};
    struct sockaddr_in a4 = {0};
    struct sockaddr *sa;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (host && inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(port);
        sa = (struct sockaddr *)&a4;
    } else if (host && inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else if (!host || !strcmp(host, "localhost")) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(port);
        a4.sin_addr.s_addr = host ? htonl(INADDR_LOOPBACK) : htonl(INADDR_ANY);
        sa = (struct sockaddr *)&a4;
    } else {
        fprintf(stderr, "kinesd: --host must be an IP address or localhost: %s\n", host);
        free(h);
        return -1;
    }
    h->d = MHD_start_daemon(flags, port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!h->d) {
        fprintf(stderr, "kinesd: cannot listen on %s:%u\n", host ? host : "0.0.0.0", port);
        free(h);
        return -1;
    }
    *out = h;
    return 0;
}

void http_stop(struct http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}
