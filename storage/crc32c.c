/* crc32c.c: CRC-32C, hardware or slice-by-8 (see crc32c.h).
 *
 * The function pointer is chosen once (pthread_once) from cpuid; the software path's eight
 * 256-entry tables are built in the same step. The checksum is the usual reflected form with
 * pre- and post-inversion, so crc32c(crc32c(0, a), b) == crc32c(0, a . b).
 *
 * The crc32 instruction takes three cycles and can start one per cycle, so the hardware path
 * runs three streams side by side over three adjacent blocks (LONG, then SHORT bytes each) and
 * joins them: the CRC register is linear, so the first block's register moved past the next
 * block's length of zeros (a table lookup per byte: the zeros tables, built at init from
 * powers of the one-zero-bit operator) XOR the next block's register, started at 0, is the
 * register after both. Mark Adler's crc32c.c does the same. */
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
#define LONG 8192
#define SHORT 256
static uint32_t zeros_long[4][256], zeros_short[4][256];

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *sq, const uint32_t *mat)
{
    for (int i = 0; i < 32; i++)
        sq[i] = gf2_times(mat, mat[i]);
}

/* Tables applying len zero bytes (a power of two) to a register, a byte of it at a time. */
static void zeros_of(uint32_t zeros[4][256], size_t len)
{
    uint32_t odd[32], even[32], *op = even;
    odd[0] = 0x82F63B78u; /* one zero bit */
    for (int i = 1; i < 32; i++)
        odd[i] = 1u << (i - 1);
    gf2_square(even, odd); /* two */
    gf2_square(odd, even); /* four */
    for (;;) {             /* eight bits, then each square doubles it until len is used up */
        gf2_square(even, odd);
        op = even;
        if (!(len >>= 1))
            break;
        gf2_square(odd, even);
        op = odd;
        if (!(len >>= 1))
            break;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 0; k < 4; k++)
            zeros[k][i] = gf2_times(op, i << 8 * k);
}

static uint32_t shift(uint32_t zeros[4][256], uint32_t c)
{
    return zeros[0][c & 0xFF] ^ zeros[1][c >> 8 & 0xFF] ^ zeros[2][c >> 16 & 0xFF] ^ zeros[3][c >> 24];
}

static inline uint64_t rd(const unsigned char *b)
{
    uint64_t w;
    memcpy(&w, b, 8);
    return w;
}

__attribute__((target("sse4.2"))) static uint32_t hw(uint32_t c, const unsigned char *b, size_t n)
{
    uint64_t c64 = c;
    while (n && ((uintptr_t)b & 7)) {
        c64 = __builtin_ia32_crc32qi((uint32_t)c64, *b++);
        n--;
    }
    for (size_t blk = LONG; blk >= SHORT; blk = blk == LONG ? SHORT : 0)
        while (n >= 3 * blk) {
            uint64_t c1 = 0, c2 = 0;
            for (const unsigned char *end = b + blk; b < end; b += 8) {
                c64 = __builtin_ia32_crc32di(c64, rd(b));
                c1 = __builtin_ia32_crc32di(c1, rd(b + blk));
                c2 = __builtin_ia32_crc32di(c2, rd(b + 2 * blk));
            }
            uint32_t(*z)[256] = blk == LONG ? zeros_long : zeros_short;
            c64 = shift(z, (uint32_t)c64) ^ c1;
            c64 = shift(z, (uint32_t)c64) ^ c2;
            b += 2 * blk;
            n -= 3 * blk;
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
    if (__builtin_cpu_supports("sse4.2")) {
        zeros_of(zeros_long, LONG);
        zeros_of(zeros_short, SHORT);
        impl = hw;
    }
#endif
}

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&once, init);
    return ~impl(~crc, p, n);
}
