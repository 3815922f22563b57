/* auth.h: SigV4 verification against a credentials file (--auth FILE).
 *
 * The credentials file is in the AWS shared-credentials format: one [section] per user, with
 * aws_access_key_id, aws_secret_access_key, and optionally aws_account_id (default: the
 * server's account), aws_session_token and policy_file (an IAM identity policy).
 * The section's name is the user's name (arn:aws:iam::<account>:user/<name>).
 *
 * The loaded file is an immutable snapshot; auth_reload builds a new one and swaps it in, so a
 * request keeps the snapshot it started with (auth_acquire / auth_release) while a SIGHUP
 * replaces it. */
#ifndef KINESD_AUTH_H
#define KINESD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

struct auth;      /* the credentials file, reloadable */
struct auth_snap; /* one loaded version of it, reference-counted */
struct policy;    /* policy.h */

struct auth_cred {
    char *name;            /* section name: the IAM user's name */
    char *akid;            /* aws_access_key_id */
    char *secret;          /* aws_secret_access_key */
    char *account;         /* 12 digits */
    char *token;           /* aws_session_token, or NULL */
    char *user_arn;        /* arn:aws:iam::<account>:user/<name> */
    char *policy_file;     /* policy_file, relative to the credentials file's folder; or NULL */
    struct policy *policy; /* its identity policy, compiled; NULL: everything in its account */
};

/* What SigV4 sees of a request; all borrowed for the call. */
struct auth_http {
    const char *method;
    const char *path;  /* as received, without the query */
    const char *query; /* raw query string without '?', or NULL */
    /* header value by case-insensitive name, or NULL */
    const char *(*header)(void *ctx, const char *name);
    void *hctx;
    const char *body;
    size_t body_len;
};

enum auth_fail {
    AUTH_OK,
    AUTH_INCOMPLETE,    /* IncompleteSignatureException */
    AUTH_BAD_SIGNATURE, /* InvalidSignatureException (also a bad scope, an expired signature) */
    AUTH_UNKNOWN_KEY,   /* UnrecognizedClientException */
};

/* The outcome of auth_verify. */
struct auth_verdict {
    enum auth_fail fail;
    const char *msg;              /* arena: the error message when fail != AUTH_OK */
    const char *region;           /* arena: the credential scope's region */
    const struct auth_cred *cred; /* AUTH_OK: borrowed from the snapshot given to auth_verify */
};

/* A parsed signature: from the Authorization header or the X-Amz-* query parameters. All
 * strings arena. */
struct auth_sig {
    bool presigned;
    const char *akid, *scope_date, *region, *service, *terminator;
    const char *signed_headers; /* "host;x-amz-date" */
    const char *signature;      /* hex */
    const char *amz_date;       /* ISO 8601 basic: 20150830T123600Z */
    bool date_from_date_header; /* the time came from the Date header */
    int64_t expires;            /* presigned: X-Amz-Expires seconds */
};

/* Load path into a new auth. default_account is used for sections without aws_account_id.
 * Returns 0, or -1 after printing why to stderr. *out owned by the caller until auth_close. */
int auth_open(const char *path, const char *default_account, struct auth **out);

/* Reload the file; on error the previous credentials stay (and why is printed). 0 or -1. */
int auth_reload(struct auth *a);

/* Free the auth (no request may hold a snapshot). NULL is allowed. */
void auth_close(struct auth *a);

/* The current snapshot, held until auth_release. Thread-safe. */
struct auth_snap *auth_acquire(struct auth *a);
void auth_release(struct auth_snap *s);

/* One more hold on s (held by the caller), released by its own auth_release: for what outlives
 * the request that verified a caller (a subscription keeps its caller's credentials). */
void auth_hold(struct auth_snap *s);

/* Verify r's SigV4 signature at time now_ms for service ("kinesis", "kms"). The caller has
 * checked that the parameters SigV4 needs are present (IncompleteSignatureException answers).
 * Fills *v; returns v->fail. Messages and strings go into ar. */
enum auth_fail auth_verify(struct auth_snap *s, struct arena *ar, const struct auth_http *r,
                           const char *service, int64_t now_ms, struct auth_verdict *v);

/* ---- the pieces, for tests ---- */

/* Parse r's signature into *sig. Returns AUTH_OK, or a failure with *msg (arena) set. */
enum auth_fail auth_parse(struct arena *ar, const struct auth_http *r, struct auth_sig *sig,
                          const char **msg);

/* The canonical request and the string to sign of r under sig (arena). normalize: remove dot
 * segments and repeated slashes from the path (every service but S3). */
void auth_canonical(struct arena *ar, const struct auth_http *r, const struct auth_sig *sig, bool normalize,
                    const char **creq, const char **sts);

/* The hex signature (65 bytes with the NUL) of sts under secret for sig's scope. Signing keys
 * are cached per thread by (key, day, region, service). */
void auth_sign(const char *akid, const char *secret, const struct auth_sig *sig, const char *sts,
               char out[65]);

/* The number of signing keys derived so far (for tests of the cache). */
uint64_t auth_keys_derived(void);

#endif
