/* dump.c: the records of a stream (or of one shard), opened with their data keys, as JSON lines
 * ({"ShardId", "SequenceNumber", "ApproximateArrivalTimestamp", "PartitionKey", "Data" in
 * base64, and "EncryptionType" for records of a KMS-encrypted stream}) or raw (each record's
 * data, then a newline). Shards in index order, so parents come before their children.
 * Scans go in bounded batches through an arena that is emptied after each one. */
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

#define BATCH_RECORDS 1000
#define BATCH_BYTES (8u << 20)

static int put_jsonl(const char *id, const char *seq, const struct store_read *r, char *b64, size_t b64cap)
{
    char t[32];
    adm_time(t, pos_ms(r->pos));
    sodium_bin2base64(b64, b64cap, (const unsigned char *)r->data, r->data_len,
                      sodium_base64_VARIANT_ORIGINAL);
    json_t *pk = json_stringn(r->pk, r->pk_len);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "ShardId", id, "SequenceNumber", seq,
                          "ApproximateArrivalTimestamp", t, "ArrivalTimeMs", (json_int_t)pos_ms(r->pos));
    if (pk) {
        json_object_set_new(o, "PartitionKey", pk);
    } else { /* not UTF-8 (the API would not have taken it): as base64 */
        char *k = malloc(sodium_base64_ENCODED_LEN(r->pk_len, sodium_base64_VARIANT_ORIGINAL));
        if (k)
            sodium_bin2base64(k, sodium_base64_ENCODED_LEN(r->pk_len, sodium_base64_VARIANT_ORIGINAL),
                              (const unsigned char *)r->pk, r->pk_len, sodium_base64_VARIANT_ORIGINAL);
        json_object_set_new(o, "PartitionKeyBase64", json_string(k ? k : ""));
        free(k);
    }
    json_object_set_new(o, "Data", json_string(b64));
    if (r->key_class == DATAKEYS_CLASS_KMS)
        json_object_set_new(o, "EncryptionType", json_string("KMS"));
    int rc = json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    putchar('\n');
    return rc;
}

static int dump_shard(struct adm_dir *d, const struct adm_stream *s, uint32_t ix, uint64_t from, bool raw)
{
    struct adm_arena ar = {0};
    char id[32], seq[SEQ_LEN + 1];
    shard_id(id, ix);
    uint64_t log = log_id(s->uid, ix);
    size_t b64cap = 0;
    char *b64 = NULL;
    int rc = 0;
    for (;;) {
        struct store_records out = {.alloc = adm_arena_alloc, .actx = &ar};
        rc = store_scan(d->store, log, from, BATCH_RECORDS, BATCH_BYTES, &out);
        if (rc == STORE_CORRUPT) {
            /* name the record: the first one past what opened */
            if (out.n) {
                seq_format(seq, ix, s->shards[ix].created_ms, out.v[out.n - 1].ix, out.v[out.n - 1].pos);
                fprintf(stderr,
                        "kinesd-admin: stream %s shard %s: the record after sequence number %s does not open "
                        "(corrupt, or its data key is gone or wrong): run verify\n",
                        s->name, id, seq);
            } else {
                fprintf(stderr,
                        "kinesd-admin: stream %s shard %s: a record does not open (corrupt, or its data key "
                        "is gone or wrong): run verify\n",
                        s->name, id);
            }
        }
        for (size_t i = 0; i < out.n; i++) {
            const struct store_read *r = &out.v[i];
            if (raw) {
                fwrite(r->data, 1, r->data_len, stdout);
                putchar('\n');
                continue;
            }
            size_t need = sodium_base64_ENCODED_LEN(r->data_len, sodium_base64_VARIANT_ORIGINAL);
            if (need > b64cap) {
                char *nb = realloc(b64, need);
                if (!nb) {
                    rc = STORE_NOMEM;
                    break;
                }
                b64 = nb, b64cap = need;
            }
            seq_format(seq, ix, s->shards[ix].created_ms, r->ix, r->pos);
            put_jsonl(id, seq, r, b64, b64cap);
        }
        bool more = out.n && !rc;
        if (more)
            from = out.v[out.n - 1].pos + 1;
        adm_arena_reset(&ar);
        if (!more)
            break;
    }
    free(b64);
    return rc;
}

int adm_dump(const struct adm_opts *o)
{
    if (o->npos < 1 || o->npos > 2) {
        fprintf(stderr, "kinesd-admin: usage: dump STREAM [SHARD] [--from SEQ] [--format jsonl|raw]\n");
        return ADM_USAGE;
    }
    bool raw = o->format && !strcmp(o->format, "raw");
    if (o->format && !raw && strcmp(o->format, "jsonl")) {
        fprintf(stderr, "kinesd-admin: --format is jsonl or raw, not %s\n", o->format);
        return ADM_USAGE;
    }
    int64_t only = -1;
    uint32_t ix;
    if (o->npos == 2) {
        if (shard_parse(o->pos[1], &ix)) {
            fprintf(stderr, "kinesd-admin: %s is not a shard id\n", o->pos[1]);
            return ADM_USAGE;
        }
        only = ix;
    }
    struct seq_num q = {0};
    if (o->from) {
        if (seq_parse(o->from, &q)) {
            fprintf(stderr, "kinesd-admin: %s is not a sequence number of kinesd's\n", o->from);
            return ADM_USAGE;
        }
        if (only >= 0 && q.shard != (uint32_t)only) {
            fprintf(stderr, "kinesd-admin: sequence number %s is not of shard %s\n", o->from, o->pos[1]);
            return ADM_USAGE;
        }
        only = q.shard; /* a sequence number names its shard */
    }
    struct adm_dir d;
    int rc = adm_open(&d, o->dir, &o->root, true);
    if (rc)
        return rc;
    struct adm_catalog c;
    int code = 0;
    if ((rc = adm_catalog_load(d.store, &c)) == 0) {
        bool several;
        struct adm_stream *s = adm_stream_named(&c, o->pos[0], &several);
        if (several) {
            fprintf(stderr,
                    "kinesd-admin: %s: several accounts or regions have a stream %s: give its StreamARN\n",
                    o->dir, o->pos[0]);
            code = ADM_USAGE;
        } else if (!s) {
            fprintf(stderr, "kinesd-admin: %s: no stream %s\n", o->dir, o->pos[0]);
            code = ADM_USAGE;
        } else if (o->from && (q.shard >= s->nshards ||
                               !seq_of_shard(&q, s->uid, q.shard, s->shards[q.shard].created_ms))) {
            fprintf(stderr, "kinesd-admin: sequence number %s is not of stream %s\n", o->from, s->name);
            code = ADM_USAGE;
        } else if (only >= (int64_t)s->nshards) {
            fprintf(stderr, "kinesd-admin: stream %s has no shard %s\n", s->name, o->pos[1]);
            code = ADM_USAGE;
        } else {
            uint64_t from = 0;
            if (o->from)
                rc = seq_start(d.store, log_id(s->uid, q.shard), &q, false, &from);
            for (uint32_t i = 0; rc == 0 && i < s->nshards; i++)
                if (only < 0 || i == (uint32_t)only)
                    rc = dump_shard(&d, s, i, only >= 0 ? from : 0, raw);
        }
    }
    adm_catalog_free(&c);
    adm_close(&d);
    if (rc == STORE_CORRUPT)
        return ADM_PROBLEMS;
    return rc ? adm_fail("cannot read", o->dir, rc) : code;
}
