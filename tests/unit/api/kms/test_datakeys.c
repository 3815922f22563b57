/* test_datakeys.c: the data keys with the real store in a temporary directory: records sealed
 * through the keyring read back across restarts, each start seals with new keys, a wrong root key
 * is refused before anything is written, and trims and drops destroy the keys no record needs. */
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "format.h"
#include "kms/datakeys.h"
#include "tmpdir.h"

#define HOUR_POS(h) (((uint64_t)(h)*KEYRING_BUCKET_MS) << 20)

static char *dir;
static char keyfile[300];

static int open_all(const char *root_file, struct datakeys **dk, struct store **s)
{
    struct datakeys_root root = {.file = root_file};
    int rc = datakeys_open(dir, &root, dk);
    if (rc)
        return rc;
    struct store_config cfg = {.dir = dir, .sync = false, .keyring = datakeys_keyring(*dk)};
    if (store_open(&cfg, s) || datakeys_attach(*dk, *s)) {
        datakeys_close(*dk);
        return -1;
    }
    return 0;
}

static void close_all(struct datakeys *dk, struct store *s)
{
    store_close(s);
    datakeys_close(dk);
}

static int put(struct store *s, uint64_t log, uint64_t floor, const char *data)
{
    struct store_rec r = {.pk = "pk", .pk_len = 2, .data = data, .data_len = strlen(data)};
    struct store_batch b = {.log = log, .floor = floor, .recs = &r, .n = 1};
    return store_append(s, &b, 1);
}

static char arena[1 << 16];
static size_t used;
static void *bump(void *ctx, size_t n)
{
    (void)ctx;
    n = (n + 15) & ~(size_t)15;
    if (used + n > sizeof arena)
        return NULL;
    used += n;
    return arena + used - n;
}

static int read_log(struct store *s, uint64_t log, struct store_records *out)
{
    used = 0;
    *out = (struct store_records){.alloc = bump};
    return store_scan(s, log, 0, 100, 1 << 20, out);
}

static int count_rows(void *ctx, const char *k, size_t kl, const char *v, size_t vl, uint64_t ver)
{
    (void)k, (void)kl, (void)v, (void)vl, (void)ver;
    ++*(int *)ctx;
    return 0;
}

static int rows(struct store *s, const char *prefix)
{
    int n = 0;
    store_meta_scan(s, prefix, count_rows, &n);
    return n;
}

static void write_root(const char *path, int mode)
{
    unsigned char k[32];
    char hex[65];
    randombytes_buf(k, sizeof k);
    sodium_bin2hex(hex, sizeof hex, k, sizeof k);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", hex);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static void test_records_sealed_under_data_keys_read_back_across_restarts(void)
{
    dir = tmpdir_new();
    snprintf(keyfile, sizeof keyfile, "%s/../root-%d.key", dir, (int)getpid());
    write_root(keyfile, 0600);
    struct datakeys *dk;
    struct store *s;
    CHECK(open_all(keyfile, &dk, &s) == 0);
    CHECK(put(s, 1, HOUR_POS(100), "one") == 0);
    CHECK(put(s, 1, HOUR_POS(100) + 5, "two") == 0);
    CHECK(rows(s, "dk/") == 1); /* one key for the log's bucket */
    CHECK(put(s, 1, HOUR_POS(101), "three") == 0);
    CHECK(rows(s, "dk/") == 2);
    close_all(dk, s);
    CHECK(open_all(keyfile, &dk, &s) == 0);
    struct store_records out;
    CHECK(read_log(s, 1, &out) == 0 && out.n == 3);
    CHECK(out.n == 3 && out.v[2].data_len == 5 && !memcmp(out.v[2].data, "three", 5));
    CHECK(put(s, 1, HOUR_POS(101) + 99, "four") == 0);
    CHECK(rows(s, "dk/") == 3); /* a new start seals with a new key */
    close_all(dk, s);
    /* a wrong root key: refused, and node.key is as it was */
    char wrong[320];
    snprintf(wrong, sizeof wrong, "%s.wrong", keyfile);
    write_root(wrong, 0600);
    CHECK(open_all(wrong, &dk, &s) == -2);
    write_root(wrong, 0644);
    CHECK(open_all(wrong, &dk, &s) == -2);
    remove(wrong);
    CHECK(open_all(keyfile, &dk, &s) == 0);
    CHECK(read_log(s, 1, &out) == 0 && out.n == 4);
    close_all(dk, s);
    remove(keyfile);
    tmpdir_remove(dir);
}

static void test_a_trim_destroys_the_keys_of_buckets_no_record_is_left_in(void)
{
    dir = tmpdir_new();
    struct datakeys *dk;
    struct store *s;
    CHECK(open_all(NULL, &dk, &s) == 0); /* the data directory's own root key */
    CHECK(put(s, 2, HOUR_POS(10), "a") == 0);
    CHECK(put(s, 2, HOUR_POS(11), "b") == 0);
    CHECK(put(s, 2, HOUR_POS(12), "c") == 0);
    CHECK(put(s, 3, HOUR_POS(10), "other log") == 0);
    /* a record sealed by hand under bucket 10's key, to try after the shred */
    const struct store_keyring *kr = datakeys_keyring(dk);
    struct format_sealer sealer;
    format_sealer_init(&sealer, kr);
    struct store_rec r = {.pk = "p", .pk_len = 1, .data = "x", .data_len = 1};
    char sealed[64];
    size_t len;
    CHECK(format_seal(&sealer, sealed, 2, HOUR_POS(10) + 7, 1, 1, &r, &len) == 0);
    format_sealer_done(&sealer);
    CHECK(format_check(kr, sealed, len, 2, HOUR_POS(10) + 7) == 0);
    size_t del;
    CHECK(store_trim(s, 2, HOUR_POS(11) + 1, 100, &del) == 0 && del == 2);
    CHECK(rows(s, "dk/0000000000000002/") == 1); /* bucket 12's key only */
    CHECK(rows(s, "dk/0000000000000003/") == 1);
    CHECK(format_check(kr, sealed, len, 2, HOUR_POS(10) + 7) == STORE_CORRUPT);
    struct store_records out;
    CHECK(read_log(s, 2, &out) == 0 && out.n == 1 && !memcmp(out.v[0].data, "c", 1));
    int rc;
    while ((rc = store_log_drop(s, 3)) == STORE_BUSY)
        ;
    CHECK(rc == 0);
    CHECK(rows(s, "dk/0000000000000003/") == 0);
    close_all(dk, s);
    CHECK(open_all(NULL, &dk, &s) == 0); /* the keys left load again */
    CHECK(read_log(s, 2, &out) == 0 && out.n == 1);
    close_all(dk, s);
    tmpdir_remove(dir);
}

/* The store of one test: lmdb in dir, or (pg_url set) a fresh PostgreSQL database, with the
 * keyring or (keyring false) without. */
static char pg_url[1024];

static int open_store(bool keyring, struct datakeys **dk, struct store **s)
{
    *dk = NULL;
    if (keyring) {
        struct datakeys_root root = {0};
        if (datakeys_open(pg_url[0] ? NULL : dir, &root, dk))
            return -1;
    }
    struct store_config cfg = {.engine = pg_url[0] ? "pg" : NULL,
                               .dir = pg_url[0] ? pg_url : dir,
                               .sync = false,
                               .keyring = *dk ? datakeys_keyring(*dk) : NULL};
    if (store_open(&cfg, s) || (*dk && datakeys_attach(*dk, *s))) {
        datakeys_close(*dk);
        return -1;
    }
    return 0;
}

static void trim_deletes_keys_in_its_own_transaction(void)
{
    struct datakeys *dk;
    struct store *s;
    CHECK(open_store(true, &dk, &s) == 0);
    const char *prefix = "dk/0000000000000005/";
    CHECK(put(s, 5, HOUR_POS(10), "a") == 0);
    CHECK(put(s, 5, HOUR_POS(10) + 1, "b") == 0);
    CHECK(put(s, 5, HOUR_POS(11), "c") == 0);
    CHECK(rows(s, prefix) == 2);
    size_t del;
    /* a partial trim leaves a record of bucket 10: its key stays, and the record opens */
    CHECK(store_trim(s, 5, HOUR_POS(11) + 1, 1, &del) == 0 && del == 1);
    CHECK(rows(s, prefix) == 2);
    struct store_records out;
    CHECK(read_log(s, 5, &out) == 0 && out.n == 2 && !memcmp(out.v[0].data, "b", 1));
    /* the trim that deletes bucket 10's last record deletes its key with it, in the same call */
    CHECK(store_trim(s, 5, HOUR_POS(11) + 1, 1, &del) == 0 && del == 1);
    CHECK(rows(s, prefix) == 1);
    /* emptied below a point inside bucket 11: its key stays (records may still come) ... */
    CHECK(store_trim(s, 5, HOUR_POS(11) + 1, 100, &del) == 0 && del == 1);
    CHECK(rows(s, prefix) == 1);
    /* ... until the trim point passes the bucket's end: then a trim with no record to delete
       deletes it */
    CHECK(store_trim(s, 5, HOUR_POS(12), 100, &del) == 0 && del == 0);
    CHECK(rows(s, prefix) == 0);
    /* a key whose records went without it (trimmed without the keyring, as a store written
       before keys were deleted with their records may hold) goes at the next trim */
    CHECK(put(s, 5, HOUR_POS(20), "d") == 0);
    CHECK(put(s, 5, HOUR_POS(21), "e") == 0);
    store_close(s);
    datakeys_close(dk);
    struct datakeys *none;
    CHECK(open_store(false, &none, &s) == 0);
    CHECK(store_trim(s, 5, HOUR_POS(21), 100, &del) == 0 && del == 1);
    store_close(s);
    CHECK(open_store(true, &dk, &s) == 0);
    CHECK(rows(s, prefix) == 2);
    CHECK(store_trim(s, 5, HOUR_POS(21), 100, &del) == 0 && del == 0);
    CHECK(rows(s, prefix) == 1);
    CHECK(read_log(s, 5, &out) == 0 && out.n == 1 && !memcmp(out.v[0].data, "e", 1));
    store_close(s);
    datakeys_close(dk);
}

static void test_a_trim_deletes_data_keys_in_its_own_transaction_lmdb(void)
{
    dir = tmpdir_new();
    pg_url[0] = 0;
    trim_deletes_keys_in_its_own_transaction();
    tmpdir_remove(dir);
}

/* A fresh database named name on the server of KINESD_PG_URL, into pg_url; false without one. */
static bool fresh_pg(const char *name)
{
    const char *base = getenv("KINESD_PG_URL");
    const char *q = base ? strstr(base, "/postgres?") : NULL;
    if (!q)
        return false;
    PGconn *c = PQconnectdb(base);
    char sql[256];
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    snprintf(pg_url, sizeof pg_url, "%.*s/%s%s", (int)(q - base), base, name, q + strlen("/postgres"));
    return ok;
}

static void test_a_trim_deletes_data_keys_in_its_own_transaction_pg(void)
{
    if (!fresh_pg("t_dk_trim")) {
        fprintf(stderr, "  (skipped: KINESD_PG_URL is not set)\n");
        return;
    }
    trim_deletes_keys_in_its_own_transaction();
    pg_url[0] = 0;
}

struct sealer {
    struct datakeys *dk;
    uint64_t log, bucket, id;
    int rc;
    bool done; /* atomic */
};

static void *seal_one(void *arg)
{
    struct sealer *t = arg;
    const struct store_keyring *kr = datakeys_keyring(t->dk);
    const unsigned char *key;
    t->rc = kr->seal_key(kr->ctx, t->log, t->bucket, 1, &t->id, &key);
    __atomic_store_n(&t->done, true, __ATOMIC_RELEASE);
    return NULL;
}

static void *switch_one(void *arg)
{
    struct sealer *t = arg;
    t->rc = datakeys_stream_key(t->dk, 9, NULL, "00000000-0000-4000-8000-000000000009", INT64_MAX / 2);
    __atomic_store_n(&t->done, true, __ATOMIC_RELEASE);
    return NULL;
}

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Whether cond (an atomic flag, or n lock waiters in PostgreSQL when flag is NULL) came within
 * 20 s: a bound on a wait, not a timing measurement. */
static bool eventually(const bool *flag, PGconn *watch, int waiters)
{
    for (int i = 0; i < 2000; i++, pause_ms(10)) {
        if (flag && __atomic_load_n(flag, __ATOMIC_ACQUIRE))
            return true;
        if (!flag) {
            PGresult *r = PQexec(watch, "SELECT count(*) FROM pg_locks WHERE NOT granted");
            bool ok =
                PQresultStatus(r) == PGRES_TUPLES_OK && strtol(PQgetvalue(r, 0, 0), NULL, 10) >= waiters;
            PQclear(r);
            if (ok)
                return true;
        }
    }
    return false;
}

/* A data key being created holds no lock across its store round trip: while PostgreSQL keeps
 * the creation's write waiting (another session locks the rows table), the keyring still
 * answers what needs no I/O (a stream's key change), and two threads wanting the same bucket's
 * key make one key between them. */
static void test_creating_a_data_key_holds_no_lock_across_its_round_trip_pg(void)
{
    if (!fresh_pg("t_dk_nolock")) {
        fprintf(stderr, "  (skipped: KINESD_PG_URL is not set)\n");
        return;
    }
    struct datakeys *dk;
    struct store *s;
    CHECK(open_store(true, &dk, &s) == 0);
    PGconn *lock = PQconnectdb(pg_url), *watch = PQconnectdb(pg_url);
    CHECK(PQstatus(lock) == CONNECTION_OK && PQstatus(watch) == CONNECTION_OK);
    PQclear(PQexec(lock, "BEGIN"));
    PQclear(PQexec(lock, "LOCK TABLE kinesd_rows IN ACCESS EXCLUSIVE MODE"));
    struct sealer a = {.dk = dk, .log = 8, .bucket = 10}, b = a, sw = {.dk = dk};
    pthread_t ta, tb, tsw;
    pthread_create(&ta, NULL, seal_one, &a);
    CHECK(eventually(NULL, watch, 1)); /* a's creation waits on the lock */
    pthread_create(&tb, NULL, seal_one, &b);
    pthread_create(&tsw, NULL, switch_one, &sw);
    CHECK(eventually(&sw.done, NULL, 0)); /* not behind a's round trip */
    CHECK(!__atomic_load_n(&a.done, __ATOMIC_ACQUIRE));
    PQclear(PQexec(lock, "COMMIT"));
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tsw, NULL);
    CHECK(a.rc == 0 && b.rc == 0 && sw.rc == 0);
    CHECK(a.id == b.id);                         /* b waited for a's key */
    CHECK(rows(s, "dk/0000000000000008/") == 1); /* and made none of its own */
    PQfinish(lock);
    PQfinish(watch);
    close_all(dk, s);
    pg_url[0] = 0;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    static const struct check_test tests[] = {
        {"records sealed under data keys read back across restarts",
         test_records_sealed_under_data_keys_read_back_across_restarts},
        {"a trim destroys the keys of buckets no record is left in",
         test_a_trim_destroys_the_keys_of_buckets_no_record_is_left_in},
        {"a trim deletes data keys in its own transaction (lmdb)",
         test_a_trim_deletes_data_keys_in_its_own_transaction_lmdb},
        {"a trim deletes data keys in its own transaction (PostgreSQL)",
         test_a_trim_deletes_data_keys_in_its_own_transaction_pg},
        {"creating a data key holds no lock across its round trip (PostgreSQL)",
         test_creating_a_data_key_holds_no_lock_across_its_round_trip_pg},
    };
    return check_main("datakeys", tests, sizeof tests / sizeof tests[0]);
}
