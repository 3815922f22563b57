/* format.h: the record format, the one place records are sealed and opened (storage-internal).
 *
 * Every engine calls format_seal once it has assigned a record's position, and format_open
 * when it reads one back; engines store the sealed bytes as they are. The seal binds the
 * record to its log and position, so a record moved or copied to another key on disk fails to
 * open (STORE_CORRUPT) instead of being served as another record; encryption at rest adds its
 * key id and nonce here, behind a flag, without any engine's cooperation.
 *
 * Version 2 (written), little-endian, an 8-byte header:
 *   off size field
 *     0    1 version   2
 *     1    1 flags     0 (bit 0 reserved for records sealed with a data key)
 *     2    2 pk_len    partition key length in bytes
 *     4    4 check     CRC-32C of log (8) . pos (8) . bytes 0..3 . bytes 8.. of the record
 *     8  pk_len        partition key
 *     .    .           data
 * Version 1 (read only): a 32-byte header (version 1, flags 0, pk_len, 28 reserved bytes),
 * then the partition key and the data, with no check. */
#ifndef KINESD_FORMAT_H
#define KINESD_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define FORMAT_VERSION 2
#define FORMAT_HDR 8
#define FORMAT_MAX_PK 0xFFFF

/* Bytes that format_seal writes for a record of these sizes. */
static inline size_t format_sealed_len(size_t pk_len, size_t data_len)
{
    return FORMAT_HDR + pk_len + data_len;
}

/* Seal one record for (log, pos) into out, which has format_sealed_len bytes of room.
 * pk_len <= FORMAT_MAX_PK (the caller checked). Returns the bytes written. */
size_t format_seal(char *out, uint64_t log, uint64_t pos, const struct store_rec *r);

/* Check the sealed bytes of the record stored at (log, pos) and append it to out, copying its
 * key and data through out->alloc. Returns 0, STORE_CORRUPT (does not check out: moved,
 * altered, or an unknown version), STORE_NOMEM. */
int format_open(const char *val, size_t len, uint64_t log, uint64_t pos, struct store_records *out);

/* Only check the record (for verification tools). Returns 0 or STORE_CORRUPT. */
int format_check(const char *val, size_t len, uint64_t log, uint64_t pos);

#endif
