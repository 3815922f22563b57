/* format.c: sealing and opening records (see format.h).
 *
 * format_open appends to a caller's batch whose entries come from the caller's allocator (an
 * arena): the array grows by doubling into a fresh allocation, so a batch of n records costs at
 * most twice its final array, and nothing is freed one by one. */
#include <string.h>

#include "crc32c.h"
#include "format.h"

#define V1_HDR 32

static void le64(unsigned char *o, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        o[i] = (unsigned char)v;
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

size_t format_seal(char *out, uint64_t log, uint64_t pos, const struct store_rec *r)
{
    unsigned char *o = (unsigned char *)out;
    o[0] = FORMAT_VERSION;
    o[1] = 0;
    o[2] = (unsigned char)r->pk_len;
    o[3] = (unsigned char)(r->pk_len >> 8);
    memcpy(o + FORMAT_HDR, r->pk, r->pk_len);
    if (r->data_len)
        memcpy(o + FORMAT_HDR + r->pk_len, r->data, r->data_len);
    size_t len = format_sealed_len(r->pk_len, r->data_len);
    uint32_t c = check_of(o, len, log, pos);
    for (int i = 0; i < 4; i++, c >>= 8)
        o[4 + i] = (unsigned char)c;
    return len;
}

/* Where the key and data are in a stored record, or STORE_CORRUPT. */
static int parse(const char *val, size_t len, uint64_t log, uint64_t pos, size_t *hdr, size_t *pk_len)
{
    const unsigned char *v = (const unsigned char *)val;
    if (len < 4)
        return STORE_CORRUPT;
    size_t pl = (size_t)v[2] | (size_t)v[3] << 8;
    if (v[0] == FORMAT_VERSION && v[1] == 0 && len >= FORMAT_HDR && pl <= len - FORMAT_HDR) {
        uint32_t want = (uint32_t)v[4] | (uint32_t)v[5] << 8 | (uint32_t)v[6] << 16 | (uint32_t)v[7] << 24;
        if (check_of(v, len, log, pos) != want)
            return STORE_CORRUPT;
        *hdr = FORMAT_HDR;
    } else if (v[0] == 1 && v[1] == 0 && len >= V1_HDR && pl <= len - V1_HDR) {
        *hdr = V1_HDR;
    } else {
        return STORE_CORRUPT;
    }
    *pk_len = pl;
    return 0;
}

int format_check(const char *val, size_t len, uint64_t log, uint64_t pos)
{
    size_t hdr, pl;
    return parse(val, len, log, pos, &hdr, &pl);
}

int format_open(const char *val, size_t len, uint64_t log, uint64_t pos, struct store_records *out)
{
    size_t hdr, pl;
    int rc = parse(val, len, log, pos, &hdr, &pl);
    if (rc)
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
    size_t body = len - hdr;
    char *p = out->alloc(out->actx, body ? body : 1);
    if (!p)
        return STORE_NOMEM;
    memcpy(p, val + hdr, body);
    out->v[n] = (struct store_read){.pos = pos, .pk = p, .pk_len = pl, .data = p + pl, .data_len = body - pl};
    out->n = n + 1;
    out->bytes += body;
    return 0;
}
