/* engine.c: the pg engine: PostgreSQL as the shared store of any number of kinesd front-ends.
 *
 * Schema (version 2; kinesd_schema holds the version: an older one is migrated at open, a newer
 * one than this binary knows is refused, so a front-end of an older version does not start on
 * a migrated database; upgrade by stopping every front-end, then starting the new ones):
 *   kinesd_logs    (log bigint PRIMARY KEY, last bigint, ix bigint (the last index; NULL for a
 *                  log of version 1), dropped bool, sealed bool)
 *   kinesd_records (log bigint, pos bigint, rec bytea, PRIMARY KEY (log, pos))
 *   kinesd_rows    (key text PRIMARY KEY, version bigint, val bytea)
 *
 * Positions are decided in the database, in the transaction that inserts the records: the
 * committer takes every queued append at once (group commit) and runs one transaction that
 * moves each log's `last` forward (its row locked first, all of them in log order so that
 * front-ends writing the same shards take turns instead of deadlocking; then UPDATE ...
 * RETURNING, so positions stay strictly increasing), seals the
 * records with their positions (format.h), COPYs them in, NOTIFYs the logs, and commits;
 * the appends are reported only once COMMIT returned (synchronous_commit as the server has
 * it, on by default). A lost connection reports STORE_UNAVAILABLE (also when COMMIT was sent
 * and no answer came: nothing is acknowledged that is not known to be committed); the next
 * call reconnects: RECONNECT_MS after a failed attempt, twice as long after each further one,
 * up to RECONNECT_MAX_MS (a database that is down is not asked 5 times a second by every
 * connection of every front-end); once any connection of this front-end gets through, the
 * others try again at their next call, so reads do not fail for seconds after writes resume.
 *
 * A dropped or sealed log row (read under its lock) refuses every append that writes it, so an
 * append routed by another front-end's older layout fails whole (STORE_NOT_FOUND /
 * STORE_CONFLICT) instead of landing in a closed shard; a refused append takes no positions,
 * so a log's last position is always its last record's. Reads run one statement (one snapshot) on a
 * connection of a small pool. Watches are local waiters woken by this process's commits and by LISTEN
 * (kinesd_logs), so a write through any front-end wakes a SubscribeToShard here; row changes arrive the same
 * way (kinesd_rows) and go to store_rows_changed. Leases are advisory locks held on a connection of their
 * own.
 *
 * Threads: one committer (its own connection), one listener (its own), the callers' (the pool
 * and the lease connection, each under its mutex). Locks: mu (the queue), pool_mu, lease_mu,
 * the watch list's; none is held across a query except a pool slot's or the lease connection's own. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../engine.h"
#include "../format.h"
#include "../watch.h"
#include "klog.h"

#define SCHEMA_VERSION 2
#define POOL 4
#define BATCH_BYTES (16u << 20)
#define DEFAULT_UNFLUSHED (256ull << 20)
#define DROP_BATCH 4096
#define RECONNECT_MS 200
#define RECONNECT_MAX_MS 3200
#define NOTIFY_MAX 7000 /* payload bytes per NOTIFY (PostgreSQL's limit is 8000) */
#define MAX_LEASES 8

struct job {
    struct store_batch *batches;
    size_t nb, nrec, bytes;
    store_done_fn done;
    void *arg;
    int rc;
    struct job *next;
};

struct conn {
    PGconn *c;
    int64_t tried_ms; /* last connection attempt */
    int wait_ms;      /* before the next one: 0 after a success */
};

struct pg {
    char *conninfo;
    int64_t reached_ms;             /* when a connection last succeeded (atomic): the backoff's end */
    const struct store_keyring *kr; /* the records' data keys (NULL: not encrypted) */
    struct store *owner;
    uint64_t max_unflushed;
    uint64_t queued; /* atomic: bytes queued or being committed */

    pthread_mutex_t mu;
    pthread_cond_t work;
    struct job *head, *tail;
    bool closing;
    pthread_t committer;
    struct conn wconn;

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    struct conn pool[POOL];
    bool busy[POOL];

    pthread_t listener;
    struct conn lconn;
    int wake[2];    /* wakes the listener to stop */
    bool listening; /* under mu: open waits for the first LISTEN */
    pthread_cond_t listen_cv;

    pthread_mutex_t lease_mu;
    struct conn lease;
    char held[MAX_LEASES][64];
    int nheld;

    struct watchlist watches;

    uint64_t commits, commit_ns;                     /* atomic */
    uint64_t commit_buckets[STORE_SYNC_BUCKETS + 1]; /* atomic */
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- connections ---- */

/* A usable connection in *k, connecting (again) if needed, with the backoff of the header.
 * Returns 0 or STORE_UNAVAILABLE. */
static int conn_ready(struct pg *p, struct conn *k)
{
    if (k->c && PQstatus(k->c) == CONNECTION_OK)
        return 0;
    int64_t t = now_ms();
    /* backing off, unless another connection got through since this one last tried: the
     * database is back, and this connection's next call must not fail for its own old wait */
    if (k->tried_ms && t - k->tried_ms < k->wait_ms &&
        __atomic_load_n(&p->reached_ms, __ATOMIC_RELAXED) <= k->tried_ms)
        return STORE_UNAVAILABLE;
    k->tried_ms = t;
    if (k->c)
        PQfinish(k->c);
    k->c = PQconnectdb(p->conninfo);
    if (PQstatus(k->c) != CONNECTION_OK) {
        klog(KLOG_WARN, "pg: %s", PQerrorMessage(k->c));
        PQfinish(k->c);
        k->c = NULL;
        k->wait_ms = k->wait_ms ? (k->wait_ms * 2 < RECONNECT_MAX_MS ? k->wait_ms * 2 : RECONNECT_MAX_MS)
                                : RECONNECT_MS;
        return STORE_UNAVAILABLE;
    }
    k->wait_ms = 0;
    __atomic_store_n(&p->reached_ms, t, __ATOMIC_RELAXED);
    PQclear(PQexec(k->c, "SET client_min_messages = warning"));
    return 0;
}

/* A result's status as a STORE_* code: connection failures are UNAVAILABLE, a full disk FULL,
 * a serialization failure BUSY (retry), a duplicate position CORRUPT. */
static int res_rc(PGconn *c, PGresult *r)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN)
        return 0;
    const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!code || PQstatus(c) != CONNECTION_OK || !strncmp(code, "08", 2) || !strncmp(code, "57P", 3))
        return STORE_UNAVAILABLE;
    klog(KLOG_WARN, "pg: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    if (!strcmp(code, "53100"))
        return STORE_FULL;
    if (!strcmp(code, "40001") || !strcmp(code, "40P01") || !strcmp(code, "55P03"))
        return STORE_BUSY;
    if (!strcmp(code, "23505"))
        return STORE_CORRUPT;
    return STORE_IO;
}

/* Run a statement without parameters; returns a STORE_* code. */
static int exec0(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int rc = res_rc(c, r);
    PQclear(r);
    return rc;
}

/* Parameters in binary: 64-bit integers and byte strings. */
struct params {
    const char *v[6];
    int len[6], fmt[6];
    Oid type[6];
    char buf[6][8];
    int n;
};

static void p_i64(struct params *q, uint64_t x)
{
    int i = q->n++;
    for (int b = 7; b >= 0; b--, x >>= 8)
        q->buf[i][b] = (char)(x & 0xFF);
    q->v[i] = q->buf[i];
    q->len[i] = 8;
    q->fmt[i] = 1;
    q->type[i] = 20; /* int8 */
}

static void p_bytes(struct params *q, const void *v, size_t len, Oid type)
{
    int i = q->n++;
    q->v[i] = v;
    q->len[i] = (int)len;
    q->fmt[i] = 1;
    q->type[i] = type; /* 17 bytea, 25 text */
}

static PGresult *execp(PGconn *c, const char *sql, const struct params *q)
{
    return PQexecParams(c, sql, q->n, q->type, q->v, q->len, q->fmt, 1);
}

static uint64_t get_i64(const PGresult *r, int row, int col)
{
    const unsigned char *b = (const unsigned char *)PQgetvalue(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static bool get_bool(const PGresult *r, int row, int col) { return PQgetvalue(r, row, col)[0] != 0; }

/* A pool connection for one call, and its return. */
static int pool_take(struct pg *p, int *slot)
{
    pthread_mutex_lock(&p->pool_mu);
    for (;;) {
        for (int i = 0; i < POOL; i++)
            if (!p->busy[i]) {
                p->busy[i] = true;
                pthread_mutex_unlock(&p->pool_mu);
                *slot = i;
                int rc = conn_ready(p, &p->pool[i]);
                if (rc) {
                    pthread_mutex_lock(&p->pool_mu);
                    p->busy[i] = false;
                    pthread_cond_signal(&p->pool_cv);
                    pthread_mutex_unlock(&p->pool_mu);
                }
                return rc;
            }
        pthread_cond_wait(&p->pool_cv, &p->pool_mu);
    }
}

static void pool_give(struct pg *p, int slot)
{
    pthread_mutex_lock(&p->pool_mu);
    p->busy[slot] = false;
    pthread_cond_signal(&p->pool_cv);
    pthread_mutex_unlock(&p->pool_mu);
}

/* ---- schema ---- */

static const char *const schema_v1 =
    "CREATE TABLE kinesd_logs (log bigint PRIMARY KEY, last bigint NOT NULL DEFAULT 0,"
    " dropped boolean NOT NULL DEFAULT false, sealed boolean NOT NULL DEFAULT false);"
    "CREATE TABLE kinesd_records (log bigint NOT NULL, pos bigint NOT NULL, rec bytea NOT NULL,"
    " PRIMARY KEY (log, pos));"
    "ALTER TABLE kinesd_records ALTER COLUMN rec SET STORAGE EXTERNAL;"
    "CREATE TABLE kinesd_rows (key text PRIMARY KEY, version bigint NOT NULL, val bytea NOT NULL);"
    "INSERT INTO kinesd_schema (id, version) VALUES (1, 1);";

/* Version 2: each log's last index (store.h; 0 until its first record takes its position as
 * its index). A log from version 1 has none (NULL): its next record's index is one above its
 * last position, above every index its records were read with (their positions). */
static const char *const schema_v2 = "ALTER TABLE kinesd_logs ADD COLUMN ix bigint;"
                                     "ALTER TABLE kinesd_logs ALTER COLUMN ix SET DEFAULT 0;"
                                     "UPDATE kinesd_schema SET version = 2;";

/* Create the schema, or check the one there: one front-end at a time (an advisory lock). */
static int migrate(struct pg *p, PGconn *c)
{
    int rc = exec0(c, "BEGIN");
    if (!rc)
        rc = exec0(c, "SELECT pg_advisory_xact_lock(7236445881117102180)");
    if (!rc)
        rc = exec0(c, "CREATE TABLE IF NOT EXISTS kinesd_schema (id int PRIMARY KEY CHECK (id = 1),"
                      " version int NOT NULL)");
    PGresult *r = rc ? NULL : PQexec(c, "SELECT version FROM kinesd_schema");
    if (!rc && (rc = res_rc(c, r)) == 0) {
        int have = PQntuples(r) ? (int)strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
        if (have > SCHEMA_VERSION) {
            klog(KLOG_ERROR, "pg: the database has schema version %d; this kinesd knows up to %d", have,
                 SCHEMA_VERSION);
            rc = STORE_NEWER;
        } else {
            if (have == 0)
                rc = exec0(c, schema_v1);
            if (!rc && have < 2)
                rc = exec0(c, schema_v2);
        }
    }
    PQclear(r);
    (void)p;
    if (!rc)
        rc = exec0(c, "COMMIT");
    else
        exec0(c, "ROLLBACK");
    return rc;
}

/* ---- committing ---- */

/* One log's share of a group: its batches in order. */
struct group {
    uint64_t log, floor, n, first;
    uint64_t first_ix, ix; /* the first index it took; the next one to hand out */
    int rc;
};

static void put16(char **o, uint16_t v)
{
    (*o)[0] = (char)(v >> 8);
    (*o)[1] = (char)v;
    *o += 2;
}
static void put32(char **o, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        (*o)[i] = (char)(v & 0xFF);
    *o += 4;
}
static void put64(char **o, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        (*o)[i] = (char)(v & 0xFF);
    *o += 8;
}

static struct group *group_of(struct group *g, size_t ng, uint64_t log)
{
    for (size_t i = 0; i < ng; i++) /* groups are few (the shards one request writes) */
        if (g[i].log == log)
            return &g[i];
    return NULL;
}

/* Append a decimal list "a,b,c" of logs to a NOTIFY payload buffer. */
static int notify_logs(PGconn *c, const struct group *g, size_t ng)
{
    char buf[NOTIFY_MAX + 32];
    size_t len = 0;
    for (size_t i = 0; i <= ng; i++) {
        if (i == ng || len > NOTIFY_MAX) {
            if (!len)
                break;
            struct params q = {.n = 0};
            p_bytes(&q, buf, len, 25);
            PGresult *r = execp(c, "SELECT pg_notify('kinesd_logs', $1)", &q);
            int rc = res_rc(c, r);
            PQclear(r);
            if (rc)
                return rc;
            len = 0;
            if (i == ng)
                break;
        }
        if (g[i].rc)
            continue;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%" PRIu64 ":%" PRIu64, len ? "," : "",
                                g[i].log, g[i].first + g[i].n - 1);
    }
    return 0;
}

/* Commit a chain of jobs in one transaction. Returns 0 (jobs' rc say which failed) or the
 * error for all of them. On success the groups hold each log's first position. */
static int commit_jobs(struct pg *p, struct job *jobs, struct group **out, size_t *nout)
{
    int rc = conn_ready(p, &p->wconn);
    if (rc)
        return rc;
    PGconn *c = p->wconn.c;
    size_t nb = 0, nrec = 0, bytes = 0;
    for (struct job *j = jobs; j; j = j->next) {
        nb += j->nb;
        nrec += j->nrec;
        bytes += j->bytes;
    }
    struct group *g = calloc(nb, sizeof *g);
    size_t ng = 0;
    /* arrays in text for unnest: "{1,2}" */
    size_t cap = 24 * nb + 8;
    char *logs = malloc(cap), *ns = malloc(cap), *floors = malloc(cap);
    char *copy = malloc(19 + 2 + nrec * (2 + 12 + 12 + 4) + bytes + 2);
    if (!g || !logs || !ns || !floors || !copy) {
        rc = STORE_NOMEM;
        goto out;
    }
    for (struct job *j = jobs; j; j = j->next)
        for (size_t b = 0; b < j->nb; b++) {
            struct group *x = group_of(g, ng, j->batches[b].log);
            if (!x) {
                x = &g[ng++];
                x->log = j->batches[b].log;
            }
            x->n += j->batches[b].n;
            if (j->batches[b].floor > x->floor)
                x->floor = j->batches[b].floor;
        }
    size_t ll = 0;
    for (size_t i = 0; i < ng; i++)
        ll += (size_t)snprintf(logs + ll, cap - ll, "%s%" PRIu64, i ? "," : "{", g[i].log);
    snprintf(logs + ll, cap - ll, "}");

    if ((rc = exec0(c, "BEGIN")))
        goto out;
    struct params q = {.n = 0};
    p_bytes(&q, logs, strlen(logs), 25);
    PGresult *r = execp(
        c, "INSERT INTO kinesd_logs (log) SELECT unnest($1::text::bigint[]) ON CONFLICT DO NOTHING", &q);
    rc = res_rc(c, r);
    PQclear(r);
    if (rc)
        goto rollback;
    /* the logs' rows locked in one order, the same for every front-end: transactions that
     * write the same shards take turns instead of deadlocking; a dropped (NOT_FOUND) or sealed
     * (CONFLICT) one refuses the jobs that write it, whole */
    r = execp(c,
              "SELECT log, dropped, sealed FROM kinesd_logs WHERE log = ANY($1::text::bigint[])"
              " ORDER BY log FOR UPDATE",
              &q);
    if ((rc = res_rc(c, r))) {
        PQclear(r);
        goto rollback;
    }
    for (int t = 0; t < PQntuples(r); t++) {
        struct group *x = group_of(g, ng, get_i64(r, t, 0));
        if (x)
            x->rc = get_bool(r, t, 1) ? STORE_NOT_FOUND : get_bool(r, t, 2) ? STORE_CONFLICT : 0;
    }
    PQclear(r);
    /* positions only for the records that are written: a refused job takes none, so a log's
     * last position is always its last record's (a closed shard's end is where its records end) */
    for (size_t i = 0; i < ng; i++)
        g[i].n = g[i].floor = 0;
    for (struct job *j = jobs; j; j = j->next) {
        for (size_t b = 0; b < j->nb && !j->rc; b++)
            j->rc = group_of(g, ng, j->batches[b].log)->rc;
        for (size_t b = 0; b < j->nb && !j->rc; b++) {
            struct group *x = group_of(g, ng, j->batches[b].log);
            x->n += j->batches[b].n;
            if (j->batches[b].floor > x->floor)
                x->floor = j->batches[b].floor;
        }
    }
    size_t nl = 0, fl = 0, nw = 0;
    ll = 0;
    for (size_t i = 0; i < ng; i++) {
        if (!g[i].n) { /* nothing of it is written: no position, no notification */
            g[i].rc = g[i].rc ? g[i].rc : STORE_CONFLICT;
            continue;
        }
        ll += (size_t)snprintf(logs + ll, cap - ll, "%s%" PRIu64, nw ? "," : "{", g[i].log);
        nl += (size_t)snprintf(ns + nl, cap - nl, "%s%" PRIu64, nw ? "," : "{", g[i].n);
        fl += (size_t)snprintf(floors + fl, cap - fl, "%s%" PRIu64, nw ? "," : "{", g[i].floor);
        nw++;
    }
    snprintf(logs + ll, cap - ll, "}");
    snprintf(ns + nl, cap - nl, "}");
    snprintf(floors + fl, cap - fl, "}");
    if (nw) {
        q.n = 0;
        p_bytes(&q, logs, strlen(logs), 25);
        p_bytes(&q, ns, strlen(ns), 25);
        p_bytes(&q, floors, strlen(floors), 25);
        r = execp(
            c,
            "UPDATE kinesd_logs l SET last = GREATEST(l.last + v.n, v.floor + v.n - 1),"
            " ix = coalesce(nullif(coalesce(l.ix, l.last), 0), GREATEST(l.last + 1, v.floor) - 1) + v.n"
            " FROM unnest($1::text::bigint[], $2::text::bigint[], $3::text::bigint[]) AS v(log, n, floor)"
            " WHERE l.log = v.log RETURNING l.log, l.last, l.ix",
            &q);
        if ((rc = res_rc(c, r))) {
            PQclear(r);
            goto rollback;
        }
        for (int t = 0; t < PQntuples(r); t++) {
            struct group *x = group_of(g, ng, get_i64(r, t, 0));
            if (x) {
                x->first = get_i64(r, t, 1) - x->n + 1;
                x->first_ix = get_i64(r, t, 2) - x->n + 1;
            }
        }
        PQclear(r);
    }
    /* the records, sealed with their positions, in COPY's binary format */
    char *o = copy;
    memcpy(o, "PGCOPY\n\377\r\n\0", 11);
    o += 11;
    put32(&o, 0);
    put32(&o, 0);
    size_t rows = 0;
    for (size_t i = 0; i < ng; i++) { /* now: the next position and index to hand out */
        g[i].floor = g[i].first;
        g[i].ix = g[i].first_ix;
    }
    struct format_sealer sealer;
    format_sealer_init(&sealer, p->kr);
    for (struct job *j = jobs; j; j = j->next) {
        if (j->rc)
            continue;
        for (size_t b = 0; b < j->nb; b++) {
            struct store_batch *sb = &j->batches[b];
            struct group *x = group_of(g, ng, sb->log);
            for (size_t i = 0; i < sb->n; i++) {
                uint64_t pos = x->floor++, ix = x->ix++;
                put16(&o, 3);
                put32(&o, 8);
                put64(&o, sb->log);
                put32(&o, 8);
                put64(&o, pos);
                size_t len = format_sealed_len(p->kr, sb->recs[i].pk_len, sb->recs[i].data_len);
                put32(&o, (uint32_t)len);
                if ((rc = format_seal(&sealer, o, sb->log, pos, ix, sb->n - i, &sb->recs[i], &len))) {
                    format_sealer_done(&sealer);
                    goto rollback; /* no data key */
                }
                o += len;
                rows++;
            }
        }
    }
    format_sealer_done(&sealer);
    put16(&o, 0xFFFF);
    if (rows) {
        r = PQexec(c, "COPY kinesd_records (log, pos, rec) FROM STDIN (FORMAT binary)");
        rc = res_rc(c, r);
        PQclear(r);
        if (rc)
            goto rollback;
        if (PQputCopyData(c, copy, (int)(o - copy)) != 1 || PQputCopyEnd(c, NULL) != 1) {
            rc = STORE_UNAVAILABLE;
            goto rollback;
        }
        r = PQgetResult(c);
        rc = res_rc(c, r);
        PQclear(r);
        while ((r = PQgetResult(c)))
            PQclear(r);
        if (rc)
            goto rollback;
        if ((rc = notify_logs(c, g, ng)))
            goto rollback;
    }
    if ((rc = exec0(c, "COMMIT")))
        goto out; /* the outcome is unknown: nothing is acknowledged */
    *out = g;
    *nout = ng;
    g = NULL;
    goto out;
rollback:
    if (PQstatus(c) == CONNECTION_OK)
        exec0(c, "ROLLBACK");
out:
    free(g);
    free(logs);
    free(ns);
    free(floors);
    free(copy);
    return rc;
}

static void *commit_loop(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-pgcommit"); /* top -H, perf */
    struct pg *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->closing)
            pthread_cond_wait(&p->work, &p->mu);
        if (!p->head)
            break;
        struct job *first = p->head, *j = first;
        size_t bytes = j->bytes;
        while (j->next && bytes + j->next->bytes <= BATCH_BYTES) {
            j = j->next;
            bytes += j->bytes;
        }
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&p->mu);

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        struct group *g = NULL;
        size_t ng = 0;
        int rc = commit_jobs(p, first, &g, &ng);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        __atomic_add_fetch(&p->commits, 1, __ATOMIC_RELAXED);
        uint64_t took = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec));
        __atomic_add_fetch(&p->commit_ns, took, __ATOMIC_RELAXED);
        store_sync_observe(p->commit_buckets, took);
        if (rc == 0) { /* positions and indexes, as the groups handed them out in job order */
            for (size_t i = 0; i < ng; i++) {
                g[i].floor = g[i].first;
                g[i].ix = g[i].first_ix;
            }
            for (j = first; j; j = j->next)
                for (size_t b = 0; b < j->nb && !j->rc; b++) {
                    struct group *x = group_of(g, ng, j->batches[b].log);
                    for (size_t i = 0; i < j->batches[b].n; i++) {
                        j->batches[b].recs[i].pos = x->floor++;
                        j->batches[b].recs[i].ix = x->ix++;
                    }
                }
        }
        __atomic_sub_fetch(&p->queued, bytes, __ATOMIC_RELAXED);
        for (struct job *next; first; first = next) {
            next = first->next;
            first->done(first->arg, first->rc ? first->rc : rc);
            free(first);
        }
        for (size_t i = 0; i < ng; i++)
            if (!g[i].rc)
                watchlist_fire(&p->watches, g[i].log, g[i].first + g[i].n - 1);
        free(g);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int pg_append(void *impl, struct store_batch *batches, size_t nbatches, store_done_fn done, void *arg)
{
    struct pg *p = impl;
    size_t bytes = 0, nrec = 0;
    for (size_t b = 0; b < nbatches; b++) {
        if (!batches[b].n)
            return STORE_INVALID;
        for (size_t i = 0; i < batches[b].n; i++)
            bytes += format_sealed_len(p->kr, batches[b].recs[i].pk_len, batches[b].recs[i].data_len);
        nrec += batches[b].n;
    }
    uint64_t u = __atomic_add_fetch(&p->queued, bytes, __ATOMIC_RELAXED);
    if (u > p->max_unflushed && u != bytes) {
        __atomic_sub_fetch(&p->queued, bytes, __ATOMIC_RELAXED);
        return STORE_BUSY;
    }
    struct job *j = malloc(sizeof *j);
    if (!j) {
        __atomic_sub_fetch(&p->queued, bytes, __ATOMIC_RELAXED);
        return STORE_NOMEM;
    }
    *j = (struct job){
        .batches = batches, .nb = nbatches, .nrec = nrec, .bytes = bytes, .done = done, .arg = arg};
    pthread_mutex_lock(&p->mu);
    if (p->closing) {
        pthread_mutex_unlock(&p->mu);
        __atomic_sub_fetch(&p->queued, bytes, __ATOMIC_RELAXED);
        free(j);
        return STORE_CLOSED;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* ---- reading ---- */

static int pg_scan(void *impl, uint64_t log, uint64_t from, size_t max_n, size_t max_bytes,
                   struct store_records *out)
{
    struct pg *p = impl;
    out->n = out->bytes = 0;
    out->v = NULL;
    out->last = 0;
    int slot, rc = pool_take(p, &slot);
    if (rc)
        return rc;
    PGconn *c = p->pool[slot].c;
    struct params q = {.n = 0};
    p_i64(&q, log);
    p_i64(&q, from);
    p_i64(&q, max_n > INT64_MAX ? INT64_MAX : max_n);
    p_i64(&q, max_bytes > INT64_MAX ? INT64_MAX : max_bytes);
    /* one statement, one snapshot: the records (as many as fit max_bytes, the one that
     * crosses it included) and the log's last position and index */
    PGresult *r =
        execp(c,
              "SELECT l.last, r.pos, r.rec, coalesce(l.ix, l.last) FROM kinesd_logs l LEFT JOIN LATERAL"
              " (SELECT pos, rec, sum(octet_length(rec)) OVER (ORDER BY pos) AS cum FROM kinesd_records"
              "  WHERE log = $1 AND pos >= $2 ORDER BY pos LIMIT $3) r ON true"
              " WHERE l.log = $1 AND (r.cum IS NULL OR r.cum - octet_length(r.rec) < $4) ORDER BY r.pos",
              &q);
    rc = res_rc(c, r);
    pool_give(p, slot); /* the result is ours; opening a record may need a connection */
    struct format_opener op;
    format_opener_init(&op, p->kr);
    for (int t = 0; rc == 0 && t < PQntuples(r); t++) {
        out->last = get_i64(r, t, 0);
        out->last_ix = get_i64(r, t, 3);
        if (PQgetisnull(r, t, 1))
            continue;
        rc = format_open_with(&op, PQgetvalue(r, t, 2), (size_t)PQgetlength(r, t, 2), log, get_i64(r, t, 1),
                              out);
    }
    format_opener_done(&op);
    PQclear(r);
    return rc;
}

static int pg_log_bounds(void *impl, uint64_t log, uint64_t *last, uint64_t *first)
{
    struct pg *p = impl;
    int slot, rc = pool_take(p, &slot);
    if (rc)
        return rc;
    PGconn *c = p->pool[slot].c;
    struct params q = {.n = 0};
    p_i64(&q, log);
    PGresult *r = execp(c,
                        "SELECT l.last, (SELECT coalesce(min(pos), 0) FROM kinesd_records WHERE log = $1)"
                        " FROM kinesd_logs l WHERE l.log = $1",
                        &q);
    rc = res_rc(c, r);
    bool row = rc == 0 && PQntuples(r) == 1;
    if (last)
        *last = row ? get_i64(r, 0, 0) : 0;
    if (first)
        *first = row ? get_i64(r, 0, 1) : 0;
    PQclear(r);
    pool_give(p, slot);
    return rc;
}

static int last_of_log(void *ctx, uint64_t log, uint64_t *last)
{
    return pg_log_bounds(ctx, log, last, NULL);
}

static int pg_watch(void *impl, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                    struct store_watch **out)
{
    return watchlist_watch(&((struct pg *)impl)->watches, log, after, fn, arg, out, last_of_log, impl);
}

static bool pg_unwatch(void *impl, struct store_watch *w)
{
    return watchlist_unwatch(&((struct pg *)impl)->watches, w);
}

/* ---- trimming, dropping, sealing ---- */

/* Run sql with params (log, a, b) returning one count, into *n. */
static int count_query(struct pg *p, const char *sql, uint64_t log, uint64_t a, uint64_t b, uint64_t *n)
{
    int slot, rc = pool_take(p, &slot);
    if (rc)
        return rc;
    PGconn *c = p->pool[slot].c;
    struct params q = {.n = 0};
    p_i64(&q, log);
    p_i64(&q, a);
    p_i64(&q, b);
    PGresult *r = execp(c, sql, &q);
    rc = res_rc(c, r);
    *n = rc == 0 && PQntuples(r) == 1 ? get_i64(r, 0, 0) : 0;
    PQclear(r);
    pool_give(p, slot);
    return rc;
}

/* One statement, so one transaction: the records below `below` (the lowest max of them), and
 * the rows whose end is at or below the log's first position left (or `below` if none is). The
 * statement's snapshot still sees what d deletes, so the first left is the first past d's last. */
static int pg_trim(void *impl, uint64_t log, uint64_t below, size_t max, size_t *deleted,
                   struct store_trim_row *rows, size_t nrows)
{
    struct pg *p = impl;
    *deleted = 0;
    for (size_t i = 0; i < nrows; i++)
        rows[i].gone = false;
    /* the rows as two array literals (their keys are the keyring's: no quote, comma or brace) */
    char *keys = malloc(nrows * (sizeof rows->key + 1) + 3), *ends = malloc(nrows * 21 + 3);
    if (!keys || !ends) {
        free(keys);
        free(ends);
        return STORE_NOMEM;
    }
    size_t kl = 0, el = 0;
    keys[kl++] = '{', ends[el++] = '{';
    for (size_t i = 0; i < nrows; i++) {
        kl += (size_t)snprintf(keys + kl, sizeof rows->key + 2, "%s%s", i ? "," : "", rows[i].key);
        el += (size_t)snprintf(ends + el, 22, "%s%" PRIu64, i ? "," : "", rows[i].end);
    }
    keys[kl++] = '}', ends[el++] = '}';
    keys[kl] = ends[el] = 0;
    int slot, rc = pool_take(p, &slot);
    if (rc) {
        free(keys);
        free(ends);
        return rc;
    }
    PGconn *c = p->pool[slot].c;
    struct params q = {.n = 0};
    p_i64(&q, log);
    p_i64(&q, below);
    p_i64(&q, max);
    p_bytes(&q, keys, kl, 25);
    p_bytes(&q, ends, el, 25);
    PGresult *r = execp(
        c,
        "WITH d AS (DELETE FROM kinesd_records WHERE log = $1 AND pos IN"
        " (SELECT pos FROM kinesd_records WHERE log = $1 AND pos < $2 ORDER BY pos LIMIT $3) RETURNING pos),"
        " b AS (SELECT coalesce((SELECT pos FROM kinesd_records WHERE log = $1 AND"
        " pos > coalesce((SELECT max(pos) FROM d), -1) ORDER BY pos LIMIT 1), $2) AS bound),"
        " k AS (DELETE FROM kinesd_rows USING unnest($4::text::text[], $5::text::bigint[]) AS g(key, e)"
        " WHERE kinesd_rows.key = g.key AND g.e <= (SELECT bound FROM b) RETURNING 1)"
        " SELECT (SELECT count(*) FROM d)::bigint, (SELECT bound FROM b)::bigint,"
        " (SELECT count(*) FROM k)::bigint",
        &q);
    rc = res_rc(c, r);
    if (rc == 0 && PQntuples(r) == 1) {
        *deleted = (size_t)get_i64(r, 0, 0);
        uint64_t bound = get_i64(r, 0, 1);
        for (size_t i = 0; i < nrows; i++)
            rows[i].gone = rows[i].end <= bound;
    }
    PQclear(r);
    pool_give(p, slot);
    free(keys);
    free(ends);
    return rc;
}

static int pg_log_drop(void *impl, uint64_t log)
{
    uint64_t n = 0;
    /* the fence first (it waits for an append holding the log's row), then a bounded batch */
    int rc =
        count_query(impl,
                    "WITH f AS (INSERT INTO kinesd_logs (log, dropped) VALUES ($1, true) ON CONFLICT (log)"
                    " DO UPDATE SET dropped = true RETURNING 1),"
                    " d AS (DELETE FROM kinesd_records WHERE log = $1 AND pos IN (SELECT pos FROM"
                    " kinesd_records WHERE log = $1 AND pos < $2 ORDER BY pos LIMIT $3) RETURNING 1)"
                    " SELECT count(*)::bigint + 0 * (SELECT count(*) FROM f) FROM d",
                    log, INT64_MAX, DROP_BATCH, &n);
    return rc ? rc : n == DROP_BATCH ? STORE_BUSY : 0;
}

static int pg_log_seal(void *impl, uint64_t log)
{
    uint64_t n = 0;
    return count_query(
        impl,
        "WITH f AS (INSERT INTO kinesd_logs (log, sealed) VALUES ($1, true) ON CONFLICT (log)"
        " DO UPDATE SET sealed = true RETURNING 1) SELECT count(*)::bigint + 0 * $2 + 0 * $3 FROM f",
        log, 0, 0, &n);
}

/* ---- metadata rows ---- */

static int pg_meta_cas(void *impl, struct store_row *rows, size_t n)
{
    struct pg *p = impl;
    int slot, rc = pool_take(p, &slot);
    if (rc)
        return rc;
    PGconn *c = p->pool[slot].c;
    uint64_t *nv = calloc(n ? n : 1, sizeof *nv);
    char *keys = NULL;
    size_t klen = 0;
    if (!nv) {
        rc = STORE_NOMEM;
        goto out;
    }
    if ((rc = exec0(c, "BEGIN")))
        goto out;
    for (size_t i = 0; i < n && !rc; i++) {
        const struct store_row *w = &rows[i];
        struct params q = {.n = 0};
        p_bytes(&q, w->key, strlen(w->key), 25);
        const char *sql;
        bool any = w->version == STORE_ANY_VERSION;
        if (w->val) {
            p_bytes(&q, w->val ? w->val : "", w->len, 17);
            if (any)
                sql = "INSERT INTO kinesd_rows (key, version, val) VALUES ($1, 1, $2) ON CONFLICT (key) DO "
                      "UPDATE"
                      " SET version = kinesd_rows.version + 1, val = EXCLUDED.val RETURNING version";
            else if (w->version == 0)
                sql = "INSERT INTO kinesd_rows (key, version, val) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING"
                      " RETURNING version";
            else {
                p_i64(&q, w->version);
                sql = "UPDATE kinesd_rows SET version = version + 1, val = $2 WHERE key = $1 AND version = $3"
                      " RETURNING version";
            }
        } else if (any) {
            sql = "WITH d AS (DELETE FROM kinesd_rows WHERE key = $1) SELECT 0::bigint";
        } else if (w->version == 0) {
            sql = "SELECT 0::bigint WHERE NOT EXISTS (SELECT 1 FROM kinesd_rows WHERE key = $1)";
        } else {
            p_i64(&q, w->version);
            sql = "WITH d AS (DELETE FROM kinesd_rows WHERE key = $1 AND version = $2 RETURNING 1)"
                  " SELECT 0::bigint FROM d";
        }
        PGresult *r = execp(c, sql, &q);
        rc = res_rc(c, r);
        if (rc == 0 && PQntuples(r) != 1)
            rc = STORE_CONFLICT;
        if (rc == 0)
            nv[i] = get_i64(r, 0, 0);
        PQclear(r);
        size_t kl = strlen(w->key);
        char *k = realloc(keys, klen + kl + 2);
        if (!k) {
            rc = rc ? rc : STORE_NOMEM;
            continue;
        }
        keys = k;
        memcpy(keys + klen, w->key, kl);
        klen += kl;
        keys[klen++] = '\n';
    }
    if (rc == 0 && klen) { /* every front-end's registry hears of it */
        struct params q = {.n = 0};
        p_bytes(&q, keys, klen - 1, 25);
        PGresult *r = execp(c, "SELECT pg_notify('kinesd_rows', $1)", &q);
        rc = res_rc(c, r);
        PQclear(r);
    }
    if (rc == 0)
        rc = exec0(c, "COMMIT");
    else if (PQstatus(c) == CONNECTION_OK)
        exec0(c, "ROLLBACK");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rows[i].version = nv[i];
out:
    free(nv);
    free(keys);
    pool_give(p, slot);
    return rc;
}

static int pg_meta_get(void *impl, const char *key, char **val, size_t *len, uint64_t *version)
{
    struct pg *p = impl;
    int slot, rc = pool_take(p, &slot);
    if (rc)
        return rc;
    PGconn *c = p->pool[slot].c;
    struct params q = {.n = 0};
    p_bytes(&q, key, strlen(key), 25);
    PGresult *r = execp(c, "SELECT version, val FROM kinesd_rows WHERE key = $1", &q);
    rc = res_rc(c, r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = STORE_NOT_FOUND;
    if (rc == 0) {
        size_t n = (size_t)PQgetlength(r, 0, 1);
        char *v = malloc(n + 1);
        if (!v) {
            rc = STORE_NOMEM;
        } else {
            memcpy(v, PQgetvalue(r, 0, 1), n);
            v[n] = 0;
            *val = v;
            *len = n;
            if (version)
                *version = get_i64(r, 0, 0);
        }
    }
    PQclear(r);
    pool_give(p, slot);
    return rc;
}

static int pg_meta_scan(void *impl, const char *prefix, store_meta_fn fn, void *ctx)
{
    struct pg *p = impl;
    int slot, rc = pool_take(p, &slot);
    if (rc)
        return rc;
    PGconn *c = p->pool[slot].c;
    struct params q = {.n = 0};
    p_bytes(&q, prefix, strlen(prefix), 25);
    /* keys in byte order, as the lmdb engine lists them */
    PGresult *r = execp(c,
                        "SELECT key, version, val FROM kinesd_rows WHERE left(key, length($1)) = $1"
                        " ORDER BY key COLLATE \"C\"",
                        &q);
    rc = res_rc(c, r);
    int n = rc ? 0 : PQntuples(r);
    pool_give(p, slot); /* fn may take a while; the result is ours */
    for (int t = 0; t < n; t++)
        if (fn(ctx, PQgetvalue(r, t, 0), (size_t)PQgetlength(r, t, 0), PQgetvalue(r, t, 2),
               (size_t)PQgetlength(r, t, 2), get_i64(r, t, 1)))
            break;
    PQclear(r);
    return rc;
}

/* ---- leases ---- */

static int pg_lease(void *impl, const char *name)
{
    struct pg *p = impl;
    pthread_mutex_lock(&p->lease_mu);
    bool had = p->lease.c && PQstatus(p->lease.c) == CONNECTION_OK;
    int rc = conn_ready(p, &p->lease);
    if (rc == 0 && !had)
        p->nheld = 0; /* a new session holds nothing */
    for (int i = 0; rc == 0 && i < p->nheld; i++)
        if (!strcmp(p->held[i], name)) {
            /* still ours while the session lives: a cheap check that it does */
            rc = exec0(p->lease.c, "SELECT 1");
            if (rc)
                p->nheld = 0;
            pthread_mutex_unlock(&p->lease_mu);
            return rc ? STORE_UNAVAILABLE : 0;
        }
    if (rc == 0) {
        struct params q = {.n = 0};
        p_bytes(&q, name, strlen(name), 25);
        PGresult *r =
            execp(p->lease.c, "SELECT pg_try_advisory_lock(hashtextextended('kinesd:' || $1, 0))", &q);
        rc = res_rc(p->lease.c, r);
        if (rc == 0)
            rc = PQntuples(r) == 1 && get_bool(r, 0, 0) ? 0 : STORE_BUSY;
        PQclear(r);
        if (rc == 0 && p->nheld < MAX_LEASES)
            snprintf(p->held[p->nheld++], sizeof p->held[0], "%s", name);
    }
    pthread_mutex_unlock(&p->lease_mu);
    return rc;
}

/* ---- the listener ---- */

static void on_notify(struct pg *p, const PGnotify *n)
{
    if (!strcmp(n->relname, "kinesd_logs")) {
        for (const char *s = n->extra; *s;) {
            char *end;
            uint64_t log = strtoull(s, &end, 10);
            uint64_t last = *end == ':' ? strtoull(end + 1, &end, 10) : UINT64_MAX;
            watchlist_fire(&p->watches, log, last);
            s = *end == ',' ? end + 1 : end + strlen(end);
        }
    } else if (!strcmp(n->relname, "kinesd_rows")) {
        char key[300];
        for (const char *s = n->extra; *s;) {
            const char *nl = strchr(s, '\n');
            size_t len = nl ? (size_t)(nl - s) : strlen(s);
            if (len < sizeof key) {
                memcpy(key, s, len);
                key[len] = 0;
                store_rows_changed(p->owner, key);
            }
            s += len + (nl ? 1 : 0);
        }
    }
}

static void *listen_loop(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-pglisten"); /* top -H, perf */
    struct pg *p = arg;
    bool listening = false;
    for (;;) {
        if (!listening && conn_ready(p, &p->lconn) == 0) {
            listening =
                exec0(p->lconn.c, "LISTEN kinesd_logs") == 0 && exec0(p->lconn.c, "LISTEN kinesd_rows") == 0;
            if (listening) { /* whatever was missed while not listening: waiters look again */
                watchlist_fire(&p->watches, UINT64_MAX, UINT64_MAX);
                store_rows_changed(p->owner, NULL);
                pthread_mutex_lock(&p->mu);
                p->listening = true;
                pthread_cond_broadcast(&p->listen_cv);
                pthread_mutex_unlock(&p->mu);
            }
        }
        struct pollfd fds[2] = {{p->wake[0], POLLIN, 0}, {listening ? PQsocket(p->lconn.c) : -1, POLLIN, 0}};
        int n = poll(fds, 2, listening ? 1000 : RECONNECT_MS);
        if (n < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break;
        if (!listening)
            continue;
        if (!PQconsumeInput(p->lconn.c)) {
            listening = false;
            continue;
        }
        PGnotify *nt;
        while ((nt = PQnotifies(p->lconn.c))) {
            on_notify(p, nt);
            PQfreemem(nt);
        }
    }
    return NULL;
}

/* ---- open and close ---- */

static void pg_stats(void *impl, struct store_stats *st)
{
    struct pg *p = impl;
    *st = (struct store_stats){
        .unflushed_bytes = __atomic_load_n(&p->queued, __ATOMIC_RELAXED),
        .syncs = __atomic_load_n(&p->commits, __ATOMIC_RELAXED),
        .sync_ns_total = __atomic_load_n(&p->commit_ns, __ATOMIC_RELAXED),
    };
    for (int i = 0; i <= STORE_SYNC_BUCKETS; i++)
        st->sync_buckets[i] = __atomic_load_n(&p->commit_buckets[i], __ATOMIC_RELAXED);
}

static void destroy(struct pg *p)
{
    if (p->wconn.c)
        PQfinish(p->wconn.c);
    if (p->lconn.c)
        PQfinish(p->lconn.c);
    if (p->lease.c)
        PQfinish(p->lease.c);
    for (int i = 0; i < POOL; i++)
        if (p->pool[i].c)
            PQfinish(p->pool[i].c);
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->listen_cv);
    pthread_mutex_destroy(&p->pool_mu);
    pthread_cond_destroy(&p->pool_cv);
    pthread_mutex_destroy(&p->lease_mu);
    watchlist_destroy(&p->watches);
    free(p->conninfo);
    free(p);
}

static void pg_close(void *impl);

static int pg_open(const struct store_config *cfg, struct store *owner, void **impl)
{
    struct pg *p = calloc(1, sizeof *p);
    if (!p || !(p->conninfo = strdup(cfg->dir))) {
        free(p);
        return STORE_NOMEM;
    }
    p->owner = owner;
    p->kr = cfg->keyring;
    p->max_unflushed = cfg->max_unflushed ? cfg->max_unflushed : DEFAULT_UNFLUSHED;
    p->wake[0] = p->wake[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->listen_cv, NULL);
    pthread_mutex_init(&p->pool_mu, NULL);
    pthread_cond_init(&p->pool_cv, NULL);
    pthread_mutex_init(&p->lease_mu, NULL);
    watchlist_init(&p->watches);
    int rc = conn_ready(p, &p->pool[0]);
    if (rc == 0)
        rc = migrate(p, p->pool[0].c);
    if (rc == 0 && pipe(p->wake))
        rc = STORE_IO;
    if (rc) {
        destroy(p);
        return rc;
    }
    if (pthread_create(&p->committer, NULL, commit_loop, p)) {
        destroy(p);
        return STORE_NOMEM;
    }
    if (pthread_create(&p->listener, NULL, listen_loop, p)) {
        pthread_mutex_lock(&p->mu);
        p->closing = true;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->committer, NULL);
        destroy(p);
        return STORE_NOMEM;
    }
    /* from here on no change made through another front-end goes unheard */
    pthread_mutex_lock(&p->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    while (!p->listening && pthread_cond_timedwait(&p->listen_cv, &p->mu, &ts) == 0)
        ;
    bool ok = p->listening;
    pthread_mutex_unlock(&p->mu);
    if (!ok) {
        klog(KLOG_ERROR, "pg: cannot LISTEN for other front-ends' changes");
        pg_close(p);
        return STORE_UNAVAILABLE;
    }
    *impl = p;
    return 0;
}

static void pg_close(void *impl)
{
    struct pg *p = impl;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->committer, NULL);
    if (write(p->wake[1], "x", 1) != 1)
        klog(KLOG_WARN, "pg: cannot wake the listener");
    pthread_join(p->listener, NULL);
    destroy(p);
}

const struct store_engine store_engine_pg = {
    .name = "pg",
    .shared = true,
    .open = pg_open,
    .close = pg_close,
    .append = pg_append,
    .scan = pg_scan,
    .log_bounds = pg_log_bounds,
    .watch = pg_watch,
    .unwatch = pg_unwatch,
    .trim = pg_trim,
    .log_drop = pg_log_drop,
    .log_seal = pg_log_seal,
    .lease = pg_lease,
    .meta_cas = pg_meta_cas,
    .meta_get = pg_meta_get,
    .meta_scan = pg_meta_scan,
    .stats = pg_stats,
};
