/* tmpdir.h: a fresh temporary directory per test, removed afterwards. */
#ifndef KINESD_TMPDIR_H
#define KINESD_TMPDIR_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline char *tmpdir_new(void)
{
    char tmpl[] = "/tmp/kinesd-unit-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d)
        abort();
    char *copy = malloc(sizeof tmpl);
    if (!copy)
        abort();
    memcpy(copy, d, sizeof tmpl);
    return copy;
}

static inline void tmpdir_remove(char *d)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", d);
    free(d);
}
#endif
