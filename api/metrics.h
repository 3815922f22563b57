/* metrics.h: counters of what the server does, for GET /metrics (Prometheus text format), and
 * the access log.
 *
 * Stream-level series are named after CloudWatch's Kinesis metrics (IncomingRecords ->
 * kinesis_incoming_records_total{account,region,stream}); shard-level ones (kinesis_shard_*,
 * with a shard label) exist only for the metrics that enhanced monitoring enables on a stream
 * (EnableEnhancedMonitoring: stream_metrics). Server-level series are kinesd_*.
 *
 * Cost on the data plane: a request adds to relaxed atomic counters and finds its stream's
 * counters in a lock-free table by uid; no lock, no allocation, no formatting (only the first
 * request of a stream, which inserts its entry, takes the table's own mutex). A scrape takes
 * no lock the data plane needs: it reads the counters with relaxed loads and, when the
 * registry's change lock is free at once (try-lock), drops the series of streams and shards
 * that are gone or closed. */
#ifndef KINESD_METRICS_H
#define KINESD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api;
struct api_ctx;
struct api_server_stats;
struct buf;
struct kv;
struct stream;

/* What one call did, filled in as it goes (part of struct api_ctx). */
struct metrics_call {
    uint64_t t0_ns;        /* CLOCK_MONOTONIC at the start of the call */
    int op;                /* index in the operation table, -1 when the target named none */
    size_t bytes_in;       /* request body */
    const struct kv *body; /* the decoded request, validated or not (arena); NULL before */
    uint64_t uid;          /* the stream the call acted on, 0 for none */
    uint32_t shard;        /* and its shard, when has_shard */
    bool has_shard;
    uint32_t levels;  /* the shard-level metrics enabled on that stream (stream_metrics) */
    uint64_t records; /* GetRecords: records and bytes answered, the age of the last record */
    uint64_t bytes;
    int64_t age_ms;
};

/* Create the counters of api a (its op table has nops entries, named by wire[i], kms[i] for
 * the KMS's); ops and region/account are read at scrape time. streams_cap bounds the streams
 * and shards_cap the shards with series at once (past them, new ones go uncounted and
 * kinesd_metrics_overflow_total says so). Aborts when out of memory. */
struct metrics *metrics_open(const char *const *wire, const bool *kms, int nops, size_t streams_cap,
                             size_t shards_cap);
void metrics_close(struct metrics *m);

/* CLOCK_MONOTONIC in nanoseconds (a call's start, struct metrics_call). */
uint64_t metrics_now_ns(void);

/* Stream s was just created (the change lock held): its series exist from now on. A scrape
 * also finds new streams (and those loaded at startup) in the registry, but only when the
 * change lock is free at that moment. */
void metrics_stream_created(struct api *a, const struct stream *s);

/* Reconcile the series with the registry now (the change lock held, or no other thread yet):
 * every live stream has its series, gone streams and closed shards lose theirs. */
void metrics_sync(struct api *a);

/* Record the finished call c (rc: 0, -1 with c->err, or API_ANSWERED), with its answer of
 * out_bytes and status: server-level request counters and latency, the stream-level series
 * of PutRecord(s), GetRecords and SubscribeToShard. Called once per call by api.c. */
void metrics_call_done(struct api_ctx *c, int rc, int status, size_t out_bytes);

/* One SubscribeToShardEvent of a subscription to shard of stream uid (name, and its owner's
 * account and region, borrowed) went out with records records of bytes bytes, millis_behind
 * behind the tip. */
void metrics_subscribe_event(struct api *a, uint64_t uid, const char *name, const char *account,
                             const char *region, uint32_t shard, uint64_t records, uint64_t bytes,
                             int64_t millis_behind);

/* The whole exposition into out (text format 0.0.4), server figures from st (may be NULL). */
void metrics_write(struct api *a, const struct api_server_stats *st, struct buf *out);

#endif
