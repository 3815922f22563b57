/* Unit tests of the pg engine on a real PostgreSQL (tools/with-postgres.sh provides one and
 * names it in KINESD_PG_URL). Two stores opened on one database are two front-ends: what one
 * writes, the other reads, watches, and is fenced by. Each test gets a database of its own. */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

static char url[1024];

/* A fresh database; url names it afterwards. */
static void fresh_db(const char *name)
{
    const char *base = getenv("KINESD_PG_URL");
    if (!base) {
        fprintf(stderr, "KINESD_PG_URL is not set: run under tools/with-postgres.sh\n");
        exit(1);
    }
    PGconn *c = PQconnectdb(base);
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
    const char *q = strstr(base, "/postgres?");
    CHECK(q != NULL);
    snprintf(url, sizeof url, "%.*s/%s%s", (int)(q - base), base, name, q + strlen("/postgres"));
}

static struct store *open_pg(void)
{
    struct store_config cfg = {.engine = "pg", .dir = url, .sync = true};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    return s;
}

static int append1(struct store *s, uint64_t log, uint64_t floor, struct store_rec *r, size_t n)
{
    struct store_batch b = {log, floor, r, n};
    return store_append(s, &b, 1);
}

struct blocks {
    void *p[1 << 14];
    size_t n;
};

static void *blocks_alloc(void *ctx, size_t n)
{
    struct blocks *b = ctx;
    return b->n < (1 << 14) ? (b->p[b->n++] = malloc(n)) : NULL;
}

static void blocks_free(struct blocks *b)
{
    while (b->n)
        free(b->p[--b->n]);
}

static void wait_until(volatile int *flag)
{
    for (int i = 0; i < 500 && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
        usleep(10000);
}

/* ---- tests ---- */

struct writer {
    struct store *s;
    int id;
    uint64_t pos[200];
};

static void *write_many(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < 200; i++) {
        char data[32];
        int n = snprintf(data, sizeof data, "w%d-%d", w->id, i);
        struct store_rec r = {"k", 1, data, (size_t)n, 0, 0};
        if (append1(w->s, 42, 1000, &r, 1) != 0)
            return NULL;
        w->pos[i] = r.pos;
    }
    return w;
}

static void two_front_ends_writing_one_log_get_strictly_increasing_unique_positions(void)
{
    fresh_db("t_positions");
    struct store *a = open_pg(), *b = open_pg();
    static struct writer w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct writer){.s = i % 2 ? b : a, .id = i};
        pthread_create(&t[i], NULL, write_many, &w[i]);
    }
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        void *res;
        pthread_join(t[i], &res);
        ok += res != NULL;
    }
    CHECK(ok == 4);
    /* each writer's positions increase, and every record reads back from the other store */
    struct blocks bl = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &bl};
    CHECK(store_scan(b, 42, 0, 1000, SIZE_MAX, &out) == 0);
    CHECK(out.n == 800 && out.last == out.v[799].pos);
    for (size_t i = 1; i < out.n; i++)
        CHECK(out.v[i].pos > out.v[i - 1].pos);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 200; k++) {
            char data[32];
            int n = snprintf(data, sizeof data, "w%d-%d", i, k);
            bool found = false;
            for (size_t j = 0; j < out.n && !found; j++)
                found = out.v[j].pos == w[i].pos[k] && out.v[j].data_len == (size_t)n &&
                        !memcmp(out.v[j].data, data, (size_t)n);
            CHECK(found);
            if (k)
                CHECK(w[i].pos[k] > w[i].pos[k - 1]);
        }
    blocks_free(&bl);
    store_close(a);
    store_close(b);
}

static void a_record_acknowledged_by_one_front_end_is_read_at_once_by_the_other(void)
{
    fresh_db("t_ryw");
    struct store *a = open_pg(), *b = open_pg();
    struct store_rec r = {"pk", 2, "hello", 5, 0, 0};
    CHECK(append1(a, 7, 5000, &r, 1) == 0 && r.pos == 5000);
    uint64_t last = 0, first = 0;
    CHECK(store_log_bounds(b, 7, &last, &first) == 0 && last == 5000 && first == 5000);
    struct blocks bl = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &bl};
    CHECK(store_scan(b, 7, 0, 10, SIZE_MAX, &out) == 0 && out.n == 1);
    CHECK(out.n == 1 && out.v[0].pk_len == 2 && !memcmp(out.v[0].pk, "pk", 2) && out.v[0].data_len == 5);
    blocks_free(&bl);
    store_close(a);
    store_close(b);
}

static int woken;
static void on_wake(void *arg)
{
    (void)arg;
    __atomic_store_n(&woken, 1, __ATOMIC_RELEASE);
}

static void a_watch_on_one_front_end_is_woken_by_a_write_through_the_other(void)
{
    fresh_db("t_watch");
    struct store *a = open_pg(), *b = open_pg();
    struct store_rec r = {"pk", 2, "one", 3, 0, 0};
    CHECK(append1(a, 9, 100, &r, 1) == 0);
    woken = 0;
    struct store_watch *w;
    CHECK(store_watch(b, 9, r.pos, on_wake, NULL, &w) == 0);
    CHECK(!woken); /* nothing past it yet */
    struct store_rec r2 = {"pk", 2, "two", 3, 0, 0};
    CHECK(append1(a, 9, 100, &r2, 1) == 0);
    wait_until(&woken);
    CHECK(woken);
    store_unwatch(b, w);
    store_close(a);
    store_close(b);
}

static char changed_key[64];
static int changed;
static void on_row(void *arg, const char *key)
{
    (void)arg;
    if (key && !strcmp(key, "stream/7")) {
        snprintf(changed_key, sizeof changed_key, "%s", key);
        __atomic_store_n(&changed, 1, __ATOMIC_RELEASE);
    }
}

static void rows_compare_and_set_and_their_changes_reach_the_other_front_end(void)
{
    fresh_db("t_rows");
    struct store *a = open_pg(), *b = open_pg();
    changed = 0;
    CHECK(store_meta_watch(b, "stream/", on_row, NULL) == 0);
    struct store_row row = {.key = "stream/7", .version = 0, .val = "v1", .len = 2};
    CHECK(store_meta_cas(a, &row, 1) == 0 && row.version == 1);
    wait_until(&changed);
    CHECK(changed && !strcmp(changed_key, "stream/7"));
    /* a stale version loses, and writes nothing */
    struct store_row stale = {.key = "stream/7", .version = 0, .val = "v2", .len = 2};
    CHECK(store_meta_cas(b, &stale, 1) == STORE_CONFLICT);
    struct store_row two[2] = {{.key = "stream/7", .version = 1, .val = "v2", .len = 2},
                               {.key = "shard/7/0", .version = 5, .val = "x", .len = 1}};
    CHECK(store_meta_cas(b, two, 2) == STORE_CONFLICT); /* one row off: none written */
    char *v;
    size_t len;
    uint64_t ver;
    CHECK(store_meta_get(a, "stream/7", &v, &len, &ver) == 0 && len == 2 && !memcmp(v, "v1", 2) && ver == 1);
    free(v);
    CHECK(store_meta_get(a, "shard/7/0", &v, &len, NULL) == STORE_NOT_FOUND);
    two[1].version = 0;
    CHECK(store_meta_cas(b, two, 2) == 0 && two[0].version == 2 && two[1].version == 1);
    struct store_row del = {.key = "stream/7", .version = 2, .val = NULL};
    CHECK(store_meta_cas(a, &del, 1) == 0);
    CHECK(store_meta_get(b, "stream/7", &v, &len, NULL) == STORE_NOT_FOUND);
    store_close(a);
    store_close(b);
}

static void a_sealed_log_refuses_appends_through_every_front_end_and_stays_readable(void)
{
    fresh_db("t_seal");
    struct store *a = open_pg(), *b = open_pg();
    struct store_rec r = {"pk", 2, "before", 6, 0, 0};
    CHECK(append1(b, 11, 1, &r, 1) == 0);
    CHECK(store_log_seal(a, 11) == 0);
    struct store_rec late = {"pk", 2, "after", 5, 0, 0};
    CHECK(append1(b, 11, 1, &late, 1) == STORE_CONFLICT);
    CHECK(append1(a, 11, 1, &late, 1) == STORE_CONFLICT);
    struct blocks bl = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &bl};
    CHECK(store_scan(b, 11, 0, 10, SIZE_MAX, &out) == 0 && out.n == 1 && out.last == r.pos);
    blocks_free(&bl);
    /* another log is not affected */
    CHECK(append1(b, 12, 1, &late, 1) == 0);
    store_close(a);
    store_close(b);
}

static void an_append_refused_for_one_sealed_log_takes_no_positions_in_the_others(void)
{
    fresh_db("t_seal_gap");
    struct store *a = open_pg();
    struct store_rec r = {"pk", 2, "one", 3, 0, 0}, s1 = {"pk", 2, "two", 3, 0, 0},
                     s2 = {"pk", 2, "six", 3, 0, 0};
    CHECK(append1(a, 21, 1, &r, 1) == 0);
    CHECK(append1(a, 22, 1, &r, 1) == 0);
    CHECK(store_log_seal(a, 22) == 0);
    /* one append writing log 21 and sealed log 22: refused whole */
    struct store_batch both[2] = {{21, 1, &s1, 1}, {22, 1, &s2, 1}};
    CHECK(store_append(a, both, 2) == STORE_CONFLICT);
    uint64_t last = 0, first = 0;
    CHECK(store_log_bounds(a, 21, &last, &first) == 0 && last == r.pos); /* no gap past its record */
    struct blocks bl = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &bl};
    CHECK(store_scan(a, 21, 0, 10, SIZE_MAX, &out) == 0 && out.n == 1 && out.last == r.pos);
    blocks_free(&bl);
    store_close(a);
}

static void a_dropped_log_is_gone_for_every_front_end(void)
{
    fresh_db("t_drop");
    struct store *a = open_pg(), *b = open_pg();
    struct store_rec r[3] = {{"a", 1, "1", 1, 0, 0}, {"b", 1, "2", 1, 0, 0}, {"c", 1, "3", 1, 0, 0}};
    CHECK(append1(a, 13, 1, r, 3) == 0);
    int rc;
    while ((rc = store_log_drop(b, 13)) == STORE_BUSY)
        ;
    CHECK(rc == 0);
    CHECK(append1(a, 13, 1, r, 1) == STORE_NOT_FOUND);
    struct blocks bl = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &bl};
    CHECK(store_scan(a, 13, 0, 10, SIZE_MAX, &out) == 0 && out.n == 0);
    blocks_free(&bl);
    store_close(a);
    store_close(b);
}

static void trim_deletes_below_the_mark_in_bounded_batches(void)
{
    fresh_db("t_trim");
    struct store *a = open_pg();
    struct store_rec r[5] = {{"a", 1, "1", 1, 0, 0},
                             {"a", 1, "2", 1, 0, 0},
                             {"a", 1, "3", 1, 0, 0},
                             {"a", 1, "4", 1, 0, 0},
                             {"a", 1, "5", 1, 0, 0}};
    CHECK(append1(a, 14, 10, r, 5) == 0 && r[4].pos == 14);
    size_t d = 0;
    CHECK(store_trim(a, 14, 13, 2, &d) == 0 && d == 2);
    CHECK(store_trim(a, 14, 13, 2, &d) == 0 && d == 1);
    CHECK(store_trim(a, 14, 13, 2, &d) == 0 && d == 0);
    uint64_t last, first;
    CHECK(store_log_bounds(a, 14, &last, &first) == 0 && first == 13 && last == 14);
    /* trimmed positions are never handed out again */
    CHECK(append1(a, 14, 0, r, 1) == 0 && r[0].pos == 15);
    store_close(a);
}

static void one_front_end_holds_a_lease_at_a_time_and_it_moves_when_that_one_goes(void)
{
    fresh_db("t_lease");
    struct store *a = open_pg(), *b = open_pg();
    CHECK(store_lease(a, "maintenance") == 0);
    CHECK(store_lease(a, "maintenance") == 0); /* still held */
    CHECK(store_lease(b, "maintenance") == STORE_BUSY);
    CHECK(store_lease(b, "other") == 0);
    store_close(a);
    int rc = STORE_BUSY;
    for (int i = 0; i < 100 && rc == STORE_BUSY; i++, usleep(20000))
        rc = store_lease(b, "maintenance");
    CHECK(rc == 0);
    store_close(b);
}

static void a_newer_schema_than_the_binary_knows_is_refused(void)
{
    fresh_db("t_schema");
    struct store *a = open_pg();
    store_close(a);
    PGconn *c = PQconnectdb(url);
    PQclear(PQexec(c, "UPDATE kinesd_schema SET version = 99"));
    PQfinish(c);
    struct store_config cfg = {.engine = "pg", .dir = url, .sync = true};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == STORE_NEWER && s == NULL);
}

/* Two front-ends writing one log take consecutive indexes from one count (from the first
 * record's position), kept by the database; a database of schema version 1 is migrated at open,
 * its logs counting on from their last position (the index their records read with). */
static void front_ends_share_each_logs_count_and_version_1_logs_count_on(void)
{
    fresh_db("t_index");
    struct store *a = open_pg(), *b = open_pg();
    struct store_rec r[3] = {{"a", 1, "1", 1, 0, 0}, {"b", 1, "2", 1, 0, 0}, {"c", 1, "3", 1, 0, 0}};
    CHECK(append1(a, 31, 100, r, 2) == 0 && r[0].ix == 100 && r[1].ix == 101);
    CHECK(append1(b, 31, 9000, r, 1) == 0 && r[0].pos == 9000 && r[0].ix == 102);
    CHECK(append1(a, 32, 7, r, 1) == 0 && r[0].ix == 7);
    struct blocks bl = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &bl};
    CHECK(store_scan(b, 31, 0, 10, SIZE_MAX, &out) == 0 && out.n == 3 && out.v[0].ix == 100 &&
          out.v[2].ix == 102 && out.last_ix == 102 && out.last == 9000);
    blocks_free(&bl);
    store_close(a);
    store_close(b);
    /* as version 1 left it: no index column, a log with records (read with their positions) */
    PGconn *c = PQconnectdb(url);
    PQclear(PQexec(c, "ALTER TABLE kinesd_logs DROP COLUMN ix; UPDATE kinesd_schema SET version = 1"));
    PQfinish(c);
    a = open_pg();
    CHECK(append1(a, 31, 0, r, 2) == 0 && r[0].pos == 9001 && r[0].ix == 9001 && r[1].ix == 9002);
    CHECK(append1(a, 33, 55, r, 1) == 0 && r[0].ix == 55); /* a new log counts from its first position */
    store_close(a);
}

CHECK_RUN("pg", T(two_front_ends_writing_one_log_get_strictly_increasing_unique_positions),
          T(a_record_acknowledged_by_one_front_end_is_read_at_once_by_the_other),
          T(a_watch_on_one_front_end_is_woken_by_a_write_through_the_other),
          T(rows_compare_and_set_and_their_changes_reach_the_other_front_end),
          T(a_sealed_log_refuses_appends_through_every_front_end_and_stays_readable),
          T(an_append_refused_for_one_sealed_log_takes_no_positions_in_the_others),
          T(a_dropped_log_is_gone_for_every_front_end), T(trim_deletes_below_the_mark_in_bounded_batches),
          T(one_front_end_holds_a_lease_at_a_time_and_it_moves_when_that_one_goes),
          T(a_newer_schema_than_the_binary_knows_is_refused),
          T(front_ends_share_each_logs_count_and_version_1_logs_count_on))
