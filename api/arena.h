/* arena.h: per-request bump allocator.
 *
 * Everything a request needs transiently (decoded request tree, decoded blobs, scratch strings)
 * comes from its arena and is released at once by arena_free when the request completes.
 * Allocation never fails softly: on out-of-memory the process aborts (a server that cannot
 * allocate a few KiB has no useful error path left). */
#ifndef KINESD_ARENA_H
#define KINESD_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
    struct arena_chunk *head; /* owned: chunk list, newest first */
    char *cur, *end;          /* free space in head */
};

/* Initialise an empty arena (no allocation happens until first use). */
void arena_init(struct arena *a);

/* Release every allocation of the arena; the arena is empty and reusable afterwards. */
void arena_free(struct arena *a);

/* Return n bytes aligned to 16, owned by the arena. Never returns NULL. */
void *arena_alloc(struct arena *a, size_t n);

/* Like arena_alloc, zero-filled. */
void *arena_zalloc(struct arena *a, size_t n);

/* Copy len bytes of s into the arena and NUL-terminate. Returns arena memory. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* printf into the arena. Returns arena memory. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
