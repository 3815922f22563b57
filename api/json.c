/* json.c: strict RFC 8259 parser into the request tree (value.h).
 *
 * Numbers keep their source text so error messages can echo a value as the client wrote it.
 * Strings must be valid UTF-8 (raw bytes and \u escapes alike: a surrogate escape must be a
 * high one followed by a low one) and may not hold NUL, so the tree never carries text a JSON
 * answer could not repeat. Recursion is bounded to KV_MAX_DEPTH levels so hostile input cannot
 * exhaust the stack, and every allocation is charged to the arena's limit (kv_budget), so it
 * cannot exhaust memory either. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "value.h"

struct p {
    struct arena *a;
    const char *s, *end;
    int depth;
    bool stored; /* json_parse_stored: bytes of strings taken as they are */
};

size_t kv_budget(size_t len)
{
    size_t b = KV_BUDGET_BASE + len + len / 4;
    return len > KV_BUDGET_MAX || b > KV_BUDGET_MAX ? KV_BUDGET_MAX : b;
}

static void ws(struct p *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
        p->s++;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* p->s is just past the opening quote. */
static int str(struct p *p, const char **out, size_t *outlen)
{
    const char *start = p->s;
    const char *q = start;
    for (;;) {
        q += utf8_json_plain(q, (size_t)(p->end - q));
        if (q >= p->end || *q == '"' || *q == '\\')
            break;
        unsigned char c = (unsigned char)*q;
        if (c < 0x20)
            return KV_MALFORMED;
        if (c < 0x80) {
            q++;
            continue;
        }
        size_t k = utf8_seq((const unsigned char *)q, (size_t)(p->end - q));
        if (!k && !p->stored)
            return KV_MALFORMED;
        q += k ? k : 1;
    }
    if (q < p->end && *q == '"') { /* fast path: no escapes, a plain copy */
        char *o = arena_try_strndup(p->a, start, (size_t)(q - start));
        if (!o)
            return KV_TOO_BIG;
        *out = o;
        *outlen = (size_t)(q - start);
        p->s = q + 1;
        return 0;
    }
    /* slow path: decoded text is never longer than the source */
    const char *e = q;
    while (e < p->end && *e != '"') {
        if (*e == '\\')
            e++;
        e++;
    }
    if (e >= p->end)
        return KV_MALFORMED;
    char *o = arena_try_alloc(p->a, (size_t)(e - start) + 1, 1);
    if (!o)
        return KV_TOO_BIG;
    char *w = o;
    const char *r = start;
    while (r < e) {
        unsigned char c = (unsigned char)*r;
        if (c < 0x20)
            return KV_MALFORMED;
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)r, (size_t)(e - r));
            if (!k && !p->stored)
                return KV_MALFORMED;
            k = k ? k : 1;
            memcpy(w, r, k);
            w += k;
            r += k;
            continue;
        }
        r++;
        if (c != '\\') {
            *w++ = (char)c;
            continue;
        }
        c = (unsigned char)*r++;
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp;
            if (e - r < 4 || hex4(r, &cp))
                return KV_MALFORMED;
            r += 4;
            if (cp >= 0xD800 && cp < 0xDC00) { /* a high surrogate needs its low half */
                unsigned lo;
                if (e - r < 6 || r[0] != '\\' || r[1] != 'u' || hex4(r + 2, &lo) || lo < 0xDC00 ||
                    lo >= 0xE000)
                    return KV_MALFORMED;
                r += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if ((cp >= 0xDC00 && cp < 0xE000) || (cp == 0 && !p->stored)) {
                return KV_MALFORMED; /* a lone low surrogate, or NUL */
            }
            /* a \uXXXX escape (6 source bytes) never needs more than 3 output bytes, and a
             * surrogate pair (12 bytes) never more than 4 */
            w = put_utf8(w, cp);
            break;
        }
        default: return KV_MALFORMED;
        }
    }
    *w = 0;
    *out = o;
    *outlen = (size_t)(w - o);
    p->s = e + 1;
    return 0;
}

static int num(struct p *p, struct kv *v)
{
    const char *st = p->s, *q = p->s;
    bool integral = true;
    if (q < p->end && *q == '-')
        q++;
    if (q >= p->end)
        return KV_MALFORMED;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    } else {
        return KV_MALFORMED;
    }
    if (q < p->end && *q == '.') {
        integral = false;
        q++;
        if (q >= p->end || *q < '0' || *q > '9')
            return KV_MALFORMED;
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < p->end && (*q == 'e' || *q == 'E')) {
        integral = false;
        q++;
        if (q < p->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= p->end || *q < '0' || *q > '9')
            return KV_MALFORMED;
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    }
    char *txt = arena_try_strndup(p->a, st, (size_t)(q - st));
    if (!txt)
        return KV_TOO_BIG;
    v->type = KV_NUM;
    v->s = txt;
    v->len = (size_t)(q - st);
    v->d = strtod(txt, NULL);
    if (isinf(v->d)) /* beyond a double's range: the largest finite one, so conversions stay defined */
        v->d = copysign(DBL_MAX, v->d);
    if (integral) {
        errno = 0;
        long long ll = strtoll(txt, NULL, 10);
        v->is_int = errno != ERANGE;
        v->i = v->is_int ? ll : 0;
    } else if (v->d == floor(v->d) && fabs(v->d) < 9.2e18) {
        v->is_int = false; /* 1.0 is not an Integer on the wire */
        v->i = (int64_t)v->d;
    }
    p->s = q;
    return 0;
}

static int value(struct p *p, struct kv *v);

static int lit(struct p *p, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, w, n))
        return KV_MALFORMED;
    p->s += n;
    return 0;
}

/* The members of an object or the elements of an array; p->s is past the opening bracket. */
static int children(struct p *p, struct kv *v, bool obj)
{
    char close = obj ? '}' : ']';
    int rc;
    if (++p->depth > KV_MAX_DEPTH)
        return KV_MALFORMED;
    v->type = obj ? KV_OBJ : KV_ARR;
    struct kv **tail = &v->child;
    ws(p);
    if (p->s < p->end && *p->s == close) {
        p->s++;
        p->depth--;
        return 0;
    }
    for (;;) {
        struct kv *m = arena_try_zalloc(p->a, sizeof *m);
        if (!m)
            return KV_TOO_BIG;
        if (obj) {
            ws(p);
            if (p->s >= p->end || *p->s != '"')
                return KV_MALFORMED;
            p->s++;
            size_t klen;
            if ((rc = str(p, &m->key, &klen)))
                return rc;
            ws(p);
            if (p->s >= p->end || *p->s != ':')
                return KV_MALFORMED;
            p->s++;
        }
        if ((rc = value(p, m)))
            return rc;
        *tail = m;
        tail = &m->next;
        v->n++;
        ws(p);
        if (p->s >= p->end)
            return KV_MALFORMED;
        if (*p->s == ',') {
            p->s++;
            continue;
        }
        if (*p->s == close) {
            p->s++;
            p->depth--;
            return 0;
        }
        return KV_MALFORMED;
    }
}

static int value(struct p *p, struct kv *v)
{
    ws(p);
    if (p->s >= p->end)
        return KV_MALFORMED;
    switch (*p->s) {
    case '{': p->s++; return children(p, v, true);
    case '[': p->s++; return children(p, v, false);
    case '"':
        p->s++;
        v->type = KV_STR;
        return str(p, &v->s, &v->len);
    case 't':
        v->type = KV_BOOL;
        v->b = true;
        return lit(p, "true");
    case 'f':
        v->type = KV_BOOL;
        v->b = false;
        return lit(p, "false");
    case 'n': v->type = KV_NULL; return lit(p, "null");
    default: return num(p, v);
    }
}

static int parse(struct arena *a, const char *text, size_t len, bool stored, struct kv **out)
{
    struct p p = {a, text, text + len, 0, stored};
    size_t saved = a->limit;
    if (!stored) /* our own documents are as large as the streams they describe */
        arena_set_limit(a, a->used + kv_budget(len));
    int rc = KV_TOO_BIG;
    struct kv *v = arena_try_zalloc(a, sizeof *v);
    if (v && !(rc = value(&p, v))) {
        ws(&p);
        if (p.s != p.end)
            rc = KV_MALFORMED;
    }
    arena_set_limit(a, saved);
    if (rc)
        return rc;
    *out = v;
    return 0;
}

int json_parse(struct arena *a, const char *text, size_t len, struct kv **out)
{
    return parse(a, text, len, false, out);
}

int json_parse_stored(struct arena *a, const char *text, size_t len, struct kv **out)
{
    return parse(a, text, len, true, out);
}

const struct kv *kv_get(const struct kv *obj, const char *key)
{
    const struct kv *found = NULL;
    if (!obj || obj->type != KV_OBJ)
        return NULL;
    for (const struct kv *m = obj->child; m; m = m->next)
        if (m->key[0] == key[0] && !strcmp(m->key, key)) /* most names differ in the first */
            found = m;
    return found;
}
