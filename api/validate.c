/* validate.c: the validation engine (see validate.h for the model and AWS's order). */
#include "validate.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "utf8.h"

struct vregex vre_name = {"[a-zA-Z0-9_.-]+", 0, {0}};
struct vregex vre_hash_key = {"0|([1-9]\\d{0,38})", 0, {0}};
struct vregex vre_seq = {"0|([1-9]\\d{0,128})", 0, {0}};
struct vregex vre_stream_arn = {"arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+", 0, {0}};
struct vregex vre_resource_arn = {"arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+", 0, {0}};
struct vregex vre_stream_id = {"[a-z0-9]{20}-[a-z0-9]{3}", 0, {0}};

/* ---- regular expressions: AWS's (Java) syntax translated to POSIX ERE ---- */

static void compile(struct vregex *r)
{
    struct buf b = BUF_INIT;
    buf_adds(&b, "^(");
    for (const char *p = r->pattern; *p; p++) {
        if (p[0] == '\\' && p[1] == 'd') {
            buf_adds(&b, "[0-9]");
            p++;
        } else if (p[0] == '\\' && p[1] == 'S') {
            buf_adds(&b, "[^[:space:]]");
            p++;
        } else if (p[0] == '\\' && p[1] == 's') {
            buf_adds(&b, "[[:space:]]");
            p++;
        } else if (p[0] == '\\' && p[1] == 'w') {
            buf_adds(&b, "[A-Za-z0-9_]");
            p++;
        } else {
            buf_addc(&b, *p);
        }
    }
    buf_adds(&b, ")$");
    buf_addc(&b, 0);
    int state = regcomp(&r->re, b.p, REG_EXTENDED | REG_NOSUB) == 0 ? 1 : -1;
    __atomic_store_n(&r->state, state, __ATOMIC_RELEASE);
    buf_free(&b);
}

static pthread_mutex_t compile_mu = PTHREAD_MUTEX_INITIALIZER;

int vregex_match(struct vregex *r, const char *s)
{
    int state = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    if (state == 0) {
        pthread_mutex_lock(&compile_mu);
        if (r->state == 0)
            compile(r);
        state = r->state;
        pthread_mutex_unlock(&compile_mu);
    }
    return state == 1 && regexec(&r->re, s, 0, NULL, 0) == 0;
}

/* ---- base64 ---- */

/* A character's 6-bit value; B64_PAD for '=', B64_BAD for anything else. */
#define B64_PAD 0x40
#define B64_BAD 0x80
/* (the alphabet A-Z a-z 0-9 + / is 0..63; 128 marks a character that is not base64) */
/* clang-format off */
static const unsigned char b64_val[256] = {
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,  62, 128, 128, 128,  63,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 128, 128, 128,  64, 128, 128,
    128,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 128, 128, 128, 128, 128,
    128,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
};
/* clang-format on */

/* Why s is not canonical base64, in the order AWS reports it: the length, then the first
 * character that is not base64 (or a '=' followed by something else than '='), then a '='
 * before the padding, then pad bits that are not zero. Only called for text that failed the
 * fast decoder. */
static void base64_why(const char *s, size_t len, const char **why, char *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    *why = "last";
    if (len % 4) {
        *why = "length";
        return;
    }
    for (size_t i = 0; i < len; i++) {
        if (b64_val[u[i]] == B64_BAD || (u[i] == '=' && i + 1 < len && u[i + 1] != '=')) {
            *why = "char";
            *bad = (char)u[i];
            return;
        }
    }
    size_t pad = (len && u[len - 1] == '=') + (len > 1 && u[len - 2] == '=');
    if (len && memchr(s, '=', len - pad)) {
        *why = "char";
        *bad = '=';
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Sixteen characters at a time with SSSE3 (W. Mula and D. Lemire's table method): two nibble
 * lookups flag any byte outside the alphabet ('=' included), a third gives each character's
 * offset to its 6-bit value, and two multiply-adds and a shuffle pack 16 values into 12 bytes.
 * Stops before the first block with a flagged byte, which the byte loop then takes. Reads s[0..
 * n) only, writes 16 bytes at o per 12 it decodes. Returns the characters decoded. */
__attribute__((target("ssse3"))) static size_t b64_sse(const unsigned char *s, size_t n, unsigned char *o)
{
    const __m128i lut_lo = _mm_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13,
                                         0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
    const __m128i lut_hi = _mm_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10,
                                         0x10, 0x10, 0x10, 0x10, 0x10);
    const __m128i lut_roll = _mm_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128i mask_2f = _mm_set1_epi8(0x2F);
    const __m128i pack = _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    size_t i = 0;
    for (; i + 16 <= n; i += 16, o += 12) {
        __m128i str = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i hi_nib = _mm_and_si128(_mm_srli_epi32(str, 4), mask_2f);
        __m128i lo_nib = _mm_and_si128(str, mask_2f);
        __m128i hi = _mm_shuffle_epi8(lut_hi, hi_nib), lo = _mm_shuffle_epi8(lut_lo, lo_nib);
        if (_mm_movemask_epi8(_mm_cmpgt_epi8(_mm_and_si128(lo, hi), _mm_setzero_si128())))
            break;
        __m128i roll = _mm_shuffle_epi8(lut_roll, _mm_add_epi8(_mm_cmpeq_epi8(str, mask_2f), hi_nib));
        str = _mm_add_epi8(str, roll);
        __m128i ab_bc = _mm_maddubs_epi16(str, _mm_set1_epi32(0x01400140));
        __m128i v = _mm_madd_epi16(ab_bc, _mm_set1_epi32(0x00011000));
        _mm_storeu_si128((__m128i *)o, _mm_shuffle_epi8(v, pack));
    }
    return i;
}
#endif

int base64_decode(struct arena *a, const char *s, size_t len, char **out, size_t *outlen, const char **why,
                  char *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    if (len % 4) {
        base64_why(s, len, why, bad);
        return -1;
    }
    char *o = arena_alloc(a, len / 4 * 3 + 1);
    unsigned char *w = (unsigned char *)o;
    size_t full = len ? len - 4 : 0; /* every group but the last has no padding */
    unsigned flags = 0;
    size_t i = 0;
#if defined(__x86_64__)
    /* (its 16-byte stores stay inside the allocation: they start 3/4 of the way back from the
       last group's output and end at most 4 bytes past a block's 12) */
    if (full >= 16 && __builtin_cpu_supports("ssse3")) {
        i = b64_sse(u, full, w);
        w += i / 4 * 3;
    }
#endif
    for (; i < full; i += 4) {
        unsigned c0 = b64_val[u[i]], c1 = b64_val[u[i + 1]], c2 = b64_val[u[i + 2]], c3 = b64_val[u[i + 3]];
        flags |= c0 | c1 | c2 | c3;
        uint32_t v = c0 << 18 | c1 << 12 | c2 << 6 | c3;
        w[0] = (unsigned char)(v >> 16);
        w[1] = (unsigned char)(v >> 8);
        w[2] = (unsigned char)v;
        w += 3;
    }
    if (len) {
        unsigned c0 = b64_val[u[full]], c1 = b64_val[u[full + 1]], c2 = b64_val[u[full + 2]],
                 c3 = b64_val[u[full + 3]];
        /* the last group: "xx==", "xxx=" or "xxxx", with the bits a pad drops all zero */
        flags |= c0 | c1 | (c2 & B64_BAD) | (c3 & B64_BAD);
        if (c2 == B64_PAD && c3 != B64_PAD)
            flags |= B64_BAD;
        c2 &= 63;
        c3 &= 63;
        uint32_t v = c0 << 18 | c1 << 12 | c2 << 6 | c3;
        *w++ = (unsigned char)(v >> 16);
        if (u[full + 2] != '=')
            *w++ = (unsigned char)(v >> 8);
        if (u[full + 3] != '=')
            *w++ = (unsigned char)v;
        if ((u[full + 3] == '=' && (v & 0xFF)) || (u[full + 2] == '=' && (v & 0xFFFF)))
            flags |= B64_BAD;
    }
    if (flags & (B64_BAD | B64_PAD)) {
        base64_why(s, len, why, bad);
        return -1;
    }
    *out = o;
    *outlen = (size_t)((char *)w - o);
    return 0;
}

/* ---- phase 1: types ---- */

struct vstate {
    struct arena *a;
    int64_t record_limit;
    const char *msg;
    int nerr;
    struct buf errs;
};

static const char *tname(enum vtype t)
{
    switch (t) {
    case VT_INTEGER: return "Integer";
    case VT_LONG: return "Long";
    default: return "String";
    }
}

static int serr(struct vstate *st, const char *msg)
{
    st->msg = msg;
    return -1;
}

static int check_types(struct vstate *st, struct kv *obj, const struct vfield *f);

static int check_type(struct vstate *st, struct kv *v, const struct vfield *f)
{
    struct arena *a = st->a;
    if (v->type == KV_ARR && f->type != VT_LIST)
        return serr(st, "Start of list found where not expected");
    if (v->type == KV_OBJ && f->type != VT_MAP && f->type != VT_STRUCT)
        return serr(st, "Start of structure or map found where not expected.");
    switch (f->type) {
    case VT_BOOLEAN:
        if (v->type == KV_NUM)
            return serr(st, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not "
                            "be converted to an Boolean");
        if (v->type == KV_STR) {
            char *u = arena_strndup(a, v->s, v->len);
            for (char *p = u; *p; p++)
                *p = (char)toupper((unsigned char)*p);
            return serr(st, arena_printf(a, "'%s' can not be converted to an Boolean", u));
        }
        return 0;
    case VT_INTEGER:
    case VT_LONG:
        if (v->type == KV_BOOL)
            return serr(
                st, arena_printf(a, "class java.lang.Boolean can not be converted to an %s", tname(f->type)));
        if (v->type == KV_STR || v->type == KV_BLOB)
            return serr(
                st, arena_printf(a, "class java.lang.String can not be converted to an %s", tname(f->type)));
        if (v->type == KV_NUM) {
            double d = floor(v->d);
            if (!v->is_int)
                v->i = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
            v->is_int = true;
            if (f->type == VT_INTEGER && v->i > 2147483647)
                v->i = 2147483647;
        }
        return 0;
    case VT_STRING:
        if (v->type == KV_BOOL)
            return serr(st, "class java.lang.Boolean can not be converted to an String");
        if (v->type == KV_NUM)
            return serr(st, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not "
                            "be converted to an String");
        if (v->type == KV_BLOB) {
            /* CBOR byte string where text was expected: take the bytes, if they are text as
             * the decoders require of every string (a bare SerializationException, as for a
             * malformed body) */
            if (!utf8_valid_nonul(v->s, v->len))
                return serr(st, NULL);
            v->type = KV_STR;
        }
        return 0;
    case VT_BLOB:
        if (v->type == KV_BOOL)
            return serr(st, "class java.lang.Boolean can not be converted to a Blob");
        if (v->type == KV_NUM)
            return serr(st, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not "
                            "be converted to a Blob");
        if (v->type == KV_STR) {
            const char *why = NULL;
            char bad = 0, *out;
            size_t outlen;
            if (base64_decode(a, v->s, v->len, &out, &outlen, &why, &bad)) {
                if (!strcmp(why, "length"))
                    return serr(st, arena_printf(a,
                                                 "'%s' can not be converted to a Blob: Base64 encoded "
                                                 "length is expected a multiple of 4 bytes but found: %zu",
                                                 v->s, v->len));
                if (!strcmp(why, "char"))
                    return serr(st, arena_printf(a,
                                                 "'%s' can not be converted to a Blob: Invalid Base64 "
                                                 "character: '%c'",
                                                 v->s, bad));
                return serr(st, arena_printf(a,
                                             "'%s' can not be converted to a Blob: Invalid last "
                                             "non-pad Base64 character dectected",
                                             v->s));
            }
            v->type = KV_BLOB;
            v->s = out;
            v->len = outlen;
        }
        return 0;
    case VT_TIMESTAMP:
        if (v->type == KV_BOOL)
            return serr(st, "class java.lang.Boolean can not be converted to milliseconds since epoch");
        if (v->type == KV_STR || v->type == KV_BLOB)
            return serr(st, "class java.lang.String can not be converted to milliseconds since epoch");
        if (v->type == KV_NUM) {
            /* clamp far past and far future so that seconds or milliseconds times 1000 stays
             * within int64: 9.2e15 is about 290,000 years either side of 1970 */
            const double tmax = 9.2e15;
            if (v->d > tmax || v->d < -tmax)
                v->d = v->d > 0 ? tmax : -tmax;
            if (v->is_int && (v->i > (int64_t)tmax || v->i < -(int64_t)tmax))
                v->i = v->i > 0 ? (int64_t)tmax : -(int64_t)tmax;
        }
        return 0;
    case VT_LIST:
        if (v->type != KV_ARR)
            return serr(st, "Expected list or null");
        for (struct kv *e = v->child; e; e = e->next)
            if (e->type != KV_NULL && check_type(st, e, f->elem))
                return -1;
        return 0;
    case VT_MAP:
        if (v->type != KV_OBJ)
            return serr(st, "Expected map or null");
        for (struct kv *e = v->child; e; e = e->next)
            if (e->type != KV_NULL && check_type(st, e, f->elem))
                return -1;
        return 0;
    case VT_STRUCT:
        if (v->type != KV_OBJ)
            return serr(st, "Expected null");
        return check_types(st, v, f->members);
    }
    return 0;
}

/* The member of obj named like f, unless absent or null. */
static struct kv *member(struct kv *obj, const char *name) { return (struct kv *)kv_get(obj, name); }

static int check_types(struct vstate *st, struct kv *obj, const struct vfield *f)
{
    for (; f->name; f++) {
        struct kv *v = member(obj, f->name);
        if (v && v->type != KV_NULL && check_type(st, v, f))
            return -1;
    }
    return 0;
}

/* ---- phase 2: constraints ---- */

/* Length as Java counts it: UTF-16 code units for strings. */
static int64_t str_len16(const char *s, size_t n)
{
    int64_t len = 0;
    size_t i = 0;
    for (uint64_t w; i + 8 <= n && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ull)); i += 8)
        len += 8; /* eight ASCII characters */
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80)
            len += c >= 0xF0 ? 2 : 1;
    }
    return len;
}

static int64_t vlen(const struct kv *v)
{
    switch (v->type) {
    case KV_STR: return str_len16(v->s, v->len);
    case KV_BLOB: return (int64_t)v->len;
    case KV_ARR:
    case KV_OBJ: return (int64_t)v->n;
    default: return 0;
    }
}

static void render(struct buf *b, const struct kv *v, const struct vfield *f)
{
    switch (v->type) {
    case KV_NULL: buf_adds(b, "null"); break;
    case KV_BOOL: buf_adds(b, v->b ? "true" : "false"); break;
    case KV_NUM:
        if (v->is_int)
            buf_printf(b, "%" PRId64, v->i);
        else
            buf_printf(b, "%.17g", v->d);
        break;
    case KV_STR: buf_add(b, v->s, v->len); break;
    case KV_BLOB: buf_printf(b, "java.nio.HeapByteBuffer[pos=0 lim=%zu cap=%zu]", v->len, v->len); break;
    case KV_ARR:
        buf_addc(b, '[');
        for (const struct kv *e = v->child; e; e = e->next) {
            if (e != v->child)
                buf_adds(b, ", ");
            if (f->member_str)
                buf_adds(b, f->member_str);
            else
                render(b, e, f->elem);
        }
        buf_addc(b, ']');
        break;
    case KV_OBJ:
        buf_addc(b, '{');
        for (const struct kv *e = v->child; e; e = e->next) {
            if (e != v->child)
                buf_adds(b, ", ");
            buf_adds(b, e->key);
            buf_addc(b, '=');
            render(b, e, f->elem ? f->elem : f);
        }
        buf_addc(b, '}');
        break;
    }
}

static void lower_first(struct buf *b, const char *name)
{
    buf_addc(b, (char)tolower((unsigned char)name[0]));
    buf_adds(b, name + 1);
}

/* Where a value is, as a chain of segments from the innermost out; rendered only when a check
 * fails ("records.3.member" + "." + the field's name), so a valid request formats nothing. */
struct vpath {
    const struct vpath *up;
    const char *s; /* a member's name (lower_name) or a map key; NULL: the list index i */
    bool lower_name;
    int64_t i;
};

static void render_path(struct buf *b, const struct vpath *p)
{
    if (!p)
        return;
    if (p->up) {
        render_path(b, p->up);
        buf_addc(b, '.');
    }
    if (!p->s)
        buf_printf(b, "%" PRId64, p->i);
    else if (p->lower_name)
        lower_first(b, p->s);
    else
        buf_adds(b, p->s);
}

static void fail(struct vstate *st, const struct vpath *path, const char *name, const struct kv *v,
                 const struct vfield *f, const char *what)
{
    struct buf *b = &st->errs;
    if (st->nerr++)
        buf_adds(b, "; ");
    buf_adds(b, "Value ");
    if (v && v->type != KV_NULL) {
        buf_addc(b, '\'');
        render(b, v, f);
        buf_addc(b, '\'');
    } else {
        buf_adds(b, "null");
    }
    buf_adds(b, " at '");
    if (path) {
        render_path(b, path);
        buf_addc(b, '.');
    }
    lower_first(b, name);
    buf_adds(b, "' failed to satisfy constraint: ");
    buf_adds(b, what);
}

static bool len_in(const struct kv *v, int64_t lo, int64_t hi)
{
    int64_t n = vlen(v);
    return n >= lo && n <= hi;
}

static bool in_enum(const struct kv *v, const char *const *names)
{
    for (const char *const *e = names; *e; e++)
        if (v->type == KV_STR && !strcmp(v->s, *e))
            return true;
    return false;
}

/* "A, B, C" (arena) */
static const char *enum_set(struct vstate *st, const char *const *names)
{
    struct buf set = BUF_INIT;
    for (const char *const *e = names; *e; e++) {
        if (e != names)
            buf_adds(&set, ", ");
        buf_adds(&set, *e);
    }
    buf_addc(&set, 0);
    const char *out = arena_printf(st->a, "%s", set.p);
    buf_free(&set);
    return out;
}

static void check_field(struct vstate *st, const struct vpath *path, const char *name, struct kv *v,
                        const struct vfield *f, struct kv *parent);

static void check_fields(struct vstate *st, const struct vpath *path, struct kv *obj, const struct vfield *f)
{
    for (; f->name; f++) {
        struct kv *v = member(obj, f->name);
        if (v && v->type == KV_NULL)
            v = NULL;
        check_field(st, path, f->name, v, f, obj);
    }
}

/* The constraint c that v failed, in AWS's words (arena text). */
static const char *what_failed(struct vstate *st, const struct vcheck *c)
{
    switch (c->kind) {
    case VC_GE: return arena_printf(st->a, "Member must have value greater than or equal to %" PRId64, c->n);
    case VC_LE: return arena_printf(st->a, "Member must have value less than or equal to %" PRId64, c->n);
    case VC_LEN_GE:
        return arena_printf(st->a, "Member must have length greater than or equal to %" PRId64, c->n);
    case VC_LEN_LE:
        return arena_printf(st->a, "Member must have length less than or equal to %" PRId64,
                            c->n == VLIMIT_RECORD ? st->record_limit : c->n);
    case VC_REGEX:
        return arena_printf(st->a, "Member must satisfy regular expression pattern: %s", c->re->pattern);
    case VC_ENUM:
        return arena_printf(st->a, "Member must satisfy enum value set: [%s]", enum_set(st, c->names));
    case VC_CHILD_ENUM:
        return arena_printf(st->a,
                            "Member must satisfy constraint: [Member must satisfy enum value set: [%s]]",
                            enum_set(st, c->names));
    case VC_CHILD_LEN:
    case VC_CHILD_KEY_LEN:
    case VC_CHILD_VAL_LEN:
        return arena_printf(
            st->a,
            "%s must satisfy constraint: [Member must have length less than or equal to %" PRId64
            ", Member must have length greater than or equal to %" PRId64 "]",
            c->kind == VC_CHILD_KEY_LEN   ? "Map keys"
            : c->kind == VC_CHILD_VAL_LEN ? "Map value"
                                          : "Member",
            c->m, c->n);
    default: return "";
    }
}

static void check_field(struct vstate *st, const struct vpath *path, const char *name, struct kv *v,
                        const struct vfield *f, struct kv *parent)
{
    int64_t len = -1; /* v's length, measured once for its length checks */
    for (const struct vcheck *c = f->checks; c->kind != VC_END; c++) {
        if (st->nerr >= 10)
            return;
        if (!v) {
            const struct kv *o = c->kind == VC_NOT_NULL_UNLESS ? kv_get(parent, c->other) : NULL;
            if (c->kind == VC_NOT_NULL || (c->kind == VC_NOT_NULL_UNLESS && (!o || o->type == KV_NULL)))
                fail(st, path, name, NULL, f, "Member must not be null");
            continue;
        }
        bool ok = true;
        switch (c->kind) {
        case VC_END:
        case VC_NOT_NULL:
        case VC_NOT_NULL_UNLESS: continue;
        case VC_GE: ok = v->type != KV_NUM || v->i >= c->n; break;
        case VC_LE: ok = v->type != KV_NUM || v->i <= c->n; break;
        case VC_LEN_GE: ok = (len < 0 ? (len = vlen(v)) : len) >= c->n; break;
        case VC_LEN_LE:
            ok = (len < 0 ? (len = vlen(v)) : len) <= (c->n == VLIMIT_RECORD ? st->record_limit : c->n);
            break;
        case VC_REGEX: ok = v->type != KV_STR || (strlen(v->s) == v->len && vregex_match(c->re, v->s)); break;
        case VC_ENUM: ok = in_enum(v, c->names); break;
        case VC_CHILD_ENUM:
            for (struct kv *e = v->child; e && ok; e = e->next)
                ok = in_enum(e, c->names);
            break;
        case VC_CHILD_LEN:
        case VC_CHILD_KEY_LEN:
        case VC_CHILD_VAL_LEN:
            for (struct kv *e = v->child; e && ok; e = e->next) {
                if (c->kind == VC_CHILD_KEY_LEN) {
                    int64_t n = str_len16(e->key, strlen(e->key));
                    ok = n >= c->n && n <= c->m;
                } else {
                    ok = len_in(e, c->n, c->m);
                }
            }
            break;
        }
        if (!ok)
            fail(st, path, name, v, f, what_failed(st, c));
    }
    if (!v || st->nerr >= 10)
        return;
    /* then the elements */
    const struct vpath sub = {path, name, true, 0};
    if (f->type == VT_STRUCT) {
        check_fields(st, &sub, v, f->members);
    } else if (f->type == VT_LIST && f->elem) {
        struct vpath ep = {&sub, NULL, false, 1};
        const struct vpath member_seg = {&ep, "member", false, 0};
        for (struct kv *e = v->child; e && st->nerr < 10; e = e->next, ep.i++) {
            if (f->elem->type == VT_STRUCT)
                check_fields(st, &member_seg, e->type == KV_NULL ? NULL : e, f->elem->members);
            else
                check_field(st, &ep, "member", e->type == KV_NULL ? NULL : e, f->elem, v);
        }
    } else if (f->type == VT_MAP && f->elem && f->elem->checks[0].kind != VC_END) {
        /* AWS reports map entries last key first */
        size_t n = v->n, i = 0;
        struct kv **items = arena_alloc(st->a, (n ? n : 1) * sizeof *items);
        for (struct kv *e = v->child; e; e = e->next)
            items[i++] = e;
        while (i-- > 0 && st->nerr < 10) {
            const struct vpath kp = {&sub, items[i]->key, false, 0};
            check_field(st, &kp, "member", items[i]->type == KV_NULL ? NULL : items[i], f->elem, v);
        }
    }
}

int validate_request(struct arena *a, struct kv *req, const struct vfield *fields, int64_t record_limit,
                     int *kind, const char **msg)
{
    struct vstate st = {.a = a, .record_limit = record_limit};
    if (check_types(&st, req, fields)) {
        *kind = 0;
        *msg = st.msg;
        return -1;
    }
    check_fields(&st, NULL, req, fields);
    if (!st.nerr)
        return 0;
    buf_addc(&st.errs, 0);
    *kind = 1;
    *msg = arena_printf(a, "%d validation error%s detected: %s", st.nerr, st.nerr > 1 ? "s" : "", st.errs.p);
    buf_free(&st.errs);
    return -1;
}
