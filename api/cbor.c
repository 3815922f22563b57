/* cbor.c: RFC 8949 decoder into the request tree (value.h), for application/x-amz-cbor-1.1.
 *
 * Definite and indefinite lengths, all simple values and floats; map keys must be text.
 * Tags are read through (tag 1, a timestamp, keeps its number: AWS's CBOR protocol sends
 * integer milliseconds there). Every length is checked against the bytes that remain and
 * nesting is bounded, so a hostile body cannot make the decoder read out of bounds,
 * allocate without limit, or recurse without end. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "value.h"

struct p {
    struct arena *a;
    const unsigned char *s, *end;
    int depth;
};

static int head(struct p *p, unsigned *major, unsigned *info, uint64_t *arg)
{
    if (p->s >= p->end)
        return -1;
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
        return -1;
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

static void set_num(struct p *p, struct kv *v, double d, bool is_int, int64_t i)
{
    v->type = KV_NUM;
    v->d = d;
    v->is_int = is_int;
    v->i = i;
    v->s = is_int ? arena_printf(p->a, "%" PRId64, i) : arena_printf(p->a, "%.17g", d);
    v->len = strlen(v->s);
}

/* Byte or text string, possibly in indefinite chunks. */
static int string(struct p *p, unsigned major, unsigned info, uint64_t len, struct kv *v)
{
    if (info != 31) {
        if ((uint64_t)(p->end - p->s) < len)
            return -1;
        char *s = arena_strndup(p->a, (const char *)p->s, (size_t)len);
        p->s += len;
        v->s = s;
        v->len = (size_t)len;
        return 0;
    }
    /* chunks: total is bounded by the body size */
    const unsigned char *start = p->s;
    size_t total = 0;
    for (;;) {
        if (p->s >= p->end)
            return -1;
        if (*p->s == 0xFF) {
            p->s++;
            break;
        }
        unsigned m, in;
        uint64_t n;
        if (head(p, &m, &in, &n) || m != major || in == 31 || (uint64_t)(p->end - p->s) < n)
            return -1;
        p->s += n;
        total += (size_t)n;
    }
    char *o = arena_alloc(p->a, total + 1), *w = o;
    const unsigned char *r = start;
    while (*r != 0xFF) {
        struct p q = {p->a, r, p->end, 0};
        unsigned m, in;
        uint64_t n;
        head(&q, &m, &in, &n);
        memcpy(w, q.s, (size_t)n);
        w += n;
        r = q.s + n;
    }
    *w = 0;
    v->s = o;
    v->len = total;
    return 0;
}

static int item(struct p *p, struct kv *v);

static int item(struct p *p, struct kv *v)
{
    unsigned major, info;
    uint64_t arg;
    if (head(p, &major, &info, &arg))
        return -1;
    switch (major) {
    case 0: set_num(p, v, (double)arg, arg <= INT64_MAX, arg <= INT64_MAX ? (int64_t)arg : 0); return 0;
    case 1:
        set_num(p, v, -1.0 - (double)arg, arg < INT64_MAX, arg < INT64_MAX ? -1 - (int64_t)arg : 0);
        return 0;
    case 2: v->type = KV_BLOB; return string(p, 2, info, arg, v);
    case 3: v->type = KV_STR; return string(p, 3, info, arg, v);
    case 4:
    case 5: {
        if (++p->depth > 64)
            return -1;
        v->type = major == 4 ? KV_ARR : KV_OBJ;
        struct kv **tail = &v->child;
        for (uint64_t i = 0; info == 31 || i < arg; i++) {
            if (info == 31 && p->s < p->end && *p->s == 0xFF) {
                p->s++;
                break;
            }
            if (info != 31 && (uint64_t)(p->end - p->s) < arg - i) /* each item takes a byte */
                return -1;
            struct kv *m = arena_zalloc(p->a, sizeof *m);
            if (major == 5) {
                struct kv key = {0};
                if (item(p, &key) || key.type != KV_STR)
                    return -1;
                m->key = key.s;
            }
            if (item(p, m))
                return -1;
            *tail = m;
            tail = &m->next;
            v->n++;
        }
        p->depth--;
        return 0;
    }
    case 6: return item(p, v); /* the tagged value itself */
    default:                   /* 7 */
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
        case 25: {
            double d = half((uint16_t)arg);
            set_num(p, v, d, false, 0);
            return 0;
        }
        case 26: {
            uint32_t u = (uint32_t)arg;
            float f;
            memcpy(&f, &u, 4);
            set_num(p, v, f, false, 0);
            return 0;
        }
        case 27: {
            double d;
            memcpy(&d, &arg, 8);
            set_num(p, v, d, false, 0);
            return 0;
        }
        default: return -1;
        }
    }
}

int cbor_parse(struct arena *a, const char *body, size_t len, struct kv **out)
{
    struct p p = {a, (const unsigned char *)body, (const unsigned char *)body + len, 0};
    struct kv *v = arena_zalloc(a, sizeof *v);
    if (item(&p, v))
        return -1;
    *out = v;
    return 0;
}
