/* crc32c.h: CRC-32C (Castagnoli), the checksum of write-ahead-log frames and sealed records.
 * SSE4.2's crc32 instruction where the processor has it, slice-by-8 tables elsewhere; both
 * give the same value. Thread-safe; no set-up call needed. */
#ifndef KINESD_CRC32C_H
#define KINESD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue the checksum crc (0 to start) over n bytes at p. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
