/* subscribe.c: SubscribeToShard: one streaming answer per subscription, pushed on commit.
 *
 * Model. A subscription is a producer (api.h) that the server pulls on its connection's
 * thread. It holds at most one encoded event (<= 10,000 records and 2 MiB of record bytes,
 * as JSON in an event-stream frame) and reads the next batch only once that event has been
 * taken, so its memory is bounded whatever the client's read speed, and HTTP/2 flow control
 * or the socket's buffer paces it. When it has nothing to send it arms a storage watch on its
 * shard's log (the engine wakes it when a record past its position commits: no polling) and
 * asks the timer thread for a wake at its next heartbeat, read-rate refill or end. One timer
 * thread serves every subscription; a subscription costs no thread.
 *
 * Slots. Each (consumer registration, shard) pair has a slot: when it was last called (one
 * call a second), when its current subscription started, and that subscription. A new call
 * within 5 s of a live subscription's start is refused; later, it takes over: the old one
 * ends with an in-stream ResourceInUseException. Slots without a live subscription are
 * dropped once their call window has passed, so there are at most as many as recent calls.
 *
 * Ending. After --subscription-s the answer ends cleanly. A deregistered consumer or a
 * deleted stream (subs_notify) ends it with ResourceNotFoundException; a closed shard whose
 * last record was sent ends it with a final event (ContinuationSequenceNumber null,
 * ChildShards). Locks: subs->mu guards slots, the live list and each subscription's shared
 * fields; it is never held across a storage call, and the watch callback takes no lock. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "consumers.h"
#include "eventstream.h"
#include "internal.h"
#include "kms/datakeys.h"
#include "kms/kms.h"
#include "subscribe.h"

struct slot {
    uint64_t uid, generation;
    char consumer[129];
    uint32_t shard;
    int64_t last_call_ms, start_ms;
    struct sub *cur; /* the live subscription, or NULL */
};

struct subs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t timer;
    bool stopping;
    struct sub **live; /* every open subscription */
    size_t nlive, caplive;
    struct slot *slots;
    size_t nslots, capslots;
    uint64_t epoch; /* bumped by subs_notify */
};

struct sub {
    struct api_producer base; /* first: the producer pointer is the struct's */
    struct api *api;
    struct api_sink *sink;
    /* what it reads */
    struct consumer_info ci;
    uint64_t uid, log;
    uint32_t shard;
    int64_t shard_created_ms; /* its sequence numbers hold it */
    char shard_id[32], request_id[40];
    /* the connection thread's */
    uint64_t next;                    /* next position to read */
    uint64_t last_sent, last_sent_ix; /* the position and index of the last record sent */
    bool any_sent;
    struct buf out;
    size_t off;
    bool started_stream, done;
    int64_t last_event_ms, end_ms;
    double tokens;
    int64_t tokens_ms;
    struct store_watch *w;
    uint64_t seen_epoch;
    /* --auth: who subscribed (in auth, held until the subscription closes), for the kms:Decrypt
     * its records' KMS keys ask of every event; else NULL */
    struct auth_snap *auth;
    const struct auth_cred *caller;
    char region[32], source_ip[64];
    bool secure_transport;
    /* subs->mu */
    int64_t deadline_ms; /* 0: none */
    bool taken_over;
};

/* ---- the timer thread ---- */

static void *timer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-subs"); /* top -H, perf */
    struct subs *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        int64_t now = clock_now_ms(), next = 0;
        for (size_t i = 0; i < r->nlive; i++) {
            struct sub *s = r->live[i];
            if (!s->deadline_ms)
                continue;
            if (s->deadline_ms <= now) {
                s->deadline_ms = 0;
                if (s->sink)
                    s->sink->wake(s->sink); /* under mu: close() cannot finish meanwhile */
            } else if (!next || s->deadline_ms < next) {
                next = s->deadline_ms;
            }
        }
        if (!next) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        /* the clock may be advanced by tests: wait real time, at most until the deadline */
        int64_t wait = next - now;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int subs_open(struct api *a)
{
    struct subs *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->timer, NULL, timer_main, r)) {
        free(r);
        return -1;
    }
    a->subs = r;
    return 0;
}

void subs_close(struct api *a)
{
    struct subs *r = a->subs;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->timer, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->live);
    free(r->slots);
    free(r);
    a->subs = NULL;
}

void subs_notify(struct api *a)
{
    struct subs *r = a->subs;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->epoch++;
    for (size_t i = 0; i < r->nlive; i++)
        if (r->live[i]->sink)
            r->live[i]->sink->wake(r->live[i]->sink);
    pthread_mutex_unlock(&r->mu);
}

/* Ask for a wake at t (keeps an earlier one). */
static void set_deadline(struct sub *s, int64_t t)
{
    struct subs *r = s->api->subs;
    pthread_mutex_lock(&r->mu);
    if (!s->deadline_ms || t < s->deadline_ms) {
        s->deadline_ms = t;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- slots (mu held) ---- */

static struct slot *slot_find(struct subs *r, const struct consumer_info *ci, uint32_t shard)
{
    for (size_t i = 0; i < r->nslots; i++) {
        struct slot *t = &r->slots[i];
        if (t->uid == ci->uid && t->generation == ci->generation && t->shard == shard &&
            !strcmp(t->consumer, ci->name))
            return t;
    }
    return NULL;
}

static struct slot *slot_add(struct subs *r, const struct consumer_info *ci, uint32_t shard, int64_t now)
{
    size_t j = 0; /* drop slots with nothing live whose call window is over */
    for (size_t i = 0; i < r->nslots; i++)
        if (r->slots[i].cur || now - r->slots[i].last_call_ms < SUBSCRIBE_CALL_MS)
            r->slots[j++] = r->slots[i];
    r->nslots = j;
    if (r->nslots == r->capslots) {
        size_t cap = r->capslots ? r->capslots * 2 : 64;
        struct slot *v = realloc(r->slots, cap * sizeof *v);
        if (!v)
            return NULL;
        r->slots = v, r->capslots = cap;
    }
    struct slot *t = &r->slots[r->nslots++];
    memset(t, 0, sizeof *t);
    t->uid = ci->uid, t->generation = ci->generation, t->shard = shard;
    memcpy(t->consumer, ci->name, sizeof t->consumer);
    return t;
}

/* ---- events ---- */

static void frame_exception(struct sub *s, const char *type, const char *msg)
{
    struct enc e;
    enc_init(&e, WIRE_JSON);
    enc_obj_begin(&e);
    enc_key(&e, "message"), enc_strz(&e, msg);
    enc_obj_end(&e);
    eventstream_exception(&s->out, type, e.b.p, e.b.len);
    buf_free(&e.b);
    s->done = true;
}

static void *malloc_fn(void *ctx, size_t n)
{
    struct arena *a = ctx;
    return arena_alloc(a, n);
}

/* Where the shard stands: 0 open, 1 closed (end_pos, children into kids), -1 gone. */
static int shard_state(struct sub *s, uint64_t *end_pos, struct shard **kids, uint32_t *nkids,
                       int64_t *retention_h, struct arena *ar)
{
    struct api *a = s->api;
    int st = -1;
    streams_rdlock(a);
    struct stream *str = streams_find(a, s->ci.account, s->ci.region, s->ci.stream, clock_now_ms());
    struct shard *sh = str && str->uid == s->uid ? shard_by_index(str, s->shard) : NULL;
    if (sh && stream_status(str, clock_now_ms()) != ST_DELETING) {
        st = sh->closed_ms ? 1 : 0;
        *end_pos = sh->end_pos;
        *retention_h = str->retention_h;
        *nkids = 0;
        if (st == 1) {
            *kids = arena_alloc(ar, (str->nshards + 1) * sizeof **kids);
            for (uint32_t i = 0; i < str->nshards; i++)
                if (str->shards[i].parent == (int32_t)s->shard ||
                    str->shards[i].adjacent_parent == (int32_t)s->shard)
                    (*kids)[(*nkids)++] = str->shards[i];
        }
    }
    streams_unlock(a);
    return st;
}

static void fail_gone(struct sub *s)
{
    char msg[600];
    snprintf(msg, sizeof msg,
             "Consumer %s with creation timestamp %" PRId64 " under stream: %s, account %s not found.",
             s->ci.name, s->ci.created_ms / 1000, s->ci.stream, s->ci.account);
    frame_exception(s, "ResourceNotFoundException", msg);
}

static void on_commit(void *arg)
{
    struct sub *s = arg;
    s->sink->wake(s->sink); /* no lock: this may run inside store_watch on the pulling thread */
}

/* Make the next frame into s->out, or arrange to be woken. Returns 1 with a frame, 0 when
 * nothing is ready yet, -1 at the end (nothing more to send). */
static int produce(struct sub *s)
{
    struct api *a = s->api;
    struct subs *r = a->subs;
    int64_t now = clock_now_ms();
    if (s->done)
        return -1;
    if (!s->started_stream) {
        s->started_stream = true;
        s->last_event_ms = now;
        eventstream_event(&s->out, "initial-response", "{}", 2);
        return 1;
    }
    pthread_mutex_lock(&r->mu);
    bool taken = s->taken_over;
    uint64_t epoch = r->epoch;
    pthread_mutex_unlock(&r->mu);
    if (taken) {
        char msg[600];
        snprintf(msg, sizeof msg, "Another active subscription exists for this consumer: %s:%s:%s:%s",
                 s->ci.account, s->ci.stream, s->shard_id, s->ci.name);
        frame_exception(s, "ResourceInUseException", msg);
        return 1;
    }
    if (epoch != s->seen_epoch) {
        s->seen_epoch = epoch;
        if (!consumers_alive(a, &s->ci, now)) {
            fail_gone(s);
            return 1;
        }
    }
    if (now >= s->end_ms)
        return -1;
    /* the read rate: 2 MiB/s, with one event's debt allowed; none with --no-limits, which
     * lifts the write limits too (a limited reader of an unlimited writer falls behind) */
    s->tokens += (double)(now - s->tokens_ms) * SUBSCRIBE_RATE / 1000.0;
    if (s->tokens > SUBSCRIBE_RATE)
        s->tokens = SUBSCRIBE_RATE;
    s->tokens_ms = now;
    if (s->tokens < 0 && a->limits) {
        set_deadline(s, now + (int64_t)(-s->tokens * 1000.0 / SUBSCRIBE_RATE) + 1);
        return 0;
    }
    if (s->w) { /* armed before: whether it fired or not, it is done with */
        store_unwatch(a->store, s->w);
        s->w = NULL;
    }
    struct arena ar;
    arena_init(&ar);
    uint64_t end_pos = 0;
    struct shard *kids = NULL;
    uint32_t nkids = 0;
    int64_t retention_h = 24;
    int st = shard_state(s, &end_pos, &kids, &nkids, &retention_h, &ar);
    if (st < 0) {
        fail_gone(s);
        arena_free(&ar);
        return 1;
    }
    /* reads start no earlier than the retention horizon, as GetRecords' do */
    uint64_t floor = pos_floor(now - retention_h * 3600000);
    if (s->next < floor)
        s->next = floor;
    struct store_records got = {.alloc = malloc_fn, .actx = &ar};
    int rc = store_scan(a->store, s->log, s->next, SUBSCRIBE_EVENT_RECORDS, SUBSCRIBE_EVENT_BYTES, &got);
    if (rc && rc != STORE_NOMEM) {
        /* records under a KMS key that is gone do not open: KMSAccessDeniedException, as
         * GetRecords answers (kms_scan_fail); anything else an internal failure */
        struct api_ctx kc = {.api = a, .region = s->region, .now_ms = now};
        arena_init(&kc.arena);
        kms_scan_fail(&kc, s->log, rc);
        if (kc.err == KERR_KMS_K_ACCESS_DENIED)
            frame_exception(s, kerr_type(kc.err), kc.err_msg ? kc.err_msg : "");
        else
            frame_exception(s, "InternalFailure", "Internal service failure.");
        arena_free(&kc.arena);
        arena_free(&ar);
        return 1;
    }
    /* an event holds at most 2 MiB: the record that crossed the bound waits for the next one,
     * unless it is alone (a record over 2 MiB, after UpdateMaxRecordSize) */
    if (got.n > 1 && got.bytes > SUBSCRIBE_EVENT_BYTES) {
        got.n--;
        got.bytes -= got.v[got.n].pk_len + got.v[got.n].data_len;
    }
    /* the state of each KMS key that sealed records applies to the whole event, as to a
     * GetRecords call; a failure ends the stream with that exception */
    if (got.n && a->dk) {
        struct api_ctx kc = {.api = a,
                             .region = s->region,
                             .now_ms = now,
                             .stream_name = s->ci.stream,
                             .stream_acct = s->ci.account,
                             .caller = s->caller,
                             .source_ip = s->source_ip[0] ? s->source_ip : NULL,
                             .secure_transport = s->secure_transport};
        arena_init(&kc.arena);
        if (kms_records_check(&kc, got.v, got.n))
            frame_exception(s, kerr_type(kc.err), kc.err_msg ? kc.err_msg : "");
        arena_free(&kc.arena);
        if (s->done) {
            arena_free(&ar);
            return 1;
        }
    }
    /* a closed shard takes no more records: having read its last one is its end */
    uint64_t next = got.n ? got.v[got.n - 1].pos + 1 : s->next;
    bool at_end = st == 1 && (next > got.last || next > end_pos);
    if (!got.n && !at_end && now - s->last_event_ms < SUBSCRIBE_HEARTBEAT_MS) {
        /* idle: wake on the next commit, the heartbeat or the end, whichever comes first */
        uint64_t after = s->next ? s->next - 1 : 0;
        int64_t t = s->last_event_ms + SUBSCRIBE_HEARTBEAT_MS;
        if (st == 0 && store_watch(a->store, s->log, after, on_commit, s, &s->w))
            s->w = NULL, t = now + 100; /* no watch to be had: look again soon */
        set_deadline(s, t < s->end_ms ? t : s->end_ms);
        arena_free(&ar);
        return 0;
    }
    struct enc e;
    enc_init(&e, WIRE_JSON);
    enc_obj_begin(&e);
    enc_key(&e, "Records");
    enc_arr_begin(&e);
    char seq[SEQ_LEN + 1];
    for (size_t i = 0; i < got.n; i++) {
        const struct store_read *v = &got.v[i];
        seq_format(seq, s->shard, s->shard_created_ms, v->ix, v->pos);
        enc_obj_begin(&e);
        enc_key(&e, "SequenceNumber"), enc_str(&e, seq, SEQ_LEN);
        enc_key(&e, "ApproximateArrivalTimestamp"), enc_time_ms(&e, pos_ms(v->pos));
        enc_key(&e, "Data"), enc_blob(&e, v->data, v->data_len);
        enc_key(&e, "PartitionKey"), enc_str(&e, v->pk, v->pk_len);
        if (v->key_class >= DATAKEYS_CLASS_KMS)
            enc_key(&e, "EncryptionType"), enc_strz(&e, "KMS");
        enc_obj_end(&e);
    }
    enc_arr_end(&e);
    if (got.n) {
        s->next = got.v[got.n - 1].pos + 1;
        s->last_sent = got.v[got.n - 1].pos;
        s->last_sent_ix = got.v[got.n - 1].ix;
        s->any_sent = true;
        s->tokens -= (double)got.bytes;
    }
    enc_key(&e, "ContinuationSequenceNumber");
    if (at_end) {
        buf_adds(&e.b, "null");
        e.need_comma[e.depth] = true;
    } else {
        /* the last record sent, or else the log's last one (nothing was found past it to send;
         * the starting number when there is none): AFTER_SEQUENCE_NUMBER of it resumes here */
        if (s->any_sent)
            seq_format(seq, s->shard, s->shard_created_ms, s->last_sent_ix, s->last_sent);
        else
            seq_format(seq, s->shard, s->shard_created_ms, got.last_ix, got.last);
        enc_str(&e, seq, SEQ_LEN);
    }
    int64_t behind = got.n && got.last > s->last_sent ? now - pos_ms(s->next) : 0;
    enc_key(&e, "MillisBehindLatest"), enc_int(&e, behind > 0 ? behind : 0);
    if (at_end)
        enc_child_shards(&e, kids, nkids);
    enc_obj_end(&e);
    eventstream_event(&s->out, "SubscribeToShardEvent", e.b.p, e.b.len);
    if (got.n)
        metrics_subscribe_event(a, s->uid, s->ci.stream, s->ci.account, s->ci.region, s->shard, got.n,
                                got.bytes, behind > 0 ? behind : 0);
    buf_free(&e.b);
    arena_free(&ar);
    s->last_event_ms = now;
    if (at_end)
        s->done = true;
    return 1;
}

static void sub_start(struct api_producer *p, struct api_sink *sink)
{
    struct sub *s = (struct sub *)p;
    pthread_mutex_lock(&s->api->subs->mu);
    s->sink = sink;
    pthread_mutex_unlock(&s->api->subs->mu);
}

static long sub_pull(struct api_producer *p, char *buf, size_t cap)
{
    struct sub *s = (struct sub *)p;
    if (s->off == s->out.len) {
        s->off = s->out.len = 0;
        int rc = produce(s);
        if (rc < 0)
            return API_PULL_END;
        if (rc == 0)
            return 0;
    }
    size_t n = s->out.len - s->off;
    if (n > cap)
        n = cap;
    memcpy(buf, s->out.p + s->off, n);
    s->off += n;
    if (s->off == s->out.len && s->out.cap > (256u << 10)) { /* give a large event's memory back */
        buf_free(&s->out);
        s->off = 0;
    }
    return (long)n;
}

static void sub_close(struct api_producer *p, enum api_stream_end why)
{
    (void)why;
    struct sub *s = (struct sub *)p;
    struct api *a = s->api;
    if (s->w)
        store_unwatch(a->store, s->w); /* when it returns, on_commit is not running */
    struct subs *r = a->subs;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->nlive; i++)
        if (r->live[i] == s) {
            r->live[i] = r->live[--r->nlive];
            break;
        }
    for (size_t i = 0; i < r->nslots; i++)
        if (r->slots[i].cur == s)
            r->slots[i].cur = NULL;
    pthread_mutex_unlock(&r->mu);
    buf_free(&s->out);
    auth_release(s->auth);
    free(s);
}

/* ---- the call ---- */

int subs_subscribe(struct api_ctx *c)
{
    struct api *a = c->api;
    struct consumer_info ci;
    if (consumers_resolve(c, &ci))
        return -1;
    if (ci.status != CONSUMER_ACTIVE)
        return api_fail(c, KERR_RESOURCE_IN_USE,
                        "Consumer %s with creation timestamp %" PRId64
                        " under stream: %s, account %s is not in ACTIVE status.",
                        ci.name, ci.created_ms / 1000, ci.stream, ci.account);
    const char *given = req_str(c, "ShardId");
    const char *acct = arena_strndup(&c->arena, ci.account, strlen(ci.account)), *name = ci.stream;
    uint32_t ix;
    if (shard_parse(given, &ix))
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Could not find shard %s in stream %s under account %s.",
                        given, name, acct);
    char id[32];
    shard_id(id, ix);
    streams_rdlock(a);
    struct stream *s = streams_find(a, acct, ci.region, name, c->now_ms);
    struct shard *sh = s && s->uid == ci.uid ? shard_by_index(s, ix) : NULL;
    if (sh && !shard_visible(s, sh, c->now_ms))
        sh = NULL;
    uint64_t uid = ci.uid;
    uint64_t end_pos = sh && sh->closed_ms ? sh->end_pos : 0;
    int64_t created = sh ? sh->created_ms : 0;
    streams_unlock(a);
    c->m.uid = uid; /* for metrics and the access log */
    c->stream_name = arena_strndup(&c->arena, name, strlen(name));
    c->stream_acct = acct;
    if (!sh)
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Shard %s in stream %s under account %s does not exist",
                        id, name, acct);
    const struct kv *sp = kv_get(c->req, "StartingPosition");
    const struct kv *tv = kv_get(sp, "Type"), *sv = kv_get(sp, "SequenceNumber");
    const char *type = tv->s, *seq = sv && sv->type == KV_STR ? sv->s : NULL;
    bool wants_seq = !strcmp(type, "AT_SEQUENCE_NUMBER") || !strcmp(type, "AFTER_SEQUENCE_NUMBER");
    uint64_t pos = 0;
    if (wants_seq) {
        if (!seq || !*seq)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "Must specify a sequence number for StartingPosition of type %s.",
                            type); /* unverified */
        struct seq_num q;
        bool ours = seq_parse(seq, &q) == 0;
        if (!ours && seq_legacy_shard(seq, &q.shard) != 0)
            return api_fail(
                c, KERR_INVALID_ARGUMENT,
                "StartingSequenceNumber %s used in SubscribeToShard on shard %s in stream %s under "
                "account %s is invalid.",
                seq, id, name, acct);
        if (q.shard != ix || !ours) {
            char other[32];
            seq_shard_id(other, q.shard);
            return api_fail(
                c, KERR_INVALID_ARGUMENT,
                "Invalid StartingSequenceNumber. It encodes %s, while it was used in a call to a shard "
                "with %s",
                other, id);
        }
        if (!seq_of_shard(&q, uid, ix, created))
            return api_fail(
                c, KERR_INVALID_ARGUMENT,
                "StartingSequenceNumber %s used in SubscribeToShard on shard %s in stream %s under "
                "account %s is invalid because it did not come from this stream.",
                seq, id, name, acct);
        int rc = seq_start(a->store, log_id(uid, ix), &q, type[1] == 'F' /* AFTER_SEQUENCE_NUMBER */, &pos);
        if (rc)
            return api_store_fail(c, rc);
    } else if (!strcmp(type, "LATEST")) {
        uint64_t last;
        int rc = store_log_bounds(a->store, log_id(uid, ix), &last, NULL);
        if (rc)
            return api_store_fail(c, rc);
        pos = end_pos ? end_pos + 1 : last + 1;
    } else if (!strcmp(type, "AT_TIMESTAMP")) {
        int64_t ts;
        if (!kv_time_ms(c, kv_get(sp, "Timestamp"), &ts))
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
                            "Current request has no timestamp parameter.");
        pos = ts > 0 ? pos_floor(ts) : 0;
    }
    struct sub *sub = calloc(1, sizeof *sub);
    if (!sub)
        return api_fail(c, KERR_INTERNAL_FAILURE, NULL);
    struct subs *r = a->subs;
    pthread_mutex_lock(&r->mu);
    struct slot *t = slot_find(r, &ci, ix);
    const char *err = NULL;
    if (t && c->now_ms - t->last_call_ms < SUBSCRIBE_CALL_MS)
        err = "rate";
    else if (t && t->cur && c->now_ms - t->start_ms < SUBSCRIBE_TAKEOVER_MS)
        err = "inuse";
    else if (!t && !(t = slot_add(r, &ci, ix, c->now_ms)))
        err = "mem";
    else if (r->nlive == r->caplive) {
        size_t cap = r->caplive ? r->caplive * 2 : 64;
        struct sub **v = realloc(r->live, cap * sizeof *v);
        if (v)
            r->live = v, r->caplive = cap;
        else
            err = "mem";
    }
    if (t)
        t->last_call_ms = c->now_ms;
    if (!err) {
        if (t->cur) { /* take over: the old one ends with ResourceInUseException */
            t->cur->taken_over = true;
            if (t->cur->sink)
                t->cur->sink->wake(t->cur->sink);
        }
        t->cur = sub;
        t->start_ms = c->now_ms;
        r->live[r->nlive++] = sub;
        sub->seen_epoch = r->epoch;
    }
    pthread_mutex_unlock(&r->mu);
    if (err) {
        free(sub);
        if (err[0] == 'r')
            return api_fail(c, KERR_LIMIT_EXCEEDED,
                            "Rate exceeded for consumer %s and shard %s under account %s.", ci.name, id,
                            acct); /* unverified wording */
        if (err[0] == 'i')
            return api_fail(c, KERR_RESOURCE_IN_USE,
                            "Another active subscription exists for this consumer: %s:%s:%s:%s", acct, name,
                            id, ci.name);
        return api_fail(c, KERR_INTERNAL_FAILURE, NULL);
    }
    sub->base = (struct api_producer){.start = sub_start, .pull = sub_pull, .close = sub_close};
    sub->api = a;
    sub->ci = ci;
    sub->uid = uid;
    sub->shard = ix;
    sub->shard_created_ms = created;
    sub->log = log_id(uid, ix);
    memcpy(sub->shard_id, id, sizeof id);
    sub->next = pos;
    sub->end_ms = c->now_ms + a->cfg.subscription_ms;
    sub->tokens = SUBSCRIBE_RATE;
    sub->tokens_ms = c->now_ms;
    if (c->caller) {
        auth_hold(c->auth_snap);
        sub->auth = c->auth_snap;
        sub->caller = c->caller;
    }
    snprintf(sub->region, sizeof sub->region, "%s", c->region);
    snprintf(sub->source_ip, sizeof sub->source_ip, "%s", c->source_ip ? c->source_ip : "");
    sub->secure_transport = c->secure_transport;
    struct api_response *resp = c->resp;
    resp->status = 200;
    resp->content_type = "application/vnd.amazon.eventstream";
    resp->body = NULL;
    resp->body_len = 0;
    resp->producer = &sub->base;
    return API_ANSWERED;
}
