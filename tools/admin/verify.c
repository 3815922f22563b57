/* verify.c: check a data directory: every record's checksum or seal (opened with its data key,
 * so the key must be there and right), positions strictly increasing in every log and within
 * its last position, closed shards holding nothing past their end, logs that belong to a
 * stream (or to one being dropped), and the metadata: every shard row present, lineage that
 * names earlier shards, children covering exactly their parents' hash ranges, and the open
 * shards of each stream covering the 128-bit hash key space exactly once. Each problem is one
 * line naming the stream, shard and sequence number; the exit status is 1 if there is any. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "format.h"

#define MAX_U128 (~(u128)0)
#define ARENA_RESET_BYTES (8u << 20)

struct vctx {
    struct adm_dir *d;
    struct adm_catalog *c;
    const struct adm_stream *s; /* the log's stream, or NULL */
    const struct adm_shard *sh;
    uint64_t log, last, prev, records;
    uint64_t ix, prev_ix;        /* the record's index (format.h) and the one's before it */
    uint64_t total;              /* records checked */
    struct format_opener opener; /* with the data keys, when the directory has them */
    struct adm_arena arena;      /* opened records, wiped and freed every ARENA_RESET_BYTES */
    size_t opened;
    size_t problems;
    char where[256]; /* "stream X shard Y" */
};

static void problem(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct vctx *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("problem: ");
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    v->problems++;
}

/* "stream NAME shard shardId-... sequence number N" of a record. */
static const char *record_name(struct vctx *v, uint64_t pos, char out[400])
{
    if (v->sh) {
        char seq[SEQ_LEN + 1];
        seq_format(seq, v->sh->index, v->sh->created_ms, v->ix, pos);
        snprintf(out, 400, "%s sequence number %s", v->where, seq);
    } else {
        snprintf(out, 400, "%s position %" PRIu64, v->where, pos);
    }
    return out;
}

static int check_record(void *ctx, uint64_t log, uint64_t pos, const char *val, size_t len, bool in_wal)
{
    struct vctx *v = ctx;
    char name[400];
    const char *where = in_wal ? " (in the write-ahead log)" : "";
    v->records++;
    v->total++;
    v->ix = format_index(val, len, pos);
    if (v->records > 1 && pos <= v->prev)
        problem(v, "%s%s: not after the record before it (position %" PRIu64 ")", record_name(v, pos, name),
                where, v->prev);
    else if (v->records > 1 && v->ix <= v->prev_ix)
        problem(v, "%s%s: its index %" PRIu64 " is not above the record's before it (%" PRIu64 ")",
                record_name(v, pos, name), where, v->ix, v->prev_ix);
    if (pos > v->last)
        problem(v, "%s%s: past the log's last position %" PRIu64, record_name(v, pos, name), where, v->last);
    if (v->sh && v->sh->closed_ms && v->sh->end_pos && pos > v->sh->end_pos)
        problem(v, "%s%s: past the end of its closed shard (position %" PRIu64 ")", record_name(v, pos, name),
                where, v->sh->end_pos);
    v->prev = pos;
    v->prev_ix = v->ix;
    unsigned ver = len ? (unsigned char)val[0] : 0;
    if (ver > FORMAT_SEALED_VERSION) {
        problem(v, "%s%s: record format version %u is newer than this build reads (%d)",
                record_name(v, pos, name), where, ver, FORMAT_SEALED_VERSION);
        return 0;
    }
    if (format_check_keyless(val, len, log, pos, NULL)) {
        problem(v, "%s%s: corrupt (its layout or checksum does not check out)", record_name(v, pos, name),
                where);
        return 0;
    }
    if (ver < FORMAT_XCHACHA_VERSION) /* not sealed */
        return 0;
    if (!v->d->dk) {
        problem(v, "%s%s: sealed, but the directory has no node key to open it with",
                record_name(v, pos, name), where);
        return 0;
    }
    const struct store_keyring *kr = datakeys_keyring(v->d->dk);
    uint64_t key_id = 0;
    for (int i = 7; i >= 0; i--) /* the header's data key id (format.h), little-endian */
        key_id = key_id << 8 | (unsigned char)val[4 + i];
    const unsigned char *key;
    uint32_t cls;
    if (kr->open_key(kr->ctx, log, key_id, &key, &cls)) {
        problem(v, "%s%s: its data key %" PRIu64 " is gone (shredded, never stored, or its KMS key is gone)",
                record_name(v, pos, name), where, key_id);
        return 0;
    }
    /* opened into the arena (format_check would take locked memory for each record) */
    struct store_records out = {.alloc = adm_arena_alloc, .actx = &v->arena};
    int rc = format_open_with(&v->opener, val, len, log, pos, &out);
    v->opened += len;
    if (v->opened >= ARENA_RESET_BYTES) {
        adm_arena_reset(&v->arena);
        v->opened = 0;
    }
    if (rc == STORE_NOMEM)
        return rc;
    if (rc)
        problem(v, "%s%s: its seal does not open (altered, or moved from another place)",
                record_name(v, pos, name), where);
    return 0;
}

static int check_log(void *ctx, const struct backup_log *l)
{
    struct vctx *v = ctx;
    uint64_t uid = l->log >> 24;
    uint32_t ix = (uint32_t)(l->log & 0xFFFFFF);
    v->log = l->log;
    v->last = l->last;
    v->prev = 0;
    v->records = 0;
    v->s = adm_stream_uid(v->c, uid);
    v->sh = v->s && ix < v->s->nshards && v->s->shards[ix].present ? &v->s->shards[ix] : NULL;
    char id[32];
    shard_id(id, ix);
    if (v->s)
        snprintf(v->where, sizeof v->where, "stream %s shard %s", v->s->name, id);
    else
        snprintf(v->where, sizeof v->where, "log %" PRIu64 " (stream uid %" PRIu64 " shard %s)", l->log, uid,
                 id);
    int rc = backup_snap_records(v->d->snap, l->log, 0, check_record, v);
    if (rc < 0)
        return rc;
    if (l->state == BACKUP_LOG_DROPPED) {
        if (v->records)
            problem(v, "%s: dropped, yet %" PRIu64 " records are left", v->where, v->records);
        return 0;
    }
    if (!v->s && !adm_dropping(v->c, uid) && v->records)
        problem(v, "%s: holds %" PRIu64 " records but belongs to no stream", v->where, v->records);
    else if (v->s && !v->sh && v->records)
        problem(v, "%s: holds %" PRIu64 " records but its stream has no such shard", v->where, v->records);
    if (v->sh && l->state == BACKUP_LOG_SEALED && !v->sh->closed_ms && !v->sh->sealed)
        problem(v, "%s: its log is sealed but the shard is open", v->where);
    return 0;
}

static int by_start(const void *a, const void *b)
{
    const struct adm_shard *x = *(const struct adm_shard *const *)a, *y = *(const struct adm_shard *const *)b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* The ranges of the shards a parent was split into (children without an adjacent parent)
 * cover it exactly; a merged child covers exactly its two adjacent parents. */
static void check_lineage(struct vctx *v, const struct adm_stream *s, const struct adm_shard **tmp)
{
    char id[32], pid[32], a[40], b[40];
    for (uint32_t i = 0; i < s->nshards; i++) {
        const struct adm_shard *c = &s->shards[i];
        if (!c->present)
            continue;
        shard_id(id, i);
        for (int k = 0; k < 2; k++) {
            int32_t p = k ? c->adjacent : c->parent;
            if (p >= 0 && ((uint32_t)p >= i || !s->shards[p].present))
                problem(v, "stream %s shard %s: its %s %d is not an earlier shard", s->name, id,
                        k ? "adjacent parent" : "parent", p);
        }
        if (c->start > c->end)
            problem(v, "stream %s shard %s: its hash range starts after it ends", s->name, id);
        if (c->parent < 0 || (uint32_t)c->parent >= i || !s->shards[c->parent].present)
            continue;
        const struct adm_shard *p = &s->shards[c->parent];
        if (c->adjacent >= 0 && (uint32_t)c->adjacent < i && s->shards[c->adjacent].present) {
            const struct adm_shard *q = &s->shards[c->adjacent];
            u128 lo = p->start < q->start ? p->start : q->start, hi = p->end > q->end ? p->end : q->end;
            bool touch = p->end + 1 == q->start || q->end + 1 == p->start;
            if (!touch || c->start != lo || c->end != hi)
                problem(v,
                        "stream %s shard %s: merged from shards %d and %d, but its hash range is not exactly "
                        "theirs",
                        s->name, id, c->parent, c->adjacent);
        } else if (c->start < p->start || c->end > p->end) {
            shard_id(pid, (uint32_t)c->parent);
            problem(v, "stream %s shard %s: its hash range reaches out of its parent %s's", s->name, id, pid);
        }
    }
    /* each parent that was split: its children, in order, tile its range */
    for (uint32_t i = 0; i < s->nshards; i++) {
        const struct adm_shard *p = &s->shards[i];
        size_t n = 0;
        bool merged = false;
        for (uint32_t j = i + 1; j < s->nshards; j++) {
            const struct adm_shard *c = &s->shards[j];
            if (!c->present || (c->parent != (int32_t)i && c->adjacent != (int32_t)i))
                continue;
            if (c->adjacent >= 0)
                merged = true;
            else
                tmp[n++] = c;
        }
        if (!p->present || merged || !n)
            continue;
        qsort(tmp, n, sizeof *tmp, by_start);
        u128 at = p->start;
        bool ok = tmp[0]->start == p->start;
        for (size_t k = 0; ok && k < n; k++) {
            ok = tmp[k]->start == at;
            at = tmp[k]->end + 1;
            if (k + 1 == n)
                ok = ok && tmp[k]->end == p->end;
        }
        shard_id(id, i);
        if (!ok) {
            u128_str(a, p->start);
            u128_str(b, p->end);
            problem(v, "stream %s shard %s: its children do not cover its hash range %s..%s exactly", s->name,
                    id, a, b);
        }
    }
}

/* The open shards cover 0 .. 2^128-1 exactly once. */
static void check_cover(struct vctx *v, const struct adm_stream *s, const struct adm_shard **tmp)
{
    size_t n = 0;
    for (uint32_t i = 0; i < s->nshards; i++)
        if (s->shards[i].present && !s->shards[i].closed_ms && !s->shards[i].pending)
            tmp[n++] = &s->shards[i];
    if (!n) {
        if (s->status != ST_ACTIVE && s->status != ST_UPDATING)
            return; /* a stream being created or deleted may have none */
        problem(v, "stream %s: no open shard", s->name);
        return;
    }
    qsort(tmp, n, sizeof *tmp, by_start);
    char id[32], a[40];
    u128 at = 0;
    for (size_t k = 0; k < n; k++) {
        shard_id(id, tmp[k]->index);
        if (k && at == 0) { /* the one before ended at 2^128-1 */
            problem(v, "stream %s: open shard %s overlaps the end of the hash key space", s->name, id);
            return;
        }
        if (tmp[k]->start != at) {
            u128_str(a, at);
            problem(v, "stream %s: the open shards %s hash key %s (open shard %s starts elsewhere)", s->name,
                    tmp[k]->start > at ? "leave out" : "cover twice", a, id);
            return;
        }
        at = tmp[k]->end + 1;
    }
    if (tmp[n - 1]->end != MAX_U128) {
        u128_str(a, tmp[n - 1]->end);
        problem(v, "stream %s: the open shards end at hash key %s, not at 2^128-1", s->name, a);
    }
}

int adm_verify(const struct adm_opts *o)
{
    if (o->npos) {
        fprintf(stderr, "kinesd-admin: verify takes no arguments\n");
        return ADM_USAGE;
    }
    struct adm_dir d;
    int rc = adm_open(&d, o->dir, &o->root, true);
    if (rc)
        return rc;
    struct adm_catalog c;
    struct vctx v = {.d = &d, .c = &c};
    format_opener_init(&v.opener, d.dk ? datakeys_keyring(d.dk) : NULL);
    if ((rc = adm_catalog_load(d.store, &c)) == 0) {
        for (size_t i = 0; i < c.nproblems; i++)
            problem(&v, "%s", c.problems[i]);
        uint32_t most = 1;
        for (size_t i = 0; i < c.n; i++)
            most = c.v[i].nshards > most ? c.v[i].nshards : most;
        const struct adm_shard **tmp = malloc(most * sizeof *tmp);
        rc = tmp ? 0 : STORE_NOMEM;
        for (size_t i = 0; rc == 0 && i < c.n; i++) {
            check_lineage(&v, &c.v[i], tmp);
            check_cover(&v, &c.v[i], tmp);
        }
        free(tmp);
    }
    if (rc == 0)
        rc = backup_snap_logs(d.snap, check_log, &v);
    if (rc == 0) {
        size_t shards = 0;
        for (size_t i = 0; i < c.n; i++)
            shards += c.v[i].nshards;
        if (v.problems)
            printf("%zu problems in %s\n", v.problems, o->dir);
        else
            printf("ok: %s: %zu streams, %zu shards, %" PRIu64 " records, every one checks out\n", o->dir,
                   c.n, shards, v.total);
    }
    format_opener_done(&v.opener);
    adm_arena_reset(&v.arena);
    adm_catalog_free(&c);
    adm_close(&d);
    if (rc)
        return adm_fail("cannot verify", o->dir, rc);
    return v.problems ? ADM_PROBLEMS : 0;
}
