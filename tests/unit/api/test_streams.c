/* Unit tests of the stream registry (streams.c) on a real store in a temporary directory:
 * the older one-value format is read and rewritten as rows, and the bounds of log ids. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "internal.h"

static char dir[64];

static void fresh_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/kinesd-streams-XXXXXX");
    if (!mkdtemp(dir))
        abort();
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static struct api *open_api(void)
{
    struct api_config cfg = {.data_dir = dir,
                             .sync = false,
                             .shard_limit = 20000,
                             .region = "us-east-1",
                             .account = "000000000000",
                             .no_limits = true,
                             .scalings_per_day = 10};
    struct api *a = NULL;
    CHECK(api_open(&cfg, &a) == 0);
    return a;
}

/* One call; the answer's body (malloc'd) and status. */
static char *call(struct api *a, const char *op, const char *body, int *status)
{
    char target[96];
    snprintf(target, sizeof target, "Kinesis_20131202.%s", op);
    struct api_request req = {
        .content_type = "application/x-amz-json-1.1",
        .target = target,
        .authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, "
                         "SignedHeaders=content-type;host;x-amz-date, Signature=0123456789abcdef",
        .amz_date = "20150830T123600Z",
        .body = body,
        .body_len = strlen(body),
    };
    struct api_response resp = {0};
    api_handle(a, &req, &resp);
    *status = resp.status;
    char *text = malloc(resp.body_len + 1);
    if (!text)
        abort();
    memcpy(text, resp.body, resp.body_len);
    text[resp.body_len] = 0;
    free(resp.body);
    return text;
}

static void put_meta(const char *key, const char *val)
{
    struct store *s;
    struct store_config sc = {.dir = dir, .sync = false};
    CHECK(store_open(&sc, &s) == 0);
    CHECK(store_meta_put(s, key, val, strlen(val)) == 0);
    store_close(s);
}

static bool has_meta(const char *key)
{
    struct store *s;
    struct store_config sc = {.dir = dir, .sync = false};
    CHECK(store_open(&sc, &s) == 0);
    char *v = NULL;
    size_t len;
    bool found = store_meta_get(s, key, &v, &len, NULL) == 0;
    free(v);
    store_close(s);
    return found;
}

/* A stream written by an older kinesd: one JSON value with every shard and tag inline (times
 * are placed an hour ago, so the closed parent is still listed). */
static const char legacy_fmt[] =
    "{\"v\":1,\"name\":\"old\",\"uid\":7,\"status\":1,\"until\":0,\"created\":1700000000000,"
    "\"retention\":48,\"onDemand\":false,\"maxRecordKiB\":2048,\"resharding\":false,\"scalings\":[],"
    "\"shards\":[{\"i\":0,\"start\":\"0\",\"end\":\"340282366920938463463374607431768211455\","
    "\"created\":1700000000000,\"closed\":1700000100000,\"endPos\":1782579200000000000,\"parent\":-1,"
    "\"adjacent\":-1,\"pending\":false,\"closing\":false},"
    "{\"i\":1,\"start\":\"0\",\"end\":\"170141183460469231731687303715884105727\",\"created\":1700000100000,"
    "\"closed\":0,\"endPos\":0,\"parent\":0,\"adjacent\":-1,\"pending\":false,\"closing\":false},"
    "{\"i\":2,\"start\":\"170141183460469231731687303715884105728\","
    "\"end\":\"340282366920938463463374607431768211455\",\"created\":1700000100000,\"closed\":0,"
    "\"endPos\":0,\"parent\":0,\"adjacent\":-1,\"pending\":false,\"closing\":false}],"
    "\"tags\":{\"team\":\"data\",\"env\":\"test\"}}";

static void older_format_is_read_and_rewritten_as_rows(void)
{
    fresh_dir();
    char legacy[sizeof legacy_fmt + 64], t[24];
    int64_t ago = clock_now_ms() - 3600000;
    snprintf(t, sizeof t, "%013lld", (long long)ago);
    snprintf(legacy, sizeof legacy, "%s", legacy_fmt);
    for (char *p = legacy; (p = strstr(p, "1700000")) != NULL; p += 13)
        memcpy(p, t, 13);
    put_meta("stream/old", legacy);
    put_meta("next-uid", "8");
    struct api *a = open_api();
    int st;
    char *shards = call(a, "ListShards", "{\"StreamName\":\"old\"}", &st);
    CHECK(st == 200);
    CHECK(strstr(shards, "\"ShardId\":\"shardId-000000000000\"") != NULL);
    CHECK(strstr(shards, "\"ParentShardId\":\"shardId-000000000000\"") != NULL);
    CHECK(strstr(shards, "\"StartingHashKey\":\"170141183460469231731687303715884105728\"") != NULL);
    char *tags = call(a, "ListTagsForStream", "{\"StreamName\":\"old\"}", &st);
    CHECK(st == 200);
    CHECK(strstr(tags, "{\"Key\":\"env\",\"Value\":\"test\"}") != NULL);
    CHECK(strstr(tags, "{\"Key\":\"team\",\"Value\":\"data\"}") != NULL);
    char *sum = call(a, "DescribeStreamSummary", "{\"StreamName\":\"old\"}", &st);
    CHECK(strstr(sum, "\"RetentionPeriodHours\":48") != NULL);
    CHECK(strstr(sum, "\"OpenShardCount\":2") != NULL);
    free(call(a, "CreateStream", "{\"StreamName\":\"new\",\"ShardCount\":1}", &st));
    CHECK(st == 200);
    api_close(a);

    /* rows replace the older value */
    CHECK(!has_meta("stream/old"));
    CHECK(has_meta("st/00000000000000000007"));
    CHECK(has_meta("shard/00000000000000000007/00000002"));
    CHECK(has_meta("tags/00000000000000000007"));
    CHECK(has_meta("st/00000000000000000008")); /* the new stream took the next uid */

    /* and read back the same */
    a = open_api();
    char *again = call(a, "ListShards", "{\"StreamName\":\"old\"}", &st);
    CHECK_STR(again, shards);
    free(again);
    again = call(a, "ListTagsForStream", "{\"StreamName\":\"old\"}", &st);
    CHECK_STR(again, tags);
    free(again);
    api_close(a);
    free(shards);
    free(tags);
    free(sum);
    remove_dir();
}

/* A stream written by the release before accounts were kept: a header without "account" and
 * "region", and its name row "name/<name>". */
static void rows_before_accounts_are_the_default_accounts_streams(void)
{
    fresh_dir();
    char hdr[512];
    snprintf(
        hdr, sizeof hdr,
        "{\"v\":2,\"name\":\"early\",\"uid\":3,\"status\":1,\"until\":0,\"created\":%lld,\"retention\":24,"
        "\"onDemand\":false,\"maxRecordKiB\":1024,\"resharding\":false,\"nshards\":1,\"scalings\":[],"
        "\"encChanges\":[]}",
        (long long)clock_now_ms() - 60000);
    put_meta("st/00000000000000000003", hdr);
    put_meta("shard/00000000000000000003/00000000",
             "{\"i\":0,\"start\":\"0\",\"end\":\"340282366920938463463374607431768211455\",\"created\":1,"
             "\"closed\":0,\"endPos\":0,\"parent\":-1,\"adjacent\":-1,\"pending\":false,\"closing\":false,"
             "\"sealed\":false}");
    put_meta("name/early", "3");
    put_meta("next-uid", "4");
    struct api *a = open_api();
    int st;
    char *sum = call(a, "DescribeStreamSummary", "{\"StreamName\":\"early\"}", &st);
    CHECK(st == 200);
    CHECK(strstr(sum, "\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/early\"") != NULL);
    free(sum);
    /* the registry finds it under the server's account and region only */
    streams_rdlock(a);
    CHECK(streams_find(a, "000000000000", "us-east-1", "early", clock_now_ms()) != NULL);
    CHECK(streams_find(a, "111122223333", "us-east-1", "early", clock_now_ms()) == NULL);
    CHECK(streams_find(a, "000000000000", "eu-west-1", "early", clock_now_ms()) == NULL);
    streams_unlock(a);
    /* its name is still taken */
    char *again = call(a, "CreateStream", "{\"StreamName\":\"early\",\"ShardCount\":1}", &st);
    CHECK(st == 400 && strstr(again, "ResourceInUseException") != NULL);
    free(again);
    api_close(a);
    /* rewritten with its owner: the name row moved to the account and region */
    CHECK(!has_meta("name/early"));
    CHECK(has_meta("name/000000000000/us-east-1/early"));
    a = open_api();
    sum = call(a, "DescribeStreamSummary", "{\"StreamName\":\"early\"}", &st);
    CHECK(st == 200 && strstr(sum, ":000000000000:stream/early\"") != NULL);
    free(sum);
    free(call(a, "DeleteStream", "{\"StreamName\":\"early\"}", &st));
    CHECK(st == 200);
    api_close(a);
    remove_dir();
}

static void a_stream_out_of_shard_indices_is_not_resharded(void)
{
    struct shard sh[2] = {{.index = 0, .start = 0, .end = ~(u128)0, .parent = -1, .adjacent_parent = -1}};
    struct stream s = {.name = "full", .uid = 1, .status = ST_ACTIVE, .nshards = 1, .shards = sh};
    CHECK(stream_indices_left(&s, SHARD_INDEX_LIMIT - 1));
    CHECK(!stream_indices_left(&s, SHARD_INDEX_LIMIT));
    /* a split needs two more indices, a merge one; neither touches the stream when refused */
    s.nshards = SHARD_INDEX_LIMIT - 1;
    CHECK(stream_split(NULL, &s, 0, (u128)1 << 127, 0) == STREAMS_NO_IDS);
    s.nshards = SHARD_INDEX_LIMIT;
    CHECK(stream_merge(NULL, &s, 0, 1, 0) == STREAMS_NO_IDS);
    CHECK(s.status == ST_ACTIVE && !s.resharding && s.shards == sh && !sh[0].closing);
    /* the last index still gives a log id of its own stream, the next would be the next uid's */
    CHECK(log_id(1, SHARD_INDEX_LIMIT - 1) >> 24 == 1);
    CHECK(log_id(2, SHARD_INDEX_LIMIT) == log_id(3, 0));
}

static void create_stream_past_the_last_uid_answers_limit_exceeded(void)
{
    fresh_dir();
    char t[32];
    snprintf(t, sizeof t, "%llu", (unsigned long long)UID_LIMIT);
    put_meta("next-uid", t);
    struct api *a = open_api();
    int st;
    char *out = call(a, "CreateStream", "{\"StreamName\":\"late\",\"ShardCount\":1}", &st);
    CHECK(st == 400);
    CHECK(strstr(out, "\"__type\":\"LimitExceededException\"") != NULL);
    free(out);
    out = call(a, "ListStreams", "{}", &st);
    CHECK(st == 200 && strstr(out, "late") == NULL);
    free(out);
    api_close(a);
    remove_dir();
}

CHECK_RUN("streams", T(older_format_is_read_and_rewritten_as_rows),
          T(rows_before_accounts_are_the_default_accounts_streams),
          T(a_stream_out_of_shard_indices_is_not_resharded),
          T(create_stream_past_the_last_uid_answers_limit_exceeded))
