/* fuzz_token.c: libFuzzer harness for the sealed-token openers (codec.c): shard iterators
 * (iter_open) and the page tokens of ListStreams / ListShards (open_text). Arbitrary text goes
 * to both openers as a client would send it; then the input is sealed as a plaintext under the
 * same key, so the plaintext layouts behind the authentication check are explored too: a sealed
 * text must open to exactly what was sealed, and iter_open must accept or refuse it without
 * reading past it. */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct api a;
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        memset(a.iter_key, 7, sizeof a.iter_key);
        ready = 1;
    }
    struct api_ctx c = {.api = &a};
    arena_init(&c.arena);
    const char *name;
    uint64_t uid, pos;
    uint32_t shard;
    int64_t issued;
    unsigned char *plain;
    size_t plen;

    /* as a client sends it: text up to its first NUL */
    char *text = arena_strndup(&c.arena, (const char *)data, size);
    if (!open_text(&c, text, &plain, &plen) && plen > size)
        abort();
    if (!iter_open(&c, text, &name, &uid, &shard, &pos, &issued) && strlen(name) > 128)
        abort();

    /* as a plaintext behind a valid seal */
    if (size <= 512) { /* plaintexts of iterators and page tokens are a few hundred bytes at most */
        const char *sealed = seal_text(&c, data, size);
        if (open_text(&c, sealed, &plain, &plen) || plen != size || memcmp(plain, data, size))
            abort();
        if (!iter_open(&c, sealed, &name, &uid, &shard, &pos, &issued) && strlen(name) > 128)
            abort();
    }
    arena_free(&c.arena);
    return 0;
}
