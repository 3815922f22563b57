/* policy.c: IAM policy documents: parse with jansson into a compiled form, evaluate.
 *
 * Model: a policy is an immutable array of statements, each with its string lists copied out
 * of the document, so evaluation is a walk over a few short arrays with wildcard matching and
 * no allocation. Evaluation follows AWS's logic within one policy: a matching Deny statement
 * wins over any Allow; without a match the policy says nothing (POLICY_NONE). A condition on a
 * key the request does not carry fails (unless the operator is an ...IfExists one). */
#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

#define MAX_POLICY_BYTES 20480
#define MAX_STATEMENTS 256
#define MAX_STRINGS 1024

struct strs {
    size_t n;
    char **v;
};

enum cond_op {
    C_STR_EQ,
    C_STR_NE,
    C_STR_LIKE,
    C_STR_NOT_LIKE,
    C_ARN_EQ,
    C_ARN_LIKE,
    C_ARN_NE,
    C_ARN_NOT_LIKE,
    C_BOOL,
    C_IP,
    C_NOT_IP,
};

struct cond {
    enum cond_op op;
    bool if_exists;
    char *key; /* lower case */
    struct strs values;
};

struct stmt {
    bool deny;
    bool not_action, not_resource, not_principal, has_principal;
    struct strs actions, resources, principals;
    size_t nconds;
    struct cond *conds;
};

struct policy {
    size_t n;
    struct stmt *s;
};

static void strs_free(struct strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

void policy_free(struct policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        struct stmt *st = &p->s[i];
        strs_free(&st->actions);
        strs_free(&st->resources);
        strs_free(&st->principals);
        for (size_t k = 0; k < st->nconds; k++) {
            free(st->conds[k].key);
            strs_free(&st->conds[k].values);
        }
        free(st->conds);
    }
    free(p->s);
    free(p);
}

static int fail(char *why, size_t n, const char *msg)
{
    snprintf(why, n, "%s", msg);
    return -1;
}

static char *dup_s(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p)
        abort();
    memcpy(p, s, n);
    return p;
}

static void strs_add(struct strs *s, const char *v)
{
    char **nv = realloc(s->v, (s->n + 1) * sizeof *nv);
    if (!nv)
        abort();
    s->v = nv;
    s->v[s->n++] = dup_s(v);
}

/* A string or a list of strings (booleans too, for Bool conditions) into out. */
static int strings(json_t *v, struct strs *out, const char *what, char *why, size_t whylen)
{
    json_t *one;
    size_t i;
    if (json_is_string(v)) {
        strs_add(out, json_string_value(v));
        return 0;
    }
    if (json_is_boolean(v)) {
        strs_add(out, json_is_true(v) ? "true" : "false");
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > MAX_STRINGS) {
        snprintf(why, whylen, "%s must be a string or a non-empty list of strings.", what);
        return -1;
    }
    json_array_foreach(v, i, one)
    {
        if (json_is_string(one))
            strs_add(out, json_string_value(one));
        else if (json_is_boolean(one))
            strs_add(out, json_is_true(one) ? "true" : "false");
        else {
            snprintf(why, whylen, "%s must be a string or a non-empty list of strings.", what);
            return -1;
        }
    }
    return 0;
}

static const struct {
    const char *name;
    enum cond_op op;
} cond_ops[] = {
    {"StringEquals", C_STR_EQ}, {"StringNotEquals", C_STR_NE},
    {"StringLike", C_STR_LIKE}, {"StringNotLike", C_STR_NOT_LIKE},
    {"ArnEquals", C_ARN_EQ},    {"ArnLike", C_ARN_LIKE},
    {"ArnNotEquals", C_ARN_NE}, {"ArnNotLike", C_ARN_NOT_LIKE},
    {"Bool", C_BOOL},           {"IpAddress", C_IP},
    {"NotIpAddress", C_NOT_IP},
};

static int conditions(json_t *c, struct stmt *st, char *why, size_t whylen)
{
    if (!json_is_object(c))
        return fail(why, whylen, "Condition must be an object.");
    const char *opname;
    json_t *block;
    json_object_foreach(c, opname, block)
    {
        size_t ol = strlen(opname);
        bool if_exists = ol > 8 && !strcmp(opname + ol - 8, "IfExists");
        size_t base = if_exists ? ol - 8 : ol;
        int op = -1;
        for (size_t i = 0; i < sizeof cond_ops / sizeof cond_ops[0]; i++)
            if (strlen(cond_ops[i].name) == base && !strncmp(cond_ops[i].name, opname, base))
                op = (int)cond_ops[i].op;
        if (op < 0) {
            snprintf(why, whylen, "Condition operator %s is not supported.", opname);
            return -1;
        }
        if (!json_is_object(block) || json_object_size(block) == 0) {
            snprintf(why, whylen, "Condition %s must map keys to values.", opname);
            return -1;
        }
        const char *key;
        json_t *vals;
        json_object_foreach(block, key, vals)
        {
            if (st->nconds >= MAX_STRINGS)
                return fail(why, whylen, "Too many conditions.");
            struct cond *nc = realloc(st->conds, (st->nconds + 1) * sizeof *nc);
            if (!nc)
                abort();
            st->conds = nc;
            struct cond *cd = &st->conds[st->nconds++];
            memset(cd, 0, sizeof *cd);
            cd->op = (enum cond_op)op;
            cd->if_exists = if_exists;
            cd->key = dup_s(key);
            for (char *p = cd->key; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            if (strings(vals, &cd->values, "A condition's value", why, whylen))
                return -1;
        }
    }
    return 0;
}

static int statement(json_t *s, unsigned flags, struct stmt *st, char *why, size_t whylen)
{
    bool resource = flags & POLICY_PARSE_RESOURCE;
    if (!json_is_object(s))
        return fail(why, whylen, "Each Statement must be an object.");
    json_t *effect = json_object_get(s, "Effect");
    if (!json_is_string(effect) ||
        (strcmp(json_string_value(effect), "Allow") && strcmp(json_string_value(effect), "Deny")))
        return fail(why, whylen, "Each Statement needs an Effect of Allow or Deny.");
    st->deny = !strcmp(json_string_value(effect), "Deny");
    json_t *a = json_object_get(s, "Action"), *na = json_object_get(s, "NotAction");
    if (!!a == !!na)
        return fail(why, whylen, "Each Statement needs exactly one of Action and NotAction.");
    st->not_action = na != NULL;
    if (strings(a ? a : na, &st->actions, a ? "Action" : "NotAction", why, whylen))
        return -1;
    json_t *r = json_object_get(s, "Resource"), *nr = json_object_get(s, "NotResource");
    if (r && nr)
        return fail(why, whylen, "A Statement cannot have both Resource and NotResource.");
    if (!r && !nr && !resource)
        return fail(why, whylen, "Each Statement of an identity policy needs Resource or NotResource.");
    st->not_resource = nr != NULL;
    if ((r || nr) && strings(r ? r : nr, &st->resources, r ? "Resource" : "NotResource", why, whylen))
        return -1;
    if (!r && !nr)
        strs_add(&st->resources, "*"); /* a resource policy's statement applies to its resource */
    json_t *p = json_object_get(s, "Principal"), *np = json_object_get(s, "NotPrincipal");
    if (p && np)
        return fail(why, whylen, "A Statement cannot have both Principal and NotPrincipal.");
    if (resource && !p && !np)
        return fail(why, whylen, "Each Statement of a resource policy needs a Principal.");
    if (!resource && (p || np))
        return fail(why, whylen, "An identity policy cannot name a Principal.");
    if (p || np) {
        json_t *pv = p ? p : np;
        st->has_principal = true;
        st->not_principal = np != NULL;
        if (json_is_string(pv)) {
            if (strcmp(json_string_value(pv), "*"))
                return fail(why, whylen, "A Principal is \"*\" or an object such as {\"AWS\": ...}.");
            strs_add(&st->principals, "*");
        } else if (json_is_object(pv) && (flags & POLICY_PARSE_SERVICE_PRINCIPALS)) {
            /* service, federated and canonical-user principals are kept out: no caller of
             * this server is one, so they never match */
            const char *kind;
            json_t *kv;
            struct strs others = {0};
            json_object_foreach(pv, kind, kv)
            {
                bool aws = !strcmp(kind, "AWS");
                if (!aws && strcmp(kind, "Service") && strcmp(kind, "Federated") &&
                    strcmp(kind, "CanonicalUser"))
                    return fail(why, whylen,
                                "A Principal names AWS, Service, Federated or CanonicalUser principals.");
                int rc = strings(kv, aws ? &st->principals : &others, "A Principal's value", why, whylen);
                strs_free(&others);
                others = (struct strs){0};
                if (rc)
                    return -1;
            }
            if (!json_object_size(pv))
                return fail(why, whylen,
                            "A Principal names AWS, Service, Federated or CanonicalUser principals.");
        } else if (json_is_object(pv)) {
            json_t *aws = json_object_get(pv, "AWS");
            if (!aws || json_object_size(pv) != 1)
                return fail(why, whylen, "Only AWS principals are supported.");
            if (strings(aws, &st->principals, "Principal AWS", why, whylen))
                return -1;
        } else {
            return fail(why, whylen, "A Principal is \"*\" or an object such as {\"AWS\": ...}.");
        }
    }
    json_t *c = json_object_get(s, "Condition");
    if (c && conditions(c, st, why, whylen))
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
    {
        static const char *const known[] = {"Sid",       "Effect",       "Action",
                                            "NotAction", "Resource",     "NotResource",
                                            "Principal", "NotPrincipal", "Condition"};
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= !strcmp(k, known[i]);
        if (!ok) {
            snprintf(why, whylen, "Statement has an unknown element %s.", k);
            return -1;
        }
    }
    return 0;
}

struct policy *policy_parse(const char *text, size_t len, bool resource, char *why, size_t whylen)
{
    return policy_parse_opts(text, len, resource ? POLICY_PARSE_RESOURCE : 0, why, whylen);
}

struct policy *policy_parse_opts(const char *text, size_t len, unsigned flags, char *why, size_t whylen)
{
    if (len > MAX_POLICY_BYTES) {
        snprintf(why, whylen, "A policy document is at most %d bytes; this one has %zu.", MAX_POLICY_BYTES,
                 len);
        return NULL;
    }
    json_error_t err;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        snprintf(why, whylen, "The policy is not valid JSON: %s (line %d, column %d).", err.text, err.line,
                 err.column);
        return NULL;
    }
    struct policy *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    json_t *ver = json_object_get(doc, "Version"), *sts = json_object_get(doc, "Statement");
    if (!json_is_object(doc)) {
        fail(why, whylen, "A policy document is a JSON object.");
        goto bad;
    }
    if (ver && (!json_is_string(ver) || (strcmp(json_string_value(ver), "2012-10-17") &&
                                         strcmp(json_string_value(ver), "2008-10-17")))) {
        fail(why, whylen, "The policy's Version must be 2012-10-17 or 2008-10-17.");
        goto bad;
    }
    if (!sts || (!json_is_object(sts) && !json_is_array(sts)) ||
        (json_is_array(sts) && !json_array_size(sts))) {
        fail(why, whylen, "The policy needs a Statement: an object or a non-empty list of them.");
        goto bad;
    }
    size_t n = json_is_array(sts) ? json_array_size(sts) : 1;
    if (n > MAX_STATEMENTS) {
        fail(why, whylen, "The policy has too many statements.");
        goto bad;
    }
    p->s = calloc(n, sizeof *p->s);
    if (!p->s)
        abort();
    for (size_t i = 0; i < n; i++) {
        p->n = i + 1;
        if (statement(json_is_array(sts) ? json_array_get(sts, i) : sts, flags, &p->s[i], why, whylen))
            goto bad;
    }
    json_decref(doc);
    return p;
bad:
    json_decref(doc);
    policy_free(p);
    return NULL;
}

/* ---- evaluation ---- */

bool policy_match(const char *pat, const char *s, bool nocase)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        char a = *pat, b = *s;
        if (nocase) {
            a = (char)tolower((unsigned char)a);
            b = (char)tolower((unsigned char)b);
        }
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat && (*pat == '?' || a == b)) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return !*pat;
}

static bool any_match(const struct strs *pats, const char *s, bool nocase)
{
    for (size_t i = 0; i < pats->n; i++)
        if (policy_match(pats->v[i], s, nocase))
            return true;
    return false;
}

/* How st's principals name the caller: POLICY_GRANT_PRINCIPAL (its ARN, or "*"),
 * POLICY_GRANT_ACCOUNT (its account), or POLICY_GRANT_NONE. */
static enum policy_grant principal_kind(const struct stmt *st, const struct policy_request *r)
{
    enum policy_grant g = POLICY_GRANT_NONE;
    for (size_t i = 0; i < st->principals.n; i++) {
        const char *p = st->principals.v[i];
        if (!strcmp(p, "*"))
            return POLICY_GRANT_PRINCIPAL;
        if (r->principal_acct && strlen(p) == 12 && !strcmp(p, r->principal_acct))
            g = POLICY_GRANT_ACCOUNT;
        if (r->principal_acct && !strncmp(p, "arn:aws:iam::", 13) &&
            !strncmp(p + 13, r->principal_acct, 12) && !strcmp(p + 25, ":root"))
            g = POLICY_GRANT_ACCOUNT;
        if (r->principal_arn && policy_match(p, r->principal_arn, false))
            return POLICY_GRANT_PRINCIPAL;
    }
    return g;
}

static const char *context_value(const struct policy_request *r, const char *key, char *buf)
{
    if (!strcmp(key, "aws:sourceip"))
        return r->source_ip;
    if (!strcmp(key, "aws:principalarn"))
        return r->principal_arn;
    if (!strcmp(key, "aws:principalaccount"))
        return r->principal_acct;
    if (!strcmp(key, "aws:requestedregion"))
        return r->region;
    if (!strcmp(key, "aws:username"))
        return r->username;
    if (!strcmp(key, "kms:calleraccount"))
        return r->principal_acct;
    if (!strcmp(key, "kms:viaservice"))
        return r->via_service;
    if (!strcmp(key, "aws:securetransport")) {
        snprintf(buf, 8, "%s", r->secure_transport ? "true" : "false");
        return buf;
    }
    return NULL;
}

static bool ip_in(const char *cidr, const char *ip)
{
    char net[64];
    snprintf(net, sizeof net, "%s", cidr);
    char *slash = strchr(net, '/');
    int bits = -1;
    if (slash) {
        *slash = 0;
        bits = (int)strtol(slash + 1, NULL, 10);
    }
    unsigned char a[16], b[16];
    int fam = strchr(net, ':') ? AF_INET6 : AF_INET;
    size_t len = fam == AF_INET6 ? 16 : 4;
    if (inet_pton(fam, net, a) != 1 || inet_pton(fam, ip, b) != 1)
        return false;
    if (bits < 0 || bits > (int)len * 8)
        bits = (int)len * 8;
    for (int i = 0; i < bits; i++)
        if (((a[i / 8] ^ b[i / 8]) >> (7 - i % 8)) & 1)
            return false;
    return true;
}

static bool cond_holds(const struct cond *cd, const struct policy_request *r)
{
    char buf[8];
    const char *v = context_value(r, cd->key, buf);
    if (!v)
        return cd->if_exists;
    bool any = false;
    for (size_t i = 0; i < cd->values.n && !any; i++) {
        const char *want = cd->values.v[i];
        switch (cd->op) {
        case C_STR_EQ:
        case C_STR_NE:
        case C_ARN_EQ:
        case C_ARN_NE: any = !strcmp(want, v); break;
        case C_STR_LIKE:
        case C_STR_NOT_LIKE:
        case C_ARN_LIKE:
        case C_ARN_NOT_LIKE: any = policy_match(want, v, false); break;
        case C_BOOL: any = !strcasecmp(want, v); break;
        case C_IP:
        case C_NOT_IP: any = ip_in(want, v); break;
        }
    }
    bool negated = cd->op == C_STR_NE || cd->op == C_STR_NOT_LIKE || cd->op == C_ARN_NE ||
                   cd->op == C_ARN_NOT_LIKE || cd->op == C_NOT_IP;
    return negated ? !any : any;
}

/* Whether st applies to r: POLICY_GRANT_NONE if not, else how it names the caller (an identity
 * policy's statements, and NotPrincipal ones, name it directly). */
static enum policy_grant stmt_applies(const struct stmt *st, const struct policy_request *r)
{
    if (any_match(&st->actions, r->action, true) == st->not_action)
        return POLICY_GRANT_NONE;
    if (any_match(&st->resources, r->resource, false) == st->not_resource)
        return POLICY_GRANT_NONE;
    enum policy_grant g = POLICY_GRANT_PRINCIPAL;
    if (st->has_principal) {
        enum policy_grant k = principal_kind(st, r);
        if ((k != POLICY_GRANT_NONE) == st->not_principal)
            return POLICY_GRANT_NONE;
        g = st->not_principal ? POLICY_GRANT_PRINCIPAL : k;
    }
    for (size_t i = 0; i < st->nconds; i++)
        if (!cond_holds(&st->conds[i], r))
            return POLICY_GRANT_NONE;
    return g;
}

enum policy_verdict policy_eval_grant(const struct policy *p, const struct policy_request *r,
                                      enum policy_grant *grant)
{
    enum policy_verdict v = POLICY_NONE;
    enum policy_grant best = POLICY_GRANT_NONE;
    for (size_t i = 0; p && i < p->n; i++) {
        enum policy_grant g = stmt_applies(&p->s[i], r);
        if (g == POLICY_GRANT_NONE)
            continue;
        if (p->s[i].deny) {
            v = POLICY_DENY;
            best = POLICY_GRANT_NONE;
            break;
        }
        v = POLICY_ALLOW;
        if (g > best)
            best = g;
    }
    if (grant)
        *grant = best;
    return v;
}

enum policy_verdict policy_eval(const struct policy *p, const struct policy_request *r)
{
    return policy_eval_grant(p, r, NULL);
}
