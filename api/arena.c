/* arena.c: chunked bump allocator. Chunks grow geometrically from 4 KiB to 1 MiB; an
 * allocation larger than half a chunk gets a chunk of its own so large blobs do not waste the
 * current chunk. `used` counts the bytes of every chunk held, which is what the limit of the
 * soft-failing calls is checked against, so a limited arena never holds more than its limit
 * (plus the chunk headers). */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN 4096
#define CHUNK_MAX (1u << 20)

struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    _Alignas(16) char data[];
};

void arena_init(struct arena *a)
{
    a->head = NULL;
    a->cur = a->end = NULL;
    a->used = 0;
    a->limit = 0;
}

void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    arena_init(a);
}

void arena_set_limit(struct arena *a, size_t limit) { a->limit = limit; }

/* A chunk of size bytes, or NULL when limited and over the limit or out of memory. */
static struct arena_chunk *chunk_new(struct arena *a, size_t size, int limited)
{
    if (limited && a->limit && (size > a->limit || a->used > a->limit - size))
        return NULL;
    if (size > SIZE_MAX - sizeof(struct arena_chunk))
        return NULL;
    struct arena_chunk *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->size = size;
    a->used += size;
    return c;
}

static void *alloc(struct arena *a, size_t n, size_t align, int limited)
{
    if (a->cur) {
        uintptr_t p = ((uintptr_t)a->cur + (align - 1)) & ~(uintptr_t)(align - 1);
        if (p <= (uintptr_t)a->end && (uintptr_t)a->end - p >= n) {
            a->cur = (char *)p + n;
            return (void *)p;
        }
    }
    if (n > SIZE_MAX / 4)
        return NULL;
    size_t want = a->head ? a->head->size * 2 : CHUNK_MIN;
    if (want > CHUNK_MAX)
        want = CHUNK_MAX;
    if (n > want / 2) {
        /* dedicated chunk, linked behind head so the current free space stays usable */
        struct arena_chunk *c = chunk_new(a, n ? n : 1, limited);
        if (!c)
            return NULL;
        if (a->head) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = NULL;
            a->head = c;
            a->cur = a->end = c->data + n;
        }
        return c->data;
    }
    struct arena_chunk *c = chunk_new(a, want, limited);
    if (!c && limited && a->limit && a->limit > a->used) /* what is left under the limit */
        c = chunk_new(a, a->limit - a->used >= n ? a->limit - a->used : n, limited);
    if (!c)
        return NULL;
    c->next = a->head;
    a->head = c;
    a->cur = c->data + n;
    a->end = c->data + c->size;
    return c->data;
}

void *arena_try_alloc(struct arena *a, size_t n, size_t align) { return alloc(a, n, align, 1); }

void *arena_try_zalloc(struct arena *a, size_t n)
{
    void *p = alloc(a, n, 8, 1);
    if (p)
        memset(p, 0, n);
    return p;
}

char *arena_try_strndup(struct arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = alloc(a, len + 1, 1, 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = 0;
    }
    return p;
}

void *arena_alloc(struct arena *a, size_t n)
{
    void *p = alloc(a, (n + 15) & ~(size_t)15, 16, 0);
    if (!p)
        abort(); /* see arena.h: only for sizes validated input has bounded */
    return p;
}

void *arena_zalloc(struct arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = arena_alloc(a, (size_t)n + 1);
    if ((size_t)n < sizeof small) {
        memcpy(p, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return p;
}

void *arena_alloc_fn(void *arena, size_t n) { return arena_alloc(arena, n); }
