/* Unit tests of the throughput limits (limits.c): control-plane rates are kept per account, and
 * front-ends sharing a store tell each other every account's demand. */
#include <string.h>

#include "check.h"
#include "internal.h"

static int admitted(struct limits *l, const char *account, int calls)
{
    int n = 0;
    for (int i = 0; i < calls; i++)
        n += limits_op(l, account, 0);
    return n;
}

static void each_account_has_its_own_control_plane_buckets(void)
{
    double rate = 1;
    struct limits *l = limits_new("000000000000", &rate, 1);
    CHECK(admitted(l, "000000000000", 3) == 1);
    CHECK(admitted(l, "111122223333", 3) == 1); /* a full bucket of its own */
    CHECK(admitted(l, "444455556666", 1) == 1);
    limits_free(l);
}

static void another_accounts_demand_is_published_and_shared_by_account(void)
{
    double rate = 10;
    struct limits *l = limits_new("000000000000", &rate, 1);
    CHECK(admitted(l, "000000000000", 1) == 1);
    CHECK(admitted(l, "111122223333", 2) == 2);
    char text[512];
    size_t len = limits_demand(l, text, sizeof text);
    CHECK(strstr(text, " o0=1") != NULL);              /* the server's account, as before */
    CHECK(strstr(text, " o0:111122223333=2") != NULL); /* another's, named */
    /* another front-end of two: the demand of 2 leaves it (10 - 2) / 2 of that account's rate,
     * while an account without demand gets an even half */
    struct limits *o = limits_new("000000000000", &rate, 1);
    limits_others_clear(o);
    limits_others_add(o, text, len);
    limits_regrant(o, 2);
    CHECK(admitted(o, "111122223333", 10) == 4);
    CHECK(admitted(o, "444455556666", 10) == 5);
    limits_free(o);
    limits_free(l);
}

CHECK_RUN("limits", T(each_account_has_its_own_control_plane_buckets),
          T(another_accounts_demand_is_published_and_shared_by_account))
