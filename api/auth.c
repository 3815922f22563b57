/* auth.c: SigV4 verification (header and query-string forms) against a credentials file.
 *
 * Model: the file is loaded into an immutable snapshot (credentials sorted by access key id);
 * a reload builds a new snapshot and swaps the pointer under a mutex, and a snapshot is freed
 * when its last holder releases it. Verification recomputes the canonical request exactly as
 * AWS defines it (method, normalized and encoded path, sorted encoded query, the signed
 * headers' trimmed values, the payload hash), the string to sign, and the HMAC chain; the
 * signature is compared in constant time. Derived signing keys are cached per thread in a
 * small fixed table keyed by (snapshot generation, access key, day, region, service), so a
 * steady client costs two SHA-256 passes and one HMAC per request. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "buf.h"
#include "policy.h"
#include "klog.h"

#define SKEW_MS (5 * 60 * 1000)
#define MAX_CREDS 10000
#define MAX_FILE (4 << 20)

struct auth_snap {
    struct auth *owner;
    int refs; /* guarded by owner->mu */
    uint64_t gen;
    size_t n;
    struct auth_cred *creds; /* sorted by akid */
};

struct auth {
    char *path;
    char *default_account;
    pthread_mutex_t mu;
    struct auth_snap *cur;
};

static uint64_t generations; /* atomic: every snapshot of every auth has its own (key cache) */

/* ---- the credentials file ---- */

static void cred_free(struct auth_cred *c)
{
    free(c->name);
    free(c->akid);
    free(c->secret);
    free(c->account);
    free(c->token);
    free(c->user_arn);
    free(c->policy_file);
    policy_free(c->policy);
}

static void snap_free(struct auth_snap *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        cred_free(&s->creds[i]);
    free(s->creds);
    free(s);
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        abort();
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int cmp_cred(const void *a, const void *b)
{
    return strcmp(((const struct auth_cred *)a)->akid, ((const struct auth_cred *)b)->akid);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b = BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < MAX_FILE) {
        buf_grow(&b, n + 1);
        memcpy(b.p + b.len, chunk, n);
        b.len += n;
    }
    bool err = ferror(f) || b.len >= MAX_FILE;
    fclose(f);
    if (err) {
        buf_free(&b);
        return NULL;
    }
    buf_grow(&b, 1);
    b.p[b.len] = 0;
    return buf_steal(&b, len);
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* A relative policy_file is taken from the credentials file's directory. */
static char *resolve_path(const char *base, const char *p)
{
    if (p[0] == '/')
        return xstrndup(p, strlen(p));
    const char *slash = strrchr(base, '/');
    size_t dl = slash ? (size_t)(slash - base) + 1 : 0;
    char *out = malloc(dl + strlen(p) + 1);
    if (!out)
        abort();
    memcpy(out, base, dl);
    memcpy(out + dl, p, strlen(p) + 1);
    return out;
}

static int finish_section(const char *path, struct auth_cred *c, const char *default_account,
                          char *policy_file, int line)
{
    if (!c->akid || !c->secret) {
        fprintf(
            stderr,
            "kinesd: %s: section [%s] (ending line %d) needs aws_access_key_id and aws_secret_access_key\n",
            path, c->name, line);
        free(policy_file);
        return -1;
    }
    if (!c->account)
        c->account = xstrndup(default_account, strlen(default_account));
    if (strlen(c->account) != 12 || strspn(c->account, "0123456789") != 12) {
        klog(KLOG_ERROR, "%s: section [%s]: aws_account_id must be 12 digits", path, c->name);
        free(policy_file);
        return -1;
    }
    size_t n = strlen(c->account) + strlen(c->name) + 32;
    c->user_arn = malloc(n);
    if (!c->user_arn)
        abort();
    snprintf(c->user_arn, n, "arn:aws:iam::%s:user/%s", c->account, c->name);
    if (policy_file) {
        c->policy_file = resolve_path(path, policy_file);
        free(policy_file);
        size_t len;
        char *text = read_file(c->policy_file, &len);
        if (!text) {
            klog(KLOG_ERROR, "%s: section [%s]: cannot read policy_file %s", path, c->name, c->policy_file);
            return -1;
        }
        char why[256];
        c->policy = policy_parse(text, len, false, why, sizeof why);
        free(text);
        if (!c->policy) {
            klog(KLOG_ERROR, "%s: section [%s]: policy_file %s: %s", path, c->name, c->policy_file, why);
            return -1;
        }
    }
    return 0;
}

static struct auth_snap *load(const char *path, const char *default_account)
{
    size_t len;
    char *text = read_file(path, &len);
    if (!text) {
        klog(KLOG_ERROR, "cannot read the credentials file %s (%s)", path, strerror(errno));
        return NULL;
    }
    struct auth_snap *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    size_t cap = 0;
    struct auth_cred *cur = NULL;
    char *policy_file = NULL;
    int line = 0, rc = 0;
    for (const char *p = text; *p && !rc;) {
        const char *nl = strchr(p, '\n');
        const char *e = nl ? nl : p + strlen(p);
        const char *next = nl ? nl + 1 : e;
        line++;
        trim(&p, &e);
        if (p == e || *p == '#' || *p == ';') {
            p = next;
            continue;
        }
        if (*p == '[') {
            if (e[-1] != ']' || e - p < 3) {
                klog(KLOG_ERROR, "%s:%d: malformed section header", path, line);
                rc = -1;
                break;
            }
            if (cur) {
                rc = finish_section(path, cur, default_account, policy_file, line - 1);
                policy_file = NULL; /* finish_section took it */
                if (rc)
                    break;
            }
            if (s->n == MAX_CREDS) {
                klog(KLOG_ERROR, "%s: more than %d credentials", path, MAX_CREDS);
                rc = -1;
                break;
            }
            if (s->n == cap) {
                cap = cap ? cap * 2 : 8;
                s->creds = realloc(s->creds, cap * sizeof *s->creds);
                if (!s->creds)
                    abort();
            }
            cur = &s->creds[s->n++];
            memset(cur, 0, sizeof *cur);
            const char *ns = p + 1, *ne = e - 1;
            trim(&ns, &ne);
            if (!strncmp(ns, "profile ", 8)) /* the config file's spelling */
                ns += 8;
            cur->name = xstrndup(ns, (size_t)(ne - ns));
            p = next;
            continue;
        }
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (!eq || !cur) {
            klog(KLOG_ERROR, "%s:%d: expected key = value inside a [section]", path, line);
            rc = -1;
            break;
        }
        const char *ks = p, *ke = eq, *vs = eq + 1, *ve = e;
        trim(&ks, &ke);
        trim(&vs, &ve);
        size_t kl = (size_t)(ke - ks);
        char **slot = NULL;
        if (kl == 17 && !strncasecmp(ks, "aws_access_key_id", kl))
            slot = &cur->akid;
        else if (kl == 21 && !strncasecmp(ks, "aws_secret_access_key", kl))
            slot = &cur->secret;
        else if (kl == 14 && !strncasecmp(ks, "aws_account_id", kl))
            slot = &cur->account;
        else if (kl == 17 && !strncasecmp(ks, "aws_session_token", kl))
            slot = &cur->token;
        else if (kl == 11 && !strncasecmp(ks, "policy_file", kl))
            slot = &policy_file;
        if (slot) { /* other keys (region, output, ...) are the SDKs' and ignored */
            free(*slot);
            *slot = xstrndup(vs, (size_t)(ve - vs));
        }
        p = next;
    }
    if (!rc && cur)
        rc = finish_section(path, cur, default_account, policy_file, line);
    else
        free(policy_file);
    free(text);
    if (!rc) {
        qsort(s->creds, s->n, sizeof *s->creds, cmp_cred);
        for (size_t i = 1; i < s->n; i++)
            if (!strcmp(s->creds[i - 1].akid, s->creds[i].akid)) {
                klog(KLOG_ERROR, "%s: access key %s appears twice", path, s->creds[i].akid);
                rc = -1;
                break;
            }
    }
    if (rc) {
        snap_free(s);
        return NULL;
    }
    return s;
}

int auth_open(const char *path, const char *default_account, struct auth **out)
{
    struct auth *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    a->path = xstrndup(path, strlen(path));
    a->default_account = xstrndup(default_account, strlen(default_account));
    pthread_mutex_init(&a->mu, NULL);
    a->cur = load(path, default_account);
    if (!a->cur) {
        auth_close(a);
        return -1;
    }
    a->cur->refs = 1;
    a->cur->owner = a;
    a->cur->gen = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    *out = a;
    return 0;
}

int auth_reload(struct auth *a)
{
    struct auth_snap *s = load(a->path, a->default_account);
    if (!s)
        return -1;
    s->refs = 1;
    s->owner = a;
    pthread_mutex_lock(&a->mu);
    s->gen = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    struct auth_snap *old = a->cur;
    a->cur = s;
    bool last = old && --old->refs == 0;
    pthread_mutex_unlock(&a->mu);
    if (last)
        snap_free(old);
    return 0;
}

void auth_close(struct auth *a)
{
    if (!a)
        return;
    snap_free(a->cur);
    pthread_mutex_destroy(&a->mu);
    free(a->path);
    free(a->default_account);
    free(a);
}

struct auth_snap *auth_acquire(struct auth *a)
{
    pthread_mutex_lock(&a->mu);
    struct auth_snap *s = a->cur;
    s->refs++;
    pthread_mutex_unlock(&a->mu);
    return s;
}

void auth_hold(struct auth_snap *s)
{
    pthread_mutex_lock(&s->owner->mu);
    s->refs++;
    pthread_mutex_unlock(&s->owner->mu);
}

void auth_release(struct auth_snap *s)
{
    if (!s)
        return;
    struct auth *a = s->owner;
    pthread_mutex_lock(&a->mu);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&a->mu);
    if (last)
        snap_free(s);
}

static const struct auth_cred *find_cred(const struct auth_snap *s, const char *akid)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->creds[mid].akid, akid);
        if (!c)
            return &s->creds[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- encoding helpers ---- */

static const char hexd[] = "0123456789abcdef";

static void hex(char *out, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[p[i] >> 4];
        out[2 * i + 1] = hexd[p[i] & 15];
    }
    out[2 * n] = 0;
}

/* SHA-256 through OpenSSL (its SHA extensions / AVX2 code for the body), with the algorithm
 * fetched once and one context per thread: a one-shot EVP_Digest fetches it on every call. */
static EVP_MD *sha256_md;
static pthread_key_t sha256_key; /* the thread's EVP_MD_CTX, freed when the thread ends */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void ctx_free(void *ctx) { EVP_MD_CTX_free(ctx); }
static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (pthread_key_create(&sha256_key, ctx_free))
        abort();
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    pthread_once(&sha256_once, sha256_fetch);
    EVP_MD_CTX *ctx = pthread_getspecific(sha256_key);
    if (!ctx) {
        if (!(ctx = EVP_MD_CTX_new()) || pthread_setspecific(sha256_key, ctx))
            abort();
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!sha256_md || !EVP_DigestInit_ex2(ctx, sha256_md, NULL) || !EVP_DigestUpdate(ctx, p, n) ||
        !EVP_DigestFinal_ex(ctx, md, &mdlen))
        abort();
    hex(out, md, 32);
}

static bool unreserved(unsigned char c) { return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~'; }

/* AWS's URI encoding of len bytes of s; '/' kept when keep_slash. */
static void uri_encode(struct buf *b, const char *s, size_t len, bool keep_slash)
{
    buf_grow(b, len * 3 + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            b->p[b->len++] = (char)c;
        } else {
            b->p[b->len++] = '%';
            b->p[b->len++] = "0123456789ABCDEF"[c >> 4];
            b->p[b->len++] = "0123456789ABCDEF"[c & 15];
        }
    }
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decode len bytes of s into the arena. */
static char *uri_decode(struct arena *ar, const char *s, size_t len, size_t *outlen)
{
    char *o = arena_alloc(ar, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < len && (h = hexval(s[i + 1])) >= 0 && (l = hexval(s[i + 2])) >= 0) {
            o[n++] = (char)(h << 4 | l);
            i += 2;
        } else {
            o[n++] = s[i];
        }
    }
    o[n] = 0;
    *outlen = n;
    return o;
}

/* ---- parsing the signature ---- */

/* The value of name= in a query string, decoded (arena), or NULL. */
static const char *query_get(struct arena *ar, const char *q, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = q; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len >= n && !strncmp(p, name, n) && (len == n || p[n] == '=')) {
            size_t ol;
            return len > n ? uri_decode(ar, p + n + 1, len - n - 1, &ol) : "";
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

/* The value of Name= in an Authorization header's parameter list (arena), or NULL. */
static const char *auth_param(struct arena *ar, const char *h, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = h; (p = strstr(p, name)); p += n) {
        bool starts = p == h || p[-1] == ' ' || p[-1] == ',';
        if (starts && p[n] == '=') {
            const char *v = p + n + 1, *e = v;
            while (*e && *e != ',' && *e != ' ')
                e++;
            return arena_strndup(ar, v, (size_t)(e - v));
        }
    }
    return NULL;
}

static const char *hdr(const struct auth_http *r, const char *name)
{
    const char *v = r->header(r->hctx, name);
    if (!v && !strcasecmp(name, "host")) /* HTTP/2 carries it as :authority */
        v = r->header(r->hctx, ":authority");
    return v;
}

/* Days since the epoch of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* 20150830T123600Z -> milliseconds since the epoch; -1 when malformed. */
static int64_t iso_ms(const char *s)
{
    if (!s || strlen(s) != 16 || !digits(s, 8) || s[8] != 'T' || !digits(s + 9, 6) || s[15] != 'Z')
        return -1;
    int mo = num(s + 4, 2), d = num(s + 6, 2), h = num(s + 9, 2), mi = num(s + 11, 2), se = num(s + 13, 2);
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    return ((days_from_civil(num(s, 4), mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000;
}

static void iso_format(int64_t ms, char out[17])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* An RFC 1123 Date header ("Sun, 30 Aug 2015 12:36:00 GMT") in ISO basic form (arena). */
static const char *http_date_iso(struct arena *ar, const char *v)
{
    struct tm tm = {0};
    const char *e = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!e || *e)
        return NULL;
    int64_t ms = (days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * 86400 + tm.tm_hour * 3600 +
                  tm.tm_min * 60 + tm.tm_sec) *
                 1000;
    char *out = arena_alloc(ar, 17);
    iso_format(ms, out);
    return out;
}

enum auth_fail auth_parse(struct arena *ar, const struct auth_http *r, struct auth_sig *sig, const char **msg)
{
    memset(sig, 0, sizeof *sig);
    const char *authz = r->header(r->hctx, "Authorization");
    const char *cred;
    if (authz) {
        const char *sp = strchr(authz, ' ');
        size_t alen = sp ? (size_t)(sp - authz) : strlen(authz);
        if (alen != 16 || strncmp(authz, "AWS4-HMAC-SHA256", 16)) {
            *msg = arena_printf(ar, "Unsupported AWS 'algorithm': '%.*s'", (int)alen, authz);
            return AUTH_INCOMPLETE;
        }
        cred = auth_param(ar, authz, "Credential");
        sig->signed_headers = auth_param(ar, authz, "SignedHeaders");
        sig->signature = auth_param(ar, authz, "Signature");
        sig->amz_date = hdr(r, "X-Amz-Date");
        if (!sig->amz_date && (sig->amz_date = hdr(r, "Date"))) {
            sig->date_from_date_header = true;
            const char *iso = http_date_iso(ar, sig->amz_date);
            if (!iso) {
                *msg = arena_printf(ar,
                                    "Date must be in ISO-8601 'basic format'. Got '%s'. See "
                                    "http://en.wikipedia.org/wiki/ISO_8601",
                                    sig->amz_date);
                return AUTH_INCOMPLETE;
            }
            sig->amz_date = iso;
        }
    } else {
        sig->presigned = true;
        const char *q = r->query;
        const char *algo = q ? query_get(ar, q, "X-Amz-Algorithm") : NULL;
        if (!algo || strcmp(algo, "AWS4-HMAC-SHA256")) {
            *msg = arena_printf(ar, "Unsupported AWS 'algorithm': '%s'", algo ? algo : "");
            return AUTH_INCOMPLETE;
        }
        cred = query_get(ar, q, "X-Amz-Credential");
        sig->signed_headers = query_get(ar, q, "X-Amz-SignedHeaders");
        sig->signature = query_get(ar, q, "X-Amz-Signature");
        sig->amz_date = query_get(ar, q, "X-Amz-Date");
        const char *ex = query_get(ar, q, "X-Amz-Expires");
        char *end = NULL;
        long long e = ex ? strtoll(ex, &end, 10) : -1;
        if (!ex || !*ex || *end || e < 0 || e > 604800) {
            *msg = arena_printf(ar, "X-Amz-Expires must be non-negative and at most 604800 seconds: '%s'",
                                ex ? ex : "");
            return AUTH_INCOMPLETE;
        }
        sig->expires = e;
    }
    if (!cred || !sig->signed_headers || !sig->signature || !sig->amz_date) {
        *msg = "Authorization is missing a parameter.";
        return AUTH_INCOMPLETE;
    }
    if (iso_ms(sig->amz_date) < 0) {
        *msg = arena_printf(ar,
                            "Date must be in ISO-8601 'basic format'. Got '%s'. See "
                            "http://en.wikipedia.org/wiki/ISO_8601",
                            sig->amz_date);
        return AUTH_INCOMPLETE;
    }
    /* AKID/yyyymmdd/region/service/aws4_request (the key id itself has no '/') */
    const char *parts[5];
    size_t lens[5];
    int np = 0;
    for (const char *p = cred; np < 5;) {
        const char *sl = strchr(p, '/');
        parts[np] = p;
        lens[np++] = sl ? (size_t)(sl - p) : strlen(p);
        if (!sl)
            break;
        p = sl + 1;
    }
    if (np < 5 || strchr(parts[4], '/')) {
        *msg = arena_printf(ar, "Credential should have exactly 5 slash-separated components: '%s'.", cred);
        return AUTH_INCOMPLETE;
    }
    sig->akid = arena_strndup(ar, parts[0], lens[0]);
    sig->scope_date = arena_strndup(ar, parts[1], lens[1]);
    sig->region = arena_strndup(ar, parts[2], lens[2]);
    sig->service = arena_strndup(ar, parts[3], lens[3]);
    sig->terminator = arena_strndup(ar, parts[4], lens[4]);
    return AUTH_OK;
}

/* ---- the canonical request ---- */

/* Remove dot segments and empty segments from a path (RFC 3986 5.2.4, and repeated slashes
 * collapse), keeping a trailing slash. Arena. */
static const char *normalize_path(struct arena *ar, const char *path)
{
    size_t len = strlen(path);
    const char **seg = arena_alloc(ar, (len + 1) * sizeof *seg);
    size_t *sl = arena_alloc(ar, (len + 1) * sizeof *sl);
    size_t n = 0;
    bool trailing = len > 0 && path[len - 1] == '/';
    for (const char *p = path; *p;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 1 && p[0] == '.') {
            if (!e)
                trailing = true;
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (n)
                n--;
            if (!e)
                trailing = true;
        } else {
            seg[n] = p;
            sl[n++] = l;
        }
        p += l;
    }
    struct buf b = BUF_INIT;
    buf_grow(&b, len + 2);
    for (size_t i = 0; i < n; i++) {
        b.p[b.len++] = '/';
        memcpy(b.p + b.len, seg[i], sl[i]);
        b.len += sl[i];
    }
    if (!n || trailing)
        b.p[b.len++] = '/';
    char *out = arena_strndup(ar, b.p, b.len);
    buf_free(&b);
    return out;
}

struct qpair {
    const char *k, *v; /* encoded, arena */
};

static int cmp_qpair(const void *a, const void *b)
{
    const struct qpair *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static const char *encode_arena(struct arena *ar, const char *s, size_t len)
{
    struct buf b = BUF_INIT;
    uri_encode(&b, s, len, false);
    char *out = arena_strndup(ar, b.p ? b.p : "", b.len);
    buf_free(&b);
    return out;
}

static void canonical_query(struct arena *ar, struct buf *b, const char *q, bool presigned)
{
    if (!q || !*q)
        return;
    size_t cap = 1;
    for (const char *p = q; *p; p++)
        cap += *p == '&';
    struct qpair *pairs = arena_alloc(ar, cap * sizeof *pairs);
    size_t n = 0;
    for (const char *p = q; p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len) {
            const char *eq = memchr(p, '=', len);
            size_t kl = eq ? (size_t)(eq - p) : len;
            size_t dk, dv;
            char *k = uri_decode(ar, p, kl, &dk);
            char *v = eq ? uri_decode(ar, eq + 1, len - kl - 1, &dv) : (dv = 0, "");
            if (!(presigned && dk == 15 && !memcmp(k, "X-Amz-Signature", 15))) {
                pairs[n].k = encode_arena(ar, k, dk);
                pairs[n++].v = encode_arena(ar, v, dv);
            }
        }
        p = amp ? amp + 1 : NULL;
    }
    qsort(pairs, n, sizeof *pairs, cmp_qpair);
    for (size_t i = 0; i < n; i++)
        buf_printf(b, "%s%s=%s", i ? "&" : "", pairs[i].k, pairs[i].v);
}

/* A header value as SigV4 canonicalizes it: trimmed, runs of whitespace (folded lines
 * included) collapsed into one space. */
static void canonical_value(struct buf *b, const char *v)
{
    size_t len = strlen(v);
    buf_grow(b, len + 1);
    const char *s = v, *e = v + len;
    trim(&s, &e);
    bool space = false;
    for (; s < e; s++) {
        if (isspace((unsigned char)*s)) {
            space = true;
            continue;
        }
        if (space)
            b->p[b->len++] = ' ';
        space = false;
        b->p[b->len++] = *s;
    }
}

/* The payload hash: X-Amz-Content-Sha256 when it is the body's hash; otherwise the body's own
 * hash (a value that does not match the body makes the signature fail, as it should). */
static void payload_hash(const struct auth_http *r, char out[65])
{
    sha256_hex(r->body ? r->body : "", r->body_len, out);
}

void auth_canonical(struct arena *ar, const struct auth_http *r, const struct auth_sig *sig, bool normalize,
                    const char **creq, const char **sts)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "%s\n", r->method);
    const char *path = r->path && *r->path ? r->path : "/";
    if (normalize)
        path = normalize_path(ar, path);
    uri_encode(&b, path, strlen(path), true);
    buf_addc(&b, '\n');
    canonical_query(ar, &b, r->query, sig->presigned);
    buf_addc(&b, '\n');
    for (const char *p = sig->signed_headers; *p;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        char *name = arena_strndup(ar, p, len);
        const char *v = hdr(r, name);
        for (size_t i = 0; i < len; i++)
            buf_addc(&b, (char)tolower((unsigned char)name[i]));
        buf_addc(&b, ':');
        if (v)
            canonical_value(&b, v);
        buf_addc(&b, '\n');
        p = semi ? semi + 1 : p + len;
    }
    buf_printf(&b, "\n%s\n", sig->signed_headers);
    char ph[65];
    payload_hash(r, ph);
    buf_adds(&b, ph);
    buf_addc(&b, 0);
    *creq = arena_strndup(ar, b.p, b.len - 1);
    char ch[65];
    sha256_hex(b.p, b.len - 1, ch);
    buf_free(&b);
    *sts = arena_printf(ar, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/%s\n%s", sig->amz_date, sig->scope_date,
                        sig->region, sig->service, sig->terminator, ch);
}

/* ---- signing keys ---- */

#define KEY_CACHE 8
struct key_entry {
    uint64_t gen; /* 0: empty */
    char id[160]; /* akid \0 day \0 region \0 service, as one string with '/' separators */
    unsigned char key[32];
};
static _Thread_local struct key_entry key_cache[KEY_CACHE];
static _Thread_local unsigned key_next;
static _Thread_local uint64_t key_gen_local; /* the generation the verifier passes in */
static uint64_t keys_derived;                /* atomic */

uint64_t auth_keys_derived(void) { return __atomic_load_n(&keys_derived, __ATOMIC_RELAXED); }

/* HMAC-SHA256 of short messages: libsodium's, which has no per-call setup (OpenSSL 3's HMAC()
 * fetches the algorithm and allocates a context on every call). */
static void hmac(const unsigned char *key, size_t klen, const char *msg, size_t mlen, unsigned char out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, klen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, mlen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

static void signing_key(const char *akid, const char *secret, const struct auth_sig *sig,
                        unsigned char out[32])
{
    char id[160];
    int n = snprintf(id, sizeof id, "%s/%s/%s/%s", akid, sig->scope_date, sig->region, sig->service);
    bool cacheable = n > 0 && (size_t)n < sizeof id && key_gen_local;
    if (cacheable)
        for (int i = 0; i < KEY_CACHE; i++)
            if (key_cache[i].gen == key_gen_local && !strcmp(key_cache[i].id, id)) {
                memcpy(out, key_cache[i].key, 32);
                return;
            }
    size_t sl = strlen(secret);
    char *k0 = malloc(sl + 5);
    if (!k0)
        abort();
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, sl + 1);
    unsigned char k1[32], k2[32], k3[32];
    hmac((unsigned char *)k0, sl + 4, sig->scope_date, strlen(sig->scope_date), k1);
    OPENSSL_cleanse(k0, sl + 4);
    free(k0);
    hmac(k1, 32, sig->region, strlen(sig->region), k2);
    hmac(k2, 32, sig->service, strlen(sig->service), k3);
    hmac(k3, 32, "aws4_request", 12, out);
    __atomic_add_fetch(&keys_derived, 1, __ATOMIC_RELAXED);
    if (cacheable) {
        struct key_entry *e = &key_cache[key_next++ % KEY_CACHE];
        e->gen = key_gen_local;
        memcpy(e->id, id, (size_t)n + 1);
        memcpy(e->key, out, 32);
    }
}

void auth_sign(const char *akid, const char *secret, const struct auth_sig *sig, const char *sts,
               char out[65])
{
    unsigned char key[32], mac[32];
    signing_key(akid, secret, sig, key);
    hmac(key, 32, sts, strlen(sts), mac);
    hex(out, mac, 32);
}

/* ---- verification ---- */

static bool header_signed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        if (len == n && !strncasecmp(p, name, n))
            return true;
        p = semi ? semi + 1 : p + len;
    }
    return false;
}

static enum auth_fail fail(struct auth_verdict *v, enum auth_fail f, const char *msg)
{
    v->fail = f;
    v->msg = msg;
    return f;
}

enum auth_fail auth_verify(struct auth_snap *s, struct arena *ar, const struct auth_http *r,
                           const char *service, int64_t now_ms, struct auth_verdict *v)
{
    memset(v, 0, sizeof *v);
    struct auth_sig sig;
    const char *msg = NULL;
    enum auth_fail f = auth_parse(ar, r, &sig, &msg);
    if (f)
        return fail(v, f, msg);
    v->region = sig.region;
    const struct auth_cred *cred = find_cred(s, sig.akid);
    if (!cred)
        return fail(v, AUTH_UNKNOWN_KEY, "The security token included in the request is invalid.");
    const char *token = sig.presigned && r->query ? query_get(ar, r->query, "X-Amz-Security-Token")
                                                  : hdr(r, "X-Amz-Security-Token");
    if ((token || cred->token) && (!token || !cred->token || strcmp(token, cred->token)))
        return fail(v, AUTH_UNKNOWN_KEY, "The security token included in the request is invalid.");
    if (strcmp(sig.terminator, "aws4_request"))
        return fail(
            v, AUTH_BAD_SIGNATURE,
            arena_printf(ar, "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.",
                         sig.terminator));
    if (strcmp(sig.service, service))
        return fail(v, AUTH_BAD_SIGNATURE,
                    arena_printf(ar, "Credential should be scoped to correct service: '%s'. ", service));
    if (!*sig.region || strspn(sig.region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(sig.region) ||
        strlen(sig.region) > 32)
        return fail(
            v, AUTH_BAD_SIGNATURE,
            arena_printf(ar, "Credential should be scoped to a valid region, not '%s'. ", sig.region));
    if (strncmp(sig.scope_date, sig.amz_date, 8) || strlen(sig.scope_date) != 8)
        return fail(
            v, AUTH_BAD_SIGNATURE,
            arena_printf(ar,
                         "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                         "from HTTP: '%s' != '%.8s', from '%s'.",
                         sig.scope_date, sig.amz_date, sig.amz_date));
    if (!header_signed(sig.signed_headers, "host") && !header_signed(sig.signed_headers, ":authority"))
        return fail(v, AUTH_INCOMPLETE,
                    "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
    if (!sig.presigned &&
        !header_signed(sig.signed_headers, sig.date_from_date_header ? "date" : "x-amz-date"))
        return fail(v, AUTH_INCOMPLETE,
                    sig.date_from_date_header
                        ? "'Date' must be a 'SignedHeader' in the AWS Authorization."
                        : "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.");
    int64_t t = iso_ms(sig.amz_date);
    char now_s[17], edge_s[17];
    iso_format(now_ms, now_s);
    if (sig.presigned) {
        if (now_ms > t + sig.expires * 1000) {
            iso_format(t + sig.expires * 1000, edge_s);
            return fail(v, AUTH_BAD_SIGNATURE,
                        arena_printf(ar,
                                     "Signature expired: %s is now earlier than %s (%s + %" PRId64 " sec.)",
                                     edge_s, now_s, sig.amz_date, sig.expires));
        }
    }
    if (t < now_ms - SKEW_MS && !sig.presigned) {
        iso_format(now_ms - SKEW_MS, edge_s);
        return fail(v, AUTH_BAD_SIGNATURE,
                    arena_printf(ar, "Signature expired: %s is now earlier than %s (%s - 5 min.)",
                                 sig.amz_date, edge_s, now_s));
    }
    if (t > now_ms + SKEW_MS) {
        iso_format(now_ms + SKEW_MS, edge_s);
        return fail(v, AUTH_BAD_SIGNATURE,
                    arena_printf(ar, "Signature not yet current: %s is still later than %s (%s + 5 min.)",
                                 sig.amz_date, edge_s, now_s));
    }
    const char *creq, *sts;
    auth_canonical(ar, r, &sig, true, &creq, &sts);
    char want[65];
    key_gen_local = s->gen;
    auth_sign(cred->akid, cred->secret, &sig, sts, want);
    if (strlen(sig.signature) != 64 || CRYPTO_memcmp(want, sig.signature, 64))
        return fail(
            v, AUTH_BAD_SIGNATURE,
            arena_printf(ar,
                         "The request signature we calculated does not match the signature you provided. "
                         "Check your AWS Secret Access Key and signing method. Consult the service "
                         "documentation for details.\n\nThe Canonical String for this request should "
                         "have been\n'%s'\n\nThe String-to-Sign should have been\n'%s'\n",
                         creq, sts));
    v->cred = cred;
    return AUTH_OK;
}
