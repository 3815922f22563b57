/* api.c: the Kinesis half of the request pipeline, the operation table and the error table.
 *
 * Order (AWS's, as recorded by kinesalite's tests against the real service):
 *   1. empty body           -> SerializationException / UnknownOperationException, no message
 *   2. content type         -> not JSON/CBOR: 403 AccessDeniedException or 404, XML-like text
 *   3. decode               -> SerializationException (no message)
 *   4. X-Amz-Target         -> UnknownOperationException
 *   5. authentication       -> InvalidSignature / MissingAuthenticationToken / IncompleteSignature;
 *                              with --auth, SigV4 verified (auth.c): UnrecognizedClient too
 *   6. validation           -> SerializationException (types), ValidationException (constraints),
 *                              then the operation's cross-field check
 *   7. stream resolution    -> StreamName or StreamARN (OPF_STREAM operations)
 *   7b. authorization       -> with --auth: AccessDeniedException unless the caller's identity
 *                              policy or the stream's resource policy allows the call (authorize)
 *   7c. account rate        -> LimitExceededException, charged only once the arguments are valid
 *   8. the operation        -> its answer, or the error it chose
 * Every answer is encoded in the request's format and carries a request id. */
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "consumers.h"
#include "subscribe.h"
#include "internal.h"
#include "kms/datakeys.h"
#include "kms/seed.h"
#include "accesslog.h"
#include "klog.h"

#define AMZ_JSON "application/x-amz-json-1.1"
#define AMZ_CBOR "application/x-amz-cbor-1.1"

static const struct {
    const char *type;
    int status;
    const char *mkey;
} kerrs[] = {
#define KERR(e, type, status, mkey) [KERR_##e] = {type, status, mkey},
#include "errors.def"
#undef KERR
};

#define OP(wire, stem, flags, rate) extern const struct op_def op_##stem;
#include "ops.def"
#include "kms/kms_ops.def"
#undef OP

static const struct {
    const char *wire;
    const struct op_def *def;
    int flags;
    int rate;
} ops[] = {
#define OP(wire, stem, flags, rate) {wire, &op_##stem, flags, rate},
#include "ops.def"
#include "kms/kms_ops.def" /* the built-in KMS, X-Amz-Target TrentService.<Op> */
#undef OP
};

/* ---- clock ---- */

static int64_t clock_offset_ms; /* tests move time forward; never backward */

int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
           __atomic_load_n(&clock_offset_ms, __ATOMIC_RELAXED);
}

void api_clock_advance(int64_t ms)
{
    if (ms > 0)
        __atomic_add_fetch(&clock_offset_ms, ms, __ATOMIC_RELAXED);
}

/* ---- request ids ---- */

uint64_t api_rand64(void)
{
    static _Thread_local uint64_t s0, s1;
    if (!s0 && !s1) {
        randombytes_buf(&s0, sizeof s0);
        randombytes_buf(&s1, sizeof s1);
        s1 |= 1;
    }
    /* xorshift128+ */
    uint64_t x = s0, y = s1;
    s0 = y;
    x ^= x << 23;
    s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
    return s1 + y;
}

bool api_inject_fault(struct api *a)
{
    return a->cfg.error_probability > 0 &&
           (double)(api_rand64() >> 11) * 0x1.0p-53 < a->cfg.error_probability;
}

void api_request_id(char out[40])
{
    uint64_t w[2] = {api_rand64(), api_rand64()};
    snprintf(out, 40, "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012" PRIx64,
             (uint32_t)(w[0] >> 32), (uint32_t)(w[0] >> 16) & 0xFFFF, (uint32_t)w[0] & 0xFFF,
             ((uint32_t)(w[1] >> 48) & 0x3FFF) | 0x8000, (uint64_t)(w[1] & 0xFFFFFFFFFFFFull));
}

/* ---- errors ---- */

int api_fail(struct api_ctx *c, enum kerr e, const char *fmt, ...)
{
    c->err = e;
    c->err_msg = NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        char small[512];
        int n = vsnprintf(small, sizeof small, fmt, ap);
        va_end(ap);
        if (n < 0)
            n = 0;
        char *m = arena_alloc(&c->arena, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(m, (size_t)n + 1, fmt, ap);
        va_end(ap);
        c->err_msg = m;
    }
    return -1;
}

const char *kerr_type(enum kerr e) { return kerrs[e].type; }

const char *record_error_message(struct api_ctx *c, enum kerr e, uint32_t shard)
{
    if (e != KERR_THROUGHPUT_EXCEEDED)
        return "Internal service failure.";
    char id[32];
    shard_id(id, shard);
    return arena_printf(&c->arena, "Rate exceeded for shard %s in stream %s under account %s.", id,
                        c->stream_name, ctx_stream_account(c));
}

/* Storage's codes as the answers AWS SDKs retry: backpressure is a 503, which every SDK
 * retries with backoff (its wording is ours: AWS documents no such case for Kinesis); the rest
 * is InternalFailure (500), which they retry too, as AWS's own. */
int api_store_fail(struct api_ctx *c, int rc)
{
    if (rc == STORE_BUSY)
        return api_fail(c, KERR_SERVICE_UNAVAILABLE,
                        "Too many records are waiting to be stored. Retry the request.");
    klog(KLOG_ERROR, "storage: %s", store_strerror(rc));
    return api_fail(c, KERR_INTERNAL_FAILURE, NULL);
}

static void answer_error(struct api_ctx *c, enum wire_fmt fmt, struct api_response *resp)
{
    enum kerr e = c->err;
    buf_free(&c->out.b);
    resp->status = kerrs[e].status;
    if (!kerrs[e].mkey) {
        /* AWS's pre-format answers */
        struct buf b = BUF_INIT;
        if (e == KERR_RAW_UNKNOWN_OPERATION)
            buf_printf(&b, "<%s/>\n", kerrs[e].type);
        else
            buf_printf(&b, "<%s>\n  <Message>%s</Message>\n</%s>\n", kerrs[e].type,
                       c->err_msg ? c->err_msg : "", kerrs[e].type);
        resp->content_type = NULL;
        resp->body = buf_steal(&b, &resp->body_len);
        return;
    }
    struct enc out;
    enc_init(&out, fmt);
    enc_obj_begin(&out);
    enc_key(&out, "__type");
    enc_strz(&out, kerrs[e].type);
    if (c->err_msg) {
        enc_key(&out, kerrs[e].mkey);
        enc_strz(&out, c->err_msg);
    }
    enc_obj_end(&out);
    resp->content_type = fmt == WIRE_CBOR ? AMZ_CBOR : AMZ_JSON;
    resp->body = buf_steal(&out.b, &resp->body_len);
}

/* The deprecated application/json protocol answers in AWS's older envelope; its statuses are
 * the table's raw ones (400 for a body that does not decode, 404 for everything else). */
static void coral_answer(struct api_response *resp, enum kerr e)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "{\"Output\":{\"__type\":\"com.amazon.coral.service#%s\"},\"Version\":\"1.0\"}",
               kerrs[e].type);
    resp->status = kerrs[e].status;
    resp->content_type = "application/json";
    resp->body = buf_steal(&b, &resp->body_len);
}

/* ---- request readers ---- */

const char *req_str(struct api_ctx *c, const char *name)
{
    const struct kv *v = kv_get(c->req, name);
    return v && v->type == KV_STR ? v->s : NULL;
}

bool req_int(struct api_ctx *c, const char *name, int64_t *out)
{
    const struct kv *v = kv_get(c->req, name);
    if (!v || v->type != KV_NUM)
        return false;
    *out = v->i;
    return true;
}

bool req_time_ms(struct api_ctx *c, const char *name, int64_t *out)
{
    return kv_time_ms(c, kv_get(c->req, name), out);
}

bool kv_time_ms(struct api_ctx *c, const struct kv *v, int64_t *out)
{
    if (!v || v->type != KV_NUM)
        return false;
    if (c->fmt == WIRE_CBOR) { /* AWS's CBOR protocol carries integer milliseconds */
        *out = v->is_int ? v->i : (int64_t)v->d;
        return true;
    }
    /* JSON carries seconds (with a fraction); keep millisecond precision */
    *out = v->is_int && v->i < INT64_MAX / 1000 ? v->i * 1000 : (int64_t)(v->d * 1000.0 + 0.5);
    return true;
}

/* ---- authentication presence (signature verification is a later stage) ---- */

static bool has_param(const char *auth, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = auth; (p = strstr(p, name)); p += n) {
        bool starts = p == auth || p[-1] == ' ' || p[-1] == ',';
        if (starts && p[n] == '=' && p[n + 1] && p[n + 1] != ',' && p[n + 1] != ' ')
            return true;
    }
    return false;
}

static const char *query_param(struct arena *a, const char *query, const char *name)
{
    if (!query)
        return NULL;
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len >= n && !strncmp(p, name, n) && (len == n || p[n] == '='))
            return len > n ? arena_strndup(a, p + n + 1, len - n - 1) : "";
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static int check_auth(struct api_ctx *c, const struct api_request *r)
{
    const char *algo = query_param(&c->arena, r->query, "X-Amz-Algorithm");
    if (r->authorization && algo)
        return api_fail(
            c, KERR_INVALID_SIGNATURE,
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.");
    if (!r->authorization && !algo)
        return api_fail(c, KERR_MISSING_AUTH, "Missing Authentication Token");
    struct buf m = BUF_INIT;
    if (r->authorization) {
        static const char *const need[] = {"Credential", "Signature", "SignedHeaders"};
        for (int i = 0; i < 3; i++)
            if (!has_param(r->authorization, need[i]))
                buf_printf(&m, "Authorization header requires '%s' parameter. ", need[i]);
        if (!r->amz_date && !r->date)
            buf_adds(&m,
                     "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
        if (m.len)
            buf_printf(&m, "Authorization=%s", r->authorization);
    } else {
        static const char *const need[] = {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature",
                                           "X-Amz-SignedHeaders", "X-Amz-Date"};
        for (int i = 0; i < 5; i++) {
            const char *v = query_param(&c->arena, r->query, need[i]);
            if (!v || !*v)
                buf_printf(&m, "AWS query-string parameters must include '%s'. ", need[i]);
        }
        if (m.len)
            buf_adds(&m, "Re-examine the query-string parameters.");
    }
    if (m.len) {
        buf_addc(&m, 0);
        api_fail(c, KERR_INCOMPLETE_SIGNATURE, "%s", m.p);
        buf_free(&m);
        return -1;
    }
    /* region from the credential scope: Credential=AKID/date/REGION/kinesis/aws4_request */
    const char *cred = r->authorization ? strstr(r->authorization, "Credential=")
                                        : query_param(&c->arena, r->query, "X-Amz-Credential");
    if (cred) {
        if (r->authorization)
            cred += 11;
        const char *p = cred;
        for (int slash = 0; *p && slash < 2; p++)
            if (*p == '/' || (p[0] == '%' && p[1] == '2' && (p[2] == 'F' || p[2] == 'f')))
                slash++, p += (*p == '%') ? 2 : 0;
        const char *e = p;
        while (*e && *e != '/' && *e != '%' && *e != ',' && *e != ' ')
            e++;
        if (e > p && e - p < 64)
            c->region = arena_strndup(&c->arena, p, (size_t)(e - p));
    }
    return 0;
}

/* --auth: verify the signature; the service in the scope must be the target's. */
static int verify_auth(struct api_ctx *c, const struct api_request *r)
{
    if (!r->header)
        return api_fail(c, KERR_MISSING_AUTH, "Missing Authentication Token");
    const char *service = r->target && !strncmp(r->target, "TrentService.", 13) ? "kms" : "kinesis";
    struct auth_http h = {
        .method = r->method ? r->method : "POST",
        .path = r->path ? r->path : "/",
        .query = r->query,
        .header = r->header,
        .hctx = r->hctx,
        .body = r->body,
        .body_len = r->body_len,
    };
    c->auth_snap = auth_acquire(c->api->auth);
    struct auth_verdict v;
    switch (auth_verify(c->auth_snap, &c->arena, &h, service, c->now_ms, &v)) {
    case AUTH_OK: break;
    case AUTH_INCOMPLETE: return api_fail(c, KERR_INCOMPLETE_SIGNATURE, "%s", v.msg);
    case AUTH_BAD_SIGNATURE: return api_fail(c, KERR_INVALID_SIGNATURE, "%s", v.msg);
    case AUTH_UNKNOWN_KEY: return api_fail(c, KERR_UNRECOGNIZED_CLIENT, "%s", v.msg);
    }
    c->caller = v.cred;
    c->region = v.region;
    return 0;
}

void api_reopen_logs(struct api *a) { accesslog_reopen(a->alog); }

int api_reload_auth(struct api *a)
{
    if (!a->auth)
        return 0;
    int rc = auth_reload(a->auth);
    if (rc)
        klog(KLOG_WARN, "kept the previous credentials");
    else
        klog(KLOG_INFO, "reloaded %s", a->cfg.auth_file);
    return rc;
}

/* ---- stream names and ARNs ---- */

int arn_split(const char *arn, const char *end, struct arn_parts *out)
{
    if (!end)
        end = arn + strlen(arn);
    const char *parts[6], *p = arn;
    int n = 0;
    parts[n++] = p;
    while (n < 6 && (p = memchr(p, ':', (size_t)(end - p))))
        parts[n++] = ++p;
    if (n < 6 || (size_t)(end - parts[5]) < 7 || strncmp(parts[5], "stream/", 7))
        return -1;
    *out = (struct arn_parts){.region = parts[3],
                              .rlen = (size_t)(parts[4] - parts[3] - 1),
                              .account = parts[4],
                              .alen = (size_t)(parts[5] - parts[4] - 1),
                              .name = parts[5] + 7,
                              .nlen = (size_t)(end - parts[5] - 7)};
    return 0;
}

int arn_owner(struct api_ctx *c, const struct arn_parts *p, const char **name, const char **account)
{
    if (p->rlen != strlen(c->region) || strncmp(p->region, c->region, p->rlen) || p->alen >= 16)
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Stream %.*s under account %.*s not found.", (int)p->nlen,
                        p->name, (int)p->alen, p->account);
    *name = arena_strndup(&c->arena, p->name, p->nlen);
    *account = p->alen == strlen(api_account(c)) && !strncmp(p->account, api_account(c), p->alen)
                   ? api_account(c)
                   : arena_strndup(&c->arena, p->account, p->alen);
    return 0;
}

/* c->stream_name and its owner from a stream ARN (arn:aws:kinesis:<region>:<account>:stream/
 * <name>) of this region: another account's ARN names that account's stream; name, when
 * given, must be the same stream. */
static int resolve_arn(struct api_ctx *c, const char *arn, const char *name)
{
    struct arn_parts p;
    const char *sname, *acct;
    if (arn_split(arn, NULL, &p))
        return api_fail(c, KERR_INVALID_ARGUMENT, "Invalid ARN: %s", arn);
    if (arn_owner(c, &p, &sname, &acct))
        return -1;
    if (name && strcmp(name, sname))
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "StreamARN %s and StreamName %s do not refer to the same stream.", arn, name);
    c->stream_name = sname;
    c->stream_acct = acct;
    return 0;
}

int api_resolve_stream(struct api_ctx *c)
{
    const char *name = req_str(c, "StreamName");
    const char *arn = req_str(c, "StreamARN");
    if (arn)
        return resolve_arn(c, arn, name);
    if (!name)
        return api_fail(c, KERR_VALIDATION, "Either StreamName or StreamARN must be provided.");
    c->stream_name = name;
    c->stream_acct = api_account(c);
    return 0;
}

int api_resolve_resource(struct api_ctx *c)
{
    const char *arn = req_str(c, "ResourceARN");
    if (arn && strstr(arn, "/consumer/"))
        return api_fail(c, KERR_RESOURCE_NOT_FOUND, "Consumer %s not found.", arn);
    return resolve_arn(c, arn, NULL);
}

/* GetRecords: its iterator, opened once for the whole call; it names the stream (and owner) the
 * call reads, which authorization and the operation use. One that does not open is the
 * operation's to answer. */
static void resolve_iterator(struct api_ctx *c)
{
    const char *text = req_str(c, "ShardIterator");
    struct iter *it = arena_alloc(&c->arena, sizeof *it);
    if (!text || iter_open(c, text, it))
        return;
    c->iter = it;
    c->stream_name = it->stream;
    c->stream_acct = it->account;
}

/* ---- authorization (--auth): identity policies, resource policies ---- */

/* The ARN a call acts on, as IAM sees it; "*" for account-wide calls. */
static const char *call_resource(struct api_ctx *c, int op, const struct kv *req)
{
    const char *wire = ops[op].wire;
    const struct kv *v;
    if ((v = kv_get(req, "ResourceARN")) && v->type == KV_STR)
        return v->s;
    if ((v = kv_get(req, "ConsumerARN")) && v->type == KV_STR)
        return v->s;
    if ((v = kv_get(req, "StreamARN")) && v->type == KV_STR)
        return v->s;
    const char *name = c->stream_name;
    if (!name && (v = kv_get(req, "StreamName")) && v->type == KV_STR)
        name = v->s;
    if (name) {
        const char *region = c->iter ? c->iter->region : c->region;
        return arena_printf(&c->arena, "arn:aws:kinesis:%s:%s:stream/%s", region, ctx_stream_account(c),
                            name);
    }
    if (!strcmp(wire, "ListStreams"))
        return arena_printf(&c->arena, "arn:aws:kinesis:%s:%s:stream/*", c->region, api_account(c));
    return "*";
}

/* The account owning what a call acts on: the resolved stream's, else that of the ARN the
 * request names (a consumer's or a resource's), else the caller's. */
static const char *call_account(struct api_ctx *c)
{
    if (c->stream_acct)
        return c->stream_acct;
    static const char *const members[] = {"ResourceARN", "ConsumerARN", "StreamARN"};
    struct arn_parts p;
    for (size_t i = 0; i < sizeof members / sizeof *members; i++) {
        const char *arn = req_str(c, members[i]);
        if (arn && arn_split(arn, strstr(arn, "/consumer/"), &p) == 0 && p.alen < 16)
            return arena_strndup(&c->arena, p.account, p.alen);
    }
    return api_account(c);
}

/* The uid of the stream an ARN names (0 when none): resource policies are bound to one
 * incarnation. */
static uint64_t arn_stream_uid(struct api_ctx *c, const char *arn)
{
    struct arn_parts p;
    if (arn_split(arn, strstr(arn, "/consumer/"), &p) || p.alen >= 16 || p.rlen >= 64)
        return 0;
    const char *name = arena_strndup(&c->arena, p.name, p.nlen);
    const char *acct = arena_strndup(&c->arena, p.account, p.alen);
    const char *region = arena_strndup(&c->arena, p.region, p.rlen);
    streams_rdlock(c->api);
    struct stream *s = streams_find(c->api, acct, region, name, c->now_ms);
    uint64_t uid = s ? s->uid : 0;
    streams_unlock(c->api);
    return uid;
}

struct policy_request caller_request(const struct api_ctx *c, const char *action, const char *resource)
{
    const struct auth_cred *who = c->caller;
    return (struct policy_request){
        .action = action,
        .resource = resource,
        .principal_arn = who->user_arn,
        .principal_acct = who->account,
        .region = c->region,
        .username = who->name,
        .source_ip = c->source_ip,
        .secure_transport = c->secure_transport,
    };
}

static int authorize(struct api_ctx *c, int op)
{
    if (ops[op].flags & OPF_KMS_KEY)
        return 0; /* by its key's policy, once the key is known (kms_find_for) */
    const struct auth_cred *who = c->caller;
    bool same_account = !strcmp(who->account, call_account(c));
    char action[80];
    snprintf(action, sizeof action, "%s:%s", ops[op].flags & OPF_KMS ? "kms" : "kinesis", ops[op].wire);
    if (same_account && !who->policy && !resource_policies_any(c->api))
        return 0; /* the common case: a user of the account without a policy file */
    const char *resource = call_resource(c, op, c->req);
    struct policy_request pr = caller_request(c, action, resource);
    enum policy_verdict id = who->policy ? policy_eval(who->policy, &pr) : POLICY_ALLOW;
    enum policy_verdict rs = POLICY_NONE;
    if (resource_policies_any(c->api) && strcmp(resource, "*")) {
        uint64_t uid = arn_stream_uid(c, resource);
        if (uid)
            rs = resource_policies_eval(c->api, resource, uid, &pr);
    }
    const char *why = NULL;
    if (id == POLICY_DENY)
        why = "with an explicit deny in an identity-based policy";
    else if (rs == POLICY_DENY)
        why = "with an explicit deny in a resource-based policy";
    else if (same_account ? (id != POLICY_ALLOW && rs != POLICY_ALLOW) : id != POLICY_ALLOW)
        why = arena_printf(&c->arena, "because no identity-based policy allows the %s action", action);
    else if (!same_account && rs != POLICY_ALLOW)
        why = arena_printf(&c->arena, "because no resource-based policy allows the %s action", action);
    if (!why)
        return 0;
    return api_fail(c, KERR_ACCESS_DENIED, "User: %s is not authorized to perform: %s on resource: %s %s",
                    who->user_arn, action, resource, why);
}

/* The maximum record size of the stream a request names (before validation, so the raw
 * members are used only if they are strings); 1 MiB when there is no such stream. */
static int64_t record_limit(struct api_ctx *c, const struct kv *req)
{
    const struct kv *n = kv_get(req, "StreamName"), *arn = kv_get(req, "StreamARN");
    const char *name = n && n->type == KV_STR ? n->s : NULL, *acct = api_account(c);
    struct arn_parts p;
    if (!name && arn && arn->type == KV_STR && arn_split(arn->s, NULL, &p) == 0 && p.alen < 16) {
        name = arena_strndup(&c->arena, p.name, p.nlen);
        acct = arena_strndup(&c->arena, p.account, p.alen);
    }
    int64_t kib = 1024;
    if (name) {
        streams_rdlock(c->api);
        struct stream *s = streams_find(c->api, acct, c->region, name, c->now_ms);
        if (s)
            kib = s->max_record_kib;
        streams_unlock(c->api);
    }
    return kib * 1024;
}

/* ---- the pipeline ---- */

static bool target_op(const char *target, int *op, bool *service_ok, bool *op_named)
{
    *service_ok = false;
    *op_named = false;
    *op = -1;
    if (!target)
        return false;
    const char *dot = strchr(target, '.');
    size_t svc_len = dot ? (size_t)(dot - target) : strlen(target);
    bool kms = svc_len == 12 && !strncmp(target, "TrentService", 12);
    *service_ok = (svc_len == 16 && !strncmp(target, "Kinesis_20131202", 16)) || kms;
    *op_named = dot && dot[1];
    if (!dot || svc_len == 0)
        return false;
    const char *name = dot + 1;
    size_t len = strcspn(name, ".");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strlen(ops[i].wire) == len && !strncmp(ops[i].wire, name, len) &&
            !(ops[i].flags & OPF_KMS) == !kms)
            *op = (int)i;
    return *service_ok && *op >= 0;
}

static bool ctype_is(const char *ct, const char *want)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n))
        return false;
    ct += n;
    while (*ct == ' ')
        ct++;
    return *ct == 0 || *ct == ';';
}

/* Fill c->resp from the finished call (rc 0: c->out holds the answer; -1: c->err;
 * API_ANSWERED: resp is already filled) and free the context. */
static void finish(struct api_ctx *c, int rc)
{
    struct api_response *resp = c->resp;
    if (rc == 0) {
        resp->status = 200;
        resp->content_type = c->fmt == WIRE_CBOR ? AMZ_CBOR : AMZ_JSON;
        resp->body = buf_steal(&c->out.b, &resp->body_len);
    } else if (rc < 0) {
        answer_error(c, c->fmt, resp);
    }
    metrics_call_done(c, rc, resp->status, resp->body_len);
    buf_free(&c->out.b);
    auth_release(c->auth_snap);
    arena_free(&c->arena);
    free(c);
}

void api_finish(struct api_ctx *c, int rc)
{
    api_done_fn done = c->done;
    void *ctx = c->done_ctx;
    struct api_response *resp = c->resp;
    finish(c, rc);
    done(ctx, resp);
}

static void continue_posted(void *arg)
{
    struct api_ctx *c = arg;
    api_finish(c, c->then(c));
}

void api_continue(struct api_ctx *c, int (*then)(struct api_ctx *c))
{
    if (!c->post) {
        api_finish(c, then(c));
        return;
    }
    c->then = then;
    c->post(c->done_ctx, continue_posted, c);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void wake(void *arg, struct api_response *resp)
{
    (void)resp;
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void api_handle(struct api *a, const struct api_request *r, struct api_response *resp)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct api_request here = *r;
    here.post = NULL; /* everything runs here or on the committer: wake is the only callback */
    if (api_handle_async(a, &here, resp, wake, &w)) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
}

int api_handle_async(struct api *a, const struct api_request *r, struct api_response *resp, api_done_fn done,
                     void *done_ctx)
{
    struct api_ctx *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->api = a;
    c->region = a->region;
    c->resp = resp;
    c->done = done;
    c->done_ctx = done_ctx;
    c->post = r->post;
    c->source_ip = r->source_ip && r->source_ip[0] ? r->source_ip : NULL;
    c->secure_transport = r->secure_transport;
    c->m = (struct metrics_call){.t0_ns = metrics_now_ns(), .op = -1, .bytes_in = r->body_len};
    arena_init(&c->arena);
    if (a->cfg.latency_ms > 0) {
        struct timespec ts = {a->cfg.latency_ms / 1000, (a->cfg.latency_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    c->now_ms = clock_now_ms();
    memset(resp, 0, sizeof *resp);
    api_request_id(resp->request_id);

    bool is_json = ctype_is(r->content_type, AMZ_JSON), is_cbor = ctype_is(r->content_type, AMZ_CBOR);
    bool plain_json = ctype_is(r->content_type, "application/json");
    enum wire_fmt fmt = is_json ? WIRE_JSON : is_cbor ? WIRE_CBOR : WIRE_JSON;
    enc_init(&c->out, fmt);
    c->fmt = fmt;
    int op;
    bool service_ok, op_named;
    bool target_ok = target_op(r->target, &op, &service_ok, &op_named);
    c->m.op = op;

    if (r->body_len == 0) {
        api_fail(c, target_ok ? KERR_SERIALIZATION : KERR_UNKNOWN_OPERATION, NULL);
        c->fmt = is_json ? WIRE_JSON : WIRE_CBOR;
        goto error;
    }
    if (!is_json && !is_cbor && !plain_json) {
        if (!service_ok && !(r->target && strchr(r->target, '.')))
            api_fail(c, KERR_RAW_ACCESS_DENIED,
                     "Unable to determine service/operation name to be authorized");
        else if (!r->target || !strchr(r->target, '.') || !op_named)
            api_fail(c, KERR_RAW_ACCESS_DENIED,
                     "Unable to determine service/operation name to be authorized");
        else
            api_fail(c, KERR_RAW_UNKNOWN_OPERATION, NULL);
        goto error;
    }
    struct kv *req = NULL;
    int drc = is_cbor ? cbor_parse(&c->arena, r->body, r->body_len, &req)
                      : json_parse(&c->arena, r->body, r->body_len, &req);
    c->m.body = drc ? NULL : req;
    if (drc || req->type != KV_OBJ) {
        if (plain_json) {
            coral_answer(resp, KERR_SERIALIZATION);
            goto done;
        }
        if (drc == KV_TOO_BIG) /* a body of tiny items: its tree would outgrow kv_budget */
            api_fail(c, KERR_SERIALIZATION, "Request of %zu bytes decodes to more than %zu bytes.",
                     r->body_len, kv_budget(r->body_len));
        else
            api_fail(c, KERR_SERIALIZATION, NULL);
        goto error;
    }
    if (plain_json) {
        coral_answer(resp, KERR_RAW_UNKNOWN_OPERATION);
        goto done;
    }
    if (!target_ok) {
        api_fail(c, KERR_UNKNOWN_OPERATION, NULL);
        goto error;
    }
    if (check_auth(c, r) || (a->auth && verify_auth(c, r)))
        goto error;
    int kind;
    const char *msg;
    /* only when some stream takes records over 1 MiB is the named stream looked up here */
    int64_t rlimit =
        ops[op].flags & OPF_RECORDS && api_max_body(a) > DEFAULT_MAX_BODY ? record_limit(c, req) : 1048576;
    if (validate_request(&c->arena, req, ops[op].def->schema, rlimit, &kind, &msg)) {
        api_fail(c, kind ? KERR_VALIDATION : KERR_SERIALIZATION, msg ? "%s" : NULL, msg);
        goto error;
    }
    c->req = req;
    c->fmt = fmt;
    if (ops[op].def->check && ops[op].def->check(c))
        goto error;
    if ((ops[op].flags & OPF_STREAM) && api_resolve_stream(c))
        goto error;
    if (ops[op].def == &op_get_records)
        resolve_iterator(c);
    if (c->caller && authorize(c, op))
        goto error;
    /* the account's rate is charged only for a call whose arguments are valid */
    if (a->limits && !limits_op(a->limits, api_account(c), op)) {
        const char *sn = req_str(c, "StreamName");
        if (sn)
            api_fail(c, KERR_LIMIT_EXCEEDED, "Rate exceeded for stream %s under account %s.", sn,
                     ctx_stream_account(c));
        else
            api_fail(c, KERR_LIMIT_EXCEEDED, "Rate exceeded");
        goto error;
    }
    /* front-ends sharing a store: a Kinesis control-plane call sees every change to streams
     * made through another one (a query of row versions), and one on consumers every change to
     * consumers (another); the data plane only when it names an unknown stream; the built-in
     * KMS keeps its own rows (kms.c) */
    if (store_shared(a->store) && !(ops[op].flags & OPF_KMS)) {
        bool hot = ops[op].flags & OPF_RECORDS || ops[op].def == &op_get_records;
        if (!hot || (c->stream_name && !streams_known(a, ctx_stream_account(c), c->region, c->stream_name)))
            streams_sync(a);
        if (ops[op].flags & OPF_CONSUMERS)
            consumers_sync(a);
    }
    int rc = ops[op].def->run(c);
    if (rc == API_PENDING)
        return 1; /* api_finish completes it */
    finish(c, rc);
    return 0;
error:
    finish(c, -1);
    return 0;
done:
    c->fmt = fmt;
    finish(c, API_ANSWERED);
    return 0;
}

bool api_may_block(const struct api *a, const char *target)
{
    int op;
    bool service_ok, op_named;
    if (a->cfg.latency_ms > 0)
        return true;
    if (!target_op(target, &op, &service_ok, &op_named))
        return false; /* an error, answered before any lookup */
    /* on a shared store a write may look its stream or its KMS key up in the database */
    return !(ops[op].flags & OPF_RECORDS) || store_shared(a->store);
}

size_t api_max_body(const struct api *a) { return __atomic_load_n(&a->max_body, __ATOMIC_RELAXED); }

void api_too_large(struct api *a, const char *content_type, uint64_t size, struct api_response *resp)
{
    struct api_ctx c = {.api = a, .resp = resp, .m = {.op = -1, .bytes_in = size}};
    arena_init(&c.arena);
    memset(resp, 0, sizeof *resp);
    api_request_id(resp->request_id);
    api_fail(&c, KERR_REQUEST_TOO_LARGE, "Request of %" PRIu64 " bytes exceeds the limit of %zu bytes.", size,
             api_max_body(a));
    answer_error(&c, ctype_is(content_type, AMZ_CBOR) ? WIRE_CBOR : WIRE_JSON, resp);
    metrics_call_done(&c, -1, resp->status, resp->body_len);
    arena_free(&c.arena);
}

void api_unavailable(struct api *a, const char *content_type, const char *message, struct api_response *resp)
{
    struct api_ctx c = {.api = a, .resp = resp, .m = {.op = -1}};
    arena_init(&c.arena);
    memset(resp, 0, sizeof *resp);
    api_request_id(resp->request_id);
    api_fail(&c, KERR_SERVICE_UNAVAILABLE, "%s", message);
    answer_error(&c, ctype_is(content_type, AMZ_CBOR) ? WIRE_CBOR : WIRE_JSON, resp);
    metrics_call_done(&c, -1, resp->status, resp->body_len);
    arena_free(&c.arena);
}

char *api_metrics(struct api *a, const struct api_server_stats *st, size_t *len)
{
    struct buf b = BUF_INIT;
    metrics_write(a, st, &b);
    return buf_steal(&b, len);
}

/* The operation table's names, for the metrics' labels. */
static const char *const op_wire[] = {
#define OP(wire, stem, flags, rate) wire,
#include "ops.def"
#include "kms/kms_ops.def"
#undef OP
};
static const bool op_kms[] = {
#define OP(wire, stem, flags, rate) ((flags)&OPF_KMS) != 0,
#include "ops.def"
#include "kms/kms_ops.def"
#undef OP
};

/* ---- open / close ---- */

/* The key that seals iterators and tokens: the one in the store, or a new one. Front-ends that
 * share a store share it, so an iterator from one is accepted by all; if two start at once,
 * the compare-and-set lets one key win and the other front-end reads it. */
static int load_iter_key(struct api *a)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        char *v;
        size_t len;
        uint64_t version = 0;
        int rc = store_meta_get(a->store, "iterator-key", &v, &len, &version);
        if (rc == 0 && len == sizeof a->iter_key) {
            memcpy(a->iter_key, v, len);
            free(v);
            return 0;
        }
        if (rc == 0)
            free(v); /* not a key: replaced below */
        else if (rc != STORE_NOT_FOUND)
            return rc;
        randombytes_buf(a->iter_key, sizeof a->iter_key);
        struct store_row row = {
            .key = "iterator-key", .version = version, .val = a->iter_key, .len = sizeof a->iter_key};
        rc = store_meta_cas(a->store, &row, 1);
        if (rc != STORE_CONFLICT)
            return rc;
    }
    return STORE_CONFLICT;
}

/* AWS's control-plane rates from ops.def, overridden by "Op=N,Op=N". */
static int setup_limits(struct api *a)
{
    enum { NOPS = sizeof ops / sizeof ops[0] };
    double rates[NOPS];
    for (size_t i = 0; i < NOPS; i++)
        rates[i] = ops[i].rate;
    for (const char *p = a->cfg.rate_limits; p && *p;) {
        const char *eq = strchr(p, '='), *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        size_t i = 0;
        while (eq && eq < end && i < NOPS &&
               (strlen(ops[i].wire) != (size_t)(eq - p) || strncmp(ops[i].wire, p, (size_t)(eq - p))))
            i++;
        char *num_end;
        double v = eq && eq < end ? strtod(eq + 1, &num_end) : -1;
        if (!eq || eq > end || i == NOPS || v < 0 || num_end != end) {
            klog(KLOG_ERROR, "--rate-limit expects Operation=callsPerSecond, got '%.*s'", (int)(end - p), p);
            return -1;
        }
        rates[i] = v;
        p = *end ? end + 1 : end;
    }
    a->limits = limits_new(a->account, rates, NOPS);
    return 0;
}

int api_open(const struct api_config *cfg, struct api **out)
{
    if (sodium_init() < 0) {
        klog(KLOG_ERROR, "libsodium failed to initialise");
        return -1;
    }
    struct api *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    a->cfg = *cfg;
    snprintf(a->region, sizeof a->region, "%s", cfg->region ? cfg->region : "us-east-1");
    snprintf(a->account, sizeof a->account, "%s", cfg->account ? cfg->account : "000000000000");
    struct store_config sc = {.engine = cfg->store ? "pg" : "lmdb",
                              .dir = cfg->store ? cfg->store : cfg->data_dir,
                              .sync = cfg->sync,
                              .max_unflushed = cfg->max_unflushed};
    if (!cfg->store)
        mkdir(cfg->data_dir, 0755);
    if (!cfg->no_encryption_at_rest) {
        struct datakeys_root root = {cfg->root_key_file, cfg->root_key_env, cfg->root_key_command};
        int krc = datakeys_open(cfg->store ? NULL : cfg->data_dir, &root, &a->dk);
        if (krc) {
            free(a);
            return krc;
        }
        sc.keyring = datakeys_keyring(a->dk);
    }
    randombytes_buf(&a->frontend_id, sizeof a->frontend_id);
    int rc = store_open(&sc, &a->store);
    int krc = rc == 0 && a->dk ? datakeys_attach(a->dk, a->store) : 0;
    if (krc) { /* it said why */
        store_close(a->store);
        datakeys_close(a->dk);
        free(a);
        return krc;
    }
    if (rc) {
        klog(KLOG_ERROR, "cannot open %s: %s", cfg->store ? "the PostgreSQL store" : cfg->data_dir,
             store_strerror(rc));
        datakeys_close(a->dk);
        free(a);
        return rc == STORE_NEWER ? -2 : -1; /* a newer schema: not this binary's to run on */
    }
    if ((rc = load_iter_key(a)) || (rc = streams_open(a))) {
        klog(KLOG_ERROR, "cannot load state from %s (%d)", cfg->data_dir, rc);
        store_close(a->store);
        streams_close(a);
        datakeys_close(a->dk);
        free(a);
        return -1;
    }
    if ((rc = consumers_open(a))) {
        klog(KLOG_ERROR, "cannot load consumers from %s (%d)", cfg->data_dir, rc);
        store_close(a->store);
        consumers_close(a);
        streams_close(a);
        free(a);
        return -1;
    }
    if (subs_open(a)) {
        store_close(a->store);
        consumers_close(a);
        streams_close(a);
        free(a);
        return -1;
    }
    if ((rc = resource_policies_open(a))) {
        klog(KLOG_ERROR, "cannot load resource policies from %s (%d)", cfg->data_dir, rc);
        store_close(a->store);
        resource_policies_close(a);
        streams_close(a);
        free(a);
        return -1;
    }
    if (cfg->auth_file && auth_open(cfg->auth_file, a->account, &a->auth)) {
        store_close(a->store);
        resource_policies_close(a);
        streams_close(a);
        datakeys_close(a->dk);
        free(a);
        return -1;
    }
    /* KMS-encrypted streams: their new data keys are wrapped by their KMS keys */
    streams_rdlock(a);
    size_t ns;
    struct stream **all = streams_list(a, &ns);
    for (size_t i = 0; a->dk && i < ns; i++)
        if (all[i]->enc_kid[0] || all[i]->enc_prev_kid[0])
            datakeys_stream_key(a->dk, all[i]->uid, all[i]->enc_prev_kid, all[i]->enc_kid,
                                all[i]->enc_switch_ms);
    streams_unlock(a);
    if (cfg->kms_seed && seed_apply(a, cfg->kms_seed)) {
        store_close(a->store);
        streams_close(a);
        datakeys_close(a->dk);
        free(a);
        return -1;
    }
    if (!cfg->no_limits && setup_limits(a)) {
        store_close(a->store);
        streams_close(a);
        datakeys_close(a->dk);
        free(a);
        return -1;
    }
    if (cfg->access_log && accesslog_open(cfg->access_log, &a->alog)) {
        store_close(a->store);
        streams_close(a);
        datakeys_close(a->dk);
        free(a);
        return -1;
    }
    /* every open shard may be its own stream */
    size_t bound = cfg->shard_limit > 1024 ? (size_t)cfg->shard_limit : 1024;
    a->metrics = metrics_open(op_wire, op_kms, (int)(sizeof op_wire / sizeof op_wire[0]), bound, bound);
    metrics_sync(a); /* the streams loaded: their series from the first scrape on */
    pthread_mutex_init(&a->maint_mu, NULL);
    pthread_cond_init(&a->maint_cv, NULL);
    pthread_cond_init(&a->sweep_cv, NULL);
    a->drops = true; /* drop rows may be left from before a restart */
    bool maint = pthread_create(&a->maint, NULL, streams_maintain, a) == 0;
    if (!maint || pthread_create(&a->sweep, NULL, streams_sweep, a)) {
        if (maint) {
            pthread_mutex_lock(&a->maint_mu);
            a->stopping = true;
            pthread_cond_signal(&a->maint_cv);
            pthread_mutex_unlock(&a->maint_mu);
            pthread_join(a->maint, NULL);
        }
        accesslog_close(a->alog);
        metrics_close(a->metrics);
        store_close(a->store);
        streams_close(a);
        datakeys_close(a->dk);
        free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void api_close(struct api *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->maint_mu);
    a->stopping = true;
    pthread_cond_signal(&a->maint_cv);
    pthread_cond_signal(&a->sweep_cv);
    pthread_mutex_unlock(&a->maint_mu);
    pthread_join(a->maint, NULL);
    pthread_join(a->sweep, NULL);
    subs_close(a);
    frontends_leave(a);
    /* until the store is closed its engine's threads may tell of changed rows (another
     * front-end's, or this one's own as the database echoes them) to the watches of consumers,
     * streams and policies (store_meta_watch): those are freed after it, not before */
    store_close(a->store);
    consumers_close(a);
    streams_close(a);
    datakeys_close(a->dk);
    limits_free(a->limits);
    auth_close(a->auth);
    resource_policies_close(a);
    accesslog_close(a->alog);
    metrics_close(a->metrics);
    pthread_mutex_destroy(&a->maint_mu);
    pthread_cond_destroy(&a->maint_cv);
    pthread_cond_destroy(&a->sweep_cv);
    free(a);
}
