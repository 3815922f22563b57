/* Unit tests of the JSON decoder's guarantees (value.h): strict UTF-8 in every string, no NUL,
 * no lone surrogate, finite numbers, bounded nesting and a bounded tree. */
#include <float.h>
#include <math.h>

#include "check.h"
#include "value.h"

static int parse(const char *text, struct kv **v, struct arena *a)
{
    return json_parse(a, text, strlen(text), v);
}

static int parse1(const char *text)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    int rc = parse(text, &v, &a);
    arena_free(&a);
    return rc;
}

static void strings_must_be_utf8_without_nul(void)
{
    CHECK(parse1("[\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"]") == 0);
    CHECK(parse1("[\"\xff\"]") == KV_MALFORMED);             /* never a lead byte */
    CHECK(parse1("[\"\x80\"]") == KV_MALFORMED);             /* stray continuation */
    CHECK(parse1("[\"\xc3\"]") == KV_MALFORMED);             /* truncated */
    CHECK(parse1("[\"\xc0\xaf\"]") == KV_MALFORMED);         /* overlong '/' */
    CHECK(parse1("[\"\xe0\x80\xaf\"]") == KV_MALFORMED);     /* overlong, three bytes */
    CHECK(parse1("[\"\xf0\x80\x80\xaf\"]") == KV_MALFORMED); /* overlong, four bytes */
    CHECK(parse1("[\"\xed\xa0\x80\"]") == KV_MALFORMED);     /* U+D800 encoded in UTF-8 */
    CHECK(parse1("[\"\xf4\x90\x80\x80\"]") == KV_MALFORMED); /* U+110000 */
    CHECK(parse1("[\"a\\u0000b\"]") == KV_MALFORMED);        /* NUL by escape */
    CHECK(parse1("{\"\xff\":1}") == KV_MALFORMED);           /* member names too */
    CHECK(parse1("{\"a\\u0000\":1}") == KV_MALFORMED);
    /* the same bytes after an escape take the slow path: still checked */
    CHECK(parse1("[\"\\n\xff\"]") == KV_MALFORMED);
    CHECK(parse1("[\"\\n\xed\xa0\x80\"]") == KV_MALFORMED);
}

static void surrogate_escapes_must_pair(void)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    CHECK(parse("[\"\\ud83d\\ude00\"]", &v, &a) == 0);
    CHECK(v->child->len == 4 && !memcmp(v->child->s, "\xf0\x9f\x98\x80", 4));
    CHECK(parse("[\"\\u00e9\\u4e2d\"]", &v, &a) == 0);
    CHECK_STR(v->child->s, "\xc3\xa9\xe4\xb8\xad");
    arena_free(&a);
    CHECK(parse1("[\"\\ud800\"]") == KV_MALFORMED);        /* lone high */
    CHECK(parse1("[\"\\ud800x\"]") == KV_MALFORMED);       /* high then text */
    CHECK(parse1("[\"\\ud800\\u0041\"]") == KV_MALFORMED); /* high then not a low */
    CHECK(parse1("[\"\\ud800\\ud800\"]") == KV_MALFORMED); /* high then high */
    CHECK(parse1("[\"\\udc00\"]") == KV_MALFORMED);        /* lone low */
    CHECK(parse1("[\"\\udfff\\ud800\"]") == KV_MALFORMED); /* pair in the wrong order */
}

static void hostile_numbers_stay_finite(void)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    CHECK(parse("[1e300, 1e999, -1e999, -0, 12345678901234567890, 1e-999]", &v, &a) == 0);
    const struct kv *n = v->child;
    CHECK(n->d == 1e300 && !n->is_int);
    n = n->next;
    CHECK(n->d == DBL_MAX); /* beyond a double: clamped, never infinite */
    n = n->next;
    CHECK(n->d == -DBL_MAX);
    n = n->next;
    CHECK(n->is_int && n->i == 0);
    n = n->next;
    CHECK(!n->is_int && isfinite(n->d)); /* past int64: not an integer, still a number */
    n = n->next;
    CHECK(n->d == 0);
    arena_free(&a);
    CHECK(parse1("[NaN]") == KV_MALFORMED);
    CHECK(parse1("[Infinity]") == KV_MALFORMED);
    CHECK(parse1("[-Infinity]") == KV_MALFORMED);
}

static void nesting_is_bounded(void)
{
    char deep[2 * (KV_MAX_DEPTH + 1) + 1];
    for (int i = 0; i <= KV_MAX_DEPTH; i++) {
        deep[i] = '[';
        deep[2 * (KV_MAX_DEPTH + 1) - 1 - i] = ']';
    }
    deep[2 * (KV_MAX_DEPTH + 1)] = 0;
    CHECK(parse1(deep) == KV_MALFORMED);
    CHECK(parse1(deep + 1) == KV_MALFORMED); /* unbalanced */
    deep[2 * (KV_MAX_DEPTH + 1) - 1] = 0;
    CHECK(parse1(deep + 1) == 0); /* exactly KV_MAX_DEPTH levels */
}

/* A body of tiny items passes its budget and fails cleanly, within it; a real request of the
 * same size does not come near it. */
static void the_tree_keeps_to_its_budget(void)
{
    size_t n = 4u << 20;
    char *body = malloc(n);
    if (!body)
        abort();
    memcpy(body, "{\"x\":[", 6);
    size_t items = (n - 9) / 2, i = 6;
    for (size_t k = 0; k < items; k++, i += 2)
        memcpy(body + i, "0,", 2);
    memcpy(body + i, "0]}", 3);
    i += 3;
    struct arena a;
    arena_init(&a);
    struct kv *v;
    CHECK(json_parse(&a, body, i, &v) == KV_TOO_BIG);
    CHECK(a.used <= kv_budget(i));
    CHECK(a.limit == 0); /* the limit is the decoder's alone */
    arena_free(&a);

    /* 4 MiB of record data in one string: within the budget */
    memcpy(body, "{\"Data\":\"", 9);
    memset(body + 9, 'A', n - 11);
    memcpy(body + n - 2, "\"}", 2);
    arena_init(&a);
    CHECK(json_parse(&a, body, n, &v) == 0 && kv_get(v, "Data")->len == n - 11);
    arena_free(&a);
    free(body);
    CHECK(kv_budget(1u << 30) == KV_BUDGET_MAX);
}

/* The server's own documents: bytes of earlier versions are kept, dense trees are not capped. */
static void stored_documents_stay_readable(void)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    const char *old = "{\"t\":\"\xff\\u0000\"}";
    CHECK(json_parse_stored(&a, old, strlen(old), &v) == 0);
    CHECK(v->type == KV_OBJ && kv_get(v, "t")->len == 2);
    CHECK(json_parse_stored(&a, "[\"\\ud800\"]", 10, &v) == KV_MALFORMED); /* never written */
    arena_free(&a);
    size_t n = 20000, cap = n * 40 + 16, len = 0;
    char *doc = malloc(cap);
    if (!doc)
        abort();
    doc[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(doc + len, cap - len, "%s{\"i\":%zu,\"a\":1,\"b\":2}", i ? "," : "", i);
    doc[len++] = ']';
    arena_init(&a);
    CHECK(json_parse(&a, doc, len, &v) == KV_TOO_BIG);
    arena_free(&a);
    arena_init(&a);
    CHECK(json_parse_stored(&a, doc, len, &v) == 0 && v->n == n);
    arena_free(&a);
    free(doc);
}

CHECK_RUN("json", T(strings_must_be_utf8_without_nul), T(surrogate_escapes_must_pair),
          T(hostile_numbers_stay_finite), T(nesting_is_bounded), T(the_tree_keeps_to_its_budget),
          T(stored_documents_stay_readable))
