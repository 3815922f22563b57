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

static uint32_t check5(uint64_t uid, uint32_t shard, uint64_t pos)
{
    uint64_t h =
        pos * 0x9E3779B97F4A7C15ull ^ (uint64_t)shard * 0xC2B2AE3D27D4EB4Full ^ uid * 0x165667B19E3779F9ull;
    h ^= h >> 29;
    return (uint32_t)(h % 100000);
}

void seq_format(char out[SEQ_LEN + 1], uint64_t uid, uint32_t shard, uint64_t pos)
{
    out[0] = '4';
    enc_digits(out + 21, shard, 10);
    enc_digits(out + 31, uid, 20);
    out[SEQ_LEN] = 0;
    seq_reformat(out, uid, shard, pos);
}

void seq_reshard(char out[SEQ_LEN + 1], uint64_t uid, uint32_t shard, uint64_t pos)
{
    enc_digits(out + 21, shard, 10);
    seq_reformat(out, uid, shard, pos);
}

void seq_reformat(char out[SEQ_LEN + 1], uint64_t uid, uint32_t shard, uint64_t pos)
{
    enc_digits(out + 1, pos, 20);
    enc_digits(out + 51, check5(uid, shard, pos), 5);
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

int seq_parse(const char *s, uint64_t *uid, uint32_t *shard, uint64_t *pos)
{
    uint64_t p, sh, u, ck;
    if (strlen(s) != SEQ_LEN || s[0] != '4' || digits(s + 1, 20, &p) || digits(s + 21, 10, &sh) ||
        sh > UINT32_MAX || digits(s + 31, 20, &u) || digits(s + 51, 5, &ck) ||
        ck != check5(u, (uint32_t)sh, p))
        return -1;
    *uid = u;
    *shard = (uint32_t)sh;
    *pos = p;
    return 0;
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

#define ITER_VERSION 1
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

const char *iter_seal(struct api_ctx *c, const char *stream, uint64_t uid, uint32_t shard, uint64_t pos,
                      int64_t issued_ms)
{
    size_t nl = strlen(stream);
    unsigned char plain[ITER_FIXED + 128];
    if (nl > 128)
        nl = 128;
    plain[0] = ITER_VERSION;
    put64(plain + 1, uid);
    plain[9] = (unsigned char)(shard >> 24);
    plain[10] = (unsigned char)(shard >> 16);
    plain[11] = (unsigned char)(shard >> 8);
    plain[12] = (unsigned char)shard;
    put64(plain + 13, pos);
    put64(plain + 21, (uint64_t)issued_ms);
    plain[29] = (unsigned char)nl;
    memcpy(plain + ITER_FIXED, stream, nl);
    return seal_text(c, plain, ITER_FIXED + nl);
}

int iter_open(struct api_ctx *c, const char *text, const char **stream, uint64_t *uid, uint32_t *shard,
              uint64_t *pos, int64_t *issued_ms)
{
    unsigned char *plain;
    size_t plen;
    if (open_text(c, text, &plain, &plen) || plen < ITER_FIXED || plen > ITER_FIXED + 128 ||
        plain[0] != ITER_VERSION || plain[29] != plen - ITER_FIXED)
        return -1;
    *uid = get64(plain + 1);
    *shard = (uint32_t)plain[9] << 24 | (uint32_t)plain[10] << 16 | (uint32_t)plain[11] << 8 | plain[12];
    *pos = get64(plain + 13);
    *issued_ms = (int64_t)get64(plain + 21);
    *stream = (const char *)plain + ITER_FIXED;
    return 0;
}
