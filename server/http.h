/* http.h: the HTTP front: a small fixed pool of epoll loops that own every connection
 * (accepting, sniffing, TLS, HTTP/1.1, HTTP/2, timeouts and budgets). */
#ifndef KINESD_HTTP_H
#define KINESD_HTTP_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"

struct http;

struct http_config {
    const char *host; /* borrowed during http_start */
    uint16_t port;
    bool test_clock;  /* POST /_test/advance-clock and /_test/stream */
    bool api_metrics; /* GET /metrics on this port too (off under --auth: see pipeline.c) */
    SSL_CTX *tls;     /* NULL: cleartext only; borrowed until http_stop */
    int loops;        /* event loop threads */
    long max_conns;   /* past it a new connection is accepted and closed at once */
    size_t budget;    /* bytes of buffered request bodies and unsent answers, process-wide */
    /* timeouts in ms; passing one closes the connection */
    int first_byte_ms; /* from accept to the first byte */
    int header_ms;     /* from a request's first byte to the end of its headers (and TLS handshake) */
    int idle_ms;       /* a keep-alive connection with nothing in flight */
    int body_ms;       /* a request body that makes no progress */
    int send_ms;       /* an answer the client does not read */
    int drain_ms;      /* shutdown: in-flight requests get this long to finish */
    int h2_streams;    /* concurrent HTTP/2 streams per connection */
    int workers;       /* threads for API calls that may block (server/workers.h) */
    long worker_queue; /* such calls waiting for a worker; past it: 503 */
};

/* Listen on cfg->host:port and serve requests through a. *out owned by the caller until
 * http_stop. Returns 0 or -1 after printing why. */
int http_start(struct api *a, const struct http_config *cfg, struct http **out);

/* Begin draining: stop accepting, answer new requests 503 with Connection: close, GOAWAY on
 * HTTP/2, finish in-flight requests. Safe from any thread, any number of times. */
void http_drain(struct http *h);

/* A non-blocking listening socket on host:port (an IP address or localhost), or -1 after
 * printing why. */
int http_listen_socket(const char *host, uint16_t port);

/* The request pipeline the loops run (valid until http_stop). */
struct pipeline;
const struct pipeline *http_pipeline(const struct http *h);

/* True once every loop has finished draining (every connection is closed). */
bool http_drained(struct http *h);

/* Drain if not yet, wait for the loops to finish, release everything. */
void http_stop(struct http *h);

#endif
