/* loop.c: the event loops that own every connection.
 *
 * A small fixed pool of threads (http_config.loops), each with its own epoll set. The listening
 * socket is in every set (EPOLLEXCLUSIVE, so one loop wakes per connection); the loop that wakes
 * accepts without blocking and deals the connections out round-robin: its own it keeps, the
 * others it hands to their loop through that loop's queue (the kernel tends to wake the same
 * idle loop, so 16 connections arriving together all landed on one loop of four, which then
 * did their parsing and encoding on one core). A connection stays on its loop for its whole
 * life. Sockets are non-blocking and
 * edge-triggered: on any event the loop reads until EAGAIN (or until the protocol's read buffer
 * is full: that is back-pressure), hands the bytes to the protocol, and writes until EAGAIN.
 * A connection gets a bounded number of such rounds per kick; one that used them up with bytes
 * left (in the socket or in its buffers) is kicked again after the rest of the batch, since no
 * new edge comes for bytes that are there already. No call on a loop thread blocks on a socket.
 *
 * Sniffing: the first byte, peeked, tells a TLS ClientHello (0x16) from cleartext; after the
 * TLS handshake (if any) the first bytes tell the HTTP/2 preface from HTTP/1.1. So one port
 * serves HTTP/1.1, h2c, HTTPS and h2 over TLS; ALPN (h2, http/1.1) only says what the client
 * will send, and the preface decides.
 *
 * Requests that wait for a commit, or run on the worker pool (calls that may block, see
 * pipeline.c), complete on another thread: conn_job_done puts the job on the loop's locked
 * queue and writes the loop's eventfd; a write's committed answer is posted to the loop the
 * same way (conn_job_post) and written there; streaming producers wake their sink the same way.
 * Everything else of a connection is touched only by its loop.
 *
 * Bounds: at most max_conns connections (a connection past it is accepted and closed at once);
 * one budget, process-wide, for buffered request bodies and queued answers (the protocols ask
 * before buffering and answer 503 when it is spent); a deadline per connection (first byte,
 * headers, idle, stalled body; set by the protocols) and a send timeout (output that makes no
 * progress), checked by a sweep every 100 ms.
 *
 * TLS: OpenSSL reads and writes through a BIO of ours. Reads are recv calls; a short one says
 * the socket was empty, so a read that ends a record with nothing left buffered needs no
 * further recv that would only say EAGAIN (as in cleartext). Writes put the records into the
 * connection's tbuf, and the loop sends them in one send per batch of up to TLS_BATCH bytes: a
 * 50 KB answer is four records and one send, not four sends (plus one for the HTTP/1.1 head's
 * own record). The handshake's flights go the same way and are sent right after each
 * handshake step; alerts and close_notify are sent, as far as the socket takes them, before a
 * close or a half-close. tbuf is freed whenever it was sent whole, and counts as output not
 * yet sent.
 *
 * Draining (http_drain): the loops stop accepting and tell every connection's protocol, which
 * stops reading new requests and closes once what is in flight was answered; after drain_ms
 * what is left is closed. A loop ends once its last connection is gone and every job and sink
 * that referred to it came back. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "klog.h"
#include "workers.h"

#define MAX_LOOPS 64
#define SWEEP_MS 100
#define LINGER_MS 2000
#define RBUF_MIN 4096
#define TLS_BATCH (64 * 1024) /* TLS records made from the output before they are sent */
#define KICK_ROUNDS 64        /* read-parse-send rounds of one kick; then the others have a turn */

/* An accepted socket on its way to its loop. */
struct incoming {
    int fd;
    char peer[48];
    struct incoming *next;
};

struct loop {
    struct http *h;
    int ep, efd;
    pthread_t th;
    int64_t now;
    pthread_mutex_t mu; /* the queue */
    struct job *jobs;
    struct sink *sinks;
    struct incoming *incoming; /* handed over by the accepting loop, under mu */
    struct conn *conns;        /* every connection of this loop, live or waiting for refs */
    struct conn *graveyard;    /* freed after the current batch of events */
    struct conn *again;        /* kicked once more after the current batch (each holds a reference) */
    int nconns;
    bool drain_seen;
    bool in_queue;      /* run_queue is running: a job queued by this thread needs no wake-up */
    bool accept_paused; /* out of descriptors: the listening socket is out of the set until the next sweep */
    int64_t drain_deadline;
    time_t date_sec;
    char date[40];
};

struct http {
    struct http_config cfg;
    struct pipeline p;
    int lfd;
    struct loop loops[MAX_LOOPS];
    int nloops;
    atomic_long nconns;
    atomic_ulong accepted, refused; /* connections, for GET /metrics */
    atomic_size_t budget_used;
    atomic_bool draining;
    atomic_int loops_done;
    atomic_int lfd_released;
    atomic_uint next_loop; /* the loop the next accepted connection goes to */
    atomic_int started;    /* loops running so far (a loop may accept before the last starts) */
    struct workers *workers;
};

static _Thread_local struct loop *this_loop; /* the loop this thread runs, if any */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t conn_now(const struct conn *c) { return c->l->now; }

const struct http_config *conn_cfg(const struct conn *c) { return &c->srv->cfg; }

const struct pipeline *conn_pipeline(const struct conn *c) { return &c->srv->p; }

bool conn_draining(const struct conn *c) { return atomic_load(&c->srv->draining); }

const char *conn_date(struct conn *c)
{
    time_t t = time(NULL);
    if (t != c->l->date_sec) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(c->l->date, sizeof c->l->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        c->l->date_sec = t;
    }
    return c->l->date;
}

/* ---- budget ---- */

bool conn_budget_take(struct conn *c, size_t n)
{
    atomic_size_t *u = &c->srv->budget_used;
    size_t cur = atomic_load(u);
    do {
        if (cur + n > c->srv->cfg.budget)
            return false;
    } while (!atomic_compare_exchange_weak(u, &cur, cur + n));
    return true;
}

void conn_budget_give(struct conn *c, size_t n) { atomic_fetch_sub(&c->srv->budget_used, n); }

void conn_budget_force(struct conn *c, size_t n) { atomic_fetch_add(&c->srv->budget_used, n); }

/* ---- output ---- */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        klog(KLOG_ERROR, "out of memory");
        abort();
    }
    return q;
}

void conn_write(struct conn *c, const void *p, size_t n)
{
    if (c->dead || !n)
        return;
    if (c->woff && c->woff == c->wlen)
        c->woff = c->wlen = 0;
    if (c->wlen + n > c->wcap) {
        if (c->woff) { /* compact first */
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        if (c->wlen + n > c->wcap) {
            size_t ncap = c->wcap ? c->wcap * 2 : 4096;
            while (ncap < c->wlen + n)
                ncap *= 2;
            c->wbuf = xrealloc(c->wbuf, ncap);
            c->wcap = ncap;
        }
    }
    if (conn_pending(c) == 0)
        c->last_write = c->l->now;
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
}

void conn_write_body(struct conn *c, char *body, size_t n)
{
    if (c->dead || !n || c->wbody) {
        free(body);
        return;
    }
    if (conn_pending(c) == 0)
        c->last_write = c->l->now;
    c->wbody = body;
    c->wbody_len = n;
    c->wbody_off = 0;
    c->out_budget += n;
    conn_budget_force(c, n);
}

/* Output not yet handed to the socket (or, over TLS, to OpenSSL). */
static size_t plain_pending(const struct conn *c)
{
    return (c->wlen - c->woff) + (c->wbody ? c->wbody_len - c->wbody_off : 0);
}

size_t conn_pending(const struct conn *c) { return plain_pending(c) + (c->tlen - c->toff); }

static void out_sent(struct conn *c, size_t n)
{
    size_t head = c->wlen - c->woff;
    if (n <= head) {
        c->woff += n;
    } else {
        c->woff = c->wlen;
        c->wbody_off += n - head;
    }
    if (c->woff == c->wlen) {
        c->woff = c->wlen = 0;
        if (c->wcap > 256 * 1024) { /* a large answer went: do not keep its buffer */
            free(c->wbuf);
            c->wbuf = NULL;
            c->wcap = 0;
        }
    }
    if (c->wbody && c->wbody_off == c->wbody_len) {
        free(c->wbody);
        c->wbody = NULL;
        c->wbody_len = c->wbody_off = 0;
        conn_budget_give(c, c->out_budget);
        c->out_budget = 0;
    }
    c->last_write = c->l->now;
}

/* ---- TLS: the BIO under OpenSSL; its records, gathered ---- */

static BIO_METHOD *tbio_method;
static pthread_once_t tbio_once = PTHREAD_ONCE_INIT;

/* OpenSSL wrote a record (or part of a handshake flight): keep it for the next send. */
static int tbio_write(BIO *b, const char *p, int n)
{
    struct conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (c->tlen + (size_t)n > c->tcap) {
        if (c->toff) {
            memmove(c->tbuf, c->tbuf + c->toff, c->tlen - c->toff);
            c->tlen -= c->toff;
            c->toff = 0;
        }
        if (c->tlen + (size_t)n > c->tcap) {
            /* a batch and the record that passes it, in one allocation */
            size_t ncap = c->tcap ? c->tcap * 2 : TLS_BATCH + 2 * SSL3_RT_MAX_PACKET_SIZE;
            while (ncap < c->tlen + (size_t)n)
                ncap *= 2;
            c->tbuf = xrealloc(c->tbuf, ncap);
            c->tcap = ncap;
        }
    }
    if (conn_pending(c) == 0)
        c->last_write = c->l->now;
    memcpy(c->tbuf + c->tlen, p, (size_t)n);
    c->tlen += (size_t)n;
    return n;
}

/* OpenSSL reads (read-ahead: as much as its buffer takes). A short read means the socket was
 * empty at that moment, which read_some uses as the plain recv's short read. */
static int tbio_read(BIO *b, char *p, int n)
{
    struct conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    ssize_t r = recv(c->fd, p, (size_t)n, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR)
            BIO_set_retry_read(b);
        return -1;
    }
    c->tls_drained = r < n;
    c->tls_eof = r == 0;
    return (int)r;
}

static long tbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    const struct conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: /* answered at once: the loop sends after each handshake step and batch */ return 1;
    case BIO_CTRL_WPENDING: return (long)(c->tlen - c->toff);
    case BIO_CTRL_EOF: return c->tls_eof;
    default: return 0;
    }
}

static void tbio_init(void)
{
    tbio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kinesd TLS socket");
    if (!tbio_method || !BIO_meth_set_write(tbio_method, tbio_write) ||
        !BIO_meth_set_read(tbio_method, tbio_read) || !BIO_meth_set_ctrl(tbio_method, tbio_ctrl)) {
        BIO_meth_free(tbio_method);
        tbio_method = NULL;
    }
}

/* Send the records made so far, until EAGAIN. 1: all sent (tbuf freed), 0: the socket is full,
 * -1: the connection failed. */
static int tls_send(struct conn *c)
{
    while (c->toff < c->tlen) {
        ssize_t w = send(c->fd, c->tbuf + c->toff, c->tlen - c->toff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->toff += (size_t)w;
        c->last_write = c->l->now;
    }
    free(c->tbuf);
    c->tbuf = NULL;
    c->toff = c->tlen = c->tcap = 0;
    return 1;
}

/* Over TLS: make records from the output, a batch at a time, and send each batch. */
static int tls_send_some(struct conn *c)
{
    for (;;) {
        while (plain_pending(c) && c->tlen - c->toff < TLS_BATCH) {
            const char *p = c->woff < c->wlen ? c->wbuf + c->woff : c->wbody + c->wbody_off;
            size_t n = c->woff < c->wlen ? c->wlen - c->woff : c->wbody_len - c->wbody_off;
            if (n > TLS_BATCH)
                n = TLS_BATCH;
            ERR_clear_error();
            int r = SSL_write(c->ssl, p, (int)n); /* one record (partial writes) */
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
                    return -1;
                break;
            }
            out_sent(c, (size_t)r);
        }
        if (c->toff == c->tlen)
            return 0;
        int sent = tls_send(c);
        if (sent <= 0)
            return sent;
    }
}

/* Write until EAGAIN or nothing is left. Returns -1 when the connection failed. */
static int send_some(struct conn *c)
{
    if (c->ssl)
        return tls_send_some(c);
    while (conn_pending(c)) {
        struct iovec iov[2];
        int n = 0;
        if (c->woff < c->wlen)
            iov[n++] = (struct iovec){c->wbuf + c->woff, c->wlen - c->woff};
        if (c->wbody && c->wbody_off < c->wbody_len)
            iov[n++] = (struct iovec){c->wbody + c->wbody_off, c->wbody_len - c->wbody_off};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -1;
        }
        out_sent(c, (size_t)w);
    }
    return 0;
}

/* ---- lifetime ---- */

/* The last reference went: unlink now, free after the current batch of events (one of them
 * may still name this connection). */
static void conn_free(struct conn *c)
{
    struct loop *l = c->l;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->nconns--;
    c->next = l->graveyard;
    l->graveyard = c;
}

static void kick(struct conn *c);

static void hold(struct conn *c) { c->refs++; }

static void release(struct conn *c)
{
    if (--c->refs == 0 && c->dead)
        conn_free(c);
}

void conn_close(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    hold(c); /* the protocol's free may drop the last job or sink */
    if (c->proto && c->proto->free)
        c->proto->free(c);
    c->proto = NULL;
    if (c->ssl) {
        (void)tls_send(c); /* an alert, as far as the socket takes it */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    free(c->tbuf);
    c->tbuf = NULL;
    c->toff = c->tlen = c->tcap = 0;
    epoll_ctl(c->l->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    atomic_fetch_sub(&c->srv->nconns, 1);
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = c->rcap = 0;
    free(c->wbuf);
    c->wbuf = NULL;
    c->woff = c->wlen = c->wcap = 0;
    free(c->wbody);
    c->wbody = NULL;
    if (c->out_budget) {
        conn_budget_give(c, c->out_budget);
        c->out_budget = 0;
    }
    release(c);
}

void conn_close_after_send(struct conn *c) { c->closing = true; }

/* Everything queued went out: half-close, then read and discard for a while, so that the
 * client reads the answer rather than a reset caused by the body it is still sending. */
static void start_linger(struct conn *c)
{
    c->lingering = true;
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        (void)tls_send(c); /* close_notify, if the socket takes it now */
    }
    shutdown(c->fd, SHUT_WR);
    c->deadline = c->l->now + LINGER_MS;
    c->rlen = 0;
}

void conn_consume(struct conn *c, size_t n)
{
    if (n >= c->rlen) {
        c->rlen = 0;
        if (c->rcap > 4 * RBUF_MIN) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
        return;
    }
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
}

/* ---- jobs and sinks ---- */

struct job *conn_job_new(struct conn *c, void *owner)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->c = c;
    j->owner = owner;
    c->refs++;
    return j;
}

/* Wakes l's epoll_wait through its eventfd. A failed write means the counter is full: the loop
 * is awake anyway. */
static void loop_kick(struct loop *l)
{
    uint64_t one = 1;
    if (write(l->efd, &one, sizeof one) < 0) {
    }
}

static void queue_job(struct job *j)
{
    struct loop *l = j->c->l;
    pthread_mutex_lock(&l->mu);
    j->next = l->jobs;
    l->jobs = j;
    pthread_mutex_unlock(&l->mu);
    if (this_loop == l && l->in_queue) /* a posted step finished: run_queue takes it next */
        return;
    loop_kick(l);
}

void conn_job_done(void *ctx, struct hresp *out)
{
    (void)out;
    queue_job(ctx);
}

void conn_job_post(void *ctx, void (*run)(void *arg), void *arg)
{
    struct job *j = ctx;
    j->run = run;
    j->run_arg = arg;
    queue_job(j);
}

void conn_job_free(struct job *j)
{
    hresp_free(&j->resp);
    if (j->budget)
        conn_budget_give(j->c, j->budget);
    free(j);
}

static void sink_wake(struct api_sink *base)
{
    struct sink *s = (struct sink *)base;
    if (atomic_exchange(&s->queued, true))
        return;
    struct loop *l = s->c->l;
    pthread_mutex_lock(&l->mu);
    s->next = l->sinks;
    l->sinks = s;
    pthread_mutex_unlock(&l->mu);
    loop_kick(l);
}

struct sink *conn_sink_new(struct conn *c, void *owner)
{
    struct sink *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.wake = sink_wake;
    s->c = c;
    s->owner = owner;
    atomic_init(&s->queued, false);
    c->refs++;
    return s;
}

static void sink_free(struct sink *s)
{
    struct conn *c = s->c;
    free(s);
    if (--c->refs == 0 && c->dead)
        conn_free(c);
}

void conn_sink_release(struct sink *s)
{
    /* the producer is closed: no wake can come any more, only one already queued */
    if (atomic_load(&s->queued))
        s->dead = true;
    else
        sink_free(s);
}

static struct job *take_jobs(struct loop *l)
{
    pthread_mutex_lock(&l->mu);
    struct job *jobs = l->jobs;
    l->jobs = NULL;
    pthread_mutex_unlock(&l->mu);
    return jobs;
}

static void adopt(struct loop *l, int fd, const char *peer);

static void run_queue(struct loop *l)
{
    uint64_t v;
    if (read(l->efd, &v, sizeof v) < 0) {
    }
    pthread_mutex_lock(&l->mu);
    struct sink *sinks = l->sinks;
    l->sinks = NULL;
    struct incoming *in = l->incoming;
    l->incoming = NULL;
    pthread_mutex_unlock(&l->mu);
    while (in) {
        struct incoming *next = in->next;
        adopt(l, in->fd, in->peer);
        free(in);
        in = next;
    }
    /* A posted step runs here (even for a closed connection: it frees what it holds) and ends
     * in conn_job_done, which puts its job back on the queue without a wake-up: the next round
     * takes it. After a few rounds the rest waits for the next turn of the loop. */
    l->in_queue = true;
    struct job *jobs = take_jobs(l);
    for (int round = 0; jobs && round < 8; round++) {
        while (jobs) {
            struct job *j = jobs;
            jobs = j->next;
            if (j->run) {
                void (*run)(void *) = j->run;
                j->run = NULL;
                run(j->run_arg);
                continue;
            }
            struct conn *c = j->c; /* the job's reference is held until here */
            if (c->dead || !j->owner) {
                conn_job_free(j);
            } else {
                c->proto->job_done(c, j);
                kick(c);
            }
            release(c);
        }
        jobs = take_jobs(l);
    }
    l->in_queue = false;
    if (jobs) { /* back on the queue, and a wake-up for it */
        struct job *last = jobs;
        while (last->next)
            last = last->next;
        pthread_mutex_lock(&l->mu);
        last->next = l->jobs;
        l->jobs = jobs;
        pthread_mutex_unlock(&l->mu);
        loop_kick(l);
    }
    while (sinks) {
        struct sink *s = sinks;
        sinks = s->next;
        atomic_store(&s->queued, false);
        struct conn *c = s->c;
        if (s->dead) {
            sink_free(s);
            continue;
        }
        if (!c->dead && s->owner && c->proto && c->proto->wake) {
            hold(c);
            c->proto->wake(c, s);
            kick(c);
            release(c);
        }
    }
}

/* ---- one connection's events ---- */

static void tls_fail(struct conn *c)
{
    ERR_clear_error();
    conn_close(c);
}

/* Look at the first byte: TLS or cleartext. Returns 1 when decided, 0 to wait, -1 closed. */
static int sniff_tls(struct conn *c)
{
    unsigned char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        conn_close(c);
        return -1;
    }
    c->sniffed = true;
    if (b == 0x16 && c->srv->cfg.tls) {
        c->ssl = SSL_new(c->srv->cfg.tls);
        BIO *bio = c->ssl && tbio_method ? BIO_new(tbio_method) : NULL;
        if (!bio) {
            tls_fail(c);
            return -1;
        }
        BIO_set_data(bio, c);
        BIO_set_init(bio, 1);
        SSL_set_bio(c->ssl, bio, bio); /* the SSL owns it */
        SSL_set_accept_state(c->ssl);
        c->handshaking = true;
        c->deadline = c->l->now + c->srv->cfg.header_ms;
    }
    return 1;
}

/* The HTTP/2 preface, or enough bytes that it cannot be: choose the protocol. */
static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static int choose_proto(struct conn *c)
{
    size_t n = c->rlen < sizeof PREFACE - 1 ? c->rlen : sizeof PREFACE - 1;
    bool h2 = false;
    if (!memcmp(c->rbuf, PREFACE, n)) {
        if (n < sizeof PREFACE - 1 && !c->eof)
            return 0; /* wait for the rest of it */
        h2 = n == sizeof PREFACE - 1;
    }
    c->deadline = 0;
    if (h2 ? http2_init(c) : http1_init(c)) {
        conn_close(c);
        return -1;
    }
    c->proto = h2 ? &http2_proto : &http1_proto;
    return 1;
}

/* Read until EAGAIN, a full buffer or EOF. Returns bytes read, or -1 when the connection failed. */
static ssize_t read_some(struct conn *c)
{
    ssize_t total = 0;
    while (!c->eof && c->rlen < c->rmax && c->readable) {
        if (c->rcap - c->rlen < RBUF_MIN / 2 && c->rcap < c->rmax) {
            size_t ncap = c->rcap ? c->rcap * 2 : RBUF_MIN;
            if (ncap > c->rmax)
                ncap = c->rmax;
            c->rbuf = xrealloc(c->rbuf, ncap);
            c->rcap = ncap;
        }
        size_t room = c->rcap - c->rlen;
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, c->rbuf + c->rlen, room > INT32_MAX ? INT32_MAX : (int)room);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) {
                    c->readable = false;
                    break;
                }
                if (e == SSL_ERROR_WANT_WRITE)
                    break;
                if (e == SSL_ERROR_ZERO_RETURN) {
                    c->eof = true;
                    break;
                }
                return -1;
            }
            n = r;
            /* the record is done, nothing more is buffered, and the last recv emptied the
             * socket: as for a plain short read below, the next bytes bring a new edge */
            if (c->tls_drained && !SSL_has_pending(c->ssl) && !c->rdhup)
                c->readable = false;
        } else {
            n = recv(c->fd, c->rbuf + c->rlen, room, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN) {
                    c->readable = false;
                    break;
                }
                return -1;
            }
            if (n == 0) {
                c->eof = true;
                break;
            }
            /* less than asked for: the socket is empty now, and whatever comes next is a new
             * edge, so the recv that would only say EAGAIN is left out */
            if ((size_t)n < room && !c->rdhup)
                c->readable = false;
        }
        c->rlen += (size_t)n;
        total += n;
    }
    return total;
}

/* Discard what arrives after the answer, until EOF or the linger deadline. */
static void linger_read(struct conn *c)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
}

/* The protocols and the loop may close c at any point of a kick: the struct stays until the
 * kick is over. */
void conn_kick(struct conn *c)
{
    if (c->dead) /* closed earlier in this batch of events */
        return;
    hold(c);
    kick(c);
    release(c);
}

/* Kick c once more after the other connections of this batch of events had their turn. */
static void kick_again(struct conn *c)
{
    if (c->again)
        return;
    c->again = true;
    c->again_next = c->l->again;
    c->l->again = c;
    hold(c);
}

static void kick(struct conn *c)
{
    for (int round = 0; !c->dead && round < KICK_ROUNDS; round++) {
        if (c->lingering) {
            linger_read(c);
            return;
        }
        if (!c->sniffed) {
            if (sniff_tls(c) <= 0)
                return;
        }
        if (c->handshaking) {
            ERR_clear_error();
            int r = SSL_do_handshake(c->ssl);
            if (tls_send(c) < 0) { /* the flight it made (the rest goes on the next edge) */
                conn_close(c);
                return;
            }
            if (r != 1) {
                int e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    tls_fail(c);
                return;
            }
            c->handshaking = false;
            c->deadline = c->l->now + c->srv->cfg.first_byte_ms;
        }
        bool had_eof = c->eof;
        ssize_t got = c->closing ? 0 : read_some(c);
        if (got < 0) {
            conn_close(c);
            return;
        }
        bool full = c->rlen >= c->rmax;
        if (!c->proto && (c->rlen || c->eof)) {
            if (c->rlen == 0) { /* closed before saying anything */
                conn_close(c);
                return;
            }
            if (choose_proto(c) <= 0)
                return;
            got = 1;
        }
        if (c->proto && (got > 0 || c->rlen > 0 || c->eof != had_eof))
            c->proto->input(c);
        bool drained = false, bounded = true;
        for (int k = 0; !c->dead && k < 16; k++) {
            size_t before = conn_pending(c);
            if (c->proto && c->proto->output && before < CONN_LOW_WATER)
                c->proto->output(c);
            if (c->dead)
                return;
            bool made = conn_pending(c) > before;
            size_t unsent = conn_pending(c);
            if (send_some(c)) {
                conn_close(c);
                return;
            }
            drained = unsent > 0 && conn_pending(c) == 0;
            if (conn_pending(c) > 0 || (!made && unsent == 0)) { /* the socket is full, or nothing to do */
                bounded = false;
                break;
            }
        }
        if (c->dead)
            return;
        if (bounded) {
            /* a producer outran the turns one kick gives it and the socket still takes more: no
             * edge will come for a socket that stays writable */
            kick_again(c);
            return;
        }
        if (c->closing && conn_pending(c) == 0) {
            start_linger(c);
            continue;
        }
        /* the protocol made room in a buffer that was full: read on; or the output went and
         * the protocol may take the next buffered request */
        if (drained && c->rlen > 0 && !c->closing)
            continue;
        if (!(full && !c->closing && !c->eof && c->rlen < c->rmax))
            return;
    }
    /* out of rounds with more to read: a body that had arrived whole and is longer than the
     * rounds' reads (KICK_ROUNDS fills of HTTP/1.1's 64 KiB buffer: 4 MiB) has its tail still in
     * the socket, and no edge comes for bytes that were there already */
    if (!c->dead)
        kick_again(c);
}

/* ---- accepting ---- */

/* The client's address as text; an IPv4 client of a dual-stack socket as plain IPv4. */
static void peer_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    out[0] = 0;
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, a->s6_addr + 12, out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)cap);
    }
}

/* Make fd (accepted, counted in nconns) a connection of loop l, or close it. */
static void adopt(struct loop *l, int fd, const char *peer)
{
    struct http *h = l->h;
    struct conn *c = atomic_load(&h->draining) ? NULL : calloc(1, sizeof *c);
    if (!c) {
        atomic_fetch_sub(&h->nconns, 1);
        close(fd);
        return;
    }
    c->l = l;
    c->srv = h;
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->rmax = RBUF_MIN;
    c->readable = true;
    c->deadline = l->now + h->cfg.first_byte_ms;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev))
        conn_close(c);
}

static void accept_some(struct loop *l)
{
    struct http *h = l->h;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(h->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: the listening socket stays readable, so stop watching it
                 * for a sweep instead of spinning; the backlog waits (or the kernel drops it) */
                epoll_ctl(l->ep, EPOLL_CTL_DEL, h->lfd, NULL);
                l->accept_paused = true;
            }
            return;
        }
        if (atomic_load(&h->draining)) {
            close(fd);
            continue;
        }
        if (atomic_fetch_add(&h->nconns, 1) >= h->cfg.max_conns) {
            atomic_fetch_sub(&h->nconns, 1);
            atomic_fetch_add_explicit(&h->refused, 1, memory_order_relaxed);
            close(fd); /* past the connection cap: the client sees the close and retries */
            continue;
        }
        atomic_fetch_add_explicit(&h->accepted, 1, memory_order_relaxed);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct incoming *in = malloc(sizeof *in);
        if (!in) {
            atomic_fetch_sub(&h->nconns, 1);
            close(fd);
            continue;
        }
        in->fd = fd;
        peer_text(&ss, in->peer, sizeof in->peer);
        unsigned n = (unsigned)atomic_load(&h->started);
        struct loop *t =
            n > 1 ? &h->loops[atomic_fetch_add_explicit(&h->next_loop, 1, memory_order_relaxed) % n] : l;
        if (t == l) {
            adopt(l, fd, in->peer);
            free(in);
            continue;
        }
        pthread_mutex_lock(&t->mu);
        in->next = t->incoming;
        t->incoming = in;
        pthread_mutex_unlock(&t->mu);
        loop_kick(t);
    }
}

/* ---- the loop ---- */

static void sweep(struct loop *l)
{
    const struct http_config *cfg = &l->h->cfg;
    for (struct conn *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (c->dead)
            continue;
        if (c->deadline && l->now >= c->deadline) {
            conn_close(c);
            continue;
        }
        if ((conn_pending(c) || c->owes > 0) && l->now - c->last_write >= cfg->send_ms)
            conn_close(c); /* the client stopped reading */
    }
}

static void start_drain(struct loop *l)
{
    struct http *h = l->h;
    l->drain_seen = true;
    l->drain_deadline = l->now + h->cfg.drain_ms;
    epoll_ctl(l->ep, EPOLL_CTL_DEL, h->lfd, NULL);
    /* the last loop to let go of the listening socket closes it: new connections are refused
     * from now on, and those in the backlog are reset */
    if (atomic_fetch_add(&h->lfd_released, 1) + 1 == h->nloops)
        close(h->lfd);
    for (struct conn *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (c->dead)
            continue;
        if (!c->proto || c->handshaking)
            conn_close(c); /* nothing asked yet */
        else if (c->proto->drain) {
            hold(c);
            c->proto->drain(c);
            kick(c);
            release(c);
        }
    }
}

static void *loop_main(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-loop"); /* top -H, perf */
    struct loop *l = arg;
    struct http *h = l->h;
    this_loop = l;
    struct epoll_event evs[128];
    int64_t last_sweep = mono_ms();
    for (;;) {
        int n = epoll_wait(l->ep, evs, 128, l->again ? 0 : SWEEP_MS);
        l->now = mono_ms();
        struct conn *again = l->again; /* taken whole: the kicks below may start a new list */
        l->again = NULL;
        while (again) {
            struct conn *c = again;
            again = c->again_next;
            c->again = false;
            conn_kick(c);
            release(c);
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &h->lfd)
                accept_some(l);
            else if (p == &l->efd)
                run_queue(l);
            else {
                struct conn *c = p; /* edge-triggered: bytes may have come since the last EAGAIN */
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->readable = true;
                if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->rdhup = true;
                conn_kick(c);
            }
        }
        while (l->graveyard) {
            struct conn *c = l->graveyard;
            l->graveyard = c->next;
            free(c);
        }
        if (l->now - last_sweep >= SWEEP_MS) {
            last_sweep = l->now;
            sweep(l);
            if (l->accept_paused && !atomic_load(&h->draining)) {
                struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &h->lfd};
                if (epoll_ctl(l->ep, EPOLL_CTL_ADD, h->lfd, &le) == 0)
                    l->accept_paused = false;
            }
        }
        if (atomic_load(&h->draining)) {
            if (!l->drain_seen)
                start_drain(l);
            if (l->now >= l->drain_deadline)
                for (struct conn *c = l->conns, *next; c; c = next) {
                    next = c->next;
                    conn_close(c); /* out of time: in-flight jobs still come back first */
                }
            if (l->nconns == 0)
                break;
        }
    }
    while (l->graveyard) {
        struct conn *c = l->graveyard;
        l->graveyard = c->next;
        free(c);
    }
    atomic_fetch_add(&h->loops_done, 1);
    return NULL;
}

/* ---- start and stop ---- */

static void http_stats(const struct pipeline *p, struct api_server_stats *st)
{
    struct http *h = (struct http *)((char *)p - offsetof(struct http, p));
    *st = (struct api_server_stats){
        .connections = (uint64_t)atomic_load_explicit(&h->nconns, memory_order_relaxed),
        .connections_accepted = atomic_load_explicit(&h->accepted, memory_order_relaxed),
        .connections_refused = atomic_load_explicit(&h->refused, memory_order_relaxed),
        .buffered_bytes = atomic_load_explicit(&h->budget_used, memory_order_relaxed),
        .budget_bytes = h->cfg.budget,
    };
}

int http_listen_socket(const char *host, uint16_t port)
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
        klog(KLOG_ERROR, "--host must be an IP address or localhost: %s", host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 4096)) {
        klog(KLOG_ERROR, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int http_start(struct api *a, const struct http_config *cfg, struct http **out)
{
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->cfg = *cfg;
    if (h->cfg.loops < 1)
        h->cfg.loops = 1;
    if (h->cfg.loops > MAX_LOOPS)
        h->cfg.loops = MAX_LOOPS;
    if (cfg->tls) {
        pthread_once(&tbio_once, tbio_init);
        if (!tbio_method) {
            klog(KLOG_ERROR, "cannot set up TLS output");
            free(h);
            return -1;
        }
    }
    h->p.api = a;
    h->p.test_clock = cfg->test_clock;
    h->p.metrics = cfg->api_metrics;
    h->p.post = conn_job_post;
    h->workers = workers_new(cfg->workers, cfg->worker_queue > 0 ? (size_t)cfg->worker_queue : 1);
    h->p.workers = h->workers;
    h->lfd = h->workers ? http_listen_socket(cfg->host, cfg->port) : -1;
    h->p.stats = http_stats;
    if (h->lfd < 0) {
        workers_free(h->workers);
        free(h);
        return -1;
    }
    for (int i = 0; i < h->cfg.loops; i++) {
        struct loop *l = &h->loops[i];
        l->h = h;
        l->now = mono_ms();
        pthread_mutex_init(&l->mu, NULL);
        l->ep = epoll_create1(EPOLL_CLOEXEC);
        l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &h->lfd};
        struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &l->efd};
        if (l->ep < 0 || l->efd < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, h->lfd, &le) ||
            epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &ee) || pthread_create(&l->th, NULL, loop_main, l)) {
            klog(KLOG_ERROR, "cannot start event loop %d: %s", i, strerror(errno));
            atomic_store(&h->draining, true);
            for (int k = 0; k < i; k++) {
                loop_kick(&h->loops[k]);
                pthread_join(h->loops[k].th, NULL);
            }
            if (i == 0) /* otherwise the last loop closed it */
                close(h->lfd);
            workers_free(h->workers);
            free(h);
            return -1;
        }
        h->nloops++;
        atomic_store(&h->started, h->nloops);
    }
    *out = h;
    return 0;
}

void http_drain(struct http *h)
{
    if (!h || atomic_exchange(&h->draining, true))
        return;
    for (int i = 0; i < h->nloops; i++)
        loop_kick(&h->loops[i]);
}

const struct pipeline *http_pipeline(const struct http *h) { return &h->p; }

bool http_drained(struct http *h) { return atomic_load(&h->loops_done) == h->nloops; }

void http_stop(struct http *h)
{
    if (!h)
        return;
    http_drain(h);
    for (int i = 0; i < h->nloops; i++)
        pthread_join(h->loops[i].th, NULL);
    workers_free(h->workers); /* idle: every job came back before its loop ended */
    for (int i = 0; i < h->nloops; i++) {
        /* handed over as that loop was ending: closed, as a draining loop closes new ones */
        for (struct incoming *in = h->loops[i].incoming, *next; in; in = next) {
            next = in->next;
            close(in->fd);
            free(in);
        }
        close(h->loops[i].ep);
        close(h->loops[i].efd);
        pthread_mutex_destroy(&h->loops[i].mu);
    }
    free(h);
}
