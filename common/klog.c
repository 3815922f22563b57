/* klog.c: leveled diagnostics on stderr (see klog.h). The only state is the level; each line
 * is formatted on the caller's stack and written with one write(2), so no lock is needed and
 * lines from different threads never mix. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "klog.h"

static int level = KLOG_INFO;

void klog_set_level(enum klog_level l) { __atomic_store_n(&level, (int)l, __ATOMIC_RELAXED); }

int klog_parse_level(const char *name, enum klog_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            *out = (enum klog_level)i;
            return 0;
        }
    return -1;
}

bool klog_enabled(enum klog_level l) { return (int)l <= __atomic_load_n(&level, __ATOMIC_RELAXED); }

void klog(enum klog_level l, const char *fmt, ...)
{
    if (!klog_enabled(l))
        return;
    char line[4096];
    static const char prefix[] = "kinesd: ";
    memcpy(line, prefix, sizeof prefix - 1);
    size_t n = sizeof prefix - 1;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    if (line[n - 1] != '\n')
        line[n++] = '\n';
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w <= 0)
            return; /* stderr is gone: nothing else to tell */
        off += (size_t)w;
    }
}
