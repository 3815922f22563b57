/* Unit tests of the event-stream framing: AWS's published initial-response vector byte for
 * byte, the CRC32 check value, a round trip of every header type, and the decoder's answer to
 * every kind of damage (it must reject, never read past the bytes it was given). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eventstream.h"

/* The initial-response message: :event-type initial-response, :content-type application/json,
 * :message-type event, payload {} (104 bytes; prelude CRC 0x4e681724, message CRC 0xd591c62b). */
static size_t vector(unsigned char *o)
{
    static const char *const h[][2] = {
        {":event-type", "initial-response"},
        {":content-type", "application/json"},
        {":message-type", "event"},
    };
    size_t n = 0;
    const unsigned char pre[] = {0, 0, 0, 104, 0, 0, 0, 86, 0x4e, 0x68, 0x17, 0x24};
    memcpy(o, pre, 12), n = 12;
    for (int i = 0; i < 3; i++) {
        size_t nl = strlen(h[i][0]), vl = strlen(h[i][1]);
        o[n++] = (unsigned char)nl;
        memcpy(o + n, h[i][0], nl), n += nl;
        o[n++] = 7;
        o[n++] = 0, o[n++] = (unsigned char)vl;
        memcpy(o + n, h[i][1], vl), n += vl;
    }
    o[n++] = '{', o[n++] = '}';
    const unsigned char crc[] = {0xd5, 0x91, 0xc6, 0x2b};
    memcpy(o + n, crc, 4), n += 4;
    return n;
}

static void crc32_is_zlibs(void)
{
    CHECK(eventstream_crc32(0, "123456789", 9) == 0xcbf43926u);
    CHECK(eventstream_crc32(eventstream_crc32(0, "1234", 4), "56789", 5) == 0xcbf43926u);
    CHECK(eventstream_crc32(0, "", 0) == 0);
}

static void initial_response_matches_aws_vector(void)
{
    unsigned char want[200];
    size_t n = vector(want);
    CHECK(n == 104);
    struct buf b = BUF_INIT;
    CHECK(eventstream_event(&b, "initial-response", "{}", 2) == 0);
    CHECK(b.len == 104);
    CHECK(b.len == n && !memcmp(b.p, want, n));
    CHECK(eventstream_crc32(0, b.p, 8) == 0x4e681724u);
    CHECK(eventstream_crc32(0, b.p, 100) == 0xd591c62bu);
    buf_free(&b);
}

static void decoder_reads_the_vector(void)
{
    unsigned char v[200];
    size_t n = vector(v);
    struct eventstream_header h[8];
    size_t nh;
    const void *pl;
    size_t plen;
    CHECK(eventstream_decode(v, n, h, 8, &nh, &pl, &plen) == 104);
    CHECK(nh == 3);
    CHECK(h[0].name_len == 11 && !memcmp(h[0].name, ":event-type", 11));
    CHECK(h[0].type == ES_STRING && h[0].len == 16 && !memcmp(h[0].s, "initial-response", 16));
    CHECK(h[2].len == 5 && !memcmp(h[2].s, "event", 5));
    CHECK(plen == 2 && !memcmp(pl, "{}", 2));
}

static void every_header_type_round_trips(void)
{
    static const char uuid[16] = "0123456789abcdef";
    struct eventstream_header in[] = {
        {"t", 1, ES_TRUE, 0, 0, 0},
        {"f", 1, ES_FALSE, 0, 0, 0},
        {"b", 1, ES_BYTE, 0, 0, -5},
        {"s", 1, ES_SHORT, 0, 0, -300},
        {"i", 1, ES_INT, 0, 0, 70000},
        {"l", 1, ES_LONG, 0, 0, -(1ll << 40)},
        {"by", 2, ES_BYTES, "\0\1\2", 3, 0},
        {"st", 2, ES_STRING, "text", 4, 0},
        {"ts", 2, ES_TIMESTAMP, 0, 0, 1700000000123ll},
        {"u", 1, ES_UUID, uuid, 16, 0},
    };
    size_t n = sizeof in / sizeof in[0];
    struct buf b = BUF_INIT;
    char payload[3000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)(i * 7);
    CHECK(eventstream_encode(&b, in, n, payload, sizeof payload) == 0);
    CHECK(eventstream_event(&b, "SubscribeToShardEvent", "{\"Records\":[]}", 14) == 0);
    struct eventstream_header out[16];
    size_t nh;
    const void *pl;
    size_t plen;
    long first = eventstream_decode(b.p, b.len, out, 16, &nh, &pl, &plen);
    CHECK(first > 0 && (size_t)first < b.len);
    CHECK(nh == n);
    for (size_t i = 0; i < n && i < nh; i++) {
        CHECK(out[i].type == in[i].type);
        CHECK(out[i].name_len == in[i].name_len && !memcmp(out[i].name, in[i].name, in[i].name_len));
        if (in[i].type == ES_BYTES || in[i].type == ES_STRING || in[i].type == ES_UUID)
            CHECK(out[i].len == in[i].len && !memcmp(out[i].s, in[i].s, in[i].len));
        else if (in[i].type == ES_TRUE)
            CHECK(out[i].i == 1);
        else
            CHECK(out[i].i == in[i].i);
    }
    CHECK(plen == sizeof payload && !memcmp(pl, payload, plen));
    long second = eventstream_decode(b.p + first, b.len - (size_t)first, out, 16, &nh, &pl, &plen);
    CHECK(second > 0 && (size_t)(first + second) == b.len);
    CHECK(nh == 3 && plen == 14);
    buf_free(&b);
}

static void damage_is_rejected_and_short_input_waits(void)
{
    unsigned char v[200];
    size_t n = vector(v);
    struct eventstream_header h[8];
    size_t nh;
    const void *pl;
    size_t plen;
    for (size_t k = 0; k < n; k++) /* every prefix: wait or reject, never accept */
        CHECK(eventstream_decode(v, k, h, 8, &nh, &pl, &plen) <= 0);
    for (size_t k = 0; k < n; k++) { /* every flipped byte is caught by a CRC or a bound */
        unsigned char w[200];
        memcpy(w, v, n);
        w[k] ^= 0x40;
        CHECK(eventstream_decode(w, n, h, 8, &nh, &pl, &plen) == -1 ||
              eventstream_decode(w, n, h, 8, &nh, &pl, &plen) == 0);
        CHECK(eventstream_decode(w, n, h, 8, &nh, &pl, &plen) != 104);
    }
    CHECK(eventstream_decode(v, n, h, 2, &nh, &pl, &plen) == -1); /* more headers than room */
}

static void oversized_values_are_refused(void)
{
    struct buf b = BUF_INIT;
    char *big = calloc(1, 40000);
    struct eventstream_header h = {"x", 1, ES_STRING, big, 40000, 0};
    CHECK(eventstream_encode(&b, &h, 1, NULL, 0) == -1);
    struct eventstream_header noname = {"", 0, ES_TRUE, 0, 0, 0};
    CHECK(eventstream_encode(&b, &noname, 1, NULL, 0) == -1);
    CHECK(b.len == 0);
    free(big);
    buf_free(&b);
}

CHECK_RUN("eventstream", T(crc32_is_zlibs), T(initial_response_matches_aws_vector),
          T(decoder_reads_the_vector), T(every_header_type_round_trips),
          T(damage_is_rejected_and_short_input_waits), T(oversized_values_are_refused))
