/* op_put_records.c: PutRecords: up to 500 records, 1 MiB each with its partition key, 5 MiB
 * in all; every record of the request is committed together. */
#include "internal.h"

static const struct vfield entry_fields[] = {
    {"PartitionKey", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(256)}, 0, 0, 0},
    {"ExplicitHashKey", VT_STRING, {REGEX(vre_hash_key)}, 0, 0, 0},
    {"Data", VT_BLOB, {NOT_NULL, LEN_LE_RECORD}, 0, 0, 0},
    {0},
};
static const struct vfield entry = {"member", VT_STRUCT, {{0}}, entry_fields, 0, 0};

static const struct vfield schema[] = {
    {"Records",
     VT_LIST,
     {NOT_NULL, LEN_GE(1), LEN_LE(500)},
     0,
     &entry,
     "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310"},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

/* After the commit: one entry per record, in request order. */
static int answer(struct api_ctx *c)
{
    struct put_state *ps = c->op_state;
    struct put_item *items = ps->items;
    int64_t failed = 0;
    for (size_t i = 0; i < ps->n; i++)
        failed += items[i].err != 0;
    struct enc *e = &c->out;
    buf_grow(&e->b, 128 + ps->n * 128); /* an entry's names, sequence number and shard id */
    enc_obj_begin(e);
    enc_key(e, "FailedRecordCount"), enc_int(e, failed);
    if (ps->kms) {
        enc_key(e, "EncryptionType"), enc_strz(e, "KMS");
    }
    enc_key(e, "Records");
    enc_arr_begin(e);
    char id[32], seq[SEQ_LEN + 1];
    uint32_t id_of = UINT32_MAX; /* the shard id holds */
    for (size_t i = 0; i < ps->n; i++) {
        if (items[i].err) {
            enc_obj_begin(e);
            enc_key(e, "ErrorCode"), enc_strz(e, kerr_type(items[i].err));
            enc_key(e, "ErrorMessage"), enc_strz(e, record_error_message(c, items[i].err, items[i].shard));
            enc_obj_end(e);
            continue;
        }
        if (items[i].shard != id_of)
            shard_id(id, id_of = items[i].shard);
        seq_format(seq, items[i].shard, items[i].shard_created_ms, items[i].ix, items[i].pos);
        enc_obj_begin(e);
        ENC_KEY(e, "SequenceNumber"), enc_str_ascii(e, seq, SEQ_LEN);
        ENC_KEY(e, "ShardId"), enc_str_ascii(e, id, SHARD_ID_LEN);
        enc_obj_end(e);
    }
    enc_arr_end(e);
    enc_obj_end(e);
    return 0;
}

static int run(struct api_ctx *c)
{
    const struct kv *list = kv_get(c->req, "Records");
    size_t n = list->n, i = 0;
    struct put_item *items = arena_alloc(&c->arena, n * sizeof *items);
    for (const struct kv *r = list->child; r; r = r->next, i++) {
        const struct kv *pk = kv_get(r, "PartitionKey"), *data = kv_get(r, "Data");
        const struct kv *ehk = kv_get(r, "ExplicitHashKey");
        items[i] = (struct put_item){.pk = pk->s,
                                     .pk_len = pk->len,
                                     .data = data->s,
                                     .data_len = data->len,
                                     .ehk = ehk && ehk->type == KV_STR ? ehk->s : NULL};
    }
    c->batch = true;
    return put_records_append(c, items, n, answer);
}

const struct op_def op_put_records = {.schema = schema, .run = run};
