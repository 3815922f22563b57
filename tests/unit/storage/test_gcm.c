/* test_gcm.c: our AES-256-GCM is the standard one. Published test vectors, a byte-for-byte
 * cross-check with libsodium's AES-256-GCM in both directions, and every single flipped bit
 * failing to open. Skipped (and said so) on a CPU without AES-NI and PCLMULQDQ. */
#include <sodium.h>
#include <stdlib.h>

#include "check.h"
#include "gcm.h"

static size_t unhex(unsigned char *out, const char *hex)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return n;
}

/* McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 13-16 (AES-256,
 * 96-bit IV), and NIST's CAVS gcmEncryptExtIV256.rsp (Keylen 256, IVlen 96, PTlen 0,
 * AADlen 128, Taglen 128, Count 0): an empty plaintext with associated data */
static const struct {
    const char *key, *iv, *pt, *ad, *ct, *tag;
} vectors[] = {
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "",
     "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf"
     "5aa0de6"
     "57ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6"
     "393ba7a0a"
     "bcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf"
     "5aa0de6"
     "57ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6"
     "393ba7a0a"
     "bcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"78dc4e0aaf52d935c3c01eea57428f00ca1fd475f5da86a49c8dd73d68c8e223", "d79cf22d504cc793c3fb6c8a", "",
     "b96baa8c1c75a671bfb2d08d06be5f36", "", "3e5d486aa2e30b22e040b85723a06e76"},
};

static void test_the_published_aes_256_test_vectors(void)
{
    if (!gcm_available())
        return;
    for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
        unsigned char key[32], iv[12], pt[64], ad[32], ct[64], tag[16], c[64], t[16], m[64];
        unhex(key, vectors[v].key);
        unhex(iv, vectors[v].iv);
        size_t n = unhex(pt, vectors[v].pt), adlen = unhex(ad, vectors[v].ad);
        CHECK(unhex(ct, vectors[v].ct) == n);
        unhex(tag, vectors[v].tag);
        struct gcm_key k;
        gcm_init(&k, key);
        gcm_seal(&k, c, t, pt, n, ad, adlen, iv);
        CHECK(memcmp(c, ct, n) == 0);
        CHECK(memcmp(t, tag, 16) == 0);
        memset(m, 0xAA, sizeof m);
        CHECK(gcm_open(&k, m, ct, n, tag, ad, adlen, iv) == 0);
        CHECK(memcmp(m, pt, n) == 0);
        /* in place, both ways */
        memcpy(m, pt, n);
        gcm_seal(&k, m, t, m, n, ad, adlen, iv);
        CHECK(memcmp(m, ct, n) == 0 && memcmp(t, tag, 16) == 0);
        CHECK(gcm_open(&k, m, m, n, tag, ad, adlen, iv) == 0);
        CHECK(memcmp(m, pt, n) == 0);
        sodium_memzero(&k, sizeof k);
    }
}

/* Seal and open with both implementations, compare the bytes. */
static void cross_check(const struct gcm_key *k, const crypto_aead_aes256gcm_state *st,
                        const unsigned char *nonce, const unsigned char *m, size_t n, const unsigned char *ad,
                        size_t adlen, unsigned char *buf)
{
    unsigned char *c = buf, *c2 = buf + n, *p = buf + 2 * n, t[16], t2[16];
    gcm_seal(k, c, t, m, n, ad, adlen, nonce);
    crypto_aead_aes256gcm_encrypt_detached_afternm(c2, t2, NULL, m, n, ad, adlen, NULL, nonce, st);
    CHECK(memcmp(c, c2, n) == 0);
    CHECK(memcmp(t, t2, 16) == 0);
    /* ours opens libsodium's, libsodium opens ours */
    memset(p, 0x55, n);
    CHECK(gcm_open(k, p, c2, n, t2, ad, adlen, nonce) == 0);
    CHECK(memcmp(p, m, n) == 0);
    memset(p, 0x55, n);
    CHECK(crypto_aead_aes256gcm_decrypt_detached_afternm(p, NULL, c, n, t, ad, adlen, nonce, st) == 0);
    CHECK(memcmp(p, m, n) == 0);
}

static void test_it_seals_and_opens_as_libsodium_does(void)
{
    if (!gcm_available() || !crypto_aead_aes256gcm_is_available())
        return;
    static unsigned char m[65536 + 17], ad[64], buf[3 * sizeof m];
    static crypto_aead_aes256gcm_state st __attribute__((aligned(16)));
    unsigned char key[32], nonce[12];
    struct gcm_key k;
    for (size_t adlen = 0; adlen <= 64; adlen++) {
        randombytes_buf(key, sizeof key);
        gcm_init(&k, key);
        crypto_aead_aes256gcm_beforenm(&st, key);
        for (size_t n = 0; n <= 300; n++) {
            randombytes_buf(nonce, sizeof nonce);
            randombytes_buf(ad, adlen);
            randombytes_buf(m, n);
            cross_check(&k, &st, nonce, m, n, ad, adlen, buf);
        }
    }
    static const size_t large[] = {4096, 65535, 65536, 65536 + 17};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        randombytes_buf(key, sizeof key);
        gcm_init(&k, key);
        crypto_aead_aes256gcm_beforenm(&st, key);
        randombytes_buf(nonce, sizeof nonce);
        randombytes_buf(ad, sizeof ad);
        randombytes_buf(m, large[i]);
        cross_check(&k, &st, nonce, m, large[i], ad, i * 13 % 65, buf);
    }
    sodium_memzero(&k, sizeof k);
    sodium_memzero(&st, sizeof st);
}

/* Every single flipped bit of ciphertext, tag or associated data fails to open, and leaves
 * zeros where the message would have been. */
static void flips(size_t n, size_t adlen)
{
    unsigned char key[32], nonce[12], m[200], ad[64], c[200], tag[16], p[200];
    randombytes_buf(key, sizeof key);
    randombytes_buf(nonce, sizeof nonce);
    randombytes_buf(m, n);
    randombytes_buf(ad, adlen);
    struct gcm_key k;
    gcm_init(&k, key);
    gcm_seal(&k, c, tag, m, n, ad, adlen, nonce);
    CHECK(gcm_open(&k, p, c, n, tag, ad, adlen, nonce) == 0 && memcmp(p, m, n) == 0);
    unsigned char *part[3] = {c, tag, ad};
    size_t len[3] = {n, 16, adlen};
    int opened = 0;
    for (int w = 0; w < 3; w++) {
        for (size_t bit = 0; bit < 8 * len[w]; bit++) {
            part[w][bit / 8] ^= (unsigned char)(1u << bit % 8);
            memset(p, 0x55, sizeof p);
            if (gcm_open(&k, p, c, n, tag, ad, adlen, nonce) == 0)
                opened++;
            size_t nz = 0;
            for (size_t i = 0; i < n; i++)
                nz += p[i] != 0;
            CHECK(nz == 0);
            part[w][bit / 8] ^= (unsigned char)(1u << bit % 8);
        }
    }
    CHECK(opened == 0);
    /* another nonce or key does not open it either */
    nonce[11] ^= 1;
    CHECK(gcm_open(&k, p, c, n, tag, ad, adlen, nonce) == -1);
    nonce[11] ^= 1;
    key[0] ^= 1;
    gcm_init(&k, key);
    CHECK(gcm_open(&k, p, c, n, tag, ad, adlen, nonce) == -1);
    sodium_memzero(&k, sizeof k);
}

static void test_every_flipped_bit_of_ciphertext_tag_or_ad_fails_to_open(void)
{
    if (!gcm_available())
        return;
    static const size_t shapes[][2] = {{0, 0}, {0, 52}, {1, 0}, {16, 16}, {17, 40}, {110, 52}, {200, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        flips(shapes[i][0], shapes[i][1]);
}

static void test_skipped_only_where_the_cpu_lacks_aes_ni(void)
{
    if (!gcm_available())
        printf("test_gcm: this CPU lacks AES-NI, PCLMULQDQ or SSSE3: nothing to test\n");
    /* libsodium asks the same of its own AES-GCM: where it has it, so do we */
    CHECK(!crypto_aead_aes256gcm_is_available() || gcm_available());
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    static const struct check_test t[] = {
        T(test_the_published_aes_256_test_vectors),
        T(test_it_seals_and_opens_as_libsodium_does),
        T(test_every_flipped_bit_of_ciphertext_tag_or_ad_fails_to_open),
        T(test_skipped_only_where_the_cpu_lacks_aes_ni),
    };
    return check_main("test_gcm", t, sizeof t / sizeof t[0]);
}
