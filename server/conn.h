/* conn.h: what the event loop (loop.c) and the protocol modules (http1.c, http2.c) share.
 *
 * A connection belongs to one loop thread for its whole life; everything in struct conn is
 * touched only on that thread, except through the two hand-overs below, which go through the
 * loop's locked queue and its eventfd:
 *   - a job: a request waiting for its commit or running on a worker; pipeline_start's done
 *     callback (a worker, the store's committer, or the loop itself) queues it back to the
 *     connection's loop; before that, a write's answer may be posted to the loop to be written
 *     there (conn_job_post), so it goes through the queue twice;
 *   - a sink: a streaming answer's producer calls wake from any thread; the loop runs the
 *     protocol's wake on the connection's thread.
 * A closed connection's struct lives on until its outstanding jobs and queued sinks came back
 * (refs), so a late completion never touches freed memory. */
#ifndef KINESD_CONN_H
#define KINESD_CONN_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "pipeline.h"

struct conn;
struct loop;

/* A request handed to pipeline_start that may complete on another thread. */
struct job {
    struct conn *c;
    void *owner;            /* the protocol's request (an HTTP/2 stream), NULL once it went away */
    struct hresp resp;      /* filled by pipeline_start, now or on completion */
    size_t budget;          /* bytes of the memory budget this request holds */
    void (*run)(void *arg); /* posted: run(run_arg) on the loop, then the job goes on waiting */
    void *run_arg;
    struct job *next;
};

/* The server side of a streaming answer: its api_sink, queued to the loop on wake. */
struct sink {
    struct api_sink base; /* first */
    struct conn *c;
    void *owner;        /* the protocol's stream */
    atomic_bool queued; /* waiting in the loop's queue */
    bool dead;          /* its producer was closed: free when it comes out of the queue */
    struct sink *next;
};

struct proto {
    const char *name;
    /* bytes arrived in c->rbuf (consume what was used with conn_consume), or c->eof was set */
    void (*input)(struct conn *c);
    /* the output buffer is below CONN_LOW_WATER: queue more if there is any */
    void (*output)(struct conn *c);
    /* a job came back from its commit (j->owner may be NULL: free it only) */
    void (*job_done)(struct conn *c, struct job *j);
    /* a producer of s->owner has more to send */
    void (*wake)(struct conn *c, struct sink *s);
    /* the server stops: stop reading new requests, finish what is in flight */
    void (*drain)(struct conn *c);
    /* the connection closes: release the protocol's state (orphan jobs, close producers) */
    void (*free)(struct conn *c);
};

#define CONN_LOW_WATER (64 * 1024)

struct conn {
    struct loop *l;
    struct http *srv;
    int fd;
    char peer[48]; /* the client's address as text (IPv4-mapped IPv6 as IPv4): aws:SourceIp */
    SSL *ssl;
    bool handshaking; /* TLS handshake not finished */
    bool sniffed;     /* the first byte was looked at */
    const struct proto *proto;
    void *ps; /* the protocol's state */

    char *rbuf; /* received, not yet consumed */
    size_t rlen, rcap;
    size_t rmax;   /* reading pauses while rlen reaches it */
    bool eof;      /* the peer closed its side */
    bool readable; /* no EAGAIN since the last read event: the socket may have bytes */
    bool rdhup;    /* the peer's FIN (or an error) was signalled: read on until EOF */
    bool dead;     /* closed; the struct waits for refs */
    bool closing;  /* close once the output is sent (then linger) */
    bool lingering;

    char *wbuf; /* output, sent before wbody */
    size_t woff, wlen, wcap;
    char *wbody; /* one owned body segment after wbuf (HTTP/1.1 answers) */
    size_t wbody_off, wbody_len;
    size_t out_budget; /* budget bytes held by the queued output; returned once it is sent */
    char *tbuf;        /* TLS: records made from the output and not yet sent (loop.c) */
    size_t toff, tlen, tcap;
    bool tls_drained; /* TLS: the last recv took less than asked for: the socket was empty */
    bool tls_eof;     /* TLS: the last recv saw the peer's FIN */

    int64_t deadline;   /* monotonic ms; 0: none. Passing it closes the connection */
    int64_t last_write; /* progress of the output, for the send timeout */
    int owes;           /* answers the client has not taken yet (send timeout applies) */
    int refs;           /* outstanding jobs and queued sinks */
    struct conn *prev, *next;
    bool again; /* on the loop's list of connections to kick once more */
    struct conn *again_next;
};

/* The server's settings and shared state (loop.c). */
int64_t conn_now(const struct conn *c);
const struct http_config *conn_cfg(const struct conn *c);
const struct pipeline *conn_pipeline(const struct conn *c);
bool conn_draining(const struct conn *c);

/* Queue bytes for sending (copied). */
void conn_write(struct conn *c, const void *p, size_t n);
/* Queue an owned body after everything queued so far; only one at a time. It counts in the
 * memory budget until sent. */
void conn_write_body(struct conn *c, char *body, size_t n);
/* Bytes queued and not yet sent (over TLS: with the records made and not yet sent). */
size_t conn_pending(const struct conn *c);
/* Drop n bytes from the front of rbuf. */
void conn_consume(struct conn *c, size_t n);
/* Run the connection again: read what can be read, feed the protocol, send (after a state
 * change outside an event, e.g. a job that came back). */
void conn_kick(struct conn *c);
/* Close now (the protocol's free runs). */
void conn_close(struct conn *c);
/* Close once everything queued is sent; reading continues only to discard. */
void conn_close_after_send(struct conn *c);

/* The memory budget for buffered bodies and unsent answers (process-wide). */
bool conn_budget_take(struct conn *c, size_t n);
void conn_budget_give(struct conn *c, size_t n);
/* Count n bytes that exist already (an answer being sent), whatever the budget. */
void conn_budget_force(struct conn *c, size_t n);

/* A job for pipeline_start(..., conn_job_done, job); counted in c->refs. */
struct job *conn_job_new(struct conn *c, void *owner);
void conn_job_done(void *ctx, struct hresp *out);
/* pipeline.post for jobs: run(arg) on the job's loop (from any thread). */
void conn_job_post(void *ctx, void (*run)(void *arg), void *arg);
/* Free a job that came back (its resp is freed too). */
void conn_job_free(struct job *j);

/* A sink for a producer of owner; counted in c->refs. */
struct sink *conn_sink_new(struct conn *c, void *owner);
/* The sink's producer was closed: the sink goes once it is out of the loop's queue. */
void conn_sink_release(struct sink *s);

/* A Date header value for now (RFC 7231), cached per second. */
const char *conn_date(struct conn *c);

extern const struct proto http1_proto, http2_proto;
/* Set up the protocol's state on c (called once the protocol is known). 0 or -1. */
int http1_init(struct conn *c);
int http2_init(struct conn *c);

#endif
