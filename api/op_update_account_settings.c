/* op_update_account_settings.c: UpdateAccountSettings: enable or disable the account's minimum
 * throughput billing commitment (see op_describe_account_settings.c for the model). Enabling
 * starts a commitment of at least 24 hours, or cancels a pending end; disabling ends it at
 * once after its earliest allowed end, else schedules the end for then. */
#include <pthread.h>
#include <string.h>

#include "internal.h"

#define MIN_COMMITMENT_MS (24 * 3600 * 1000LL)

static const char *const statuses[] = {"ENABLED", "DISABLED", NULL};
static const struct vfield commitment[] = {
    {"Status", VT_STRING, {NOT_NULL, ENUM(statuses)}, 0, 0, 0},
    {0},
};
static const struct vfield schema[] = {
    {"MinimumThroughputBillingCommitment", VT_STRUCT, {NOT_NULL}, commitment, 0, 0},
    {0},
};

static pthread_mutex_t settings_mu = PTHREAD_MUTEX_INITIALIZER; /* one read-change-write at a time */

static int run(struct api_ctx *c)
{
    const struct kv *m = kv_get(c->req, "MinimumThroughputBillingCommitment");
    const struct kv *st = kv_get(m, "Status");
    bool enable = !strcmp(st->s, "ENABLED");
    pthread_mutex_lock(&settings_mu);
    struct account_settings s;
    int rc = account_settings_load(c, &s);
    if (!rc) {
        if (enable && s.status == COMMIT_DISABLED) {
            s = (struct account_settings){COMMIT_ENABLED, c->now_ms, c->now_ms + MIN_COMMITMENT_MS, 0};
        } else if (enable && s.status == COMMIT_PENDING_END) {
            s.status = COMMIT_ENABLED;
        } else if (!enable && s.status == COMMIT_ENABLED) {
            if (c->now_ms >= s.earliest_end_ms) {
                s.status = COMMIT_DISABLED;
                s.ended_ms = c->now_ms;
            } else {
                s.status = COMMIT_PENDING_END;
            }
        }
        rc = account_settings_save(c, &s);
    }
    pthread_mutex_unlock(&settings_mu);
    if (rc)
        return api_store_fail(c, rc);
    account_settings_encode(c, &s);
    return 0;
}

const struct op_def op_update_account_settings = {.schema = schema, .run = run};
