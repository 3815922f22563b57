/* arena.h: per-request bump allocator.
 *
 * Everything a request needs transiently (decoded request tree, decoded blobs, scratch strings)
 * comes from its arena and is released at once by arena_free when the request completes.
 *
 * Two ways to allocate:
 *   - arena_try_alloc and friends fail softly: they return NULL when the arena's limit
 *     (arena_set_limit) would be passed or memory runs out. Everything whose size a client
 *     decides before validation (the decoders' trees) allocates this way, so a hostile body gets
 *     a clean error instead of taking the process down.
 *   - arena_alloc and friends never return NULL: on out-of-memory the process aborts. They serve
 *     allocations whose size validated input has already bounded (handlers, error messages);
 *     they ignore the limit. */
#ifndef KINESD_ARENA_H
#define KINESD_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
    struct arena_chunk *head; /* owned: chunk list, newest first */
    char *cur, *end;          /* free space in head */
    size_t used;              /* bytes of chunks held */
    size_t limit;             /* arena_try_alloc fails past this many bytes of chunks; 0: none */
};

/* Initialise an empty arena (no allocation happens until first use, no limit). */
void arena_init(struct arena *a);

/* Release every allocation of the arena; the arena is empty, reusable and unlimited afterwards. */
void arena_free(struct arena *a);

/* Cap the arena at limit bytes of chunks (0: no cap) for the arena_try_* calls that follow.
 * The cap counts what the arena already holds. */
void arena_set_limit(struct arena *a, size_t limit);

/* Return n bytes aligned to align (a power of two, at most 16), owned by the arena, or NULL
 * when the limit would be passed or memory is out; the arena stays usable after a NULL. */
void *arena_try_alloc(struct arena *a, size_t n, size_t align);

/* Like arena_try_alloc with align 8, zero-filled. */
void *arena_try_zalloc(struct arena *a, size_t n);

/* Copy len bytes of s into the arena, NUL-terminated, unaligned; NULL as arena_try_alloc. */
char *arena_try_strndup(struct arena *a, const char *s, size_t len);

/* Return n bytes aligned to 16, owned by the arena. Never returns NULL. */
void *arena_alloc(struct arena *a, size_t n);
/* arena_alloc as an allocator callback takes it (store_records.alloc, with the arena as actx). */
void *arena_alloc_fn(void *arena, size_t n);

/* Like arena_alloc, zero-filled. */
void *arena_zalloc(struct arena *a, size_t n);

/* Copy len bytes of s into the arena and NUL-terminate. Returns arena memory. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* printf into the arena. Returns arena memory. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
