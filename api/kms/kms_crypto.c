/* kms_crypto.c: the built-in KMS's cryptographic operations: Encrypt, Decrypt, ReEncrypt,
 * GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom. Blobs as kms.h describes;
 * every KeyId in an answer is the key's ARN (the AWS Encryption SDK insists on it). */
#include <sodium.h>
#include <string.h>

#include "kms.h"

#define F_KEY_ID                                                         \
    {                                                                    \
        "KeyId", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048)}, 0, 0, 0 \
    }
#define F_KEY_ID_OPT                                           \
    {                                                          \
        "KeyId", VT_STRING, {LEN_GE(1), LEN_LE(2048)}, 0, 0, 0 \
    }

static const char *const algorithms[] = {"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256",
                                         "SM2PKE", NULL};
static const char *const data_key_specs[] = {"AES_256", "AES_128", NULL};
static const struct vfield ctx_value = {"member", VT_STRING, {{0}}, 0, 0, 0};
static const struct vfield str_elem = {"member", VT_STRING, {{0}}, 0, 0, 0};

#define F_CONTEXT(name)                       \
    {                                         \
        name, VT_MAP, {{0}}, 0, &ctx_value, 0 \
    }
#define F_GRANTS                                                         \
    {                                                                    \
        "GrantTokens", VT_LIST, {LEN_GE(0), LEN_LE(10)}, 0, &str_elem, 0 \
    }
#define F_DRY_RUN                            \
    {                                        \
        "DryRun", VT_BOOLEAN, {{0}}, 0, 0, 0 \
    }

static int symmetric_only(struct api_ctx *c, const char *member)
{
    const char *alg = req_str(c, member);
    if (alg && strcmp(alg, "SYMMETRIC_DEFAULT"))
        return api_fail(c, KERR_KMS_INVALID_KEY_USAGE,
                        "The operation failed because the KMS key does not support "
                        "the specified encryption algorithm.");
    return 0;
}

/* ---- Encrypt ---- */

static const struct vfield encrypt_schema[] = {
    F_KEY_ID,
    {"Plaintext", VT_BLOB, {NOT_NULL, LEN_GE(1), LEN_LE(4096)}, 0, 0, 0},
    F_CONTEXT("EncryptionContext"),
    F_GRANTS,
    {"EncryptionAlgorithm", VT_STRING, {ENUM(algorithms)}, 0, 0, 0},
    F_DRY_RUN,
    {0},
};

static int encrypt(struct api_ctx *c)
{
    if (symmetric_only(c, "EncryptionAlgorithm"))
        return -1;
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), true, "kms:Encrypt", &k))
        return -1;
    const struct kv *pt = kv_get(c->req, "Plaintext");
    unsigned char *blob;
    size_t len;
    int rc = kms_usable(c, &k);
    if (rc == 0)
        rc = kms_seal(c, &k, kv_get(c->req, "EncryptionContext"), pt->s, pt->len, &blob, &len);
    if (rc == 0) {
        struct enc *e = &c->out;
        enc_obj_begin(e);
        enc_key(e, "CiphertextBlob"), enc_blob(e, blob, len);
        enc_key(e, "KeyId"), enc_strz(e, k.arn);
        enc_key(e, "EncryptionAlgorithm"), enc_strz(e, "SYMMETRIC_DEFAULT");
        enc_obj_end(e);
    }
    json_decref(k.doc);
    return rc;
}

const struct op_def op_kms_encrypt = {.schema = encrypt_schema, .run = encrypt};

/* ---- Decrypt ---- */

/* The key a blob names, loaded, checked against the caller's KeyId (if any); under --auth the
 * caller needs action on it. */
static int blob_key(struct api_ctx *c, const struct kv *blob, const char *want, const char *action,
                    struct kms_key *k)
{
    char id[KMS_ID_LEN + 1];
    if (kms_blob_key((const unsigned char *)blob->s, blob->len, id))
        return api_fail(c, KERR_KMS_INVALID_CIPHERTEXT, NULL);
    if (want) {
        struct kms_key w;
        if (kms_find(c, want, true, &w))
            return -1;
        bool same = !strcmp(w.id, id);
        json_decref(w.doc);
        if (!same)
            return api_fail(c, KERR_KMS_INCORRECT_KEY,
                            "The key ID in the request does not identify a CMK that can "
                            "perform this operation.");
    }
    if (kms_find_id(c, id, k)) { /* whatever account owns it: its policy decides */
        if (c->err == KERR_KMS_NOT_FOUND)
            return api_fail(c, KERR_ACCESS_DENIED,
                            "The ciphertext refers to a customer master key that does not "
                            "exist, does not exist in this region, or you are not allowed to "
                            "access.");
        return -1;
    }
    if (kms_authorize(c, k, action, KERR_ACCESS_DENIED, !want) || kms_usable(c, k)) {
        json_decref(k->doc);
        return -1;
    }
    return 0;
}

static const struct vfield decrypt_schema[] = {
    {"CiphertextBlob", VT_BLOB, {NOT_NULL, LEN_GE(1), LEN_LE(6144)}, 0, 0, 0},
    F_CONTEXT("EncryptionContext"),
    F_GRANTS,
    F_KEY_ID_OPT,
    {"EncryptionAlgorithm", VT_STRING, {ENUM(algorithms)}, 0, 0, 0},
    F_DRY_RUN,
    {0},
};

static int decrypt(struct api_ctx *c)
{
    if (symmetric_only(c, "EncryptionAlgorithm"))
        return -1;
    const struct kv *blob = kv_get(c->req, "CiphertextBlob");
    struct kms_key k;
    if (blob_key(c, blob, req_str(c, "KeyId"), "kms:Decrypt", &k))
        return -1;
    unsigned char *pt;
    size_t n;
    int rc = kms_unseal(c, &k, kv_get(c->req, "EncryptionContext"), (const unsigned char *)blob->s, blob->len,
                        &pt, &n);
    if (rc == 0) {
        struct enc *e = &c->out;
        enc_obj_begin(e);
        enc_key(e, "KeyId"), enc_strz(e, k.arn);
        enc_key(e, "Plaintext"), enc_blob(e, pt, n);
        enc_key(e, "EncryptionAlgorithm"), enc_strz(e, "SYMMETRIC_DEFAULT");
        enc_obj_end(e);
        sodium_memzero(pt, n);
    }
    json_decref(k.doc);
    return rc;
}

const struct op_def op_kms_decrypt = {.schema = decrypt_schema, .run = decrypt};

/* ---- ReEncrypt ---- */

static const struct vfield reencrypt_schema[] = {
    {"CiphertextBlob", VT_BLOB, {NOT_NULL, LEN_GE(1), LEN_LE(6144)}, 0, 0, 0},
    F_CONTEXT("SourceEncryptionContext"),
    {"SourceKeyId", VT_STRING, {LEN_GE(1), LEN_LE(2048)}, 0, 0, 0},
    {"DestinationKeyId", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048)}, 0, 0, 0},
    F_CONTEXT("DestinationEncryptionContext"),
    {"SourceEncryptionAlgorithm", VT_STRING, {ENUM(algorithms)}, 0, 0, 0},
    {"DestinationEncryptionAlgorithm", VT_STRING, {ENUM(algorithms)}, 0, 0, 0},
    F_GRANTS,
    F_DRY_RUN,
    {0},
};

static int reencrypt(struct api_ctx *c)
{
    if (symmetric_only(c, "SourceEncryptionAlgorithm") || symmetric_only(c, "DestinationEncryptionAlgorithm"))
        return -1;
    const struct kv *blob = kv_get(c->req, "CiphertextBlob");
    struct kms_key src, dst;
    if (blob_key(c, blob, req_str(c, "SourceKeyId"), "kms:ReEncryptFrom", &src))
        return -1;
    unsigned char *pt, *out;
    size_t n, len;
    int rc = kms_unseal(c, &src, kv_get(c->req, "SourceEncryptionContext"), (const unsigned char *)blob->s,
                        blob->len, &pt, &n);
    if (rc == 0 &&
        (rc = kms_find_for(c, req_str(c, "DestinationKeyId"), true, "kms:ReEncryptTo", &dst)) == 0) {
        rc = kms_usable(c, &dst);
        if (rc == 0)
            rc = kms_seal(c, &dst, kv_get(c->req, "DestinationEncryptionContext"), pt, n, &out, &len);
        if (rc == 0) {
            struct enc *e = &c->out;
            enc_obj_begin(e);
            enc_key(e, "CiphertextBlob"), enc_blob(e, out, len);
            enc_key(e, "SourceKeyId"), enc_strz(e, src.arn);
            enc_key(e, "KeyId"), enc_strz(e, dst.arn);
            enc_key(e, "SourceEncryptionAlgorithm"), enc_strz(e, "SYMMETRIC_DEFAULT");
            enc_key(e, "DestinationEncryptionAlgorithm"), enc_strz(e, "SYMMETRIC_DEFAULT");
            enc_obj_end(e);
        }
        json_decref(dst.doc);
    }
    if (rc == 0 || pt)
        sodium_memzero(pt, n);
    json_decref(src.doc);
    return rc;
}

const struct op_def op_kms_re_encrypt = {.schema = reencrypt_schema, .run = reencrypt};

/* ---- GenerateDataKey(WithoutPlaintext) ---- */

static const struct vfield gdk_schema[] = {
    F_KEY_ID,
    F_CONTEXT("EncryptionContext"),
    {"NumberOfBytes", VT_INTEGER, {GE(1), LE(1024)}, 0, 0, 0},
    {"KeySpec", VT_STRING, {ENUM(data_key_specs)}, 0, 0, 0},
    F_GRANTS,
    F_DRY_RUN,
    {0},
};

static int data_key(struct api_ctx *c, bool with_plaintext)
{
    const char *action = with_plaintext ? "kms:GenerateDataKey" : "kms:GenerateDataKeyWithoutPlaintext";
    int64_t bytes = 0;
    bool has_n = req_int(c, "NumberOfBytes", &bytes);
    const char *spec = req_str(c, "KeySpec");
    if (has_n == !!spec)
        return api_fail(c, KERR_VALIDATION,
                        has_n ? "KeySpec and NumberOfBytes are mutually exclusive."
                              : "Please specify either number of bytes or key spec.");
    if (spec)
        bytes = strcmp(spec, "AES_128") ? 32 : 16;
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), true, action, &k))
        return -1;
    unsigned char *pt = arena_alloc(&c->arena, (size_t)bytes), *blob;
    size_t len;
    randombytes_buf(pt, (size_t)bytes);
    int rc = kms_usable(c, &k);
    if (rc == 0)
        rc = kms_seal(c, &k, kv_get(c->req, "EncryptionContext"), pt, (size_t)bytes, &blob, &len);
    if (rc == 0) {
        struct enc *e = &c->out;
        enc_obj_begin(e);
        enc_key(e, "CiphertextBlob"), enc_blob(e, blob, len);
        if (with_plaintext) {
            enc_key(e, "Plaintext"), enc_blob(e, pt, (size_t)bytes);
        }
        enc_key(e, "KeyId"), enc_strz(e, k.arn);
        enc_obj_end(e);
    }
    sodium_memzero(pt, (size_t)bytes);
    json_decref(k.doc);
    return rc;
}

static int gdk(struct api_ctx *c) { return data_key(c, true); }
static int gdk_np(struct api_ctx *c) { return data_key(c, false); }
const struct op_def op_kms_generate_data_key = {.schema = gdk_schema, .run = gdk};
const struct op_def op_kms_generate_data_key_without_plaintext = {.schema = gdk_schema, .run = gdk_np};

/* ---- GenerateRandom ---- */

static const struct vfield random_schema[] = {
    {"NumberOfBytes", VT_INTEGER, {GE(1), LE(1024)}, 0, 0, 0},
    {"CustomKeyStoreId", VT_STRING, {LEN_GE(1), LEN_LE(64)}, 0, 0, 0},
    {0},
};

static int generate_random(struct api_ctx *c)
{
    int64_t n = 0;
    if (!req_int(c, "NumberOfBytes", &n))
        return api_fail(c, KERR_VALIDATION, "NumberOfBytes is required.");
    unsigned char *p = arena_alloc(&c->arena, (size_t)n);
    randombytes_buf(p, (size_t)n);
    enc_obj_begin(&c->out);
    enc_key(&c->out, "Plaintext"), enc_blob(&c->out, p, (size_t)n);
    enc_obj_end(&c->out);
    return 0;
}

const struct op_def op_kms_generate_random = {.schema = random_schema, .run = generate_random};
