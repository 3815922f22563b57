/* test_auth.c: SigV4 verification (api/auth.c) on AWS's published SigV4 test suite
 * (tests/unit/api/sigv4, read from the repository root), and on requests signed here with the
 * same code path a client would: every signed request must verify, and any change to a signed
 * part, the key, or the clock must not. */
#include <ctype.h>
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "check.h"
#include "tmpdir.h"

#define SUITE "tests/unit/api/sigv4"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define T0 1440938160000LL /* 2015-08-30T12:36:00Z, every case's timestamp */

static char *slurp(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b = BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&b, chunk, n);
    fclose(f);
    buf_addc(&b, 0);
    size_t len;
    return buf_steal(&b, &len);
}

/* A request parsed from the suite's text form. */
#define MAXH 16
struct req {
    char method[16];
    char *path, *query;
    int nh;
    char *hname[MAXH];
    struct buf hval[MAXH]; /* repeated names joined with ',' as HTTP does */
    char *body;
    size_t body_len;
    char *text;
};

static const char *lookup(void *ctx, const char *name)
{
    struct req *r = ctx;
    for (int i = 0; i < r->nh; i++)
        if (!strcasecmp(r->hname[i], name))
            return r->hval[i].p;
    return NULL;
}

static void add_header(struct req *r, const char *name, size_t nl, const char *v, size_t vl)
{
    for (int i = 0; i < r->nh; i++)
        if (strlen(r->hname[i]) == nl && !strncasecmp(r->hname[i], name, nl)) {
            r->hval[i].len--; /* drop the NUL */
            buf_addc(&r->hval[i], ',');
            buf_add(&r->hval[i], v, vl);
            buf_addc(&r->hval[i], 0);
            return;
        }
    if (r->nh == MAXH)
        return;
    r->hname[r->nh] = strndup(name, nl);
    r->hval[r->nh] = (struct buf)BUF_INIT;
    buf_add(&r->hval[r->nh], v, vl);
    buf_addc(&r->hval[r->nh], 0);
    r->nh++;
}

static int parse_req(const char *text, struct req *r)
{
    memset(r, 0, sizeof *r);
    r->text = strdup(text);
    char *p = r->text;
    char *eol = strchr(p, '\n');
    if (!eol)
        return -1;
    *eol = 0;
    char *sp = strchr(p, ' '), *ver = strstr(p, " HTTP/");
    if (!sp || !ver)
        return -1;
    snprintf(r->method, sizeof r->method, "%.*s", (int)(sp - p), p);
    *ver = 0;
    char *target = sp + 1, *q = strchr(target, '?');
    if (q) {
        *q = 0;
        r->query = q + 1;
    }
    r->path = target;
    p = eol + 1;
    while (*p && *p != '\n') {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        /* folded continuation lines belong to the value */
        while (e && (e[1] == ' ' || e[1] == '\t')) {
            char *e2 = strchr(e + 1, '\n');
            len = e2 ? (size_t)(e2 - p) : strlen(p);
            e = e2;
        }
        char *colon = memchr(p, ':', len);
        if (colon)
            add_header(r, p, (size_t)(colon - p), colon + 1, len - (size_t)(colon - p) - 1);
        p = e ? e + 1 : p + len;
    }
    if (*p == '\n')
        p++;
    r->body = p;
    r->body_len = strlen(p);
    return 0;
}

static void free_req(struct req *r)
{
    for (int i = 0; i < r->nh; i++) {
        free(r->hname[i]);
        buf_free(&r->hval[i]);
    }
    free(r->text);
}

static struct auth_http http_of(struct req *r)
{
    return (struct auth_http){.method = r->method,
                              .path = r->path,
                              .query = r->query,
                              .header = lookup,
                              .hctx = r,
                              .body = r->body,
                              .body_len = r->body_len};
}

static struct auth *open_creds(const char *dir, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/credentials", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    struct auth *a = NULL;
    if (auth_open(path, "123456789012", &a))
        return NULL;
    return a;
}

static char *json_string(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(json, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    return strndup(p, strcspn(p, "\""));
}

static void trim_nl(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
}

static int ncases;

/* One form (header or query) of one case. */
static void check_form(const char *dir, const char *form, struct auth *plain, const char *context)
{
    char name[64];
    snprintf(name, sizeof name, "%s-signed-request.txt", form);
    char *text = slurp(dir, name);
    snprintf(name, sizeof name, "%s-canonical-request.txt", form);
    char *want_creq = slurp(dir, name);
    snprintf(name, sizeof name, "%s-string-to-sign.txt", form);
    char *want_sts = slurp(dir, name);
    snprintf(name, sizeof name, "%s-signature.txt", form);
    char *want_sig = slurp(dir, name);
    CHECK(text && want_creq && want_sts && want_sig);
    if (!text || !want_creq || !want_sts || !want_sig)
        goto out;
    trim_nl(want_sts);
    trim_nl(want_sig);
    trim_nl(want_creq);
    char *service = json_string(context, "service");
    bool normalize = !strstr(context, "\"normalize\": false");
    char *token = json_string(context, "token");
    if (token && strstr(context, "\"omit_session_token\": true") && !strcmp(form, "query")) {
        /* The token was added to the query after signing: a verifier cannot tell it from a
         * signed one (the other sts case signs it), and AWS's clients always sign it. */
        free(token);
        free(service);
        goto out;
    }
    struct req r;
    CHECK(parse_req(text, &r) == 0);
    struct auth_http h = http_of(&r);
    struct arena ar;
    arena_init(&ar);
    struct auth_sig sig;
    const char *msg = NULL;
    CHECK(auth_parse(&ar, &h, &sig, &msg) == AUTH_OK);
    const char *creq = NULL, *sts = NULL;
    auth_canonical(&ar, &h, &sig, normalize, &creq, &sts);
    if (strcmp(creq, want_creq) || strcmp(sts, want_sts))
        fprintf(stderr, "case %s (%s)\n", dir, form);
    CHECK_STR(creq, want_creq);
    CHECK_STR(sts, want_sts);
    char got[65];
    auth_sign("AKIDEXAMPLE", SECRET, &sig, sts, got);
    CHECK_STR(got, want_sig);

    /* The verifier always normalizes (it serves no S3), so it verifies the normalized cases. */
    if (normalize) {
        char *tdir = NULL;
        struct auth *own = NULL;
        if (token) {
            char text2[2048];
            snprintf(text2, sizeof text2,
                     "[example]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = " SECRET "\n"
                     "aws_session_token = %s\n",
                     token);
            tdir = tmpdir_new();
            own = open_creds(tdir, text2);
            CHECK(own != NULL);
        }
        struct auth_snap *s = auth_acquire(own ? own : plain);
        struct auth_verdict v;
        CHECK(auth_verify(s, &ar, &h, service, T0, &v) == AUTH_OK);
        if (v.fail)
            fprintf(stderr, "case %s (%s): %s\n", dir, form, v.msg);
        CHECK(v.cred && !strcmp(v.cred->akid, "AKIDEXAMPLE"));
        /* another service's scope is refused */
        CHECK(auth_verify(s, &ar, &h, "kinesis", T0, &v) == AUTH_BAD_SIGNATURE);
        CHECK_STR(v.msg, "Credential should be scoped to correct service: 'kinesis'. ");
        /* a changed signature, path, body, or a signed header's value does not verify */
        char *sigp = strstr(r.query && !strcmp(form, "query") ? r.query : lookup(&r, "Authorization"),
                            !strcmp(form, "query") ? "X-Amz-Signature=" : "Signature=");
        CHECK(sigp != NULL);
        if (sigp) {
            char *hexp = strchr(sigp, '=') + 1;
            hexp[10] = hexp[10] == '0' ? '1' : '0';
            CHECK(auth_verify(s, &ar, &h, service, T0, &v) == AUTH_BAD_SIGNATURE);
            CHECK(v.msg && strstr(v.msg, "The request signature we calculated does not match") == v.msg);
            hexp[10] = want_sig[10];
            CHECK(auth_verify(s, &ar, &h, service, T0, &v) == AUTH_OK);
        }
        if (r.body_len) {
            r.body[0] ^= 1;
            CHECK(auth_verify(s, &ar, &h, service, T0, &v) == AUTH_BAD_SIGNATURE);
            r.body[0] ^= 1;
        }
        char *path0 = r.path;
        r.path = "/other";
        h.path = r.path;
        CHECK(auth_verify(s, &ar, &h, service, T0, &v) == AUTH_BAD_SIGNATURE);
        h.path = r.path = path0;
        for (int i = 0; i < r.nh; i++) {
            if (!strcasecmp(r.hname[i], "Authorization") || !strcasecmp(r.hname[i], "X-Amz-Date") ||
                !strcasecmp(r.hname[i], "X-Amz-Security-Token") || !r.hval[i].len ||
                !strstr(sig.signed_headers, "host"))
                continue;
            char lower[64];
            snprintf(lower, sizeof lower, "%s", r.hname[i]);
            for (char *c = lower; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            if (!strstr(sig.signed_headers, lower))
                continue;
            char *val = r.hval[i].p, keep = val[0];
            val[0] = keep == 'z' ? 'y' : 'z';
            CHECK(auth_verify(s, &ar, &h, service, T0, &v) == AUTH_BAD_SIGNATURE);
            val[0] = keep;
        }
        CHECK(auth_verify(s, &ar, &h, service, T0, &v) == AUTH_OK);
        auth_release(s);
        auth_close(own);
        if (tdir)
            tmpdir_remove(tdir);
    }
    arena_free(&ar);
    free_req(&r);
    free(service);
    free(token);
    ncases++;
out:
    free(text);
    free(want_creq);
    free(want_sts);
    free(want_sig);
}

static void test_suite(void)
{
    char *dir = tmpdir_new();
    struct auth *plain = open_creds(dir, "[example]\naws_access_key_id = AKIDEXAMPLE\n"
                                         "aws_secret_access_key = " SECRET "\n");
    CHECK(plain != NULL);
    DIR *d = opendir(SUITE);
    CHECK(d != NULL);
    struct dirent *e;
    while (d && plain && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !strchr(e->d_name, '-'))
            continue;
        char cdir[512];
        snprintf(cdir, sizeof cdir, "%s/%s", SUITE, e->d_name);
        char *context = slurp(cdir, "context.json");
        if (!context)
            continue;
        check_form(cdir, "header", plain, context);
        check_form(cdir, "query", plain, context);
        free(context);
    }
    if (d)
        closedir(d);
    CHECK(ncases >= 75); /* 38 cases, two forms each, less one */
    auth_close(plain);
    tmpdir_remove(dir);
}

/* get-vanilla, read once into r (the caller frees it). */
static int vanilla(const char *form, struct req *r)
{
    char name[64];
    snprintf(name, sizeof name, "%s-signed-request.txt", form);
    char *text = slurp(SUITE "/get-vanilla", name);
    if (!text)
        return -1;
    int rc = parse_req(text, r);
    free(text);
    return rc;
}

static void test_clock_skew_and_expiry(void)
{
    char *dir = tmpdir_new();
    struct auth *a =
        open_creds(dir, "[u]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = " SECRET "\n");
    CHECK(a != NULL);
    struct auth_snap *s = auth_acquire(a);
    struct arena ar;
    arena_init(&ar);
    struct auth_verdict v;
    struct req r;
    CHECK(vanilla("header", &r) == 0);
    struct auth_http h = http_of(&r);
    CHECK(auth_verify(s, &ar, &h, "service", T0 + 300000, &v) == AUTH_OK);
    CHECK(auth_verify(s, &ar, &h, "service", T0 - 300000, &v) == AUTH_OK);
    CHECK(auth_verify(s, &ar, &h, "service", T0 + 301000, &v) == AUTH_BAD_SIGNATURE);
    CHECK_STR(v.msg, "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z "
                     "(20150830T124101Z - 5 min.)");
    CHECK(auth_verify(s, &ar, &h, "service", T0 - 301000, &v) == AUTH_BAD_SIGNATURE);
    CHECK_STR(v.msg, "Signature not yet current: 20150830T123600Z is still later than 20150830T123559Z "
                     "(20150830T123059Z + 5 min.)");
    free_req(&r);
    /* presigned: valid for X-Amz-Expires (3600 s) after X-Amz-Date, then refused */
    CHECK(vanilla("query", &r) == 0);
    h = http_of(&r);
    CHECK(auth_verify(s, &ar, &h, "service", T0 + 3600000, &v) == AUTH_OK);
    CHECK(auth_verify(s, &ar, &h, "service", T0 + 3601000, &v) == AUTH_BAD_SIGNATURE);
    CHECK_STR(v.msg, "Signature expired: 20150830T133600Z is now earlier than 20150830T133601Z "
                     "(20150830T123600Z + 3600 sec.)");
    free_req(&r);
    arena_free(&ar);
    auth_release(s);
    auth_close(a);
    tmpdir_remove(dir);
}

static void test_keys(void)
{
    char *dir = tmpdir_new();
    struct auth *other =
        open_creds(dir, "[u]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = " SECRET "\n");
    char *dir2 = tmpdir_new();
    struct auth *wrong =
        open_creds(dir2, "[u]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = nope\n");
    CHECK(other && wrong);
    struct arena ar;
    arena_init(&ar);
    struct auth_verdict v;
    struct req r;
    CHECK(vanilla("header", &r) == 0);
    struct auth_http h = http_of(&r);
    struct auth_snap *s = auth_acquire(other);
    CHECK(auth_verify(s, &ar, &h, "service", T0, &v) == AUTH_UNKNOWN_KEY);
    CHECK_STR(v.msg, "The security token included in the request is invalid.");
    auth_release(s);
    s = auth_acquire(wrong);
    CHECK(auth_verify(s, &ar, &h, "service", T0, &v) == AUTH_BAD_SIGNATURE);
    CHECK_STR(v.msg,
              "The request signature we calculated does not match the signature you provided. Check your "
              "AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"
              "The Canonical String for this request should have been\n'GET\n/\n\n"
              "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n\n"
              "The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20150830T123600Z\n"
              "20150830/us-east-1/service/aws4_request\n"
              "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63'\n");
    /* the signing key is derived once per (key, day, region, service), then cached */
    uint64_t before = auth_keys_derived();
    for (int i = 0; i < 5; i++)
        auth_verify(s, &ar, &h, "service", T0, &v);
    CHECK(auth_keys_derived() - before <= 1);
    auth_release(s);
    /* a reload makes a new snapshot: the cached key of the old secret is not used */
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/credentials", dir2);
    FILE *f = fopen(cpath, "w");
    fputs("[u]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = " SECRET "\n", f);
    fclose(f);
    CHECK(auth_reload(wrong) == 0);
    s = auth_acquire(wrong);
    CHECK(auth_verify(s, &ar, &h, "service", T0, &v) == AUTH_OK);
    auth_release(s);
    free_req(&r);
    arena_free(&ar);
    auth_close(other);
    auth_close(wrong);
    tmpdir_remove(dir);
    tmpdir_remove(dir2);
}

static void test_credentials_file(void)
{
    char *dir = tmpdir_new();
    struct auth *a = open_creds(dir, "# comment\n[default]\naws_access_key_id=K1\naws_secret_access_key=S1\n"
                                     "region = us-west-2\n\n[bob]\naws_access_key_id = K2\n"
                                     "aws_secret_access_key = S2\naws_account_id = 111122223333\n");
    CHECK(a != NULL);
    CHECK(open_creds(dir, "[x]\naws_access_key_id = K\n") == NULL); /* no secret */
    CHECK(open_creds(dir, "[x]\naws_access_key_id = K\naws_secret_access_key = S\naws_account_id = 12\n") ==
          NULL);                                               /* bad account */
    CHECK(open_creds(dir, "aws_access_key_id = K\n") == NULL); /* outside a section */
    CHECK(open_creds(dir, "[a]\naws_access_key_id=K\naws_secret_access_key=S\n[b]\naws_access_key_id=K\n"
                          "aws_secret_access_key=T\n") == NULL); /* duplicate key id */
    auth_close(a);
    tmpdir_remove(dir);
}

CHECK_RUN("api/auth", T(test_suite), T(test_clock_skew_and_expiry), T(test_keys), T(test_credentials_file))
