/* policy.h: IAM policy documents, parsed once and evaluated per request.
 *
 * A document (Version, Statement: one object or a list of them) is parsed with jansson into a
 * compiled form: per statement the effect, Action / NotAction patterns (case-insensitive, '*'
 * and '?' wildcards, "kinesis:Get*"), Resource / NotResource ARN patterns (case-sensitive
 * wildcards), Principal / NotPrincipal (resource policies: "*", account ids, IAM ARNs), and
 * Condition blocks with the operators StringEquals, StringNotEquals, StringLike,
 * StringNotLike, ArnEquals, ArnLike, ArnNotEquals, ArnNotLike, Bool, IpAddress, NotIpAddress
 * (each also ...IfExists); the context keys aws:SourceIp, aws:PrincipalArn, aws:PrincipalAccount,
 * aws:RequestedRegion, aws:username, aws:SecureTransport, and for KMS key policies
 * kms:CallerAccount and kms:ViaService. Evaluation walks the statements without allocating. */
#ifndef KINESD_POLICY_H
#define KINESD_POLICY_H

#include <stdbool.h>
#include <stddef.h>

struct policy;

/* Context keys a condition may test; NULL when the request has none. */
struct policy_request {
    const char *action;         /* "kinesis:PutRecord" */
    const char *resource;       /* the resource's ARN, or "*" */
    const char *principal_arn;  /* arn:aws:iam::<account>:user/<name> */
    const char *principal_acct; /* 12 digits */
    const char *source_ip;      /* aws:SourceIp, or NULL when unknown */
    const char *region;         /* aws:RequestedRegion */
    const char *username;       /* aws:username */
    const char *via_service;    /* kms:ViaService ("kinesis.<region>.amazonaws.com"), or NULL */
    bool secure_transport;      /* aws:SecureTransport */
};

enum policy_verdict { POLICY_NONE, POLICY_ALLOW, POLICY_DENY };

/* How a resource policy's allowing statement names the caller: not at all, by its account (an
 * account id or arn:aws:iam::<account>:root, which delegates the decision to that account's
 * identity policies), or itself (its ARN, a pattern matching it, or "*"). Ordered. */
enum policy_grant { POLICY_GRANT_NONE, POLICY_GRANT_ACCOUNT, POLICY_GRANT_PRINCIPAL };

/* policy_parse_opts flags */
#define POLICY_PARSE_RESOURCE 1u /* a resource policy (policy_parse's resource) */
#define POLICY_PARSE_SERVICE_PRINCIPALS                   \
    2u /* a Principal may also name Service, Federated or \
        * CanonicalUser principals (a KMS key policy's);  \
        * they never match a caller */

/* Parse a policy document of len bytes. resource: a resource policy (every statement needs a
 * Principal or NotPrincipal); else an identity policy (none may have one). Returns the
 * compiled policy (owned by the caller; policy_free), or NULL with why (a sentence) in
 * why[whylen]. */
struct policy *policy_parse(const char *text, size_t len, bool resource, char *why, size_t whylen);

/* policy_parse with POLICY_PARSE_* flags. */
struct policy *policy_parse_opts(const char *text, size_t len, unsigned flags, char *why, size_t whylen);

void policy_free(struct policy *p);

/* The verdict of p for r: POLICY_DENY when a matching statement denies, else POLICY_ALLOW
 * when one allows, else POLICY_NONE. NULL p is POLICY_NONE. */
enum policy_verdict policy_eval(const struct policy *p, const struct policy_request *r);

/* As policy_eval; when grant is not NULL it gets, for POLICY_ALLOW, the strongest way an
 * allowing statement named the caller (else POLICY_GRANT_NONE). */
enum policy_verdict policy_eval_grant(const struct policy *p, const struct policy_request *r,
                                      enum policy_grant *grant);

/* Whole-string wildcard match ('*' any run, '?' one character). */
bool policy_match(const char *pattern, const char *s, bool nocase);

#endif
