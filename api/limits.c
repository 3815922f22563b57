/* limits.c: Kinesis's throughput limits as token buckets, refilled continuously.
 *
 * Per shard: writes 1,000 records/s and 1 MiB/s; GetRecords 5 calls/s and 2 MiB/s;
 * GetShardIterator 5 calls/s. Per account: each control-plane operation's rate (ops.def), one
 * set of buckets per calling account (at most ACCOUNTS_MAX; the accounts past it share one set).
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
 * Front-ends sharing a store. Each keeps its own buckets, with rates it grants itself from
 * the demand every front-end publishes (frontends.c, no database round trip per request):
 * every SLOT_MS a front-end with demand writes, in its heartbeat row, each bucket's demand over
 * the last WINDOW_MS (tokens asked for, admitted or not), and reads the others'. For a bucket of
 * rate R with published demands d_1..d_N (D their sum) front-end i grants itself
 *     a_i = d_i * min(1, R / D) + max(0, R - D) / N
 * (R / N each while nobody has demand). So a front-end through which all of a shard's traffic
 * goes gets all of R (after one round; a cold start gets R / N), traffic split across
 * front-ends shares R in proportion to what each is asked, as one bucket would under
 * contention, and spare rate is split evenly so a front-end with little demand is not
 * refused. A bucket holds one second of its grant; a grant that grows refills at the new rate
 * (its tokens never jump), one that shrinks clamps them.
 *
 * Bound. The grants computed from one round of published demands sum to R, and their
 * capacities to one second of it. They differ only while front-ends work from different
 * rounds: a row is read at most one round after it is written, and a round's grants sum to R,
 * so two rounds in play admit at most 2 R for that while, an excess of at most R * 2 *
 * SLOT_MS / 1000 = 0.2 R per change of the demands (0.1 R on average when the rounds are out of
 * step by half a period), whatever N. Over T seconds a shard admits at most R (T + 1) plus that
 * per change of the shares in it: within 10 % of AWS's R (T + 1) while the balance of demand
 * between the front-ends changes less than once per T + 1 seconds on average. Only the first
 * PUBLISH_MAX buckets with demand are published (about 200 busy shards); beyond them a
 * front-end's demand is unknown to the others and the bound does not hold. */
#include <inttypes.h>
#include <stdio.h>
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
#define SLOT_MS 100 /* the rounds of published demand */
#define SLOTS 10    /* WINDOW_MS = SLOTS * SLOT_MS: the demand a round publishes */
#define PUBLISH_MAX 1024
#define ACCOUNTS_MAX 1024 /* accounts with control-plane buckets of their own */

/* a meter's buckets, and the letters that name them in a published row */
enum { B_WREC, B_WBYTES, B_RCALLS, B_RBYTES, B_ITERS, NB };
static const char bucket_letter[NB] = {'r', 'b', 'g', 'y', 'i'};
static const double bucket_rate[NB] = {WRITE_RECORDS, WRITE_BYTES, READ_CALLS, READ_BYTES, ITERATOR_CALLS};

struct bucket {
    double tokens;
    int64_t last_us;
};

/* One rate's demand: asked for in each of the last SLOTS slots, and the grant from it. */
struct demand {
    double want[SLOTS];
    int64_t slot[SLOTS]; /* the slot number want[i] counts */
    double published;    /* own demand as last published */
    double others;       /* the other front-ends' last published, summed */
    double grant;        /* fraction of the rate this front-end grants itself; < 0: cold */
};

struct meter {
    uint64_t log;
    struct bucket b[NB];
    struct demand d[NB];
    struct meter *next;
};

/* One account's control-plane buckets. */
struct account_ops {
    char account[16];
    struct bucket ops[64];
    struct demand op_d[64];
    struct account_ops *next;
};

struct limits {
    int live; /* front-ends sharing the store (atomic; 1 alone) */
    pthread_mutex_t mu[STRIPES];
    struct meter *tab[TABLE];
    pthread_mutex_t ops_mu;
    struct account_ops *accounts; /* under ops_mu; the first is the server's account */
    size_t naccounts;
    double op_rate[64];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The rate this front-end grants itself out of rate. */
static double granted(struct limits *l, const struct demand *d, double rate)
{
    if (d->grant >= 0)
        return d->grant * rate;
    return rate / __atomic_load_n(&l->live, __ATOMIC_RELAXED);
}

static void ask(struct demand *d, double amount, int64_t t)
{
    int64_t slot = t / (SLOT_MS * 1000);
    int i = (int)(slot % SLOTS);
    if (d->slot[i] != slot)
        d->slot[i] = slot, d->want[i] = 0;
    d->want[i] += amount;
}

static double window(const struct demand *d, int64_t t)
{
    int64_t slot = t / (SLOT_MS * 1000);
    double sum = 0;
    for (int i = 0; i < SLOTS; i++)
        if (d->slot[i] > slot - SLOTS)
            sum += d->want[i];
    return sum;
}

/* The grant (a fraction of the rate) from the published demands of a round. */
static void regrant(struct demand *d, double rate, int live)
{
    double total = d->published + d->others;
    if (total <= 0) {
        d->grant = -1; /* cold: an even split */
        return;
    }
    double a =
        d->published * (total > rate ? rate / total : 1.0) + (total < rate ? (rate - total) / live : 0);
    d->grant = a / rate;
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

static struct account_ops *account_new(const char *account)
{
    struct account_ops *a = calloc(1, sizeof *a);
    if (!a)
        abort();
    snprintf(a->account, sizeof a->account, "%s", account);
    for (int i = 0; i < 64; i++)
        a->op_d[i].grant = -1;
    return a;
}

/* The buckets of account (ops_mu held): its own, made on first use while there is room, else
 * the last one made (the accounts past the bound share it). */
static struct account_ops *account_ops(struct limits *l, const char *account)
{
    struct account_ops *a = l->accounts, *last = a;
    for (; a; last = a, a = a->next)
        if (!strcmp(a->account, account))
            return a;
    if (l->naccounts >= ACCOUNTS_MAX)
        return last;
    last->next = account_new(account);
    l->naccounts++;
    return last->next;
}

struct limits *limits_new(const char *account, const double *op_rates, size_t nops)
{
    struct limits *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->live = 1;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&l->mu[i], NULL);
    pthread_mutex_init(&l->ops_mu, NULL);
    for (size_t i = 0; i < nops && i < 64; i++)
        l->op_rate[i] = op_rates[i];
    l->accounts = account_new(account);
    l->naccounts = 1;
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
    for (struct account_ops *a = l->accounts, *n; a; a = n) {
        n = a->next;
        free(a);
    }
    free(l);
}

static size_t slot_of(uint64_t log) { return (size_t)((log * 0x9E3779B97F4A7C15ull) >> 52) % TABLE; }

/* The meter of log, with its stripe locked. */
static struct meter *meter(struct limits *l, uint64_t log, pthread_mutex_t **lock)
{
    size_t slot = slot_of(log);
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
        for (int i = 0; i < NB; i++)
            m->d[i].grant = -1;
        m->next = l->tab[slot];
        l->tab[slot] = m;
    }
    return m;
}

/* Refill bucket i of m at its grant, count amount as asked for; the grant (its capacity). */
static double take(struct limits *l, struct meter *m, int i, double amount, int64_t t)
{
    double rate = granted(l, &m->d[i], bucket_rate[i]);
    refill(&m->b[i], rate, t);
    ask(&m->d[i], amount, t);
    return rate;
}

bool limits_write(struct limits *l, uint64_t log, size_t bytes)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    int64_t t = now_us();
    take(l, m, B_WREC, 1.0, t);
    double cap = take(l, m, B_WBYTES, (double)bytes, t);
    /* a record over the bucket's capacity needs a full bucket and leaves it in debt */
    double need = (double)bytes < cap ? (double)bytes : cap;
    bool ok = m->b[B_WREC].tokens >= 1.0 && m->b[B_WBYTES].tokens >= need;
    if (ok) {
        m->b[B_WREC].tokens -= 1.0;
        m->b[B_WBYTES].tokens -= (double)bytes;
    }
    pthread_mutex_unlock(lock);
    return ok;
}

bool limits_read_call(struct limits *l, uint64_t log)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    int64_t t = now_us();
    take(l, m, B_RCALLS, 1.0, t);
    refill(&m->b[B_RBYTES], granted(l, &m->d[B_RBYTES], READ_BYTES), t);
    bool ok = m->b[B_RCALLS].tokens >= 1.0 && m->b[B_RBYTES].tokens > 0;
    if (ok)
        m->b[B_RCALLS].tokens -= 1.0;
    pthread_mutex_unlock(lock);
    return ok;
}

void limits_read_bytes(struct limits *l, uint64_t log, size_t bytes)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    take(l, m, B_RBYTES, (double)bytes, now_us());
    m->b[B_RBYTES].tokens -= (double)bytes;
    pthread_mutex_unlock(lock);
}

bool limits_iterator(struct limits *l, uint64_t log)
{
    pthread_mutex_t *lock;
    struct meter *m = meter(l, log, &lock);
    take(l, m, B_ITERS, 1.0, now_us());
    bool ok = m->b[B_ITERS].tokens >= 1.0;
    if (ok)
        m->b[B_ITERS].tokens -= 1.0;
    pthread_mutex_unlock(lock);
    return ok;
}

bool limits_op(struct limits *l, const char *account, int op)
{
    if (op < 0 || op >= 64 || l->op_rate[op] <= 0)
        return true;
    pthread_mutex_lock(&l->ops_mu);
    struct account_ops *a = account_ops(l, account);
    int64_t t = now_us();
    refill(&a->ops[op], granted(l, &a->op_d[op], l->op_rate[op]), t);
    ask(&a->op_d[op], 1.0, t);
    bool ok = a->ops[op].tokens >= 1.0;
    if (ok)
        a->ops[op].tokens -= 1.0;
    pthread_mutex_unlock(&l->ops_mu);
    return ok;
}

/* ---- front-ends sharing a store ---- */

/* One published entry: "<letter><log>=<demand>" for a shard's bucket, "o<op>=<demand>" for an
 * operation of the server's account, "o<op>:<account>=<demand>" for another account's. */
static size_t put_entry(char *out, size_t cap, size_t len, char letter, uint64_t id, double v)
{
    int n = snprintf(out + len, cap - len, " %c%" PRIu64 "=%.0f", letter, id, v < 1 ? 1 : v);
    return n > 0 && (size_t)n < cap - len ? len + (size_t)n : len;
}

size_t limits_demand(struct limits *l, char *out, size_t cap)
{
    int64_t t = now_us();
    size_t len = 0, entries = 0;
    if (cap)
        out[0] = 0;
    for (size_t slot = 0; slot < TABLE; slot++) {
        pthread_mutex_t *lock = &l->mu[slot % STRIPES];
        pthread_mutex_lock(lock);
        for (struct meter *m = l->tab[slot]; m; m = m->next)
            for (int i = 0; i < NB; i++) {
                struct demand *d = &m->d[i];
                d->published = entries < PUBLISH_MAX ? window(d, t) : 0;
                if (d->published > 0) {
                    size_t was = len;
                    len = put_entry(out, cap, len, bucket_letter[i], m->log, d->published);
                    if (len == was)
                        d->published = 0; /* no room: not published */
                    else
                        entries++;
                }
            }
        pthread_mutex_unlock(lock);
    }
    pthread_mutex_lock(&l->ops_mu);
    for (struct account_ops *a = l->accounts; a; a = a->next)
        for (int op = 0; op < 64; op++) {
            struct demand *d = &a->op_d[op];
            d->published = l->op_rate[op] > 0 ? window(d, t) : 0;
            if (d->published > 0) {
                size_t was = len;
                if (a == l->accounts) {
                    len = put_entry(out, cap, len, 'o', (uint64_t)op, d->published);
                } else {
                    int n = snprintf(out + len, cap - len, " o%d:%s=%.0f", op, a->account, d->published);
                    len = n > 0 && (size_t)n < cap - len ? len + (size_t)n : len;
                }
                if (len == was)
                    d->published = 0;
            }
        }
    pthread_mutex_unlock(&l->ops_mu);
    return len;
}

void limits_others_clear(struct limits *l)
{
    for (size_t slot = 0; slot < TABLE; slot++) {
        pthread_mutex_lock(&l->mu[slot % STRIPES]);
        for (struct meter *m = l->tab[slot]; m; m = m->next)
            for (int i = 0; i < NB; i++)
                m->d[i].others = 0;
        pthread_mutex_unlock(&l->mu[slot % STRIPES]);
    }
    pthread_mutex_lock(&l->ops_mu);
    for (struct account_ops *a = l->accounts; a; a = a->next)
        for (int op = 0; op < 64; op++)
            a->op_d[op].others = 0;
    pthread_mutex_unlock(&l->ops_mu);
}

void limits_others_add(struct limits *l, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *e = memchr(p, ' ', (size_t)(end - p));
        if (!e)
            e = end;
        char entry[64];
        if (e - p > 1 && (size_t)(e - p) < sizeof entry) {
            memcpy(entry, p, (size_t)(e - p));
            entry[e - p] = 0;
            char *eq, *stop;
            uint64_t id = strtoull(entry + 1, &eq, 10);
            const char *account = NULL; /* "o<op>:<account>=<v>": another account's operation */
            if (entry[0] == 'o' && *eq == ':') {
                account = eq + 1;
                if ((eq = strchr(eq, '=')))
                    *eq = 0; /* the account's end; the demand follows */
            }
            double v = eq && (account || *eq == '=') ? strtod(eq + 1, &stop) : 0;
            const char *at = memchr(bucket_letter, entry[0], NB);
            if (v > 0 && at) {
                pthread_mutex_t *lock;
                struct meter *m = meter(l, id, &lock);
                m->d[at - bucket_letter].others += v;
                pthread_mutex_unlock(lock);
            } else if (v > 0 && entry[0] == 'o' && id < 64) {
                pthread_mutex_lock(&l->ops_mu);
                struct account_ops *a = account ? account_ops(l, account) : l->accounts;
                a->op_d[id].others += v;
                pthread_mutex_unlock(&l->ops_mu);
            }
        }
        p = e;
    }
}

void limits_regrant(struct limits *l, int live)
{
    if (live < 1)
        live = 1;
    __atomic_store_n(&l->live, live, __ATOMIC_RELAXED);
    for (size_t slot = 0; slot < TABLE; slot++) {
        pthread_mutex_lock(&l->mu[slot % STRIPES]);
        for (struct meter *m = l->tab[slot]; m; m = m->next)
            for (int i = 0; i < NB; i++)
                regrant(&m->d[i], bucket_rate[i], live);
        pthread_mutex_unlock(&l->mu[slot % STRIPES]);
    }
    pthread_mutex_lock(&l->ops_mu);
    for (struct account_ops *a = l->accounts; a; a = a->next)
        for (int op = 0; op < 64; op++)
            regrant(&a->op_d[op], l->op_rate[op] > 0 ? l->op_rate[op] : 1, live);
    pthread_mutex_unlock(&l->ops_mu);
}
