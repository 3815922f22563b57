/* eventstream.c: AWS's event-stream messages, encoded into a buffer and decoded in place.
 *
 * The encoder writes a whole message or nothing: it computes the lengths first, so the
 * prelude is written once and both CRCs cover exactly the bytes sent. The decoder checks
 * every length against what is available and the bounds of eventstream.h before reading, and
 * both CRCs before it reports a header; it never allocates. */
#include <string.h>

#include "eventstream.h"

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t eventstream_crc32(uint32_t crc, const void *p, size_t n)
{
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE))
        crc_init(); /* idempotent: racing threads compute the same table */
    const unsigned char *s = p;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ s[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put32(unsigned char *o, uint32_t v)
{
    o[0] = (unsigned char)(v >> 24), o[1] = (unsigned char)(v >> 16), o[2] = (unsigned char)(v >> 8),
    o[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const int fixed_len[] = {[ES_TRUE] = 0, [ES_FALSE] = 0, [ES_BYTE] = 1,      [ES_SHORT] = 2,
                                [ES_INT] = 4,  [ES_LONG] = 8,  [ES_TIMESTAMP] = 8, [ES_UUID] = 16};

static long header_len(const struct eventstream_header *h)
{
    if (h->name_len < 1 || h->name_len > 255 || h->type > ES_UUID)
        return -1;
    long n = 2 + (long)h->name_len;
    if (h->type == ES_BYTES || h->type == ES_STRING) {
        if (h->len > 32767)
            return -1;
        return n + 2 + (long)h->len;
    }
    if (h->type == ES_UUID && h->len != 16)
        return -1;
    return n + fixed_len[h->type];
}

int eventstream_encode(struct buf *b, const struct eventstream_header *h, size_t nh, const void *payload,
                       size_t len)
{
    size_t hl = 0;
    for (size_t i = 0; i < nh; i++) {
        long n = header_len(&h[i]);
        if (n < 0)
            return -1;
        hl += (size_t)n;
    }
    if (hl > EVENTSTREAM_MAX_HEADERS || len > EVENTSTREAM_MAX_MESSAGE ||
        hl + len + EVENTSTREAM_OVERHEAD > EVENTSTREAM_MAX_MESSAGE)
        return -1;
    size_t total = hl + len + EVENTSTREAM_OVERHEAD;
    buf_grow(b, total + 1);
    unsigned char *o = (unsigned char *)b->p + b->len, *start = o;
    put32(o, (uint32_t)total), put32(o + 4, (uint32_t)hl);
    put32(o + 8, eventstream_crc32(0, o, 8));
    o += EVENTSTREAM_PRELUDE;
    for (size_t i = 0; i < nh; i++) {
        *o++ = (unsigned char)h[i].name_len;
        memcpy(o, h[i].name, h[i].name_len), o += h[i].name_len;
        *o++ = h[i].type;
        switch (h[i].type) {
        case ES_BYTES:
        case ES_STRING:
            *o++ = (unsigned char)(h[i].len >> 8), *o++ = (unsigned char)h[i].len;
            memcpy(o, h[i].s, h[i].len), o += h[i].len;
            break;
        case ES_UUID: memcpy(o, h[i].s, 16), o += 16; break;
        default:
            for (int k = fixed_len[h[i].type] - 1; k >= 0; k--)
                *o++ = (unsigned char)((uint64_t)h[i].i >> (8 * k));
        }
    }
    if (len)
        memcpy(o, payload, len), o += len;
    put32(o, eventstream_crc32(0, start, total - 4));
    b->len += total;
    return 0;
}

#define STR_HEADER(n, v)                            \
    {                                               \
        n, sizeof n - 1, ES_STRING, v, strlen(v), 0 \
    }

int eventstream_event(struct buf *b, const char *event_type, const void *payload, size_t len)
{
    /* in the order AWS's own frames have them (its initial-response test vector) */
    struct eventstream_header h[] = {
        STR_HEADER(":event-type", event_type),
        STR_HEADER(":content-type", "application/json"),
        STR_HEADER(":message-type", "event"),
    };
    return eventstream_encode(b, h, 3, payload, len);
}

int eventstream_exception(struct buf *b, const char *exception_type, const void *payload, size_t len)
{
    struct eventstream_header h[] = {
        STR_HEADER(":exception-type", exception_type),
        STR_HEADER(":content-type", "application/json"),
        STR_HEADER(":message-type", "exception"),
    };
    return eventstream_encode(b, h, 3, payload, len);
}

long eventstream_decode(const void *p, size_t n, struct eventstream_header *h, size_t maxh, size_t *nh,
                        const void **payload, size_t *plen)
{
    const unsigned char *s = p;
    if (n < EVENTSTREAM_PRELUDE)
        return 0;
    uint32_t total = get32(s), hl = get32(s + 4);
    if (eventstream_crc32(0, s, 8) != get32(s + 8))
        return -1;
    if (total < EVENTSTREAM_OVERHEAD || total > EVENTSTREAM_MAX_MESSAGE || hl > EVENTSTREAM_MAX_HEADERS ||
        hl > total - EVENTSTREAM_OVERHEAD)
        return -1;
    if (n < total)
        return 0;
    if (eventstream_crc32(0, s, total - 4) != get32(s + total - 4))
        return -1;
    const unsigned char *q = s + EVENTSTREAM_PRELUDE, *end = q + hl;
    size_t k = 0;
    while (q < end) {
        if (k == maxh)
            return -1;
        struct eventstream_header *x = &h[k++];
        size_t nl = *q++;
        if (nl == 0 || (size_t)(end - q) < nl + 1)
            return -1;
        x->name = (const char *)q, x->name_len = nl, q += nl;
        x->type = *q++;
        x->s = NULL, x->len = 0, x->i = 0;
        if (x->type > ES_UUID)
            return -1;
        if (x->type == ES_BYTES || x->type == ES_STRING) {
            if (end - q < 2)
                return -1;
            size_t vl = (size_t)q[0] << 8 | q[1];
            q += 2;
            if ((size_t)(end - q) < vl)
                return -1;
            x->s = (const char *)q, x->len = vl, q += vl;
        } else if (x->type == ES_UUID) {
            if (end - q < 16)
                return -1;
            x->s = (const char *)q, x->len = 16, q += 16;
        } else {
            int fl = fixed_len[x->type];
            if (end - q < fl)
                return -1;
            uint64_t v = 0;
            for (int i = 0; i < fl; i++)
                v = v << 8 | q[i];
            if (fl && fl < 8 && v >> (8 * fl - 1)) /* sign-extend */
                v |= ~(uint64_t)0 << (8 * fl);
            x->i = x->type == ES_TRUE ? 1 : (int64_t)v;
            q += fl;
        }
    }
    *nh = k;
    *payload = end;
    *plen = total - hl - EVENTSTREAM_OVERHEAD;
    return (long)total;
}
