/* Unit tests of hash routing, shard ranges, sequence numbers and shard iterators. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>

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

/* The decimal text of a hex string, digit by digit (out: room for 64). */
static void hex_to_dec(const char *hex, char *out)
{
    unsigned char d[64] = {0}; /* decimal digits, least significant first */
    int n = 1;
    for (const char *h = hex; *h; h++) {
        int carry = *h <= '9' ? *h - '0' : *h - 'a' + 10;
        for (int i = 0; i < n || carry; i++) {
            int x = (i < n ? d[i] : 0) * 16 + carry;
            d[i] = (unsigned char)(x % 10);
            carry = x / 10;
            if (i >= n)
                n = i + 1;
        }
    }
    for (int i = 0; i < n; i++)
        out[i] = (char)('0' + d[n - 1 - i]);
    out[n] = 0;
}

/* AWS's version 2 as the text of its hex digits */
static void v2_hex(char out[48], uint64_t created_s, uint32_t shard, uint64_t ix, unsigned byte,
                   uint64_t secs)
{
    snprintf(out, 48, "2%09" PRIx64 "%x%016" PRIx64 "%02x%09" PRIx64 "%08x2", created_s, shard & 0xF, ix,
             byte, secs, shard);
}

static void sequence_numbers_are_aws_version_2(void)
{
    char got[SEQ_LEN + 1], hex[48], want[64];
    uint64_t x = 0x243F6A8885A308D3ull;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t created = 1420070400000 + (int64_t)(x % 2000000000000ull);
        uint32_t shard = i < 1000 ? (uint32_t)(x >> 40) % 1000 : (uint32_t)(x >> 33) & INT32_MAX;
        uint64_t pos = pos_floor(created + (int64_t)(x >> 45)) | (x >> 7 & 0xFFFFF);
        /* a record's index: its position (the shard's first record, or one written before
         * indexes), or above it by any count */
        uint64_t ix = i % 2 ? pos : pos + (x >> (x % 64)) % (SEQ_IX_END - pos);
        seq_format(got, shard, created, ix, pos);
        v2_hex(hex, (uint64_t)created / 1000, shard, ix, 0, (uint64_t)pos_ms(pos) / 1000);
        hex_to_dec(hex, want);
        CHECK_STR(got, want);
        struct seq_num q;
        CHECK(seq_parse(got, &q) == 0 && q.layout == SEQ_AWS2 && q.shard == shard && q.pos == ix &&
              q.shard_s == created / 1000 && q.time_ms == pos_ms(pos) / 1000 * 1000);
        CHECK(seq_of_shard(&q, 99, shard, created));
    }
    /* the extremes: index 0 (a starting number) and the end, the largest shard and second */
    seq_format(got, 0, 1700000000999, 0, 0);
    v2_hex(hex, 1700000000, 0, 0, 0, 1700000000);
    hex_to_dec(hex, want);
    CHECK_STR(got, want);
    seq_format_end(got, INT32_MAX, 0xFFFFFFFFFll * 1000, 0xFFFFFFFFFll * 1000);
    v2_hex(hex, 0xFFFFFFFFF, INT32_MAX, SEQ_IX_END, 0, 0xFFFFFFFFF);
    hex_to_dec(hex, want);
    CHECK_STR(got, want);
    /* within a shard the numeric order is the order of indexes, whatever the seconds */
    char a[SEQ_LEN + 1], b[SEQ_LEN + 1];
    seq_format(a, 3, 1700000000000, 5, pos_floor(1700000009000));
    seq_format(b, 3, 1700000000000, 6, pos_floor(1700000001000));
    CHECK(strcmp(a, b) < 0);
    seq_format_end(b, 3, 1700000000000, 1700000000000);
    CHECK(strcmp(a, b) < 0);
}

static void a_number_belongs_to_its_shard_incarnation(void)
{
    int64_t created = 1700000000400;
    char s[SEQ_LEN + 1];
    struct seq_num q;
    uint64_t ix = pos_floor(created) + 17;
    seq_format(s, 1, created, ix, pos_floor(created + 7000) + 3);
    CHECK(seq_parse(s, &q) == 0 && q.pos == ix && seq_of_shard(&q, 1, 1, created));
    CHECK(!seq_of_shard(&q, 1, 2, created));
    /* another second of creation; the same second but created after the record's index */
    CHECK(!seq_of_shard(&q, 1, 1, created + 1000));
    CHECK(!seq_of_shard(&q, 1, 1, created + 100));
    /* the starting and ending numbers */
    seq_format(s, 1, created, 0, 0);
    CHECK(seq_parse(s, &q) == 0 && q.pos == 0 && seq_of_shard(&q, 1, 1, created));
    seq_format_end(s, 1, created, created + 60000);
    CHECK(seq_parse(s, &q) == 0 && q.pos == SEQ_IX_END && seq_of_shard(&q, 1, 1, created));
    /* a made-up number of the shard with another byte, or a record time before the shard's */
    char hex[48], dec[64];
    v2_hex(hex, 1700000000, 1, ix, 0x15, 1700000007);
    hex_to_dec(hex, dec);
    CHECK(seq_parse(dec, &q) == 0 && !seq_of_shard(&q, 1, 1, created));
    v2_hex(hex, 1700000000, 1, ix, 0, 1700000007);
    hex_to_dec(hex, dec);
    CHECK(seq_parse(dec, &q) == 0 && seq_of_shard(&q, 1, 1, created));
    v2_hex(hex, 1700000000, 1, ix, 0, 1699999999);
    hex_to_dec(hex, dec);
    CHECK(seq_parse(dec, &q) == 0 && !seq_of_shard(&q, 1, 1, created));
    v2_hex(hex, 1700000000, 1, 17, 0, 1700000007); /* below the shard's first position */
    hex_to_dec(hex, dec);
    CHECK(seq_parse(dec, &q) == 0 && !seq_of_shard(&q, 1, 1, created));
}

/* Numbers handed out by kinesd before it took AWS's layout (4 | position | shard | uid | check)
 * are still read, by their stream uid. */
static void old_layout_numbers_still_decode(void)
{
    static const struct {
        const char *seq;
        uint64_t uid;
        uint32_t shard;
        uint64_t pos;
    } old[] = {
        {"40178257920012897485300000000030000000000000000000776676", 7, 3, 1782579200128974853ull},
        {"40185038264074240000000000000000000000000000000000146407", 1, 0, 1850382640742400000ull},
        {"40185038264179097599921474836470000000000012345678964302", 123456789, 2147483647,
         1850382641790975999ull},
    };
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) {
        struct seq_num q;
        CHECK(seq_parse(old[i].seq, &q) == 0 && q.layout == SEQ_KINESD && q.uid == old[i].uid &&
              q.shard == old[i].shard && q.pos == old[i].pos);
        CHECK(seq_of_shard(&q, old[i].uid, old[i].shard, 1700000000000));
        CHECK(!seq_of_shard(&q, old[i].uid + 1, old[i].shard, 1700000000000));
        CHECK(seq_ordering_valid(old[i].seq, pos_ms(old[i].pos)));
        CHECK(!seq_ordering_valid(old[i].seq, pos_ms(old[i].pos) - 1));
        char bad[SEQ_LEN + 1];
        memcpy(bad, old[i].seq, sizeof bad);
        bad[30] ^= 1; /* any change to the digits breaks the check */
        CHECK(seq_parse(bad, &q) == -1);
    }
    struct seq_num q;
    CHECK(seq_parse("0", &q) == -1);
}

/* SequenceNumberForOrdering as production Kinesis answers (kinesalite's tests ran against it). */
static void ordering_numbers_are_any_well_formed_number_of_the_past(void)
{
    int64_t now = 1764662400000;
    static const struct {
        const char *hex;
        bool ok;
    } cases[] = {
        {"20000000000000000000000000000000000000000000002", true},  /* all 0 */
        {"20000000000000000000000000000000000000000000001", true},  /* all 0, version 1 */
        {"20000000000000000000000000000000000000800000002", true},  /* 8 near the end */
        {"20000000000000000000000000000000000000000000000", false}, /* version 0 */
        {"20000000000000000000000000000000000000000000003", false}, /* version 3 */
        {"20000000000000000000000000000000000000000000004", false}, /* version 4 */
        {"30000000000000000000000000000000000000000000001", false}, /* initial 3 */
        {"1ffffffffff7fffffffffffffff000000000007fffffff2", false}, /* initial 1 */
        {"20000000000800000000000000000000000000000000002", false}, /* 8 in the index */
        {"2ffffffffff7fffffffffffffff000000000007fffffff2", false}, /* all f: a future shard */
        {"13bb2cc3d80000000000000000000000", false},                /* version 0, a large date */
        {"5", true},                                                /* version 0 */
    };
    char dec[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hex_to_dec(cases[i].hex, dec);
        if (seq_ordering_valid(dec, now) != cases[i].ok)
            fprintf(stderr, "ordering case %s\n", cases[i].hex);
        CHECK(seq_ordering_valid(dec, now) == cases[i].ok);
    }
    CHECK(seq_ordering_valid("5", now));
    char s[SEQ_LEN + 1];
    seq_format(s, 0, now - 5000, 1, pos_floor(now));
    CHECK(seq_ordering_valid(s, now) && !seq_ordering_valid(s, now - 1000));
    /* the index AWS prints for a shard field of 2^31 and above */
    char id[32];
    seq_shard_id(id, 0x80000000u);
    CHECK_STR(id, "shardId--02147483648");
    seq_shard_id(id, 0xFFFFFFFFu);
    CHECK_STR(id, "shardId--00000000001");
    seq_shard_id(id, 5);
    CHECK_STR(id, "shardId-000000000005");
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
    struct api a = {.account = "000000000000", .region = "us-east-1"};
    randombytes_buf(a.iter_key, sizeof a.iter_key);
    struct api_ctx c = {.api = &a};
    arena_init(&c.arena);
    const char *it = iter_seal(
        &c, &(struct iter){"stream-1", "111111111111", "eu-west-3", "222222222222", 42, 3, 99, 1234});
    CHECK(strlen(it) <= 512);
    struct iter o;
    CHECK(iter_open(&c, it, &o) == 0);
    CHECK_STR(o.stream, "stream-1");
    CHECK_STR(o.account, "111111111111");
    CHECK_STR(o.region, "eu-west-3");
    CHECK_STR(o.holder, "222222222222");
    CHECK(o.uid == 42 && o.shard == 3 && o.pos == 99 && o.issued_ms == 1234);
    char *bad = arena_strndup(&c.arena, it, strlen(it));
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    CHECK(iter_open(&c, bad, &o) == -1);
    CHECK(iter_open(&c, "AAAA", &o) == -1);
    /* an iterator of the release before accounts: the server's account and region, issued to it */
    unsigned char v1[30 + 3] = {1};
    v1[8] = 42, v1[12] = 3, v1[20] = 99, v1[29] = 3;
    memcpy(v1 + 30, "old", 3);
    CHECK(iter_open(&c, seal_text(&c, v1, sizeof v1), &o) == 0);
    CHECK_STR(o.stream, "old");
    CHECK_STR(o.account, "000000000000");
    CHECK_STR(o.region, "us-east-1");
    CHECK_STR(o.holder, "000000000000");
    CHECK(o.uid == 42 && o.shard == 3 && o.pos == 99);
    /* another key (another data directory) does not open it */
    randombytes_buf(a.iter_key, sizeof a.iter_key);
    CHECK(iter_open(&c, it, &o) == -1);
    arena_free(&c.arena);
}

/* seq_next, which rewrites only the limbs that changed, writes what the layout says for every
 * record of a run: consecutive positions, jumps within and across milliseconds and seconds,
 * and indexes that step by one, jump, carry into higher limbs, or are the position */
static void numbers_written_in_a_row_are_each_whole(void)
{
    char hex[48], want[64];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int run = 0; run < 200; run++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t created = 1420070400000 + (int64_t)(x % 2000000000000ull);
        uint32_t shard = (uint32_t)(x >> 40) % 5000;
        struct seq_shard b;
        seq_shard_init(&b, shard, created);
        uint64_t pos = run % 2 ? pos_floor(created + (int64_t)(x >> 50)) : 0; /* from the starting number */
        uint64_t ix = pos;
        for (int i = 0; i < 300; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            switch (x % 4) {
            case 0: pos += 1; break;
            case 1: pos += x >> 44; break; /* within a few milliseconds */
            case 2: pos = pos_floor(pos_ms(pos) + (int64_t)(x >> 50)) | (x >> 20 & 0xFFFFF); break;
            default: pos += (uint64_t)1 << (x >> 8) % 62; /* any limb */
            }
            if (pos > SEQ_IX_END)
                pos = pos_floor(created);
            switch (x >> 30 & 3) {
            case 0: ix = pos; break;
            case 1: ix += (uint64_t)1 << (x >> 32) % 62; break;
            default: ix += 1;
            }
            ix &= SEQ_IX_END;
            const char *got = seq_next(&b, ix, pos);
            uint64_t secs =
                pos < pos_floor(created) ? (uint64_t)created / 1000 : (uint64_t)pos_ms(pos) / 1000;
            v2_hex(hex, (uint64_t)created / 1000, shard, ix, 0, secs & 0xFFFFFFFFFull);
            hex_to_dec(hex, want);
            CHECK_STR(got, want);
        }
    }
}

CHECK_RUN("codec", T(two_shards_meet_where_aws_splits), T(hash_key_is_md5_read_big_endian),
          T(sequence_numbers_are_aws_version_2), T(numbers_written_in_a_row_are_each_whole),
          T(a_number_belongs_to_its_shard_incarnation), T(old_layout_numbers_still_decode),
          T(ordering_numbers_are_any_well_formed_number_of_the_past), T(shard_ids_parse_like_aws),
          T(iterators_are_sealed_and_tamper_evident))
