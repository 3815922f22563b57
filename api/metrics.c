/* metrics.c: the counters behind GET /metrics, and the access log's call site.
 *
 * Model. Two tables of entries, one per stream (keyed by uid) and one per shard (keyed by its
 * log id, uid << 24 | index), each an open-addressed array of pointers with a fixed capacity
 * (a power of two, at least twice the bound it serves). Entries hold relaxed atomic counters,
 * gauges and latency histograms. The data plane finds its entry without a lock (acquire loads
 * of slot and key; an entry is published whole); only a miss, once per stream or shard, takes
 * the table's mutex to insert it. Entries are never freed while the server runs: a stream or
 * shard found gone (or closed, or no longer enabled) is marked dead, its series disappear, and
 * its entry is reused for another key once it has been dead for RECYCLE_MS, by which time no
 * request that found it before can still be counting into it. So memory and cardinality are
 * bounded by the capacities; past them a new stream goes uncounted (kinesd_metrics_overflow).
 *
 * A scrape reads every counter with relaxed loads; when the registry's change lock is free at
 * once it also reconciles the tables with the registry (series for every live stream, even
 * before its first request; dead marks for the rest), otherwise it serves the last view. It
 * never waits for a lock the data plane takes. It walks each table's list of the entries made
 * (append-only, published with a release store of its count), not the slots, which are sized
 * for the shard limit (65536 by default), so its work follows the streams and shards that
 * exist; and it writes the text without printf, each stream's labels escaped once.
 *
 * Naming follows CloudWatch's Kinesis metrics one to one (PutRecords.ThrottledRecords ->
 * kinesis_put_records_throttled_records_total); latencies are histograms in seconds. Bytes are
 * data plus partition key, as the throughput limits count them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accesslog.h"
#include "internal.h"
#include "klog.h"

#define RECYCLE_MS 60000

/* ---- histograms ---- */

#define NBUCKETS 14
static const uint64_t bucket_ns[NBUCKETS] = {
    500000,    1000000,   2500000,   5000000,    10000000,   25000000,   50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
static const char *const bucket_le[NBUCKETS] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                                "0.1",    "0.25",  "0.5",    "1",     "2.5",  "5",     "10"};

struct hist {
    uint64_t b[NBUCKETS + 1]; /* the last: above every bound */
    uint64_t sum_ns;
};

static inline void add(uint64_t *p, uint64_t n) { __atomic_add_fetch(p, n, __ATOMIC_RELAXED); }
static inline uint64_t get(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static void hist_add(struct hist *h, uint64_t ns)
{
    int i = 0;
    while (i < NBUCKETS && ns > bucket_ns[i])
        i++;
    add(&h->b[i], 1);
    add(&h->sum_ns, ns);
}

/* ---- the series ---- */

/* Stream-level counters: enum, name, CloudWatch's definition. */
#define STREAM_COUNTERS(X)                                                                                  \
    X(IN_RECORDS, "kinesis_incoming_records_total",                                                         \
      "IncomingRecords: records successfully put (PutRecord and PutRecords).")                              \
    X(IN_BYTES, "kinesis_incoming_bytes_total",                                                             \
      "IncomingBytes: bytes (data and partition key) successfully put (PutRecord and PutRecords).")         \
    X(PR_SUCCESS, "kinesis_put_record_success_total", "PutRecord.Success: successful PutRecord calls.")     \
    X(PR_BYTES, "kinesis_put_record_bytes_total",                                                           \
      "PutRecord.Bytes: bytes put by successful PutRecord calls.")                                          \
    X(PRS_SUCCESS, "kinesis_put_records_success_total",                                                     \
      "PutRecords.Success: PutRecords calls that wrote at least one record.")                               \
    X(PRS_TOTAL, "kinesis_put_records_total_records_total",                                                 \
      "PutRecords.TotalRecords: records sent in PutRecords calls that reached the stream.")                 \
    X(PRS_OK, "kinesis_put_records_successful_records_total",                                               \
      "PutRecords.SuccessfulRecords: records written by PutRecords.")                                       \
    X(PRS_FAILED, "kinesis_put_records_failed_records_total",                                               \
      "PutRecords.FailedRecords: PutRecords entries rejected by an internal failure.")                      \
    X(PRS_THROTTLED, "kinesis_put_records_throttled_records_total",                                         \
      "PutRecords.ThrottledRecords: PutRecords entries rejected by throttling.")                            \
    X(PRS_BYTES, "kinesis_put_records_bytes_total", "PutRecords.Bytes: bytes written by PutRecords.")       \
    X(GR_SUCCESS, "kinesis_get_records_success_total", "GetRecords.Success: successful GetRecords calls.")  \
    X(GR_RECORDS, "kinesis_get_records_records_total",                                                      \
      "GetRecords.Records: records returned by GetRecords.")                                                \
    X(GR_BYTES, "kinesis_get_records_bytes_total", "GetRecords.Bytes: bytes returned by GetRecords.")       \
    X(READ_EXCEEDED, "kinesis_read_provisioned_throughput_exceeded_total",                                  \
      "ReadProvisionedThroughputExceeded: GetRecords calls throttled.")                                     \
    X(WRITE_EXCEEDED, "kinesis_write_provisioned_throughput_exceeded_total",                                \
      "WriteProvisionedThroughputExceeded: records rejected by throttling (PutRecord and PutRecords).")     \
    X(SUB_SUCCESS, "kinesis_subscribe_to_shard_success_total",                                              \
      "SubscribeToShard.Success: subscriptions started.")                                                   \
    X(SUB_RATE, "kinesis_subscribe_to_shard_rate_exceeded_total",                                           \
      "SubscribeToShard.RateExceeded: SubscribeToShard calls refused for calling more than once a second.") \
    X(SUB_EV_SUCCESS, "kinesis_subscribe_to_shard_event_success_total",                                     \
      "SubscribeToShardEvent.Success: events with records sent to subscribers.")                            \
    X(SUB_EV_RECORDS, "kinesis_subscribe_to_shard_event_records_total",                                     \
      "SubscribeToShardEvent.Records: records sent to subscribers.")                                        \
    X(SUB_EV_BYTES, "kinesis_subscribe_to_shard_event_bytes_total",                                         \
      "SubscribeToShardEvent.Bytes: bytes of records sent to subscribers.")

#define STREAM_GAUGES(X)                                                                                    \
    X(GR_AGE, "kinesis_get_records_iterator_age_milliseconds",                                              \
      "GetRecords.IteratorAgeMilliseconds: age of the last record of the stream's latest GetRecords call.") \
    X(SUB_EV_BEHIND, "kinesis_subscribe_to_shard_event_millis_behind_latest",                               \
      "SubscribeToShardEvent.MillisBehindLatest: of the stream's latest event.")

#define STREAM_HISTS(X)                                                                                \
    X(PR_LAT, "kinesis_put_record_latency_seconds", "PutRecord.Latency: time per PutRecord call.")     \
    X(PRS_LAT, "kinesis_put_records_latency_seconds", "PutRecords.Latency: time per PutRecords call.") \
    X(GR_LAT, "kinesis_get_records_latency_seconds", "GetRecords.Latency: time per GetRecords call.")

/* Shard-level (enhanced monitoring): enum, the ShardLevelMetrics bit, name, definition. */
#define BIT(m) (1u << STREAM_METRIC_##m)
#define SHARD_COUNTERS(X)                                                                                 \
    X(S_IN_BYTES, BIT(INCOMING_BYTES), "kinesis_shard_incoming_bytes_total",                              \
      "IncomingBytes per shard (enhanced monitoring).")                                                   \
    X(S_IN_RECORDS, BIT(INCOMING_RECORDS), "kinesis_shard_incoming_records_total",                        \
      "IncomingRecords per shard (enhanced monitoring).")                                                 \
    X(S_OUT_BYTES, BIT(OUTGOING_BYTES), "kinesis_shard_outgoing_bytes_total",                             \
      "OutgoingBytes: bytes returned by GetRecords, per shard (enhanced monitoring).")                    \
    X(S_OUT_RECORDS, BIT(OUTGOING_RECORDS), "kinesis_shard_outgoing_records_total",                       \
      "OutgoingRecords: records returned by GetRecords, per shard (enhanced monitoring).")                \
    X(S_WRITE_EXCEEDED, BIT(WRITE_EXCEEDED), "kinesis_shard_write_provisioned_throughput_exceeded_total", \
      "WriteProvisionedThroughputExceeded per shard (enhanced monitoring).")                              \
    X(S_READ_EXCEEDED, BIT(READ_EXCEEDED), "kinesis_shard_read_provisioned_throughput_exceeded_total",    \
      "ReadProvisionedThroughputExceeded per shard (enhanced monitoring).")

#define ENUM3(e, name, help) e,
#define ENUM4(e, bit, name, help) e,
enum { STREAM_COUNTERS(ENUM3) N_SC };
enum { STREAM_GAUGES(ENUM3) N_SG };
enum { STREAM_HISTS(ENUM3) N_SH };
enum { SHARD_COUNTERS(ENUM4) N_SHC };

static const struct series {
    const char *name, *help;
    uint32_t bit;
} stream_counters[] =
    {
#define ROW3(e, name, help) {name, help, 0},
        STREAM_COUNTERS(ROW3)},
  stream_gauges[] = {STREAM_GAUGES(ROW3)}, stream_hists[] = {STREAM_HISTS(ROW3)},
  shard_counters[] = {
#define ROW4(e, bit, name, help) {name, help, bit},
      SHARD_COUNTERS(ROW4)};
static const struct series shard_age = {"kinesis_shard_iterator_age_milliseconds",
                                        "IteratorAgeMilliseconds per shard (enhanced monitoring).",
                                        BIT(ITERATOR_AGE)};

/* ---- the tables ---- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Dead marks and their recycling go by this clock, which tests cannot move. */
static int64_t mono_ms(void) { return (int64_t)(mono_ns() / 1000000u); }

struct entry {
    uint64_t key;    /* 0 while being (re)initialised; atomic */
    int64_t dead_ms; /* 0: live; else when it was found gone (mono_ms); atomic */
};

struct mstream {
    struct entry e;
    char name[129];
    char account[16], region[64]; /* the stream's owner, for its labels */
    uint64_t c[N_SC];
    int64_t g[N_SG];
    struct hist h[N_SH];
};

struct mshard {
    struct entry e;
    uint32_t levels; /* the stream's ShardLevelMetrics when last seen */
    uint64_t c[N_SHC];
    int64_t age_ms;
};

struct table {
    struct entry **slots; /* atomic pointers */
    struct entry **all;   /* every entry made, in the order made: the first `used` are set */
    size_t mask, esize;
    size_t used;        /* entries made (atomic: published after all[used - 1]) */
    pthread_mutex_t mu; /* inserts, recycling and dead marks */
};

/* At most this many entries: the probe sequences stay short. */
static size_t table_max(const struct table *t) { return (t->mask + 1) / 4 * 3; }

static void table_init(struct table *t, size_t bound, size_t esize)
{
    size_t cap = 64;
    while (cap < 2 * bound)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    t->mask = cap - 1;
    t->all = calloc(table_max(t), sizeof *t->all);
    if (!t->slots || !t->all)
        abort();
    t->esize = esize;
    pthread_mutex_init(&t->mu, NULL);
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->used; i++)
        free(t->all[i]);
    free(t->all);
    free(t->slots);
    pthread_mutex_destroy(&t->mu);
}

/* Every entry made so far, live or dead, *n of them; no lock. A scrape walks these rather than
 * the slots: the capacity is sized for the shard limit, the entries for what exists. */
static struct entry *const *table_entries(struct table *t, size_t *n)
{
    *n = __atomic_load_n(&t->used, __ATOMIC_ACQUIRE);
    return t->all;
}

static size_t slot_of(const struct table *t, uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & t->mask;
}

/* The entry of key, live or dead, or NULL. No lock. */
static struct entry *table_find(struct table *t, uint64_t key)
{
    for (size_t i = slot_of(t, key), n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
        struct entry *e = __atomic_load_n(&t->slots[i], __ATOMIC_ACQUIRE);
        if (!e)
            return NULL;
        if (__atomic_load_n(&e->key, __ATOMIC_ACQUIRE) == key)
            return e;
    }
    return NULL;
}

/* The entry of key, inserted when missing (init fills a zeroed entry); NULL when the table is
 * at its bound. */
static struct entry *table_get(struct table *t, uint64_t key, void (*init)(struct entry *, const void *),
                               const void *arg, uint64_t *overflow)
{
    struct entry *e = table_find(t, key);
    if (e)
        return e;
    int64_t now = mono_ms();
    pthread_mutex_lock(&t->mu);
    e = table_find(t, key);
    if (e)
        goto out;
    size_t i = slot_of(t, key);
    struct entry *reuse = NULL;
    for (size_t n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
        struct entry *x = t->slots[i];
        if (!x)
            break;
        int64_t dead = __atomic_load_n(&x->dead_ms, __ATOMIC_RELAXED);
        if (dead && now - dead >= RECYCLE_MS) {
            reuse = x;
            break;
        }
    }
    if (reuse) {
        __atomic_store_n(&reuse->key, 0, __ATOMIC_RELEASE);
        memset((char *)reuse + sizeof *reuse, 0, t->esize - sizeof *reuse);
        init(reuse, arg);
        __atomic_store_n(&reuse->dead_ms, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&reuse->key, key, __ATOMIC_RELEASE);
        e = reuse;
    } else if (t->used < table_max(t)) {
        e = calloc(1, t->esize);
        if (!e)
            abort();
        init(e, arg);
        e->key = key;
        __atomic_store_n(&t->slots[i], e, __ATOMIC_RELEASE);
        t->all[t->used] = e;
        __atomic_store_n(&t->used, t->used + 1, __ATOMIC_RELEASE);
    } else {
        add(overflow, 1);
    }
out:
    pthread_mutex_unlock(&t->mu);
    return e;
}

static bool entry_live(const struct entry *e)
{
    return __atomic_load_n(&e->key, __ATOMIC_ACQUIRE) && !__atomic_load_n(&e->dead_ms, __ATOMIC_RELAXED);
}

static void mark_dead(struct table *t, struct entry *e)
{
    int64_t now = mono_ms();
    pthread_mutex_lock(&t->mu);
    if (!__atomic_load_n(&e->dead_ms, __ATOMIC_RELAXED))
        __atomic_store_n(&e->dead_ms, now > 0 ? now : 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&t->mu);
}

/* A dead entry whose key is live again (a shard whose metrics were disabled, then enabled)
 * shows again, its counters where they were. Until it is recycled its key is its own. */
static void revive(struct table *t, struct entry *e, uint64_t key)
{
    if (!__atomic_load_n(&e->dead_ms, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&t->mu);
    if (e->key == key) /* not recycled meanwhile */
        __atomic_store_n(&e->dead_ms, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&t->mu);
}

/* What a stream's entry is made of. */
struct stream_init {
    const char *name, *account, *region;
};

static void init_stream(struct entry *e, const void *arg)
{
    const struct stream_init *in = arg;
    struct mstream *s = (struct mstream *)e;
    snprintf(s->name, sizeof s->name, "%s", in->name);
    snprintf(s->account, sizeof s->account, "%s", in->account);
    snprintf(s->region, sizeof s->region, "%s", in->region);
}

static void init_shard(struct entry *e, const void *levels)
{
    ((struct mshard *)e)->levels = *(const uint32_t *)levels;
}

/* ---- the whole ---- */

#define NERR (KERR_COUNT + 2) /* every error, then "none" (success), then "other" */
#define ERR_NONE KERR_COUNT
#define ERR_OTHER (KERR_COUNT + 1)

struct metrics {
    int nops; /* index nops: requests that named no operation */
    const char *const *wire;
    const bool *kms;
    int op_put_record, op_put_records, op_get_records, op_subscribe;
    uint64_t *requests;   /* [nops + 1][NERR] */
    struct hist *latency; /* [nops + 1] */
    struct table streams, shards;
    uint64_t overflow;
    /* the registry as last reconciled (atomic) */
    uint64_t by_status[ST_GONE], open_shards;
    size_t last_len; /* the last exposition's length (atomic): the next one's buffer is sized by it */
};

static int op_index(const char *const *wire, const bool *kms, int nops, const char *name)
{
    for (int i = 0; i < nops; i++)
        if (!kms[i] && !strcmp(wire[i], name))
            return i;
    return -1;
}

struct metrics *metrics_open(const char *const *wire, const bool *kms, int nops, size_t streams_cap,
                             size_t shards_cap)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->nops = nops;
    m->wire = wire;
    m->kms = kms;
    m->op_put_record = op_index(wire, kms, nops, "PutRecord");
    m->op_put_records = op_index(wire, kms, nops, "PutRecords");
    m->op_get_records = op_index(wire, kms, nops, "GetRecords");
    m->op_subscribe = op_index(wire, kms, nops, "SubscribeToShard");
    m->requests = calloc((size_t)(nops + 1) * NERR, sizeof *m->requests);
    m->latency = calloc((size_t)nops + 1, sizeof *m->latency);
    if (!m->requests || !m->latency)
        abort();
    table_init(&m->streams, streams_cap, sizeof(struct mstream));
    table_init(&m->shards, shards_cap, sizeof(struct mshard));
    return m;
}

void metrics_close(struct metrics *m)
{
    if (!m)
        return;
    table_free(&m->streams);
    table_free(&m->shards);
    free(m->requests);
    free(m->latency);
    free(m);
}

uint64_t metrics_now_ns(void) { return mono_ns(); }

static struct mstream *stream_entry(struct metrics *m, uint64_t uid, const char *name, const char *account,
                                    const char *region)
{
    if (!uid || !name)
        return NULL;
    struct stream_init in = {name, account, region};
    return (struct mstream *)table_get(&m->streams, uid, init_stream, &in, &m->overflow);
}

static struct mshard *shard_entry(struct metrics *m, uint64_t uid, uint32_t shard, uint32_t levels)
{
    return (struct mshard *)table_get(&m->shards, log_id(uid, shard), init_shard, &levels, &m->overflow);
}

/* Shard-level counts of one shard, for the metrics enabled: counter `which` by n and, when
 * which2 >= 0, counter which2 by n2, with one look-up of the shard's entry. */
static void shard_add2(struct metrics *m, const struct metrics_call *k, uint32_t shard, int which, uint64_t n,
                       int which2, uint64_t n2)
{
    bool one = k->levels & shard_counters[which].bit,
         two = which2 >= 0 && k->levels & shard_counters[which2].bit;
    if (!one && !two)
        return;
    struct mshard *e = shard_entry(m, k->uid, shard, k->levels);
    if (!e)
        return;
    if (one)
        add(&e->c[which], n);
    if (two)
        add(&e->c[which2], n2);
}

static void shard_add(struct metrics *m, const struct metrics_call *k, uint32_t shard, int which, uint64_t n)
{
    shard_add2(m, k, shard, which, n, -1, 0);
}

static void count_puts(struct metrics *m, struct api_ctx *c, struct mstream *s, int rc)
{
    const struct put_state *ps = c->op_state;
    bool single = c->m.op == m->op_put_record;
    if (rc < 0) { /* PutRecord: its one record throttled; PutRecords: the whole call failed */
        if (single && c->err == KERR_THROUGHPUT_EXCEEDED) {
            add(&s->c[WRITE_EXCEEDED], 1);
            if (ps && ps->n == 1)
                shard_add(m, &c->m, ps->items[0].shard, S_WRITE_EXCEEDED, 1);
        }
        return;
    }
    if (!ps)
        return;
    uint64_t ok = 0, bytes = 0, throttled = 0, failed = 0;
    for (size_t i = 0; i < ps->n; i++) {
        const struct put_item *it = &ps->items[i];
        uint64_t b = it->pk_len + it->data_len;
        if (!it->err) {
            ok++;
            bytes += b;
            if (c->m.levels)
                shard_add2(m, &c->m, it->shard, S_IN_RECORDS, 1, S_IN_BYTES, b);
        } else if (it->err == KERR_THROUGHPUT_EXCEEDED) {
            throttled++;
            if (c->m.levels)
                shard_add(m, &c->m, it->shard, S_WRITE_EXCEEDED, 1);
        } else {
            failed++;
        }
    }
    add(&s->c[IN_RECORDS], ok);
    add(&s->c[IN_BYTES], bytes);
    add(&s->c[WRITE_EXCEEDED], throttled);
    if (single) {
        add(&s->c[PR_SUCCESS], ok);
        add(&s->c[PR_BYTES], bytes);
        return;
    }
    add(&s->c[PRS_SUCCESS], ok > 0);
    add(&s->c[PRS_TOTAL], ps->n);
    add(&s->c[PRS_OK], ok);
    add(&s->c[PRS_FAILED], failed);
    add(&s->c[PRS_THROTTLED], throttled);
    add(&s->c[PRS_BYTES], bytes);
}

static void count_reads(struct metrics *m, struct api_ctx *c, struct mstream *s, int rc)
{
    const struct metrics_call *k = &c->m;
    if (rc < 0) {
        if (c->err == KERR_THROUGHPUT_EXCEEDED) {
            add(&s->c[READ_EXCEEDED], 1);
            if (k->has_shard)
                shard_add(m, k, k->shard, S_READ_EXCEEDED, 1);
        }
        return;
    }
    add(&s->c[GR_SUCCESS], 1);
    add(&s->c[GR_RECORDS], k->records);
    add(&s->c[GR_BYTES], k->bytes);
    __atomic_store_n(&s->g[GR_AGE], k->age_ms, __ATOMIC_RELAXED);
    if (k->has_shard && k->levels) {
        shard_add2(m, k, k->shard, S_OUT_RECORDS, k->records, S_OUT_BYTES, k->bytes);
        if (k->levels & BIT(ITERATOR_AGE)) {
            struct mshard *e = shard_entry(m, k->uid, k->shard, k->levels);
            if (e)
                __atomic_store_n(&e->age_ms, k->age_ms, __ATOMIC_RELAXED);
        }
    }
}

/* The StreamName of a request that did not get as far as resolving it (a name of a valid
 * length only, so the line stays short), or NULL. */
static const char *named_stream(const struct kv *body)
{
    const struct kv *v = body && body->type == KV_OBJ ? kv_get(body, "StreamName") : NULL;
    return v && v->type == KV_STR && v->len <= 128 ? v->s : NULL;
}

void metrics_call_done(struct api_ctx *c, int rc, int status, size_t out_bytes)
{
    struct api *a = c->api;
    struct metrics *m = a->metrics;
    if (!m)
        return;
    uint64_t ns = c->m.t0_ns ? mono_ns() - c->m.t0_ns : 0;
    int op = c->m.op >= 0 && c->m.op < m->nops ? c->m.op : m->nops;
    int err = rc < 0 ? (int)c->err : status >= 400 ? ERR_OTHER : ERR_NONE;
    add(&m->requests[(size_t)op * NERR + (size_t)err], 1);
    hist_add(&m->latency[op], ns);
    if (c->m.uid && op < m->nops) {
        struct mstream *s = NULL;
        if (op == m->op_put_record || op == m->op_put_records) {
            if ((s = stream_entry(m, c->m.uid, c->stream_name, ctx_stream_account(c), c->region))) {
                count_puts(m, c, s, rc);
                hist_add(&s->h[op == m->op_put_record ? PR_LAT : PRS_LAT], ns);
            }
        } else if (op == m->op_get_records) {
            if ((s = stream_entry(m, c->m.uid, c->stream_name, ctx_stream_account(c), c->region))) {
                count_reads(m, c, s, rc);
                hist_add(&s->h[GR_LAT], ns);
            }
        } else if (op == m->op_subscribe) {
            if ((s = stream_entry(m, c->m.uid, c->stream_name, ctx_stream_account(c), c->region))) {
                if (rc >= 0 && status == 200)
                    add(&s->c[SUB_SUCCESS], 1);
                else if (rc < 0 && c->err == KERR_LIMIT_EXCEEDED)
                    add(&s->c[SUB_RATE], 1);
            }
        }
    }
    if (a->alog) {
        struct accesslog_entry e = {
            .time_ms = clock_now_ms(),
            .request_id = c->resp ? c->resp->request_id : NULL,
            .account = api_account(c),
            .operation = op < m->nops ? m->wire[op] : NULL,
            .stream = c->stream_name ? c->stream_name : named_stream(c->m.body),
            .status = status,
            .error = rc < 0 ? kerr_type(c->err) : NULL,
            .bytes_in = c->m.bytes_in,
            .bytes_out = out_bytes,
            .latency_ns = ns,
        };
        accesslog_write(a->alog, &e);
    }
}

void metrics_subscribe_event(struct api *a, uint64_t uid, const char *name, const char *account,
                             const char *region, uint32_t shard, uint64_t records, uint64_t bytes,
                             int64_t millis_behind)
{
    (void)shard;
    struct metrics *m = a->metrics;
    struct mstream *s = m ? stream_entry(m, uid, name, account, region) : NULL;
    if (!s)
        return;
    add(&s->c[SUB_EV_SUCCESS], 1);
    add(&s->c[SUB_EV_RECORDS], records);
    add(&s->c[SUB_EV_BYTES], bytes);
    __atomic_store_n(&s->g[SUB_EV_BEHIND], millis_behind, __ATOMIC_RELAXED);
}

/* ---- reconciling with the registry (change lock held) ---- */

struct uid_stream {
    uint64_t uid;
    const struct stream *s;
};

static int by_uid(const void *x, const void *y)
{
    uint64_t a = ((const struct uid_stream *)x)->uid, b = ((const struct uid_stream *)y)->uid;
    return a < b ? -1 : a > b;
}

static const struct stream *find_uid(const struct uid_stream *v, size_t n, uint64_t uid)
{
    struct uid_stream key = {uid, NULL};
    const struct uid_stream *hit = bsearch(&key, v, n, sizeof *v, by_uid);
    return hit ? hit->s : NULL;
}

static void reconcile(struct api *a, struct metrics *m, int64_t now)
{
    size_t n;
    struct stream **all = streams_list(a, &n);
    struct uid_stream *live = malloc((n ? n : 1) * sizeof *live);
    if (!live)
        return;
    size_t nlive = 0;
    uint64_t by_status[ST_GONE] = {0}, open_shards = 0;
    for (size_t i = 0; i < n; i++) {
        const struct stream *s = all[i];
        int st = stream_status(s, now);
        if (st == ST_GONE)
            continue;
        by_status[st]++;
        live[nlive++] = (struct uid_stream){s->uid, s};
        stream_entry(m, s->uid, s->name, s->account, s->region);
        uint32_t levels = stream_metrics(s);
        for (uint32_t j = 0; j < s->nshards; j++) {
            const struct shard *sh = &s->shards[j];
            if (!shard_open(sh))
                continue;
            open_shards++;
            if (levels) {
                struct mshard *e = shard_entry(m, s->uid, sh->index, levels);
                if (e) {
                    __atomic_store_n(&e->levels, levels, __ATOMIC_RELAXED);
                    revive(&m->shards, &e->e, log_id(s->uid, sh->index)); /* enabled again */
                }
            }
        }
    }
    qsort(live, nlive, sizeof *live, by_uid);
    size_t ne;
    struct entry *const *es = table_entries(&m->streams, &ne);
    for (size_t i = 0; i < ne; i++)
        if (entry_live(es[i]) && !find_uid(live, nlive, es[i]->key))
            mark_dead(&m->streams, es[i]);
    es = table_entries(&m->shards, &ne);
    for (size_t i = 0; i < ne; i++) {
        struct entry *e = es[i];
        if (!entry_live(e))
            continue;
        const struct stream *s = find_uid(live, nlive, e->key >> 24);
        const struct shard *sh = s ? shard_by_index((struct stream *)s, (uint32_t)(e->key & 0xffffff)) : NULL;
        uint32_t levels = s ? stream_metrics(s) : 0;
        if (!sh || !shard_open(sh) || !levels)
            mark_dead(&m->shards, e);
        else
            __atomic_store_n(&((struct mshard *)e)->levels, levels, __ATOMIC_RELAXED);
    }
    free(live);
    for (int i = 0; i < ST_GONE; i++)
        __atomic_store_n(&m->by_status[i], by_status[i], __ATOMIC_RELAXED);
    __atomic_store_n(&m->open_shards, open_shards, __ATOMIC_RELAXED);
}

/* ---- the exposition ---- */

/* The samples are written without printf (a scrape's main cost was formatting): numbers by
 * digit writers, each stream's labels escaped once per scrape and copied into its samples. */
static void put_u64(struct buf *b, uint64_t v)
{
    char d[20];
    buf_add(b, d, enc_u64(d, v));
}

static void put_i64(struct buf *b, int64_t v)
{
    if (v < 0)
        buf_addc(b, '-');
    put_u64(b, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

/* ns nanoseconds as seconds: "S.NNNNNNNNN". */
static void put_seconds(struct buf *b, uint64_t ns)
{
    char d[10];
    put_u64(b, ns / 1000000000u);
    d[0] = '.';
    enc_digits(d + 1, ns % 1000000000u, 9);
    buf_add(b, d, sizeof d);
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
    size_t nlen = strlen(name);
    buf_add(b, "# HELP ", 7);
    buf_add(b, name, nlen);
    buf_addc(b, ' ');
    buf_adds(b, help);
    buf_add(b, "\n# TYPE ", 8);
    buf_add(b, name, nlen);
    buf_addc(b, ' ');
    buf_adds(b, type);
    buf_addc(b, '\n');
}

/* A family of one unlabelled sample. */
static void gauge(struct buf *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "gauge", help);
    buf_adds(b, name);
    buf_addc(b, ' ');
    put_u64(b, v);
    buf_addc(b, '\n');
}

static void counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "counter", help);
    buf_adds(b, name);
    buf_addc(b, ' ');
    put_u64(b, v);
    buf_addc(b, '\n');
}

/* A sample of ns nanoseconds, in seconds. */
static void seconds(struct buf *b, const char *name, uint64_t ns)
{
    buf_adds(b, name);
    buf_addc(b, ' ');
    put_seconds(b, ns);
    buf_addc(b, '\n');
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static void label_value(struct buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_addc(b, '\\'), buf_addc(b, *v);
        else if (*v == '\n')
            buf_adds(b, "\\n");
        else
            buf_addc(b, *v);
    }
}

static int by_name(const void *x, const void *y)
{
    return strcmp((*(struct mstream *const *)x)->name, (*(struct mstream *const *)y)->name);
}

static int by_key(const void *x, const void *y)
{
    uint64_t a = (*(struct entry *const *)x)->key, b = (*(struct entry *const *)y)->key;
    return a < b ? -1 : a > b;
}

/* Live entries of t (sorted), malloc'd. */
static struct entry **collect(struct table *t, size_t *n, int (*cmp)(const void *, const void *))
{
    size_t ne;
    struct entry *const *es = table_entries(t, &ne);
    struct entry **v = malloc((ne ? ne : 1) * sizeof *v);
    if (!v)
        abort();
    *n = 0;
    for (size_t i = 0; i < ne; i++)
        if (entry_live(es[i]))
            v[(*n)++] = es[i];
    qsort(v, *n, sizeof *v, cmp);
    return v;
}

/* `{account="...",region="...",stream="..."`, escaped, without the closing brace. */
static void stream_labels(struct buf *b, const struct mstream *s)
{
    buf_adds(b, "{account=\"");
    label_value(b, s->account);
    buf_adds(b, "\",region=\"");
    label_value(b, s->region);
    buf_adds(b, "\",stream=\"");
    label_value(b, s->name);
    buf_addc(b, '"');
}

/* Labels of a scrape's series, written once: the k-th at text + off[k], off[k + 1] - off[k]
 * bytes. */
struct labels {
    struct buf text;
    size_t *off;
};

static const char *labels_at(const struct labels *l, size_t k, size_t *len)
{
    *len = l->off[k + 1] - l->off[k];
    return l->text.p + l->off[k];
}

static void labels_free(struct labels *l)
{
    buf_free(&l->text);
    free(l->off);
}

/* One sample: name, labels (without their closing brace), value. */
static void sample_head(struct buf *b, const char *name, size_t nlen, const char *labels, size_t llen)
{
    buf_add(b, name, nlen);
    buf_add(b, labels, llen);
    buf_add(b, "} ", 2);
}

static void sample_u64(struct buf *b, const char *name, size_t nlen, const char *labels, size_t llen,
                       uint64_t v)
{
    sample_head(b, name, nlen, labels, llen);
    put_u64(b, v);
    buf_addc(b, '\n');
}

static void sample_i64(struct buf *b, const char *name, size_t nlen, const char *labels, size_t llen,
                       int64_t v)
{
    sample_head(b, name, nlen, labels, llen);
    put_i64(b, v);
    buf_addc(b, '\n');
}

static void hist_write(struct buf *b, const char *name, const char *labels, size_t llen, const struct hist *h)
{
    size_t nlen = strlen(name);
    uint64_t cum = 0;
    for (int i = 0; i <= NBUCKETS; i++) {
        cum += get(&h->b[i]);
        buf_add(b, name, nlen);
        buf_add(b, "_bucket", 7);
        buf_add(b, labels, llen);
        if (llen > 1)
            buf_addc(b, ',');
        buf_adds(b, "le=\"");
        buf_adds(b, i < NBUCKETS ? bucket_le[i] : "+Inf");
        buf_add(b, "\"} ", 3);
        put_u64(b, cum);
        buf_addc(b, '\n');
    }
    buf_add(b, name, nlen);
    buf_add(b, "_sum", 4);
    buf_add(b, labels, llen);
    buf_add(b, "} ", 2);
    put_seconds(b, get(&h->sum_ns));
    buf_addc(b, '\n');
    buf_add(b, name, nlen);
    buf_add(b, "_count", 6);
    sample_u64(b, "", 0, labels, llen, cum);
}

static void write_streams(struct buf *b, struct mstream **v, size_t n)
{
    struct labels l = {BUF_INIT, malloc((n + 1) * sizeof *l.off)};
    if (!l.off)
        abort();
    for (size_t i = 0; i < n; i++) {
        l.off[i] = l.text.len;
        stream_labels(&l.text, v[i]);
    }
    l.off[n] = l.text.len;
    const char *lab;
    size_t llen;
    for (int k = 0; k < N_SC; k++) {
        const char *name = stream_counters[k].name;
        size_t nlen = strlen(name);
        family(b, name, "counter", stream_counters[k].help);
        for (size_t i = 0; i < n; i++) {
            lab = labels_at(&l, i, &llen);
            sample_u64(b, name, nlen, lab, llen, get(&v[i]->c[k]));
        }
        if (k == PRS_OK) { /* CloudWatch's older name of the same figure */
            static const char older[] = "kinesis_put_records_records_total";
            family(
                b, older, "counter",
                "PutRecords.Records: records written by PutRecords (the older name of SuccessfulRecords).");
            for (size_t i = 0; i < n; i++) {
                lab = labels_at(&l, i, &llen);
                sample_u64(b, older, sizeof older - 1, lab, llen, get(&v[i]->c[k]));
            }
        }
    }
    for (int k = 0; k < N_SG; k++) {
        const char *name = stream_gauges[k].name;
        size_t nlen = strlen(name);
        family(b, name, "gauge", stream_gauges[k].help);
        for (size_t i = 0; i < n; i++) {
            lab = labels_at(&l, i, &llen);
            sample_i64(b, name, nlen, lab, llen, __atomic_load_n(&v[i]->g[k], __ATOMIC_RELAXED));
        }
    }
    for (int k = 0; k < N_SH; k++) {
        family(b, stream_hists[k].name, "histogram", stream_hists[k].help);
        for (size_t i = 0; i < n; i++) {
            lab = labels_at(&l, i, &llen);
            hist_write(b, stream_hists[k].name, lab, llen, &v[i]->h[k]);
        }
    }
    labels_free(&l);
}

static void write_shards(struct buf *b, struct metrics *m, struct mshard **v, size_t n)
{
    /* each shard's labels and levels once: those of a shard whose stream has no live series
     * stay empty and show nowhere */
    struct labels l = {BUF_INIT, malloc((n + 1) * sizeof *l.off)};
    uint32_t *levels = malloc((n ? n : 1) * sizeof *levels);
    if (!l.off || !levels)
        abort();
    for (size_t i = 0; i < n; i++) {
        l.off[i] = l.text.len;
        levels[i] = __atomic_load_n(&v[i]->levels, __ATOMIC_RELAXED);
        struct mstream *s = (struct mstream *)table_find(&m->streams, v[i]->e.key >> 24);
        if (!s || !entry_live(&s->e)) {
            levels[i] = 0;
            continue;
        }
        char id[32];
        shard_id(id, (uint32_t)(v[i]->e.key & 0xffffff));
        stream_labels(&l.text, s);
        buf_adds(&l.text, ",shard=\"");
        buf_adds(&l.text, id);
        buf_addc(&l.text, '"');
    }
    l.off[n] = l.text.len;
    for (int k = 0; k <= N_SHC; k++) {
        const struct series *f = k < N_SHC ? &shard_counters[k] : &shard_age;
        size_t nlen = strlen(f->name), shown = 0, llen;
        for (size_t i = 0; i < n; i++) {
            if (!(levels[i] & f->bit))
                continue;
            if (!shown++)
                family(b, f->name, k < N_SHC ? "counter" : "gauge", f->help);
            const char *lab = labels_at(&l, i, &llen);
            if (k < N_SHC)
                sample_u64(b, f->name, nlen, lab, llen, get(&v[i]->c[k]));
            else
                sample_i64(b, f->name, nlen, lab, llen, __atomic_load_n(&v[i]->age_ms, __ATOMIC_RELAXED));
        }
    }
    labels_free(&l);
    free(levels);
}

static const char *const status_label[ST_GONE] = {"CREATING", "ACTIVE", "DELETING", "UPDATING"};

static void write_server(struct buf *b, struct api *a, struct metrics *m, const struct api_server_stats *st)
{
    family(b, "kinesd_requests_total", "counter",
           "API calls by service, operation and error type (none: answered without an error).");
    for (int op = 0; op <= m->nops; op++)
        for (int e = 0; e < NERR; e++) {
            uint64_t v = get(&m->requests[(size_t)op * NERR + (size_t)e]);
            if (!v)
                continue;
            buf_printf(b, "kinesd_requests_total{service=\"%s\",operation=\"%s\",error=\"%s\"} %" PRIu64 "\n",
                       op < m->nops && m->kms[op] ? "kms" : "kinesis", op < m->nops ? m->wire[op] : "unknown",
                       e == ERR_NONE    ? "none"
                       : e == ERR_OTHER ? "other"
                                        : kerr_type((enum kerr)e),
                       v);
        }
    family(b, "kinesd_request_duration_seconds", "histogram",
           "API call latency by operation, as the server saw it.");
    for (int op = 0; op <= m->nops; op++) {
        const struct hist *h = &m->latency[op];
        uint64_t any = 0;
        for (int i = 0; i <= NBUCKETS; i++)
            any += get(&h->b[i]);
        if (!any)
            continue;
        char labels[160];
        int len =
            snprintf(labels, sizeof labels, "{service=\"%s\",operation=\"%s\"",
                     op < m->nops && m->kms[op] ? "kms" : "kinesis", op < m->nops ? m->wire[op] : "unknown");
        hist_write(b, "kinesd_request_duration_seconds", labels, (size_t)len, h);
    }
    family(b, "kinesd_streams", "gauge", "Streams by status.");
    for (int i = 0; i < ST_GONE; i++)
        buf_printf(b, "kinesd_streams{status=\"%s\"} %" PRIu64 "\n", status_label[i],
                   __atomic_load_n(&m->by_status[i], __ATOMIC_RELAXED));
    gauge(b, "kinesd_open_shards", "Open shards across every stream.",
          __atomic_load_n(&m->open_shards, __ATOMIC_RELAXED));
    counter(b, "kinesd_metrics_overflow_total",
            "Streams or shards left uncounted: the metrics tables were full.", get(&m->overflow));
    if (a->alog) {
        counter(b, "kinesd_access_log_lines_total", "Lines written to the access log.",
                accesslog_lines(a->alog));
        counter(b, "kinesd_access_log_dropped_total", "Access log lines dropped: the writer fell behind.",
                accesslog_dropped(a->alog));
    }
    if (st) {
        gauge(b, "kinesd_connections", "Open client connections.", st->connections);
        counter(b, "kinesd_connections_accepted_total", "Client connections accepted.",
                st->connections_accepted);
        counter(b, "kinesd_connections_refused_total",
                "Client connections closed at once: past --max-connections.", st->connections_refused);
        gauge(b, "kinesd_buffered_bytes",
              "Request bodies and unsent answers held, against the memory budget.", st->buffered_bytes);
        gauge(b, "kinesd_memory_budget_bytes", "The memory budget (--memory-budget-mb).", st->budget_bytes);
    }
    struct store_stats ss;
    store_stats(a->store, &ss);
    family(b, "kinesd_wal_sync_seconds", "histogram",
           "Durable commits by latency: write-ahead log datasyncs (PostgreSQL: COMMITs).");
    uint64_t cum = 0;
    for (int i = 0; i <= STORE_SYNC_BUCKETS; i++) {
        cum += ss.sync_buckets[i];
        if (i < STORE_SYNC_BUCKETS)
            buf_printf(b, "kinesd_wal_sync_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                       (double)store_sync_bounds_ns[i] / 1e9, cum);
        else
            buf_printf(b, "kinesd_wal_sync_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    seconds(b, "kinesd_wal_sync_seconds_sum", ss.sync_ns_total);
    buf_printf(b, "kinesd_wal_sync_seconds_count %" PRIu64 "\n", cum);
    family(b, "kinesd_flush_duration_seconds", "summary", "Moves of committed records into the database.");
    seconds(b, "kinesd_flush_duration_seconds_sum", ss.flush_ns_total);
    buf_printf(b, "kinesd_flush_duration_seconds_count %" PRIu64 "\n", ss.flushes);
    family(b, "kinesd_checkpoint_duration_seconds", "summary",
           "Checkpoints: write-ahead log segments retired once the database held them.");
    seconds(b, "kinesd_checkpoint_duration_seconds_sum", ss.checkpoint_ns_total);
    buf_printf(b, "kinesd_checkpoint_duration_seconds_count %" PRIu64 "\n", ss.checkpoints);
    gauge(b, "kinesd_unflushed_bytes", "Committed record bytes not yet in the database.", ss.unflushed_bytes);
    gauge(b, "kinesd_wal_bytes", "Bytes in the write-ahead log's live segments.", ss.wal_bytes);
    gauge(b, "kinesd_db_bytes", "Size of the database file.", ss.db_bytes);
    gauge(b, "kinesd_db_free_pages", "Pages of the database file free for reuse (counted every few seconds).",
          ss.db_free_pages);
    gauge(b, "kinesd_db_page_size_bytes", "The database's page size.", ss.db_page_size);
    counter(b, "kinesd_db_write_transactions_total", "Database write transactions begun.", ss.db_write_txns);
    counter(b, "kinesd_retention_trims_total", "Trims of records past retention that deleted records.",
            ss.trims);
    counter(b, "kinesd_retention_trimmed_records_total", "Records deleted for being past retention.",
            ss.trimmed);
}

void metrics_stream_created(struct api *a, const struct stream *s)
{
    if (a->metrics)
        stream_entry(a->metrics, s->uid, s->name, s->account, s->region);
}

void metrics_sync(struct api *a) { reconcile(a, a->metrics, clock_now_ms()); }

void metrics_write(struct api *a, const struct api_server_stats *st, struct buf *b)
{
    struct metrics *m = a->metrics;
    if (streams_change_trylock(a)) {
        reconcile(a, m, clock_now_ms());
        streams_change_unlock(a);
    }
    size_t last = __atomic_load_n(&m->last_len, __ATOMIC_RELAXED), len0 = b->len;
    buf_grow(b, last + last / 8 + 1); /* room for the growth since, at once rather than doubling */
    size_t ns, nsh;
    struct entry **streams = collect(&m->streams, &ns, by_name);
    struct entry **shards = collect(&m->shards, &nsh, by_key);
    write_streams(b, (struct mstream **)streams, ns);
    write_shards(b, m, (struct mshard **)shards, nsh);
    write_server(b, a, m, st);
    free(streams);
    free(shards);
    __atomic_store_n(&m->last_len, b->len - len0, __ATOMIC_RELAXED);
}
