/* Recovery on a full disk: when LMDB cannot take the replayed records, the engine serves them
 * from memory, refuses writes (STORE_FULL) until the flusher has stored them, keeps the log
 * until then (a crash meanwhile loses nothing), and works normally once there is room. The
 * full disk is a file size limit (RLIMIT_FSIZE) in a child process: LMDB's writes past it fail
 * with EFBIG, as they would with ENOSPC. */
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "store.h"
#include "tmpdir.h"

#define N 48
#define REC (64u << 10) /* 3 MiB in all */

struct share {
    uint64_t pos[N + 2];
    int served, refused, later_ok;
    uint64_t later_pos;
};

struct ctx {
    const char *dir;
    struct share *sh;
    bool recover_room; /* give the room back before dying */
};

static char data[REC];

static void fill(int i)
{
    memset(data, 'a' + i % 26, sizeof data);
    snprintf(data, 16, "%08d", i);
}

static void writer_child(void *arg)
{
    struct ctx *c = arg;
    struct store_config cfg = {.dir = c->dir, .sync = true, .io = &h_snap_io};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    if (!s)
        return;
    for (int i = 0; i < N; i++) {
        fill(i);
        CHECK(h_append1(s, 1, "k", data, sizeof data, &c->sh->pos[i]) == 0);
    }
}

static int all_there(struct store *s, const struct share *sh, int n)
{
    struct h_arena a = {0};
    struct store_read *v;
    size_t got;
    uint64_t last;
    int ok = h_scan_all(s, 1, &a, &v, &got, &last) == 0 && got >= (size_t)n;
    for (int i = 0; ok && i < n; i++) {
        fill(i);
        ok = v[i].pos == sh->pos[i] && v[i].data_len == REC && !memcmp(v[i].data, data, REC);
    }
    h_arena_free(&a);
    return ok;
}

static void full_disk_child(void *arg)
{
    struct ctx *c = arg;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 1u << 20; /* LMDB cannot grow its file past 1 MiB: 3 MiB do not fit */
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    struct store_config cfg = {.dir = c->dir, .sync = true};
    struct store *s = NULL;
    int rc = store_open(&cfg, &s);
    if (rc)
        fprintf(stderr, "recovery on a full disk: store_open answered %s\n", store_strerror(rc));
    CHECK(rc == 0);
    if (!s)
        return;
    c->sh->served = all_there(s, c->sh, N); /* from memory */
    uint64_t p = 0;
    c->sh->refused = h_append1(s, 2, "k", "x", 1, &p) == STORE_FULL;
    if (!c->recover_room)
        return; /* dies with the records in memory only */
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    rc = STORE_FULL;
    for (int i = 0; i < 1000 && rc == STORE_FULL; i++) { /* the flusher retries every 500 ms */
        rc = h_append1(s, 1, "k", "later", 5, &p);
        if (rc == STORE_FULL)
            usleep(10000);
    }
    c->sh->later_ok = rc == 0;
    c->sh->later_pos = p;
}

static void check_reopened(const char *dir, const struct share *sh, bool later)
{
    struct store_config cfg = {.dir = dir, .sync = false};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    if (!s)
        return;
    CHECK(all_there(s, sh, N));
    uint64_t last = 0, p = 0;
    CHECK(store_log_bounds(s, 1, &last, NULL) == 0 && last == (later ? sh->later_pos : sh->pos[N - 1]));
    CHECK(h_append1(s, 1, "k", "y", 1, &p) == 0 && p > last);
    store_close(s);
}

static void a_recovery_on_a_full_disk_serves_from_memory_and_loses_nothing(void)
{
    h_watchdog("full disk", 60);
    for (int room = 0; room < 2; room++) {
        char *d = tmpdir_new();
        h_watchdog_dir(d);
        struct share *sh = h_shared(sizeof *sh);
        struct ctx c = {d, sh, room == 1};
        CHECK(h_in_child(writer_child, &c));
        CHECK(h_use_snap(d) == 0); /* the records are in the log alone */
        CHECK(h_in_child(full_disk_child, &c));
        CHECK(sh->served);
        CHECK(sh->refused);
        if (room) {
            CHECK(sh->later_ok && sh->later_pos > sh->pos[N - 1]);
        }
        check_reopened(d, sh, room == 1);
        tmpdir_remove(d);
    }
    h_watchdog_off();
}

CHECK_RUN("storage/full-disk", T(a_recovery_on_a_full_disk_serves_from_memory_and_loses_nothing))
