/* json.c: strict RFC 8259 parser into the request tree (value.h).
 *
 * Numbers keep their source text so error messages can echo a value as the client wrote it.
 * Recursion is bounded to 64 levels so hostile input cannot exhaust the stack. */
#include "value.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct p {
    struct arena *a;
    const char *s, *end;
    int depth;
};

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
    while (q < p->end && *q != '"' && *q != '\\') {
        if ((unsigned char)*q < 0x20)
            return -1;
        q++;
    }
    if (q < p->end && *q == '"') { /* fast path: no escapes, point into a copy */
        *out = arena_strndup(p->a, start, (size_t)(q - start));
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
        return -1;
    char *o = arena_alloc(p->a, (size_t)(e - start) + 1);
    char *w = o;
    const char *r = start;
    while (r < e) {
        char c = *r++;
        if ((unsigned char)c < 0x20)
            return -1;
        if (c != '\\') {
            *w++ = c;
            continue;
        }
        c = *r++;
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
                return -1;
            r += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (e - r >= 6 && r[0] == '\\' && r[1] == 'u' && !hex4(r + 2, &lo) && lo >= 0xDC00 &&
                    lo < 0xE000) {
                    r += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                cp = 0xFFFD;
            }
            /* a \uXXXX escape (6 source bytes) never needs more than 4 output bytes, and a
             * surrogate pair (12 bytes) never more than 4 */
            w = put_utf8(w, cp);
            break;
        }
        default: return -1;
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
        return -1;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    } else {
        return -1;
    }
    if (q < p->end && *q == '.') {
        integral = false;
        q++;
        if (q >= p->end || *q < '0' || *q > '9')
            return -1;
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < p->end && (*q == 'e' || *q == 'E')) {
        integral = false;
        q++;
        if (q < p->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= p->end || *q < '0' || *q > '9')
            return -1;
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    }
    char *txt = arena_strndup(p->a, st, (size_t)(q - st));
    v->type = KV_NUM;
    v->s = txt;
    v->len = (size_t)(q - st);
    v->d = strtod(txt, NULL);
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
        return -1;
    p->s += n;
    return 0;
}

static int value(struct p *p, struct kv *v)
{
    ws(p);
    if (p->s >= p->end)
        return -1;
    switch (*p->s) {
    case '{': {
        if (++p->depth > 64)
            return -1;
        p->s++;
        v->type = KV_OBJ;
        struct kv **tail = &v->child;
        ws(p);
        if (p->s < p->end && *p->s == '}') {
            p->s++;
            p->depth--;
            return 0;
        }
        for (;;) {
            ws(p);
            if (p->s >= p->end || *p->s != '"')
                return -1;
            p->s++;
            const char *k;
            size_t klen;
            if (str(p, &k, &klen))
                return -1;
            ws(p);
            if (p->s >= p->end || *p->s != ':')
                return -1;
            p->s++;
            struct kv *m = arena_zalloc(p->a, sizeof *m);
            m->key = k;
            if (value(p, m))
                return -1;
            *tail = m;
            tail = &m->next;
            v->n++;
            ws(p);
            if (p->s >= p->end)
                return -1;
            if (*p->s == ',') {
                p->s++;
                continue;
            }
            if (*p->s == '}') {
                p->s++;
                p->depth--;
                return 0;
            }
            return -1;
        }
    }
    case '[': {
        if (++p->depth > 64)
            return -1;
        p->s++;
        v->type = KV_ARR;
        struct kv **tail = &v->child;
        ws(p);
        if (p->s < p->end && *p->s == ']') {
            p->s++;
            p->depth--;
            return 0;
        }
        for (;;) {
            struct kv *m = arena_zalloc(p->a, sizeof *m);
            if (value(p, m))
                return -1;
            *tail = m;
            tail = &m->next;
            v->n++;
            ws(p);
            if (p->s >= p->end)
                return -1;
            if (*p->s == ',') {
                p->s++;
                continue;
            }
            if (*p->s == ']') {
                p->s++;
                p->depth--;
                return 0;
            }
            return -1;
        }
    }
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

int json_parse(struct arena *a, const char *text, size_t len, struct kv **out)
{
    struct p p = {a, text, text + len, 0};
    struct kv *v = arena_zalloc(a, sizeof *v);
    if (value(&p, v))
        return -1;
    ws(&p);
    if (p.s != p.end)
        return -1;
    *out = v;
    return 0;
}

const struct kv *kv_get(const struct kv *obj, const char *key)
{
    const struct kv *found = NULL;
    if (!obj || obj->type != KV_OBJ)
        return NULL;
    for (const struct kv *m = obj->child; m; m = m->next)
        if (!strcmp(m->key, key))
            found = m;
    return found;
}
