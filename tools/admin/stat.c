/* stat.c: what a data directory holds: its files, and per stream and shard the records, their
 * stored bytes and the arrival times of the oldest and newest, counted from the view without
 * opening a record (no key needed). Text for people, --json for scripts. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"

struct count {
    uint64_t records, bytes, first, last;
};

static int count_one(void *ctx, uint64_t log, uint64_t pos, const char *val, size_t len, bool in_wal)
{
    (void)log, (void)val, (void)in_wal;
    struct count *c = ctx;
    if (!c->records)
        c->first = pos;
    c->last = pos;
    c->records++;
    c->bytes += len;
    return 0;
}

static json_t *time_of(uint64_t pos)
{
    char t[32];
    adm_time(t, pos_ms(pos));
    return json_string(t);
}

static int stat_stream(struct backup_snap *snap, const struct adm_stream *s, json_t *out)
{
    json_t *shards = json_array();
    uint32_t open = 0;
    uint64_t records = 0, bytes = 0;
    for (uint32_t i = 0; i < s->nshards; i++) {
        const struct adm_shard *sh = &s->shards[i];
        struct count c = {0};
        int rc = backup_snap_records(snap, log_id(s->uid, i), 0, count_one, &c);
        if (rc < 0)
            return rc;
        char id[32], start[40], end[40];
        shard_id(id, i);
        u128_str(start, sh->start);
        u128_str(end, sh->end);
        bool is_open = sh->present && !sh->closed_ms && !sh->pending;
        open += is_open;
        records += c.records;
        bytes += c.bytes;
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "ShardId", id, "State",
                              is_open       ? "open"
                              : sh->pending ? "pending"
                                            : "closed",
                              "Records", (json_int_t)c.records, "Bytes", (json_int_t)c.bytes,
                              "StartingHashKey", start, "EndingHashKey", end);
        if (sh->parent >= 0) {
            shard_id(id, (uint32_t)sh->parent);
            json_object_set_new(j, "ParentShardId", json_string(id));
        }
        if (sh->adjacent >= 0) {
            shard_id(id, (uint32_t)sh->adjacent);
            json_object_set_new(j, "AdjacentParentShardId", json_string(id));
        }
        if (c.records) {
            json_object_set_new(j, "OldestArrival", time_of(c.first));
            json_object_set_new(j, "NewestArrival", time_of(c.last));
        }
        json_array_append_new(shards, j);
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "StreamName", s->name,
                          "Account", s->account, "Region", s->region, "Uid", (json_int_t)s->uid, "Status",
                          adm_status_name(s->status), "EncryptionType", s->kms ? "KMS" : "NONE", "OpenShards",
                          (json_int_t)open, "ClosedShards", (json_int_t)(s->nshards - open), "Records",
                          (json_int_t)records, "Bytes", (json_int_t)bytes, "Shards", shards);
    json_array_append_new(out, j);
    return 0;
}

static void print_text(json_t *root)
{
    json_t *f = json_object_get(root, "Files");
    printf("data directory %s\n", json_string_value(json_object_get(root, "DataDirectory")));
    printf("  data.mdb  %" JSON_INTEGER_FORMAT " bytes, map %" JSON_INTEGER_FORMAT
           " bytes, page %" JSON_INTEGER_FORMAT " bytes, %" JSON_INTEGER_FORMAT
           " pages in use, %" JSON_INTEGER_FORMAT " free pages\n",
           json_integer_value(json_object_get(f, "DataFileBytes")),
           json_integer_value(json_object_get(f, "MapBytes")),
           json_integer_value(json_object_get(f, "PageBytes")),
           json_integer_value(json_object_get(f, "PagesInUse")),
           json_integer_value(json_object_get(f, "FreePages")));
    printf("  log       wal.0 %" JSON_INTEGER_FORMAT " bytes, wal.1 %" JSON_INTEGER_FORMAT
           " bytes, %" JSON_INTEGER_FORMAT " frames, %" JSON_INTEGER_FORMAT " records not yet in data.mdb\n",
           json_integer_value(json_object_get(f, "Wal0Bytes")),
           json_integer_value(json_object_get(f, "Wal1Bytes")),
           json_integer_value(json_object_get(f, "WalFrames")),
           json_integer_value(json_object_get(f, "WalRecords")));
    printf("  encrypted %s\n", json_is_true(json_object_get(root, "Encrypted")) ? "yes" : "no");
    json_t *streams = json_object_get(root, "Streams");
    printf("streams %zu\n", json_array_size(streams));
    size_t i, k;
    json_t *s, *sh;
    json_array_foreach(streams, i, s)
    {
        printf("%s (uid %" JSON_INTEGER_FORMAT ", %s, encryption %s): %" JSON_INTEGER_FORMAT
               " open and %" JSON_INTEGER_FORMAT " closed shards, %" JSON_INTEGER_FORMAT
               " records, %" JSON_INTEGER_FORMAT " bytes\n",
               json_string_value(json_object_get(s, "StreamName")),
               json_integer_value(json_object_get(s, "Uid")), json_string_value(json_object_get(s, "Status")),
               json_string_value(json_object_get(s, "EncryptionType")),
               json_integer_value(json_object_get(s, "OpenShards")),
               json_integer_value(json_object_get(s, "ClosedShards")),
               json_integer_value(json_object_get(s, "Records")),
               json_integer_value(json_object_get(s, "Bytes")));
        json_array_foreach(json_object_get(s, "Shards"), k, sh)
        {
            const char *oldest = json_string_value(json_object_get(sh, "OldestArrival"));
            const char *newest = json_string_value(json_object_get(sh, "NewestArrival"));
            printf("  %s %-7s %10" JSON_INTEGER_FORMAT " records %12" JSON_INTEGER_FORMAT " bytes  %s%s%s\n",
                   json_string_value(json_object_get(sh, "ShardId")),
                   json_string_value(json_object_get(sh, "State")),
                   json_integer_value(json_object_get(sh, "Records")),
                   json_integer_value(json_object_get(sh, "Bytes")), oldest ? oldest : "",
                   oldest ? " .. " : "", newest ? newest : "");
        }
    }
}

int adm_stat(const struct adm_opts *o)
{
    if (o->npos) {
        fprintf(stderr, "kinesd-admin: stat takes no arguments\n");
        return ADM_USAGE;
    }
    struct adm_dir d;
    int rc = adm_open(&d, o->dir, &o->root, false);
    if (rc)
        return rc;
    struct adm_catalog c;
    if ((rc = adm_catalog_load(d.store, &c))) {
        adm_catalog_free(&c);
        adm_close(&d);
        return adm_fail("cannot read", o->dir, rc);
    }
    struct backup_info info;
    backup_snap_info(d.snap, &info);
    json_t *root =
        json_pack("{s:s, s:b, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "DataDirectory", o->dir,
                  "Encrypted", d.encrypted, "Files", "DataFileBytes", (json_int_t)info.file_bytes, "MapBytes",
                  (json_int_t)info.map_bytes, "PageBytes", (json_int_t)info.page_bytes, "PagesInUse",
                  (json_int_t)info.pages_used, "FreePages", (json_int_t)info.free_pages, "Wal0Bytes",
                  (json_int_t)info.wal_bytes[0], "Wal1Bytes", (json_int_t)info.wal_bytes[1], "WalFrames",
                  (json_int_t)info.wal_frames, "WalRecords", (json_int_t)info.wal_records);
    json_t *streams = json_array();
    json_object_set_new(root, "Streams", streams);
    for (size_t i = 0; rc == 0 && i < c.n; i++)
        rc = stat_stream(d.snap, &c.v[i], streams);
    if (rc == 0) {
        if (o->json) {
            char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
            if (text)
                puts(text);
            free(text);
        } else {
            print_text(root);
        }
        if (c.nproblems)
            fprintf(stderr, "kinesd-admin: %zu metadata problems: run verify\n", c.nproblems);
    }
    json_decref(root);
    adm_catalog_free(&c);
    adm_close(&d);
    return rc ? adm_fail("cannot read", o->dir, rc) : 0;
}
