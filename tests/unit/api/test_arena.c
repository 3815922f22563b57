/* Unit tests of the arena's soft limit: arena_try_* fail cleanly past it and the arena stays
 * usable; the unchecked calls ignore it. */
#include <stdint.h>

#include "arena.h"
#include "check.h"

static void try_alloc_fails_past_the_limit_and_recovers(void)
{
    struct arena a;
    arena_init(&a);
    arena_set_limit(&a, 64 * 1024);
    size_t got = 0;
    while (arena_try_alloc(&a, 100, 8))
        got += 100;
    CHECK(got > 32 * 1024 && got <= 64 * 1024);
    CHECK(a.used <= 64 * 1024);
    CHECK(arena_try_strndup(&a, "x", 1) == NULL || a.used <= 64 * 1024);
    CHECK(arena_try_alloc(&a, SIZE_MAX - 8, 8) == NULL); /* no overflow in the size sums */
    arena_set_limit(&a, 0);
    char *p = arena_strndup(&a, "still usable", 12);
    CHECK_STR(p, "still usable");
    arena_free(&a);
    CHECK(a.used == 0 && a.limit == 0);
}

static void alignment_is_kept(void)
{
    struct arena a;
    arena_init(&a);
    arena_try_alloc(&a, 3, 1);
    CHECK(((uintptr_t)arena_try_alloc(&a, 8, 8) & 7) == 0);
    arena_try_alloc(&a, 1, 1);
    CHECK(((uintptr_t)arena_alloc(&a, 16) & 15) == 0);
    CHECK(((uintptr_t)arena_try_alloc(&a, 5000, 16) & 15) == 0); /* a dedicated chunk */
    arena_free(&a);
}

CHECK_RUN("arena", T(try_alloc_fails_past_the_limit_and_recovers), T(alignment_is_kept))
