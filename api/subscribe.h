/* subscribe.h: SubscribeToShard's subscriptions (subscribe.c): streaming answers pushed on
 * commit, with one timer thread for all of them (heartbeats, the end of a subscription, the
 * read rate), never a thread per subscription. */
#ifndef KINESD_SUBSCRIBE_H
#define KINESD_SUBSCRIBE_H

#include <stdint.h>

struct api;
struct api_ctx;

#define SUBSCRIBE_HEARTBEAT_MS 4000      /* an event at least this often while idle (clients wait 10 s) */
#define SUBSCRIBE_TAKEOVER_MS 5000       /* a new subscription takes over after this long */
#define SUBSCRIBE_CALL_MS 1000           /* one call per second per consumer and shard */
#define SUBSCRIBE_EVENT_RECORDS 10000    /* records per event */
#define SUBSCRIBE_EVENT_BYTES (2u << 20) /* record bytes per event */
#define SUBSCRIBE_RATE (2u << 20)        /* bytes per second per consumer and shard */

/* Start the timer thread. 0 or -1. subs_close ends it; every subscription must be closed by
 * then (the server closes its producers before api_close). */
int subs_open(struct api *a);
void subs_close(struct api *a);

/* A consumer was deregistered or a stream deleted: every subscription checks that its
 * consumer and stream still exist, and those whose do not end with ResourceNotFoundException. */
void subs_notify(struct api *a);

/* SubscribeToShard's handler (op_subscribe_to_shard.c validates, this runs). Returns
 * API_ANSWERED with c->resp holding the streaming answer, or -1 with the error recorded. */
int subs_subscribe(struct api_ctx *c);

#endif
