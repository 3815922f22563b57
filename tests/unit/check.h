/* check.h: the unit-test harness. A test is a function; CHECK records a failure with its line
 * and goes on; check_main runs the tests and prints the closing "N passed, M failed" line. */
#ifndef KINESD_CHECK_H
#define KINESD_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures_++;                                                       \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                                               \
    do {                                                                                              \
        const char *a_ = (a), *b_ = (b);                                                              \
        if (!a_ || !b_ || strcmp(a_, b_)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK_STR failed:\n  got:  %s\n  want: %s\n", __FILE__, __LINE__, \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                          \
            check_failures_++;                                                                        \
        }                                                                                             \
    } while (0)

struct check_test {
    const char *name;
    void (*fn)(void);
};

static inline int check_main(const char *suite, const struct check_test *t, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int before = check_failures_;
        t[i].fn();
        if (check_failures_ == before) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAIL %s: %s\n", suite, t[i].name);
        }
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed ? 1 : 0;
}

#define CHECK_RUN(suite, ...)                                   \
    int main(void)                                              \
    {                                                           \
        static const struct check_test t_[] = {__VA_ARGS__};    \
        return check_main(suite, t_, sizeof t_ / sizeof t_[0]); \
    }
#define T(fn)   \
    {           \
#fn, fn \
    }

#endif
