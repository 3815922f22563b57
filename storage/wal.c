/* wal.c: frames in one file, appended and synced, read back after a crash (see wal.h).
 *
 * Why a log of our own in front of LMDB: an LMDB commit is durable only after two ordered
 * syncs (its data pages, then its meta page), and each writes the B-tree pages it touched.
 * A frame is one sequential write and one sync, and once the file has been through a run its
 * blocks are overwritten in place, so the sync has no file metadata to commit either. A new
 * file is zero-filled ahead of the run, EXTEND bytes at a time, for the same reason (not on
 * a nearly full disk, where the zeroes would take the space the data needs). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "wal.h"

#define WAL_MAGIC 0x4c41574bu /* "KWAL" read little-endian */
#define MAX_FRAME (256ull << 20)
#define EXTEND (8ull << 20)      /* zero-fill step */
#define EXTEND_FREE (1ull << 30) /* zero-fill only while the disk has this much free */

struct wal {
    int fd;
    bool sync;
    bool broken;     /* a sync failed: no more writes (atomic) */
    uint64_t off;    /* end of the current run */
    uint64_t filled; /* the file's size: written blocks up to here */
    uint64_t epoch;  /* of the current run */
};

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* Castagnoli, reflected */
        crc_table[i] = c;
    }
}

static uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *b++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

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

static uint64_t new_epoch(void)
{
    uint64_t e = 0;
    if (getrandom(&e, sizeof e, 0) != (ssize_t)sizeof e) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        e = ((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec) ^ ((uint64_t)getpid() << 32);
    }
    return e ? e : 1;
}

/* pwrite or pread all of len bytes at off. */
static int io_all(int fd, bool write, char *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t n = write ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return STORE_IO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int wal_open(const char *dir, bool sync, struct wal **out)
{
    pthread_once(&crc_once, crc_init);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/wal", dir) >= sizeof path)
        return STORE_INVAL;
    struct wal *w = calloc(1, sizeof *w);
    if (!w)
        return STORE_NOMEM;
    w->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        fprintf(stderr, "kinesd: %s: %s\n", path, strerror(errno));
        free(w);
        return STORE_IO;
    }
    w->sync = sync;
    w->epoch = new_epoch();
    *out = w;
    return 0;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    close(w->fd);
    free(w);
}

int wal_replay(struct wal *w, wal_frame_fn fn, void *ctx)
{
    struct stat st;
    if (fstat(w->fd, &st))
        return STORE_IO;
    uint64_t size = (uint64_t)st.st_size, off = 0, epoch = 0;
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    while (off + WAL_HDR <= size) {
        char h[WAL_HDR];
        if ((rc = io_all(w->fd, false, h, WAL_HDR, off)))
            break;
        uint64_t len = rd32(h + 4), e = rd64(h + 8);
        if (rd32(h) != WAL_MAGIC || len > MAX_FRAME || len > size - off - WAL_HDR || (off && e != epoch))
            break;
        if (len > cap) {
            char *nb = realloc(buf, len);
            if (!nb) {
                rc = STORE_NOMEM;
                break;
            }
            buf = nb;
            cap = len;
        }
        if ((rc = io_all(w->fd, false, buf, len, off + WAL_HDR)))
            break;
        if (crc32c(crc32c(0, h, 16), buf, len) != rd32(h + 16))
            break;
        if ((rc = fn(ctx, buf, len)))
            break;
        epoch = e;
        off += WAL_HDR + len;
    }
    free(buf);
    if (rc)
        return rc;
    w->off = off;
    if (off)
        w->epoch = epoch;
    w->filled = size;
    return 0;
}

/* Zero-fill the file ahead of a frame that would end past it (durable mode only). */
static void extend(struct wal *w, uint64_t end)
{
    struct statvfs vfs;
    if (!w->sync || end <= w->filled || fstatvfs(w->fd, &vfs) ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < EXTEND_FREE)
        return;
    static const char zero[1 << 16];
    uint64_t to = end + EXTEND;
    while (w->filled < to) {
        ssize_t n = pwrite(w->fd, zero, sizeof zero, (off_t)w->filled);
        if (n <= 0)
            return;
        w->filled += (uint64_t)n;
    }
}

int wal_write(struct wal *w, char *buf, size_t len)
{
    if (len < WAL_HDR || len - WAL_HDR > MAX_FRAME)
        return STORE_INVAL;
    if (__atomic_load_n(&w->broken, __ATOMIC_ACQUIRE))
        return STORE_IO;
    extend(w, w->off + len);
    le32(buf, WAL_MAGIC);
    le32(buf + 4, (uint32_t)(len - WAL_HDR));
    le64(buf + 8, w->epoch);
    le32(buf + 16, crc32c(crc32c(0, buf, 16), buf + WAL_HDR, len - WAL_HDR));
    le32(buf + 20, 0);
    int rc = io_all(w->fd, true, buf, len, w->off);
    if (rc == 0)
        w->off += len;
    if (w->off > w->filled)
        w->filled = w->off;
    return rc;
}

int wal_sync(struct wal *w)
{
    if (__atomic_load_n(&w->broken, __ATOMIC_ACQUIRE))
        return STORE_IO;
    if (!w->sync || fdatasync(w->fd) == 0)
        return 0;
    __atomic_store_n(&w->broken, true, __ATOMIC_RELEASE);
    return STORE_IO;
}

int wal_reset(struct wal *w, uint64_t keep)
{
    char zero[WAL_HDR] = {0};
    int rc = io_all(w->fd, true, zero, sizeof zero, 0);
    if (rc == 0)
        rc = wal_sync(w);
    if (rc)
        return rc;
    w->off = 0;
    w->epoch++;
    if (w->filled > keep && ftruncate(w->fd, (off_t)keep) == 0)
        w->filled = keep; /* on failure only the space is not given back */
    return 0;
}

uint64_t wal_used(const struct wal *w) { return w->off; }

size_t wal_put_entry(char *o, uint64_t log, uint64_t pos, const void *val, size_t len)
{
    le64(o, log);
    le64(o + 8, pos);
    le32(o + 16, (uint32_t)len);
    if (len)
        memcpy(o + WAL_ENTRY, val, len);
    return WAL_ENTRY + len;
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
