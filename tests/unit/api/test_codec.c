/* Unit tests of hash routing, shard ranges, sequence numbers and shard iterators. */
#include <sodium.h>

#include "check.h"
#include "internal.h"

static void two_shards_meet_where_aws_splits(void)
{
    u128 s, e;
    char t[40];
    shard_range(0, 2, &s, &e);
    u128_str(t, e);
    CHECK_STR(t, "170141183460469231731687303715884105727");
    shard_range(1, 2, &s, &e);
    u128_str(t, s);
    CHECK_STR(t, "170141183460469231731687303715884105728");
    u128_str(t, e);
    CHECK_STR(t, "340282366920938463463374607431768211455");
    shard_range(1, 3, &s, &e);
    u128_str(t, s);
    CHECK_STR(t, "113427455640312821154458202477256070485");
}

static void hash_key_is_md5_read_big_endian(void)
{
    /* md5("a") = 0cc175b9c0f1b6a831c399e269772661 */
    char t[40];
    u128_str(t, hash_key("a", 1));
    CHECK_STR(t, "16955237001963240173058271559858726497");
    u128 v;
    CHECK(u128_parse("340282366920938463463374607431768211455", &v) == 0 && v == ~(u128)0);
    CHECK(u128_parse("340282366920938463463374607431768211456", &v) == -1);
}

static void sequence_numbers_round_trip_and_order(void)
{
    char a[SEQ_LEN + 1], b[SEQ_LEN + 1];
    seq_format(a, 7, 3, pos_floor(1700000000000));
    seq_format(b, 7, 3, pos_floor(1700000000000) + 1);
    CHECK(strlen(a) == SEQ_LEN && strcmp(a, b) < 0);
    uint64_t uid, pos;
    uint32_t sh;
    CHECK(seq_parse(a, &uid, &sh, &pos) == 0 && uid == 7 && sh == 3 && pos == pos_floor(1700000000000));
    a[30] ^= 1; /* any change to the digits breaks the check */
    CHECK(seq_parse(a, &uid, &sh, &pos) == -1);
    CHECK(seq_parse("0", &uid, &sh, &pos) == -1);
}

static void shard_ids_parse_like_aws(void)
{
    uint32_t ix;
    char id[32];
    CHECK(shard_parse("shardId-000000000005", &ix) == 0 && ix == 5);
    CHECK(shard_parse("7", &ix) == 0 && ix == 7);
    CHECK(shard_parse("shardId-", &ix) == -1);
    CHECK(shard_parse("abc", &ix) == -1);
    shard_id(id, 12);
    CHECK_STR(id, "shardId-000000000012");
}

static void iterators_are_sealed_and_tamper_evident(void)
{
    if (sodium_init() < 0)
        abort();
    struct api a = {0};
    randombytes_buf(a.iter_key, sizeof a.iter_key);
    struct api_ctx c = {.api = &a};
    arena_init(&c.arena);
    const char *it = iter_seal(&c, "stream-1", 42, 3, 99, 1234);
    CHECK(strlen(it) <= 512);
    const char *name;
    uint64_t uid, pos;
    uint32_t sh;
    int64_t issued;
    CHECK(iter_open(&c, it, &name, &uid, &sh, &pos, &issued) == 0);
    CHECK_STR(name, "stream-1");
    CHECK(uid == 42 && sh == 3 && pos == 99 && issued == 1234);
    char *bad = arena_strndup(&c.arena, it, strlen(it));
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    CHECK(iter_open(&c, bad, &name, &uid, &sh, &pos, &issued) == -1);
    CHECK(iter_open(&c, "AAAA", &name, &uid, &sh, &pos, &issued) == -1);
    /* another key (another data directory) does not open it */
    randombytes_buf(a.iter_key, sizeof a.iter_key);
    CHECK(iter_open(&c, it, &name, &uid, &sh, &pos, &issued) == -1);
    arena_free(&c.arena);
}

CHECK_RUN("codec", T(two_shards_meet_where_aws_splits), T(hash_key_is_md5_read_big_endian),
          T(sequence_numbers_round_trip_and_order), T(shard_ids_parse_like_aws),
          T(iterators_are_sealed_and_tamper_evident))
