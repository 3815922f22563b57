/* Finding 7 of the storage review: a new log file's directory entry must be durable before
 * anything written to the file is acknowledged, or a power loss on a fresh data directory can
 * lose the whole log. An I/O shim records the calls: after the segment files are created, the
 * data directory itself is synced, and before the first frame is written. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "store.h"
#include "tmpdir.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int dir_fd = -1;
static int created;          /* segment files created, in order of the calls */
static int dir_synced_after; /* how many had been created when the directory was synced */
static bool frame_before_dir_sync;

static int x_open(void *ctx, const char *path, int flags, int mode)
{
    (void)ctx;
    struct stat st;
    bool existed = stat(path, &st) == 0;
    int fd = open(path, flags, mode);
    pthread_mutex_lock(&mu);
    if (fd >= 0 && (flags & O_DIRECTORY))
        dir_fd = fd;
    else if (fd >= 0 && (flags & O_CREAT) && !existed && strstr(path, "/wal."))
        created++;
    pthread_mutex_unlock(&mu);
    return fd;
}

static int x_close(void *ctx, int fd)
{
    (void)ctx;
    return close(fd);
}

static long x_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (off >= 4096 && dir_synced_after < 2) /* a frame, before the directory was synced */
        frame_before_dir_sync = true;
    pthread_mutex_unlock(&mu);
    return pwrite(fd, buf, len, (off_t)off);
}

static long x_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off)
{
    (void)ctx;
    return pread(fd, buf, len, (off_t)off);
}

static int x_datasync(void *ctx, int fd)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (fd == dir_fd && created > dir_synced_after)
        dir_synced_after = created;
    pthread_mutex_unlock(&mu);
    return fsync(fd);
}

static int x_truncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx;
    return ftruncate(fd, (off_t)len);
}

static const struct store_io io = {x_open, x_close, x_pwrite, x_pread, x_datasync, x_truncate, NULL, NULL};

static void a_fresh_data_directory_is_synced_after_its_log_files_are_created(void)
{
    char *d = tmpdir_new();
    struct store_config cfg = {.dir = d, .sync = true, .io = &io};
    struct store *s = NULL;
    CHECK(store_open(&cfg, &s) == 0);
    struct store_rec r = {"k", 1, "v", 1, 0, 0};
    struct store_batch b = {1, 1, &r, 1};
    CHECK(store_append(s, &b, 1) == 0);
    store_close(s);
    CHECK(created == 2);          /* wal.0 and wal.1 */
    CHECK(dir_synced_after == 2); /* the directory was synced once both names existed */
    CHECK(!frame_before_dir_sync);
    tmpdir_remove(d);
}

CHECK_RUN("storage/dir-sync", T(a_fresh_data_directory_is_synced_after_its_log_files_are_created))
