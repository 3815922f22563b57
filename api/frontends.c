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
 * rows older than FORGET_MS. With an embedded store nothing here writes: every rate is whole.
 *
 * The same rows carry what each front-end routed to the shards of on-demand streams in its last
 * second (streams_offered_publish: " h<log>=<records> v<log>=<bytes>"), so that the maintenance
 * leader, which decides on-demand splits, counts the writes that went through the others too.
 * Only rows written within OFFER_MS count: a front-end that died stops adding to them at once. */
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
#define OFFER_MS 1000       /* a row's on-demand counts are its last second's: no older */
#define OFFERS_MAX 512      /* shards of on-demand streams counted from the others' rows */

struct count {
    struct api *a;
    const char *self;
    int64_t now;
    int live;
    bool busy;          /* another front-end published demand */
    char stale[16][40]; /* rows to forget */
    int nstale;
    struct offer offers[OFFERS_MAX]; /* the others' on-demand counts, summed per log */
    size_t noffers;
};

/* Add a row's " h<log>=<records>" and " v<log>=<bytes>" entries to c->offers (others are
 * for limits.c). */
static void add_offers(struct count *c, const char *p, const char *end)
{
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *e = memchr(p, ' ', (size_t)(end - p));
        if (!e)
            e = end;
        char entry[64];
        if ((*p == 'h' || *p == 'v') && e - p > 1 && (size_t)(e - p) < sizeof entry) {
            memcpy(entry, p, (size_t)(e - p));
            entry[e - p] = 0;
            char *eq, *stop;
            uint64_t log = strtoull(entry + 1, &eq, 10);
            uint64_t v = *eq == '=' ? strtoull(eq + 1, &stop, 10) : 0;
            size_t i = 0;
            while (i < c->noffers && c->offers[i].log != log)
                i++;
            if (v && i == c->noffers && c->noffers < OFFERS_MAX)
                c->offers[c->noffers++] = (struct offer){.log = log};
            if (v && i < c->noffers) {
                if (entry[0] == 'h')
                    c->offers[i].recs += v;
                else
                    c->offers[i].bytes += v;
            }
        }
        p = e;
    }
}

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
        if (!self && tlen < vlen) {
            if (c->a->limits)
                limits_others_add(c->a->limits, val + tlen, vlen - tlen);
            if (c->now - at < OFFER_MS)
                add_offers(c, val + tlen, val + vlen);
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
    demand += streams_offered_publish(a, val + n + demand, ROW_MAX - (size_t)n - demand);
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
    struct count *c = calloc(1, sizeof *c);
    if (!c)
        return;
    *c = (struct count){.a = a, .self = key, .now = now};
    if (a->limits)
        limits_others_clear(a->limits);
    if (store_meta_scan(a->store, "fe/", count_row, c) || c->live < 1) {
        free(c);
        return;
    }
    if (a->limits)
        limits_regrant(a->limits, c->live);
    streams_offered_others(a, c->offers, c->noffers);
    a->demand_seen = demand || c->busy;
    if (store_lease(a->store, "maintenance") == 0)
        for (int i = 0; i < c->nstale; i++)
            store_meta_put(a->store, c->stale[i], NULL, 0);
    free(c);
}

void frontends_leave(struct api *a)
{
    if (!store_shared(a->store))
        return;
    char key[40];
    beat_key(a, key, sizeof key);
    store_meta_put(a->store, key, NULL, 0);
}
