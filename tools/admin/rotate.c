/* rotate.c: root-key rotation (not yet). */
#include <stdio.h>

#include "admin.h"

int adm_rotate(const struct adm_opts *o)
{
    (void)o;
    fprintf(stderr, "kinesd-admin: rotate-root-key is not implemented yet\n");
    return ADM_USAGE;
}
