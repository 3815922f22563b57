/* op_start_stream_encryption.c: StartStreamEncryption (KMS, with a key of the built-in KMS).
 * The stream is UPDATING for --update-stream-ms; records written once it is ACTIVE again are
 * sealed under data keys wrapped by the KMS key (records written before, the UPDATING time
 * included, keep theirs). At most STREAM_ENC_CHANGES starts and stops in a rolling 24 hours. */
#include <string.h>

#include "internal.h"
#include "kms/datakeys.h"
#include "kms/kms.h"

#define DAY_MS (24 * 3600 * 1000LL)

static const char *const enc_types[] = {"NONE", "KMS", NULL};

static const struct vfield schema[] = {
    F_STREAM_NAME,
    {"EncryptionType", VT_STRING, {NOT_NULL, ENUM(enc_types)}, 0, 0, 0},
    {"KeyId", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048)}, 0, 0, 0},
    F_STREAM_ARN,
    F_STREAM_ID,
    {0},
};

int stream_encryption_change(struct api_ctx *c, struct stream *s, const char *key, const char *kid);
int stream_encryption_change(struct api_ctx *c, struct stream *s, const char *key, const char *kid)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nenc; i++) /* the rolling 24 hours */
        if (s->enc_changes[i] > c->now_ms - DAY_MS)
            s->enc_changes[n++] = s->enc_changes[i];
    s->nenc = n;
    if (n >= STREAM_ENC_CHANGES)
        return api_fail(c, KERR_LIMIT_EXCEEDED,
                        "Exceeded the limit of %d encryption changes per stream in a 24-hour period for "
                        "stream %s under account %s.",
                        STREAM_ENC_CHANGES, s->name, ctx_stream_account(c));
    s->enc_changes[s->nenc++] = c->now_ms;
    snprintf(s->enc_prev_kid, sizeof s->enc_prev_kid, "%s", kms_stream_kid(s, c->now_ms));
    snprintf(s->enc_key, sizeof s->enc_key, "%s", key);
    snprintf(s->enc_kid, sizeof s->enc_kid, "%s", kid);
    s->status = ST_UPDATING;
    s->status_until = c->now_ms + c->api->cfg.update_ms;
    s->enc_switch_ms = s->status_until; /* the new arrangement seals from the end of UPDATING */
    return 0;
}

static int start(struct api_ctx *c, struct stream *s)
{
    if (strcmp(req_str(c, "EncryptionType"), "KMS"))
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Encryption type NONE is not supported by StartStreamEncryption.");
    if (!c->api->dk)
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Server-side encryption needs encryption at rest (kinesd runs "
                        "with --no-encryption-at-rest).");
    char kid[KMS_ID_LEN + 1];
    if (kms_stream_key_resolve(c, req_str(c, "KeyId"), kid))
        return -1;
    return stream_encryption_change(c, s, req_str(c, "KeyId"), kid);
}

static int run(struct api_ctx *c)
{
    int rc = with_stream(c, STREAM_ACTIVE, start);
    if (rc == 0) {
        streams_rdlock(c->api);
        struct stream *s = ctx_stream(c);
        if (s && datakeys_stream_key(c->api->dk, s->uid, s->enc_prev_kid, s->enc_kid, s->enc_switch_ms))
            rc = api_fail(c, KERR_INTERNAL_FAILURE, NULL);
        streams_unlock(c->api);
        if (rc == 0) {
            enc_obj_begin(&c->out);
            enc_obj_end(&c->out);
        }
    }
    return rc;
}

const struct op_def op_start_stream_encryption = {.schema = schema, .run = run};
