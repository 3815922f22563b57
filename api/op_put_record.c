/* op_put_record.c: PutRecord. */
#include "internal.h"

static const struct vfield schema[] = {
    {"SequenceNumberForOrdering", VT_STRING, {REGEX(vre_seq)}, 0, 0, 0},
    {"PartitionKey", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(256)}, 0, 0, 0},
    {"ExplicitHashKey", VT_STRING, {REGEX(vre_hash_key)}, 0, 0, 0},
    {"Data", VT_BLOB, {NOT_NULL, LEN_LE_RECORD}, 0, 0, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

/* After the commit: the answer. */
static int answer(struct api_ctx *c)
{
    struct put_state *ps = c->op_state;
    struct put_item *it = &ps->items[0];
    if (it->err == KERR_THROUGHPUT_EXCEEDED)
        return api_fail(c, it->err, "%s", record_error_message(c, it->err, it->shard));
    if (it->err)
        return api_fail(c, it->err, NULL);
    char id[32], seq[SEQ_LEN + 1];
    shard_id(id, it->shard);
    seq_format(seq, it->shard, it->shard_created_ms, it->ix, it->pos);
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "ShardId"), enc_strz(e, id);
    enc_key(e, "SequenceNumber"), enc_strz(e, seq);
    if (ps->kms) {
        enc_key(e, "EncryptionType"), enc_strz(e, "KMS");
    }
    enc_obj_end(e);
    return 0;
}

static int run(struct api_ctx *c)
{
    const struct kv *pk = kv_get(c->req, "PartitionKey"), *data = kv_get(c->req, "Data");
    const char *order = req_str(c, "SequenceNumberForOrdering");
    if (order && !seq_ordering_valid(order, c->now_ms))
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "ExclusiveMinimumSequenceNumber %s used in PutRecord on stream %s under "
                        "account %s is invalid.",
                        order, c->stream_name, ctx_stream_account(c));
    struct put_item *it = arena_zalloc(&c->arena, sizeof *it);
    *it = (struct put_item){.pk = pk->s,
                            .pk_len = pk->len,
                            .data = data->s,
                            .data_len = data->len,
                            .ehk = req_str(c, "ExplicitHashKey")};
    return put_records_append(c, it, 1, answer);
}

const struct op_def op_put_record = {.schema = schema, .run = run};
