/* buf.h: a growing byte buffer, the target of every encoder.
 * The memory is malloc'd and owned by the buf until buf_steal hands it over. */
#ifndef KINESD_BUF_H
#define KINESD_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
    char *p; /* owned */
    size_t len;
    size_t cap;
};

#define BUF_INIT   \
    {              \
        NULL, 0, 0 \
    }

/* Make room for n more bytes; aborts on out-of-memory. */
void buf_grow(struct buf *b, size_t n);

/* Free the memory; the buf is empty afterwards. */
void buf_free(struct buf *b);

/* Return the memory (owned by the caller now, NUL-terminated) and empty the buf. */
char *buf_steal(struct buf *b, size_t *len);

void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void buf_add(struct buf *b, const void *d, size_t n)
{
    if (b->cap - b->len < n + 1)
        buf_grow(b, n + 1);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static inline void buf_addc(struct buf *b, char c)
{
    if (b->cap - b->len < 2)
        buf_grow(b, 2);
    b->p[b->len++] = c;
}

static inline void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

#endif
