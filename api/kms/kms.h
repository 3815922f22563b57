/* kms.h: the built-in KMS's key store and ciphertext blobs, shared by its operations.
 *
 * Keys are metadata rows "kms/key/<key id>" holding a JSON document (jansson: control-plane
 * documents, off the hot path): state, dates, description, policy, tags, rotation settings, and
 * the key material versions, each 32 bytes wrapped by the root key (datakeys.h) with the key id
 * and version as associated data, and the account and region that own the key (rows without
 * them: the server's --account-id and --region). Aliases are rows "kms/alias/<name>" (the
 * server's account and region) or "kms/xalias/<account>/<region>/<name>" -> {"target", dates}.
 * A change is read, modified, written with a compare-and-set on the row's version.
 *
 * Ciphertext blob (ours, version 1):
 *   off size
 *     0    1 'K'
 *     1    1 1 (blob version)
 *     2   36 key id (text)
 *    38    4 material version (big-endian)
 *    42   24 nonce (random)
 *    66    . XChaCha20-Poly1305 ciphertext
 *   end   16 tag over the ciphertext, bytes 0..65 and the encryption context in canonical
 *            form: pairs sorted by key bytes, each as key length (4, BE) . key . value length
 *            (4, BE) . value, so {"ab":"c"} and {"a":"bc"} differ. */
#ifndef KINESD_KMS_H
#define KINESD_KMS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../internal.h"

#define KMS_ID_LEN 36
#define KMS_BLOB_HDR 66
#define KMS_BLOB_OVERHEAD (KMS_BLOB_HDR + 16)

/* A key loaded for one request. doc owned by the caller (json_decref). */
struct kms_key {
    char id[KMS_ID_LEN + 1];
    const char *arn;              /* arena */
    const char *account, *region; /* its owner's (arena) */
    json_t *doc;
    uint64_t version; /* the row's */
};

/* "arn:aws:kms:<region>:<account>:key/<id>" of the caller's account and the request's region,
 * in the arena. Keys and aliases are per account and region, as AWS's. */
const char *kms_key_arn(struct api_ctx *c, const char *id);

/* Resolve KeyId (key id, key ARN, alias name or alias ARN; aliases only if allow_alias) and
 * load the key into *k. Fails (api_fail) with AWS's NotFoundException messages. A key whose
 * deletion date has passed is not found; for the KMS's operations and the control plane (never
 * the data plane, which loads keys read-only) it is deleted here, and automatic rotations that
 * are due are made. No authorization (kms_find_for). */
int kms_find(struct api_ctx *c, const char *key_id, bool allow_alias, struct kms_key *k);

/* A key by its id, whatever account owns it (a ciphertext names its key by id): as kms_find. */
int kms_find_id(struct api_ctx *c, const char *id, struct kms_key *k);

/* kms_find for a KMS operation on the key: under --auth the caller then needs action
 * ("kms:Encrypt") on it (kms_authorize, AccessDeniedException). */
int kms_find_for(struct api_ctx *c, const char *key_id, bool allow_alias, const char *action,
                 struct kms_key *k);

/* --auth (without it: 0 for everyone): whether the caller may do action on key k, by k's key
 * policy and the caller's identity policy as AWS KMS decides (policy.h; an explicit Deny in
 * either wins; the key policy must allow the caller itself, or its account, which delegates to
 * the account's identity policies). Fails with err (AccessDeniedException for the KMS's own
 * operations, KMSAccessDeniedException for Kinesis, whose calls are kms:ViaService
 * kinesis.<region>.amazonaws.com) and AWS's message naming the key's ARN, or "the resource
 * associated with this ciphertext" when by_ciphertext (Decrypt without a KeyId). */
int kms_authorize(struct api_ctx *c, const struct kms_key *k, const char *action, enum kerr err,
                  bool by_ciphertext);

/* --auth: whether the caller's identity policy lets it do action on the alias alias_arn (the
 * alias operations need it on the alias as well as on each key involved, which kms_authorize
 * checks); AccessDeniedException with AWS's message otherwise. */
int kms_authorize_alias(struct api_ctx *c, const char *action, const char *alias_arn);

/* A key policy given to CreateKey or PutKeyPolicy for key key_arn: it must parse, and under
 * --auth (unless bypass_lockout) allow the caller kms:PutKeyPolicy, as AWS's lockout safety
 * check asks. Fails with MalformedPolicyDocumentException. */
int kms_policy_check(struct api_ctx *c, const char *text, const char *owner, const char *key_arn,
                     bool bypass_lockout);

/* Fails with DisabledException / KMSInvalidStateException unless the key is Enabled. */
int kms_usable(struct api_ctx *c, const struct kms_key *k);

/* Write k->doc back (compare-and-set on k->version). Fails with KMSInternalException on a
 * conflict or a storage error. */
int kms_save(struct api_ctx *c, struct kms_key *k);

/* Write the KeyMetadata object of k (its members, between enc_obj_begin/end by the caller). */
void kms_enc_metadata(struct api_ctx *c, const struct kms_key *k);

/* Encrypt pt under k's current material with the encryption context ctx (a KV_OBJ or NULL);
 * *blob in the arena. Returns 0 or api_fail. */
int kms_seal(struct api_ctx *c, const struct kms_key *k, const struct kv *ctx, const void *pt, size_t len,
             unsigned char **blob, size_t *blob_len);

/* The key id a blob names (into id), or -1 if it is not one of ours. */
int kms_blob_key(const unsigned char *blob, size_t len, char id[KMS_ID_LEN + 1]);

/* Decrypt blob with k (the key it names) and ctx; *pt in the arena. A blob that does not open
 * fails with InvalidCiphertextException (no message). */
int kms_unseal(struct api_ctx *c, const struct kms_key *k, const struct kv *ctx, const unsigned char *blob,
               size_t len, unsigned char **pt, size_t *pt_len);

/* Create a key with the given id (NULL: a new random one) and material (NULL: random) and
 * store it. *k loaded on success. Used by CreateKey and the seed file. */
int kms_create(struct api_ctx *c, const char *id, const unsigned char *material, const char *description,
               const char *policy, struct kms_key *k);

/* Add a new material version (an on-demand rotation) and save k; older versions keep
 * decrypting. */
int kms_rotate(struct api_ctx *c, struct kms_key *k);

/* When k's next automatic rotation is due (ms; INT64_MAX: rotation off, or k not Enabled). */
int64_t kms_next_rotation(const struct kms_key *k);

/* Note a rotation at ms of type "AUTOMATIC" or "ON_DEMAND" in a key document. */
void kms_note_rotation(json_t *doc, int64_t ms, const char *type);

/* Make every key deletion and automatic rotation that is due (keys are also deleted or rotated
 * when a KMS operation loads them, never on the data plane). Returns 0 or a STORE_* code. */
int kms_sweep(struct api_ctx *c);

/* kms_sweep from the maintenance thread (no request). */
void kms_maintain(struct api *a, int64_t now);

/* Material version `version` (0: the newest) of key id, read from the store and unwrapped
 * with root into out; *used gets the version. No request context: for the data keys of
 * KMS-encrypted streams (datakeys.c). Returns 0 or -1 (no such key or version). */
int kms_material_raw(struct store *s, const unsigned char *root, const char *id, uint32_t version,
                     unsigned char out[32], uint32_t *used);

/* Root-key rotation: re-wrap every material version of every key under new_root (it was
 * under old_root; one already under new_root, from an interrupted rotation, is kept), all keys
 * in one compare-and-set. *n gets the versions re-wrapped. Returns 0, -2 (after printing why: a
 * version opens under neither key), -1 (storage, memory). */
int kms_rewrap_all(struct store *s, const unsigned char *old_root, const unsigned char *new_root, size_t *n);

/* Kinesis server-side encryption: resolve a StartStreamEncryption KeyId (key id, key ARN, alias
 * name, alias ARN, or alias/aws/kinesis, made on first use with KeyManager AWS) into kid, and
 * check that the key is usable. Fails with Kinesis's KMSNotFoundException, KMSDisabledException,
 * KMSInvalidStateException. */
int kms_stream_key_resolve(struct api_ctx *c, const char *key_id, char kid[KMS_ID_LEN + 1]);

/* The same check for an encrypted stream's key id on the data plane (writes): a key that is
 * gone fails with KMSNotFoundException. Under --auth the caller needs kms:GenerateDataKey on
 * the key (KMSAccessDeniedException), as for kms_stream_key_resolve. */
int kms_stream_key_check(struct api_ctx *c, const char *kid);

/* The KMS key id new records of stream s are sealed under at now ("" for none): the previous
 * one until the UPDATING of the last StartStreamEncryption / StopStreamEncryption ends. */
const char *kms_stream_kid(const struct stream *s, int64_t now);

/* Reads: the state of each KMS key that sealed one of the n records v applies to the whole
 * call: Disabled KMSDisabledException, PendingDeletion KMSInvalidStateException, gone
 * KMSAccessDeniedException (the records' data keys refer to a key that does not exist), and
 * under --auth a caller without kms:Decrypt on it KMSAccessDeniedException. Returns 0 or
 * api_fail. */
int kms_records_check(struct api_ctx *c, const struct store_read *v, size_t n);

/* A scan of log failed with rc: KMSAccessDeniedException when the log has records under a KMS
 * key that is gone (they cannot open), else the store's error. Returns api_fail. */
int kms_scan_fail(struct api_ctx *c, uint64_t log, int rc);

/* The default key policy AWS gives a key of account created without one. */
const char *kms_default_policy(struct api_ctx *c, const char *account);

/* The row key of a key or of an alias of the caller's account and region, in the arena; and
 * the prefix of the rows of that account's aliases in that region (ListAliases). */
const char *kms_key_row(struct api_ctx *c, const char *id);
const char *kms_alias_row(struct api_ctx *c, const char *alias);
const char *kms_alias_prefix(struct api_ctx *c);

/* Seconds since the epoch as AWS's JSON timestamps (a number with a fraction). */
void kms_enc_time(struct enc *e, int64_t ms);

#endif
