/* Fault injection: the "fault" engine fails calls of the engine table, its I/O shim fails,
 * shortens or blocks the write-ahead log's writes and syncs. Every path must answer a clean
 * error (no crash, no hang: a watchdog fails the binary instead), acknowledge nothing it did
 * not make durable, and lose nothing it acknowledged (each test reopens and checks).
 * Also here, as they need a blocked sync: checkpoints do not stop writers, a torn segment
 * header after a retire loses nothing, backpressure (STORE_BUSY) while the flusher is stuck,
 * and a tail that grows while it is stuck is read from the log, not held in memory. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fault/fault.h"
#include "harness.h"
#include "store.h"
#include "tmpdir.h"

#define SEG_HDR 4096

static struct store *open_with(const char *dir, const char *engine, bool sync, uint64_t max_unflushed)
{
    struct store_config cfg = {
        .engine = engine, .dir = dir, .sync = sync, .max_unflushed = max_unflushed, .io = fault_io()};
    struct store *s = NULL;
    int rc = store_open(&cfg, &s);
    if (rc)
        fprintf(stderr, "store_open(%s): %s\n", dir, store_strerror(rc));
    CHECK(rc == 0);
    return rc ? NULL : s;
}

/* The record at pos in log has data `want` (and is the only one there). */
static int has(struct store *s, uint64_t log, uint64_t pos, const char *want)
{
    struct h_arena a = {0};
    struct store_records out = {.alloc = h_alloc, .actx = &a};
    int ok = store_scan(s, log, pos, 1, SIZE_MAX, &out) == 0 && out.n == 1 && out.v[0].pos == pos &&
             out.v[0].data_len == strlen(want) && !memcmp(out.v[0].data, want, out.v[0].data_len);
    h_arena_free(&a);
    return ok;
}

/* Data of log in position order, joined by ','; positions into pos (up to 16). */
static void contents(struct store *s, uint64_t log, char *buf, size_t cap, uint64_t *pos, size_t *n)
{
    struct h_arena a = {0};
    struct store_read *v;
    uint64_t last;
    size_t cnt = 0, o = 0;
    buf[0] = 0;
    *n = 0;
    if (h_scan_all(s, log, &a, &v, &cnt, &last) == 0)
        for (size_t i = 0; i < cnt; i++) {
            o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s%.*s", i ? "," : "", (int)v[i].data_len,
                                  v[i].data);
            if (i < 16)
                pos[i] = v[i].pos;
            *n = i + 1;
        }
    h_arena_free(&a);
}

/* ---- the engine table ---- */

static void failed_engine_calls_answer_their_code_and_change_nothing(void)
{
    h_watchdog("engine faults", 60);
    fault_reset();
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct store *s = open_with(d, "fault:lmdb", true, 0);
    if (!s)
        return;
    CHECK(!strcmp(store_engine_name(s), "fault"));
    uint64_t p1 = 0, p2 = 0, p3 = 0;
    CHECK(h_append1(s, 1, "k", "one", 3, &p1) == 0);
    fault_fail(FAULT_APPEND, 1, STORE_IO);
    CHECK(h_append1(s, 1, "k", "lost", 4, &p2) == STORE_IO);
    CHECK(h_append1(s, 1, "k", "two", 3, &p2) == 0 && p2 > p1);
    fault_fail(FAULT_APPEND, 1, STORE_BUSY);
    CHECK(h_append1(s, 1, "k", "busy", 4, &p3) == STORE_BUSY);
    /* reads */
    fault_fail(FAULT_SCAN, 1, STORE_IO);
    struct h_arena a = {0};
    struct store_records out = {.alloc = h_alloc, .actx = &a};
    CHECK(store_scan(s, 1, 0, 10, SIZE_MAX, &out) == STORE_IO && out.n == 0);
    h_arena_free(&a);
    fault_fail(FAULT_LOG_BOUNDS, 1, STORE_IO);
    uint64_t last = 0, first = 0;
    CHECK(store_log_bounds(s, 1, &last, &first) == STORE_IO);
    CHECK(store_log_bounds(s, 1, &last, &first) == 0 && last == p2 && first == p1);
    /* trim and drop fail: the records stay */
    size_t del = 9;
    fault_fail(FAULT_TRIM, 1, STORE_FULL);
    CHECK(store_trim(s, 1, p2, 10, &del) == STORE_FULL && del == 0);
    fault_fail(FAULT_LOG_DROP, 1, STORE_IO);
    CHECK(store_log_drop(s, 1) == STORE_IO);
    CHECK(has(s, 1, p1, "one") && has(s, 1, p2, "two"));
    /* metadata: a failed compare-and-set writes nothing and keeps the version */
    struct store_row r = {.key = "s/x", .version = 0, .val = "v1", .len = 2};
    CHECK(store_meta_cas(s, &r, 1) == 0 && r.version == 1);
    struct store_row r2 = {.key = "s/x", .version = 1, .val = "v2", .len = 2};
    fault_fail(FAULT_META_CAS, 1, STORE_FULL);
    CHECK(store_meta_cas(s, &r2, 1) == STORE_FULL);
    fault_fail(FAULT_META_GET, 1, STORE_IO);
    char *v = NULL;
    size_t len = 0;
    uint64_t ver = 0;
    CHECK(store_meta_get(s, "s/x", &v, &len, &ver) == STORE_IO);
    CHECK(store_meta_get(s, "s/x", &v, &len, &ver) == 0 && ver == 1 && len == 2 && !memcmp(v, "v1", 2));
    free(v);
    fault_fail(FAULT_META_SCAN, 1, STORE_IO);
    CHECK(store_meta_scan(s, "s/", NULL, NULL) == STORE_IO);
    struct store_watch *w = NULL;
    fault_fail(FAULT_WATCH, 1, STORE_NOMEM);
    CHECK(store_watch(s, 1, 0, NULL, NULL, &w) == STORE_NOMEM);
    CHECK(fault_calls(FAULT_APPEND) == 4 && fault_calls(FAULT_META_CAS) == 2);
    store_close(s);
    /* after a restart: exactly what was acknowledged */
    s = open_with(d, "lmdb", false, 0);
    if (s) {
        char buf[256];
        uint64_t pos[16];
        size_t n;
        contents(s, 1, buf, sizeof buf, pos, &n);
        CHECK_STR(buf, "one,two");
        CHECK(n == 2 && pos[0] == p1 && pos[1] == p2);
        CHECK(store_meta_get(s, "s/x", &v, &len, &ver) == 0 && ver == 1 && !memcmp(v, "v1", 2));
        free(v);
        store_close(s);
    }
    tmpdir_remove(d);
    h_watchdog_off();
}

/* ---- failed writes of the log ---- */

struct wr_case {
    const char *name;
    enum fault_action act;
    int err;
    int want;         /* what the append of "B" answers */
    const char *kept; /* the log after a crash and a restart */
};

struct wr_share {
    uint64_t pa, pb, pc;
    int rb, rc_;
};

struct wr_ctx {
    const char *dir;
    const struct wr_case *c;
    struct wr_share *sh;
};

static void write_fault_child(void *arg)
{
    struct wr_ctx *x = arg;
    fault_reset();
    struct store *s = open_with(x->dir, "fault:lmdb", true, 0);
    if (!s)
        return;
    CHECK(h_append1(s, 1, "k", "A", 1, &x->sh->pa) == 0);
    fault_io_arm(FAULT_IO_WRITE, 1, x->c->act, x->c->err);
    x->sh->rb = h_append1(s, 1, "k", "B", 1, &x->sh->pb);
    CHECK(fault_io_calls(FAULT_IO_WRITE) >= 2); /* the fault fired */
    /* a failed write does not break the log: the next append is written and acknowledged */
    x->sh->rc_ = h_append1(s, 1, "k", "C", 1, &x->sh->pc);
    /* die without closing */
}

static void failed_or_short_log_writes_acknowledge_nothing_and_lose_nothing(void)
{
    h_watchdog("log write faults", 60);
    static const struct wr_case cases[] = {
        {"EIO", FAULT_FAIL, EIO, STORE_IO, "A,C"},
        {"ENOSPC", FAULT_FAIL, ENOSPC, STORE_FULL, "A,C"},
        {"short write", FAULT_SHORT, 0, 0, "A,B,C"},
        {"short write then EIO (torn)", FAULT_SHORT_FAIL, EIO, STORE_IO, "A,C"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *d = tmpdir_new();
        h_watchdog_dir(d);
        h_watchdog_dir(d);
        struct wr_share *sh = h_shared(sizeof *sh);
        struct wr_ctx x = {d, &cases[i], sh};
        CHECK(h_in_child(write_fault_child, &x));
        if (sh->rb != cases[i].want || sh->rc_ != 0)
            fprintf(stderr, "%s: B answered %s, C %s\n", cases[i].name, store_strerror(sh->rb),
                    store_strerror(sh->rc_));
        CHECK(sh->rb == cases[i].want);
        CHECK(sh->rc_ == 0);
        struct store *s = open_with(d, "lmdb", false, 0);
        if (s) {
            char buf[256];
            uint64_t pos[16];
            size_t n;
            contents(s, 1, buf, sizeof buf, pos, &n);
            if (strcmp(buf, cases[i].kept))
                fprintf(stderr, "%s: after a crash the log holds %s\n", cases[i].name, buf);
            CHECK_STR(buf, cases[i].kept);
            CHECK(has(s, 1, sh->pa, "A") && has(s, 1, sh->pc, "C"));
            if (sh->rb == 0)
                CHECK(has(s, 1, sh->pb, "B"));
            uint64_t p = 0, last = 0;
            CHECK(store_log_bounds(s, 1, &last, NULL) == 0 && last >= sh->pc);
            CHECK(h_append1(s, 1, "k", "D", 1, &p) == 0 && p > last);
            store_close(s);
        }
        tmpdir_remove(d);
    }
    h_watchdog_off();
}

/* ---- failed syncs (finding 3) ---- */

static void a_failed_sync_is_never_acknowledged_and_breaks_the_log_until_restart(void)
{
    h_watchdog("sync failure", 60);
    fault_reset();
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct store *s = open_with(d, "fault:lmdb", true, 0);
    if (!s)
        return;
    uint64_t pa = 0, pb = 0, pc = 0;
    CHECK(h_append1(s, 1, "k", "A", 1, &pa) == 0);
    fault_io_arm(FAULT_IO_SYNC, 1, FAULT_FAIL, EIO);
    CHECK(h_append1(s, 1, "k", "B", 1, &pb) == STORE_UNAVAILABLE);
    /* every later append fails, without touching the log */
    unsigned writes = fault_io_calls(FAULT_IO_WRITE);
    for (int i = 0; i < 3; i++)
        CHECK(h_append1(s, 2, "k", "C", 1, &pc) == STORE_UNAVAILABLE);
    CHECK(fault_io_calls(FAULT_IO_WRITE) == writes);
    CHECK(has(s, 1, pa, "A")); /* reads still work */
    store_close(s);
    /* a restart recovers: A is there, C never is, appends work again above every position */
    s = open_with(d, "lmdb", true, 0);
    if (s) {
        CHECK(has(s, 1, pa, "A"));
        uint64_t last1 = 0, last2 = 0, p = 0;
        CHECK(store_log_bounds(s, 2, &last2, NULL) == 0 && last2 == 0);
        CHECK(store_log_bounds(s, 1, &last1, NULL) == 0);
        CHECK(h_append1(s, 1, "k", "D", 1, &p) == 0 && p > last1 && p > pa);
        store_close(s);
    }
    tmpdir_remove(d);
    h_watchdog_off();
}

struct appender {
    struct store *s;
    uint64_t log;
    const char *data;
    uint64_t pos;
    int rc;
    volatile int done;
};

static void *append_thread(void *arg)
{
    struct appender *a = arg;
    a->rc = h_append1(a->s, a->log, "k", a->data, strlen(a->data), &a->pos);
    a->done = 1;
    return NULL;
}

/* Two frames in flight, each synced by its own committer; one sync fails. first_fails: the
 * earlier frame's sync fails (after the later one's succeeded); else the later frame's sync
 * fails while the earlier one is still running, and the earlier one then succeeds (Linux tells
 * one caller of a write-back error, not both). Neither may be acknowledged. */
static void two_in_flight(bool first_fails)
{
    fault_reset();
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct store *s = open_with(d, "fault:lmdb", true, 0);
    if (!s)
        return;
    uint64_t p0 = 0;
    CHECK(h_append1(s, 1, "k", "acked", 5, &p0) == 0);
    /* the first frame's sync blocks (and then fails, or succeeds); the second one's succeeds,
     * or fails, at once */
    fault_io_arm(FAULT_IO_SYNC, 1, first_fails ? FAULT_BLOCK_FAIL : FAULT_BLOCK, EIO);
    if (!first_fails)
        fault_io_arm(FAULT_IO_SYNC, 2, FAULT_FAIL, EIO);
    unsigned base = fault_io_returned(FAULT_IO_SYNC);
    struct appender a = {s, 1, "first", 0, -99, 0}, b = {s, 2, "second", 0, -99, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, append_thread, &a);
    CHECK(fault_wait_blocked(10000)); /* the first frame is being synced */
    pthread_create(&tb, NULL, append_thread, &b);
    CHECK(fault_wait_returned(FAULT_IO_SYNC, base + 1, 10000)); /* the second sync returned */
    CHECK(!a.done && !b.done);                                  /* neither reported yet */
    fault_release();
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (a.rc == 0 || b.rc == 0)
        fprintf(stderr, "two in flight (%s fails): first %s, second %s\n", first_fails ? "first" : "second",
                store_strerror(a.rc), store_strerror(b.rc));
    CHECK(a.rc == STORE_UNAVAILABLE);
    CHECK(b.rc == STORE_UNAVAILABLE);
    uint64_t p = 0;
    CHECK(h_append1(s, 1, "k", "later", 5, &p) == STORE_UNAVAILABLE);
    store_close(s);
    s = open_with(d, "lmdb", true, 0);
    if (s) {
        CHECK(has(s, 1, p0, "acked"));
        uint64_t last = 0;
        CHECK(store_log_bounds(s, 1, &last, NULL) == 0);
        CHECK(h_append1(s, 1, "k", "after", 5, &p) == 0 && p > last);
        store_close(s);
    }
    tmpdir_remove(d);
}

static void a_sync_failure_with_two_frames_in_flight_acknowledges_neither(void)
{
    h_watchdog("two frames in flight", 60);
    two_in_flight(true);
    two_in_flight(false);
    h_watchdog_off();
}

/* ---- checkpoints, torn segment headers, backpressure ---- */

/* The run in a segment file's header (0 if it does not check out... the CRC is not checked
 * here: the engine's recovery does that). */
static uint64_t seg_run(const char *dir, int seg)
{
    char p[512];
    snprintf(p, sizeof p, "%s/wal.%d", dir, seg);
    int fd = open(p, O_RDONLY);
    unsigned char h[20];
    uint64_t run = 0;
    if (fd >= 0 && pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && !memcmp(h, "KWSG", 4))
        for (int i = 7; i >= 0; i--)
            run = run << 8 | h[8 + i];
    if (fd >= 0)
        close(fd);
    return run;
}

#define BIG (1u << 20)

struct filler {
    struct store *s;
    char *buf;
    volatile int stop;
    volatile unsigned acked; /* records 0..acked-1 acknowledged, at positions 1.. */
    int err;
};

/* Append 1 MiB records to log 1 (retrying on STORE_BUSY) until stopped. Record i's data
 * starts with its number. */
static void *fill_thread(void *arg)
{
    struct filler *f = arg;
    while (!f->stop && f->acked < 200) { /* a checkpoint comes after 32: 200 is a bound */
        snprintf(f->buf, 16, "%010u", f->acked);
        struct store_rec r = {"k", 1, f->buf, BIG, 0, 0};
        struct store_batch b = {1, 0, &r, 1};
        int rc = store_append(f->s, &b, 1);
        if (rc == STORE_BUSY) {
            usleep(2000);
            continue;
        }
        if (rc || r.pos != f->acked + 1) {
            f->err = rc ? rc : -100;
            break;
        }
        f->acked++;
    }
    return NULL;
}

/* Append 1 MiB records until the flusher is blocked in the checkpoint's retire (its header
 * sync, armed by the caller). Returns true once blocked. */
static bool fill_until_retire_blocks(struct filler *f, pthread_t *t)
{
    pthread_create(t, NULL, fill_thread, f);
    for (int i = 0; i < 1200; i++)
        if (fault_wait_blocked(100))
            return true;
        else if (f->err || f->acked >= 200)
            break;
    fprintf(stderr, "the retire never blocked (%u records acknowledged, error %d)\n", f->acked, f->err);
    return false;
}

static void stop_filler(struct filler *f, pthread_t t)
{
    f->stop = 1;
    pthread_join(t, NULL);
}

/* Open a store on d with this cap on unflushed bytes and fill it until the flusher is stuck in
 * the first checkpoint's retire: nothing is flushed from then on, until fault_release. f gets
 * the store and a 1 MiB buffer (the caller frees it). NULL if that fails. */
static struct store *open_stuck(const char *d, uint64_t cap, struct filler *f)
{
    *f = (struct filler){.s = open_with(d, "lmdb", true, cap), .buf = calloc(1, BIG)};
    if (!f->s)
        return NULL;
    fault_io_arm(FAULT_IO_HDR_SYNC, 1, FAULT_BLOCK, 0);
    pthread_t t;
    CHECK(fill_until_retire_blocks(f, &t));
    stop_filler(f, t);
    CHECK(f->err == 0);
    return f->s;
}

/* Append the filler's next 1 MiB record; a record acknowledged must be at the next position. */
static int append_next(struct filler *f)
{
    snprintf(f->buf, 16, "%010u", f->acked);
    struct store_rec r = {"k", 1, f->buf, BIG, 0, 0};
    struct store_batch b = {1, 0, &r, 1};
    int rc = store_append(f->s, &b, 1);
    if (rc == 0) {
        CHECK(r.pos == f->acked + 1);
        f->acked++;
    }
    return rc;
}

static void checkpoints_switch_segments_and_do_not_stop_writers(void)
{
    h_watchdog("checkpoint", 240);
    fault_reset();
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct store *s = open_with(d, "lmdb", true, 0);
    if (!s)
        return;
    uint64_t run0 = seg_run(d, 0), run1 = seg_run(d, 1);
    CHECK(run0 && run1 > run0);
    /* the next header sync after open is the first checkpoint's retire: block it */
    fault_io_arm(FAULT_IO_HDR_SYNC, 1, FAULT_BLOCK, 0);
    struct filler f = {.s = s, .buf = calloc(1, BIG)};
    pthread_t t;
    bool blocked = fill_until_retire_blocks(&f, &t);
    CHECK(blocked);
    stop_filler(&f, t);
    CHECK(f.err == 0);
    unsigned before = f.acked;
    /* the retire of wal.0 is blocked in its sync: appends still complete, into wal.1 */
    struct store_stats st;
    store_stats(s, &st);
    CHECK(st.checkpoints == 0);
    for (int i = 0; i < 5; i++) {
        snprintf(f.buf, 16, "%010u", f.acked);
        struct store_rec r = {"k", 1, f.buf, BIG, 0, 0};
        struct store_batch b = {1, 0, &r, 1};
        int rc = store_append(s, &b, 1);
        CHECK(rc == 0 && r.pos == f.acked + 1);
        if (rc == 0)
            f.acked++;
    }
    CHECK(f.acked == before + 5);
    /* wal.1 holds frames of its run */
    char p1[512];
    snprintf(p1, sizeof p1, "%s/wal.1", d);
    int fd = open(p1, O_RDONLY);
    unsigned char fh[24];
    CHECK(fd >= 0 && pread(fd, fh, sizeof fh, SEG_HDR) == (ssize_t)sizeof fh && !memcmp(fh, "KWAL", 4));
    uint64_t frun = 0;
    for (int i = 7; i >= 0; i--)
        frun = frun << 8 | fh[8 + i];
    CHECK(frun == run1);
    if (fd >= 0)
        close(fd);
    fault_release();
    for (int i = 0; i < 2000 && st.checkpoints == 0; i++) {
        usleep(5000);
        store_stats(s, &st);
    }
    CHECK(st.checkpoints == 1);
    /* wal.0 was started afresh with a run above wal.1's */
    uint64_t nrun0 = seg_run(d, 0);
    CHECK(nrun0 > run1 && seg_run(d, 1) == run1);
    store_close(s);
    s = open_with(d, "lmdb", false, 0);
    if (s) {
        uint64_t last = 0;
        CHECK(store_log_bounds(s, 1, &last, NULL) == 0 && last == f.acked);
        char want[16];
        snprintf(want, sizeof want, "%010u", f.acked - 1);
        struct h_arena a = {0};
        struct store_records out = {.alloc = h_alloc, .actx = &a};
        CHECK(store_scan(s, 1, f.acked, 1, SIZE_MAX, &out) == 0 && out.n == 1 &&
              !memcmp(out.v[0].data, want, 10));
        h_arena_free(&a);
        store_close(s);
    }
    free(f.buf);
    tmpdir_remove(d);
    h_watchdog_off();
}

/* A torn segment header: a power loss while the retire of wal.0 was writing its new header. */
struct torn_share {
    unsigned acked;
    unsigned char old_hdr[2][20];
    int ok;
};

static void torn_header_child(void *arg)
{
    const char *dir = ((void **)arg)[0];
    struct torn_share *sh = ((void **)arg)[1];
    fault_reset();
    fault_io_snapshots(true);
    struct store *s = open_with(dir, "lmdb", true, 0);
    if (!s)
        return;
    fault_io_arm(FAULT_IO_HDR, 1, FAULT_BLOCK, 0); /* the retire's header write */
    struct filler f = {.s = s, .buf = calloc(1, BIG)};
    pthread_t t;
    bool blocked = fill_until_retire_blocks(&f, &t);
    CHECK(blocked);
    stop_filler(&f, t);
    CHECK(f.err == 0);
    for (int i = 0; i < 3; i++) { /* more, acknowledged while the retire is stuck */
        snprintf(f.buf, 16, "%010u", f.acked);
        struct store_rec r = {"k", 1, f.buf, BIG, 0, 0};
        struct store_batch b = {1, 0, &r, 1};
        if (store_append(s, &b, 1) == 0 && r.pos == f.acked + 1)
            f.acked++;
    }
    sh->acked = f.acked;
    for (int i = 0; i < 2; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/wal.%d", dir, i);
        int fd = open(p, O_RDONLY);
        CHECK(fd >= 0 && pread(fd, sh->old_hdr[i], 20, 0) == 20);
        close(fd);
    }
    sh->ok = 1;
    /* dies here, the header write never made */
}

static uint32_t crc32c_bytes(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void a_torn_segment_header_after_a_retire_loses_nothing(void)
{
    h_watchdog("torn segment header", 240);
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct torn_share *sh = h_shared(sizeof *sh);
    void *args[2] = {d, sh};
    CHECK(h_in_child(torn_header_child, args));
    CHECK(sh->ok && sh->acked > 32);
    /* the database as of its last sync (the retire's, right before the header write) */
    CHECK(h_use_snap(d) == 0);
    /* the header the retire was writing: wal.0's next run, above both */
    uint64_t r0 = 0, r1 = 0;
    for (int i = 7; i >= 0; i--) {
        r0 = r0 << 8 | sh->old_hdr[0][8 + i];
        r1 = r1 << 8 | sh->old_hdr[1][8 + i];
    }
    CHECK(r1 > r0);
    unsigned char nh[SEG_HDR] = {0};
    memcpy(nh, "KWSG", 4);
    nh[4] = 1;
    uint64_t run = r1 + 1;
    for (int i = 0; i < 8; i++)
        nh[8 + i] = (unsigned char)(run >> (8 * i));
    uint32_t c = crc32c_bytes(nh, 16);
    for (int i = 0; i < 4; i++)
        nh[16 + i] = (unsigned char)(c >> (8 * i));
    static const size_t cuts[] = {0, 4, 12, 19, 20, SEG_HDR};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        char *t = tmpdir_new();
        CHECK(h_copy_store(d, t) == 0);
        char p0[512];
        h_path(p0, sizeof p0, t, "wal.0");
        int fd = open(p0, O_WRONLY);
        CHECK(fd >= 0 && (cuts[k] == 0 || pwrite(fd, nh, cuts[k], 0) == (ssize_t)cuts[k]));
        close(fd);
        struct store *s = open_with(t, "lmdb", false, 0);
        if (s) {
            uint64_t last = 0;
            CHECK(store_log_bounds(s, 1, &last, NULL) == 0 && last == sh->acked);
            /* every acknowledged record, in order, with its own data */
            unsigned bad = 0;
            for (uint64_t p = 1; p <= sh->acked; p++) {
                char want[16];
                snprintf(want, sizeof want, "%010u", (unsigned)(p - 1));
                struct h_arena a = {0};
                struct store_records out = {.alloc = h_alloc, .actx = &a};
                if (store_scan(s, 1, p, 1, SIZE_MAX, &out) || out.n != 1 || out.v[0].pos != p ||
                    out.v[0].data_len != BIG || memcmp(out.v[0].data, want, 10))
                    bad++;
                h_arena_free(&a);
            }
            if (bad)
                fprintf(stderr, "header torn at %zu: %u acknowledged records missing or wrong\n", cuts[k],
                        bad);
            CHECK(bad == 0);
            uint64_t p = 0;
            CHECK(h_append1(s, 1, "k", "x", 1, &p) == 0 && p == sh->acked + 1);
            store_close(s);
        }
        tmpdir_remove(t);
    }
    tmpdir_remove(d);
    h_watchdog_off();
}

static void appends_get_busy_while_the_flusher_is_stuck_and_succeed_after(void)
{
    h_watchdog("backpressure", 240);
    fault_reset();
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    const uint64_t cap = 8u << 20;
    struct filler f;
    struct store *s = open_stuck(d, cap, &f);
    if (!s) {
        free(f.buf);
        return;
    }
    int busy = 0, ok = 0;
    struct store_stats st;
    for (int i = 0; i < 64 && !busy; i++) {
        int rc = append_next(&f);
        if (rc == STORE_BUSY) {
            busy = 1;
        } else {
            CHECK(rc == 0);
            ok++;
        }
        store_stats(s, &st);
        CHECK(st.unflushed_bytes <= cap + BIG + 64);
    }
    CHECK(busy);    /* the cap was hit: no unbounded growth */
    CHECK(ok < 16); /* ... soon */
    /* still busy while stuck */
    snprintf(f.buf, 16, "%010u", f.acked);
    struct store_rec r = {"k", 1, f.buf, BIG, 0, 0};
    struct store_batch b = {1, 0, &r, 1};
    CHECK(store_append(s, &b, 1) == STORE_BUSY);
    fault_release();
    int rc = STORE_BUSY;
    for (int i = 0; i < 2000 && rc == STORE_BUSY; i++) {
        rc = store_append(s, &b, 1);
        if (rc == STORE_BUSY)
            usleep(5000);
    }
    CHECK(rc == 0 && r.pos == f.acked + 1);
    if (rc == 0)
        f.acked++;
    store_close(s);
    s = open_with(d, "lmdb", false, 0);
    if (s) {
        uint64_t last = 0;
        CHECK(store_log_bounds(s, 1, &last, NULL) == 0 && last == f.acked);
        store_close(s);
    }
    free(f.buf);
    tmpdir_remove(d);
    h_watchdog_off();
}

/* The process's anonymous memory in KiB (RssAnon), 0 if unknown. */
static uint64_t rss_anon_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %" SCNu64, &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* A tail that outgrows what the engine holds in memory (4 MiB of frames) is read from the
 * log's file pages: while nothing is flushed, 24 MiB more of acknowledged records grow the
 * process by much less than 24 MiB, and every one reads back as written, then and after a
 * restart. */
static void a_large_tail_is_read_from_the_log_not_held_in_memory(void)
{
    h_watchdog("large tail", 240);
    fault_reset();
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct filler f;
    struct store *s = open_stuck(d, 64u << 20, &f);
    if (!s) {
        free(f.buf);
        return;
    }
    unsigned from = f.acked;
    uint64_t before = rss_anon_kib();
    for (int i = 0; i < 24; i++)
        if (append_next(&f)) {
            CHECK(!"an append within the cap failed");
            break;
        }
#if !defined(__SANITIZE_ADDRESS__) /* its quarantine keeps freed memory resident */
    uint64_t grew = rss_anon_kib() - before;
    if (grew >= 12 * 1024)
        fprintf(stderr, "RssAnon grew by %" PRIu64 " KiB for 24 MiB of unflushed records\n", grew);
    CHECK(before && grew < 12 * 1024);
#else
    (void)before;
#endif
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = from; i < f.acked; i++) {
            struct h_arena a = {0};
            struct store_records out = {.alloc = h_alloc, .actx = &a};
            char want[16];
            snprintf(want, sizeof want, "%010u", i);
            CHECK(store_scan(s, 1, i + 1, 1, SIZE_MAX, &out) == 0 && out.n == 1 && out.v[0].pos == i + 1 &&
                  out.v[0].data_len == BIG && !memcmp(out.v[0].data, want, 10) && !out.v[0].data[10] &&
                  !out.v[0].data[BIG - 1]);
            h_arena_free(&a);
        }
        if (pass)
            break;
        fault_release();
        store_close(s);
        if (!(s = open_with(d, "lmdb", true, 0)))
            break;
    }
    if (s)
        store_close(s);
    free(f.buf);
    tmpdir_remove(d);
    h_watchdog_off();
}

static void registered(void)
{
    fault_register();
    char *d = tmpdir_new();
    h_watchdog_dir(d);
    struct store_config cfg = {.engine = "nosuch:lmdb", .dir = d};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == STORE_INVALID);
    tmpdir_remove(d);
}

CHECK_RUN("storage/faults", T(registered), T(failed_engine_calls_answer_their_code_and_change_nothing),
          T(failed_or_short_log_writes_acknowledge_nothing_and_lose_nothing),
          T(a_failed_sync_is_never_acknowledged_and_breaks_the_log_until_restart),
          T(a_sync_failure_with_two_frames_in_flight_acknowledges_neither),
          T(checkpoints_switch_segments_and_do_not_stop_writers),
          T(a_torn_segment_header_after_a_retire_loses_nothing),
          T(appends_get_busy_while_the_flusher_is_stuck_and_succeed_after),
          T(a_large_tail_is_read_from_the_log_not_held_in_memory))
