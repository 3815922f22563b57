/* crc32c.c: CRC-32C, hardware or slice-by-8 (see crc32c.h).
 *
 * The function pointer is chosen once (pthread_once) from cpuid; the software path's eight
 * 256-entry tables are built in the same step. The checksum is the usual reflected form with
 * pre- and post-inversion, so crc32c(crc32c(0, a), b) == crc32c(0, a . b). */
#include <pthread.h>
#include <string.h>

#include "crc32c.h"

static uint32_t table[8][256];
static uint32_t (*impl)(uint32_t, const unsigned char *, size_t);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static uint32_t sw(uint32_t c, const unsigned char *b, size_t n)
{
    while (n && ((uintptr_t)b & 7)) {
        c = table[0][(c ^ *b++) & 0xFF] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        w ^= c;
        c = table[7][w & 0xFF] ^ table[6][(w >> 8) & 0xFF] ^ table[5][(w >> 16) & 0xFF] ^
            table[4][(w >> 24) & 0xFF] ^ table[3][(w >> 32) & 0xFF] ^ table[2][(w >> 40) & 0xFF] ^
            table[1][(w >> 48) & 0xFF] ^ table[0][w >> 56];
        b += 8;
        n -= 8;
    }
    while (n--)
        c = table[0][(c ^ *b++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t hw(uint32_t c, const unsigned char *b, size_t n)
{
    uint64_t c64 = c;
    while (n && ((uintptr_t)b & 7)) {
        c64 = __builtin_ia32_crc32qi((uint32_t)c64, *b++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
        b += 8;
        n -= 8;
    }
    while (n--)
        c64 = __builtin_ia32_crc32qi((uint32_t)c64, *b++);
    return (uint32_t)c64;
}
#endif

static void init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
    impl = sw;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        impl = hw;
#endif
}

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&once, init);
    return ~impl(~crc, p, n);
}
