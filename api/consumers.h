/* consumers.h: the registry of enhanced fan-out consumers (consumers.c).
 *
 * A consumer belongs to one stream incarnation (its uid) and is named within it. It is
 * CREATING for --register-consumer-ms after RegisterStreamConsumer, then ACTIVE; after
 * DeregisterStreamConsumer it is DELETING for as long, then gone. Statuses are computed from
 * the clock, so nothing is written when a consumer becomes ACTIVE. Each consumer is one
 * metadata row "consumer/<uid>/<name>"; deregistration marks it with the time it is gone, and
 * the maintenance leader deletes it after that (consumers_settle). Front-ends sharing a store
 * reload the rows others changed (consumers_refresh, consumers_sync). */
#ifndef KINESD_CONSUMERS_H
#define KINESD_CONSUMERS_H

#include <stdbool.h>
#include <stdint.h>

#include "validate.h"

struct api;
struct api_ctx;
struct kv;

/* ConsumerARN as AWS checks it, and its field. */
extern struct vregex vre_consumer_arn;
/* clang-format off */
#define F_CONSUMER_ARN \
    {"ConsumerARN", VT_STRING, {LEN_GE(1), LEN_LE(2048), REGEX(vre_consumer_arn)}, 0, 0, 0}
/* clang-format on */

enum consumer_status { CONSUMER_CREATING, CONSUMER_ACTIVE, CONSUMER_DELETING, CONSUMER_GONE };

#define CONSUMERS_PER_STREAM 20 /* AWS's limit of registered consumers per stream */
#define CONSUMERS_CREATING 5    /* at most this many CREATING at once, per stream */

/* A consumer as seen at one moment (a copy: valid without any lock). */
struct consumer_info {
    char name[129];
    char stream[129];             /* the stream's name */
    char account[16], region[64]; /* the stream's owner */
    uint64_t uid;                 /* the stream incarnation */
    int64_t created_ms;           /* ConsumerCreationTimestamp; its whole seconds end the ARN */
    int64_t stream_created_ms;
    int status;          /* enum consumer_status, at the time asked */
    uint64_t generation; /* changes whenever the consumer is registered anew */
};

/* Load every consumer row. 0 or a STORE_* code. consumers_close frees the registry. */
int consumers_open(struct api *a);
void consumers_close(struct api *a);

/* Front-ends sharing a store. consumers_refresh (maintenance thread, the stream registry's
 * change lock held) reloads the consumers of the streams whose rows the store reported
 * changed, or every consumer after lost notifications. consumers_sync (a control-plane call,
 * no lock held) compares every consumer row's version with the registry and reloads when one
 * differs. A store that is away leaves the registry as it is (refresh tries again next tick). */
void consumers_refresh(struct api *a);
void consumers_sync(struct api *a);

/* The maintenance leader's part (change lock held): delete the rows of consumers that are gone
 * and whose creation second is over, and forget them. A failed delete is retried next tick. */
void consumers_settle(struct api *a, int64_t now);

/* Consumers of incarnation uid that are CREATING or ACTIVE at now (DescribeStreamSummary). */
uint32_t consumers_count(struct api *a, uint64_t uid, int64_t now);

/* Deregister every consumer of incarnation uid (DeleteStream with EnforceConsumerDeletion);
 * the stream registry's change lock is held. Returns 0 or a STORE_* code. */
int consumers_drop_stream(struct api *a, uint64_t uid, int64_t now);

/* The consumer named by the request: ConsumerARN, or StreamARN with ConsumerName, or all three
 * when they agree. Fills *out; returns 0, or -1 with the error recorded (InvalidArgument,
 * ResourceNotFound). */
int consumers_resolve(struct api_ctx *c, struct consumer_info *out);

/* consumers_resolve for a consumer's ARN alone (ResourceARN of the resource operations). */
int consumers_resolve_arn(struct api_ctx *c, const char *arn, struct consumer_info *out);

/* The tags of consumer ci, read from its row now: *tags gets its "tags" object (arena; NULL
 * when the row has none). Returns 0, STORE_NOT_FOUND (no longer registered as ci) or a STORE_*
 * code. */
int consumers_tags_get(struct api_ctx *c, const struct consumer_info *ci, const struct kv **tags);
/* Replace the tags of ci's row by the n tags (borrowed), by compare-and-set on the version read;
 * the stream registry's change lock held. Returns 0, STORE_NOT_FOUND, STORE_CONFLICT (another
 * front-end changed the row meanwhile) or a STORE_* code. */
struct tag;
int consumers_tags_set(struct api_ctx *c, const struct consumer_info *ci, const struct tag *tags, uint32_t n);

/* Whether the consumer out describes still exists with the same registration (no lock). */
bool consumers_alive(struct api *a, const struct consumer_info *ci, int64_t now);

/* The consumer's ARN (arena). */
const char *consumer_arn(struct api_ctx *c, const struct consumer_info *ci);
const char *consumer_status_name(int st);

/* The operations' halves (op_*_stream_consumer.c call them). Each returns 0 with the answer
 * written, or -1 with the error recorded. */
int consumers_register(struct api_ctx *c);
int consumers_deregister(struct api_ctx *c);
int consumers_list(struct api_ctx *c);

#endif
