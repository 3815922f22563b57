/* test_format.c: sealing and opening records, every version, and what must not open. The
 * keyring here is a table of two fixed keys (the real one, api/kms/datakeys.c, is tested with
 * the store in tests/unit/api/kms). */
#include <sodium.h>

#include "check.h"
#include "crc32c.h"
#include "format.h"

static unsigned char keys[2][32];
static int seal_calls;

static int t_seal_key(void *ctx, uint64_t log, uint64_t bucket, uint32_t n, uint64_t *id,
                      const unsigned char **key)
{
    (void)ctx, (void)log, (void)n;
    seal_calls++;
    *id = bucket << 24 | (bucket & 1);
    *key = keys[bucket & 1];
    return 0;
}

static int t_open_key(void *ctx, uint64_t log, uint64_t id, const unsigned char **key, uint32_t *cls)
{
    (void)ctx, (void)log;
    *cls = (uint32_t)(id & 1) + 7;
    if ((id & 0xFFFFFF) > 1)
        return STORE_NOT_FOUND;
    *key = keys[id & 1];
    return 0;
}

static int t_no_rows(void *ctx, uint64_t log, struct store_trim_row *rows, size_t max, size_t *n)
{
    (void)ctx, (void)log, (void)rows, (void)max;
    *n = 0;
    return 0;
}

static void t_shredded(void *ctx, uint64_t log, const struct store_trim_row *rows, size_t n)
{
    (void)ctx, (void)log, (void)rows, (void)n;
}

static int t_drop(void *ctx, uint64_t log)
{
    (void)ctx, (void)log;
    return 0;
}

static const struct store_keyring kr = {t_seal_key, t_open_key, t_no_rows, t_shredded, t_drop, NULL};

static char arena[1 << 16];
static size_t arena_used;
static void *bump(void *ctx, size_t n)
{
    (void)ctx;
    n = (n + 15) & ~(size_t)15;
    if (arena_used + n > sizeof arena)
        return NULL;
    void *p = arena + arena_used;
    arena_used += n;
    return p;
}

static int open1(const struct store_keyring *k, const char *v, size_t len, uint64_t log, uint64_t pos,
                 struct store_records *out)
{
    arena_used = 0;
    *out = (struct store_records){.alloc = bump};
    return format_open(k, v, len, log, pos, out);
}

#define POS(ms) ((uint64_t)(ms) << 20)

static void test_a_sealed_record_opens_at_its_log_and_position_only(void)
{
    struct format_sealer s;
    format_sealer_init(&s, &kr);
    struct store_rec r = {.pk = "partition-key", .pk_len = 13, .data = "secret data", .data_len = 11};
    char buf[128];
    size_t len;
    CHECK(format_seal(&s, buf, 7, POS(1000), 12345, 1, &r, &len) == 0);
    CHECK(len == format_sealed_len(&kr, 13, 11));
    CHECK(buf[0] == FORMAT_SEALED_VERSION);
    CHECK(!memmem(buf, len, "secret", 6) && !memmem(buf, len, "partition", 9));
    CHECK(format_index(buf, len, POS(1000)) == 12345);
    struct store_records out;
    CHECK(open1(&kr, buf, len, 7, POS(1000), &out) == 0 && out.v[0].ix == 12345);
    CHECK(out.n == 1 && out.v[0].pk_len == 13 && !memcmp(out.v[0].pk, "partition-key", 13));
    CHECK(out.v[0].data_len == 11 && !memcmp(out.v[0].data, "secret data", 11));
    CHECK(open1(&kr, buf, len, 8, POS(1000), &out) == STORE_CORRUPT);     /* another log (stream, shard) */
    CHECK(open1(&kr, buf, len, 7, POS(1000) + 1, &out) == STORE_CORRUPT); /* another position */
    CHECK(open1(NULL, buf, len, 7, POS(1000), &out) == STORE_CORRUPT);    /* no keys */
    CHECK(format_check(&kr, buf, len, 7, POS(1000)) == 0);
    format_sealer_done(&s);
}

static void test_every_flipped_bit_fails_to_open(void)
{
    struct format_sealer s;
    format_sealer_init(&s, &kr);
    struct store_rec r = {.pk = "k", .pk_len = 1, .data = "0123456789", .data_len = 10};
    char buf[128];
    size_t len;
    CHECK(format_seal(&s, buf, 1, POS(5), 1, 1, &r, &len) == 0);
    int opened = 0;
    for (size_t i = 0; i < len; i++)
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (char)(1 << b);
            struct store_records out;
            opened += open1(&kr, buf, len, 1, POS(5), &out) == 0;
            buf[i] ^= (char)(1 << b);
        }
    CHECK(opened == 0);
    struct store_records out;
    CHECK(open1(&kr, buf, len - 1, 1, POS(5), &out) == STORE_CORRUPT); /* cut short */
    format_sealer_done(&s);
}

static void test_two_records_swapped_do_not_open(void)
{
    struct format_sealer s;
    format_sealer_init(&s, &kr);
    struct store_rec a = {.pk = "a", .pk_len = 1, .data = "first", .data_len = 5};
    struct store_rec b = {.pk = "b", .pk_len = 1, .data = "other", .data_len = 5};
    char ba[128], bb[128];
    size_t la, lb;
    CHECK(format_seal(&s, ba, 3, POS(9), 1, 2, &a, &la) == 0);
    CHECK(format_seal(&s, bb, 3, POS(9) + 1, 1, 1, &b, &lb) == 0);
    struct store_records out;
    CHECK(open1(&kr, bb, lb, 3, POS(9), &out) == STORE_CORRUPT);
    CHECK(open1(&kr, ba, la, 3, POS(9) + 1, &out) == STORE_CORRUPT);
    CHECK(memcmp(ba + 12, bb + 12, 24) != 0); /* nonces differ within a batch */
    CHECK(!memcmp(ba + 12, bb + 12, 16));     /* ... by the counter */
    format_sealer_done(&s);
}

static void test_batches_draw_fresh_nonces_and_look_keys_up_once_per_bucket(void)
{
    struct format_sealer s1, s2;
    format_sealer_init(&s1, &kr);
    format_sealer_init(&s2, &kr);
    CHECK(memcmp(s1.nonce, s2.nonce, 16) != 0);
    struct store_rec r = {.pk = "k", .pk_len = 1, .data = "d", .data_len = 1};
    char buf[128];
    size_t len;
    seal_calls = 0;
    uint64_t hour = KEYRING_BUCKET_MS;
    for (int i = 0; i < 10; i++)
        CHECK(format_seal(&s1, buf, 1, POS(hour * 4) + (uint64_t)i, 1, 10, &r, &len) == 0);
    CHECK(seal_calls == 1);
    /* the next bucket (another key) and another log each take a lookup */
    CHECK(format_seal(&s1, buf, 1, POS(hour * 5), 1, 1, &r, &len) == 0);
    CHECK(seal_calls == 2);
    CHECK(buf[4] == 1); /* key id's low byte: bucket 5's key (generation 1 in this table) */
    struct store_records out;
    CHECK(open1(&kr, buf, len, 1, POS(hour * 5), &out) == 0);
    CHECK(out.v[0].key_class == 8); /* the keyring's class of the key, passed on */
    CHECK(format_seal(&s1, buf, 2, POS(hour * 5) + 1, 1, 1, &r, &len) == 0);
    CHECK(seal_calls == 3);
    /* a record claiming another key id fails */
    buf[4] ^= 1;
    CHECK(open1(&kr, buf, len, 2, POS(hour * 5) + 1, &out) == STORE_CORRUPT);
    format_sealer_done(&s1);
    format_sealer_done(&s2);
}

static void test_versions_2_and_1_are_still_read(void)
{
    struct format_sealer s;
    format_sealer_init(&s, NULL);
    struct store_rec r = {.pk = "pk", .pk_len = 2, .data = "plain", .data_len = 5};
    char buf[64];
    size_t len;
    CHECK(format_seal(&s, buf, 4, 44, 3, 1, &r, &len) == 0);
    CHECK(len == format_sealed_len(NULL, 2, 5) && buf[0] == 2);
    struct store_records out;
    CHECK(open1(&kr, buf, len, 4, 44, &out) == 0 && out.v[0].data_len == 5 && out.v[0].ix == 3);
    CHECK(open1(NULL, buf, len, 4, 45, &out) == STORE_CORRUPT);
    buf[FORMAT_HDR] ^= 4; /* the index is under the check */
    CHECK(open1(NULL, buf, len, 4, 44, &out) == STORE_CORRUPT);
    char v1[40] = {1, 0, 2, 0};
    memcpy(v1 + 32, "pkdata", 6);
    CHECK(open1(NULL, v1, 38, 4, 1, &out) == 0 && out.v[0].data_len == 4 &&
          !memcmp(out.v[0].data, "data", 4));
    char v9[40] = {9, 0, 0, 0};
    CHECK(open1(&kr, v9, 40, 4, 1, &out) == STORE_CORRUPT);
}

/* The header of a version 3 or 4 record as written now (with its index), and its associated
 * data, as format.h lays them out. */
#define SEALED_HDR (FORMAT_SEALED_HDR + FORMAT_IX_LEN)
static void ad_of(unsigned char ad[SEALED_HDR + 16], const char *rec, uint64_t log, uint64_t pos)
{
    memcpy(ad, rec, SEALED_HDR);
    for (int i = 0; i < 8; i++) {
        ad[SEALED_HDR + i] = (unsigned char)(log >> 8 * i);
        ad[SEALED_HDR + 8 + i] = (unsigned char)(pos >> 8 * i);
    }
}

/* Seal a record of random key (pk bytes) and data (n bytes, in want after the key) at a random
 * log into buf with fresh random data keys, as version 4 (gcm) or 3. */
static void seal_random(bool gcm, size_t n, size_t pk, char *buf, char *want, uint64_t *log, uint64_t *pos,
                        size_t *len)
{
    randombytes_buf(keys, sizeof keys);
    struct format_sealer s;
    format_sealer_init(&s, &kr);
    s.gcm = gcm; /* false: version 3, as on a CPU without AES instructions */
    randombytes_buf(want, pk + n);
    struct store_rec r = {.pk = want, .pk_len = pk, .data = want + pk, .data_len = n};
    *log = randombytes_random(), *pos = POS(1000 + n) + n;
    CHECK(format_seal(&s, buf, *log, *pos, 1, 1, &r, len) == 0);
    format_sealer_done(&s);
}

/* Whether buf opens as the record want (pk bytes of key, n of data); then one random byte of its
 * ciphertext or tag is changed, and *forged counts it if that opens too. */
static int opens_then_forged_fails(char *buf, size_t len, uint64_t log, uint64_t pos, const char *want,
                                   size_t pk, size_t n, int *forged)
{
    struct store_records out;
    int ok = open1(&kr, buf, len, log, pos, &out) == 0 && out.n == 1 && out.v[0].pk_len == pk &&
             out.v[0].data_len == n && !memcmp(out.v[0].pk, want, pk) && !memcmp(out.v[0].data, want + pk, n);
    buf[SEALED_HDR + randombytes_uniform((uint32_t)(len - SEALED_HDR))] ^=
        (char)(1 + randombytes_uniform(255));
    *forged += open1(&kr, buf, len, log, pos, &out) == 0;
    return ok;
}

/* Version 3 is XChaCha20-Poly1305 exactly: what format_seal writes opens with libsodium's
 * crypto_aead_xchacha20poly1305_ietf, and what libsodium seals opens with format_open, for
 * random keys, data and lengths (every length up to 300 bytes, both sides of each block). */
static void test_version_3_is_libsodiums_xchacha20_poly1305(void)
{
    static char buf[1024], want[1024];
    static unsigned char m[1024];
    int sealed_ok = 0, opened_ok = 0, forged = 0;
    for (size_t n = 0; n <= 300; n++) {
        size_t pk = n % 7 + 1, len;
        uint64_t log, pos;
        seal_random(false, n, pk, buf, want, &log, &pos, &len);
        unsigned char ad[SEALED_HDR + 16];
        ad_of(ad, buf, log, pos);
        size_t clen = len - SEALED_HDR - FORMAT_TAG;
        const unsigned char *key = keys[(unsigned char)buf[4] & 1];
        sealed_ok +=
            crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                m, NULL, (unsigned char *)buf + SEALED_HDR, clen, (unsigned char *)buf + len - FORMAT_TAG, ad,
                sizeof ad, (unsigned char *)buf + 12, key) == 0 &&
            clen == pk + n && !memcmp(m, want, clen);
        /* libsodium seals the same record anew under a fresh nonce: format_open reads it */
        randombytes_buf(buf + 12, 24);
        ad_of(ad, buf, log, pos);
        crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
            (unsigned char *)buf + SEALED_HDR, (unsigned char *)buf + len - FORMAT_TAG, NULL,
            (unsigned char *)want, clen, ad, sizeof ad, NULL, (unsigned char *)buf + 12, key);
        opened_ok += opens_then_forged_fails(buf, len, log, pos, want, pk, n, &forged);
    }
    CHECK(sealed_ok == 301);
    CHECK(opened_ok == 301);
    CHECK(forged == 0);
    randombytes_buf(keys, sizeof keys);
}

/* Version 4 is AES-256-GCM under HChaCha20(data key, nonce bytes 0..15) with the nonce 0^4 .
 * nonce bytes 16..23: what format_seal writes opens with libsodium's one-shot AES-256-GCM (past
 * 256 bytes another implementation than the OpenSSL one format.c uses there), and what
 * libsodium seals opens with format_open, for every length up to 300 bytes (both sides of where
 * format.c turns from libsodium's precomputed state to OpenSSL), from 500 to 520 and a few KiB,
 * also as on a CPU without AES instructions (OpenSSL for every length); a forged byte never
 * opens. */
static void test_version_4_is_aes_256_gcm_under_the_batchs_subkey(void)
{
    if (!crypto_aead_aes256gcm_is_available()) {
        fprintf(stderr, "  (skipped: no AES instructions: version 3 is written)\n");
        return;
    }
    static char buf[8192], want[8192];
    static unsigned char m[8192];
    int sealed_ok = 0, opened_ok = 0, portable_ok = 0, forged = 0, cases = 0;
    for (size_t k = 0; k <= 300 + 21 + 2; k++, cases++) {
        size_t n = k <= 300 ? k : k <= 321 ? 500 + (k - 301) : k == 322 ? 1024 : 4099;
        size_t pk = n % 5 + 1, len;
        uint64_t log, pos;
        seal_random(true, n, pk, buf, want, &log, &pos, &len);
        CHECK(buf[0] == 4);
        unsigned char ad[SEALED_HDR + 16], sub[32], n12[12] = {0};
        ad_of(ad, buf, log, pos);
        size_t clen = len - SEALED_HDR - FORMAT_TAG;
        crypto_core_hchacha20(sub, (unsigned char *)buf + 12, keys[(unsigned char)buf[4] & 1], NULL);
        memcpy(n12 + 4, buf + 28, 8);
        sealed_ok += crypto_aead_aes256gcm_decrypt_detached(m, NULL, (unsigned char *)buf + SEALED_HDR, clen,
                                                            (unsigned char *)buf + len - FORMAT_TAG, ad,
                                                            sizeof ad, n12, sub) == 0 &&
                     clen == pk + n && !memcmp(m, want, clen);
        /* libsodium seals it anew under another counter: format_open reads it */
        buf[28] ^= 1;
        n12[4] ^= 1;
        ad_of(ad, buf, log, pos);
        crypto_aead_aes256gcm_encrypt_detached((unsigned char *)buf + SEALED_HDR,
                                               (unsigned char *)buf + len - FORMAT_TAG, NULL,
                                               (unsigned char *)want, clen, ad, sizeof ad, NULL, n12, sub);
        opened_ok += opens_then_forged_fails(buf, len, log, pos, want, pk, n, &forged);
        /* on a CPU without AES instructions it opens through OpenSSL (libsodium's AES-GCM needs
         * them), and a forged byte does not; a sealer there writes version 3 */
        seal_random(true, n, pk, buf, want, &log, &pos, &len);
        format_test_no_aes(true);
        struct format_opener op; /* libsodium's state is never made there */
        format_opener_init(&op, &kr);
        struct store_records got = {.alloc = bump};
        arena_used = 0;
        portable_ok += format_open_with(&op, buf, len, log, pos, &got) == 0 && !op.gcm_short;
        format_opener_done(&op);
        portable_ok += opens_then_forged_fails(buf, len, log, pos, want, pk, n, &forged);
        struct format_sealer v3;
        format_sealer_init(&v3, &kr);
        portable_ok += !v3.gcm;
        format_sealer_done(&v3);
        format_test_no_aes(false);
        buf[0] = 3; /* the same bytes as a version 3 record: another cipher, it does not open */
        struct store_records out;
        forged += open1(&kr, buf, len, log, pos, &out) == 0;
    }
    CHECK(sealed_ok == cases);
    CHECK(opened_ok == cases);
    CHECK(portable_ok == 3 * cases);
    CHECK(forged == 0);
    randombytes_buf(keys, sizeof keys);
}

/* The same for longer records, whose key and first data bytes are sealed apart from the rest of
 * the data: keys of lengths around one and two blocks, data around the short records' limit
 * and up to a few KiB, sealed by format_seal and opened by libsodium. */
static void test_long_records_are_libsodiums_xchacha20_poly1305_too(void)
{
    static char buf[8192], want[8192];
    static unsigned char m[8192];
    static const size_t pks[] = {0, 1, 16, 63, 64, 65, 127, 128, 129, 200, 256};
    static const size_t datas[] = {0, 1, 64, 65, 100, 191, 192, 193, 256, 1000, 1024, 4099};
    int cases = 0, ok = 0;
    for (size_t i = 0; i < sizeof pks / sizeof pks[0]; i++)
        for (size_t j = 0; j < sizeof datas / sizeof datas[0]; j++) {
            randombytes_buf(keys, sizeof keys);
            randombytes_buf(want, pks[i] + datas[j]);
            struct format_sealer s;
            format_sealer_init(&s, &kr);
            s.gcm = false; /* version 3, as on a CPU without AES instructions */
            struct store_rec r = {.pk = want, .pk_len = pks[i], .data = want + pks[i], .data_len = datas[j]};
            uint64_t log = randombytes_random(), pos = POS(5000 + j) + i;
            size_t len;
            CHECK(format_seal(&s, buf, log, pos, 1, 1, &r, &len) == 0);
            format_sealer_done(&s);
            unsigned char ad[SEALED_HDR + 16];
            ad_of(ad, buf, log, pos);
            size_t clen = len - SEALED_HDR - FORMAT_TAG;
            const unsigned char *key = keys[(unsigned char)buf[4] & 1];
            ok +=
                crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                    m, NULL, (unsigned char *)buf + SEALED_HDR, clen, (unsigned char *)buf + len - FORMAT_TAG,
                    ad, sizeof ad, (unsigned char *)buf + 12, key) == 0 &&
                clen == pks[i] + datas[j] && !memcmp(m, want, clen);
            cases++;
        }
    CHECK(ok == cases);
    randombytes_buf(keys, sizeof keys);
}

/* Records written before indexes (flags 0: the version's header alone) open as they did, with
 * their position as their index: version 2 under its check, version 3 as libsodium seals it
 * with the 36-byte header as associated data; either with the flag set but no index fails. */
static void test_records_without_an_index_read_with_their_position_as_it(void)
{
    uint64_t log = 9, pos = POS(77) + 3;
    unsigned char v2[64] = {2, 0, 2, 0}, lp[16];
    memcpy(v2 + FORMAT_HDR, "pkplain", 7);
    for (int i = 0; i < 8; i++)
        lp[i] = (unsigned char)(log >> 8 * i), lp[8 + i] = (unsigned char)(pos >> 8 * i);
    uint32_t c = crc32c(crc32c(crc32c(0, lp, 16), v2, 4), v2 + FORMAT_HDR, 7);
    for (int i = 0; i < 4; i++)
        v2[4 + i] = (unsigned char)(c >> 8 * i);
    struct store_records out;
    CHECK(open1(NULL, (char *)v2, FORMAT_HDR + 7, log, pos, &out) == 0 && out.v[0].ix == pos &&
          out.v[0].data_len == 5 && !memcmp(out.v[0].data, "plain", 5));
    CHECK(format_index((char *)v2, FORMAT_HDR + 7, pos) == pos);
    v2[1] = FORMAT_F_IX;
    CHECK(open1(NULL, (char *)v2, FORMAT_HDR + 7, log, pos, &out) == STORE_CORRUPT);

    unsigned char v3[128] = {3, 0, 2, 0}, ad[FORMAT_SEALED_HDR + 16];
    v3[4] = 1; /* key id: bucket 0, generation 1 */
    randombytes_buf(v3 + 12, 24);
    memcpy(ad, v3, FORMAT_SEALED_HDR);
    memcpy(ad + FORMAT_SEALED_HDR, lp, 16);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(v3 + FORMAT_SEALED_HDR, v3 + FORMAT_SEALED_HDR + 7,
                                                        NULL, (const unsigned char *)"pkplain", 7, ad,
                                                        sizeof ad, NULL, v3 + 12, keys[1]);
    size_t len = FORMAT_SEALED_HDR + 7 + FORMAT_TAG;
    CHECK(open1(&kr, (char *)v3, len, log, pos, &out) == 0 && out.v[0].ix == pos && out.v[0].data_len == 5 &&
          !memcmp(out.v[0].data, "plain", 5));
    v3[1] = FORMAT_F_IX;
    CHECK(open1(&kr, (char *)v3, len, log, pos, &out) == STORE_CORRUPT);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    randombytes_buf(keys, sizeof keys);
    static const struct check_test tests[] = {
        {"a sealed record opens at its log and position only",
         test_a_sealed_record_opens_at_its_log_and_position_only},
        {"every flipped bit fails to open", test_every_flipped_bit_fails_to_open},
        {"two records swapped do not open", test_two_records_swapped_do_not_open},
        {"batches draw fresh nonces and look keys up once per bucket",
         test_batches_draw_fresh_nonces_and_look_keys_up_once_per_bucket},
        {"versions 2 and 1 are still read", test_versions_2_and_1_are_still_read},
        {"records without an index read with their position as it",
         test_records_without_an_index_read_with_their_position_as_it},
        {"version 3 is libsodium's XChaCha20-Poly1305", test_version_3_is_libsodiums_xchacha20_poly1305},
        {"version 4 is AES-256-GCM under the batch's subkey",
         test_version_4_is_aes_256_gcm_under_the_batchs_subkey},
        {"long records are libsodium's XChaCha20-Poly1305 too",
         test_long_records_are_libsodiums_xchacha20_poly1305_too},
    };
    return check_main("format", tests, sizeof tests / sizeof tests[0]);
}
