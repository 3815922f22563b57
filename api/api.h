/* api.h: the Kinesis API behind the HTTP server: what server/ calls, nothing more.
 *
 * api_handle runs the part of the request pipeline that knows Kinesis: content type, decoding,
 * X-Amz-Target, authentication (presence; with --auth, SigV4 verification), validation, the operation, and
 * encoding the answer or the error in the request's format. It never sees libmicrohttpd; the server hands it
 * the few headers it needs and the buffered body. */
#ifndef KINESD_API_H
#define KINESD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api;

struct api_config {
    const char *data_dir;                    /* borrowed during api_open */
    const char *store;                       /* a PostgreSQL connection string, or NULL for LMDB
                                                in data_dir; borrowed during api_open */
    bool sync;                               /* fsync each commit */
    int64_t create_ms, delete_ms, update_ms; /* lifecycle delays */
    int shard_limit;
    const char *region;       /* default region when the request names none */
    const char *account;      /* 12 digits */
    bool no_limits;           /* switch off throughput limits */
    double error_probability; /* inject PutRecord(s)/GetRecords failures with this probability */
    int64_t latency_ms;       /* added to every API request */
    const char *rate_limits;  /* "Op=N,Op=N": per-account control-plane rates; NULL for AWS's */
    int scalings_per_day;     /* UpdateShardCount calls per stream per rolling 24 hours */
    uint64_t max_unflushed;   /* storage backpressure cap in bytes, 0 for the default */
    const char *auth_file;    /* --auth: verify SigV4 against this credentials file; NULL: don't */
    /* the root key of encryption at rest: at most one source; none for the data directory's
       own root.key (tests and development) */
    const char *root_key_file, *root_key_env, *root_key_command;
    bool no_encryption_at_rest;   /* records stored unencrypted (measurements only) */
    int64_t register_consumer_ms; /* a consumer is CREATING (and DELETING) this long */
    int64_t subscription_ms;      /* a SubscribeToShard answer ends after this long */
    const char *kms_seed;         /* --kms-seed: KMS keys to create at start (api/kms/seed.h) */
    const char *access_log;       /* --access-log FILE or "-" (standard output); NULL: none */
};

/* What the HTTP front knows of itself, for GET /metrics. */
struct api_server_stats {
    uint64_t connections; /* open now */
    uint64_t connections_accepted, connections_refused;
    uint64_t buffered_bytes, budget_bytes; /* the memory budget: in use, and its size */
};

struct api_request {
    const char *content_type; /* header values, NULL when absent; all borrowed */
    const char *target;
    const char *authorization;
    const char *amz_date;
    const char *date;
    const char *query; /* raw query string without '?', or NULL */
    const char *body;
    size_t body_len;
    /* What SigV4 verification (--auth) needs besides: the method, the path as received, and
     * any header by case-insensitive name (NULL when absent); borrowed for the call. */
    const char *method;
    const char *path;
    const char *(*header)(void *ctx, const char *name);
    void *hctx;
    /* Where the second half of an asynchronous call runs (a write's answer, once its commit is
     * durable): NULL, on the store's committer thread; otherwise api_handle_async's caller gets
     * post(done_ctx, run, arg) there and makes run(arg) run soon on a thread of its own (the
     * connection's event loop), which writes the answer and calls done. */
    void (*post)(void *done_ctx, void (*run)(void *arg), void *arg);
    /* The client, for the IAM condition keys aws:SourceIp (its address as text, or NULL when
     * unknown) and aws:SecureTransport (the request came over TLS); borrowed for the call. */
    const char *source_ip;
    bool secure_transport;
};

struct api_response {
    int status;
    const char *content_type; /* static string, or NULL for none */
    char *body;               /* malloc'd, owned by the caller after api_handle */
    size_t body_len;
    char request_id[40];
    /* A streaming answer: NULL for an ordinary one. When set, status, content_type and
     * request_id describe the answer's head, body is NULL, and the server pulls the rest from
     * the producer (owned by the server from then on; it calls close exactly once). */
    struct api_producer *producer;
};

/* ---- streaming answers ----
 * An operation that answers with a stream of frames (SubscribeToShard) hands the server a
 * producer. The server pulls bytes when the client can take them (HTTP/2 flow control, or the
 * socket's buffer for HTTP/1.1 chunked transfer), so the producer never has to hold more than
 * one pull's worth of frames: that is the per-answer bound. The producer tells the server that
 * more is ready through the sink; wake may be called from any thread, any number of times. */
struct api_sink {
    void (*wake)(struct api_sink *s);
};

enum api_stream_end {
    API_STREAM_DONE,        /* the producer returned API_PULL_END and every byte was sent */
    API_STREAM_CLIENT_GONE, /* the client closed its connection or reset its stream */
    API_STREAM_SHUTDOWN,    /* the server is stopping, or a server limit ended the answer */
};

#define API_PULL_END (-1L)

struct api_producer {
    /* Called once, on the connection's thread, before the first pull: the sink to wake when
     * more is ready. The sink stays valid until close returns. */
    void (*start)(struct api_producer *p, struct api_sink *sink);
    /* Copy up to cap bytes of the answer into buf, on the connection's thread (a frame larger
     * than cap is handed over in pieces: the producer keeps its place). Returns the number of
     * bytes (> 0), 0 when nothing is ready yet (then it calls sink->wake later), or
     * API_PULL_END after the last byte. */
    long (*pull)(struct api_producer *p, char *buf, size_t cap);
    /* The answer is over (why: see api_stream_end). Releases the producer; once it returns the
     * producer never calls wake again. Called exactly once, on the connection's thread. */
    void (*close)(struct api_producer *p, enum api_stream_end why);
};

/* Open the data directory and load every stream. *out owned by the caller until api_close.
 * Returns 0, or -1 after printing why to stderr, or -2 (after printing why) when the root key
 * cannot be had or is not this data directory's, or the store's schema is newer than this
 * binary knows: exit with status 2, nothing was changed. */
int api_open(const struct api_config *cfg, struct api **out);

/* Stop background work, commit, close the store. NULL is allowed. */
void api_close(struct api *a);

/* Handle one request. Always fills resp (status, body). Thread-safe. */
void api_handle(struct api *a, const struct api_request *req, struct api_response *resp);

/* The same without waiting for a durable commit: returns 0 when resp is filled, or 1 when the
 * call waits for one (PutRecord, PutRecords); then done(ctx, resp) runs later, with resp
 * filled, on the store's committer thread (or where req->post ran its step). resp stays the caller's and must
 * live until done; req and its body are needed only until api_handle_async returns. */
typedef void (*api_done_fn)(void *ctx, struct api_response *resp);
int api_handle_async(struct api *a, const struct api_request *req, struct api_response *resp,
                     api_done_fn done, void *ctx);

/* Whether a request with this X-Amz-Target (NULL allowed) may wait before api_handle_async
 * returns: on a storage read, a metadata commit or PostgreSQL. Everything may, except writes
 * (PutRecord, PutRecords) on a store of this process's own, whose commit completes
 * asynchronously, and calls answered with an error before any lookup; with --latency-ms, every
 * call. The server runs those that may off its event loops. Cheap: no lock, no allocation. */
bool api_may_block(const struct api *a, const char *target);

/* The largest request body accepted, in bytes (413 above it). */
size_t api_max_body(const struct api *a);

/* Fill resp with the 413 answer for a body of the announced size. */
void api_too_large(struct api *a, const char *content_type, uint64_t size, struct api_response *resp);

/* Reopen the --access-log file by its path (SIGHUP, after a log rotation). No-op without. */
void api_reopen_logs(struct api *a);

/* Reload the --auth credentials file (SIGHUP). Returns 0, or -1 (the old ones stay) after
 * printing why; 0 without --auth. */
int api_reload_auth(struct api *a);

/* Fill resp with a retryable 503 ServiceUnavailable answer with the given message (the server
 * is out of its memory budget, or stopping). */
void api_unavailable(struct api *a, const char *content_type, const char *message, struct api_response *resp);

/* The Prometheus exposition of GET /metrics (text format 0.0.4) with the server's own figures
 * st (NULL: none): malloc'd text owned by the caller, *len bytes. Takes no lock the data plane
 * needs. Thread-safe. */
char *api_metrics(struct api *a, const struct api_server_stats *st, size_t *len);

/* Move the clock forward by ms (tests only; the server exposes it with --test-clock). */
void api_clock_advance(int64_t ms);

/* A fast thread-local pseudo-random number (not for secrets). */
uint64_t api_rand64(void);

/* A fresh request id (36 characters, UUID form) into out[40]. */
void api_request_id(char out[40]);

#endif
