/* http.c: the listener and the HTTP/1.1 adapter (libmicrohttpd).
 *
 * kinesd accepts connections itself and looks at the first bytes: the HTTP/2 connection
 * preface ("PRI * HTTP/2.0", prior knowledge, which the AWS SDK for JavaScript v3 sends to an
 * http:// Kinesis endpoint) goes to h2.c; anything else is handed to libmicrohttpd with
 * MHD_add_connection. Both end in pipeline_run, so the two protocols cannot drift apart.
 *
 * Threads: libmicrohttpd runs a small pool of epoll threads. A request that waits for a group
 * commit (PutRecord, PutRecords) does not hold its thread: the connection is suspended, and
 * the store's committer thread resumes it with the answer, so a commit of many writers costs a
 * few thread wake-ups, not two per writer. Other calls run on the pool thread (reads hold a
 * snapshot for milliseconds at most). HTTP/2 connections have a thread each (h2.c). */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pipeline.h"

#define MAX_CONNECTIONS 1000
#define POOL_THREADS 8

struct http {
    struct MHD_Daemon *d;
    struct pipeline p;
    int lfd;
    pthread_t acceptor;
    volatile int stopping;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int sniffing; /* connections not yet handed to a protocol */
    int h2_fds[MAX_CONNECTIONS];
    int h2_count;
    int suspended; /* requests that waited for a commit and are not yet answered (mu) */
};

/* ---- HTTP/1.1 through libmicrohttpd ---- */

struct conn {
    char *body; /* owned; grows to the announced length */
    size_t len, cap;
    int too_large;
    uint64_t announced;
    /* a request waiting for its commit */
    struct http *h;
    struct MHD_Connection *c;
    pthread_mutex_t mu;
    bool suspended; /* mu */
    bool waited;    /* counted in h->suspended until the answer is sent */
    bool answered;  /* mu: o holds the answer */
    struct hresp o;
};

static enum MHD_Result queue(struct MHD_Connection *c, struct hresp *o)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(o->body_len, o->body, MHD_RESPMEM_MUST_FREE);
    o->body = NULL; /* MHD owns it now, or it is lost with the connection */
    if (!resp)
        return MHD_NO;
    for (int i = 0; i < o->nh; i++)
        MHD_add_response_header(resp, o->h[i].name, o->h[i].value);
    enum MHD_Result ret = MHD_queue_response(c, o->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The committer's callback: the answer is ready; wake the connection if it sleeps. */
static void answered(void *ctx, struct hresp *o)
{
    (void)o;
    struct conn *cn = ctx;
    pthread_mutex_lock(&cn->mu);
    cn->answered = true;
    if (cn->suspended) {
        cn->suspended = false;
        MHD_resume_connection(cn->c);
    }
    pthread_mutex_unlock(&cn->mu);
}

static const char *mhd_header(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_HEADER_KIND, name);
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    char **q = cls;
    size_t old = *q ? strlen(*q) : 0, add = strlen(key) + (value ? strlen(value) + 1 : 0) + 2;
    char *n = realloc(*q, old + add);
    if (!n)
        return MHD_NO;
    snprintf(n + old, add, "%s%s%s%s", old ? "&" : "", key, value ? "=" : "", value ? value : "");
    *q = n;
    return MHD_YES;
}

static enum MHD_Result respond(struct http *h, struct MHD_Connection *c, const char *url, const char *method,
                               struct conn *cn)
{
    char *query = NULL;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &query);
    struct hreq r = {
        .method = method,
        .path = url,
        .query = query,
        .header = mhd_header,
        .hctx = c,
        .body = cn->body,
        .body_len = cn->len,
        .too_large = cn->too_large,
        .announced = cn->announced,
    };
    cn->h = h;
    cn->c = c;
    pthread_mutex_lock(&cn->mu); /* the callback waits until the connection is suspended */
    int pending = pipeline_start(&h->p, &r, &cn->o, answered, cn);
    free(query);
    if (pending) {
        cn->suspended = cn->waited = true;
        pthread_mutex_lock(&h->mu);
        h->suspended++;
        pthread_mutex_unlock(&h->mu);
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&cn->mu);
        return MHD_YES; /* called again once resumed */
    }
    pthread_mutex_unlock(&cn->mu);
    return queue(c, &cn->o);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **ctx)
{
    (void)version;
    struct http *h = cls;
    struct conn *cn = *ctx;
    size_t max = api_max_body(h->p.api);
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        if (!cn)
            return MHD_NO;
        pthread_mutex_init(&cn->mu, NULL);
        *ctx = cn;
        const char *cl = mhd_header(c, "Content-Length");
        if (cl) {
            cn->announced = strtoull(cl, NULL, 10);
            if (cn->announced > max) { /* refuse before reading any of the body */
                cn->too_large = 1;
                return respond(h, c, url, method, cn);
            }
            if (cn->announced) {
                cn->cap = cn->announced;
                cn->body = malloc(cn->cap + 1);
                if (!cn->body)
                    return MHD_NO;
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->len + *upload_size > max) {
            cn->too_large = 1;
            cn->announced = cn->len + *upload_size;
            *upload_size = 0;
            return respond(h, c, url, method, cn); /* MHD closes instead of reading the rest */
        }
        if (cn->len + *upload_size > cn->cap) {
            size_t ncap = (cn->len + *upload_size) * 2;
            if (ncap > max)
                ncap = max;
            char *nb = realloc(cn->body, ncap + 1);
            if (!nb)
                return MHD_NO;
            cn->body = nb;
            cn->cap = ncap;
        }
        memcpy(cn->body + cn->len, upload, *upload_size);
        cn->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&cn->mu);
    bool ready = cn->answered;
    pthread_mutex_unlock(&cn->mu);
    if (ready) /* resumed after its commit */
        return queue(c, &cn->o);
    return respond(h, c, url, method, cn);
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct conn *cn = *ctx;
    if (cn && cn->waited) { /* its answer went out (or the client went away) */
        pthread_mutex_lock(&cn->h->mu);
        cn->h->suspended--;
        pthread_cond_broadcast(&cn->h->idle);
        pthread_mutex_unlock(&cn->h->mu);
    }
    if (cn) {
        hresp_free(&cn->o);
        pthread_mutex_destroy(&cn->mu);
        free(cn->body);
        free(cn);
        *ctx = NULL;
    }
}

/* ---- the listener ---- */

struct sniff {
    struct http *h;
    int fd;
    struct sockaddr_storage addr;
    socklen_t alen;
};

static void unsniff(struct http *h)
{
    pthread_mutex_lock(&h->mu);
    h->sniffing--;
    pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->mu);
}

/* Decide the protocol from the first two bytes: "PR" starts the HTTP/2 preface, no HTTP/1.1
 * method does. */
static void *sniff_thread(void *arg)
{
    struct sniff *s = arg;
    struct http *h = s->h;
    char b[2];
    ssize_t n = 0;
    for (int waited = 0; waited < 30000 && !h->stopping; waited += 200) {
        struct pollfd pfd = {s->fd, POLLIN, 0};
        if (poll(&pfd, 1, 200) < 0 && errno != EINTR)
            break;
        n = recv(s->fd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
        if (n == 2 || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || (n == 1 && b[0] != 'P'))
            break;
    }
    if (n >= 1 && b[0] == 'P' && n == 2 && b[1] == 'R') {
        pthread_mutex_lock(&h->mu);
        int slot = h->h2_count < MAX_CONNECTIONS ? h->h2_count++ : -1;
        if (slot >= 0)
            h->h2_fds[slot] = s->fd;
        h->sniffing--;
        pthread_mutex_unlock(&h->mu);
        if (slot >= 0) {
            h2_serve(&h->p, s->fd); /* closes fd */
            pthread_mutex_lock(&h->mu);
            for (int i = 0; i < h->h2_count; i++)
                if (h->h2_fds[i] == s->fd) {
                    h->h2_fds[i] = h->h2_fds[--h->h2_count];
                    break;
                }
            pthread_cond_broadcast(&h->idle);
            pthread_mutex_unlock(&h->mu);
        } else {
            close(s->fd);
        }
    } else if (n > 0 && !h->stopping) {
        if (MHD_add_connection(h->d, s->fd, (struct sockaddr *)&s->addr, s->alen) != MHD_YES)
            close(s->fd); /* MHD does not own it on failure */
        unsniff(h);
    } else {
        close(s->fd);
        unsniff(h);
    }
    free(s);
    return NULL;
}

static void *accept_loop(void *arg)
{
    struct http *h = arg;
    while (!h->stopping) {
        struct pollfd pfd = {h->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        struct sniff *s = calloc(1, sizeof *s);
        if (!s)
            continue;
        s->h = h;
        s->alen = sizeof s->addr;
        s->fd = accept4(h->lfd, (struct sockaddr *)&s->addr, &s->alen, SOCK_CLOEXEC);
        if (s->fd < 0) {
            free(s);
            continue;
        }
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_mutex_lock(&h->mu);
        h->sniffing++;
        pthread_mutex_unlock(&h->mu);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, sniff_thread, s)) {
            close(s->fd);
            free(s);
            unsniff(h);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

static int listen_on(const char *host, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (!host || !strcmp(host, "localhost")) {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a4->sin_port = htons(port);
        len = sizeof *a4;
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        len = sizeof *a6;
    } else {
        fprintf(stderr, "kinesd: --host must be an IP address or localhost: %s\n", host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 1024)) {
        fprintf(stderr, "kinesd: cannot listen on %s:%u: %s\n", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int http_start(struct api *a, const char *host, uint16_t port, int test_clock, struct http **out)
{
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->p.api = a;
    h->p.test_clock = test_clock;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->lfd = listen_on(host, port);
    if (h->lfd < 0)
        goto fail;
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                                MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
                            0, NULL, NULL, handle, h, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)MAX_CONNECTIONS, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
                            MHD_OPTION_END);
    if (!h->d) {
        fprintf(stderr, "kinesd: cannot start the HTTP server\n");
        goto fail;
    }
    if (pthread_create(&h->acceptor, NULL, accept_loop, h)) {
        MHD_stop_daemon(h->d);
        goto fail;
    }
    *out = h;
    return 0;
fail:
    if (h->lfd >= 0)
        close(h->lfd);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->idle);
    free(h);
    return -1;
}

void http_stop(struct http *h)
{
    if (!h)
        return;
    h->stopping = 1;
    pthread_join(h->acceptor, NULL);
    close(h->lfd);
    /* HTTP/2 connections: stop reading; a request in progress still finishes and answers */
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->h2_count; i++)
        shutdown(h->h2_fds[i], SHUT_RD);
    /* and every request that waited for a commit has sent its answer (MHD must not stop with
     * suspended connections, and an acknowledged write should reach its client) */
    while (h->sniffing > 0 || h->h2_count > 0 || h->suspended > 0)
        pthread_cond_wait(&h->idle, &h->mu);
    pthread_mutex_unlock(&h->mu);
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->idle);
    free(h);
}
