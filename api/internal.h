/* internal.h: what the api modules share: the per-request context, the operation and error
 * tables, the stream model (streams.c), and the codecs for shard ids, hash keys, sequence
 * numbers and shard iterators. */
#ifndef KINESD_INTERNAL_H
#define KINESD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "api.h"
#include "arena.h"
#include "auth.h"
#include "policy.h"
#include "enc.h"
#include "metrics.h"
#include "store.h"
#include "validate.h"
#include "value.h"

typedef unsigned __int128 u128;

enum kerr {
#define KERR(e, type, status, mkey) KERR_##e,
#include "errors.def"
#undef KERR
    KERR_COUNT
};

/* ---- streams (streams.c) ---- */

enum stream_status { ST_CREATING, ST_ACTIVE, ST_DELETING, ST_UPDATING, ST_GONE };

struct shard {
    uint32_t index;                  /* shardId-<12 digits> */
    u128 start, end;                 /* hash key range, inclusive */
    int64_t created_ms;              /* the shard's first sequence number encodes this time */
    int64_t closed_ms;               /* 0 while open */
    uint64_t end_pos;                /* last position when closed */
    int32_t parent, adjacent_parent; /* -1 for none */
    bool pending;                    /* made by a reshard still UPDATING: not yet visible */
    bool closing;                    /* closes when that reshard completes */
    bool sealed;                     /* no longer routed to; closes once its appends committed */
    uint64_t ver;                    /* its metadata row's version */
    int64_t trim_at;                 /* in memory: when its oldest record passes retention */
    uint64_t offered, offered_bytes; /* records and bytes routed here (atomic; on-demand scaling) */
    uint64_t last, last_bytes;       /* of those, the last whole second's (maintenance thread) */
    uint64_t others, others_bytes;   /* the other front-ends' last second, as they published it */
    uint32_t hot_ticks;              /* consecutive seconds above one shard's write capacity */
};

struct tag {
    char *key, *value; /* owned by the stream */
};

struct stream {
    char name[129];
    /* its owner: the account and region it was created in (a stream stored by a release before
     * accounts were kept belongs to the server's --account-id and --region) */
    char account[16], region[64];
    bool old_name_row;    /* its name row is the older "name/<name>" (rewritten at the next change) */
    uint64_t uid;         /* never reused; names a stream incarnation in logs and sequences */
    int status;           /* stored status; stream_status() gives the effective one */
    int64_t status_until; /* CREATING/UPDATING: becomes ACTIVE then; DELETING: gone then */
    int64_t created_ms;
    int32_t retention_h;
    bool on_demand;
    int32_t max_record_kib; /* MaxRecordSizeInKiB: 1024 to 10240 */
    uint32_t nscalings;
    int64_t *scalings; /* owned: times of UpdateShardCount calls in the last 24 hours */
    bool resharding;   /* UPDATING with pending/closing shards, applied at status_until */
    uint32_t nshards;
    struct shard *shards;       /* owned; index order */
    struct stream_route *route; /* owned, built on first use (atomic): open shards by start */
    uint32_t ntags;
    struct tag *tags;       /* owned; sorted by key */
    uint64_t ver, tags_ver; /* versions of its header and tags rows */
    /* server-side encryption: enc_key is the KeyId as StartStreamEncryption got it ("" for
       NONE), enc_kid the built-in KMS key it names; enc_changes the times of the last changes
       (at most STREAM_ENC_CHANGES in a rolling 24 hours) */
    char enc_key[2049];
    char enc_kid[40];
    /* the KMS key new records were sealed under before the last change ("" for none): it
       stays in use until enc_switch_ms, the end of the change's UPDATING (kms_stream_kid) */
    char enc_prev_kid[40];
    int64_t enc_switch_ms;
    uint32_t nenc;
    int64_t enc_changes[25];
    bool legacy;      /* read from the older one-value format, not yet rewritten as rows */
    uint32_t metrics; /* enhanced monitoring: the enabled shard-level metrics (STREAM_METRIC bits) */
    /* warm throughput of an on-demand stream (UpdateStreamWarmThroughput), MiB/s, once given */
    bool warm;
    int32_t warm_target, warm_current;
    int64_t warm_until; /* the update to warm_target ends then; warm_current is the value before */
};

/* The shard-level metrics of enhanced monitoring, one bit each in struct stream's metrics.
 * A stream version never changes once published, so whoever holds a stream pointer (under the
 * routing lock, or the change lock) reads the set with stream_metrics(s): one load, no lock. */
enum stream_metric {
    STREAM_METRIC_INCOMING_BYTES,
    STREAM_METRIC_INCOMING_RECORDS,
    STREAM_METRIC_OUTGOING_BYTES,
    STREAM_METRIC_OUTGOING_RECORDS,
    STREAM_METRIC_WRITE_EXCEEDED,
    STREAM_METRIC_READ_EXCEEDED,
    STREAM_METRIC_ITERATOR_AGE,
    STREAM_METRIC_COUNT
};
#define STREAM_METRICS_ALL ((1u << STREAM_METRIC_COUNT) - 1)
/* The wire name of a metric ("IncomingBytes", ...), by enum stream_metric (static). */
extern const char *const stream_metric_names[STREAM_METRIC_COUNT];
static inline uint32_t stream_metrics(const struct stream *s) { return s->metrics; }
static inline bool stream_metric_on(const struct stream *s, enum stream_metric m)
{
    return s->metrics >> m & 1;
}
/* Write a ShardLevelMetrics list of the set in AWS's order (op_enhanced_monitoring.c). */
void enc_metrics(struct enc *e, uint32_t set);

#define STREAM_ENC_CHANGES 25

/* A log id is uid << 24 | shard index (log_id): the bounds of both. */
#define SHARD_INDEX_LIMIT (1u << 24)
#define UID_LIMIT (1ull << 40)
#define STREAMS_NO_IDS 1 /* a change would need a shard index or uid past these */
#define STREAMS_EXISTS 2 /* another front-end sharing the store created the stream first */

struct streams;           /* the registry: every stream, by (account, region, name) (streams.c) */
struct limits;            /* token buckets (limits.c) */
struct resource_policies; /* resource_policies.c */
struct consumers;         /* enhanced fan-out consumers (consumers.c) */
struct subs;              /* SubscribeToShard subscriptions (subscribe.c) */

struct api {
    struct api_config cfg;
    char region[64], account[16];
    struct store *store;
    struct datakeys *dk; /* encryption at rest; NULL with --no-encryption-at-rest */
    struct streams *streams;
    unsigned char iter_key[32]; /* seals shard iterators; kept in the store */
    struct limits *limits;      /* NULL with --no-limits */
    uint64_t frontend_id;       /* random, names this process among those sharing a store */
    int64_t beat_ms;            /* its last heartbeat (maintenance thread) */
    int64_t round_ms;           /* its last round of the limits' demand (maintenance thread) */
    int64_t first_round_ms;     /* its first */
    bool demand_seen;           /* this or another front-end had demand then */
    struct auth *auth;          /* --auth: the credentials; NULL without */
    struct resource_policies *policies;
    struct consumers *consumers;
    struct subs *subs;
    struct metrics *metrics;        /* GET /metrics (metrics.c) */
    struct accesslog *alog;         /* --access-log; NULL without */
    int inflight;                   /* appends routed but not yet committed (atomic) */
    struct api_ctx *reroute;        /* writes to route again (put.c; maint_mu) */
    size_t max_body;                /* request body cap, follows the largest MaxRecordSizeInKiB (atomic) */
#define DEFAULT_MAX_BODY (7u << 20) /* 5 MiB of records in base64, with their names and keys */
    pthread_t maint;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;
    pthread_t sweep;         /* trimming and dropping logs (streams_sweep) */
    pthread_cond_t sweep_cv; /* under maint_mu: wakes the sweep at close */
    bool drops;              /* logs of retired streams may be left to drop (atomic) */
    bool stopping;
};

/* ---- the request context ---- */

struct api_ctx {
    struct api *api;
    struct arena arena;
    struct kv *req;    /* the validated request */
    enum wire_fmt fmt; /* the request's wire format */
    struct enc out;    /* the answer being written */
    enum kerr err;
    const char *err_msg;            /* arena */
    const char *region;             /* from the credential scope, else the default */
    struct auth_snap *auth_snap;    /* --auth: the credentials this request was verified with */
    const struct auth_cred *caller; /* --auth: the verified caller (in auth_snap); else NULL */
    const char *source_ip;          /* the client's address, borrowed until authorization; or NULL */
    bool secure_transport;          /* the request came over TLS */
    int64_t now_ms;
    const char *stream_name; /* OPF_STREAM: resolved from StreamName or StreamARN */
    /* the owner of stream_name: a StreamARN's account, else the caller's (api_account); its
     * region is always the request's (c->region). NULL: the caller's (ctx_stream_account). */
    const char *stream_acct;
    const struct iter *iter;   /* GetRecords: its ShardIterator, opened once (NULL: it does not open) */
    bool batch;                /* PutRecords (error paths name records.N.member...) */
    struct api_response *resp; /* where the answer goes (the caller's) */
    api_done_fn done;          /* called once an API_PENDING call has finished */
    void *done_ctx;
    int (*resume)(struct api_ctx *c); /* an operation's second half, after its commit */
    void *op_state;                   /* arena: what the second half needs */
    /* api_request.post, and the step it runs on the caller's thread (api_continue) */
    void (*post)(void *done_ctx, void (*run)(void *arg), void *arg);
    int (*then)(struct api_ctx *c);
    struct metrics_call m; /* what the call did, for metrics and the access log */
};

/* The account a request acts as: the verified caller's under --auth, else --account-id's
 * (borrowed: the credentials snapshot or the api, for the request's life). */
static inline const char *api_account(const struct api_ctx *c)
{
    return c->caller ? c->caller->account : c->api->account;
}
/* The account owning the stream the request names (c->stream_name): a StreamARN's, else the
 * caller's. Its region is always c->region: an ARN of another region names no stream. */
static inline const char *ctx_stream_account(const struct api_ctx *c)
{
    return c->stream_acct ? c->stream_acct : api_account(c);
}
/* Set c->stream_name (and c->stream_acct) from StreamName / StreamARN; -1 with the error
 * recorded. */
int api_resolve_stream(struct api_ctx *c);
/* What the policy evaluator is asked of the verified caller (c->caller, under --auth) doing
 * action on resource: its identity and the request's condition keys (api.c). */
struct policy_request caller_request(const struct api_ctx *c, const char *action, const char *resource);
/* The parts of a stream ARN "arn:<partition>:kinesis:<region>:<account>:stream/<name>", the name
 * ending at end (the text's end when NULL, or where a consumer's "/consumer/..." begins). Each
 * part points into arn (not NUL-terminated). 0, or -1 when it is not such an ARN. */
struct arn_parts {
    const char *region, *account, *name;
    size_t rlen, alen, nlen;
};
int arn_split(const char *arn, const char *end, struct arn_parts *p);
/* Resolve a stream ARN's parts for the request: its region must be c->region, else
 * ResourceNotFoundException (as a regional endpoint answers). On success *name and *account
 * get arena copies; -1 with the error recorded. */
int arn_owner(struct api_ctx *c, const struct arn_parts *p, const char **name, const char **account);
/* AWS's __type of an error (errors.def). */
const char *kerr_type(enum kerr e);
/* The message of a per-record failure of PutRecords / PutRecord (arena). */
const char *record_error_message(struct api_ctx *c, enum kerr e, uint32_t shard);
/* run's return for a call that continues after a commit: it calls api_finish later. */
#define API_PENDING 1
#define API_ANSWERED 2 /* resp was filled directly (internal) */
/* Complete a pending call with its operation's result (0, or -1 with the error recorded):
 * fill the answer, free the context, tell the caller. */
void api_finish(struct api_ctx *c, int rc);
/* Complete a pending call with then(c)'s result, run on the caller's thread when it asked for
 * that (api_request.post), else here and now. For a store's callback: it returns at once. */
void api_continue(struct api_ctx *c, int (*then)(struct api_ctx *c));
/* Record an error for this request. Returns -1, for `return api_fail(...)`. */
int api_fail(struct api_ctx *c, enum kerr e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The store failed: log it and answer InternalFailure. */
int api_store_fail(struct api_ctx *c, int rc);

#define OPF_STREAM 1
#define OPF_RECORDS 2
#define OPF_KMS 4        /* an operation of the built-in KMS (api/kms/kms_ops.def) */
#define OPF_KMS_KEY 8    /* ... on one key: it authorizes itself by the key's policy (kms_find_for) */
#define OPF_CONSUMERS 16 /* reads or changes consumers (ops.def) */
struct op_def {
    const struct vfield *schema;
    int (*check)(struct api_ctx *c); /* cross-field check after the schema, or NULL */
    int (*run)(struct api_ctx *c);   /* writes c->out, or returns api_fail(...) */
};

/* Helpers for reading a validated request. */
const char *req_str(struct api_ctx *c, const char *name); /* NULL when absent */
bool req_int(struct api_ctx *c, const char *name, int64_t *out);
bool req_time_ms(struct api_ctx *c, const char *name, int64_t *out);
bool kv_time_ms(struct api_ctx *c, const struct kv *v, int64_t *out); /* a Timestamp member */

/* ---- warm throughput (op_update_stream_warm_throughput.c) ---- */
/* Whether the account's minimum throughput billing commitment is on (reads the store; *store_rc
 * gets 0 or the STORE_* code of a failed read, and then the answer is false). */
bool warm_throughput_commitment(struct api_ctx *c, int *store_rc);
/* CreateStream's WarmThroughputMiBps for an on-demand stream: *out gets mibps when the account
 * is committed, else -1 (ignored); 0, or -1 with the error recorded (over 10 GiB/s: LimitExceeded). */
int warm_throughput_check(struct api_ctx *c, int64_t mibps, int64_t *out);
/* {"TargetMiBps": n, "CurrentMiBps": m} of s at time now. */
void enc_warm_throughput(struct enc *e, const struct stream *s, int64_t now);

/* ---- the write path (put.c) ---- */
struct put_item {
    const char *pk; /* borrowed from the request */
    size_t pk_len;
    const char *data;
    size_t data_len;
    const char *ehk;          /* ExplicitHashKey text, or NULL */
    u128 hash;                /* out */
    uint32_t shard;           /* out: shard index */
    int64_t shard_created_ms; /* out: that shard's creation time (its sequence numbers hold it) */
    uint64_t pos;             /* out: position in the shard's log */
    uint64_t ix;              /* out: index in it (store_rec's) */
    enum kerr err;            /* out: 0, or why this record was not written (throttled, injected) */
};
/* What a write's second half finds in c->op_state. */
struct put_state {
    struct put_item *items; /* arena */
    size_t n;
    uint64_t uid;           /* the stream's */
    struct store_rec *recs; /* arena: the records as appended, and each item's index in them */
    size_t *slot;
    bool kms;             /* the stream is KMS-encrypted (its answers say EncryptionType KMS) */
    int rc;               /* the commit's result */
    int reroutes;         /* times routed again after the store refused the append */
    int64_t due_ms;       /* queued to be routed again: not before this */
    struct api_ctx *next; /* the next one queued (api.reroute) */
};
/* Route items (arena) to the open shards of c->stream_name and append them durably, except
 * those that the shard's write limit or an injected fault turned away (their err says which;
 * they are not written). Returns -1 with the error recorded, or API_PENDING: resume(c) runs
 * once the records are durable (positions filled) and its result finishes the call. When
 * nothing is left to write, returns resume(c) at once. */
int put_records_append(struct api_ctx *c, struct put_item *items, size_t n, int (*resume)(struct api_ctx *c));
/* Route again, and append, the writes queued because the store refused their append (a log
 * sealed or dropped by another front-end's change) whose time has come, by the layout the
 * stream's rows hold now (maintenance thread; takes the change lock). stopping: answer every
 * queued one with a retryable error instead. */
void put_reroute(struct api *a, bool stopping);
/* The request cap of PutRecords in bytes of data and keys, by the stream's record size. */
#define PUT_RECORDS_LIMIT(kib) ((kib) > 1024 ? (size_t)10 << 20 : (size_t)5 << 20)

/* Write the "ChildShards" member: the n children of a closed shard (op_common.c). */
void enc_child_shards(struct enc *e, const struct shard *kids, uint32_t n);

/* ---- limits (limits.c); each returns whether the call or record may proceed ---- */
/* The server's account's buckets are made at once; another account's on its first call. */
struct limits *limits_new(const char *account, const double *op_rates, size_t nops);
void limits_free(struct limits *l);
bool limits_write(struct limits *l, uint64_t log, size_t bytes);      /* one record */
bool limits_read_call(struct limits *l, uint64_t log);                /* one GetRecords */
void limits_read_bytes(struct limits *l, uint64_t log, size_t bytes); /* charge its answer */
bool limits_iterator(struct limits *l, uint64_t log);                 /* one GetShardIterator */
bool limits_op(struct limits *l, const char *account, int op);        /* one control-plane call */
/* Front-ends sharing a store (frontends.c, the maintenance thread; see limits.c). One round:
 * limits_demand writes this front-end's demand of the last second into out (" r<log>=<n>
 * ..."; at most cap bytes, NUL-terminated; returns its length, 0 with no demand) and takes it
 * as what the others see; limits_others_clear, then limits_others_add with each other live
 * front-end's published text (borrowed, len bytes), then limits_regrant with the number of
 * live front-ends sets every rate this front-end grants itself. */
size_t limits_demand(struct limits *l, char *out, size_t cap);
void limits_others_clear(struct limits *l);
void limits_others_add(struct limits *l, const char *text, size_t len);
void limits_regrant(struct limits *l, int live);

/* ---- front-ends sharing a store (frontends.c) ---- */
/* Called by the maintenance thread every tick: keeps this front-end's heartbeat row fresh
 * (with its demand on the limits: every 100 ms while there is demand, else once a second),
 * counts the live front-ends and regrants the limits. Cheap otherwise. */
void frontends_tick(struct api *a);
/* Remove this front-end's heartbeat row (at close). */
void frontends_leave(struct api *a);

/* On-demand scaling across front-ends: every front-end counts the writes routed to each shard
 * of an on-demand stream, and the maintenance leader, which decides the splits, adds the
 * others' counts to its own. streams_offered_publish writes this front-end's last second, as
 * " h<log>=<records> v<log>=<bytes>" entries, into out (cap bytes; what does not fit is left
 * out) and returns their length; takes the change lock. streams_offered_others sets the
 * others' counts of every shard to the n entries of v (the sums over the other front-ends,
 * borrowed); takes the change lock. */
struct offer {
    uint64_t log, recs, bytes;
};
size_t streams_offered_publish(struct api *a, char *out, size_t cap);
void streams_offered_others(struct api *a, const struct offer *v, size_t n);

/* ---- clock, randomness, injected faults ---- */
/* Milliseconds since the epoch, plus the test offset (api_clock_advance). */
int64_t clock_now_ms(void);
/* Whether to inject a failure now (--error-probability). */
bool api_inject_fault(struct api *a);

/* ---- resource policies (resource_policies.c) ---- */
int resource_policies_open(struct api *a);
void resource_policies_close(struct api *a);
/* Persist, then publish, the policy (document text of len bytes, compiled as p, which this
 * steals) of the resource arn, bound to stream incarnation uid. Returns 0, 1 when the number
 * of policies is at its bound, or a STORE_* code. */
int resource_policies_put(struct api *a, const char *arn, uint64_t uid, const char *text, size_t len,
                          struct policy *p);
/* Remove the policy of arn (absent is fine). Returns 0 or a STORE_* code. */
int resource_policies_delete(struct api *a, const char *arn);
/* The document of arn's policy for incarnation uid (arena), or NULL. */
const char *resource_policies_text(struct api_ctx *c, const char *arn, uint64_t uid);
/* Whether any resource has a policy (no lock: the common case costs one load). */
bool resource_policies_any(struct api *a);
/* The verdict of arn's policy (incarnation uid) for r; POLICY_NONE without one. */
enum policy_verdict resource_policies_eval(struct api *a, const char *arn, uint64_t uid,
                                           const struct policy_request *r);
/* Set c->stream_name from the request's ResourceARN (a stream's ARN in this account and
 * region); -1 with the error recorded. */
int api_resolve_resource(struct api_ctx *c);

/* ---- resource ARNs and consumers' tags (resource_tags.c) ---- */
struct consumer_info;
/* The resource the request's ResourceARN names: a stream of this account and region (returns 0
 * with c->stream_name set) or one of its consumers (returns 1 with *ci filled and
 * c->stream_name its stream's); -1 with the error recorded (ResourceNotFound, InvalidArgument). */
int api_resolve_any_resource(struct api_ctx *c, struct consumer_info *ci);
/* The same, for the resource policies: *uid gets the stream incarnation the resource belongs
 * to (its policy is bound to it). 0, or -1 with the error recorded. */
int resource_uid(struct api_ctx *c, uint64_t *uid);
/* TagResource / UntagResource / ListTagsForResource on consumer ci: the request's "Tags" upserted
 * (at most 50 a consumer), its "TagKeys" removed, or its tags listed. 0, or -1 with the error. */
int consumer_tags_add(struct api_ctx *c, const struct consumer_info *ci);
int consumer_tags_remove(struct api_ctx *c, const struct consumer_info *ci);
int consumer_tags_list(struct api_ctx *c, const struct consumer_info *ci);
/* {"Tags": [{"Key", "Value"}...]} of s's tags, in key order, into c->out. */
void enc_tag_list(struct api_ctx *c, const struct stream *s);

/* ---- account settings (op_describe_account_settings.c) ---- */
enum commit_status { COMMIT_DISABLED, COMMIT_ENABLED, COMMIT_PENDING_END };
struct account_settings {
    int status;                                    /* enum commit_status, effective at the request's time */
    int64_t started_ms, earliest_end_ms, ended_ms; /* 0: none */
};
/* Read the account's settings (defaults when none are stored). 0 or a STORE_* code. */
int account_settings_load(struct api_ctx *c, struct account_settings *out);
int account_settings_save(struct api_ctx *c, const struct account_settings *s);
/* {"MinimumThroughputBillingCommitment": {...}} into c->out. */
void account_settings_encode(struct api_ctx *c, const struct account_settings *s);

/* ---- streams.c ---- */
int streams_open(struct api *a);
void streams_close(struct api *a);
/* Effective status at time now. */
int stream_status(const struct stream *s, int64_t now);
const char *stream_status_name(int st);
/* The routing lock, for reading: every struct stream pointer got under it is valid only while
 * it is held. (Only the registry takes it for writing, to swap a pointer.) */
void streams_rdlock(struct api *a);
void streams_unlock(struct api *a);
/* The change lock: serializes every change of the registry (never taken by the data plane).
 * While it is held the registry does not change, so streams may be read without the rdlock. */
void streams_change_lock(struct api *a);
void streams_change_unlock(struct api *a);
/* The change lock if it is free at once (true), else false; for readers that must not wait
 * (a metrics scrape). */
bool streams_change_trylock(struct api *a);
/* A shared store: reload every stream whose rows another front-end changed, now (one query
 * of row versions, then the changed streams' rows). Takes the change lock. */
void streams_sync(struct api *a);
/* A shared store: reload stream uid from its rows now, the change lock held (a change that lost
 * its compare-and-set to another front-end's tries again on what that one wrote). 0 or a
 * STORE_* code. */
int streams_reload(struct api *a, uint64_t uid);
/* Whether the registry has a stream of this owner and name (takes the read lock). */
bool streams_known(struct api *a, const char *account, const char *region, const char *name);
/* Find the stream of an account and region by name (visible: not gone). Call with either lock
 * held. One binary search over (account, region, name): the data plane's look-up. */
struct stream *streams_find(struct api *a, const char *account, const char *region, const char *name,
                            int64_t now);
/* Every stream, ordered by (account, region, name): *n gets the count; the array is valid while
 * the lock is held. */
struct stream **streams_list(struct api *a, size_t *n);
/* The streams of one account and region, in name order (a slice of streams_list). */
struct stream **streams_of(struct api *a, const char *account, const char *region, size_t *n);
/* Create and persist a stream (change lock held); warm_mibps is its warm throughput target, or
 * -1 for none. Returns 0, STREAMS_NO_IDS (uids or shard indices exhausted), STREAMS_EXISTS, or a
 * STORE_* code (nothing changed). *out is owned by the registry. */
int streams_create(struct api *a, const char *account, const char *region, const char *name, uint32_t nshards,
                   bool on_demand, int32_t max_record_kib, int32_t warm_mibps, const struct tag *tags,
                   uint32_t ntags, int64_t now, struct stream **out);
/* A private, changeable copy of a stream (owned by the caller until streams_commit succeeds
 * or stream_discard frees it). Change lock held. */
struct stream *stream_copy(const struct stream *s);
void stream_discard(struct stream *s);
/* Persist next (a changed copy of the current cur) by writing the rows that differ in one
 * compare-and-set, then swap it in; cur is freed and next belongs to the registry. A reshard
 * staged without an UPDATING period completes here. Change lock held. Returns 0, or a STORE_*
 * code with nothing changed (next still the caller's). */
int streams_commit(struct api *a, struct stream *cur, struct stream *next, int64_t now);
/* Count of open shards across the streams of one account and region (either lock held): the
 * account's shard limit is per region, as AWS's. */
uint32_t streams_open_shards(struct api *a, const char *account, const char *region, int64_t now);
/* Tag helpers: set/replace, remove (on a copy). */
void stream_tag_set(struct stream *s, const char *k, const char *v);
void stream_tag_remove(struct stream *s, const char *k);
/* Run fn on the stream the request names. STREAM_READ: the current version, under the read
 * lock. STREAM_WRITE (STREAM_ACTIVE also requires the stream to be ACTIVE, else
 * ResourceInUseException): under the change lock, fn gets a private copy to change; when it
 * returns 0 the copy is committed (streams_commit; a store error answers InternalFailure and
 * changes nothing). A missing stream answers ResourceNotFoundException. Returns fn's result
 * (0, or -1 with the error recorded). */
enum stream_access { STREAM_READ, STREAM_WRITE, STREAM_ACTIVE };
int with_stream(struct api_ctx *c, enum stream_access access, int (*fn)(struct api_ctx *c, struct stream *s));
/* {"StreamMode": "PROVISIONED" | "ON_DEMAND"} */
void enc_stream_mode(struct enc *e, const struct stream *s);
/* The stream the request names (c->stream_name), visible and not gone; else records
 * ResourceNotFoundException "Stream X under account Y not found." and returns NULL. Lock held. */
struct stream *ctx_stream(struct api_ctx *c);
/* "arn:aws:kinesis:<region>:<account>:stream/<name>" of s's owner (arena). */
const char *stream_arn(struct api_ctx *c, const struct stream *s);
/* The shared parts of DescribeStream and DescribeStreamSummary answers. */
void enc_stream_common(struct api_ctx *c, const struct stream *s);
/* A closed shard whose records have all passed retention is gone from listings, as AWS's
 * expired shards are. */
static inline bool shard_expired(const struct stream *s, const struct shard *sh, int64_t now)
{
    return sh->closed_ms && sh->closed_ms + (int64_t)s->retention_h * 3600000 < now;
}
/* Listed and readable: neither staged by an unfinished reshard nor expired. */
static inline bool shard_visible(const struct stream *s, const struct shard *sh, int64_t now)
{
    return !sh->pending && !shard_expired(s, sh, now);
}
static inline bool shard_open(const struct shard *sh)
{
    return !sh->closed_ms && !sh->pending && !sh->sealed;
}
/* One Shard object (DescribeStream, ListShards). */
void enc_shard(struct api_ctx *c, const struct shard *sh);
/* ResourceInUseException "Stream X under account Y not ACTIVE, instead in state S". Returns -1. */
int fail_not_active(struct api_ctx *c, const struct stream *s, int status);
/* AWS's tag text rules for a Tags map (keys and values) or a TagKeys list: characters outside
 * its class fail, then, with an action ("add tags to", "remove tags from"), any '%' does.
 * Returns 0, or -1 with the InvalidArgumentException recorded. */
int check_tag_texts(struct api_ctx *c, const struct kv *tags, const char *action);
/* The tag operations' shared halves, on a copy (with_stream STREAM_WRITE commits it): upsert
 * the request's "Tags" (at most 50 per stream), remove its "TagKeys" (unknown keys are
 * ignored); both check the texts first. AddTagsToStream / TagResource and RemoveTagsFromStream /
 * UntagResource run them. Return 0, or -1 with the error recorded. */
int stream_tags_add(struct api_ctx *c, struct stream *s);
int stream_tags_remove(struct api_ctx *c, struct stream *s);
/* Number of shards that are open at time now. */
uint32_t stream_open_shards(const struct stream *s);
/* Resharding, on a copy (streams_commit persists it). Each stages the change: children are
 * added pending and their parents marked closing, the stream is UPDATING; as on AWS, the old
 * shards stay in use until the update completes (--update-stream-ms; at once when 0), when the
 * parents are sealed and the children opened, and each parent closes once every append already
 * routed to it has committed (so an EndingSequenceNumber is final). Return 0, or
 * STREAMS_NO_IDS (the stream unchanged) when the stream has not enough shard indices left
 * (SHARD_INDEX_LIMIT over its life). */
int stream_split(struct api *a, struct stream *s, uint32_t shard, u128 new_start, int64_t now);
int stream_merge(struct api *a, struct stream *s, uint32_t shard, uint32_t adjacent, int64_t now);
int stream_scale(struct api *a, struct stream *s, uint32_t target, int64_t now);
/* Whether `more` shards may still be added to s. */
bool stream_indices_left(const struct stream *s, uint32_t more);
/* For reshard operations (op_split_shard.c): the stream must be ACTIVE and provisioned; the
 * account's shard limit must allow `more` open shards. Both return 0, or -1 with the error. */
int reshard_check(struct api_ctx *c, struct stream *s);
int check_shard_limit(struct api_ctx *c, uint32_t more);
/* LimitExceededException: the stream has no shard indices left (STREAMS_NO_IDS). Returns -1. */
int fail_no_indices(struct api_ctx *c, const struct stream *s);
/* Run background maintenance (lifecycle transitions, reshards, consumers, on-demand scaling)
 * until stopping. */
void *streams_maintain(void *arg);
/* Trim expired records and drop the logs of retired streams until stopping: bulk storage work
 * of its own thread, so that a slow store (a PostgreSQL commit per piece) never holds up the
 * lifecycle transitions that clients wait for. */
void *streams_sweep(void *arg);

/* Big-endian 64-bit fields of tokens and iterators. */
static inline void put64(unsigned char *o, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        o[i] = (unsigned char)(v >> (56 - 8 * i));
}
static inline uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- shards, hash keys, sequence numbers, iterators (codec.c) ---- */
#define SEQ_LEN 56
#define POS_SHIFT 20 /* a position is (milliseconds << 20) | sub-counter */
static inline uint64_t log_id(uint64_t uid, uint32_t shard) { return uid << 24 | shard; }
static inline uint64_t pos_floor(int64_t ms) { return (uint64_t)ms << POS_SHIFT; }
static inline int64_t pos_ms(uint64_t pos) { return (int64_t)(pos >> POS_SHIFT); }

#define SHARD_ID_LEN 20 /* "shardId-" and 12 digits */
/* "shardId-000000000005" of index 5 into out (SHARD_ID_LEN bytes and a NUL). */
void shard_id(char out[32], uint32_t index);
/* A ShardId as AWS resolves it: the text after the first '-' (or the whole id), digits only, at
 * most 2147483647, so "shardId-000000000005", "shard-5", "x-5" and "5" all name shard 5; -1
 * otherwise (AWS: "Could not find shard <given> in stream <name> under account <account>."). */
int shard_parse(const char *s, uint32_t *index);
/* Decimal text of a 128-bit value into out[40]. */
void u128_str(char out[40], u128 v);
/* Parse a decimal string (already matching 0|([1-9]\d{0,38})); -1 if it exceeds 2^128-1. */
int u128_parse(const char *s, u128 *out);
/* MD5 of the partition key as an unsigned big-endian 128-bit integer. */
u128 hash_key(const char *pk, size_t len);
/* Uniform split of the hash key space into n ranges, i-th range. */
void shard_range(uint32_t i, uint32_t n, u128 *start, u128 *end);
/* Find the open shard whose range holds h (NULL if none): a binary search of the stream's open
 * shards, sorted by range once per stream version (a published version never changes). */
struct shard *shard_for_hash(struct stream *s, u128 h);
struct shard *shard_by_index(struct stream *s, uint32_t index);

/* Sequence numbers (codec.c) are AWS's version-2 layout: the decimal number, read as 47 hex digits,
 *     2 | shard creation second (9) | shard index's last digit (1) | sequence index (16) |
 *     a byte (2) | record second (9) | shard index (8) | 2 (the version)
 * The sequence index is the record's index in its shard's log (store.h): it steps by one per
 * record, as AWS's counter does, from the shard's first record's position (milliseconds << 20
 * | counter; records written before storage counted them have their position as their index,
 * and such a shard counts on from its last position). So a shard's numbers only increase, and
 * every record's index is at or above the shard's creation time shifted as a position is, which
 * tells a number of a stream deleted and created again under the same name from the new one's.
 * A number names a record by its index and second, which the record's position is found from
 * (seq_start). The byte is 00 in every number AWS hands out and decoders expect that, so it
 * stays 00. A shard's starting number has
 * index 0 and the creation second, a closed shard's ending number index SEQ_IX_END and the
 * closing second, as AWS's. Such a number is always SEQ_LEN digits. */
#define SEQ_IX_END 0x7FFFFFFFFFFFFFFFull
/* What a shard's numbers share: the decimal limbs (base 10^9, least significant first) of
 * everything but the index and the record second. */
struct seq_shard {
    uint64_t k[7];
    int64_t created_ms;
    /* seq_next's last number: its limbs and its text */
    uint64_t last[7];
    char text[SEQ_LEN + 1];
    bool have;
};
/* Prepare b for the shard of that index and creation time. */
void seq_shard_init(struct seq_shard *b, uint32_t shard, int64_t created_ms);
/* The number of index ix (at most SEQ_IX_END) and record second secs into out (SEQ_LEN digits
 * and a NUL). */
void seq_shard_write(char out[SEQ_LEN + 1], const struct seq_shard *b, uint64_t ix, int64_t secs);
/* The number of the record of index ix at pos (also the shard's starting number, 0 at 0): index
 * ix and pos's second (the creation second below the shard's first position). GetRecords
 * prepares b once per page. */
void seq_record(char out[SEQ_LEN + 1], const struct seq_shard *b, uint64_t ix, uint64_t pos);
/* seq_record into b's own text, which it returns (valid until the next call): numbers written
 * one after another for records in position order (an answer's) rewrite only the limbs that
 * changed since the last, the lower three or four of seven. */
const char *seq_next(struct seq_shard *b, uint64_t ix, uint64_t pos);
/* seq_record of a shard given by index and creation time. */
void seq_format(char out[SEQ_LEN + 1], uint32_t shard, int64_t created_ms, uint64_t ix, uint64_t pos);
/* A closed shard's EndingSequenceNumber. */
void seq_format_end(char out[SEQ_LEN + 1], uint32_t shard, int64_t created_ms, int64_t closed_ms);
/* The shard id a sequence number encodes, as AWS names it: AWS's index is a signed 32-bit
 * number, so 2^31 and above print as "shardId--02147483648". */
void seq_shard_id(char out[32], uint32_t shard);

enum seq_layout {
    SEQ_KINESD = 4, /* kinesd's own before it took AWS's: 4 | position (20) | shard (10) |
                     * stream uid (20) | check (5), 56 decimal digits; still read */
    SEQ_AWS2 = 2,   /* the layout above (ours, or AWS's) */
    SEQ_AWS1 = 1,   /* AWS's version 1: only ever AWS's */
};
/* A decoded sequence number. */
struct seq_num {
    enum seq_layout layout;
    uint32_t shard;    /* the shard index it encodes */
    uint64_t pos;      /* what it names: the position (SEQ_KINESD) or the record's index (SEQ_AWS2) */
    uint64_t uid;      /* SEQ_KINESD: the stream's uid */
    int64_t shard_s;   /* AWS's layouts: the shard's creation second */
    int64_t time_ms;   /* the record's time (AWS's layouts: a whole second) */
    uint8_t nib, byte; /* AWS's layouts: the shard's last hex digit, and the byte (version 2) */
};
/* Decode a sequence number of kinesd's old layout or AWS's version 2 or 1: 0 with *q set, or -1
 * (then it may still be AWS's version 0: seq_legacy_shard). */
int seq_parse(const char *s, struct seq_num *q);
/* Whether q was handed out for shard (index, creation time) of the stream incarnation uid:
 * old numbers by the uid; new ones by the creation second, the shard's digit and byte, and an
 * index that is the starting number's, the ending number's, or a record's: at or above the
 * shard's first position, its second not before the shard's (the shard of a stream of the
 * same name deleted and created again within the same second only held lower indexes). */
bool seq_of_shard(const struct seq_num *q, uint64_t uid, uint32_t shard, int64_t created_ms);
/* The position a read of log AT (after false) or AFTER sequence number q (of that log's shard:
 * seq_of_shard) starts at: the first record whose index is at least q's (one above it), looked
 * for among the records of q's second, else the first after that second. Returns 0 or a
 * STORE_* code. */
int seq_start(struct store *st, uint64_t log, const struct seq_num *q, bool after, uint64_t *pos);
/* SequenceNumberForOrdering: any well-formed number (kinesd's, AWS's versions 2, 1 and 0) whose
 * record and shard times are not after now. */
bool seq_ordering_valid(const char *s, int64_t now_ms);

/* A number that is not one of ours may still decode in AWS's original (version 0) layout,
 * below 2^128, whose low 16 bits name a shard: AWS answers such numbers by that shard.
 * Returns 0 with *shard set, or -1 when it does not decode. */
int seq_legacy_shard(const char *s, uint32_t *shard);

/* Seal bytes into opaque, authenticated text (arena) / open such text (-1 if forged). Used for
 * shard iterators and pagination tokens. */
const char *seal_text(struct api_ctx *c, const void *plain, size_t len);
int open_text(struct api_ctx *c, const char *text, unsigned char **plain, size_t *len);

/* A shard iterator: where it reads, and to whom it was issued. */
struct iter {
    const char *stream;           /* the stream's name */
    const char *account, *region; /* the stream's owner */
    const char *holder;           /* the account it was issued to: only that one may use it */
    uint64_t uid;                 /* the stream incarnation */
    uint32_t shard;
    uint64_t pos;
    int64_t issued_ms;
};
/* Seal a shard iterator into text (arena); the strings are at most 128, 15, 63 and 15 bytes. */
const char *iter_seal(struct api_ctx *c, const struct iter *it);
/* Open one into *it (its strings in the arena): 0, or -1 if forged, altered or malformed. An
 * iterator of the release before accounts names the server's account and region, and was
 * issued to that account. */
int iter_open(struct api_ctx *c, const char *text, struct iter *it);

#endif
