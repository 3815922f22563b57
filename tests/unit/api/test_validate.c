/* Unit tests of the validation engine and the JSON and CBOR decoders: AWS's exact messages. */
#include "check.h"
#include "enc.h"
#include "validate.h"
#include "value.h"

static const char *const kinds[] = {"A", "B", NULL};
static const struct vfield entry_fields[] = {
    {"PartitionKey", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(256)}, 0, 0, 0},
    {"Data", VT_BLOB, {NOT_NULL, LEN_LE(4)}, 0, 0, 0},
    {0},
};
static const struct vfield entry = {"member", VT_STRUCT, {{0}}, entry_fields, 0, 0};
static const struct vfield schema[] = {
    {"Count", VT_INTEGER, {NOT_NULL, GE(1), LE(100)}, 0, 0, 0},
    {"StreamName",
     VT_STRING,
     {NOT_NULL_UNLESS("StreamARN"), REGEX(vre_name), LEN_GE(1), LEN_LE(128)},
     0,
     0,
     0},
    {"Kind", VT_STRING, {ENUM(kinds)}, 0, 0, 0},
    {"Records", VT_LIST, {LEN_LE(2)}, 0, &entry, "Entry@1"},
    F_STREAM_ARN,
    {0},
};

static const char *run(const char *json, int *kind)
{
    static struct arena a;
    arena_free(&a);
    struct kv *req;
    if (json_parse(&a, json, strlen(json), &req))
        return "PARSE";
    const char *msg = NULL;
    *kind = -1;
    if (validate_request(&a, req, schema, 1048576, kind, &msg) == 0)
        return "OK";
    return msg;
}

static void missing_members_are_reported_in_schema_order(void)
{
    int k;
    CHECK_STR(run("{}", &k), "2 validation errors detected: Value null at 'count' failed to satisfy "
                             "constraint: Member must not be null; Value null at 'streamName' failed to "
                             "satisfy constraint: Member must not be null");
    CHECK(k == 1);
    CHECK_STR(run("{\"Count\":1,\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/x\"}", &k),
              "OK");
}

static void constraints_render_values_like_aws(void)
{
    int k;
    CHECK_STR(run("{\"Count\":0,\"StreamName\":\"a b\"}", &k),
              "2 validation errors detected: Value '0' at 'count' failed to satisfy constraint: Member "
              "must have value greater than or equal to 1; Value 'a b' at 'streamName' failed to satisfy "
              "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
    CHECK_STR(run("{\"Count\":1.9,\"StreamName\":\"s\",\"Kind\":\"C\"}", &k),
              "1 validation error detected: Value 'C' at 'kind' failed to satisfy constraint: Member must "
              "satisfy enum value set: [A, B]");
    CHECK_STR(run("{\"Count\":5000000000,\"StreamName\":\"s\"}", &k),
              "1 validation error detected: Value '2147483647' at 'count' failed to satisfy constraint: "
              "Member must have value less than or equal to 100");
}

static void nested_members_have_dotted_paths(void)
{
    int k;
    CHECK_STR(run("{\"Count\":1,\"StreamName\":\"s\",\"Records\":[{\"PartitionKey\":\"\",\"Data\":"
                  "\"AAAAAAAA\"},null,{}]}",
                  &k),
              "7 validation errors detected: Value '[Entry@1, Entry@1, Entry@1]' at 'records' failed to "
              "satisfy constraint: Member must have length less than or equal to 2; Value '' at "
              "'records.1.member.partitionKey' failed to satisfy constraint: Member must have length "
              "greater than or equal to 1; Value 'java.nio.HeapByteBuffer[pos=0 lim=6 cap=6]' at "
              "'records.1.member.data' failed to satisfy constraint: Member must have length less than "
              "or equal to 4; Value null at 'records.2.member.partitionKey' failed to satisfy "
              "constraint: Member must not be null; Value null at 'records.2.member.data' failed to "
              "satisfy constraint: Member must not be null; Value null at 'records.3.member.partitionKey' "
              "failed to satisfy constraint: Member must not be null; Value null at "
              "'records.3.member.data' failed to satisfy constraint: Member must not be null");
}

static void wrong_types_are_serialization_errors(void)
{
    int k;
    CHECK_STR(run("{\"Count\":\"1\"}", &k), "class java.lang.String can not be converted to an Integer");
    CHECK(k == 0);
    CHECK_STR(run("{\"Count\":true}", &k), "class java.lang.Boolean can not be converted to an Integer");
    CHECK_STR(
        run("{\"StreamName\":5}", &k),
        "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String");
    CHECK_STR(run("{\"StreamName\":[]}", &k), "Start of list found where not expected");
    CHECK_STR(run("{\"StreamName\":{}}", &k), "Start of structure or map found where not expected.");
    CHECK_STR(run("{\"Records\":5}", &k), "Expected list or null");
    CHECK_STR(run("{\"Records\":[5]}", &k), "Expected null");
}

static void blobs_must_be_canonical_base64(void)
{
    int k;
    CHECK_STR(run("{\"Records\":[{\"Data\":\"abc\"}]}", &k),
              "'abc' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 "
              "bytes but found: 3");
    CHECK_STR(run("{\"Records\":[{\"Data\":\"ab*=\"}]}", &k),
              "'ab*=' can not be converted to a Blob: Invalid Base64 character: '*'");
    CHECK_STR(run("{\"Records\":[{\"Data\":\"+/+=\"}]}", &k),
              "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected");
}

/* Every length (both sides of the 16-character blocks the decoder takes at once), and a bad
 * character at every place, and a '=' where a character follows: the bytes come back, and the
 * error names the character. */
static void base64_decodes_any_length_and_finds_a_bad_character_anywhere(void)
{
    static struct arena a;
    unsigned char d[120];
    int decoded = 0, found = 0, tried = 0;
    for (size_t n = 0; n <= sizeof d; n++) {
        for (size_t i = 0; i < n; i++)
            d[i] = (unsigned char)(i * 131 + n * 7 + 3);
        struct buf b = BUF_INIT;
        enc_base64(&b, d, n);
        char *out, bad = 0;
        size_t outlen;
        const char *why = NULL;
        decoded += base64_decode(&a, b.p, b.len, &out, &outlen, &why, &bad) == 0 && outlen == n &&
                   !memcmp(out, d, n);
        size_t body = b.len - (n % 3 ? 3 - n % 3 : 0); /* the characters before any padding */
        for (size_t at = 0; at < body; at++) {
            char was = b.p[at];
            const char subst[2] = {'*', '='};
            for (int k = 0; k < (at + 1 < body ? 2 : 1); k++) { /* a '=' before padding may be padding */
                b.p[at] = subst[k];
                tried++;
                found += base64_decode(&a, b.p, b.len, &out, &outlen, &why, &bad) == -1 &&
                         !strcmp(why, "char") && bad == subst[k];
            }
            b.p[at] = was;
        }
        buf_free(&b);
        arena_free(&a);
    }
    CHECK(decoded == (int)sizeof d + 1);
    CHECK(found == tried);
}

static void json_rejects_malformed_text(void)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    const char *bad[] = {"", "{", "{\"a\":}", "[1,]", "{\"a\":1}x", "\"\\x\"", "01", "1.", "nul"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(json_parse(&a, bad[i], strlen(bad[i]), &v) == -1);
    char deep[200];
    memset(deep, '[', sizeof deep);
    CHECK(json_parse(&a, deep, sizeof deep, &v) == -1);
    const char *esc = "{\"k\":\"a\\u00e9\\ud83d\\ude00\"}";
    CHECK(json_parse(&a, esc, strlen(esc), &v) == 0 &&
          !strcmp(kv_get(v, "k")->s, "a\xc3\xa9\xf0\x9f\x98\x80"));
    arena_free(&a);
}

static void cbor_decodes_into_the_same_tree(void)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    /* {"A": h'0102', "B": [1, -2, true], "C": "x"} with an indefinite map */
    const char in[] = "\xbf\x61"
                      "A"
                      "\x42\x01\x02"
                      "\x61"
                      "B"
                      "\x83\x01\x21\xf5"
                      "\x61"
                      "C"
                      "\x61"
                      "x"
                      "\xff";
    CHECK(cbor_parse(&a, in, sizeof in - 1, &v) == 0);
    CHECK(kv_get(v, "A")->type == KV_BLOB && kv_get(v, "A")->len == 2);
    CHECK(kv_get(v, "B")->n == 3 && kv_get(v, "B")->child->next->i == -2);
    CHECK_STR(kv_get(v, "C")->s, "x");
    /* a length past the end of the body */
    CHECK(cbor_parse(&a, "\x5a\xff\xff\xff\xff", 5, &v) == -1);
    CHECK(cbor_parse(&a, "\x9f\x01", 2, &v) == -1);
    arena_free(&a);
}

CHECK_RUN("validate", T(missing_members_are_reported_in_schema_order), T(constraints_render_values_like_aws),
          T(nested_members_have_dotted_paths), T(wrong_types_are_serialization_errors),
          T(blobs_must_be_canonical_base64), T(base64_decodes_any_length_and_finds_a_bad_character_anywhere),
          T(json_rejects_malformed_text), T(cbor_decodes_into_the_same_tree))
