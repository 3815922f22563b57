/* value.h: the decoded request, independent of its wire format.
 *
 * JSON and CBOR bodies decode into the same tree, so the validation engine and the handlers
 * never know which format a client spoke. Every node and string lives in the request arena.
 * Blobs arrive as KV_STR from JSON (base64 text) and as KV_BLOB from CBOR; the validation engine
 * turns a schema Blob field into KV_BLOB in place. */
#ifndef KINESD_VALUE_H
#define KINESD_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

enum kv_type { KV_NULL, KV_BOOL, KV_NUM, KV_STR, KV_BLOB, KV_ARR, KV_OBJ };

struct kv {
    enum kv_type type;
    bool b;           /* KV_BOOL */
    bool is_int;      /* KV_NUM: integral and within int64 */
    int64_t i;        /* KV_NUM when is_int */
    double d;         /* KV_NUM */
    const char *s;    /* KV_STR, KV_BLOB: bytes (NUL-terminated for KV_STR); KV_NUM: source text */
    size_t len;       /* KV_STR, KV_BLOB: byte length; KV_NUM: source text length */
    struct kv *child; /* KV_ARR, KV_OBJ: first element / member */
    struct kv *next;  /* next sibling */
    const char *key;  /* member name when the parent is KV_OBJ */
    size_t n;         /* KV_ARR, KV_OBJ: number of children */
};

/* Member of an object by exact name (the last one when repeated), or NULL. Borrowed. */
const struct kv *kv_get(const struct kv *obj, const char *key);

/* Parse a JSON text into a tree in the arena. Returns 0, or -1 on a syntax error, depth over
 * 64 levels, or trailing data. *out is left untouched on failure. */
int json_parse(struct arena *a, const char *text, size_t len, struct kv **out);

/* Parse the first CBOR item of a body into a tree in the arena (trailing bytes are ignored,
 * as AWS does). Returns 0, or -1 on malformed input; *out untouched on failure. */
int cbor_parse(struct arena *a, const char *body, size_t len, struct kv **out);

#endif
