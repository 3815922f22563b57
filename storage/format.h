/* format.h: the on-disk record format, version 1 (little-endian, fixed 32-byte header).
 *
 *   off size field
 *     0    1 version   (1)
 *     1    1 flags     (bit 0: data is sealed with a data key; the rest reserved, zero)
 *     2    2 pk_len    partition key length in bytes
 *     4    4 key_id    data-key id for encrypted records, 0 for plaintext
 *     8   24 nonce     for encrypted records, zero otherwise
 *    32  pk_len        partition key (plaintext: routing needs it, AWS returns it)
 *     .    .           data (ciphertext with its tag when bit 0 of flags is set)
 */
#ifndef KINESD_FORMAT_H
#define KINESD_FORMAT_H

#include <stdint.h>

#define FORMAT_VERSION 1
#define FORMAT_HDR 32
#define FORMAT_F_SEALED 0x01

struct format_hdr {
    uint8_t version;
    uint8_t flags;
    uint8_t pk_len[2];
    uint8_t key_id[4];
    uint8_t nonce[24];
};
_Static_assert(sizeof(struct format_hdr) == FORMAT_HDR, "on-disk record header is 32 bytes");

#endif
