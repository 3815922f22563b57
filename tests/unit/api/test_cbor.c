/* Unit tests of the CBOR decoder's guarantees (value.h): tags in a loop with a small limit,
 * text strings in strict UTF-8 without NUL, no NaN or infinity, bounded nesting and tree. */
#include "check.h"
#include "value.h"

static int parse1(const char *body, size_t len)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    int rc = cbor_parse(&a, body, len, &v);
    arena_free(&a);
    return rc;
}
#define P(lit) parse1(lit, sizeof lit - 1)

static void tags_are_unwrapped_in_a_loop_with_a_limit(void)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    /* 55799 (self-described CBOR), then tag 1 (a timestamp) around 1 */
    CHECK(cbor_parse(&a, "\xd9\xd9\xf7\xc1\x01", 5, &v) == 0 && v->type == KV_NUM && v->i == 1);
    arena_free(&a);
    char chain[KV_MAX_TAGS + 1];
    memset(chain, 0xc0, KV_MAX_TAGS);
    chain[KV_MAX_TAGS] = 0x01;
    CHECK(parse1(chain, KV_MAX_TAGS + 1) == 0);
    /* 300 KB of tags, the chain that used to recurse off the stack */
    size_t n = 300000;
    char *many = malloc(n);
    memset(many, 0xc0, n - 1);
    many[n - 1] = 0x01;
    CHECK(parse1(many, n) == KV_MALFORMED);
    free(many);
    CHECK(P("\xdf\x01") == KV_MALFORMED); /* a tag cannot be indefinite */
}

static void text_must_be_utf8_without_nul(void)
{
    CHECK(P("\x62\xc3\xa9") == 0);
    CHECK(P("\x61\xff") == KV_MALFORMED);
    CHECK(P("\x62\xc0\xaf") == KV_MALFORMED);         /* overlong */
    CHECK(P("\x63\xed\xa0\x80") == KV_MALFORMED);     /* a surrogate */
    CHECK(P("\x64\xf4\x90\x80\x80") == KV_MALFORMED); /* past U+10FFFF */
    CHECK(P("\x63"
            "a\0b") == KV_MALFORMED);             /* NUL */
    CHECK(P("\xa1\x61\xff\x01") == KV_MALFORMED); /* map keys too */
    /* indefinite text: each chunk on its own, so a character split over chunks is refused */
    CHECK(P("\x7f\x61\xc3\x61\xa9\xff") == KV_MALFORMED);
    CHECK(P("\x7f\x62\xc3\xa9\x61z\xff") == 0);
    /* byte strings are data: anything goes */
    CHECK(P("\x43\x00\xff\xc0") == 0);
}

static void numbers_must_be_finite(void)
{
    CHECK(P("\xf9\x7e\x00") == KV_MALFORMED); /* half NaN */
    CHECK(P("\xf9\x7c\x00") == KV_MALFORMED); /* half +infinity */
    CHECK(P("\xfa\x7f\x80\x00\x00") == KV_MALFORMED);
    CHECK(P("\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00") == KV_MALFORMED);
    CHECK(P("\xfb\x80\x00\x00\x00\x00\x00\x00\x00") == 0); /* -0.0 is a number */
    CHECK(P("\x1f") == KV_MALFORMED);                      /* no indefinite integers */
    CHECK(P("\x3f") == KV_MALFORMED);
    struct arena a;
    arena_init(&a);
    struct kv *v;
    CHECK(cbor_parse(&a, "\x1b\xff\xff\xff\xff\xff\xff\xff\xff", 9, &v) == 0 && !v->is_int);
    CHECK(cbor_parse(&a, "\x3b\x7f\xff\xff\xff\xff\xff\xff\xff", 9, &v) == 0 && !v->is_int);
    arena_free(&a);
}

static void nesting_is_bounded(void)
{
    char deep[KV_MAX_DEPTH + 2];
    memset(deep, 0x81, sizeof deep); /* arrays of one element */
    deep[KV_MAX_DEPTH + 1] = 0x01;
    CHECK(parse1(deep, KV_MAX_DEPTH + 2) == KV_MALFORMED);
    CHECK(parse1(deep + 1, KV_MAX_DEPTH + 1) == 0);
    /* maps whose keys are maps count too */
    char keys[2 * KV_MAX_DEPTH + 4];
    memset(keys, 0xa1, sizeof keys);
    CHECK(parse1(keys, sizeof keys) == KV_MALFORMED);
}

/* 7 MiB of {"x":[0,0,0,...]}: the tree stops at its budget, with a clean error */
static void the_tree_keeps_to_its_budget(void)
{
    size_t n = 7u << 20;
    char *body = calloc(1, n);
    memcpy(body, "\xa1\x61x\x9f", 4); /* zeros follow: 0x00 is the integer 0 */
    body[n - 1] = (char)0xff;
    struct arena a;
    arena_init(&a);
    struct kv *v;
    CHECK(cbor_parse(&a, body, n, &v) == KV_TOO_BIG);
    CHECK(a.used <= kv_budget(n));
    arena_free(&a);
    /* a definite-length array announcing more items than bytes remain */
    CHECK(P("\x9b\x00\x00\x00\x00\xff\xff\xff\xff\x00") == KV_MALFORMED);
    free(body);
}

CHECK_RUN("cbor", T(tags_are_unwrapped_in_a_loop_with_a_limit), T(text_must_be_utf8_without_nul),
          T(numbers_must_be_finite), T(nesting_is_bounded), T(the_tree_keeps_to_its_budget))
