/* limits.c: Kinesis's throughput limits as token buckets, refilled continuously.
 *
 * Per shard: writes 1,000 records/s and 1 MiB/s; GetRecords 5 calls/s and 2 MiB/s;
 * GetShardIterator 5 calls/s. Per account: each control-plane operation's rate (ops.def).
 * A bucket holds one second of its rate, so short bursts pass as on AWS. Two byte buckets may
 * go into debt. Reads: a call is let through while the bucket is positive and its answer's size
 * is charged afterwards, so a 10 MiB answer blocks that shard's reads for about 5 s, as AWS
 * documents. Writes: a record larger than the bucket can ever hold (a stream's
 * MaxRecordSizeInKiB goes up to 10 MiB, the bucket holds 1 MiB) is admitted when the bucket is
 * full and leaves it that far below zero, so the shard's writes that follow wait until the
 * record is paid for: its average rate stays 1 MiB/s. Anything else needs its bytes in the
 * bucket.
 *
 * State lives in memory only (a restart refills every bucket). With --no-limits nothing here
 * runs: callers test `a->limits` first, so the hot path pays one branch.
 *
 * Front-ends sharing a store each enforce their share of every rate (limits_set_share: one
 * over the number of live front-ends, frontends.c), so behind a balancer that spreads requests
 * evenly the limits hold for the whole as AWS's do. Buckets hold one second of the shared
 * rate. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define WRITE_RECORDS 1000.0
#define WRITE_BYTES (1024.0 * 1024.0)
#define READ_CALLS 5.0
#define READ_BYTES (2.0 * 1024.0 * 1024.0)
#define ITERATOR_CALLS 5.0
#define TABLE 4096
#define STRIPES 64

struct bucket {
    double tokens;
    int64_t last_us;
};

struct meter {
    uint64_t log;
    struct bucket wrec, wbytes, rcalls, rbytes, iters;
    struct meter *next;
};

struct limits {
    double share; /* of every rate this process enforces (atomic; 1 alone) */
    pthread_mutex_t mu[STRIPES];
    struct meter *tab[TABLE];
    pthread_mutex_t ops_mu;
    struct bucket ops[64];
    double op_rate[64];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double share_of(struct limits *l)
{
    double v;
    __atomic_load(&l->share, &v, __ATOMIC_RELAXED);
    return v;
}

void limits_set_share(struct limits *l, double share)
{
    if (share > 0 && share <= 1)
        __atomic_store(&l->share, &share, __ATOMIC_RELAXED);
}

static void refill(struct bucket *b, double rate, int64_t t)
{
    if (b->last_us == 0) {
        b->tokens = rate; /* a fresh bucket is full: one second of rate */
    } else if (t > b->last_us) {
        b->tokens += (double)(t - b->last_us) * rate / 1e6;
        if (b->tokens > rate)
            b->tokens = rate;
    }
    b->last_us = t;
}

struct limits *limits_new(const double *op_rates, size_t nops)
{
    struct limits *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->share = 1.0;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&l->mu[i], NULL);
    pthread_mutex_init(&l->ops_mu, NULL);
    for (size_t i = 0; i < nops && i < 64; i++)
        l->op_rate[i] = op_rates[i];
    return l;
}

void limits_free(struct limits *l)
{
    if (!l)
        return;
    for (int i = 0; i < TABLE; i++) {
        struct meter *m = l->tab[i];
        while (m) {
            struct meter *n = m->next;
            free(m);
            m = n;
        }
    }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&l->mu[i]);
    pthread_mutex_destroy(&l->ops_mu);
    free(l);
}

/* The meter of log, with its stripe locked. */
static struct meter *meter(struct limits *l, uint64_t log, pthread_mutex_t **lock)
{
    uint64_t h = log * 0x9E3779B97F4A7C15ull;
    size_t slot = (size_t)(h >> 52) % TABLE;
    *lock = &l->mu[slot % STRIPES];
    pthread_mutex_lock(*lock);
    struct meter *m = l->tab[slot];
    while (m && m->log != log)
        m = m->next;
    if (!m) {
        m = calloc(1, sizeof *m);
        if (!m)
            abort();
        m->log = log;
        m->next = l->tab[slot];
        l->tab[slot] = m;
    }
    return m;
}

bool limits_write(struct limits *l, uint64_t log, size_t bytes)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    int64_t t = now_us();
    double share = share_of(l), cap = WRITE_BYTES * share;
    refill(&m->wrec, WRITE_RECORDS * share, t);
    refill(&m->wbytes, cap, t);
    /* a record over the bucket's capacity needs a full bucket and leaves it in debt */
    double need = (double)bytes < cap ? (double)bytes : cap;
    bool ok = m->wrec.tokens >= 1.0 && m->wbytes.tokens >= need;
    if (ok) {
        m->wrec.tokens -= 1.0;
        m->wbytes.tokens -= (double)bytes;
    }
    pthread_mutex_unlock(lock);
    return ok;
}

bool limits_read_call(struct limits *l, uint64_t log)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    int64_t t = now_us();
    double share = share_of(l);
    refill(&m->rcalls, READ_CALLS * share, t);
    refill(&m->rbytes, READ_BYTES * share, t);
    bool ok = m->rcalls.tokens >= 1.0 && m->rbytes.tokens > 0;
    if (ok)
        m->rcalls.tokens -= 1.0;
    pthread_mutex_unlock(lock);
    return ok;
}

void limits_read_bytes(struct limits *l, uint64_t log, size_t bytes)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    refill(&m->rbytes, READ_BYTES * share_of(l), now_us());
    m->rbytes.tokens -= (double)bytes;
    pthread_mutex_unlock(lock);
}

bool limits_iterator(struct limits *l, uint64_t log)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    refill(&m->iters, ITERATOR_CALLS * share_of(l), now_us());
    bool ok = m->iters.tokens >= 1.0;
    if (ok)
        m->iters.tokens -= 1.0;
    pthread_mutex_unlock(lock);
    return ok;
}

bool limits_op(struct limits *l, int op)
{
    if (op < 0 || op >= 64 || l->op_rate[op] <= 0)
        return true;
    pthread_mutex_lock(&l->ops_mu);
    refill(&l->ops[op], l->op_rate[op] * share_of(l), now_us());
    bool ok = l->ops[op].tokens >= 1.0;
    if (ok)
        l->ops[op].tokens -= 1.0;
    pthread_mutex_unlock(&l->ops_mu);
    return ok;
}
