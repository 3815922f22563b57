/* format.c: sealing and opening records (see format.h).
 *
 * A sealer is one batch's state: the random half of the nonce, drawn once, and a counter, so
 * sealing a record costs one AEAD and no allocation; the data key is looked up once per log
 * and bucket of the batch, not per record. Version 3 is encrypted into the output: from the
 * caller's bytes for a short record (see short_stream), else copied there and sealed in place. XChaCha20's
 * subkey is derived once per sealer and data key, and an opener keeps the last one it derived (format.h says
 * why this is XChaCha20-Poly1305 exactly); both wipe it when they are done.
 *
 * format_open appends to a caller's batch whose entries come from the caller's allocator (an
 * arena): the array grows by doubling into a fresh allocation, so a batch of n records costs at
 * most twice its final array, and nothing is freed one by one. A version 3 record is decrypted
 * straight into that allocation, and only once its tag checks out.
 *
 * Version 4 (AES-256-GCM): a sealer and an opener each keep an expanded key (gcm.h) for records
 * of up to GCM_SHORT_MAX bytes and one OpenSSL cipher context for longer ones, each set up when
 * their subkey changes (once per batch and data key), so a record costs one pass over the
 * associated data and the record. */
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "format.h"
#include "gcm.h"

#define V1_HDR 32
#define AD_MAX (FORMAT_SEALED_HDR + FORMAT_IX_LEN + 16)

_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24, "nonce size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == FORMAT_TAG, "tag size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == KEYRING_KEY_BYTES, "key size");
_Static_assert(FORMAT_SEALED_HDR == 4 + 8 + 24, "version 3 header layout");

static void le64(unsigned char *o, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        o[i] = (unsigned char)v;
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The header's length for a record's first two bytes: the version's, and the index's 8 bytes
 * after it when the flags say so; 0 for a version not ours, more than any record holds for
 * flags not ours. */
static size_t hdr_of(const unsigned char *v)
{
    size_t ix = v[1] == FORMAT_F_IX ? FORMAT_IX_LEN : v[1] == 0 ? 0 : SIZE_MAX / 2;
    switch (v[0]) {
    case FORMAT_VERSION: return FORMAT_HDR + ix;
    case FORMAT_XCHACHA_VERSION:
    case FORMAT_SEALED_VERSION: return FORMAT_SEALED_HDR + ix;
    default: return 0;
    }
}

static uint32_t check_of(const unsigned char *rec, size_t len, uint64_t log, uint64_t pos)
{
    unsigned char lp[16];
    le64(lp, log);
    le64(lp + 8, pos);
    uint32_t c = crc32c(0, lp, sizeof lp);
    c = crc32c(c, rec, 4);
    return crc32c(c, rec + FORMAT_HDR, len - FORMAT_HDR);
}

/* The associated data of a sealed record: its header (hlen bytes), log, pos; its length. */
static size_t ad_of(unsigned char ad[AD_MAX], const unsigned char *hdr, size_t hlen, uint64_t log,
                    uint64_t pos)
{
    memcpy(ad, hdr, hlen);
    le64(ad + hlen, log);
    le64(ad + hlen + 8, pos);
    return hlen + 16;
}

/* Whether this CPU has AES and carry-less multiply instructions (what gcm.c needs, and what
 * makes AES-GCM cheaper than ChaCha20-Poly1305). */
static bool no_aes; /* format_test_no_aes */

void format_test_no_aes(bool on) { no_aes = on; }

static bool aes_fast(void)
{
    if (no_aes)
        return false;
    return gcm_available();
}

/* Version 4 records of up to GCM_SHORT_MAX bytes of key and data go through gcm.c's AES-256-GCM
 * with its expanded key: OpenSSL's EVP calls cost more per record than such a record takes to
 * encrypt (setting the nonce looks parameters up by name), and so does libsodium 1.0.18's
 * (gcm.c says how much), while for longer records OpenSSL's AES is the faster (measured here:
 * about even at 2 KiB, OpenSSL 40 % faster at 64 KiB). Both are AES-256-GCM with the same key,
 * 12-byte nonce, associated data and tag: the bytes are the same either way. */
#define GCM_SHORT_MAX 2048

/* The short-record key *state (allocated on first use) expanded from subkey, or NULL. */
static const struct gcm_key *gcm_short(void **state, bool *keyed, const unsigned char *subkey)
{
    if (!*state && !(*state = aligned_alloc(16, sizeof(struct gcm_key))))
        return NULL;
    if (!*keyed) {
        gcm_init(*state, subkey);
        *keyed = true;
    }
    return *state;
}

static void gcm_short_free(void **state, bool *keyed)
{
    if (*state) {
        sodium_memzero(*state, sizeof(struct gcm_key));
        free(*state);
    }
    *state = NULL;
    *keyed = false;
}

void format_sealer_init(struct format_sealer *s, const struct store_keyring *kr)
{
    *s = (struct format_sealer){.kr = kr, .gcm = kr && aes_fast()};
    if (kr)
        randombytes_buf(s->nonce, 16);
}

void format_sealer_done(struct format_sealer *s)
{
    sodium_memzero(s->subkey, sizeof s->subkey);
    EVP_CIPHER_CTX_free(s->gcm_ctx); /* (it wipes its key schedule) */
    s->gcm_ctx = NULL;
    gcm_short_free(&s->gcm_short, &s->gcm_short_keyed);
}

/* XChaCha20-Poly1305 as ChaCha20-Poly1305 (IETF) under the subkey: the 12-byte nonce is four
 * zero bytes and the last 8 of the 24-byte one */
static void ietf_nonce(unsigned char n12[12], const unsigned char *n24)
{
    memset(n12, 0, 4);
    memcpy(n12 + 4, n24 + 16, 8);
}

/* ChaCha20-Poly1305 (IETF, RFC 8439 2.8) of a short message, spelled out: block 0 of the
 * key stream is the Poly1305 key and blocks 1.. encrypt the message, so one call for four
 * blocks (which libsodium computes side by side) serves a message of up to SHORT_MAX bytes,
 * where libsodium's AEAD asks for block 0 and the message's blocks one by one, at about twice
 * the cost for the records of a few hundred bytes. The bytes are exactly the AEAD's. */
#define SHORT_MAX 192

/* The key stream for a short message: ks[0..32] the Poly1305 key, ks[64..] the message's. */
static void short_stream(unsigned char ks[256], const unsigned char n12[12], const unsigned char *key)
{
    crypto_stream_chacha20_ietf(ks, 256, n12, key);
}

/* The tag over ad and ciphertext c (clen bytes) with the Poly1305 key ks[0..32]. */
static void short_tag(unsigned char tag[16], const unsigned char *ks, const unsigned char *ad, size_t adlen,
                      const unsigned char *c, size_t clen)
{
    static const unsigned char zero[16];
    unsigned char lens[16];
    crypto_onetimeauth_poly1305_state st;
    crypto_onetimeauth_poly1305_init(&st, ks);
    crypto_onetimeauth_poly1305_update(&st, ad, adlen);
    crypto_onetimeauth_poly1305_update(&st, zero, (16 - adlen % 16) % 16);
    crypto_onetimeauth_poly1305_update(&st, c, clen);
    crypto_onetimeauth_poly1305_update(&st, zero, (16 - clen % 16) % 16);
    le64(lens, adlen);
    le64(lens + 8, clen);
    crypto_onetimeauth_poly1305_update(&st, lens, sizeof lens);
    crypto_onetimeauth_poly1305_final(&st, tag);
    sodium_memzero(&st, sizeof st);
}

static void xor_into(unsigned char *o, const unsigned char *a, const unsigned char *ks, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, ks + i, 8);
        x ^= y;
        memcpy(o + i, &x, 8);
    }
    for (; i < n; i++)
        o[i] = a[i] ^ ks[i];
}

static size_t seal_v2(char *out, uint64_t log, uint64_t pos, uint64_t ix, const struct store_rec *r)
{
    unsigned char *o = (unsigned char *)out;
    o[0] = FORMAT_VERSION;
    o[1] = FORMAT_F_IX;
    o[2] = (unsigned char)r->pk_len;
    o[3] = (unsigned char)(r->pk_len >> 8);
    le64(o + FORMAT_HDR, ix);
    const size_t h = FORMAT_HDR + FORMAT_IX_LEN;
    memcpy(o + h, r->pk, r->pk_len);
    if (r->data_len)
        memcpy(o + h + r->pk_len, r->data, r->data_len);
    size_t len = h + r->pk_len + r->data_len;
    uint32_t c = check_of(o, len, log, pos);
    for (int i = 0; i < 4; i++, c >>= 8)
        o[4 + i] = (unsigned char)c;
    return len;
}

int format_seal(struct format_sealer *s, char *out, uint64_t log, uint64_t pos, uint64_t ix, size_t n,
                const struct store_rec *r, size_t *len)
{
    if (!s->kr) {
        *len = seal_v2(out, log, pos, ix, r);
        return 0;
    }
    if (!s->key || s->log != log || pos >= s->bucket_end || pos < s->bucket_end - keyring_bucket_start(1)) {
        uint64_t b = keyring_bucket(pos);
        uint32_t want = n > KEYRING_KEY_RECORDS ? KEYRING_KEY_RECORDS : (uint32_t)n;
        int rc = s->kr->seal_key(s->kr->ctx, log, b, want ? want : 1, &s->key_id, &s->key);
        if (rc) {
            s->key = NULL;
            return rc;
        }
        s->log = log;
        s->bucket_end = keyring_bucket_start(b + 1);
        crypto_core_hchacha20(s->subkey, s->nonce, s->key, NULL);
        s->gcm_short_keyed = false;
        if (s->gcm && ((!s->gcm_ctx && !(s->gcm_ctx = EVP_CIPHER_CTX_new())) ||
                       EVP_EncryptInit_ex(s->gcm_ctx, EVP_aes_256_gcm(), NULL, s->subkey, NULL) != 1)) {
            s->key = NULL;
            return STORE_NOMEM;
        }
    }
    unsigned char *o = (unsigned char *)out;
    o[0] = s->gcm ? FORMAT_SEALED_VERSION : FORMAT_XCHACHA_VERSION;
    o[1] = FORMAT_F_IX;
    o[2] = (unsigned char)r->pk_len;
    o[3] = (unsigned char)(r->pk_len >> 8);
    le64(o + 4, s->key_id);
    le64(s->nonce + 16, s->ctr++);
    memcpy(o + 12, s->nonce, 24);
    le64(o + FORMAT_SEALED_HDR, ix);
    const size_t h = FORMAT_SEALED_HDR + FORMAT_IX_LEN;
    unsigned char *m = o + h;
    size_t mlen = r->pk_len + r->data_len;
    unsigned char ad[AD_MAX];
    size_t adlen = ad_of(ad, o, h, log, pos);
    unsigned char n12[12];
    ietf_nonce(n12, o + 12);
    if (s->gcm && mlen <= GCM_SHORT_MAX) {
        const struct gcm_key *k = gcm_short(&s->gcm_short, &s->gcm_short_keyed, s->subkey);
        if (!k)
            return STORE_NOMEM;
        memcpy(m, r->pk, r->pk_len);
        if (r->data_len)
            memcpy(m + r->pk_len, r->data, r->data_len);
        gcm_seal(k, m, m + mlen, m, mlen, ad, adlen, n12);
    } else if (s->gcm) { /* encrypted from the caller's bytes, no copy first */
        EVP_CIPHER_CTX *x = s->gcm_ctx;
        int ol;
        if (EVP_EncryptInit_ex(x, NULL, NULL, NULL, n12) != 1 ||
            EVP_EncryptUpdate(x, NULL, &ol, ad, (int)adlen) != 1 ||
            EVP_EncryptUpdate(x, m, &ol, (const unsigned char *)r->pk, (int)r->pk_len) != 1 ||
            (r->data_len && EVP_EncryptUpdate(x, m + r->pk_len, &ol, (const unsigned char *)r->data,
                                              (int)r->data_len) != 1) ||
            EVP_EncryptFinal_ex(x, m + mlen, &ol) != 1 ||
            EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, FORMAT_TAG, m + mlen) != 1)
            return STORE_NOMEM;
    } else if (mlen <= SHORT_MAX) { /* encrypted from the caller's bytes, no copy first */
        unsigned char ks[256];
        short_stream(ks, n12, s->subkey);
        xor_into(m, r->pk, ks + 64, r->pk_len);
        if (r->data_len)
            xor_into(m + r->pk_len, r->data, ks + 64 + r->pk_len, r->data_len);
        short_tag(m + mlen, ks, ad, adlen, m, mlen);
        sodium_memzero(ks, sizeof ks);
    } else {
        memcpy(m, r->pk, r->pk_len);
        memcpy(m + r->pk_len, r->data, r->data_len);
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(m, m + mlen, NULL, m, mlen, ad, adlen, NULL, n12,
                                                           s->subkey);
    }
    *len = h + mlen + FORMAT_TAG;
    return 0;
}

static bool zero(const unsigned char *p, size_t n)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Where the key and data are in a stored record, and its index (pos for a record written
 * without one), or STORE_CORRUPT. *sealed: version 3 or 4. */
static int parse(const char *val, size_t len, uint64_t log, uint64_t pos, size_t *hdr, size_t *pk_len,
                 uint64_t *ix, bool *sealed)
{
    const unsigned char *v = (const unsigned char *)val;
    if (len < 4)
        return STORE_CORRUPT;
    size_t pl = (size_t)v[2] | (size_t)v[3] << 8, h = hdr_of(v);
    *sealed = false;
    if ((v[0] == FORMAT_XCHACHA_VERSION || v[0] == FORMAT_SEALED_VERSION) && len >= h + FORMAT_TAG &&
        pl <= len - h - FORMAT_TAG) {
        *sealed = true;
    } else if (v[0] == FORMAT_VERSION && len >= h && pl <= len - h) {
        uint32_t want = (uint32_t)v[4] | (uint32_t)v[5] << 8 | (uint32_t)v[6] << 16 | (uint32_t)v[7] << 24;
        if (check_of(v, len, log, pos) != want)
            return STORE_CORRUPT;
    } else if (v[0] == 1 && v[1] == 0 && len >= V1_HDR && pl <= len - V1_HDR && zero(v + 4, V1_HDR - 4)) {
        /* (its reserved bytes were always written as zeros: a sealed record with a flipped
           version byte is not taken for one) */
        h = V1_HDR;
    } else {
        return STORE_CORRUPT;
    }
    *hdr = h;
    *pk_len = pl;
    *ix = v[1] == FORMAT_F_IX ? rd64(v + h - FORMAT_IX_LEN) : pos;
    return 0;
}

void format_opener_init(struct format_opener *o, const struct store_keyring *kr)
{
    *o = (struct format_opener){.kr = kr};
}

void format_opener_done(struct format_opener *o)
{
    sodium_memzero(o->key, sizeof o->key);
    sodium_memzero(o->subkey, sizeof o->subkey);
    o->have = false;
    EVP_CIPHER_CTX_free(o->gcm_ctx);
    o->gcm_ctx = NULL;
    o->gcm_keyed = false;
    gcm_short_free(&o->gcm_short, &o->gcm_short_keyed);
}

/* Open a version 4 record's ciphertext c (clen bytes) with tag into m. */
static int open_gcm(struct format_opener *o, const unsigned char *ad, size_t adlen,
                    const unsigned char n12[12], const unsigned char *c, size_t clen,
                    const unsigned char *tag, unsigned char *m)
{
    /* gcm.c only where the CPU has AES instructions (it needs them: a data directory sealed
     * elsewhere is read here through OpenSSL) */
    if (clen <= GCM_SHORT_MAX && aes_fast()) {
        const struct gcm_key *k = gcm_short(&o->gcm_short, &o->gcm_short_keyed, o->subkey);
        if (!k)
            return STORE_NOMEM;
        /* (it leaves zeros in m when the tag does not check out) */
        return gcm_open(k, m, c, clen, tag, ad, adlen, n12) ? STORE_CORRUPT : 0;
    }
    if (!o->gcm_ctx && !(o->gcm_ctx = EVP_CIPHER_CTX_new()))
        return STORE_NOMEM;
    EVP_CIPHER_CTX *x = o->gcm_ctx;
    if (!o->gcm_keyed) {
        if (EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, o->subkey, NULL) != 1)
            return STORE_NOMEM;
        o->gcm_keyed = true;
    }
    unsigned char t[FORMAT_TAG];
    memcpy(t, tag, sizeof t);
    int ol;
    if (EVP_DecryptInit_ex(x, NULL, NULL, NULL, n12) != 1 ||
        EVP_DecryptUpdate(x, NULL, &ol, ad, (int)adlen) != 1 ||
        EVP_DecryptUpdate(x, m, &ol, c, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, FORMAT_TAG, t) != 1 ||
        EVP_DecryptFinal_ex(x, m + ol, &ol) != 1) {
        sodium_memzero(m, clen); /* nothing of a record that does not check out is kept */
        return STORE_CORRUPT;
    }
    return 0;
}

/* Decrypt a version 3 or 4 record (a header of h bytes) into m (len - h - tag bytes). */
static int unseal(struct format_opener *o, const unsigned char *v, size_t len, size_t h, uint64_t log,
                  uint64_t pos, unsigned char *m, uint32_t *cls)
{
    const unsigned char *key;
    if (!o->kr || o->kr->open_key(o->kr->ctx, log, rd64(v + 4), &key, cls))
        return STORE_CORRUPT;
    const unsigned char *n24 = v + 12;
    /* (a plain compare: both keys are ours, nothing a client sends is compared with them) */
    if (!o->have || memcmp(o->prefix, n24, 16) || memcmp(o->key, key, 32)) {
        memcpy(o->key, key, 32);
        memcpy(o->prefix, n24, 16);
        crypto_core_hchacha20(o->subkey, n24, key, NULL);
        o->have = true;
        o->gcm_keyed = false;
        o->gcm_short_keyed = false;
    }
    unsigned char ad[AD_MAX], n12[12];
    size_t adlen = ad_of(ad, v, h, log, pos);
    ietf_nonce(n12, n24);
    size_t clen = len - h - FORMAT_TAG;
    const unsigned char *c = v + h;
    if (v[0] == FORMAT_SEALED_VERSION)
        return open_gcm(o, ad, adlen, n12, c, clen, v + len - FORMAT_TAG, m);
    if (clen > SHORT_MAX)
        return crypto_aead_chacha20poly1305_ietf_decrypt_detached(m, NULL, c, clen, v + len - FORMAT_TAG, ad,
                                                                  adlen, n12, o->subkey)
                   ? STORE_CORRUPT
                   : 0;
    unsigned char ks[256], tag[16];
    short_stream(ks, n12, o->subkey);
    short_tag(tag, ks, ad, adlen, c, clen);
    int rc = crypto_verify_16(tag, v + len - FORMAT_TAG) ? STORE_CORRUPT : 0;
    if (rc == 0) /* nothing is decrypted unless the tag checks out */
        xor_into(m, c, ks + 64, clen);
    sodium_memzero(ks, sizeof ks);
    return rc;
}

int format_check_keyless(const char *val, size_t len, uint64_t log, uint64_t pos, uint64_t *ix)
{
    size_t hdr, pl;
    bool sealed;
    uint64_t x;
    return parse(val, len, log, pos, &hdr, &pl, ix ? ix : &x, &sealed);
}

uint64_t format_index(const char *val, size_t len, uint64_t pos)
{
    const unsigned char *v = (const unsigned char *)val;
    size_t h = len >= 2 && v[1] == FORMAT_F_IX ? hdr_of(v) : 0;
    return h && len >= h ? rd64(v + h - FORMAT_IX_LEN) : pos;
}

int format_check(const struct store_keyring *kr, const char *val, size_t len, uint64_t log, uint64_t pos)
{
    size_t hdr, pl;
    bool sealed;
    uint64_t ix;
    int rc = parse(val, len, log, pos, &hdr, &pl, &ix, &sealed);
    if (rc || !sealed)
        return rc;
    size_t mlen = len - hdr - FORMAT_TAG;
    unsigned char *m = sodium_malloc(mlen ? mlen : 1);
    if (!m)
        return STORE_NOMEM;
    uint32_t cls;
    struct format_opener o;
    format_opener_init(&o, kr);
    rc = unseal(&o, (const unsigned char *)val, len, hdr, log, pos, m, &cls);
    format_opener_done(&o);
    sodium_free(m);
    return rc;
}

int format_open(const struct store_keyring *kr, const char *val, size_t len, uint64_t log, uint64_t pos,
                struct store_records *out)
{
    struct format_opener o;
    format_opener_init(&o, kr);
    int rc = format_open_with(&o, val, len, log, pos, out);
    format_opener_done(&o);
    return rc;
}

int format_open_with(struct format_opener *o, const char *val, size_t len, uint64_t log, uint64_t pos,
                     struct store_records *out)
{
    size_t hdr, pl;
    bool sealed;
    uint64_t ix;
    int rc = parse(val, len, log, pos, &hdr, &pl, &ix, &sealed);
    if (rc && !out->index_only)
        return rc;
    size_t n = out->n;
    if ((n & (n - 1)) == 0 && (n == 0 || n >= 16)) { /* 0, 16, 32, 64...: room for twice as many */
        size_t cap = n ? 2 * n : 16;
        struct store_read *v = out->alloc(out->actx, cap * sizeof *v);
        if (!v)
            return STORE_NOMEM;
        if (n)
            memcpy(v, out->v, n * sizeof *v);
        out->v = v;
    }
    size_t body = rc ? 0 : len - hdr - (sealed ? FORMAT_TAG : 0);
    if (out->index_only) { /* opened as a read opens it, its bytes then dropped */
        uint32_t cls;
        unsigned char *m = !rc && sealed ? out->alloc(out->actx, body ? body : 1) : NULL;
        if (!rc && sealed && !m)
            return STORE_NOMEM;
        if (!rc && sealed)
            rc = unseal(o, (const unsigned char *)val, len, hdr, log, pos, m, &cls);
        out->v[n] = (struct store_read){.pos = pos, .ix = rc ? STORE_IX_NONE : ix, .pk = "", .data = ""};
        out->n = n + 1;
        return 0;
    }
    char *p = out->alloc(out->actx, body ? body : 1);
    if (!p)
        return STORE_NOMEM;
    uint32_t cls = 0;
    if (sealed) {
        if ((rc = unseal(o, (const unsigned char *)val, len, hdr, log, pos, (unsigned char *)p, &cls)))
            return rc;
    } else {
        memcpy(p, val + hdr, body);
    }
    out->v[n] = (struct store_read){
        .pos = pos, .ix = ix, .key_class = cls, .pk = p, .pk_len = pl, .data = p + pl, .data_len = body - pl};
    out->n = n + 1;
    out->bytes += body;
    return 0;
}
