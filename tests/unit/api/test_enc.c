/* Unit tests of the answer writer: whatever bytes a string holds, the JSON answer is valid JSON
 * in valid UTF-8 (checked with the strict decoder), and CBOR text strings are valid UTF-8. */
#include <stdint.h>
#include <stdio.h>

#include "check.h"
#include "enc.h"
#include "utf8.h"
#include "validate.h"
#include "value.h"

/* The JSON of ["<s>"] parsed back; returns the decoded string (arena) or NULL. */
static const char *json_roundtrip(struct arena *a, const char *s, size_t len, size_t *outlen)
{
    struct enc e;
    enc_init(&e, WIRE_JSON);
    enc_arr_begin(&e);
    enc_str(&e, s, len);
    enc_arr_end(&e);
    struct kv *v;
    int rc = json_parse(a, e.b.p, e.b.len, &v);
    buf_free(&e.b);
    if (rc || v->type != KV_ARR || v->n != 1 || v->child->type != KV_STR)
        return NULL;
    *outlen = v->child->len;
    return v->child->s;
}

static void invalid_bytes_become_replacement_characters(void)
{
    struct arena a;
    arena_init(&a);
    size_t n;
    const char *s = json_roundtrip(&a,
                                   "a\xff"
                                   "b",
                                   3, &n);
    CHECK(s && n == 5 &&
          !memcmp(s,
                  "a\xef\xbf\xbd"
                  "b",
                  5));
    s = json_roundtrip(&a, "\xed\xa0\x80", 3, &n); /* a surrogate in UTF-8: three bytes, three U+FFFD */
    CHECK(s && n == 9);
    s = json_roundtrip(&a, "\xc0\xaf", 2, &n); /* overlong */
    CHECK(s && n == 6);
    s = json_roundtrip(&a, "caf\xc3\xa9 \xf0\x9f\x98\x80", 10, &n); /* valid text is kept as is */
    CHECK(s && n == 10 && !memcmp(s, "caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
    s = json_roundtrip(&a, "\xf0\x9f\x98", 3, &n); /* truncated at the end */
    CHECK(s && n == 9);
    arena_free(&a);
}

static void control_characters_are_escaped(void)
{
    struct enc e;
    enc_init(&e, WIRE_JSON);
    enc_str(&e, "\x01\x1f\"\\\n\x7f", 6);
    CHECK(e.b.len == 21 && !memcmp(e.b.p, "\"\\u0001\\u001f\\\"\\\\\\n\x7f\"", 21));
    buf_free(&e.b);
}

static void cbor_text_is_utf8(void)
{
    struct enc e;
    enc_init(&e, WIRE_CBOR);
    enc_str(&e, "a\xff", 2);
    CHECK(e.b.len == 5 && !memcmp(e.b.p,
                                  "\x64"
                                  "a\xef\xbf\xbd",
                                  5));
    buf_free(&e.b);
    enc_init(&e, WIRE_CBOR);
    enc_str(&e, "\xc3\xa9", 2);
    CHECK(e.b.len == 3 && !memcmp(e.b.p, "\x62\xc3\xa9", 3));
    buf_free(&e.b);
}

static void utf8_follows_rfc3629(void)
{
    CHECK(utf8_valid_nonul(
        "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 21));
    CHECK(!utf8_valid_nonul("\xc1\xbf", 2));
    CHECK(!utf8_valid_nonul("\xe0\x9f\xbf", 3));
    CHECK(!utf8_valid_nonul("\xed\xbf\xbf", 3));
    CHECK(!utf8_valid_nonul("\xf0\x8f\xbf\xbf", 4));
    CHECK(!utf8_valid_nonul("\xf5\x80\x80\x80", 4));
    CHECK(!utf8_valid_nonul("\xe2\x82", 2));
    CHECK(!utf8_valid_nonul("a\0", 2));
}

/* RFC 4648's vectors, and every length to 200 bytes (both sides of the 12-byte blocks the
 * encoder takes at once) of every byte value decodes back to its bytes. */
static void base64_is_rfc4648(void)
{
    const char *const vec[][2] = {{"", ""},
                                  {"f", "Zg=="},
                                  {"fo", "Zm8="},
                                  {"foo", "Zm9v"},
                                  {"foob", "Zm9vYg=="},
                                  {"fooba", "Zm9vYmE="},
                                  {"foobar", "Zm9vYmFy"},
                                  {"foobarfoobarfoob", "Zm9vYmFyZm9vYmFyZm9vYg=="}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        struct buf b = BUF_INIT;
        enc_base64(&b, vec[i][0], strlen(vec[i][0]));
        buf_addc(&b, 0);
        CHECK_STR(b.p, vec[i][1]);
        buf_free(&b);
    }
    static struct arena a;
    unsigned char d[200];
    int same = 0;
    for (size_t n = 0; n <= sizeof d; n++) {
        for (size_t i = 0; i < n; i++)
            d[i] = (unsigned char)(i * 97 + n);
        struct buf b = BUF_INIT;
        enc_base64(&b, d, n);
        char *out, bad;
        size_t outlen;
        const char *why;
        same += b.len == (n + 2) / 3 * 4 && base64_decode(&a, b.p, b.len, &out, &outlen, &why, &bad) == 0 &&
                outlen == n && !memcmp(out, d, n);
        buf_free(&b);
        arena_free(&a);
    }
    CHECK(same == (int)sizeof d + 1);
}

/* enc_digits writes the low `width` digits, zero-padded, as printf would: every width up to 19
 * over boundaries and random values (width 9, a sequence number's limb, has a path of its own;
 * its constant was checked for every value below 10^9 when it was written). */
static void digits_are_printfs(void)
{
    static const uint64_t edges[] = {
        0,         1,         9,         10,        99,        100,        12345678,
        99999999,  100000000, 123456789, 999999998, 999999999, 1000000000, 1234567890123ull,
        UINT64_MAX};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int bad = 0;
    for (int width = 1; width <= 19; width++) {
        uint64_t mod = 1;
        for (int i = 0; i < width; i++)
            mod *= 10;
        for (size_t i = 0; i < sizeof edges / sizeof edges[0] + 20000; i++) {
            uint64_t v = i < sizeof edges / sizeof edges[0] ? edges[i] : (x = x * 6364136223846793005ull + 1);
            if (i >= sizeof edges / sizeof edges[0] && i % 2)
                v %= mod; /* half of them within the width */
            char got[24] = {0}, want[24];
            enc_digits(got, v, width);
            snprintf(want, sizeof want, "%0*llu", width, (unsigned long long)(v % mod));
            bad += memcmp(got, want, (size_t)width) != 0;
        }
    }
    CHECK(bad == 0);
}

CHECK_RUN("enc", T(invalid_bytes_become_replacement_characters), T(control_characters_are_escaped),
          T(cbor_text_is_utf8), T(utf8_follows_rfc3629), T(base64_is_rfc4648), T(digits_are_printfs))
