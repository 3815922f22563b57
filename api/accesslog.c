/* accesslog.c: the access log's double buffer and its writer thread (see accesslog.h).
 *
 * Invariants: cur is the buffer requests append to (under mu); the writer takes it whole by
 * swapping it with the empty spare (under mu) and writes it with mu released, so the file's
 * write never happens under the lock. A line is appended whole or not at all, so the file
 * holds only complete lines. Only the writer thread touches fd once it runs (a reopen is a
 * flag it acts on before its next write). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "klog.h"

#define FLUSH_MS 200
#define LINE_MAX_BYTES 2048

struct accesslog {
    int fd;
    bool own_fd;
    char *path;  /* own_fd: what a reopen opens */
    bool reopen; /* under mu */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *cur, *spare;
    size_t cur_len;
    bool stopping;
    uint64_t dropped, lines; /* atomic */
};

static void write_all(struct accesslog *l, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(l->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            klog(KLOG_WARN, "access log: write failed: %s", w < 0 ? strerror(errno) : "no progress");
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* The writer: the file at path again, if it opens (the old one stays otherwise). */
static void reopen_file(struct accesslog *l)
{
    int fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        klog(KLOG_WARN, "access log: cannot reopen %s (%s); writing to the old file", l->path,
             strerror(errno));
        return;
    }
    close(l->fd);
    l->fd = fd;
}

static void *writer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-alog"); /* top -H, perf */
    struct accesslog *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (!l->cur_len && !l->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += FLUSH_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L)
                ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        }
        bool reopen = l->reopen && l->own_fd;
        l->reopen = false;
        if (reopen || l->cur_len) {
            char *full = l->cur;
            size_t n = l->cur_len;
            l->cur = l->spare;
            l->cur_len = 0;
            pthread_mutex_unlock(&l->mu);
            if (reopen)
                reopen_file(l);
            write_all(l, full, n);
            pthread_mutex_lock(&l->mu);
            l->spare = full;
            continue;
        }
        if (l->stopping)
            break;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int accesslog_open(const char *path, struct accesslog **out)
{
    struct accesslog *l = calloc(1, sizeof *l);
    if (!l)
        return -1;
    if (!strcmp(path, "-")) {
        l->fd = STDOUT_FILENO;
    } else {
        l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        l->own_fd = true;
        l->path = strdup(path);
    }
    l->cur = malloc(ACCESSLOG_BUFFER);
    l->spare = malloc(ACCESSLOG_BUFFER);
    if (l->fd < 0 || !l->cur || !l->spare || (l->own_fd && !l->path)) {
        klog(KLOG_ERROR, "--access-log %s: %s", path, l->fd < 0 ? strerror(errno) : "out of memory");
        goto fail;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->th, NULL, writer_main, l)) {
        klog(KLOG_ERROR, "--access-log %s: cannot start its writer", path);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        goto fail;
    }
    *out = l;
    return 0;
fail:
    if (l->own_fd && l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l->cur);
    free(l->spare);
    free(l);
    return -1;
}

void accesslog_close(struct accesslog *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    if (l->own_fd)
        close(l->fd);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->path);
    free(l->cur);
    free(l->spare);
    free(l);
}

/* A JSON string (or null) into p, at most cap - 1 bytes; returns the bytes written, or cap
 * when it did not fit. Control characters and non-ASCII bytes are escaped (\u00XX), so the
 * line stays one valid line whatever a request named. */
static size_t json_str(char *p, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s) {
        if (cap <= 4)
            return cap;
        memcpy(p, "null", 4);
        return 4;
    }
    size_t n = 0;
    if (n + 1 >= cap)
        return cap;
    p[n++] = '"';
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if (n + 7 >= cap)
            return cap;
        if (*q == '"' || *q == '\\') {
            p[n++] = '\\';
            p[n++] = (char)*q;
        } else if (*q < 0x20 || *q >= 0x7f) {
            memcpy(p + n, "\\u00", 4);
            p[n + 4] = hex[*q >> 4];
            p[n + 5] = hex[*q & 15];
            n += 6;
        } else {
            p[n++] = (char)*q;
        }
    }
    p[n++] = '"';
    return n;
}

void accesslog_write(struct accesslog *l, const struct accesslog_entry *e)
{
    char line[LINE_MAX_BYTES];
    time_t secs = (time_t)(e->time_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(line, sizeof line, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ\",\"request_id\":", (int)(e->time_ms % 1000));
    const char *names[] = {"account", "operation", "stream", NULL};
    const char *vals[] = {e->account, e->operation, e->stream};
    n += json_str(line + n, sizeof line - n, e->request_id);
    for (int i = 0; names[i] && n < sizeof line; i++) {
        n += (size_t)snprintf(line + n, sizeof line - n, ",\"%s\":", names[i]);
        if (n < sizeof line)
            n += json_str(line + n, sizeof line - n, vals[i]);
    }
    if (n < sizeof line)
        n += (size_t)snprintf(line + n, sizeof line - n, ",\"status\":%d,\"error_type\":", e->status);
    if (n < sizeof line)
        n += json_str(line + n, sizeof line - n, e->error);
    if (n < sizeof line)
        n += (size_t)snprintf(
            line + n, sizeof line - n,
            ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"latency_ms\":%" PRIu64 ".%03" PRIu64 "}\n",
            e->bytes_in, e->bytes_out, e->latency_ns / 1000000, e->latency_ns / 1000 % 1000);
    if (n >= sizeof line) { /* cannot happen with names of bounded length: never a torn line */
        __atomic_add_fetch(&l->dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    pthread_mutex_lock(&l->mu);
    bool fits = l->cur_len + n <= ACCESSLOG_BUFFER;
    if (fits) {
        memcpy(l->cur + l->cur_len, line, n);
        l->cur_len += n;
        if (l->cur_len > ACCESSLOG_BUFFER / 2)
            pthread_cond_signal(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    __atomic_add_fetch(fits ? &l->lines : &l->dropped, 1, __ATOMIC_RELAXED);
}

void accesslog_reopen(struct accesslog *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->reopen = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

uint64_t accesslog_dropped(const struct accesslog *l)
{
    return __atomic_load_n(&l->dropped, __ATOMIC_RELAXED);
}

uint64_t accesslog_lines(const struct accesslog *l) { return __atomic_load_n(&l->lines, __ATOMIC_RELAXED); }
