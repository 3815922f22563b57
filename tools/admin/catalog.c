/* catalog.c: the streams and shards of a data directory, read from the metadata rows that
 * api/streams.c writes ("st/<uid>", "shard/<uid>/<index>", "name/<account>/<region>/<name>", "drop/<uid>"),
 * with every row that does not parse or does not fit noted as a problem instead of stopping. */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

static const char *const status_names[] = {"CREATING", "ACTIVE", "DELETING", "UPDATING", "GONE"};

const char *adm_status_name(int status)
{
    return status >= 0 && status < (int)(sizeof status_names / sizeof *status_names) ? status_names[status]
                                                                                     : "UNKNOWN";
}

void adm_problem(struct adm_catalog *c, const char *fmt, ...)
{
    char *p = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    char **v = n >= 0 ? realloc(c->problems, (c->nproblems + 1) * sizeof *v) : NULL;
    if (!v) {
        free(p);
        return;
    }
    c->problems = v;
    c->problems[c->nproblems++] = p;
}

struct adm_stream *adm_stream_uid(struct adm_catalog *c, uint64_t uid)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].uid == uid)
            return &c->v[i];
    return NULL;
}

struct adm_stream *adm_stream_named(struct adm_catalog *c, const char *name, bool *several)
{
    char region[64] = "", account[16] = "";
    const char *bare = name;
    *several = false;
    if (!strncmp(name, "arn:", 4)) { /* arn:<partition>:kinesis:<region>:<account>:stream/<name> */
        int r0 = 0, r1 = 0, a1 = 0;
        if (sscanf(name, "arn:%*[^:]:kinesis:%n%*[^:]%n:%*[0-9]%n:stream/", &r0, &r1, &a1) < 0 || !a1 ||
            r1 - r0 >= (int)sizeof region || a1 - r1 - 1 >= (int)sizeof account ||
            strncmp(name + a1, ":stream/", 8))
            return NULL;
        snprintf(region, sizeof region, "%.*s", r1 - r0, name + r0);
        snprintf(account, sizeof account, "%.*s", a1 - r1 - 1, name + r1 + 1);
        bare = name + a1 + 8;
    }
    struct adm_stream *found = NULL;
    for (size_t i = 0; i < c->n; i++) {
        struct adm_stream *s = &c->v[i];
        if (strcmp(s->name, bare) ||
            (region[0] && (strcmp(s->region, region) || strcmp(s->account, account))))
            continue;
        if (found) {
            *several = true;
            return NULL;
        }
        found = s;
    }
    return found;
}

bool adm_dropping(const struct adm_catalog *c, uint64_t uid)
{
    for (size_t i = 0; i < c->ndropping; i++)
        if (c->dropping[i] == uid)
            return true;
    return false;
}

static int64_t jint(json_t *o, const char *k, int64_t dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static bool ju128(json_t *o, const char *k, u128 *out)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && u128_parse(s, out) == 0;
}

/* A string member that fits cap bytes with its NUL, as api/streams.c decode() requires. */
static const char *jstr(json_t *o, const char *k, size_t cap)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) && json_string_length(v) < cap ? json_string_value(v) : NULL;
}

/* The status the server shows now for a stored one (api/streams.c stream_status()). */
static int effective_status(int status, int64_t until, bool resharding)
{
    struct stream t = {.status = status, .status_until = until, .resharding = resharding};
    return stream_status(&t, clock_now_ms());
}

/* The header's fields are read by the server's rules (api/streams.c decode()): what it skips is
 * not loaded, what it defaults is taken as it takes it, and either is a problem to report. */
static int load_header(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                       uint64_t version)
{
    (void)version;
    struct adm_catalog *c = ctx;
    json_t *o = json_loadb(val, vlen, 0, NULL);
    json_t *jname = json_object_get(o, "name");
    const char *name = json_string_value(jname);
    int64_t uid = jint(o, "uid", -1), ns = jint(o, "nshards", -1);
    if (!o || !name || uid < 0 || ns < 0 || ns > (1 << 24) || jint(o, "v", 0) != 2) {
        adm_problem(c, "metadata row %.*s does not parse as a stream header", (int)klen, key);
        json_decref(o);
        return 0;
    }
    if (json_string_length(jname) > 128) {
        adm_problem(c,
                    "metadata row %.*s: its stream name is %zu bytes, over 128: the server skips the stream "
                    "(it lists no such stream and serves none of its shards)",
                    (int)klen, key, json_string_length(jname));
        json_decref(o);
        return 0;
    }
    json_t *st = json_object_get(o, "status");
    int stored = json_is_integer(st) ? (int)json_integer_value(st) : ST_CREATING;
    if (json_is_integer(st) && (json_integer_value(st) < ST_CREATING || json_integer_value(st) > ST_GONE)) {
        adm_problem(
            c, "metadata row %.*s: its status %lld is none the server knows: the server skips the stream",
            (int)klen, key, (long long)json_integer_value(st));
        json_decref(o);
        return 0;
    }
    struct adm_stream *v = realloc(c->v, (c->n + 1) * sizeof *v);
    struct adm_shard *sh = calloc(ns ? (size_t)ns : 1, sizeof *sh);
    if (!v || !sh) {
        free(sh);
        if (v)
            c->v = v;
        json_decref(o);
        return 1;
    }
    c->v = v;
    struct adm_stream *s = &c->v[c->n++];
    *s = (struct adm_stream){.uid = (uint64_t)uid, .nshards = (uint32_t)ns, .shards = sh};
    snprintf(s->name, sizeof s->name, "%s", name);
    s->status = effective_status(stored, jint(o, "until", 0), json_is_true(json_object_get(o, "resharding")));
    if (!json_is_integer(st))
        adm_problem(c, "stream %s: its header has no status: the server reads it as CREATING, so %s", s->name,
                    adm_status_name(s->status));
    /* the owner: both account and region, else the server's own --account-id and --region */
    const char *acct = jstr(o, "account", sizeof((struct stream *)0)->account);
    const char *region = jstr(o, "region", sizeof((struct stream *)0)->region);
    if (acct && region) {
        snprintf(s->account, sizeof s->account, "%s", acct);
        snprintf(s->region, sizeof s->region, "%s", region);
    } else if (json_object_get(o, "account") || json_object_get(o, "region")) {
        adm_problem(c,
                    "stream %s: its header has %s account and %s region: the server needs both, and takes it "
                    "as a stream of its own --account-id and --region",
                    s->name, acct ? "an" : "no usable", region ? "a" : "no usable");
    }
    /* encrypted: both encKey (the KeyId given) and encKid (the built-in KMS key), else NONE */
    const char *ekey = jstr(o, "encKey", sizeof((struct stream *)0)->enc_key);
    const char *kid = jstr(o, "encKid", sizeof((struct stream *)0)->enc_kid);
    if (ekey && kid) {
        s->kms = true;
        snprintf(s->kms_key, sizeof s->kms_key, "%s", kid);
    } else if (json_object_get(o, "encKey") || json_object_get(o, "encKid")) {
        adm_problem(c,
                    "stream %s: its header's encKey and encKid are not both strings that fit: the server "
                    "takes its encryption as NONE",
                    s->name);
    }
    char want[40];
    snprintf(want, sizeof want, "st/%020" PRIu64, s->uid);
    if (strlen(want) != klen || memcmp(want, key, klen))
        adm_problem(c, "stream %s: its header is row %.*s, not %s", s->name, (int)klen, key, want);
    json_decref(o);
    return 0;
}

static int load_shard(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct adm_catalog *c = ctx;
    char k[80];
    uint64_t uid;
    uint32_t ix;
    int used = 0;
    snprintf(k, sizeof k, "%.*s", (int)(klen < 79 ? klen : 79), key);
    if (sscanf(k, "shard/%20" SCNu64 "/%8" SCNu32 "%n", &uid, &ix, &used) != 2 || (size_t)used != klen) {
        adm_problem(c, "metadata row %s is not a shard row", k);
        return 0;
    }
    struct adm_stream *s = adm_stream_uid(c, uid);
    if (!s) {
        adm_problem(c, "metadata row %s belongs to no stream", k);
        return 0;
    }
    if (ix >= s->nshards) {
        adm_problem(c, "stream %s: shard row %s is past its %" PRIu32 " shards", s->name, k, s->nshards);
        return 0;
    }
    json_t *o = json_loadb(val, vlen, 0, NULL);
    struct adm_shard *sh = &s->shards[ix];
    if (!o || !ju128(o, "start", &sh->start) || !ju128(o, "end", &sh->end) || jint(o, "i", -1) != ix) {
        adm_problem(c, "stream %s: shard row %s does not parse (or names another index)", s->name, k);
        json_decref(o);
        return 0;
    }
    sh->present = true;
    sh->index = ix;
    sh->created_ms = jint(o, "created", 0);
    sh->closed_ms = jint(o, "closed", 0);
    sh->end_pos = (uint64_t)jint(o, "endPos", 0);
    /* as the server reads them: a missing parent or adjacent parent is shard 0 */
    sh->parent = (int32_t)jint(o, "parent", 0);
    sh->adjacent = (int32_t)jint(o, "adjacent", 0);
    if (!json_is_integer(json_object_get(o, "parent")) || !json_is_integer(json_object_get(o, "adjacent")))
        adm_problem(c, "stream %s: shard row %s has no %s: the server takes shard 0 for it", s->name, k,
                    json_is_integer(json_object_get(o, "parent")) ? "adjacent parent" : "parent");
    sh->pending = json_is_true(json_object_get(o, "pending"));
    sh->closing = json_is_true(json_object_get(o, "closing"));
    sh->sealed = json_is_true(json_object_get(o, "sealed"));
    json_decref(o);
    return 0;
}

static int load_name(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct adm_catalog *c = ctx;
    /* "name/<account>/<region>/<name>", or "name/<name>" before accounts were kept */
    char full[256];
    snprintf(full, sizeof full, "%.*s", (int)(klen - 5 < 255 ? klen - 5 : 255), key + 5);
    const char *name = strrchr(full, '/') ? strrchr(full, '/') + 1 : full;
    json_t *o = json_loadb(val, vlen, JSON_DECODE_ANY, NULL);
    struct adm_stream *s = json_is_integer(o) ? adm_stream_uid(c, (uint64_t)json_integer_value(o)) : NULL;
    if (!s)
        adm_problem(c, "the name row of %s names no stream", full);
    else if (strcmp(s->name, name))
        adm_problem(c, "the name row of %s names stream %s (uid %" PRIu64 ")", name, s->name, s->uid);
    json_decref(o);
    return 0;
}

static int load_drop(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)val, (void)vlen, (void)version;
    struct adm_catalog *c = ctx;
    char k[64];
    snprintf(k, sizeof k, "%.*s", (int)(klen < 63 ? klen : 63), key);
    uint64_t uid;
    uint64_t *v = realloc(c->dropping, (c->ndropping + 1) * sizeof *v);
    if (!v)
        return 1;
    c->dropping = v;
    if (sscanf(k, "drop/%" SCNu64, &uid) == 1)
        c->dropping[c->ndropping++] = uid;
    return 0;
}

static int load_legacy(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                       uint64_t version)
{
    (void)val, (void)vlen, (void)version;
    adm_problem(ctx, "metadata row %.*s is of an earlier release: start the server once to rewrite it",
                (int)klen, key);
    return 0;
}

int adm_catalog_load(struct store *s, struct adm_catalog *c)
{
    *c = (struct adm_catalog){0};
    int rc = store_meta_scan(s, "st/", load_header, c);
    if (rc == 0)
        rc = store_meta_scan(s, "shard/", load_shard, c);
    if (rc == 0)
        rc = store_meta_scan(s, "name/", load_name, c);
    if (rc == 0)
        rc = store_meta_scan(s, "drop/", load_drop, c);
    if (rc == 0)
        rc = store_meta_scan(s, "stream/", load_legacy, c);
    for (size_t i = 0; rc == 0 && i < c->n; i++)
        for (uint32_t j = 0; j < c->v[i].nshards; j++)
            if (!c->v[i].shards[j].present)
                adm_problem(c, "stream %s: the row of shard %" PRIu32 " is missing", c->v[i].name, j);
    return rc;
}

void adm_catalog_free(struct adm_catalog *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i].shards);
    free(c->v);
    free(c->dropping);
    for (size_t i = 0; i < c->nproblems; i++)
        free(c->problems[i]);
    free(c->problems);
    *c = (struct adm_catalog){0};
}
