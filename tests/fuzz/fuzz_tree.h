/* fuzz_tree.h: what the decoder harnesses do with a decoded tree, shared by fuzz_json.c and
 * fuzz_cbor.c. The tree goes through the validation engine with the schemas of a few
 * operations (each on a fresh decode, since validation rewrites Blob members in place), and
 * every string of it is written back as JSON and parsed again: the decoders promise text an
 * answer can repeat, and the encoder promises valid JSON whatever it is given. */
#ifndef KINESD_FUZZ_TREE_H
#define KINESD_FUZZ_TREE_H

#include <stdlib.h>
#include <string.h>

#include "enc.h"
#include "internal.h"
#include "utf8.h"
#include "validate.h"
#include "value.h"

extern const struct op_def op_put_records, op_put_record, op_get_shard_iterator, op_list_shards,
    op_add_tags_to_stream;

static const struct op_def *const fuzz_ops[] = {&op_put_records, &op_put_record, &op_get_shard_iterator,
                                                &op_list_shards, &op_add_tags_to_stream};

/* The decoders' promises about a tree (value.h), checked node by node. */
static inline void fuzz_check_tree(const struct kv *v, int depth)
{
    if (depth > KV_MAX_DEPTH + 1)
        abort();
    switch (v->type) {
    case KV_STR:
        if (!utf8_valid_nonul(v->s, v->len) || v->s[v->len])
            abort();
        break;
    case KV_NUM:
        if (v->d != v->d || v->d - v->d != 0) /* NaN or infinite */
            abort();
        break;
    case KV_ARR:
    case KV_OBJ: {
        uint32_t n = 0;
        for (const struct kv *c = v->child; c; c = c->next, n++) {
            if (v->type == KV_OBJ && (!c->key || !utf8_valid_nonul(c->key, strlen(c->key))))
                abort();
            fuzz_check_tree(c, depth + 1);
        }
        if (n != v->n)
            abort();
        break;
    }
    default: break;
    }
}

/* Write s as a JSON answer and parse it back: it must parse, to the same bytes when s is
 * UTF-8; the same for the CBOR rendering. (NUL is written as \u0000, valid JSON that our
 * decoder refuses on purpose: NUL bytes are checked as 0x01 instead.) */
static inline void fuzz_roundtrip_string(const char *s0, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        abort();
    for (size_t i = 0; i < len; i++)
        s[i] = s0[i] ? s0[i] : 1;
    struct enc e;
    enc_init(&e, WIRE_JSON);
    enc_arr_begin(&e);
    enc_str(&e, s, len);
    enc_arr_end(&e);
    struct arena a;
    arena_init(&a);
    struct kv *v;
    if (json_parse(&a, e.b.p, e.b.len, &v) || v->type != KV_ARR || v->n != 1 || v->child->type != KV_STR)
        abort();
    if (utf8_valid_nonul(s, len) && (v->child->len != len || memcmp(v->child->s, s, len)))
        abort();
    arena_free(&a);
    buf_free(&e.b);
    /* the same string as a CBOR answer writes it: a text string our decoder accepts */
    enc_init(&e, WIRE_CBOR);
    enc_str(&e, s, len);
    arena_init(&a);
    if (cbor_parse(&a, e.b.p, e.b.len, &v) || v->type != KV_STR)
        abort();
    if (utf8_valid_nonul(s, len) && (v->len != len || memcmp(v->s, s, len)))
        abort();
    arena_free(&a);
    buf_free(&e.b);
    free(s);
}

/* The first *budget strings of the tree (a few are enough: fuzz_check_tree has checked them
 * all, and the harness's raw-bytes round trip covers the writer; every string would make the
 * harness ten times slower). */
static inline void fuzz_roundtrip_tree(const struct kv *v, int *budget)
{
    if (v->type == KV_STR && (*budget)-- > 0)
        fuzz_roundtrip_string(v->s, v->len);
    for (const struct kv *c = v->child; c && *budget > 0; c = c->next) {
        if (c->key && (*budget)-- > 0)
            fuzz_roundtrip_string(c->key, strlen(c->key));
        fuzz_roundtrip_tree(c, budget);
    }
}

typedef int (*fuzz_decode_fn)(struct arena *a, const char *body, size_t len, struct kv **out);

static inline void fuzz_one_body(fuzz_decode_fn decode, const uint8_t *data, size_t size)
{
    struct arena a;
    arena_init(&a);
    struct kv *v;
    int rc = decode(&a, (const char *)data, size, &v);
    if (rc != 0 && rc != KV_MALFORMED && rc != KV_TOO_BIG)
        abort();
    if (a.used > kv_budget(size) + 64)
        abort(); /* the tree kept to its budget */
    if (rc == 0) {
        fuzz_check_tree(v, 0);
        int budget = 8;
        fuzz_roundtrip_tree(v, &budget);
    }
    arena_free(&a);
    if (rc != 0)
        return;
    for (size_t i = 0; i < sizeof fuzz_ops / sizeof fuzz_ops[0]; i++) {
        arena_init(&a);
        if (!decode(&a, (const char *)data, size, &v) && v->type == KV_OBJ) {
            int kind;
            const char *msg;
            if (validate_request(&a, v, fuzz_ops[i]->schema, 1048576, &kind, &msg) == 0)
                fuzz_check_tree(v, 0);
            else if (msg)
                fuzz_roundtrip_string(msg, strlen(msg)); /* messages echo the client's values */
        }
        arena_free(&a);
    }
}

#endif
