/* cbor.c: RFC 8949 decoder into the request tree (value.h), for application/x-amz-cbor-1.1.
 *
 * Definite and indefinite lengths, all simple values and floats; map keys must be text.
 * Tags are read through in a loop, at most KV_MAX_TAGS on one item (tag 1, a timestamp, keeps
 * its number: AWS's CBOR protocol sends integer milliseconds there). Text strings must be
 * valid UTF-8 without NUL; NaN and infinities are refused. Every length is checked against
 * the bytes that remain, nesting is bounded by KV_MAX_DEPTH, and every allocation is charged
 * to the arena's limit (kv_budget), so a hostile body cannot make the decoder read out of
 * bounds, allocate without limit, or recurse without end. Numbers carry no source text. */
#include <math.h>
#include <string.h>

#include "utf8.h"
#include "value.h"

struct p {
    struct arena *a;
    const unsigned char *s, *end;
    int depth;
};

static int head(struct p *p, unsigned *major, unsigned *info, uint64_t *arg)
{
    if (p->s >= p->end)
        return KV_MALFORMED;
    unsigned b = *p->s++;
    *major = b >> 5;
    *info = b & 31;
    if (*info < 24) {
        *arg = *info;
        return 0;
    }
    int n = *info == 24 ? 1 : *info == 25 ? 2 : *info == 26 ? 4 : *info == 27 ? 8 : 0;
    if (*info == 31) {
        *arg = 0;
        return 0; /* indefinite */
    }
    if (!n || p->end - p->s < n)
        return KV_MALFORMED;
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | *p->s++;
    *arg = v;
    return 0;
}

static double half(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e != 31 ? ldexp(m + 1024, e - 25) : m ? NAN : INFINITY;
    return h & 0x8000 ? -v : v;
}

static int set_num(struct kv *v, double d, bool is_int, int64_t i)
{
    if (!isfinite(d))
        return KV_MALFORMED;
    v->type = KV_NUM;
    v->d = d;
    v->is_int = is_int;
    v->i = i;
    return 0;
}

/* Byte or text string, possibly in indefinite chunks. */
static int string(struct p *p, unsigned major, unsigned info, uint64_t len, struct kv *v)
{
    char *o;
    size_t total = 0;
    if (info != 31) {
        if ((uint64_t)(p->end - p->s) < len)
            return KV_MALFORMED;
        total = (size_t)len;
        if (!(o = arena_try_strndup(p->a, (const char *)p->s, total)))
            return KV_TOO_BIG;
        p->s += len;
    } else {
        /* chunks: total is bounded by the body size */
        const unsigned char *start = p->s;
        for (;;) {
            if (p->s >= p->end)
                return KV_MALFORMED;
            if (*p->s == 0xFF) {
                p->s++;
                break;
            }
            unsigned m, in;
            uint64_t n;
            if (head(p, &m, &in, &n) || m != major || in == 31 || (uint64_t)(p->end - p->s) < n)
                return KV_MALFORMED;
            p->s += n;
            total += (size_t)n;
        }
        if (!(o = arena_try_alloc(p->a, total + 1, 1)))
            return KV_TOO_BIG;
        char *w = o;
        const unsigned char *r = start;
        while (*r != 0xFF) {
            struct p q = {p->a, r, p->end, 0};
            unsigned m, in;
            uint64_t n = 0; /* head() read this chunk's header in the first pass */
            head(&q, &m, &in, &n);
            /* each chunk of text must be valid UTF-8 on its own (RFC 8949 3.2.3) */
            if (major == 3 && !utf8_valid_nonul((const char *)q.s, (size_t)n))
                return KV_MALFORMED;
            memcpy(w, q.s, (size_t)n);
            w += n;
            r = q.s + n;
        }
        *w = 0;
    }
    if (major == 3 && !utf8_valid_nonul(o, total))
        return KV_MALFORMED;
    v->s = o;
    v->len = total;
    return 0;
}

static int item(struct p *p, struct kv *v)
{
    unsigned major, info;
    uint64_t arg;
    int rc;
    for (int tags = 0;; tags++) { /* tags: the tagged value itself, a few levels at most */
        if ((rc = head(p, &major, &info, &arg)))
            return rc;
        if (major != 6)
            break;
        if (info == 31 || tags == KV_MAX_TAGS)
            return KV_MALFORMED;
    }
    if (info == 31 && major < 2)
        return KV_MALFORMED; /* no indefinite-length integers */
    switch (major) {
    case 0: return set_num(v, (double)arg, arg <= INT64_MAX, arg <= INT64_MAX ? (int64_t)arg : 0);
    case 1: return set_num(v, -1.0 - (double)arg, arg < INT64_MAX, arg < INT64_MAX ? -1 - (int64_t)arg : 0);
    case 2: v->type = KV_BLOB; return string(p, 2, info, arg, v);
    case 3: v->type = KV_STR; return string(p, 3, info, arg, v);
    case 4:
    case 5: {
        if (++p->depth > KV_MAX_DEPTH)
            return KV_MALFORMED;
        v->type = major == 4 ? KV_ARR : KV_OBJ;
        struct kv **tail = &v->child;
        for (uint64_t i = 0; info == 31 || i < arg; i++) {
            if (info == 31 && p->s < p->end && *p->s == 0xFF) {
                p->s++;
                break;
            }
            if (info != 31 && (uint64_t)(p->end - p->s) < arg - i) /* each item takes a byte */
                return KV_MALFORMED;
            struct kv *m = arena_try_zalloc(p->a, sizeof *m);
            if (!m)
                return KV_TOO_BIG;
            if (major == 5) {
                struct kv key = {0};
                if ((rc = item(p, &key)))
                    return rc;
                if (key.type != KV_STR)
                    return KV_MALFORMED;
                m->key = key.s;
            }
            if ((rc = item(p, m)))
                return rc;
            *tail = m;
            tail = &m->next;
            v->n++;
        }
        p->depth--;
        return 0;
    }
    default: /* 7 */
        switch (info) {
        case 20:
            v->type = KV_BOOL;
            v->b = false;
            return 0;
        case 21:
            v->type = KV_BOOL;
            v->b = true;
            return 0;
        case 22:
        case 23: v->type = KV_NULL; return 0;
        case 25: return set_num(v, half((uint16_t)arg), false, 0);
        case 26: {
            uint32_t u = (uint32_t)arg;
            float f;
            memcpy(&f, &u, 4);
            return set_num(v, f, false, 0);
        }
        case 27: {
            double d;
            memcpy(&d, &arg, 8);
            return set_num(v, d, false, 0);
        }
        default: return KV_MALFORMED;
        }
    }
}

int cbor_parse(struct arena *a, const char *body, size_t len, struct kv **out)
{
    struct p p = {a, (const unsigned char *)body, (const unsigned char *)body + len, 0};
    size_t saved = a->limit;
    arena_set_limit(a, a->used + kv_budget(len));
    int rc = KV_TOO_BIG;
    struct kv *v = arena_try_zalloc(a, sizeof *v);
    if (v)
        rc = item(&p, v);
    arena_set_limit(a, saved);
    if (rc)
        return rc;
    *out = v;
    return 0;
}
