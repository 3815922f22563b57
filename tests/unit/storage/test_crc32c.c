/* test_crc32c.c: CRC-32C against a bit-at-a-time reference, over every length and alignment
 * around the hardware path's block sizes (three streams of 256 and of 8192 bytes joined), and
 * chained calls against one call. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "crc32c.h"

static uint32_t ref(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static unsigned char buf[3 * 8192 * 3 + 64];

static void fill(uint64_t seed)
{
    for (size_t i = 0; i < sizeof buf; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (unsigned char)(seed >> 56);
    }
}

static void the_check_value_is_crc32cs(void)
{
    CHECK(crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(crc32c(0, "", 0) == 0);
}

static void every_length_and_alignment_around_the_blocks_matches_the_reference(void)
{
    fill(1);
    static const size_t around[] = {0, 3 * 256, 3 * 8192, 3 * 8192 + 3 * 256, 2 * 3 * 8192};
    int bad = 0, runs = 0;
    for (size_t a = 0; a < sizeof around / sizeof around[0]; a++)
        for (size_t d = 0; d < 80; d++)
            for (size_t off = 0; off < 8; off++) {
                size_t n = around[a] + d >= 40 ? around[a] + d - 40 : d;
                if (off + n > sizeof buf)
                    continue;
                bad += crc32c(0, buf + off, n) != ref(0, buf + off, n);
                runs++;
            }
    CHECK(bad == 0 && runs > 1000);
}

static void random_buffers_and_chained_calls_match_one_call(void)
{
    int bad = 0;
    for (uint64_t t = 0; t < 200; t++) {
        fill(t + 7);
        size_t off = t % 8, n = (size_t)(t * 7919) % (sizeof buf - 8), cut = n ? (size_t)(t * 104729) % n : 0;
        uint32_t want = ref(0, buf + off, n);
        bad += crc32c(0, buf + off, n) != want;
        bad += crc32c(crc32c(0, buf + off, cut), buf + off + cut, n - cut) != want;
    }
    CHECK(bad == 0);
}

CHECK_RUN("storage/crc32c", T(the_check_value_is_crc32cs),
          T(every_length_and_alignment_around_the_blocks_matches_the_reference),
          T(random_buffers_and_chained_calls_match_one_call))
