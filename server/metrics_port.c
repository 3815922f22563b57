/* metrics_port.c: a tiny HTTP/1.1 server for --metrics-port: one thread, one connection at a
 * time, one request per connection (Connection: close).
 *
 * Why not a second listener in the event loops: a scrape is one request every few seconds from
 * one or two scrapers, and keeping it off the loops means that a server whose API connections
 * saturate their loops (or their memory budget) can still be watched, and loop.c stays as it
 * is. The bounds that make a thread per port safe: a request head of at most 8 KiB, 2 s in all
 * to send it (one deadline, however the bytes trickle in) and 10 s to take the answer, so a
 * client that stalls holds the port for 12 s at most; connections waiting meanwhile sit in the
 * kernel's backlog. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "klog.h"
#include "metrics_port.h"
#include "pipeline.h"

#define HEAD_MAX 8192
#define HEAD_MS 2000 /* to send the whole request head */

struct metrics_port {
    const struct pipeline *p;
    int lfd;
    pthread_t th;
    atomic_bool stopping;
};

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the client left or stalled past the timeout */
        p += w;
        n -= (size_t)w;
    }
}

static void serve(struct metrics_port *mp, int fd)
{
    struct timeval st = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st);
    char head[HEAD_MAX + 1];
    size_t len = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (len < HEAD_MAX) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = HEAD_MS - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) == 0)
            return; /* the head took too long */
        ssize_t r = recv(fd, head + len, HEAD_MAX - len, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0)
            return;
        len += (size_t)r;
        head[len] = 0;
        if (strstr(head, "\r\n\r\n") || strstr(head, "\n\n"))
            break;
    }
    head[len] = 0;
    struct hresp o = {0};
    const char *type = "text/plain; charset=utf-8";
    bool get = !strncmp(head, "GET ", 4);
    const char *path = head + 4;
    size_t plen = get ? strcspn(path, " ?\r\n") : 0;
    if (get && plen == 8 && !strncmp(path, "/metrics", 8)) {
        pipeline_metrics(mp->p, &o);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (get && plen == 12 && !strncmp(path, "/healthcheck", 12)) {
        o.status = 200;
        o.body = strdup("{\"status\":\"ok\"}");
        o.body_len = o.body ? strlen(o.body) : 0;
        type = "application/json";
    } else {
        o.status = get ? 404 : 405;
    }
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     o.status,
                     o.status == 200   ? "OK"
                     : o.status == 404 ? "Not Found"
                                       : "Method Not Allowed",
                     type, o.body_len);
    send_all(fd, hdr, (size_t)n);
    if (o.body_len)
        send_all(fd, o.body, o.body_len);
    shutdown(fd, SHUT_WR);
    hresp_free(&o);
}

static void *port_main(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-metrics"); /* top -H, perf */
    struct metrics_port *mp = arg;
    while (!atomic_load(&mp->stopping)) {
        struct pollfd pfd = {mp->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        int fd = accept4(mp->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                poll(NULL, 0, 100); /* out of descriptors: let the backlog wait */
            continue;
        }
        serve(mp, fd);
        close(fd);
    }
    return NULL;
}

int metrics_port_start(const struct pipeline *p, const char *host, uint16_t port, struct metrics_port **out)
{
    struct metrics_port *mp = calloc(1, sizeof *mp);
    if (!mp)
        return -1;
    mp->p = p;
    mp->lfd = http_listen_socket(host, port);
    if (mp->lfd < 0) {
        free(mp);
        return -1;
    }
    if (pthread_create(&mp->th, NULL, port_main, mp)) {
        klog(KLOG_ERROR, "--metrics-port: cannot start its thread");
        close(mp->lfd);
        free(mp);
        return -1;
    }
    *out = mp;
    return 0;
}

void metrics_port_stop(struct metrics_port *mp)
{
    if (!mp)
        return;
    atomic_store(&mp->stopping, true);
    pthread_join(mp->th, NULL);
    close(mp->lfd);
    free(mp);
}
