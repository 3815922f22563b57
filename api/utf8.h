/* utf8.h: strict UTF-8 (RFC 3629) checks shared by the decoders and the answer writer.
 *
 * Valid means what RFC 3629 allows and nothing else: no overlong forms, no surrogates
 * (U+D800..U+DFFF) encoded as three bytes, nothing above U+10FFFF, no stray continuation
 * bytes and no truncated sequence. NUL is valid UTF-8; callers that refuse it say so. */
#ifndef KINESD_UTF8_H
#define KINESD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (2..4) of the valid multi-byte sequence that starts at s (s[0] >= 0x80) within the n
 * bytes available, or 0 when it is not one. s is borrowed. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* How many leading bytes of the n at s are printable ASCII other than '"' and '\\' (0x20..0x7F):
 * text a JSON string holds as it is, and the decoder passes over without a look. s is
 * borrowed. */
size_t utf8_json_plain(const char *s, size_t n);

/* True when the n bytes at s are valid UTF-8 with no NUL byte. s is borrowed. */
bool utf8_valid_nonul(const char *s, size_t n);

#endif
