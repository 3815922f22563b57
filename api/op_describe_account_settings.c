/* op_describe_account_settings.c: DescribeAccountSettings, and the account settings both it
 * and UpdateAccountSettings use.
 *
 * The minimum throughput billing commitment is one metadata row per account,
 * "account-settings/<account>": "<status> <started ms> <earliest end ms> <ended ms>". A
 * disable requested before the earliest allowed end (24 hours after the start, as on AWS)
 * leaves it ENABLED_UNTIL_EARLIEST_ALLOWED_END, and it is DISABLED from then on. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const struct vfield schema[] = {{0}};

static const char *key(struct api_ctx *c)
{
    return arena_printf(&c->arena, "account-settings/%s", ctx_stream_account(c));
}

int account_settings_load(struct api_ctx *c, struct account_settings *out)
{
    memset(out, 0, sizeof *out);
    out->status = COMMIT_DISABLED;
    char *v;
    size_t len;
    int rc = store_meta_get(c->api->store, key(c), &v, &len, NULL);
    if (rc == STORE_NOT_FOUND)
        return 0;
    if (rc)
        return rc;
    int st = 0;
    long long a = 0, b = 0, e = 0;
    if (sscanf(v, "%d %lld %lld %lld", &st, &a, &b, &e) == 4 && st >= COMMIT_DISABLED &&
        st <= COMMIT_PENDING_END) {
        out->status = st;
        out->started_ms = a;
        out->earliest_end_ms = b;
        out->ended_ms = e;
    }
    free(v);
    if (out->status == COMMIT_PENDING_END && c->now_ms >= out->earliest_end_ms) {
        out->status = COMMIT_DISABLED;
        out->ended_ms = out->earliest_end_ms;
    }
    return 0;
}

int account_settings_save(struct api_ctx *c, const struct account_settings *s)
{
    char v[96];
    int n = snprintf(v, sizeof v, "%d %" PRId64 " %" PRId64 " %" PRId64, s->status, s->started_ms,
                     s->earliest_end_ms, s->ended_ms);
    return store_meta_put(c->api->store, key(c), v, (size_t)n);
}

void account_settings_encode(struct api_ctx *c, const struct account_settings *s)
{
    static const char *const names[] = {"DISABLED", "ENABLED", "ENABLED_UNTIL_EARLIEST_ALLOWED_END"};
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "MinimumThroughputBillingCommitment");
    enc_obj_begin(e);
    enc_key(e, "Status"), enc_strz(e, names[s->status]);
    if (s->started_ms)
        enc_key(e, "StartedAt"), enc_time_ms(e, s->started_ms);
    if (s->ended_ms)
        enc_key(e, "EndedAt"), enc_time_ms(e, s->ended_ms);
    if (s->earliest_end_ms && s->status != COMMIT_DISABLED)
        enc_key(e, "EarliestAllowedEndAt"), enc_time_ms(e, s->earliest_end_ms);
    enc_obj_end(e);
    enc_obj_end(e);
}

static int run(struct api_ctx *c)
{
    struct account_settings s;
    int rc = account_settings_load(c, &s);
    if (rc)
        return api_store_fail(c, rc);
    account_settings_encode(c, &s);
    return 0;
}

const struct op_def op_describe_account_settings = {.schema = schema, .run = run};
