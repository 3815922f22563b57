/* http.h: the HTTP front: its own listener, libmicrohttpd (HTTP/1.1) and nghttp2 (HTTP/2). */
#ifndef KINESD_HTTP_H
#define KINESD_HTTP_H

#include <stdint.h>

#include "api.h"

struct http;

/* Listen on host:port and serve requests through api. With test_clock, POST
 * /_test/advance-clock?ms=N moves the server's clock forward. *out owned by the caller until
 * http_stop. Returns 0 or -1 after printing why. */
int http_start(struct api *a, const char *host, uint16_t port, int test_clock, struct http **out);

/* Stop accepting, finish in-flight requests, release everything. */
void http_stop(struct http *h);

#endif
