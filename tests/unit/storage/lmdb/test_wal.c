/* Unit tests of the lmdb engine's write-ahead log and its recovery: frames are written with the
 * real wal.c functions (or by the engine in a child process that then dies), the segment files
 * are torn or corrupted the way a power loss or a bad disk leaves them, and a store is opened
 * on them: what recovery brings back is checked record by record. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "format.h"
#include "harness.h"
#include "lmdb/wal.h"
#include "store.h"
#include "tmpdir.h"

#define SEG_HDR 4096

/* One record of a frame written by the test. */
struct rec {
    uint64_t log, pos;
    const char *pk, *data;
};

static int noop_frame(void *ctx, const char *p, size_t len)
{
    (void)ctx, (void)p, (void)len;
    return 0;
}

/* Build the payload of a frame holding recs into buf (WAL_HDR bytes of room first); returns the
 * frame's length. */
static size_t build_frame(char *buf, const struct rec *recs, size_t n)
{
    size_t off = WAL_HDR;
    struct format_sealer sealer;
    format_sealer_init(&sealer, NULL); /* records as a store without a keyring seals them */
    for (size_t i = 0; i < n; i++) {
        struct store_rec r = {recs[i].pk, strlen(recs[i].pk), recs[i].data, strlen(recs[i].data), 0, 0};
        size_t len = format_sealed_len(NULL, r.pk_len, r.data_len);
        off += wal_put_entry(buf + off, recs[i].log, recs[i].pos, len);
        format_seal(&sealer, buf + off, recs[i].log, recs[i].pos, 1, 1, &r, &len);
        off += len;
    }
    return off;
}

/* Start fresh runs in dir's segments and write frames (frame k holds recs[start[k]..start[k+1])),
 * each synced; ends[k] gets the offset where frame k ends in wal.0. */
static void write_frames(const char *dir, const struct rec *recs, const size_t *start, size_t nframes,
                         uint64_t *ends)
{
    struct wal *w;
    CHECK(wal_open(dir, true, NULL, &w) == 0);
    CHECK(wal_replay(w, noop_frame, NULL) == 0);
    CHECK(wal_restart(w) == 0);
    uint64_t off = SEG_HDR;
    for (size_t k = 0; k < nframes; k++) {
        static char buf[1 << 16];
        size_t len = build_frame(buf, recs + start[k], start[k + 1] - start[k]);
        int seg = -1;
        CHECK(wal_write(w, buf, len, &seg, NULL) == 0 && seg == 0);
        CHECK(wal_sync(w, 0, 0) == 0);
        off += len;
        ends[k] = off;
    }
    wal_close(w);
}

static struct store *open_store(const char *dir)
{
    struct store_config cfg = {.dir = dir, .sync = false};
    struct store *s = NULL;
    int rc = store_open(&cfg, &s);
    CHECK(rc == 0);
    return rc ? NULL : s;
}

/* Check that log holds exactly want[0..n) (position, "pk|data"), and nothing else. */
static int log_is(struct store *s, uint64_t log, const struct rec *want, size_t n)
{
    struct h_arena a = {0};
    struct store_read *v = NULL;
    size_t got = 0;
    uint64_t last;
    int ok = h_scan_all(s, log, &a, &v, &got, &last) == 0 && got == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = v[i].pos == want[i].pos && v[i].pk_len == strlen(want[i].pk) &&
             !memcmp(v[i].pk, want[i].pk, v[i].pk_len) && v[i].data_len == strlen(want[i].data) &&
             !memcmp(v[i].data, want[i].data, v[i].data_len);
    if (!ok) {
        fprintf(stderr, "log %llu: %zu records, want %zu:", (unsigned long long)log, got, n);
        for (size_t i = 0; i < got; i++)
            fprintf(stderr, " %llu=%.*s", (unsigned long long)v[i].pos, (int)v[i].data_len, v[i].data);
        fprintf(stderr, "\n");
    }
    h_arena_free(&a);
    return ok;
}

static void write_file_prefix(const char *path, const char *buf, size_t len)
{
    CHECK(h_spit(path, buf, len) == 0);
}

/* ---- (a) a torn frame at every byte offset of the last frame ---- */

static const struct rec torn_recs[] = {
    {1, 10, "a", "first"},  {1, 11, "b", "second"}, {1, 12, "c", "third"},
    {1, 13, "d", "fourth"}, {2, 5, "e", "fifth"},
};
static const size_t torn_start[] = {0, 1, 2, 3, 5}; /* the last frame holds two records */

/* Open dir (wal.0 as given), check the first three records are there and the last frame's are
 * not (or are, when intact), and that new appends get positions above every earlier one. */
static int check_torn(const char *dir, bool intact)
{
    struct store *s = open_store(dir);
    if (!s)
        return 0;
    int ok = log_is(s, 1, torn_recs, intact ? 4 : 3) && log_is(s, 2, torn_recs + 4, intact ? 1 : 0);
    uint64_t last1 = 0, last2 = 0, p1 = 0, p2 = 0;
    ok = ok && store_log_bounds(s, 1, &last1, NULL) == 0 && last1 == (intact ? 13 : 12);
    ok = ok && store_log_bounds(s, 2, &last2, NULL) == 0 && last2 == (intact ? 5 : 0);
    ok = ok && h_append1(s, 1, "n", "new", 3, &p1) == 0 && p1 > last1 && p1 > 12;
    ok = ok && h_append1(s, 2, "n", "new", 3, &p2) == 0 && p2 > last2;
    store_close(s);
    return ok;
}

static void a_torn_frame_at_every_offset_loses_only_that_frame(void)
{
    char *d = tmpdir_new();
    uint64_t ends[4];
    write_frames(d, torn_recs, torn_start, 4, ends);
    char p0[512], p1[512];
    h_path(p0, sizeof p0, d, "wal.0");
    h_path(p1, sizeof p1, d, "wal.1");
    size_t len0 = 0, len1 = 0;
    char *seg0 = h_slurp(p0, &len0), *seg1 = h_slurp(p1, &len1);
    CHECK(seg0 && seg1 && len0 >= ends[3]);
    if (!seg0 || !seg1 || len0 < ends[3])
        return;
    uint64_t from = ends[2], to = ends[3];
    int bad = 0;
    /* control: the intact file replays every frame */
    char *t = tmpdir_new();
    char q0[512], q1[512];
    h_path(q0, sizeof q0, t, "wal.0");
    h_path(q1, sizeof q1, t, "wal.1");
    write_file_prefix(q0, seg0, to);
    write_file_prefix(q1, seg1, len1);
    CHECK(check_torn(t, true));
    tmpdir_remove(t);
    size_t keep = to + 4096 < len0 ? to + 4096 : len0; /* some of the zeros that follow */
    char *copy = malloc(keep);
    for (uint64_t o = from; o < to && bad < 5; o++) {
        for (int mode = 0; mode < 2; mode++) {
            t = tmpdir_new();
            h_path(q0, sizeof q0, t, "wal.0");
            h_path(q1, sizeof q1, t, "wal.1");
            if (mode == 0) { /* the write reached the disk up to o: the file ends there */
                write_file_prefix(q0, seg0, o);
            } else { /* byte o is not what was written (the rest of the frame is) */
                memcpy(copy, seg0, keep);
                copy[o] ^= 0x5a;
                write_file_prefix(q0, copy, keep);
            }
            write_file_prefix(q1, seg1, len1);
            if (!check_torn(t, false)) {
                fprintf(stderr, "torn at offset %llu of the last frame (%s)\n",
                        (unsigned long long)(o - from), mode ? "byte changed" : "file cut");
                bad++;
            }
            tmpdir_remove(t);
        }
    }
    CHECK(bad == 0);
    free(copy);
    free(seg0);
    free(seg1);
    tmpdir_remove(d);
}

/* ---- (d) a header cut at the end of the file ---- */

static void d_a_header_cut_at_the_end_of_a_segment_is_ignored(void)
{
    char *d = tmpdir_new();
    uint64_t ends[4];
    write_frames(d, torn_recs, torn_start, 4, ends);
    char p0[512], p1[512];
    h_path(p0, sizeof p0, d, "wal.0");
    h_path(p1, sizeof p1, d, "wal.1");
    size_t len0 = 0, len1 = 0;
    char *seg0 = h_slurp(p0, &len0), *seg1 = h_slurp(p1, &len1);
    if (!seg0 || !seg1)
        return;
    /* the last frame's header is cut: every length from nothing of it to all but its last byte */
    for (uint64_t cut = 0; cut < WAL_HDR; cut++) {
        char *t = tmpdir_new();
        char q0[512], q1[512];
        h_path(q0, sizeof q0, t, "wal.0");
        h_path(q1, sizeof q1, t, "wal.1");
        write_file_prefix(q0, seg0, ends[2] + cut);
        write_file_prefix(q1, seg1, len1);
        CHECK(check_torn(t, false));
        tmpdir_remove(t);
    }
    /* a segment cut inside its own header (a file just created): the other one still replays */
    for (size_t cut = 0; cut <= 24; cut += 6) {
        char *t = tmpdir_new();
        char q0[512], q1[512];
        h_path(q0, sizeof q0, t, "wal.0");
        h_path(q1, sizeof q1, t, "wal.1");
        write_file_prefix(q0, seg0, ends[3]);
        write_file_prefix(q1, seg1, cut);
        CHECK(check_torn(t, true));
        tmpdir_remove(t);
    }
    free(seg0);
    free(seg1);
    tmpdir_remove(d);
}

/* ---- (b) stale frames of the same run after a torn one (finding 2) ---- */

#define STALE_N 5

struct stale_share {
    uint64_t acked[8];
    int nacked;
    uint64_t seen[8];
    int nseen;
};

struct stale_ctx {
    const char *dir;
    struct stale_share *sh;
    int first_new, count; /* append "new-<first_new>"... count records */
};

/* In a child: recover (the database snapshotted right after recovery), note what recovery
 * found, append records of the same size as the old ones, die. */
static void stale_child(void *arg)
{
    struct stale_ctx *c = arg;
    struct store_config cfg = {.dir = c->dir, .sync = true, .io = &h_snap_io};
    struct store *s = NULL;
    if (store_open(&cfg, &s)) {
        CHECK(0);
        return;
    }
    struct h_arena a = {0};
    struct store_read *v;
    size_t n;
    uint64_t last;
    CHECK(h_scan_all(s, 1, &a, &v, &n, &last) == 0);
    for (size_t i = 0; i < n && i < 8; i++)
        c->sh->seen[c->sh->nseen++] = v[i].pos;
    h_arena_free(&a);
    for (int i = 0; i < c->count; i++) {
        char data[16];
        snprintf(data, sizeof data, "new-%d", c->first_new + i);
        uint64_t pos;
        if (h_append1(s, 1, "k", data, strlen(data), &pos) == 0)
            c->sh->acked[c->sh->nacked++] = pos;
    }
}

static void b_stale_frames_after_a_torn_one_never_come_back(void)
{
    char *d = tmpdir_new();
    /* frames 1..5 of one run, one record each, all the same size: "old-1".."old-5" at 1, 2, 3,
     * 100, 101 (the floor jumped: a stale frame read by mistake would bring back positions that
     * no later record has, instead of being skipped as already stored) */
    struct rec recs[STALE_N];
    char data[STALE_N][16];
    size_t start[STALE_N + 1];
    for (int i = 0; i < STALE_N; i++) {
        snprintf(data[i], sizeof data[i], "old-%d", i + 1);
        recs[i] = (struct rec){1, i < 3 ? (uint64_t)i + 1 : (uint64_t)i + 97, "k", data[i]};
        start[i] = (size_t)i;
    }
    start[STALE_N] = STALE_N;
    uint64_t ends[STALE_N];
    write_frames(d, recs, start, STALE_N, ends);
    /* a power loss tore frame 3 (one byte of its payload) but kept frames 4 and 5 */
    char p0[512];
    h_path(p0, sizeof p0, d, "wal.0");
    int fd = open(p0, O_RDWR);
    char b;
    CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)ends[2] - 2) == 1);
    b ^= 0x40;
    CHECK(pwrite(fd, &b, 1, (off_t)ends[2] - 2) == 1);
    close(fd);

    /* recovery finds 1 and 2 only; three new records of the same size are acknowledged, and
     * their frames end exactly where the torn frame 3 ended, right before the stale frame 4 */
    struct stale_share *sh = h_shared(sizeof *sh);
    struct stale_ctx c = {d, sh, 1, 3};
    CHECK(h_in_child(stale_child, &c));
    CHECK(sh->nseen == 2 && sh->seen[0] == 1 && sh->seen[1] == 2);
    CHECK(sh->nacked == 3 && sh->acked[0] == 3 && sh->acked[1] == 4 && sh->acked[2] == 5);
    /* the database as of the last sync (recovery's): the log alone must hold new-1..new-3 */
    CHECK(h_use_snap(d) == 0);
    const struct rec want[] = {
        {1, 1, "k", "old-1"}, {1, 2, "k", "old-2"}, {1, 3, "k", "new-1"}, {1, 4, "k", "new-2"},
        {1, 5, "k", "new-3"}, {1, 6, "k", "new-4"}, {1, 7, "k", "new-5"}, {1, 8, "k", "x"},
    };
    /* a second crash: recover again, append two more, die; nothing moves, nothing stale
     * comes back */
    memset(sh, 0, sizeof *sh);
    c.first_new = 4;
    c.count = 2;
    CHECK(h_in_child(stale_child, &c));
    CHECK(sh->nseen == 5);
    for (int i = 0; i < sh->nseen && i < 5; i++)
        CHECK(sh->seen[i] == (uint64_t)i + 1);
    CHECK(sh->nacked == 2 && sh->acked[0] == 6 && sh->acked[1] == 7);
    CHECK(h_use_snap(d) == 0);
    struct store *s = open_store(d);
    if (s) {
        CHECK(log_is(s, 1, want, 7));
        uint64_t pos;
        CHECK(h_append1(s, 1, "k", "x", 1, &pos) == 0 && pos == 8);
        store_close(s);
    }
    /* and once more after a clean close */
    s = open_store(d);
    if (s) {
        CHECK(log_is(s, 1, want, 8));
        store_close(s);
    }
    tmpdir_remove(d);
}

/* ---- (c) a frame that checks out but holds malformed entries ---- */

/* Open dir with stderr captured; returns store_open's code, and whether stderr named the
 * problem. */
static int open_capturing(const char *dir, int *said)
{
    char errpath[512];
    h_path(errpath, sizeof errpath, dir, "stderr.txt");
    fflush(stderr);
    int saved = dup(2), fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    struct store_config cfg = {.dir = dir, .sync = false};
    struct store *s = NULL;
    int rc = store_open(&cfg, &s);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (rc == 0)
        store_close(s);
    size_t len = 0;
    char *text = h_slurp(errpath, &len);
    *said = text && len && memmem(text, len, "malformed", 9) != NULL;
    if (text && len)
        fprintf(stderr, "  (recovery said: %.*s)\n", (int)(len > 200 ? 200 : len), text);
    free(text);
    unlink(errpath);
    return rc;
}

/* Write a good frame (record "good" at log 1 pos 1, unless skip_good) and then a frame
 * whose payload is `bad` (len bytes), both checking out. */
static void write_good_then_bad(const char *dir, bool skip_good, const char *bad, size_t len,
                                uint64_t *bad_at)
{
    struct wal *w;
    CHECK(wal_open(dir, true, NULL, &w) == 0);
    CHECK(wal_replay(w, noop_frame, NULL) == 0);
    CHECK(wal_restart(w) == 0);
    static char buf[1 << 16];
    int seg;
    *bad_at = SEG_HDR;
    if (!skip_good) {
        const struct rec good = {1, 1, "k", "good"};
        size_t n = build_frame(buf, &good, 1);
        CHECK(wal_write(w, buf, n, &seg, NULL) == 0 && wal_sync(w, seg, 0) == 0);
        *bad_at += n;
    }
    memcpy(buf + WAL_HDR, bad, len);
    CHECK(wal_write(w, buf, WAL_HDR + len, &seg, NULL) == 0 && wal_sync(w, seg, 0) == 0);
    wal_close(w);
}

static const char *const store_files[] = {"data.mdb", "wal.0", "wal.1"};

static void c_check_refused(const char *what, bool skip_good, const char *bad, size_t len)
{
    char *d = tmpdir_new();
    struct store *s = open_store(d); /* a database that exists, cleanly closed */
    store_close(s);
    uint64_t bad_at;
    write_good_then_bad(d, skip_good, bad, len, &bad_at);
    char *t = tmpdir_new();
    CHECK(h_copy_store(d, t) == 0);
    int said = 0;
    int rc = open_capturing(d, &said);
    if (rc != STORE_CORRUPT || !said)
        fprintf(stderr, "%s: store_open returned %d (%s), want STORE_CORRUPT and a message\n", what, rc,
                store_strerror(rc));
    CHECK(rc == STORE_CORRUPT);
    CHECK(said);
    /* it modified nothing: the log segments are as they were (and with the bad frame first,
     * the database too); a second try refuses the same way */
    for (size_t i = skip_good ? 0 : 1; i < 3; i++) {
        char a[512], b[512];
        h_path(a, sizeof a, d, store_files[i]);
        h_path(b, sizeof b, t, store_files[i]);
        if (!h_same_file(a, b))
            fprintf(stderr, "%s: %s changed by a refused recovery\n", what, store_files[i]);
        CHECK(h_same_file(a, b));
    }
    CHECK(open_capturing(d, &said) == STORE_CORRUPT);
    /* nothing was lost by refusing: without the bad frame, the good one is all there */
    char p0[512];
    h_path(p0, sizeof p0, d, "wal.0");
    CHECK(truncate(p0, (off_t)bad_at) == 0);
    s = open_store(d);
    if (s) {
        const struct rec good = {1, 1, "k", "good"};
        CHECK(log_is(s, 1, &good, skip_good ? 0 : 1));
        store_close(s);
    }
    tmpdir_remove(t);
    tmpdir_remove(d);
}

static void c_a_valid_frame_with_malformed_entries_is_refused(void)
{
    char bad[256];
    /* an entry whose length runs past the payload */
    size_t n = wal_put_entry(bad, 1, 2, 200);
    memset(bad + n, 'x', 10);
    c_check_refused("entry past the payload", true, bad, n + 10);
    c_check_refused("entry past the payload, after a good frame", false, bad, n + 10);
    /* a good entry, then a fragment shorter than an entry header */
    const struct rec r = {1, 2, "k", "v"};
    char tmp[512];
    size_t len = build_frame(tmp, &r, 1) - WAL_HDR;
    memcpy(bad, tmp + WAL_HDR, len);
    memset(bad + len, 0, 7);
    c_check_refused("trailing fragment", false, bad, len + 7);
}

/* An entry that parses, whose record is sealed for another position than the entry names:
 * storing it would make the log unreadable at that position (every scan through it fails). */
static void c_an_entry_whose_seal_does_not_match_its_position_is_refused(void)
{
    const struct rec r = {1, 2, "k", "moved"};
    char tmp[512];
    size_t len = build_frame(tmp, &r, 1) - WAL_HDR;
    tmp[WAL_HDR + 8] = 3; /* the entry now says position 3; the seal binds position 2 */
    c_check_refused("seal of another position", false, tmp + WAL_HDR, len);
}

/* ---- (e) a torn segment header after a retire ---- */
/* see test_faults.c (checkpoints): it needs a checkpoint, which the engine makes only after
 * 32 MiB of frames */

static uint64_t file_size(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Write frames of 1 MiB to the active segment (which must be seg) until it holds `upto` bytes. */
static void fill_seg(struct wal *w, int seg, uint64_t upto)
{
    static char buf[1u << 20];
    for (uint64_t n = 0; n < upto; n += sizeof buf) {
        int got = -1;
        CHECK(wal_write(w, buf, sizeof buf, &got, NULL) == 0 && got == seg);
    }
}

/* A retired segment keeps the size a run fills as a rule (up to the switch, a last frame and
 * the zeros written ahead of the frames), so the next run does not zero-fill it all again (as
 * many bytes to the disk as its frames); only what a burst grew it to past that is given back. */
static void e_a_retired_segment_keeps_the_size_a_run_fills(void)
{
    char *d = tmpdir_new();
    struct wal *w;
    CHECK(wal_open(d, true, NULL, &w) == 0 && wal_replay(w, noop_frame, NULL) == 0 && wal_restart(w) == 0);
    const uint64_t at = 20u << 20, keep = SEG_HDR + at + (16u << 20);
    fill_seg(w, 0, at);
    CHECK(wal_switch(w, at) == 0);
    uint64_t size = file_size(d, "wal.0");
    CHECK(size > SEG_HDR + at && size <= keep);
    CHECK(wal_retire(w, 0) == 0);
    CHECK(file_size(d, "wal.0") == size);
    /* a burst: the active segment grows far past the switch while the other is not free */
    fill_seg(w, 1, at + (28u << 20));
    CHECK(wal_switch(w, at) == 1);
    CHECK(file_size(d, "wal.1") > keep);
    CHECK(wal_retire(w, 1) == 0);
    CHECK(file_size(d, "wal.1") == keep);
    wal_close(w);
    tmpdir_remove(d);
}

CHECK_RUN("storage/wal", T(a_torn_frame_at_every_offset_loses_only_that_frame),
          T(d_a_header_cut_at_the_end_of_a_segment_is_ignored),
          T(b_stale_frames_after_a_torn_one_never_come_back),
          T(c_a_valid_frame_with_malformed_entries_is_refused),
          T(c_an_entry_whose_seal_does_not_match_its_position_is_refused),
          T(e_a_retired_segment_keeps_the_size_a_run_fills))
