/* codec.c: shard ids, 128-bit hash keys, sequence numbers and shard iterators.
 *
 * Sequence numbers are 56 decimal digits:
 *     4 | position (20) | shard index (10) | stream uid (20) | check (5)
 * The position leads, so within a shard the numeric order is the append order, and since a
 * position is (arrival ms << 20 | counter), numbers also grow with time across shards as
 * AWS's do. The stream uid makes numbers of a deleted and re-created stream distinct; the
 * check digits make a made-up number fail to decode instead of pointing somewhere.
 *
 * Shard iterators are sealed with XSalsa20-Poly1305 (libsodium secretbox) under a key kept in
 * the store, so they are opaque, cannot be forged or altered, and survive a restart. */
/* MD5 through OpenSSL's low-level call: EVP_Digest fetches the algorithm from the provider on
 * every call (about three times the cost of the digest of a partition key); MD5() does not.
 * OpenSSL 3 marks it deprecated, not gone. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <inttypes.h>
#include <openssl/md5.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void shard_id(char out[32], uint32_t index)
{
    memcpy(out, "shardId-", 8);
    enc_digits(out + 8, index, 12);
    out[20] = 0;
}

int shard_parse(const char *s, uint32_t *index)
{
    /* AWS reads the text after the first '-' (or the whole id) as the shard's number */
    const char *dash = strchr(s, '-');
    const char *p = dash ? dash + 1 : s;
    if (!*p)
        return -1;
    uint64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > INT32_MAX)
            return -1;
    }
    *index = (uint32_t)v;
    return 0;
}

void u128_str(char out[40], u128 v)
{
    char tmp[40];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

int u128_parse(const char *s, u128 *out)
{
    u128 v = 0, max = ~(u128)0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

u128 hash_key(const char *pk, size_t len)
{
    unsigned char md[MD5_DIGEST_LENGTH];
    MD5((const unsigned char *)pk, len, md);
    u128 v = 0;
    for (int i = 0; i < 16; i++)
        v = v << 8 | md[i];
    return v;
}

void shard_range(uint32_t i, uint32_t n, u128 *start, u128 *end)
{
    u128 max = ~(u128)0;
    /* floor(2^128 / n) without representing 2^128 */
    u128 step = max / n + (max % n == (u128)n - 1 ? 1 : 0);
    *start = step * i;
    *end = i + 1 == n ? max : step * (i + 1) - 1;
}

/* The open shards of a stream version, by the start of their ranges. */
struct stream_route {
    uint32_t n;
    struct route_ent {
        u128 start, end;
        uint32_t i; /* in s->shards */
    } v[];
};

static int by_start(const void *a, const void *b)
{
    const struct route_ent *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static struct stream_route *route_of(struct stream *s)
{
    struct stream_route *r = __atomic_load_n(&s->route, __ATOMIC_ACQUIRE);
    if (r)
        return r;
    r = malloc(sizeof *r + (s->nshards ? s->nshards : 1) * sizeof r->v[0]);
    if (!r)
        abort();
    r->n = 0;
    for (uint32_t i = 0; i < s->nshards; i++)
        if (shard_open(&s->shards[i]))
            r->v[r->n++] = (struct route_ent){s->shards[i].start, s->shards[i].end, i};
    qsort(r->v, r->n, sizeof r->v[0], by_start);
    struct stream_route *none = NULL;
    /* readers under the routing lock may race to build it: the first one's stays */
    if (!__atomic_compare_exchange_n(&s->route, &none, r, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        free(r);
        r = none;
    }
    return r;
}

struct shard *shard_for_hash(struct stream *s, u128 h)
{
    const struct stream_route *r = route_of(s);
    /* the last open shard starting at or below h */
    uint32_t lo = 0, hi = r->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->v[mid].start <= h)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo || h > r->v[lo - 1].end)
        return NULL;
    return &s->shards[r->v[lo - 1].i];
}

struct shard *shard_by_index(struct stream *s, uint32_t index)
{
    /* shards are stored in index order, one per index */
    if (index < s->nshards && s->shards[index].index == index)
        return &s->shards[index];
    for (uint32_t i = 0; i < s->nshards; i++)
        if (s->shards[i].index == index)
            return &s->shards[i];
    return NULL;
}

/* ---- sequence numbers ---- */

/* numbers are written from base 10^9 limbs, least significant first */
#define LIMB 1000000000ull
#define NLIMB 7 /* 63 digits */
_Static_assert(sizeof((struct seq_shard *)0)->k == NLIMB * sizeof(uint64_t), "seq_shard holds NLIMB limbs");
static const uint64_t pow2_36[] = {719476736, 68};
static const uint64_t pow2_80[] = {174706176, 819614629, 1208925};
static const uint64_t pow2_144[] = {505980416, 272648361, 141535718, 198530623, 22300745};

void seq_shard_init(struct seq_shard *b, uint32_t shard, int64_t created_ms)
{
    /* '2', the creation second and the shard's last hex digit from bit 144; the shard and the
     * version at the bottom. head < 2^42: two limbs */
    uint64_t head = (uint64_t)2 << 40 | ((uint64_t)created_ms / 1000 & 0xFFFFFFFFFull) << 4 | (shard & 0xF);
    uint64_t h[2] = {head % LIMB, head / LIMB}, *k = b->k;
    memset(k, 0, sizeof b->k);
    k[0] = (uint64_t)shard << 4 | 2;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 5; j++)
            k[i + j] += h[i] * pow2_144[j];
    for (int i = 0; i < NLIMB - 1; i++) {
        k[i + 1] += k[i] / LIMB;
        k[i] %= LIMB;
    }
    b->created_ms = created_ms;
    b->have = false;
}

/* The limbs of the number of index ix and record second secs. */
static void seq_limbs(uint64_t r[NLIMB], const struct seq_shard *b, uint64_t ix, int64_t secs)
{
    /* k + ix * 2^80 + secs * 2^36, limb by limb: every limb's sum stays below 2^64 (at most four
     * products below 10^18 each) until the carries */
    const uint64_t *k = b->k, *p = pow2_80, *q = pow2_36;
    uint64_t d0 = ix % LIMB, d1 = ix / LIMB % LIMB, d2 = ix / LIMB / LIMB;
    uint64_t t = (uint64_t)secs & 0xFFFFFFFFFull, t0 = t % LIMB, t1 = t / LIMB;
    r[0] = k[0] + d0 * p[0] + t0 * q[0];
    r[1] = k[1] + d0 * p[1] + d1 * p[0] + t0 * q[1] + t1 * q[0];
    r[2] = k[2] + d0 * p[2] + d1 * p[1] + d2 * p[0] + t1 * q[1];
    r[3] = k[3] + d1 * p[2] + d2 * p[1];
    r[4] = k[4] + d2 * p[2];
    r[5] = k[5];
    r[6] = k[6];
    for (int i = 0; i < NLIMB - 1; i++) {
        r[i + 1] += r[i] / LIMB;
        r[i] %= LIMB;
    }
}

/* The text of limbs r into out, but for those equal to old's (NULL: all of them). */
static void seq_text(char out[SEQ_LEN + 1], const uint64_t r[NLIMB], const uint64_t *old)
{
    /* 2^185 < n < 3 * 2^184: always 56 digits, the top limb two of them */
    if (!old || old[6] != r[6])
        enc_digits(out, r[6], 2);
    for (int i = 0; i < 6; i++)
        if (!old || old[5 - i] != r[5 - i])
            enc_digits(out + 2 + 9 * i, r[5 - i], 9);
    out[SEQ_LEN] = 0;
}

void seq_shard_write(char out[SEQ_LEN + 1], const struct seq_shard *b, uint64_t ix, int64_t secs)
{
    uint64_t r[NLIMB];
    seq_limbs(r, b, ix, secs);
    seq_text(out, r, NULL);
}

/* below the shard's first position (its starting number is 0): the creation second */
static int64_t seq_secs(const struct seq_shard *b, uint64_t pos)
{
    return pos < pos_floor(b->created_ms) ? b->created_ms / 1000 : pos_ms(pos) / 1000;
}

void seq_record(char out[SEQ_LEN + 1], const struct seq_shard *b, uint64_t ix, uint64_t pos)
{
    seq_shard_write(out, b, ix & SEQ_IX_END, seq_secs(b, pos));
}

const char *seq_next(struct seq_shard *b, uint64_t ix, uint64_t pos)
{
    uint64_t r[NLIMB];
    seq_limbs(r, b, ix & SEQ_IX_END, seq_secs(b, pos));
    seq_text(b->text, r, b->have ? b->last : NULL);
    memcpy(b->last, r, sizeof r);
    b->have = true;
    return b->text;
}

void seq_format(char out[SEQ_LEN + 1], uint32_t shard, int64_t created_ms, uint64_t ix, uint64_t pos)
{
    struct seq_shard b;
    seq_shard_init(&b, shard, created_ms);
    seq_record(out, &b, ix, pos);
}

void seq_format_end(char out[SEQ_LEN + 1], uint32_t shard, int64_t created_ms, int64_t closed_ms)
{
    struct seq_shard b;
    seq_shard_init(&b, shard, created_ms);
    seq_shard_write(out, &b, SEQ_IX_END, closed_ms / 1000);
}

void seq_shard_id(char out[32], uint32_t shard)
{
    if (shard <= INT32_MAX) {
        shard_id(out, shard);
        return;
    }
    /* as AWS prints a negative index: "%012d" */
    memcpy(out, "shardId--", 9);
    enc_digits(out + 9, (uint64_t)(-(int64_t)(int32_t)shard), 11);
    out[20] = 0;
}

/* kinesd's layout before AWS's: 4 | position (20) | shard (10) | stream uid (20) | check (5) */
static uint32_t check5(uint64_t uid, uint32_t shard, uint64_t pos)
{
    uint64_t h =
        pos * 0x9E3779B97F4A7C15ull ^ (uint64_t)shard * 0xC2B2AE3D27D4EB4Full ^ uid * 0x165667B19E3779F9ull;
    h ^= h >> 29;
    return (uint32_t)(h % 100000);
}

static int digits(const char *s, int n, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_kinesd(const char *s, struct seq_num *q)
{
    uint64_t p, sh, u, ck;
    if (strlen(s) != SEQ_LEN || s[0] != '4' || digits(s + 1, 20, &p) || digits(s + 21, 10, &sh) ||
        sh > UINT32_MAX || digits(s + 31, 20, &u) || digits(s + 51, 5, &ck) ||
        ck != check5(u, (uint32_t)sh, p))
        return -1;
    *q = (struct seq_num){
        .layout = SEQ_KINESD, .shard = (uint32_t)sh, .pos = p, .uid = u, .time_ms = pos_ms(p)};
    return 0;
}

/* The decimal text as a 192-bit number (six 32-bit words, least significant first). */
static int parse_wide(const char *s, uint32_t w[6])
{
    memset(w, 0, 6 * sizeof w[0]);
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        uint64_t carry = (uint64_t)(*s - '0');
        for (int i = 0; i < 6; i++) {
            uint64_t x = (uint64_t)w[i] * 10 + carry;
            w[i] = (uint32_t)x;
            carry = x >> 32;
        }
        if (carry)
            return -1;
    }
    return 0;
}

/* n bits (n <= 64) of w from bit lo */
static uint64_t bits(const uint32_t w[6], unsigned lo, unsigned n)
{
    u128 v = 0;
    for (unsigned i = 3; i-- > 0;)
        if (lo / 32 + i < 6)
            v = v << 32 | w[lo / 32 + i];
        else
            v <<= 32;
    v >>= lo % 32;
    return (uint64_t)v & (n == 64 ? ~0ull : (1ull << n) - 1);
}

/* AWS's hex layouts, of 47 hex digits starting with 2 and ending with the version:
 *   2: 2 | shard second (9) | shard's last digit (1) | index (16) | byte (2) | second (9) | shard (8) | 2
 *   1: 2 | shard second (9) | shard's last digit (1) | byte (2) | second (9) | random (14) | index (2) |
 *      shard (8) | 1 */
static int parse_aws(const char *s, struct seq_num *q)
{
    uint32_t w[6];
    if (parse_wide(s, w) || bits(w, 188, 4) || bits(w, 184, 4) != 2)
        return -1;
    unsigned version = (unsigned)bits(w, 0, 4);
    *q = (struct seq_num){.shard = (uint32_t)bits(w, 4, 32),
                          .shard_s = (int64_t)bits(w, 148, 36),
                          .nib = (uint8_t)bits(w, 144, 4)};
    if (version == 2) {
        q->layout = SEQ_AWS2;
        q->pos = bits(w, 80, 64);
        if (q->pos > SEQ_IX_END) /* AWS: an index of 8 or more in its first digit is invalid */
            return -1;
        q->time_ms = (int64_t)bits(w, 36, 36) * 1000;
        q->byte = (uint8_t)bits(w, 72, 8);
        return 0;
    }
    if (version == 1) {
        q->layout = SEQ_AWS1;
        q->time_ms = (int64_t)bits(w, 100, 36) * 1000;
        return 0;
    }
    return -1;
}

int seq_parse(const char *s, struct seq_num *q)
{
    /* kinesd's numbers stay below 4.1 * 10^55 (positions below 10^19), AWS's are above 2^185 */
    return parse_kinesd(s, q) && parse_aws(s, q) ? -1 : 0;
}

bool seq_of_shard(const struct seq_num *q, uint64_t uid, uint32_t shard, int64_t created_ms)
{
    if (q->shard != shard)
        return false;
    if (q->layout == SEQ_KINESD)
        return q->uid == uid;
    if (q->layout != SEQ_AWS2 || q->shard_s != created_ms / 1000 || q->nib != (shard & 0xF) || q->byte)
        return false;
    if (q->pos == 0) /* the starting number */
        return q->time_ms == q->shard_s * 1000;
    if (q->pos == SEQ_IX_END)
        return true;
    /* a record's: its index at or above the shard's first position, its second not before */
    return q->pos >= pos_floor(created_ms) && q->time_ms >= q->shard_s * 1000;
}

bool seq_ordering_valid(const char *s, int64_t now_ms)
{
    struct seq_num q;
    uint32_t shard;
    if (seq_parse(s, &q))
        return seq_legacy_shard(s, &shard) == 0;
    return q.time_ms <= now_ms && q.shard_s * 1000 <= now_ms;
}

int seq_legacy_shard(const char *s, uint32_t *shard)
{
    u128 n;
    if (strlen(s) > 39 || u128_parse(s, &n))
        return -1;
    if (n < (u128)1 << 124)
        n += (u128)1 << 124;
    /* hex digits 1..9 hold the creation second, which AWS bounds; the last 4 the shard */
    uint64_t secs = (uint64_t)(n >> 88) & 0xFFFFFFFFFull;
    if (secs >= 16025175000ull)
        return -1;
    *shard = (uint32_t)(n & 0xFFFF);
    return 0;
}

/* ---- shard iterators ---- */

#define ITER_VERSION 2
#define ITER_FIXED (1 + 8 + 4 + 8 + 8 + 1)

const char *seal_text(struct api_ctx *c, const void *plain, size_t plen)
{
    const size_t over = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;
    unsigned char *box = arena_alloc(&c->arena, over + plen);
    randombytes_buf(box, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(box + crypto_secretbox_NONCEBYTES, plain, plen, box, c->api->iter_key);
    struct buf b = BUF_INIT;
    enc_base64(&b, box, over + plen);
    char *out = arena_strndup(&c->arena, b.p, b.len);
    buf_free(&b);
    return out;
}

int open_text(struct api_ctx *c, const char *text, unsigned char **plain, size_t *plen)
{
    char *box, bad;
    size_t blen;
    const char *why;
    const size_t over = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;
    if (base64_decode(&c->arena, text, strlen(text), &box, &blen, &why, &bad) || blen < over)
        return -1;
    unsigned char *p = arena_alloc(&c->arena, blen - over + 1);
    if (crypto_secretbox_open_easy(p, (unsigned char *)box + crypto_secretbox_NONCEBYTES,
                                   blen - crypto_secretbox_NONCEBYTES, (unsigned char *)box,
                                   c->api->iter_key))
        return -1;
    p[blen - over] = 0;
    *plain = p;
    *plen = blen - over;
    return 0;
}

/* Version 2: the fixed part, then four strings each led by its length: the stream's name, its
 * owner's account and region, and the account the iterator was issued to. Version 1 (the
 * release before accounts) had the name alone. */
#define ITER_VERSION_1 1

static unsigned char *put_str(unsigned char *o, const char *s, size_t cap)
{
    size_t n = strlen(s);
    if (n > cap)
        n = cap;
    *o++ = (unsigned char)n;
    memcpy(o, s, n);
    return o + n;
}

const char *iter_seal(struct api_ctx *c, const struct iter *it)
{
    unsigned char plain[ITER_FIXED + 4 + 128 + 15 + 63 + 15];
    plain[0] = ITER_VERSION;
    put64(plain + 1, it->uid);
    plain[9] = (unsigned char)(it->shard >> 24);
    plain[10] = (unsigned char)(it->shard >> 16);
    plain[11] = (unsigned char)(it->shard >> 8);
    plain[12] = (unsigned char)it->shard;
    put64(plain + 13, it->pos);
    put64(plain + 21, (uint64_t)it->issued_ms);
    unsigned char *o = put_str(plain + ITER_FIXED - 1, it->stream, 128);
    o = put_str(o, it->account, 15);
    o = put_str(o, it->region, 63);
    o = put_str(o, it->holder, 15);
    return seal_text(c, plain, (size_t)(o - plain));
}

/* The next length-led string of p..end into the arena; NULL past the end. */
static const char *get_str(struct api_ctx *c, const unsigned char **p, const unsigned char *end)
{
    if (*p >= end || (size_t)(end - *p - 1) < **p)
        return NULL;
    size_t n = **p;
    const char *s = arena_strndup(&c->arena, (const char *)*p + 1, n);
    *p += 1 + n;
    return s;
}

int iter_open(struct api_ctx *c, const char *text, struct iter *it)
{
    unsigned char *plain;
    size_t plen;
    if (open_text(c, text, &plain, &plen) || plen < ITER_FIXED ||
        plen > ITER_FIXED + 4 + 128 + 15 + 63 + 15 ||
        (plain[0] != ITER_VERSION && plain[0] != ITER_VERSION_1))
        return -1;
    const unsigned char *p = plain + ITER_FIXED - 1, *end = plain + plen;
    struct iter v = {0};
    if (plain[0] == ITER_VERSION_1) {
        if (plain[29] != plen - ITER_FIXED)
            return -1;
        v.stream = (const char *)plain + ITER_FIXED;
        v.account = v.holder = c->api->account;
        v.region = c->api->region;
    } else if (!(v.stream = get_str(c, &p, end)) || !(v.account = get_str(c, &p, end)) ||
               !(v.region = get_str(c, &p, end)) || !(v.holder = get_str(c, &p, end)) || p != end) {
        return -1;
    }
    v.uid = get64(plain + 1);
    v.shard = (uint32_t)plain[9] << 24 | (uint32_t)plain[10] << 16 | (uint32_t)plain[11] << 8 | plain[12];
    v.pos = get64(plain + 13);
    v.issued_ms = (int64_t)get64(plain + 21);
    *it = v;
    return 0;
}
