/* eventstream.h: AWS's event-stream framing (application/vnd.amazon.eventstream), as
 * SubscribeToShard answers it.
 *
 * A message is: total length (u32 BE), headers length (u32 BE), CRC32 of those 8 bytes, the
 * headers, the payload, and the CRC32 of everything before it. A header is a name (u8 length,
 * 1-255 bytes), a type byte and a value: 0 true, 1 false, 2 byte, 3 short, 4 int, 5 long
 * (big-endian), 6 bytes and 7 string (u16 length), 8 timestamp (i64 ms), 9 uuid (16 bytes).
 * CRC32 is the IEEE polynomial of zlib. */
#ifndef KINESD_EVENTSTREAM_H
#define KINESD_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum eventstream_type {
    ES_TRUE,
    ES_FALSE,
    ES_BYTE,
    ES_SHORT,
    ES_INT,
    ES_LONG,
    ES_BYTES,
    ES_STRING,
    ES_TIMESTAMP,
    ES_UUID,
};

#define EVENTSTREAM_PRELUDE 12
#define EVENTSTREAM_OVERHEAD 16              /* prelude and message CRC */
#define EVENTSTREAM_MAX_MESSAGE (16u << 20)  /* AWS's bound on one message */
#define EVENTSTREAM_MAX_HEADERS (128u << 10) /* and on its headers */

struct eventstream_header {
    const char *name; /* borrowed (encode) or pointing into the message (decode) */
    size_t name_len;
    uint8_t type;  /* enum eventstream_type */
    const char *s; /* ES_BYTES, ES_STRING, ES_UUID: the value's bytes */
    size_t len;
    int64_t i; /* ES_BYTE .. ES_LONG, ES_TIMESTAMP */
};

/* CRC32 (IEEE) of n bytes, continuing from crc (0 to start). */
uint32_t eventstream_crc32(uint32_t crc, const void *p, size_t n);

/* Append one message to b. Returns 0, or -1 (nothing appended) when a name or value is longer
 * than its length field allows or the message would pass EVENTSTREAM_MAX_MESSAGE. */
int eventstream_encode(struct buf *b, const struct eventstream_header *h, size_t nh, const void *payload,
                       size_t len);

/* The frames SubscribeToShard sends, every one with :content-type application/json:
 * an event (:message-type event, :event-type given) and an exception (:message-type
 * exception, :exception-type given, payload {"message": ...} built by the caller). */
int eventstream_event(struct buf *b, const char *event_type, const void *payload, size_t len);
int eventstream_exception(struct buf *b, const char *exception_type, const void *payload, size_t len);

/* Decode the message at the start of p (n bytes available). Returns its length when whole and
 * valid (headers into h, at most maxh, count into *nh; *payload points into p), 0 when more
 * bytes are needed, or -1 when it is malformed (a bad CRC, length, header or type). */
long eventstream_decode(const void *p, size_t n, struct eventstream_header *h, size_t maxh, size_t *nh,
                        const void **payload, size_t *plen);

#endif
