/* validate.h: the declarative validation engine.
 *
 * An operation declares its input as a table of fields (name, type, ordered constraints);
 * validate_request checks a decoded request against it in AWS's order and renders AWS's exact
 * messages:
 *   1. types, field by field in table order: the first mismatch is a SerializationException
 *      ("class java.lang.String can not be converted to an Integer", ...). Unknown members are
 *      ignored; JSON base64 Blob members are decoded in place (KV_STR -> KV_BLOB), fractional
 *      Integer/Long values are floored (AWS's coercion);
 *   2. constraints, field by field and constraint by constraint in table order, up to 10, as
 *      "N validation error(s) detected: Value 'x' at 'streamName' failed to satisfy constraint:
 *      Member must ...; ...". Nested members are named records.1.member.partitionKey.
 * Handlers can then read members without re-checking type or bounds. */
#ifndef KINESD_VALIDATE_H
#define KINESD_VALIDATE_H

#include <regex.h>
#include <stdint.h>

#include "arena.h"
#include "value.h"

enum vtype { VT_STRING, VT_INTEGER, VT_LONG, VT_BOOLEAN, VT_BLOB, VT_TIMESTAMP, VT_LIST, VT_MAP, VT_STRUCT };

enum vkind {
    VC_END,
    VC_NOT_NULL,
    VC_NOT_NULL_UNLESS, /* must not be null unless the sibling member `other` is present */
    VC_GE,              /* numeric value >= n */
    VC_LE,              /* numeric value <= n */
    VC_REGEX,           /* whole value matches pattern */
    VC_LEN_GE,          /* length (bytes of a blob, characters of a string, entries) >= n */
    VC_LEN_LE,
    VC_ENUM,          /* one of names */
    VC_CHILD_LEN,     /* every list element has length in [n, m] */
    VC_CHILD_KEY_LEN, /* every map key has length in [n, m] */
    VC_CHILD_VAL_LEN, /* every map value has length in [n, m] */
    VC_CHILD_ENUM,    /* every list element is one of names */
};

/* A pattern as AWS prints it; compiled once, on first use, into a POSIX ERE. */
struct vregex {
    const char *pattern;
    int state; /* 0 not compiled yet, 1 compiled, -1 failed to compile */
    regex_t re;
};

struct vcheck {
    enum vkind kind;
    int64_t n, m;
    struct vregex *re;
    const char *const *names; /* VC_ENUM: NULL-terminated */
    const char *other;        /* VC_NOT_NULL_UNLESS: the sibling that can stand in */
};

struct vfield {
    const char *name; /* wire name, e.g. "StreamName"; NULL ends a table */
    enum vtype type;
    struct vcheck checks[8];      /* in AWS's order, ended by VC_END (zero) */
    const struct vfield *members; /* VT_STRUCT: its fields */
    const struct vfield *elem;    /* VT_LIST, VT_MAP: the element's description */
    const char *member_str;       /* VT_LIST of structures: how AWS prints an element */
};

/* clang-format off */
#define NOT_NULL             {VC_NOT_NULL, 0, 0, 0, 0, 0}
#define NOT_NULL_UNLESS(sib) {VC_NOT_NULL_UNLESS, 0, 0, 0, 0, sib}
#define GE(x)                {VC_GE, x, 0, 0, 0, 0}
#define LE(x)                {VC_LE, x, 0, 0, 0, 0}
#define LEN_GE(x)            {VC_LEN_GE, x, 0, 0, 0, 0}
#define LEN_LE(x)            {VC_LEN_LE, x, 0, 0, 0, 0}
#define REGEX(r)             {VC_REGEX, 0, 0, &r, 0, 0}
#define ENUM(list)           {VC_ENUM, 0, 0, 0, list, 0}
#define CHILD_LEN(a, b)      {VC_CHILD_LEN, a, b, 0, 0, 0}
#define CHILD_KEY_LEN(a, b)  {VC_CHILD_KEY_LEN, a, b, 0, 0, 0}
#define CHILD_VAL_LEN(a, b)  {VC_CHILD_VAL_LEN, a, b, 0, 0, 0}
#define CHILD_ENUM(list)     {VC_CHILD_ENUM, 0, 0, 0, list, 0}
/* A record's data: at most the maximum record size of the stream the request names (the
 * record_limit given to validate_request). */
#define VLIMIT_RECORD (-1)
#define LEN_LE_RECORD        {VC_LEN_LE, VLIMIT_RECORD, 0, 0, 0, 0}
/* clang-format on */

/* Shared field descriptions. */
extern struct vregex vre_name; /* [a-zA-Z0-9_.-]+ : stream, shard and consumer names */
extern struct vregex vre_stream_arn;
extern struct vregex vre_stream_id;    /* [a-z0-9]{20}-[a-z0-9]{3} */
extern struct vregex vre_resource_arn; /* a stream's or a consumer's ARN */
extern struct vregex vre_hash_key;     /* 0|([1-9]\d{0,38}) */
extern struct vregex vre_seq;          /* 0|([1-9]\d{0,128}) */
/* clang-format off */
/* StreamName, required unless StreamARN names the stream */
#define F_STREAM_NAME \
    {"StreamName", VT_STRING, {NOT_NULL_UNLESS("StreamARN"), REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0}
#define F_STREAM_NAME_OPT \
    {"StreamName", VT_STRING, {REGEX(vre_name), LEN_GE(1), LEN_LE(128)}, 0, 0, 0}
#define F_STREAM_ARN \
    {"StreamARN", VT_STRING, {LEN_GE(1), LEN_LE(2048), REGEX(vre_stream_arn)}, 0, 0, 0}
/* ResourceARN of the resource operations (tags, policies): a stream's or a consumer's ARN */
#define F_RESOURCE_ARN \
    {"ResourceARN", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048), REGEX(vre_resource_arn)}, 0, 0, 0}
/* StreamId, which the newer SDKs may send beside the stream's name or ARN: checked, then unused */
#define F_STREAM_ID \
    {"StreamId", VT_STRING, {LEN_GE(1), LEN_LE(24), REGEX(vre_stream_id)}, 0, 0, 0}
/* clang-format on */

/* Check req against fields; record_limit stands in for LEN_LE_RECORD (the maximum record size
 * of the stream the request names, 1 MiB by default). On failure returns -1 with *kind set to 0 for a
 * SerializationException or 1 for a ValidationException, and *msg (arena) the message, or NULL
 * for a bare SerializationException (a CBOR byte string that is not text where a String is
 * expected). Timestamp members are clamped to +-9.2e15 (seconds or milliseconds), so converting
 * them to milliseconds cannot overflow. */
int validate_request(struct arena *a, struct kv *req, const struct vfield *fields, int64_t record_limit,
                     int *kind, const char **msg);

/* Whole-string match of s against a pattern (for handlers' own checks). */
int vregex_match(struct vregex *r, const char *s);

/* Base64 decode (standard alphabet, padding required). Returns 0, or -1 when the text is not
 * canonical base64; on -1 *why (static) says what AWS says is wrong. */
int base64_decode(struct arena *a, const char *s, size_t len, char **out, size_t *outlen, const char **why,
                  char *bad);

#endif
