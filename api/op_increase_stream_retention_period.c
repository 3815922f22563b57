/* op_increase_stream_retention_period.c and its twin for Decrease: one handler, told apart
 * by direction, since AWS's rules and messages mirror each other. */
#include "internal.h"

#define MIN_HOURS 24
#define MAX_HOURS 8760

static const struct vfield schema[] = {
    {"RetentionPeriodHours", VT_INTEGER, {NOT_NULL, GE(1)}, 0, 0, 0},
    F_STREAM_NAME,
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

static int64_t hours_of(struct api_ctx *c)
{
    int64_t hours = 0;
    req_int(c, "RetentionPeriodHours", &hours);
    return hours;
}

static int set(struct api_ctx *c, struct stream *s, bool increase)
{
    int64_t hours = hours_of(c);
    if (increase && hours < s->retention_h)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Requested retention period (%lld hours) for stream %s can not be shorter than "
                        "existing retention period (%d hours). Use DecreaseRetentionPeriod API.",
                        (long long)hours, s->name, s->retention_h);
    if (!increase && hours > s->retention_h)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Requested retention period (%lld hours) for stream %s can not be longer than "
                        "existing retention period (%d hours). Use IncreaseRetentionPeriod API.",
                        (long long)hours, s->name, s->retention_h);
    s->retention_h = (int32_t)hours;
    return 0;
}

static int set_longer(struct api_ctx *c, struct stream *s) { return set(c, s, true); }
static int set_shorter(struct api_ctx *c, struct stream *s) { return set(c, s, false); }

static int change(struct api_ctx *c, bool increase)
{
    int64_t hours = hours_of(c);
    if (hours < MIN_HOURS)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Minimum allowed retention period is %d hours. Requested retention period (%lld "
                        "hours) is too short.",
                        MIN_HOURS, (long long)hours);
    if (hours > MAX_HOURS)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Maximum allowed retention period is %d hours. Requested retention period (%lld "
                        "hours) is too long.",
                        MAX_HOURS, (long long)hours);
    return with_stream(c, STREAM_ACTIVE, increase ? set_longer : set_shorter);
}

static int increase(struct api_ctx *c) { return change(c, true); }
static int decrease(struct api_ctx *c) { return change(c, false); }

const struct op_def op_increase_stream_retention_period = {.schema = schema, .run = increase};
const struct op_def op_decrease_stream_retention_period = {.schema = schema, .run = decrease};
