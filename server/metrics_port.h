/* metrics_port.h: GET /metrics on a port of its own (--metrics-port), beside the API port. */
#ifndef KINESD_METRICS_PORT_H
#define KINESD_METRICS_PORT_H

#include <stdint.h>

struct pipeline;
struct metrics_port;

/* Listen on host:port and answer GET /metrics (and GET /healthcheck) from p, on a thread of
 * its own. *out owned by the caller until metrics_port_stop. Returns 0, or -1 after printing
 * why. p is borrowed until metrics_port_stop. */
int metrics_port_start(const struct pipeline *p, const char *host, uint16_t port, struct metrics_port **out);

/* Stop listening and join the thread (a scrape in progress finishes first). NULL is allowed. */
void metrics_port_stop(struct metrics_port *mp);

#endif
