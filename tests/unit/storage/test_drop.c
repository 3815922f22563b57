/* Finding 4: a dropped log must not come back after a crash, also when the process that drops
 * it only replayed its frames (they were written by the process before), and appends racing
 * the drop are fenced: none started after the drop returned succeeds, and nothing of the log
 * is read afterwards, before or after a crash. */
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "store.h"
#include "tmpdir.h"

struct share {
    uint64_t acked8[64];
    int n8;
    int replayed7;
    int drop_rc;
    int late_ok;    /* appends started after the drop returned that succeeded */
    int late_total; /* ... and their number */
};

struct ctx {
    const char *dir;
    struct share *sh;
};

static struct store *open_sync(const char *dir)
{
    struct store_config cfg = {.dir = dir, .sync = true, .io = &h_snap_io};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    return s;
}

/* First process: records of logs 7 and 8, then death. */
static void writer_child(void *arg)
{
    struct ctx *c = arg;
    struct store *s = open_sync(c->dir);
    if (!s)
        return;
    for (int i = 0; i < 5; i++)
        CHECK(h_append1(s, 7, "k", "seven", 5, NULL) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(h_append1(s, 8, "k", "eight", 5, &c->sh->acked8[c->sh->n8++]) == 0);
}

struct racer {
    struct store *s;
    volatile int *stop;
    volatile int *dropped; /* the drop returned 0 */
    int late_ok, late_total;
};

static void *race_appends(void *arg)
{
    struct racer *r = arg;
    while (!*r->stop) {
        int after = *r->dropped;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        int rc = h_append1(r->s, 7, "k", "racing", 6, NULL);
        if (after) {
            r->late_total++;
            r->late_ok += rc == 0;
        }
    }
    return NULL;
}

/* Second process: recovery replays log 7 (never written by this process), appends race a
 * drop of it, more records of log 8, then death. */
static void dropper_child(void *arg)
{
    struct ctx *c = arg;
    struct store *s = open_sync(c->dir);
    if (!s)
        return;
    struct h_arena a = {0};
    struct store_read *v;
    size_t n;
    uint64_t last;
    CHECK(h_scan_all(s, 7, &a, &v, &n, &last) == 0);
    c->sh->replayed7 = (int)n;
    h_arena_free(&a);
    volatile int stop = 0, dropped = 0;
    struct racer r[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (struct racer){s, &stop, &dropped, 0, 0};
        pthread_create(&t[i], NULL, race_appends, &r[i]);
    }
    usleep(2000);
    int rc;
    while ((rc = store_log_drop(s, 7)) == STORE_BUSY)
        ;
    c->sh->drop_rc = rc;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    dropped = 1;
    usleep(5000);
    stop = 1;
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        c->sh->late_ok += r[i].late_ok;
        c->sh->late_total += r[i].late_total;
    }
    CHECK(h_scan_all(s, 7, &a, &v, &n, &last) == 0 && n == 0);
    h_arena_free(&a);
    for (int i = 0; i < 2; i++)
        CHECK(h_append1(s, 8, "k", "eight", 5, &c->sh->acked8[c->sh->n8++]) == 0);
}

static void check_after(const char *dir, const struct share *sh)
{
    struct store_config cfg = {.dir = dir, .sync = false};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    if (!s)
        return;
    struct h_arena a = {0};
    struct store_read *v;
    size_t n = 9;
    uint64_t last, first = 1;
    CHECK(h_scan_all(s, 7, &a, &v, &n, &last) == 0);
    if (n)
        fprintf(stderr, "the dropped log came back with %zu records\n", n);
    CHECK(n == 0);
    CHECK(store_log_bounds(s, 7, NULL, &first) == 0 && first == 0);
    CHECK(h_append1(s, 7, "k", "after", 5, NULL) == STORE_NOT_FOUND);
    h_arena_free(&a);
    CHECK(h_scan_all(s, 8, &a, &v, &n, &last) == 0 && n == (size_t)sh->n8);
    for (int i = 0; i < sh->n8 && (size_t)i < n; i++)
        CHECK(v[i].pos == sh->acked8[i]);
    h_arena_free(&a);
    store_close(s);
}

static void a_log_dropped_after_a_replay_stays_dropped_and_racing_appends_are_fenced(void)
{
    h_watchdog("drop", 60);
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct share *sh = h_shared(sizeof *sh);
    struct ctx c = {d, sh};
    CHECK(h_in_child(writer_child, &c));
    CHECK(h_use_snap(d) == 0); /* the database as of its last sync: log 7 is in the log alone */
    CHECK(h_in_child(dropper_child, &c));
    CHECK(sh->replayed7 == 5);
    CHECK(sh->drop_rc == 0);
    if (sh->late_ok)
        fprintf(stderr, "%d of %d appends started after the drop succeeded\n", sh->late_ok, sh->late_total);
    CHECK(sh->late_ok == 0 && sh->late_total > 0);
    /* a power loss right after the drop (the database as of the drop's sync), or a crash */
    char *t = tmpdir_new();
    CHECK(h_copy_store(d, t) == 0);
    char snap_from[512], snap_to[512];
    h_path(snap_from, sizeof snap_from, d, "data.snap");
    h_path(snap_to, sizeof snap_to, t, "data.snap");
    CHECK(h_copy(snap_from, snap_to) == 0);
    CHECK(h_use_snap(t) == 0);
    check_after(t, sh);
    check_after(d, sh);
    tmpdir_remove(t);
    tmpdir_remove(d);
    h_watchdog_off();
}

CHECK_RUN("storage/drop", T(a_log_dropped_after_a_replay_stays_dropped_and_racing_appends_are_fenced))
