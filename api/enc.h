/* enc.h: the answer writer, one call per token, straight into a growing buffer.
 *
 * Handlers and error paths describe an answer once (enc_key, enc_str, ...); the encoder
 * renders it in the request's wire format. JSON is written as text with escaping and base64
 * inline; the CBOR rendering plugs in behind the same calls (indefinite-length maps and arrays,
 * so no counts are needed up front). Nothing is built as a tree first: GetRecords answers of
 * 10,000 records go straight to the buffer. */
#ifndef KINESD_ENC_H
#define KINESD_ENC_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

enum wire_fmt { WIRE_JSON, WIRE_CBOR };

#define ENC_MAX_DEPTH 16

struct enc {
    struct buf b; /* owned: the rendered answer */
    enum wire_fmt fmt;
    int depth;
    bool need_comma[ENC_MAX_DEPTH]; /* JSON: a value was written at this level */
};

/* Start an empty answer in format fmt. */
void enc_init(struct enc *e, enum wire_fmt fmt);
void enc_obj_begin(struct enc *e);
void enc_obj_end(struct enc *e);
void enc_arr_begin(struct enc *e);
void enc_arr_end(struct enc *e);
/* Member name; the next call writes its value. k is borrowed. */
void enc_key(struct enc *e, const char *k);
/* The same for a name the caller knows is printable ASCII with no '"' or '\\' (a literal):
 * written as it is, without measuring or escaping it. ENC_KEY(e, "Name") passes its length. */
void enc_key_ascii(struct enc *e, const char *k, size_t len);
#define ENC_KEY(e, lit) enc_key_ascii((e), "" lit "", sizeof(lit) - 1)
void enc_str(struct enc *e, const char *s, size_t len);
/* A string the caller knows is printable ASCII with no '"' or '\\' (digits, shard ids). */
void enc_str_ascii(struct enc *e, const char *s, size_t len);
void enc_strz(struct enc *e, const char *s);
void enc_int(struct enc *e, int64_t v);
void enc_bool(struct enc *e, bool v);
/* Binary data: base64 text in JSON, a byte string in CBOR. */
void enc_blob(struct enc *e, const void *d, size_t len);
/* A timestamp in milliseconds since the epoch: seconds with a fraction in JSON. */
void enc_time_ms(struct enc *e, int64_t ms);

/* Decimal digits, without printf: v in exactly width digits, zero-padded (v < 10^width, width
 * <= 20), written to out (no NUL). */
void enc_digits(char *out, uint64_t v, int width);
/* v in decimal at out (room for 20 bytes, no NUL); returns the digits written. */
size_t enc_u64(char *out, uint64_t v);

/* Standard base64 of n bytes appended to b (no line breaks). */
void enc_base64(struct buf *b, const void *d, size_t n);

#endif
