/* Unit tests of the views and copies of an lmdb data directory (lmdb/backup.c): a directory is
 * laid out with the engine's own database and log code (records in data.mdb, newer ones and
 * some it holds already in log frames, a dropped log), and the view, the store it serves and a
 * copy are checked record by record; a view changes no file it reads. */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "format.h"
#include "harness.h"
#include "lmdb/backup.h"
#include "lmdb/db.h"
#include "lmdb/wal.h"
#include "store.h"
#include "tmpdir.h"

struct rec {
    uint64_t log, pos;
    const char *data;
};

/* Seal rec as a store without a keyring does, into buf; returns its length. */
static size_t seal(char *buf, const struct rec *r)
{
    struct format_sealer sealer;
    format_sealer_init(&sealer, NULL);
    struct store_rec sr = {"pk", 2, r->data, strlen(r->data), 0, 0};
    size_t len;
    format_seal(&sealer, buf, r->log, r->pos, 1, 1, &sr, &len);
    return len;
}

static void db_put(const char *dir, const struct rec *recs, size_t n, uint64_t drop)
{
    struct db *d;
    CHECK(db_open(dir, false, 0, &d) == 0);
    static char bufs[16][256];
    struct db_rec r[16];
    for (size_t i = 0; i < n; i++) {
        size_t len = seal(bufs[i], &recs[i]);
        r[i] = (struct db_rec){recs[i].log, recs[i].pos, bufs[i], len};
    }
    CHECK(db_append(d, r, n, false) == 0);
    bool more = true;
    if (drop)
        CHECK(db_drop(d, drop, 100, &more) == 0 && !more);
    db_close(d);
}

static int no_frame(void *ctx, const char *p, size_t len)
{
    (void)ctx, (void)p, (void)len;
    return 0;
}

/* One synced frame of recs in a fresh run of wal.0. */
static void wal_put(const char *dir, const struct rec *recs, size_t n)
{
    struct wal *w;
    CHECK(wal_open(dir, true, NULL, &w) == 0);
    CHECK(wal_replay(w, no_frame, NULL) == 0); /* (learns the runs on disk) */
    CHECK(wal_restart(w) == 0);
    static char buf[1 << 14];
    size_t off = WAL_HDR;
    for (size_t i = 0; i < n; i++) {
        char rec[256];
        size_t len = seal(rec, &recs[i]);
        off += wal_put_entry(buf + off, recs[i].log, recs[i].pos, len);
        memcpy(buf + off, rec, len);
        off += len;
    }
    int seg = -1;
    CHECK(wal_write(w, buf, off, &seg, NULL) == 0 && seg == 0);
    CHECK(wal_sync(w, 0, 0) == 0);
    wal_close(w);
}

/* log 1: 10..12 in data.mdb, 11..14 in the log; log 2: 5 in the log only; log 3 dropped, with a
 * record of it left in the log. */
static char *lay_out(void)
{
    char *d = tmpdir_new();
    static const struct rec db[] = {{1, 10, "a"}, {1, 11, "b"}, {1, 12, "c"}, {3, 1, "x"}};
    static const struct rec wal[] = {{1, 11, "b"}, {1, 12, "c"}, {1, 13, "d"},
                                     {1, 14, "e"}, {2, 5, "f"},  {3, 7, "y"}};
    db_put(d, db, 4, 3);
    wal_put(d, wal, 6);
    return d;
}

struct seen {
    struct backup_log logs[8];
    size_t nlogs;
    uint64_t pos[16];
    bool in_wal[16];
    size_t n;
};

static int see_log(void *ctx, const struct backup_log *l)
{
    struct seen *s = ctx;
    if (s->nlogs < 8)
        s->logs[s->nlogs++] = *l;
    return 0;
}

static int see_rec(void *ctx, uint64_t log, uint64_t pos, const char *val, size_t len, bool in_wal)
{
    struct seen *s = ctx;
    CHECK(format_check_keyless(val, len, log, pos, NULL) == 0);
    if (s->n < 16) {
        s->pos[s->n] = pos;
        s->in_wal[s->n++] = in_wal;
    }
    return 0;
}

/* The data of every record of log, joined: "abcde". */
static void data_of(struct store *s, uint64_t log, char *out, size_t cap)
{
    struct h_arena a = {0};
    struct store_read *v = NULL;
    size_t n = 0;
    uint64_t last;
    out[0] = 0;
    CHECK(h_scan_all(s, log, &a, &v, &n, &last) == 0);
    for (size_t i = 0; i < n && strlen(out) + v[i].data_len < cap; i++)
        strncat(out, v[i].data, v[i].data_len);
    h_arena_free(&a);
}

static void a_view_holds_the_database_and_the_log_records_past_it(void)
{
    char *d = lay_out();
    struct backup_snap *s;
    CHECK(backup_snap_open(d, &s) == 0);
    struct seen seen = {0};
    CHECK(backup_snap_logs(s, see_log, &seen) == 0);
    CHECK(seen.nlogs == 3);
    CHECK(seen.logs[0].log == 1 && seen.logs[0].last == 14 && seen.logs[0].wal_records == 2 &&
          seen.logs[0].state == BACKUP_LOG_OPEN);
    CHECK(seen.logs[1].log == 2 && seen.logs[1].last == 5 && seen.logs[1].wal_records == 1);
    CHECK(seen.logs[2].log == 3 && seen.logs[2].state == BACKUP_LOG_DROPPED && seen.logs[2].wal_records == 0);
    CHECK(backup_snap_records(s, 1, 0, see_rec, &seen) == 0);
    static const uint64_t want[] = {10, 11, 12, 13, 14};
    CHECK(seen.n == 5 && !memcmp(seen.pos, want, sizeof want));
    CHECK(!seen.in_wal[2] && seen.in_wal[3] && seen.in_wal[4]);
    seen.n = 0;
    CHECK(backup_snap_records(s, 3, 0, see_rec, &seen) == 0 && seen.n == 0);
    struct backup_info info;
    backup_snap_info(s, &info);
    CHECK(info.wal_frames == 1 && info.wal_records == 3 && info.file_bytes > 0 && info.page_bytes > 0);
    backup_snap_close(s);
    tmpdir_remove(d);
}

static void the_snapshot_engine_serves_the_view_and_refuses_writes(void)
{
    char *d = lay_out();
    struct store_config cfg = {.engine = "snapshot", .dir = d};
    struct store *s;
    CHECK(store_open(&cfg, &s) == 0);
    CHECK(backup_snap_of(s) != NULL);
    char got[64];
    data_of(s, 1, got, sizeof got);
    CHECK_STR(got, "abcde");
    data_of(s, 2, got, sizeof got);
    CHECK_STR(got, "f");
    uint64_t last = 0, first = 0;
    CHECK(store_log_bounds(s, 1, &last, &first) == 0 && last == 14 && first == 10);
    CHECK(h_append1(s, 1, "k", "v", 1, NULL) == STORE_INVALID);
    CHECK(store_meta_put(s, "k", "v", 1) == STORE_INVALID);
    store_close(s);
    tmpdir_remove(d);
}

static void a_view_changes_no_file_it_reads(void)
{
    char *d = lay_out(), *before = tmpdir_new();
    static const char *const files[] = {"data.mdb", "wal.0", "wal.1"};
    char a[512], b[512];
    for (size_t i = 0; i < 3; i++) {
        h_path(a, sizeof a, d, files[i]);
        h_path(b, sizeof b, before, files[i]);
        CHECK(h_copy(a, b) == 0);
    }
    struct backup_snap *s;
    CHECK(backup_snap_open(d, &s) == 0);
    backup_snap_close(s);
    for (size_t i = 0; i < 3; i++) {
        h_path(a, sizeof a, d, files[i]);
        h_path(b, sizeof b, before, files[i]);
        CHECK(h_same_file(a, b));
    }
    tmpdir_remove(before);
    tmpdir_remove(d);
}

static void a_copy_needs_no_log_and_a_store_opens_it(void)
{
    char *d = lay_out(), *parent = tmpdir_new();
    char dest[512], path[600];
    h_path(dest, sizeof dest, parent, "copy");
    uint64_t from_log = 0;
    CHECK(backup_copy(d, dest, false, &from_log) == 0 && from_log == 3);
    h_path(path, sizeof path, dest, "wal.0");
    CHECK(access(path, F_OK) != 0);
    CHECK(backup_copy(d, dest, false, NULL) == STORE_CONFLICT); /* not over a data directory */
    struct store_config cfg = {.dir = dest};
    struct store *s;
    CHECK(store_open(&cfg, &s) == 0);
    char got[64];
    data_of(s, 1, got, sizeof got);
    CHECK_STR(got, "abcde");
    data_of(s, 2, got, sizeof got);
    CHECK_STR(got, "f");
    data_of(s, 3, got, sizeof got);
    CHECK_STR(got, "");
    store_close(s);
    tmpdir_remove(parent);
    tmpdir_remove(d);
}

static void a_newer_log_format_or_no_database_is_refused(void)
{
    char *d = tmpdir_new();
    struct backup_snap *s;
    CHECK(backup_snap_open(d, &s) == STORE_NOT_FOUND);
    tmpdir_remove(d);
    d = lay_out();
    char path[512];
    h_path(path, sizeof path, d, "wal.1");
    size_t len = 0;
    char *seg = h_slurp(path, &len);
    CHECK(seg && len >= 8);
    if (seg && len >= 8) {
        seg[4] = 2; /* format version 2 */
        CHECK(h_spit(path, seg, len) == 0);
        CHECK(backup_snap_open(d, &s) == STORE_INVALID);
    }
    free(seg);
    tmpdir_remove(d);
}

CHECK_RUN("lmdb/backup", T(a_view_holds_the_database_and_the_log_records_past_it),
          T(the_snapshot_engine_serves_the_view_and_refuses_writes), T(a_view_changes_no_file_it_reads),
          T(a_copy_needs_no_log_and_a_store_opens_it), T(a_newer_log_format_or_no_database_is_refused))
