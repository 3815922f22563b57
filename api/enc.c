/* enc.c: the answer writer (enc.h) in its two renderings. JSON: escaping has a fast path for
 * runs of plain characters; base64 is written in 3-byte groups without intermediate copies.
 * CBOR (RFC 8949): indefinite-length maps and arrays; timestamps are tag 1 with integer
 * milliseconds, as AWS's CBOR protocol carries them. Strings are written as valid UTF-8
 * whatever their bytes (U+FFFD stands in for a byte that is not UTF-8), and JSON escapes every
 * control character, so an answer is always readable by a strict client. */
#include "enc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>

#include "utf8.h"

/* "00".."99": two digits per division */
static const char pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

void enc_digits(char *out, uint64_t v, int width)
{
    if (width == 9 && v < 1000000000u) { /* a limb of a sequence number: no division */
        /* t / 2^57 is v / 10^8, and each step moves the fraction's next two digits above bit
         * 57 (this constant, ceil(2^57 / 10^8), is exact for every v below 10^9) */
        const uint64_t low = (1ull << 57) - 1;
        uint64_t t = v * 1441151881u;
        out[0] = (char)('0' + (t >> 57));
        for (int k = 0; k < 4; k++) {
            t = (t & low) * 100;
            memcpy(out + 1 + 2 * k, pairs + 2 * (t >> 57), 2);
        }
        return;
    }
    int i = width;
    while (i >= 2) {
        memcpy(out + i - 2, pairs + 2 * (v % 100), 2);
        v /= 100;
        i -= 2;
    }
    if (i)
        out[0] = (char)('0' + v % 10);
}

size_t enc_u64(char *out, uint64_t v)
{
    int n = 1;
    for (uint64_t t = v; t >= 10; t /= 10)
        n++;
    enc_digits(out, v, n);
    return (size_t)n;
}

void enc_init(struct enc *e, enum wire_fmt fmt)
{
    e->b = (struct buf)BUF_INIT;
    e->fmt = fmt;
    e->depth = 0;
    e->need_comma[0] = false;
}

static void sep(struct enc *e)
{
    if (e->need_comma[e->depth])
        buf_addc(&e->b, ',');
    e->need_comma[e->depth] = true;
}

static void cbor_head(struct buf *b, unsigned major, uint64_t n)
{
    unsigned char h[9];
    size_t len;
    if (n < 24) {
        h[0] = (unsigned char)(major << 5 | n);
        len = 1;
    } else if (n <= 0xFF) {
        h[0] = (unsigned char)(major << 5 | 24);
        h[1] = (unsigned char)n;
        len = 2;
    } else if (n <= 0xFFFF) {
        h[0] = (unsigned char)(major << 5 | 25);
        h[1] = (unsigned char)(n >> 8);
        h[2] = (unsigned char)n;
        len = 3;
    } else if (n <= 0xFFFFFFFFu) {
        h[0] = (unsigned char)(major << 5 | 26);
        for (int i = 0; i < 4; i++)
            h[1 + i] = (unsigned char)(n >> (24 - 8 * i));
        len = 5;
    } else {
        h[0] = (unsigned char)(major << 5 | 27);
        for (int i = 0; i < 8; i++)
            h[1 + i] = (unsigned char)(n >> (56 - 8 * i));
        len = 9;
    }
    buf_add(b, h, len);
}

static void cbor_int(struct buf *b, int64_t v)
{
    if (v >= 0)
        cbor_head(b, 0, (uint64_t)v);
    else
        cbor_head(b, 1, (uint64_t)(-1 - v));
}

static void open_(struct enc *e, char c)
{
    if (e->fmt == WIRE_CBOR) {
        buf_addc(&e->b, (char)(c == '{' ? 0xBF : 0x9F));
        return;
    }
    sep(e);
    buf_addc(&e->b, c);
    if (e->depth < ENC_MAX_DEPTH - 1)
        e->depth++;
    e->need_comma[e->depth] = false;
}

static void close_(struct enc *e, char c)
{
    if (e->fmt == WIRE_CBOR) {
        buf_addc(&e->b, (char)0xFF);
        return;
    }
    buf_addc(&e->b, c);
    if (e->depth > 0)
        e->depth--;
}

void enc_obj_begin(struct enc *e) { open_(e, '{'); }
void enc_obj_end(struct enc *e) { close_(e, '}'); }
void enc_arr_begin(struct enc *e) { open_(e, '['); }
void enc_arr_end(struct enc *e) { close_(e, ']'); }

/* A JSON string of the len bytes at s. Whatever the bytes, the text is valid JSON and valid
 * UTF-8: control characters are escaped, and a byte that does not start a valid UTF-8 sequence
 * is written as U+FFFD (what a stored key that predates validation, or a message cut in the
 * middle of a character, becomes), so no stored value can make an answer unreadable. */
static void quoted(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    buf_grow(b, len + 2);
    b->p[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < len;) {
        i += utf8_json_plain(s + i, len - i);
        if (i >= len)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)s + i, len - i);
            if (k) {
                i += k;
                continue;
            }
        }
        buf_add(b, s + run, i - run);
        i++;
        run = i;
        switch (c) {
        case '"': buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        default:
            if (c >= 0x80) {
                buf_add(b, "\xEF\xBF\xBD", 3); /* U+FFFD for a byte that is not UTF-8 */
            } else {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_add(b, u, 6);
            }
        }
    }
    buf_add(b, s + run, len - run);
    buf_addc(b, '"');
}

/* A CBOR text string: the bytes as they are when they are UTF-8 (the common case, checked
 * without a copy), otherwise with U+FFFD for every byte that is not, as quoted() does. */
static void cbor_text(struct buf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t extra = 0;
    for (size_t i = 0; i < len;) {
        size_t k = u[i] < 0x80 ? 1 : utf8_seq(u + i, len - i);
        if (!k) {
            extra += 2; /* one byte becomes three */
            k = 1;
        }
        i += k;
    }
    cbor_head(b, 3, len + extra);
    if (!extra) {
        buf_add(b, s, len);
        return;
    }
    for (size_t i = 0; i < len;) {
        size_t k = u[i] < 0x80 ? 1 : utf8_seq(u + i, len - i);
        if (k) {
            buf_add(b, s + i, k);
            i += k;
        } else {
            buf_add(b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
}

void enc_key(struct enc *e, const char *k)
{
    if (e->fmt == WIRE_CBOR) {
        cbor_text(&e->b, k, strlen(k));
        return;
    }
    sep(e);
    quoted(&e->b, k, strlen(k));
    buf_addc(&e->b, ':');
    e->need_comma[e->depth] = false; /* the value follows without a comma */
}

/* s: printable ASCII without '"' or '\\' (the caller's promise): the same bytes in JSON and
 * CBOR text, quoted or preceded by its head */
static void ascii(struct enc *e, const char *s, size_t len)
{
    if (e->fmt == WIRE_CBOR) {
        cbor_head(&e->b, 3, len);
        buf_add(&e->b, s, len);
        return;
    }
    buf_grow(&e->b, len + 3);
    char *o = e->b.p + e->b.len;
    o[0] = '"';
    memcpy(o + 1, s, len);
    o[len + 1] = '"';
    e->b.len += len + 2;
}

void enc_key_ascii(struct enc *e, const char *k, size_t len)
{
    if (e->fmt == WIRE_CBOR) {
        ascii(e, k, len);
        return;
    }
    sep(e);
    ascii(e, k, len);
    buf_addc(&e->b, ':');
    e->need_comma[e->depth] = false; /* the value follows without a comma */
}

void enc_str_ascii(struct enc *e, const char *s, size_t len)
{
    if (e->fmt != WIRE_CBOR)
        sep(e);
    ascii(e, s, len);
}

void enc_str(struct enc *e, const char *s, size_t len)
{
    if (e->fmt == WIRE_CBOR) {
        cbor_text(&e->b, s, len);
        return;
    }
    sep(e);
    quoted(&e->b, s, len);
}

void enc_strz(struct enc *e, const char *s) { enc_str(e, s, strlen(s)); }

void enc_int(struct enc *e, int64_t v)
{
    if (e->fmt == WIRE_CBOR) {
        cbor_int(&e->b, v);
        return;
    }
    sep(e);
    buf_grow(&e->b, 21);
    char *o = e->b.p + e->b.len;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        *o++ = '-';
        u = 0 - u;
    }
    e->b.len = (size_t)(o + enc_u64(o, u) - e->b.p);
}

void enc_bool(struct enc *e, bool v)
{
    if (e->fmt == WIRE_CBOR) {
        buf_addc(&e->b, (char)(v ? 0xF5 : 0xF4));
        return;
    }
    sep(e);
    buf_adds(&e->b, v ? "true" : "false");
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/* the two characters of every 12 bits: a 3-byte group is two lookups */
static char b64_pairs[4096][2];
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static void b64_init(void)
{
    for (int i = 0; i < 4096; i++) {
        b64_pairs[i][0] = b64[i >> 6];
        b64_pairs[i][1] = b64[i & 63];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Twelve bytes to sixteen characters at a time with SSSE3 (W. Mula's method): a shuffle puts
 * each 3-byte group in a 32-bit lane, two multiplies move its four 6-bit values into bytes,
 * and a saturating subtract, a compare and a 16-entry shuffle give each value's offset to its
 * character. Reads 16 bytes per 12 it encodes, so it stops 4 short of the end of s. Returns
 * the bytes encoded. */
__attribute__((target("ssse3"))) static size_t b64_enc_sse(const unsigned char *s, size_t n, char *o)
{
    const __m128i shuf = _mm_set_epi8(10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1);
    const __m128i lut = _mm_setr_epi8(65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0);
    size_t i = 0;
    for (; i + 16 <= n; i += 12, o += 16) {
        __m128i in = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(s + i)), shuf);
        __m128i t1 =
            _mm_mulhi_epu16(_mm_and_si128(in, _mm_set1_epi32(0x0FC0FC00)), _mm_set1_epi32(0x04000040));
        __m128i t3 =
            _mm_mullo_epi16(_mm_and_si128(in, _mm_set1_epi32(0x003F03F0)), _mm_set1_epi32(0x01000010));
        __m128i v = _mm_or_si128(t1, t3);
        __m128i ix = _mm_sub_epi8(_mm_subs_epu8(v, _mm_set1_epi8(51)), _mm_cmpgt_epi8(v, _mm_set1_epi8(25)));
        _mm_storeu_si128((__m128i *)o, _mm_add_epi8(v, _mm_shuffle_epi8(lut, ix)));
    }
    return i;
}
#endif

void enc_base64(struct buf *b, const void *d, size_t n)
{
    const char *t = b64;
    const unsigned char *s = d;
    pthread_once(&b64_once, b64_init);
    buf_grow(b, (n + 2) / 3 * 4 + 1);
    char *o = b->p + b->len;
    size_t i = 0;
#if defined(__x86_64__)
    if (n >= 16 && __builtin_cpu_supports("ssse3")) {
        i = b64_enc_sse(s, n, o);
        o += i / 3 * 4;
    }
#endif
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        memcpy(o, b64_pairs[v >> 12], 2);
        memcpy(o + 2, b64_pairs[v & 4095], 2);
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        o[0] = t[v >> 18];
        o[1] = t[(v >> 12) & 63];
        o[2] = o[3] = '=';
        o += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        o[0] = t[v >> 18];
        o[1] = t[(v >> 12) & 63];
        o[2] = t[(v >> 6) & 63];
        o[3] = '=';
        o += 4;
    }
    b->len = (size_t)(o - b->p);
}

void enc_blob(struct enc *e, const void *d, size_t len)
{
    if (e->fmt == WIRE_CBOR) {
        cbor_head(&e->b, 2, len);
        buf_add(&e->b, d, len);
        return;
    }
    sep(e);
    buf_addc(&e->b, '"');
    enc_base64(&e->b, d, len);
    buf_addc(&e->b, '"');
}

void enc_time_ms(struct enc *e, int64_t ms)
{
    if (e->fmt == WIRE_CBOR) {
        buf_addc(&e->b, (char)0xC1);
        cbor_int(&e->b, ms);
        return;
    }
    sep(e);
    if (ms < 0) { /* before 1970: as printf renders it, never on the hot path */
        buf_printf(&e->b, "%" PRId64 ".%03d", ms / 1000, (int)(ms % 1000));
        return;
    }
    buf_grow(&e->b, 24);
    char *o = e->b.p + e->b.len;
    uint64_t s = (uint64_t)ms / 1000;
    if (s >= 1000000000 && s <= 9999999999) { /* 2001 to 2286: ten digits, not counted */
        enc_digits(o, s, 10);
        o += 10;
    } else {
        o += enc_u64(o, s);
    }
    *o++ = '.';
    enc_digits(o, (uint64_t)ms % 1000, 3);
    e->b.len = (size_t)(o + 3 - e->b.p);
}
