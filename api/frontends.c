/* frontends.c: how many kinesd front-ends share the store, for the throughput limits.
 *
 * Model. Each front-end of a shared store (PostgreSQL) keeps a row "fe/<id>" holding the
 * wall-clock time it last wrote it, about once a second; a front-end counts the rows written
 * in the last LIVE_MS as the live front-ends and enforces 1/N of every limit (limits.c). A
 * front-end that dies stops refreshing its row and drops out of the count within LIVE_MS; the
 * maintenance leader deletes rows older than FORGET_MS. With an embedded store nothing here
 * writes: the share is 1.
 *
 * The share assumes a balancer that spreads requests evenly over the front-ends (round robin,
 * as docker/compose.yaml's HAProxy does); a shard whose traffic all goes through one front-end
 * gets that front-end's share only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BEAT_MS 1000
#define LIVE_MS 3500
#define FORGET_MS 60000

struct count {
    struct api *a;
    int64_t now;
    int live;
    char stale[16][40]; /* rows to forget */
    int nstale;
};

static int count_row(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct count *c = ctx;
    char t[32];
    if (vlen >= sizeof t)
        return 0;
    memcpy(t, val, vlen);
    t[vlen] = 0;
    int64_t at = strtoll(t, NULL, 10);
    if (c->now - at < LIVE_MS)
        c->live++;
    else if (c->now - at > FORGET_MS && c->nstale < 16 && klen < sizeof c->stale[0])
        snprintf(c->stale[c->nstale++], sizeof c->stale[0], "%.*s", (int)klen, key);
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
    if (now - a->beat_ms < BEAT_MS)
        return;
    a->beat_ms = now;
    char key[40], val[32];
    beat_key(a, key, sizeof key);
    int n = snprintf(val, sizeof val, "%" PRId64, now);
    struct store_row row = {key, STORE_ANY_VERSION, val, (size_t)n};
    if (store_meta_cas(a->store, &row, 1))
        return; /* the store is away: keep the share we have */
    struct count c = {.a = a, .now = now};
    if (store_meta_scan(a->store, "fe/", count_row, &c) || c.live < 1)
        return;
    if (a->limits)
        limits_set_share(a->limits, 1.0 / c.live);
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
