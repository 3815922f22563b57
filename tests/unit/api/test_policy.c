/* test_policy.c: IAM policy documents (api/policy.c): parsing and its refusals, wildcard
 * matching, and evaluation as AWS documents it within one policy (a matching Deny wins, then
 * a matching Allow, else no verdict), including NotAction, NotResource, Principal and the
 * condition operators. */
#include <string.h>

#include "check.h"
#include "policy.h"

static struct policy *parse(const char *text, bool resource)
{
    char why[256];
    struct policy *p = policy_parse(text, strlen(text), resource, why, sizeof why);
    if (!p)
        fprintf(stderr, "parse: %s\n", why);
    return p;
}

static struct policy_request req(const char *action, const char *resource)
{
    return (struct policy_request){.action = action,
                                   .resource = resource,
                                   .principal_arn = "arn:aws:iam::111122223333:user/bob",
                                   .principal_acct = "111122223333",
                                   .region = "us-east-1",
                                   .username = "bob"};
}

#define S1 "arn:aws:kinesis:us-east-1:000000000000:stream/s1"

static void test_match(void)
{
    CHECK(policy_match("kinesis:Get*", "kinesis:GetRecords", false));
    CHECK(policy_match("kinesis:get*", "kinesis:GetRecords", true));
    CHECK(!policy_match("kinesis:get*", "kinesis:GetRecords", false));
    CHECK(policy_match("*", "", false));
    CHECK(policy_match("a?c", "abc", false));
    CHECK(!policy_match("a?c", "ac", false));
    CHECK(policy_match("arn:*:stream/s*1", S1, false));
    CHECK(!policy_match("arn:*:stream/s2", S1, false));
    CHECK(policy_match("*a*b*", "xxaxxbxx", false));
}

static void test_deny_wins_and_allow_needs_a_match(void)
{
    struct policy *p = parse("{\"Version\":\"2012-10-17\",\"Statement\":["
                             "{\"Effect\":\"Allow\",\"Action\":\"kinesis:*\",\"Resource\":\"*\"},"
                             "{\"Effect\":\"Deny\",\"Action\":[\"kinesis:Put*\"],\"Resource\":\"" S1 "\"}]}",
                             false);
    CHECK(p != NULL);
    struct policy_request r = req("kinesis:PutRecord", S1);
    CHECK(policy_eval(p, &r) == POLICY_DENY);
    r.resource = "arn:aws:kinesis:us-east-1:000000000000:stream/s2";
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    r.action = "sqs:SendMessage";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    CHECK(policy_eval(NULL, &r) == POLICY_NONE);
    policy_free(p);
}

static void test_not_action_and_not_resource(void)
{
    struct policy *p = parse("{\"Statement\":{\"Effect\":\"Allow\",\"NotAction\":\"kinesis:Delete*\","
                             "\"NotResource\":\"arn:*:stream/secret*\"}}",
                             false);
    CHECK(p != NULL);
    struct policy_request r = req("kinesis:DescribeStream", S1);
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    r.action = "kinesis:DeleteStream";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    r.action = "kinesis:DescribeStream";
    r.resource = "arn:aws:kinesis:us-east-1:000000000000:stream/secret-1";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    policy_free(p);
}

static void test_principals(void)
{
    struct policy *p =
        parse("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
              "[\"arn:aws:iam::111122223333:root\"]},\"Action\":\"kinesis:Get*\"},"
              "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"444455556666\"},\"Action\":\"*\"},"
              "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::777788889999:user/eve\"},"
              "\"Action\":\"*\"}]}",
              true);
    CHECK(p != NULL);
    struct policy_request r = req("kinesis:GetRecords", S1);
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    r.action = "kinesis:PutRecord";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    r.principal_acct = "444455556666";
    r.principal_arn = "arn:aws:iam::444455556666:user/x";
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    r.principal_acct = "777788889999";
    r.principal_arn = "arn:aws:iam::777788889999:user/eve";
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    r.principal_arn = "arn:aws:iam::777788889999:user/mallory";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    policy_free(p);
}

static void test_conditions(void)
{
    struct policy *p =
        parse("{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\",\"Condition\":{"
              "\"StringEquals\":{\"aws:RequestedRegion\":[\"us-east-1\",\"eu-west-1\"]},"
              "\"StringLike\":{\"aws:username\":\"b*\"},"
              "\"ArnLike\":{\"aws:PrincipalArn\":\"arn:aws:iam::*:user/*\"},"
              "\"Bool\":{\"aws:SecureTransport\":false},"
              "\"IpAddressIfExists\":{\"aws:SourceIp\":\"10.0.0.0/8\"}}}]}",
              false);
    CHECK(p != NULL);
    struct policy_request r = req("kinesis:GetRecords", S1);
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    r.source_ip = "10.1.2.3";
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    r.source_ip = "192.168.0.1";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    r.source_ip = NULL;
    r.region = "ap-south-1";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    r.region = "eu-west-1";
    r.username = "alice";
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    r.username = "bob";
    r.secure_transport = true;
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    policy_free(p);
    /* a key the request does not carry fails the condition (without IfExists) */
    p = parse("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\","
              "\"Condition\":{\"IpAddress\":{\"aws:SourceIp\":\"0.0.0.0/0\"}}}}",
              false);
    r = req("kinesis:GetRecords", S1);
    CHECK(policy_eval(p, &r) == POLICY_NONE);
    r.source_ip = "127.0.0.1";
    CHECK(policy_eval(p, &r) == POLICY_ALLOW);
    policy_free(p);
}

static void test_refusals(void)
{
    static const char *const bad_identity[] = {
        "",
        "[]",
        "{}",
        "{\"Statement\":[]}",
        "{\"Version\":\"1999\",\"Statement\":{}}",
        "{\"Statement\":{\"Effect\":\"Maybe\",\"Action\":\"*\",\"Resource\":\"*\"}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Resource\":\"*\"}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"NotAction\":\"*\",\"Resource\":\"*\"}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\"}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\",\"Principal\":\"*\"}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":[1],\"Resource\":\"*\"}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\",\"Condition\":{\"Weird\":{}"
        "}}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\",\"Extra\":1}}",
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Action\":\"*\",\"Resource\":\"*\"}}",
    };
    for (size_t i = 0; i < sizeof bad_identity / sizeof bad_identity[0]; i++) {
        char why[256] = "";
        struct policy *p = policy_parse(bad_identity[i], strlen(bad_identity[i]), false, why, sizeof why);
        if (p)
            fprintf(stderr, "accepted: %s\n", bad_identity[i]);
        CHECK(p == NULL && why[0]);
        policy_free(p);
    }
    char why[256];
    const char *no_principal = "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\"}}";
    CHECK(policy_parse(no_principal, strlen(no_principal), true, why, sizeof why) == NULL);
    /* 20 KiB at most */
    static char big[20600];
    int n = snprintf(big, sizeof big, "{\"Statement\":{\"Sid\":\"");
    memset(big + n, 'x', 20500);
    snprintf(big + n + 20500, sizeof big - (size_t)n - 20500,
             "\",\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}");
    CHECK(policy_parse(big, strlen(big), false, why, sizeof why) == NULL);
    CHECK(strstr(why, "20480") != NULL);
}

/* A key policy's principals: the account's root delegates (POLICY_GRANT_ACCOUNT), a user's ARN
 * or "*" grants by itself; Service principals are allowed in with the flag and match no one;
 * kms:CallerAccount and kms:ViaService conditions. */
static void test_grants_of_a_key_policy(void)
{
    const char *text =
        "{\"Statement\":["
        "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::111122223333:root\"},\"Action\":\"kms:*"
        "\","
        "\"Resource\":\"*\"},"
        "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[\"arn:aws:iam::111122223333:user/bob\"],"
        "\"Service\":\"logs.amazonaws.com\"},\"Action\":\"kms:Decrypt\",\"Resource\":\"*\"},"
        "{\"Effect\":\"Allow\",\"Principal\":{\"Service\":[\"logs.amazonaws.com\"]},\"Action\":\"kms:"
        "Encrypt\","
        "\"Resource\":\"*\"},"
        "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"*\"},\"Action\":\"kms:GenerateDataKey\",\"Resource\":"
        "\"*\","
        "\"Condition\":{\"StringEquals\":{\"kms:CallerAccount\":\"111122223333\","
        "\"kms:ViaService\":\"kinesis.us-east-1.amazonaws.com\"}}}]}";
    char why[256];
    CHECK(policy_parse(text, strlen(text), true, why, sizeof why) == NULL); /* Service: not a stream's */
    struct policy *p = policy_parse_opts(
        text, strlen(text), POLICY_PARSE_RESOURCE | POLICY_PARSE_SERVICE_PRINCIPALS, why, sizeof why);
    CHECK(p != NULL);
    enum policy_grant g;
    struct policy_request r = req("kms:Encrypt", "arn:aws:kms:us-east-1:111122223333:key/k");
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_ALLOW && g == POLICY_GRANT_ACCOUNT);
    r.action = "kms:Decrypt";
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_ALLOW && g == POLICY_GRANT_PRINCIPAL);
    r.action = "kms:GenerateDataKey"; /* only the root's, until the call comes through Kinesis */
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_ALLOW && g == POLICY_GRANT_ACCOUNT);
    r.via_service = "kinesis.us-east-1.amazonaws.com";
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_ALLOW && g == POLICY_GRANT_PRINCIPAL);
    /* another account's user: nothing */
    r.principal_arn = "arn:aws:iam::444455556666:user/eve", r.principal_acct = "444455556666";
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_NONE && g == POLICY_GRANT_NONE);
    r.action = "kms:Encrypt"; /* the Service statement matches no caller */
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_NONE);
    policy_free(p);
    /* a Deny wins and grants nothing */
    const char *deny =
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"*\"},"
        "{\"Effect\":\"Deny\",\"Principal\":{\"AWS\":\"111122223333\"},\"Action\":\"kms:Decrypt\"}]}";
    p = policy_parse_opts(deny, strlen(deny), POLICY_PARSE_RESOURCE | POLICY_PARSE_SERVICE_PRINCIPALS, why,
                          sizeof why);
    CHECK(p != NULL);
    r = req("kms:Decrypt", "arn:aws:kms:us-east-1:111122223333:key/k");
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_DENY && g == POLICY_GRANT_NONE);
    r.action = "kms:Encrypt";
    CHECK(policy_eval_grant(p, &r, &g) == POLICY_ALLOW && g == POLICY_GRANT_PRINCIPAL);
    policy_free(p);
    const char *odd =
        "{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"Other\":\"x\"},\"Action\":\"*\"}}";
    CHECK(policy_parse_opts(odd, strlen(odd), POLICY_PARSE_RESOURCE | POLICY_PARSE_SERVICE_PRINCIPALS, why,
                            sizeof why) == NULL);
}

CHECK_RUN("api/policy", T(test_match), T(test_deny_wins_and_allow_needs_a_match),
          T(test_not_action_and_not_resource), T(test_principals), T(test_conditions), T(test_refusals),
          T(test_grants_of_a_key_policy))
