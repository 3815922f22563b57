/* op_get_shard_iterator.c: GetShardIterator. An iterator is a position in a shard's log;
 * TRIM_HORIZON is position 0 (reads start at the oldest record still retained), LATEST is one
 * past the last record, AT_TIMESTAMP is the first position of that millisecond. */
#include <string.h>

#include "internal.h"

static const char *const iterator_types[] = {"AFTER_SEQUENCE_NUMBER", "LATEST",       "AT_TIMESTAMP",
                                             "AT_SEQUENCE_NUMBER",    "TRIM_HORIZON", NULL};

static const struct vfield schema[] = {
    {"ShardId", VT_STRING, {NOT_NULL, REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"ShardIteratorType", VT_STRING, {NOT_NULL, ENUM(iterator_types)}, 0, 0, 0},
    {"StartingSequenceNumber", VT_STRING, {REGEX(vre_seq)}, 0, 0, 0},
    F_STREAM_NAME,
    {"Timestamp", VT_TIMESTAMP, {{0}}, 0, 0, 0},
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static int run(struct api_ctx *c)
{
    const char *given = req_str(c, "ShardId"), *type = req_str(c, "ShardIteratorType");
    const char *seq = req_str(c, "StartingSequenceNumber");
    const char *acct = ctx_stream_account(c), *name = c->stream_name;
    uint32_t ix;
    if (shard_parse(given, &ix))
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Could not find shard %s in stream %s under account %s.",
                        given, name, acct);
    char id[32];
    shard_id(id, ix);
    streams_rdlock(c->api);
    struct stream *s = streams_find(c->api, acct, c->region, name, c->now_ms);
    struct shard *sh = s && stream_status(s, c->now_ms) != ST_CREATING ? shard_by_index(s, ix) : NULL;
    if (sh && !shard_visible(s, sh, c->now_ms))
        sh = NULL;
    uint64_t uid = s ? s->uid : 0;
    uint64_t end_pos = sh && sh->closed_ms ? sh->end_pos : 0;
    int64_t created = sh ? sh->created_ms : 0;
    streams_unlock(c->api);
    if (!sh)
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Shard %s in stream %s under account %s does not exist",
                        id, name, acct);
    bool wants_seq = !strcmp(type, "AT_SEQUENCE_NUMBER") || !strcmp(type, "AFTER_SEQUENCE_NUMBER");
    uint64_t pos = 0;
    if (seq && *seq && strcmp(type, "AT_TIMESTAMP") != 0 && !wants_seq)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and "
                        "StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no "
                        "StartingSequenceNumber. Request specified %s and also a StartingSequenceNumber.",
                        type);
    if (wants_seq) {
        if (!seq || !*seq)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and "
                            "StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no "
                            "StartingSequenceNumber. Request specified %s and no StartingSequenceNumber.",
                            type);
        struct seq_num q;
        bool ours = seq_parse(seq, &q) == 0;
        if (!ours && seq_legacy_shard(seq, &q.shard) != 0)
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "StartingSequenceNumber %s used in GetShardIterator on shard %s in stream %s "
                            "under account %s is invalid.",
                            seq, id, name, acct);
        if (!ours && q.shard == ix) /* a legacy number of this very shard: AWS fails on its side */
            return api_fail(c, KERR_INTERNAL_FAILURE, NULL);
        if (q.shard != ix) {
            char other[32];
            seq_shard_id(other, q.shard);
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "Invalid StartingSequenceNumber. It encodes %s, while it was used in a call "
                            "to a shard with %s",
                            other, id);
        }
        if (!seq_of_shard(&q, uid, ix, created))
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "StartingSequenceNumber %s used in GetShardIterator on shard %s in stream %s "
                            "under account %s is invalid because it did not come from this stream.",
                            seq, id, name, acct);
        int rc =
            seq_start(c->api->store, log_id(uid, ix), &q, type[1] == 'F' /* AFTER_SEQUENCE_NUMBER */, &pos);
        if (rc)
            return api_store_fail(c, rc);
    } else if (!strcmp(type, "LATEST")) {
        uint64_t last;
        int rc = store_log_bounds(c->api->store, log_id(uid, ix), &last, NULL);
        if (rc)
            return api_store_fail(c, rc);
        pos = end_pos ? end_pos + 1 : last + 1;
    } else if (!strcmp(type, "AT_TIMESTAMP")) {
        int64_t ts;
        if (!req_time_ms(c, "Timestamp", &ts))
            return api_fail(c, KERR_INVALID_ARGUMENT,
                            "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
                            "Current request has no timestamp parameter.");
        if (ts > c->now_ms)
            return api_fail(
                c, KERR_INVALID_ARGUMENT,
                "The timestampInMillis parameter cannot be greater than the "
                "currentTimestampInMillis. timestampInMillis: %lld, currentTimestampInMillis: %lld",
                (long long)ts, (long long)c->now_ms);
        pos = ts > 0 ? pos_floor(ts) : 0;
    } /* TRIM_HORIZON: 0 */
    /* the shard's rate is charged once the arguments have passed */
    if (c->api->limits && !limits_iterator(c->api->limits, log_id(uid, ix)))
        return api_fail(c, KERR_THROUGHPUT_EXCEEDED,
                        "Rate exceeded for shard %s in stream %s under account %s.", id, name, acct);
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "ShardIterator"),
        enc_strz(
            e, iter_seal(c, &(struct iter){name, acct, c->region, api_account(c), uid, ix, pos, c->now_ms}));
    enc_obj_end(e);
    return 0;
}

const struct op_def op_get_shard_iterator = {.schema = schema, .run = run};
