/* frontends.c: the kinesd front-ends sharing the store, and what they tell each other for the
 * throughput limits.
 *
 * Model. Each front-end of a shared store (PostgreSQL) keeps a row "fe/<id>" holding the
 * wall-clock time it last wrote it and its demand on every limit of the last second
 * (limits_demand: " r<log>=<records> b<log>=<bytes> ..."). While it or another front-end has
 * demand it writes and reads the rows every ROUND_MS (one write and one scan, on the
 * maintenance thread, never on a request's path); idle, once every BEAT_MS (every round for
 * LIVE_MS after it starts: front-ends started together count each other at once; one that
 * joins later counts the others at once and is counted within BEAT_MS). A front-end counts
 * the rows written in the last LIVE_MS as the live front-ends and grants itself its part of
 * every rate from their demands (limits.c documents the rule and its bound). A front-end that
 * dies stops refreshing its row and drops out within LIVE_MS; the maintenance leader deletes
 * rows older than FORGET_MS. With an embedded store nothing here writes: every rate is whole. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ROUND_MS 100 /* limits.c's SLOT_MS */
#define BEAT_MS 1000
#define LIVE_MS 3500
#define FORGET_MS 60000
#define ROW_MAX (32u << 10) /* a heartbeat row: the time and up to PUBLISH_MAX demands */

struct count {
    struct api *a;
    const char *self;
    int64_t now;
    int live;
    bool busy;          /* another front-end published demand */
    char stale[16][40]; /* rows to forget */
    int nstale;
};

static int count_row(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct count *c = ctx;
    char t[24];
    size_t tlen = 0;
    while (tlen < vlen && tlen < sizeof t - 1 && val[tlen] != ' ')
        tlen++;
    memcpy(t, val, tlen);
    t[tlen] = 0;
    int64_t at = strtoll(t, NULL, 10);
    if (c->now - at < LIVE_MS) {
        c->live++;
        bool self = strlen(c->self) == klen && !memcmp(key, c->self, klen);
        if (!self && tlen < vlen && c->a->limits) {
            limits_others_add(c->a->limits, val + tlen, vlen - tlen);
            c->busy = true;
        }
    } else if (c->now - at > FORGET_MS && c->nstale < 16 && klen < sizeof c->stale[0]) {
        snprintf(c->stale[c->nstale++], sizeof c->stale[0], "%.*s", (int)klen, key);
    }
    return 0;
}

static void beat_key(const struct api *a, char *key, size_t cap)
{
    snprintf(key, cap, "fe/%016" PRIx64, a->frontend_id);
}

void frontends_tick(struct api *a)
{
    if (!store_shared(a->store))
        return;
    int64_t now = clock_now_ms();
    if (now - a->round_ms < ROUND_MS)
        return;
    a->round_ms = now;
    char *val = malloc(ROW_MAX);
    if (!val)
        return;
    int n = snprintf(val, 24, "%" PRId64, now);
    size_t demand = a->limits ? limits_demand(a->limits, val + n, ROW_MAX - (size_t)n) : 0;
    if (!a->first_round_ms)
        a->first_round_ms = now;
    /* idle: once a second, but every round at first, so that a front-end that starts beside
     * others is counted by them within a round (its buckets are cold: a share each) */
    if (!demand && !a->demand_seen && now - a->beat_ms < BEAT_MS && now - a->first_round_ms > LIVE_MS) {
        free(val);
        return;
    }
    a->beat_ms = now;
    char key[40];
    beat_key(a, key, sizeof key);
    struct store_row row = {key, STORE_ANY_VERSION, val, (size_t)n + demand};
    int rc = store_meta_cas(a->store, &row, 1);
    free(val);
    if (rc)
        return; /* the store is away: keep the grants we have */
    struct count c = {.a = a, .self = key, .now = now};
    if (a->limits)
        limits_others_clear(a->limits);
    if (store_meta_scan(a->store, "fe/", count_row, &c) || c.live < 1)
        return;
    if (a->limits)
        limits_regrant(a->limits, c.live);
    a->demand_seen = demand || c.busy;
    if (store_lease(a->store, "maintenance") == 0)
        for (int i = 0; i < c.nstale; i++)
            store_meta_put(a->store, c.stale[i], NULL, 0);
}

void frontends_leave(struct api *a)
{
    if (!store_shared(a->store))
        return;
    char key[40];
    beat_key(a, key, sizeof key);
    store_meta_put(a->store, key, NULL, 0);
}
