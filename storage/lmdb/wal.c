/* wal.c: segments of frames, appended, synced, retired, and read back after a crash (wal.h).
 *
 * Why a log of our own in front of LMDB: an LMDB commit is durable only after two ordered
 * syncs (its data pages, then its meta page), and each writes the B-tree pages it touched.
 * A frame is one sequential write and one sync. Once a segment has been through a run its
 * blocks are overwritten in place, and a new segment is zero-filled ahead of the frames
 * (EXTEND bytes at a time, not on a nearly full disk), so a sync rarely has file metadata to
 * commit either. The data directory itself is synced when a segment file is created, so the
 * file's name survives a power loss too.
 *
 * State: each segment is ACTIVE (frames go to it), RETIRING (switched away from; its frames
 * still need the database) or FREE (a fresh run, durable, no frames). Exactly one is ACTIVE
 * after wal_restart. `off` and `state` change only under the caller's write lock (wal_write,
 * wal_switch) or from the retiring thread on a RETIRING segment; readers of counters use
 * atomics. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../crc32c.h"
#include "wal.h"
#include "klog.h"

#define WAL_MAGIC 0x4c41574bu /* "KWAL" */
#define SEG_HDR 4096u
#define MAX_FRAME (256ull << 20)
#define EXTEND (8ull << 20)
#define EXTEND_FREE (1ull << 30)

enum { FREE, ACTIVE, RETIRING };

struct seg {
    int fd; /* writes and reads */
    int sync_fd[WAL_SYNCERS];
    uint64_t off;    /* end of the frames */
    uint64_t filled; /* the file's size */
    uint64_t run;
    int state;
};

struct wal {
    const struct store_io *io;
    bool sync;
    bool broken; /* atomic */
    struct seg seg[WAL_SEGS];
    int active;
    uint64_t switch_at; /* the size wal_switch was last asked to switch at (atomic) */
    uint64_t next_run;  /* larger than every run on disk */
    int dir_fd;
    char dir[4096];
    int old_fd; /* the log file of an earlier release, or -1 */
};

/* ---- the OS, or the test's shim ---- */

static int x_open(struct wal *w, const char *path, int flags, int mode)
{
    return w->io ? w->io->open(w->io->ctx, path, flags, mode) : open(path, flags, mode);
}
static void x_close(struct wal *w, int fd)
{
    if (fd < 0)
        return;
    if (w->io)
        w->io->close(w->io->ctx, fd);
    else
        close(fd);
}
static long x_pwrite(struct wal *w, int fd, const void *b, size_t n, uint64_t off)
{
    return w->io ? w->io->pwrite(w->io->ctx, fd, b, n, off) : pwrite(fd, b, n, (off_t)off);
}
static long x_pread(struct wal *w, int fd, void *b, size_t n, uint64_t off)
{
    return w->io ? w->io->pread(w->io->ctx, fd, b, n, off) : pread(fd, b, n, (off_t)off);
}
static int x_datasync(struct wal *w, int fd)
{
    if (!w->sync)
        return 0;
    return w->io ? w->io->datasync(w->io->ctx, fd) : fdatasync(fd);
}
static int x_truncate(struct wal *w, int fd, uint64_t len)
{
    return w->io ? w->io->truncate(w->io->ctx, fd, len) : ftruncate(fd, (off_t)len);
}

static int io_all(struct wal *w, int fd, bool wr, char *buf, size_t len, uint64_t off)
{
    while (len) {
        long n = wr ? x_pwrite(w, fd, buf, len, off) : x_pread(w, fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == ENOSPC || errno == EDQUOT))
            return STORE_FULL;
        if (n <= 0)
            return STORE_IO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* ---- little-endian fields ---- */

static void le32(char *o, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8)
        o[i] = (char)(v & 0xFF);
}
static void le64(char *o, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        o[i] = (char)(v & 0xFF);
}
static uint32_t rd32(const char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | (unsigned char)p[i];
    return v;
}
static uint64_t rd64(const char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

/* ---- open and close ---- */

static int open_seg(struct wal *w, int i)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/wal.%d", w->dir, i);
    struct seg *s = &w->seg[i];
    s->fd = x_open(w, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    for (int k = 0; k < WAL_SYNCERS; k++)
        s->sync_fd[k] = s->fd < 0 ? -1 : x_open(w, path, O_RDWR | O_CLOEXEC, 0644);
    for (int k = 0; k < WAL_SYNCERS; k++)
        if (s->sync_fd[k] < 0)
            goto fail;
    if (s->fd < 0)
        goto fail;
    struct stat st;
    if (fstat(s->fd, &st) == 0)
        s->filled = (uint64_t)st.st_size;
    return 0;
fail:
    klog(KLOG_ERROR, "%s: %s", path, strerror(errno));
    return STORE_IO;
}

int wal_open(const char *dir, bool sync, const struct store_io *io, struct wal **out)
{
    struct wal *w = calloc(1, sizeof *w);
    if (!w)
        return STORE_NOMEM;
    w->io = io;
    w->sync = sync;
    w->dir_fd = w->old_fd = -1;
    for (int i = 0; i < WAL_SEGS; i++) {
        w->seg[i].fd = -1;
        for (int k = 0; k < WAL_SYNCERS; k++)
            w->seg[i].sync_fd[k] = -1;
    }
    if ((size_t)snprintf(w->dir, sizeof w->dir, "%s", dir) >= sizeof w->dir) {
        free(w);
        return STORE_INVALID;
    }
    int rc = 0;
    for (int i = 0; i < WAL_SEGS && rc == 0; i++)
        rc = open_seg(w, i);
    char old[4200];
    snprintf(old, sizeof old, "%s/wal", dir);
    w->old_fd = x_open(w, old, O_RDWR | O_CLOEXEC, 0644); /* absent: -1 */
    /* the segments' names must survive a power loss: sync the directory */
    w->dir_fd = rc ? -1 : x_open(w, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (rc == 0 && (w->dir_fd < 0 || x_datasync(w, w->dir_fd)))
        rc = STORE_IO;
    if (rc) {
        wal_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    for (int i = 0; i < WAL_SEGS; i++) {
        x_close(w, w->seg[i].fd);
        for (int k = 0; k < WAL_SYNCERS; k++)
            x_close(w, w->seg[i].sync_fd[k]);
    }
    x_close(w, w->old_fd);
    x_close(w, w->dir_fd);
    free(w);
}

/* ---- replay ---- */

/* The run in segment fd's header, or 0 if it has none that checks out. */
static uint64_t read_run(struct wal *w, int fd)
{
    char h[20];
    if (io_all(w, fd, false, h, sizeof h, 0))
        return 0;
    if (rd32(h) != WAL_SEG_MAGIC || rd32(h + 4) != WAL_SEG_VERSION || crc32c(0, h, 16) != rd32(h + 16))
        return 0;
    return rd64(h + 8);
}

/* Replay frames of run `run` from offset off (run 0: whatever run the first frame has, as an
 * earlier release's log). Returns where the frames end in *end. */
static int replay_frames(struct wal *w, int fd, uint64_t off, uint64_t run, wal_frame_fn fn, void *ctx,
                         uint64_t *end)
{
    struct stat st;
    if (fstat(fd, &st))
        return STORE_IO;
    uint64_t size = (uint64_t)st.st_size;
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    while (off + WAL_HDR <= size) {
        char h[WAL_HDR];
        if ((rc = io_all(w, fd, false, h, WAL_HDR, off)))
            break;
        uint64_t len = rd32(h + 4), r = rd64(h + 8);
        if (rd32(h) != WAL_MAGIC || len > MAX_FRAME || len > size - off - WAL_HDR || (run && r != run) ||
            rd32(h + 20))
            break;
        if (len > cap) {
            char *nb = realloc(buf, len ? len : 1);
            if (!nb) {
                rc = STORE_NOMEM;
                break;
            }
            buf = nb;
            cap = len;
        }
        if ((rc = io_all(w, fd, false, buf, len, off + WAL_HDR)))
            break;
        if (crc32c(crc32c(0, h, 16), buf, len) != rd32(h + 16))
            break;
        run = r;
        if ((rc = fn(ctx, buf, len)))
            break;
        off += WAL_HDR + len;
    }
    free(buf);
    *end = off;
    return rc;
}

int wal_replay(struct wal *w, wal_frame_fn fn, void *ctx)
{
    uint64_t end, runs[WAL_SEGS];
    int rc = 0;
    if (w->old_fd >= 0 && (rc = replay_frames(w, w->old_fd, 0, 0, fn, ctx, &end)))
        return rc;
    for (int i = 0; i < WAL_SEGS; i++) {
        runs[i] = read_run(w, w->seg[i].fd);
        if (runs[i] >= w->next_run)
            w->next_run = runs[i] + 1;
    }
    int order[WAL_SEGS] = {0, 1};
    if (runs[1] < runs[0])
        order[0] = 1, order[1] = 0;
    for (int k = 0; k < WAL_SEGS && rc == 0; k++) {
        struct seg *s = &w->seg[order[k]];
        if (runs[order[k]])
            rc = replay_frames(w, s->fd, SEG_HDR, runs[order[k]], fn, ctx, &end);
    }
    if (w->next_run == 0)
        w->next_run = 1;
    return rc;
}

/* Write seg's header for a new run and make it durable; the segment is then empty. */
static int start_run(struct wal *w, int i)
{
    struct seg *s = &w->seg[i];
    char h[SEG_HDR] = {0};
    uint64_t run = w->next_run++;
    le32(h, WAL_SEG_MAGIC);
    le32(h + 4, WAL_SEG_VERSION);
    le64(h + 8, run);
    le32(h + 16, crc32c(0, h, 16));
    /* frames of the old run that follow it no longer match the header's run */
    int rc = io_all(w, s->fd, true, h, sizeof h, 0);
    if (rc == 0 && x_datasync(w, s->sync_fd[0]))
        rc = STORE_IO;
    if (rc)
        return rc;
    s->run = run;
    s->off = SEG_HDR;
    if (s->filled < SEG_HDR + WAL_HDR)
        s->filled = SEG_HDR + WAL_HDR;
    return 0;
}

int wal_restart(struct wal *w)
{
    int rc = 0;
    for (int i = 0; i < WAL_SEGS && rc == 0; i++)
        rc = start_run(w, i);
    if (rc)
        return rc;
    w->seg[0].state = ACTIVE;
    w->seg[1].state = FREE;
    w->active = 0;
    if (w->old_fd >= 0) { /* everything of it is durable in the database now */
        char old[4200];
        snprintf(old, sizeof old, "%s/wal", w->dir);
        if (unlink(old) == 0 && x_datasync(w, w->dir_fd))
            return STORE_IO;
        x_close(w, w->old_fd);
        w->old_fd = -1;
    }
    return 0;
}

/* ---- writing ---- */

/* Zero-fill the segment ahead of a frame that would end past its end (durable mode). */
static void extend(struct wal *w, struct seg *s, uint64_t end)
{
    struct statvfs vfs;
    if (!w->sync || end <= s->filled || fstatvfs(s->fd, &vfs) ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < EXTEND_FREE)
        return;
    static const char zero[1 << 16];
    uint64_t to = end + EXTEND;
    while (s->filled < to) {
        long n = x_pwrite(w, s->fd, zero, sizeof zero, s->filled);
        if (n <= 0)
            return;
        s->filled += (uint64_t)n;
    }
}

int wal_write(struct wal *w, char *buf, size_t len, int *seg, uint64_t *at)
{
    if (len < WAL_HDR || len - WAL_HDR > MAX_FRAME)
        return STORE_INVALID;
    if (wal_broken(w))
        return STORE_UNAVAILABLE;
    struct seg *s = &w->seg[w->active];
    extend(w, s, s->off + len);
    le32(buf, WAL_MAGIC);
    le32(buf + 4, (uint32_t)(len - WAL_HDR));
    le64(buf + 8, s->run);
    le32(buf + 16, crc32c(crc32c(0, buf, 16), buf + WAL_HDR, len - WAL_HDR));
    le32(buf + 20, 0);
    int rc = io_all(w, s->fd, true, buf, len, s->off);
    if (rc)
        return rc;
    if (at)
        *at = s->off;
    __atomic_store_n(&s->off, s->off + len, __ATOMIC_RELEASE);
    if (s->off > s->filled)
        s->filled = s->off;
    *seg = w->active;
    return 0;
}

int wal_map(struct wal *w, int seg, uint64_t at, size_t len, struct wal_view *view, const char **data)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t from = at & ~(uint64_t)(page - 1);
    size_t n = (size_t)(at - from) + len;
    void *m = mmap(NULL, n, PROT_READ, MAP_SHARED, w->seg[seg].fd, (off_t)from);
    if (m == MAP_FAILED)
        return STORE_NOMEM;
    *view = (struct wal_view){m, n};
    *data = (const char *)m + (at - from);
    return 0;
}

void wal_unmap(struct wal_view *view)
{
    if (view->map)
        munmap(view->map, view->len);
    *view = (struct wal_view){0};
}

int wal_sync(struct wal *w, int seg, int syncer)
{
    if (wal_broken(w))
        return STORE_UNAVAILABLE;
    if (x_datasync(w, w->seg[seg].sync_fd[syncer]) != 0)
        __atomic_store_n(&w->broken, true, __ATOMIC_RELEASE);
    /* checked after the sync too: another syncer may have seen this write-back error first */
    return wal_broken(w) ? STORE_UNAVAILABLE : 0;
}

bool wal_broken(const struct wal *w) { return __atomic_load_n(&w->broken, __ATOMIC_ACQUIRE); }

int wal_switch(struct wal *w, uint64_t at)
{
    int cur = w->active, other = (cur + 1) % WAL_SEGS;
    __atomic_store_n(&w->switch_at, at, __ATOMIC_RELAXED);
    if (w->seg[cur].off - SEG_HDR < at || __atomic_load_n(&w->seg[other].state, __ATOMIC_ACQUIRE) != FREE)
        return -1;
    w->seg[cur].state = RETIRING;
    w->seg[other].state = ACTIVE;
    w->active = other;
    return cur;
}

int wal_retire(struct wal *w, int seg)
{
    if (wal_broken(w))
        return STORE_UNAVAILABLE;
    int rc = start_run(w, seg);
    if (rc == 0) {
        /* give back what a burst made it grow to, but keep what a run fills as a rule (up to
         * the switch, a last frame and the zeros ahead of it): zero-filling that again each
         * run would write to the disk about as much as the frames themselves */
        struct seg *s = &w->seg[seg];
        uint64_t keep = SEG_HDR + __atomic_load_n(&w->switch_at, __ATOMIC_RELAXED) + 2 * EXTEND;
        if (s->filled > keep && x_truncate(w, s->fd, keep) == 0)
            s->filled = keep;
        __atomic_store_n(&s->state, FREE, __ATOMIC_RELEASE);
    }
    return rc;
}

uint64_t wal_used(const struct wal *w)
{
    uint64_t n = 0;
    for (int i = 0; i < WAL_SEGS; i++) {
        uint64_t off = __atomic_load_n(&w->seg[i].off, __ATOMIC_ACQUIRE);
        n += off > SEG_HDR ? off - SEG_HDR : 0;
    }
    return n;
}

size_t wal_put_entry(char *o, uint64_t log, uint64_t pos, size_t len)
{
    le64(o, log);
    le64(o + 8, pos);
    le32(o + 16, (uint32_t)len);
    return WAL_ENTRY;
}

int wal_next_entry(const char *payload, size_t len, size_t *off, uint64_t *log, uint64_t *pos,
                   const char **val, size_t *vlen)
{
    if (*off == len)
        return 0;
    if (len - *off < WAL_ENTRY)
        return STORE_CORRUPT;
    const char *p = payload + *off;
    size_t n = rd32(p + 16);
    if (n > len - *off - WAL_ENTRY)
        return STORE_CORRUPT;
    *log = rd64(p);
    *pos = rd64(p + 8);
    *val = p + WAL_ENTRY;
    *vlen = n;
    *off += WAL_ENTRY + n;
    return 1;
}
