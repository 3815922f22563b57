/* policy.h: IAM policy documents, parsed once and evaluated per request.
 *
 * A document (Version, Statement: one object or a list of them) is parsed with jansson into a
 * compiled form: per statement the effect, Action / NotAction patterns (case-insensitive, '*'
 * and '?' wildcards, "kinesis:Get*"), Resource / NotResource ARN patterns (case-sensitive
 * wildcards), Principal / NotPrincipal (resource policies: "*", account ids, IAM ARNs), and
 * Condition blocks with the operators StringEquals, StringNotEquals, StringLike,
 * StringNotLike, ArnEquals, ArnLike, ArnNotEquals, ArnNotLike, Bool, IpAddress, NotIpAddress
 * (each also ...IfExists). Evaluation walks the statements without allocating. */
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
    bool secure_transport;      /* aws:SecureTransport */
};

enum policy_verdict { POLICY_NONE, POLICY_ALLOW, POLICY_DENY };

/* Parse a policy document of len bytes. resource: a resource policy (every statement needs a
 * Principal or NotPrincipal); else an identity policy (none may have one). Returns the
 * compiled policy (owned by the caller; policy_free), or NULL with why (a sentence) in
 * why[whylen]. */
struct policy *policy_parse(const char *text, size_t len, bool resource, char *why, size_t whylen);

void policy_free(struct policy *p);

/* The verdict of p for r: POLICY_DENY when a matching statement denies, else POLICY_ALLOW
 * when one allows, else POLICY_NONE. NULL p is POLICY_NONE. */
enum policy_verdict policy_eval(const struct policy *p, const struct policy_request *r);

/* Whole-string wildcard match ('*' any run, '?' one character). */
bool policy_match(const char *pattern, const char *s, bool nocase);

#endif
