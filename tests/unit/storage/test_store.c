/* Unit tests of the storage front and the lmdb engine, on a real LMDB in a temporary dir. */
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "store.h"
#include "tmpdir.h"

static int append1(struct store *s, uint64_t log, uint64_t floor, struct store_rec *r, size_t n)
{
    struct store_batch b = {log, floor, r, n};
    return store_append(s, &b, 1);
}

static struct store *open_at(const char *dir, uint64_t map)
{
    struct store_config cfg = {.dir = dir, .sync = false, .initial_map = map};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    return s;
}

struct collect {
    uint64_t pos[64], ix[64];
    char data[64][32];
    size_t n;
};

/* A test's arena: blocks kept in a list, freed together. */
struct blocks {
    void *p[4096];
    size_t n;
};

static void *blocks_alloc(void *ctx, size_t n)
{
    struct blocks *b = ctx;
    return b->n < 4096 ? (b->p[b->n++] = malloc(n)) : NULL;
}

/* Scan log from `from` (at most max records) into c; *last as store_scan reports it. */
static int scan(struct store *s, uint64_t log, uint64_t from, size_t max, struct collect *c, uint64_t *last)
{
    struct blocks b = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &b};
    int rc = store_scan(s, log, from, max, SIZE_MAX, &out);
    for (size_t i = 0; i < out.n && c->n < 64; i++, c->n++) {
        const struct store_read *v = &out.v[i];
        c->pos[c->n] = v->pos;
        c->ix[c->n] = v->ix;
        snprintf(c->data[c->n], sizeof c->data[0], "%.*s|%.*s", (int)v->pk_len, v->pk, (int)v->data_len,
                 v->data);
    }
    if (last)
        *last = out.last;
    while (b.n)
        free(b.p[--b.n]);
    return rc;
}

static void append_assigns_increasing_positions_from_floor(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    struct store_rec r[3] = {{"a", 1, "x", 1, 0, 0}, {"b", 1, "", 0, 0, 0}, {"c", 1, "zz", 2, 0, 0}};
    CHECK(append1(s, 7, 100, r, 3) == 0);
    CHECK(r[0].pos == 100 && r[1].pos == 101 && r[2].pos == 102);
    /* a lower floor never moves positions backwards */
    CHECK(append1(s, 7, 5, r, 1) == 0);
    CHECK(r[0].pos == 103);
    /* a higher floor jumps ahead */
    CHECK(append1(s, 7, 1000, r, 1) == 0);
    CHECK(r[0].pos == 1000);
    /* another log is independent */
    CHECK(append1(s, 8, 1, r, 1) == 0);
    CHECK(r[0].pos == 1);
    struct collect c = {0};
    uint64_t last = 0;
    CHECK(scan(s, 7, 0, 100, &c, &last) == 0 && last == 1000);
    CHECK(c.n == 5);
    CHECK_STR(c.data[0], "a|x");
    CHECK_STR(c.data[1], "b|");
    CHECK_STR(c.data[2], "c|zz");
    store_close(s);
    tmpdir_remove(d);
}

static void positions_survive_reopen_and_trim(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    struct store_rec r[2] = {{"k", 1, "1", 1, 0, 0}, {"k", 1, "2", 1, 0, 0}};
    CHECK(append1(s, 1, 10, r, 2) == 0);
    size_t del = 0;
    CHECK(store_trim(s, 1, UINT64_MAX, 100, &del) == 0);
    CHECK(del == 2);
    store_close(s);
    s = open_at(d, 0);
    uint64_t last = 0, first = 99;
    CHECK(store_log_bounds(s, 1, &last, &first) == 0);
    CHECK(last == 11);
    CHECK(first == 0);
    CHECK(append1(s, 1, 0, r, 1) == 0);
    CHECK(r[0].pos == 12);
    store_close(s);
    tmpdir_remove(d);
}

/* Write log's last-position entry as kinesd wrote it before indexes (8 bytes: the position). */
static void put_old_last_entry(const char *dir, uint64_t log, uint64_t last)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    unsigned char k[16], v[8];
    for (int i = 0; i < 8; i++) {
        k[i] = (unsigned char)(log >> (56 - 8 * i));
        k[8 + i] = 0xFF;
        v[i] = (unsigned char)(last >> (56 - 8 * i));
    }
    MDB_val key = {16, k}, val = {8, v};
    CHECK(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0 &&
          mdb_env_open(env, dir, 0, 0644) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0 && mdb_dbi_open(txn, "log", 0, &dbi) == 0);
    CHECK(mdb_put(txn, dbi, &key, &val, 0) == 0 && mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

/* Each log's records are counted: indexes step by one from the first record's position whatever
 * the later positions, kept across a trim of every record and a reopen; a log whose last entry
 * is from before indexes counts on from its last position, above every index its records read
 * with. */
static void indexes_count_each_logs_records(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    struct store_rec r[3] = {{"a", 1, "x", 1, 0, 0}, {"b", 1, "y", 1, 0, 0}, {"c", 1, "z", 1, 0, 0}};
    CHECK(append1(s, 7, 100, r, 3) == 0 && r[0].ix == 100 && r[1].ix == 101 && r[2].ix == 102);
    CHECK(append1(s, 7, 5000, r, 1) == 0 && r[0].pos == 5000 && r[0].ix == 103);
    CHECK(append1(s, 8, 40, r, 2) == 0 && r[0].ix == 40 && r[1].ix == 41);
    struct collect c = {0};
    uint64_t last = 0;
    CHECK(scan(s, 7, 0, 100, &c, &last) == 0 && c.n == 4);
    CHECK(c.ix[0] == 100 && c.ix[1] == 101 && c.ix[2] == 102 && c.ix[3] == 103 && c.pos[3] == 5000);
    size_t del = 0;
    CHECK(store_trim(s, 7, UINT64_MAX, 100, &del) == 0 && del == 4);
    store_close(s);
    s = open_at(d, 0);
    struct blocks b = {.n = 0};
    struct store_records out = {.alloc = blocks_alloc, .actx = &b};
    CHECK(store_scan(s, 7, 0, 10, SIZE_MAX, &out) == 0 && out.n == 0 && out.last == 5000 &&
          out.last_ix == 103);
    CHECK(append1(s, 7, 0, r, 1) == 0 && r[0].pos == 5001 && r[0].ix == 104);
    out = (struct store_records){.alloc = blocks_alloc, .actx = &b};
    CHECK(store_scan(s, 7, 0, 10, SIZE_MAX, &out) == 0 && out.n == 1 && out.v[0].ix == 104 &&
          out.last_ix == 104);
    while (b.n)
        free(b.p[--b.n]);
    store_close(s);
    put_old_last_entry(d, 9, 77777);
    s = open_at(d, 0);
    CHECK(append1(s, 9, 0, r, 2) == 0 && r[0].pos == 77778 && r[0].ix == 77778 && r[1].ix == 77779);
    store_close(s);
    tmpdir_remove(d);
}

static void scan_respects_from_limit_and_stop(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    struct store_rec r[10];
    for (int i = 0; i < 10; i++)
        r[i] = (struct store_rec){"p", 1, "d", 1, 0, 0};
    CHECK(append1(s, 3, 1, r, 10) == 0);
    struct collect c = {0};
    CHECK(scan(s, 3, 5, 3, &c, NULL) == 0);
    CHECK(c.n == 3 && c.pos[0] == 5 && c.pos[2] == 7);
    uint64_t first = 0;
    size_t del;
    CHECK(store_trim(s, 3, 4, 100, &del) == 0 && del == 3);
    CHECK(store_log_bounds(s, 3, NULL, &first) == 0 && first == 4);
    CHECK(store_trim(s, 3, 100, 2, &del) == 0 && del == 2);
    CHECK(store_log_bounds(s, 3, NULL, &first) == 0 && first == 6);
    store_close(s);
    tmpdir_remove(d);
}

static void map_grows_instead_of_failing(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 1 << 20); /* 1 MiB map */
    static char big[64 * 1024];
    memset(big, 'x', sizeof big);
    struct store_rec r = {"k", 1, big, sizeof big, 0, 0};
    for (int i = 0; i < 100; i++) /* 6.4 MiB in all */
        CHECK(append1(s, 1, 0, &r, 1) == 0);
    uint64_t last;
    CHECK(store_log_bounds(s, 1, &last, NULL) == 0 && last == 100);
    store_close(s);
    tmpdir_remove(d);
}

static void meta_put_get_scan_delete(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    CHECK(store_meta_put(s, "s/a", "1", 1) == 0);
    CHECK(store_meta_put(s, "s/b", "22", 2) == 0);
    CHECK(store_meta_put(s, "t/c", "3", 1) == 0);
    char *v;
    size_t len;
    CHECK(store_meta_get(s, "s/b", &v, &len, NULL) == 0 && len == 2 && !strcmp(v, "22"));
    free(v);
    CHECK(store_meta_get(s, "nope", &v, &len, NULL) == STORE_NOT_FOUND);
    CHECK(store_meta_put(s, "s/a", NULL, 0) == 0);
    CHECK(store_meta_get(s, "s/a", &v, &len, NULL) == STORE_NOT_FOUND);
    store_close(s);
    tmpdir_remove(d);
}

struct writer {
    struct store *s;
    uint64_t log;
    int ok;
};

static void *write_many(void *arg)
{
    struct writer *w = arg;
    struct store_rec r = {"k", 1, "v", 1, 0, 0};
    uint64_t prev = 0;
    for (int i = 0; i < 200; i++) {
        if (append1(w->s, w->log, 0, &r, 1) || r.pos <= prev)
            w->ok = 0;
        prev = r.pos;
    }
    return NULL;
}

static void concurrent_appends_get_unique_positions(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    pthread_t t[8];
    struct writer w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct writer){s, (uint64_t)(i % 2), 1};
        pthread_create(&t[i], NULL, write_many, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].ok);
    }
    uint64_t last0, last1;
    CHECK(store_log_bounds(s, 0, &last0, NULL) == 0 && last0 == 800);
    CHECK(store_log_bounds(s, 1, &last1, NULL) == 0 && last1 == 800);
    store_close(s);
    tmpdir_remove(d);
}

static void one_commit_spans_several_logs(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    struct store_rec a[2] = {{"a", 1, "1", 1, 0, 0}, {"a", 1, "2", 1, 0, 0}}, b[1] = {{"b", 1, "3", 1, 0, 0}};
    struct store_batch bs[2] = {{10, 50, a, 2}, {11, 70, b, 1}};
    CHECK(store_append(s, bs, 2) == 0);
    CHECK(a[0].pos == 50 && a[1].pos == 51 && b[0].pos == 70);
    store_close(s);
    tmpdir_remove(d);
}

/* Run fn on a durable store in a child process that then dies without closing the store, as
 * a process killed with SIGKILL would: whatever the write-ahead log holds must be enough. */
static void in_crashing_child(const char *dir, void (*fn)(struct store *))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        check_failures_ = 0; /* the child's own checks, not the parent's so far */
        struct store_config cfg = {.dir = dir, .sync = true};
        struct store *s = NULL;
        if (store_open(&cfg, &s))
            _exit(3);
        fn(s);
        _exit(check_failures_ ? 1 : 0);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "child: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void put_two_logs(struct store *s)
{
    struct store_rec r[3] = {{"a", 1, "one", 3, 0, 0}, {"b", 1, "two", 3, 0, 0}, {"c", 1, "", 0, 0, 0}};
    CHECK(append1(s, 1, 100, r, 3) == 0 && r[0].pos == 100 && r[2].pos == 102);
    CHECK(append1(s, 2, 7, r, 1) == 0 && r[0].pos == 7);
    CHECK(append1(s, 1, 0, r + 1, 1) == 0 && r[1].pos == 103);
}

static void acknowledged_appends_survive_a_crash_before_they_are_flushed(void)
{
    char *d = tmpdir_new();
    in_crashing_child(d, put_two_logs);
    struct store *s = open_at(d, 0);
    struct collect c = {.n = 0};
    uint64_t last = 0;
    CHECK(scan(s, 1, 0, 100, &c, &last) == 0 && last == 103);
    CHECK(c.n == 4 && c.pos[0] == 100 && c.pos[3] == 103);
    CHECK_STR(c.data[0], "a|one");
    CHECK_STR(c.data[2], "c|");
    CHECK_STR(c.data[3], "b|two");
    CHECK(store_log_bounds(s, 2, &last, NULL) == 0 && last == 7);
    struct store_rec r = {"d", 1, "x", 1, 0, 0};
    CHECK(append1(s, 1, 0, &r, 1) == 0 && r.pos == 104); /* never a position twice */
    store_close(s);
    /* closed cleanly: everything is in the backend, and it reads the same */
    s = open_at(d, 0);
    c.n = 0;
    CHECK(scan(s, 1, 0, 100, &c, &last) == 0 && c.n == 5 && last == 104);
    store_close(s);
    tmpdir_remove(d);
}

static void put_and_drop(struct store *s)
{
    put_two_logs(s);
    CHECK(store_log_drop(s, 1) == 0);
    /* fenced: an append to it fails, and nothing of it is read */
    struct store_rec r = {"z", 1, "late", 4, 0, 0};
    CHECK(append1(s, 1, 0, &r, 1) == STORE_NOT_FOUND);
}

static void a_dropped_log_is_not_brought_back_by_a_crash(void)
{
    char *d = tmpdir_new();
    in_crashing_child(d, put_and_drop);
    struct store *s = open_at(d, 0);
    uint64_t last = 1, first = 1;
    CHECK(store_log_bounds(s, 1, &last, &first) == 0 && first == 0);
    struct collect c = {.n = 0};
    CHECK(scan(s, 1, 0, 100, &c, NULL) == 0 && c.n == 0);
    struct store_rec r = {"z", 1, "later", 5, 0, 0};
    CHECK(append1(s, 1, 0, &r, 1) == STORE_NOT_FOUND); /* still fenced after a restart */
    CHECK(store_log_bounds(s, 2, &last, NULL) == 0 && last == 7);
    store_close(s);
    tmpdir_remove(d);
}

/* Finding 10 of the storage review: the maintenance thread trims every shard it knows every few
 * hundred milliseconds, and each trim used to open a write transaction (LMDB's writer lock,
 * which every flush needs too) even when nothing was below the mark. It now reads first. */
static void a_trim_with_nothing_below_the_mark_opens_no_write_transaction(void)
{
    char *d = tmpdir_new();
    struct store *s = open_at(d, 0);
    struct store_rec r[2] = {{"a", 1, "x", 1, 0, 0}, {"b", 1, "y", 1, 0, 0}};
    CHECK(append1(s, 5, 1000, r, 2) == 0);
    size_t del = 9;
    CHECK(store_trim(s, 5, 1001, 0, &del) == 0 && del == 0); /* flushes the tail (a commit), deletes none */
    struct store_stats before, after;
    store_stats(s, &before);
    for (int i = 0; i < 50; i++) {
        CHECK(store_trim(s, 5, 1000, 100, &del) == 0 && del == 0);        /* nothing below 1000 */
        CHECK(store_trim(s, 99, UINT64_MAX, 100, &del) == 0 && del == 0); /* an empty log */
    }
    store_stats(s, &after);
    CHECK(after.db_write_txns == before.db_write_txns);
    CHECK(store_trim(s, 5, 1001, 100, &del) == 0 && del == 1); /* something to delete: one transaction */
    store_stats(s, &after);
    CHECK(after.db_write_txns == before.db_write_txns + 1);
    store_close(s);
    tmpdir_remove(d);
}

CHECK_RUN("storage", T(a_trim_with_nothing_below_the_mark_opens_no_write_transaction),
          T(one_commit_spans_several_logs), T(append_assigns_increasing_positions_from_floor),
          T(positions_survive_reopen_and_trim), T(indexes_count_each_logs_records),
          T(scan_respects_from_limit_and_stop), T(map_grows_instead_of_failing), T(meta_put_get_scan_delete),
          T(concurrent_appends_get_unique_positions),
          T(acknowledged_appends_survive_a_crash_before_they_are_flushed),
          T(a_dropped_log_is_not_brought_back_by_a_crash))
