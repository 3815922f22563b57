/* value.h: the decoded request, independent of its wire format.
 *
 * JSON and CBOR bodies decode into the same tree, so the validation engine and the handlers
 * never know which format a client spoke. Every node and string lives in the request arena.
 * Blobs arrive as KV_STR from JSON (base64 text) and as KV_BLOB from CBOR; the validation engine
 * turns a schema Blob field into KV_BLOB in place.
 *
 * What a decoded tree guarantees, whichever the format:
 *   - every KV_STR and every member name is valid UTF-8 (utf8.h) without NUL, so it can be
 *     stored, compared with strcmp and written back as JSON; KV_BLOB bytes are arbitrary;
 *   - every KV_NUM is finite (NaN and infinities are refused; JSON numbers beyond a double's
 *     range are clamped to +-DBL_MAX), so conversions of it are defined;
 *   - nesting is at most KV_MAX_DEPTH arrays and maps, and CBOR tags at most KV_MAX_TAGS deep;
 *   - the tree and its strings take at most kv_budget(body length) bytes of the arena. */
#ifndef KINESD_VALUE_H
#define KINESD_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

enum kv_type { KV_NULL, KV_BOOL, KV_NUM, KV_STR, KV_BLOB, KV_ARR, KV_OBJ };

/* 64 bytes a node: the bound on a tree's size is kv_budget, not the node count. */
struct kv {
    uint8_t type;     /* enum kv_type */
    bool b;           /* KV_BOOL */
    bool is_int;      /* KV_NUM: integral and within int64 */
    uint32_t n;       /* KV_ARR, KV_OBJ: number of children */
    int64_t i;        /* KV_NUM when is_int */
    double d;         /* KV_NUM */
    const char *s;    /* KV_STR, KV_BLOB: bytes (NUL-terminated for KV_STR); KV_NUM: source text
                       * from JSON, NULL from CBOR */
    size_t len;       /* KV_STR, KV_BLOB: byte length; KV_NUM: source text length */
    struct kv *child; /* KV_ARR, KV_OBJ: first element / member */
    struct kv *next;  /* next sibling */
    const char *key;  /* member name when the parent is KV_OBJ */
};

#define KV_MAX_DEPTH 64 /* arrays and maps, nested */
#define KV_MAX_TAGS 8   /* CBOR tags on one item */

/* The decoders' return codes. */
#define KV_MALFORMED (-1) /* not a well-formed body, or a string that is not UTF-8 or holds NUL */
#define KV_TOO_BIG (-2)   /* the tree would pass kv_budget, or memory ran out */

/* Most arena bytes a tree decoded from a body of len bytes may take: a fixed allowance for the
 * nodes of any real request, plus 1.25 bytes per body byte (strings never outgrow their
 * source), at most KV_BUDGET_MAX. Real requests stay far below it; a body of tiny items (a
 * node costs 64 bytes) reaches it after a fraction of its length. */
#define KV_BUDGET_BASE ((size_t)1 << 20)
#define KV_BUDGET_MAX ((size_t)32 << 20)
size_t kv_budget(size_t len);

/* Member of an object by exact name (the last one when repeated), or NULL. Borrowed. */
const struct kv *kv_get(const struct kv *obj, const char *key);

/* Parse a JSON text into a tree in the arena. Returns 0, KV_MALFORMED (syntax, depth,
 * trailing data, invalid UTF-8, NUL or a lone surrogate in a string), or KV_TOO_BIG. *out is
 * left untouched on failure; the arena may hold partial work until it is freed. */
int json_parse(struct arena *a, const char *text, size_t len, struct kv **out);

/* json_parse for the server's own stored documents (stream metadata): string bytes are taken
 * as they are, as versions before the UTF-8 checks stored them, so a stream whose tags hold
 * such bytes stays readable (the answer writer replaces them), and without kv_budget (the
 * metadata of a stream of 20,000 shards is a dense tree). Never for a client's body. */
int json_parse_stored(struct arena *a, const char *text, size_t len, struct kv **out);

/* Parse the first CBOR item of a body into a tree in the arena (trailing bytes are ignored,
 * as AWS does). Returns 0, KV_MALFORMED or KV_TOO_BIG as json_parse; *out untouched on
 * failure. */
int cbor_parse(struct arena *a, const char *body, size_t len, struct kv **out);

#endif
