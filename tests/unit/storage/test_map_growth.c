/* Finding 1: a scan of 512 KiB or more while the database map grows. A scan that takes the
 * map's resize lock twice deadlocks with a grower waiting between the two (the lock prefers
 * writers): every read, then every write, would hang. Two threads scan 640 KiB of one log over
 * and over while a third appends to another log from a map of 1 MiB, so the flusher grows the
 * map several times under the scans. A watchdog fails the binary instead of hanging. */
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "store.h"
#include "tmpdir.h"

#define REC (64u << 10)
#define SCANNED 10 /* records of log 1: 640 KiB per scan */
#define GROW 400   /* records appended to log 2: 25 MiB, from a 1 MiB map */

struct ctx {
    struct store *s;
    volatile int stop;
    unsigned scans, short_scans, errors;
};

static void *scanner(void *arg)
{
    struct ctx *c = arg;
    while (!c->stop) {
        struct h_arena a = {0};
        struct store_records out = {.alloc = h_alloc, .actx = &a};
        int rc = store_scan(c->s, 1, 0, 1000, SIZE_MAX, &out);
        __atomic_add_fetch(rc                         ? &c->errors
                           : out.bytes < (512u << 10) ? &c->short_scans
                                                      : &c->scans,
                           1, __ATOMIC_RELAXED);
        h_arena_free(&a);
    }
    return NULL;
}

static void a_large_scan_during_map_growth_does_not_deadlock(void)
{
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    h_watchdog("scan during map growth", 60);
    static char data[REC];
    memset(data, 'g', sizeof data);
    struct store_config cfg = {.dir = d, .sync = false, .initial_map = 1u << 20};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    for (int i = 0; i < SCANNED; i++)
        CHECK(h_append1(s, 1, "k", data, sizeof data, NULL) == 0);
    store_close(s); /* log 1 is in the database now */
    CHECK(store_open(&cfg, &s) == 0);
    struct store_stats st0, st;
    store_stats(s, &st0);
    struct ctx c = {.s = s};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, scanner, &c);
    unsigned ok = 0;
    for (int i = 0; i < GROW; i++) {
        ok += h_append1(s, 2, "k", data, sizeof data, NULL) == 0;
        if (i % 50 == 0) /* let the scans overlap each growth */
            usleep(2000);
    }
    /* wait for the flusher to store the rest (a flush is what grows the map) */
    for (int i = 0; i < 2000; i++) {
        store_stats(s, &st);
        if (!st.unflushed_bytes)
            break;
        usleep(2000);
    }
    c.stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    h_watchdog_off();
    store_stats(s, &st);
    CHECK(ok == GROW);
    CHECK(c.errors == 0 && c.short_scans == 0);
    CHECK(c.scans > 0);
    CHECK(st.unflushed_bytes == 0);
    CHECK(st.db_bytes > st0.db_bytes + (16u << 20)); /* the map grew, from 1 MiB, several times */
    uint64_t last = 0;
    CHECK(store_log_bounds(s, 2, &last, NULL) == 0 && last == GROW);
    printf("map growth: %u scans of 640 KiB, the database grew from %llu to %llu bytes\n", c.scans,
           (unsigned long long)st0.db_bytes, (unsigned long long)st.db_bytes);
    store_close(s);
    tmpdir_remove(d);
}

CHECK_RUN("storage/map-growth", T(a_large_scan_during_map_growth_does_not_deadlock))
