/* op_stop_stream_encryption.c: StopStreamEncryption. Lenient about the KeyId it is given (as
 * AWS: Terraform sends the old one); records written once the stream is ACTIVE again are
 * sealed under the node key again, records written before keep theirs. */
#include <string.h>

#include "internal.h"
#include "kms/datakeys.h"

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

static int stop(struct api_ctx *c, struct stream *s)
{
    if (strcmp(req_str(c, "EncryptionType"), "KMS"))
        return api_fail(c, KERR_INVALID_ARGUMENT,
                        "Encryption type NONE is not supported by StopStreamEncryption.");
    return stream_encryption_change(c, s, "", "");
}

static int run(struct api_ctx *c)
{
    int rc = with_stream(c, STREAM_ACTIVE, stop);
    if (rc == 0) {
        streams_rdlock(c->api);
        struct stream *s = ctx_stream(c);
        if (s && c->api->dk &&
            datakeys_stream_key(c->api->dk, s->uid, s->enc_prev_kid, NULL, s->enc_switch_ms))
            rc = api_fail(c, KERR_INTERNAL_FAILURE, NULL);
        streams_unlock(c->api);
        if (rc == 0) {
            enc_obj_begin(&c->out);
            enc_obj_end(&c->out);
        }
    }
    return rc;
}

const struct op_def op_stop_stream_encryption = {.schema = schema, .run = run};
