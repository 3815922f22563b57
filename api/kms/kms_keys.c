/* kms_keys.c: the built-in KMS's key operations: CreateKey, DescribeKey, ListKeys, EnableKey,
 * DisableKey, ScheduleKeyDeletion, CancelKeyDeletion, key rotation, tags and key policies.
 * Each reads the key's row, changes its document, and writes it back (kms.h). */
#include <stdlib.h>
#include <string.h>

#include "kms.h"

#define F_KEY_ID                                                         \
    {                                                                    \
        "KeyId", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048)}, 0, 0, 0 \
    }
#define DAY_MS (24 * 3600 * 1000LL)

static const char *const key_usages[] = {"SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC",
                                         "KEY_AGREEMENT", NULL};
static const char *const key_specs[] = {"RSA_2048",
                                        "RSA_3072",
                                        "RSA_4096",
                                        "ECC_NIST_P256",
                                        "ECC_NIST_P384",
                                        "ECC_NIST_P521",
                                        "ECC_SECG_P256K1",
                                        "SYMMETRIC_DEFAULT",
                                        "HMAC_224",
                                        "HMAC_256",
                                        "HMAC_384",
                                        "HMAC_512",
                                        "SM2",
                                        NULL};
static const char *const origins[] = {"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE", NULL};

static const struct vfield tag_fields[] = {
    {"TagKey", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"TagValue", VT_STRING, {NOT_NULL, LEN_GE(0), LEN_LE(256)}, 0, 0, 0},
    {0},
};
static const struct vfield tag = {"member", VT_STRUCT, {{0}}, tag_fields, 0, 0};
static const struct vfield str_elem = {"member", VT_STRING, {{0}}, 0, 0, 0};

/* ---- CreateKey ---- */

static const struct vfield create_schema[] = {
    {"Policy", VT_STRING, {LEN_GE(1), LEN_LE(32768)}, 0, 0, 0},
    {"Description", VT_STRING, {LEN_GE(0), LEN_LE(8192)}, 0, 0, 0},
    {"KeyUsage", VT_STRING, {ENUM(key_usages)}, 0, 0, 0},
    {"CustomerMasterKeySpec", VT_STRING, {ENUM(key_specs)}, 0, 0, 0},
    {"KeySpec", VT_STRING, {ENUM(key_specs)}, 0, 0, 0},
    {"Origin", VT_STRING, {ENUM(origins)}, 0, 0, 0},
    {"CustomKeyStoreId", VT_STRING, {LEN_GE(1), LEN_LE(64)}, 0, 0, 0},
    {"BypassPolicyLockoutSafetyCheck", VT_BOOLEAN, {{0}}, 0, 0, 0},
    {"Tags", VT_LIST, {{0}}, 0, &tag, "com.amazonaws.kms.model.Tag"},
    {"MultiRegion", VT_BOOLEAN, {{0}}, 0, 0, 0},
    {"XksKeyId", VT_STRING, {LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {0},
};

static bool bypass_lockout(struct api_ctx *c)
{
    const struct kv *v = kv_get(c->req, "BypassPolicyLockoutSafetyCheck");
    return v && v->type == KV_BOOL && v->b;
}

static json_t *tags_of(const struct kv *list)
{
    json_t *t = json_object();
    for (const struct kv *m = list ? list->child : NULL; m; m = m->next) {
        const struct kv *k = kv_get(m, "TagKey"), *v = kv_get(m, "TagValue");
        if (k && v)
            json_object_set_new(t, k->s, json_string(v->s));
    }
    return t;
}

static int create_key(struct api_ctx *c)
{
    const char *spec = req_str(c, "KeySpec") ?: req_str(c, "CustomerMasterKeySpec");
    const char *usage = req_str(c, "KeyUsage");
    if ((spec && strcmp(spec, "SYMMETRIC_DEFAULT")) || (usage && strcmp(usage, "ENCRYPT_DECRYPT")))
        return api_fail(c, KERR_KMS_UNSUPPORTED, "kinesd's KMS makes symmetric ENCRYPT_DECRYPT keys only.");
    const char *origin = req_str(c, "Origin");
    if (origin && strcmp(origin, "AWS_KMS"))
        return api_fail(c, KERR_KMS_UNSUPPORTED, "kinesd's KMS makes keys of Origin AWS_KMS only.");
    const char *policy = req_str(c, "Policy");
    bool bypass = bypass_lockout(c);
    /* the lockout check names no key yet: its ARN only matters to a policy's Resource */
    if (policy && kms_policy_check(c, policy, api_account(c), kms_key_arn(c, "*"), bypass))
        return -1;
    struct kms_key k;
    if (kms_create(c, NULL, NULL, req_str(c, "Description"), policy, &k))
        return -1;
    const struct kv *tags = kv_get(c->req, "Tags");
    if (tags && tags->n) {
        json_object_set_new(k.doc, "tags", tags_of(tags));
        if (kms_save(c, &k)) {
            json_decref(k.doc);
            return -1;
        }
    }
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "KeyMetadata");
    enc_obj_begin(e);
    kms_enc_metadata(c, &k);
    enc_obj_end(e);
    enc_obj_end(e);
    json_decref(k.doc);
    return 0;
}

const struct op_def op_kms_create_key = {.schema = create_schema, .run = create_key};

/* ---- DescribeKey ---- */

static const struct vfield describe_schema[] = {
    F_KEY_ID,
    {"GrantTokens", VT_LIST, {LEN_GE(0), LEN_LE(10)}, 0, &str_elem, 0},
    {0},
};

static int describe_key(struct api_ctx *c)
{
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), true, "kms:DescribeKey", &k))
        return -1;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "KeyMetadata");
    enc_obj_begin(e);
    kms_enc_metadata(c, &k);
    enc_obj_end(e);
    enc_obj_end(e);
    json_decref(k.doc);
    return 0;
}

const struct op_def op_kms_describe_key = {.schema = describe_schema, .run = describe_key};

/* ---- ListKeys ---- */

static const struct vfield list_schema[] = {
    {"Limit", VT_INTEGER, {GE(1), LE(1000)}, 0, 0, 0},
    {"Marker", VT_STRING, {LEN_GE(1), LEN_LE(1024)}, 0, 0, 0},
    {0},
};

struct id_list {
    struct api_ctx *c;
    const char *after;
    const char **ids;
    size_t n, cap;
};

static int collect(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct id_list *l = ctx;
    const char *id = arena_strndup(&l->c->arena, key + 8, klen - 8);
    if (l->after && strcmp(id, l->after) <= 0)
        return 0;
    /* the caller's account's keys in this region only (rows from before: the server's) */
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    const char *a = json_string_value(json_object_get(doc, "account"));
    const char *r = json_string_value(json_object_get(doc, "region"));
    bool mine = !strcmp(a ? a : l->c->api->account, api_account(l->c)) &&
                !strcmp(r ? r : l->c->api->region, l->c->region);
    json_decref(doc);
    if (!mine)
        return 0;
    if (l->n == l->cap)
        return 1;
    l->ids[l->n++] = id;
    return 0;
}

static int list_keys(struct api_ctx *c)
{
    int64_t limit = 100;
    req_int(c, "Limit", &limit);
    struct id_list l = {.c = c, .after = req_str(c, "Marker"), .cap = (size_t)limit + 1};
    l.ids = arena_alloc(&c->arena, l.cap * sizeof *l.ids);
    int rc = kms_sweep(c); /* keys whose deletion date has passed are not listed */
    if (rc == 0)
        rc = store_meta_scan(c->api->store, "kms/key/", collect, &l);
    if (rc)
        return api_store_fail(c, rc);
    bool more = l.n > (size_t)limit;
    size_t n = more ? (size_t)limit : l.n;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Keys");
    enc_arr_begin(e);
    for (size_t i = 0; i < n; i++) {
        enc_obj_begin(e);
        enc_key(e, "KeyId"), enc_strz(e, l.ids[i]);
        enc_key(e, "KeyArn"), enc_strz(e, kms_key_arn(c, l.ids[i]));
        enc_obj_end(e);
    }
    enc_arr_end(e);
    if (more) {
        enc_key(e, "NextMarker"), enc_strz(e, l.ids[n - 1]);
    }
    enc_key(e, "Truncated"), enc_bool(e, more);
    enc_obj_end(e);
    return 0;
}

const struct op_def op_kms_list_keys = {.schema = list_schema, .run = list_keys};

/* ---- state changes ---- */

static const struct vfield key_id_schema[] = {F_KEY_ID, {0}};

static const char *state_of(const struct kms_key *k)
{
    return json_string_value(json_object_get(k->doc, "state"));
}

/* Load KeyId (no aliases, as AWS for these operations), the caller needing action on it, apply fn, save,
 * answer {} or what fn wrote. */
static int change(struct api_ctx *c, const char *action, int (*fn)(struct api_ctx *c, struct kms_key *k))
{
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), false, action, &k))
        return -1;
    int rc = fn(c, &k);
    if (rc == 0)
        rc = kms_save(c, &k);
    json_decref(k.doc);
    if (rc == 0 && !c->out.b.len) {
        enc_obj_begin(&c->out);
        enc_obj_end(&c->out);
    }
    return rc;
}

static int not_pending(struct api_ctx *c, struct kms_key *k)
{
    if (!strcmp(state_of(k), "PendingDeletion"))
        return api_fail(c, KERR_KMS_INVALID_STATE, "%s is pending deletion.", k->arn);
    return 0;
}

static int do_enable(struct api_ctx *c, struct kms_key *k)
{
    if (not_pending(c, k))
        return -1;
    json_object_set_new(k->doc, "state", json_string("Enabled"));
    return 0;
}

static int do_disable(struct api_ctx *c, struct kms_key *k)
{
    if (not_pending(c, k))
        return -1;
    json_object_set_new(k->doc, "state", json_string("Disabled"));
    return 0;
}

static int enable_key(struct api_ctx *c) { return change(c, "kms:EnableKey", do_enable); }
static int disable_key(struct api_ctx *c) { return change(c, "kms:DisableKey", do_disable); }
const struct op_def op_kms_enable_key = {.schema = key_id_schema, .run = enable_key};
const struct op_def op_kms_disable_key = {.schema = key_id_schema, .run = disable_key};

static const struct vfield schedule_schema[] = {
    F_KEY_ID,
    {"PendingWindowInDays", VT_INTEGER, {GE(1), LE(365)}, 0, 0, 0},
    {0},
};

static int do_schedule(struct api_ctx *c, struct kms_key *k)
{
    int64_t days = 30;
    req_int(c, "PendingWindowInDays", &days);
    if (days < 7 || days > 30)
        return api_fail(
            c, KERR_VALIDATION,
            "1 validation error detected: Value '%lld' at 'pendingWindowInDays' failed to satisfy "
            "constraint: Member must have value less than or equal to 30 and greater than or equal to 7",
            (long long)days);
    if (not_pending(c, k))
        return -1;
    int64_t when = c->now_ms + days * DAY_MS;
    json_object_set_new(k->doc, "state", json_string("PendingDeletion"));
    json_object_set_new(k->doc, "deletion_ms", json_integer(when));
    json_object_set_new(k->doc, "pending_days", json_integer(days));
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "KeyId"), enc_strz(e, k->arn);
    enc_key(e, "DeletionDate"), kms_enc_time(e, when);
    enc_key(e, "KeyState"), enc_strz(e, "PendingDeletion");
    enc_key(e, "PendingWindowInDays"), enc_int(e, days);
    enc_obj_end(e);
    return 0;
}

static int do_cancel(struct api_ctx *c, struct kms_key *k)
{
    if (strcmp(state_of(k), "PendingDeletion"))
        return api_fail(c, KERR_KMS_INVALID_STATE, "%s is not pending deletion.", k->arn);
    json_object_set_new(k->doc, "state", json_string("Disabled")); /* as AWS: disabled, not enabled */
    json_object_del(k->doc, "deletion_ms");
    json_object_del(k->doc, "pending_days");
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "KeyId"), enc_strz(e, k->arn);
    enc_obj_end(e);
    return 0;
}

static int schedule(struct api_ctx *c) { return change(c, "kms:ScheduleKeyDeletion", do_schedule); }
static int cancel(struct api_ctx *c) { return change(c, "kms:CancelKeyDeletion", do_cancel); }
const struct op_def op_kms_schedule_key_deletion = {.schema = schedule_schema, .run = schedule};
const struct op_def op_kms_cancel_key_deletion = {.schema = key_id_schema, .run = cancel};

/* ---- rotation ---- */

static const struct vfield rotation_schema[] = {
    F_KEY_ID,
    {"RotationPeriodInDays", VT_INTEGER, {GE(90), LE(2560)}, 0, 0, 0},
    {0},
};

static int usable_for_rotation(struct api_ctx *c, struct kms_key *k)
{
    const char *st = state_of(k);
    if (!strcmp(st, "Disabled"))
        return api_fail(c, KERR_KMS_DISABLED, "%s is disabled.", k->arn);
    return not_pending(c, k);
}

static int do_enable_rotation(struct api_ctx *c, struct kms_key *k)
{
    if (usable_for_rotation(c, k))
        return -1;
    int64_t days = 365;
    req_int(c, "RotationPeriodInDays", &days);
    /* the period counts from now, or for a key that rotates already from its last rotation */
    if (!json_is_true(json_object_get(k->doc, "rotation")))
        json_object_set_new(k->doc, "rotation_base_ms", json_integer(c->now_ms));
    json_object_set_new(k->doc, "rotation", json_true());
    json_object_set_new(k->doc, "rotation_days", json_integer(days));
    return 0;
}

static int do_disable_rotation(struct api_ctx *c, struct kms_key *k)
{
    if (usable_for_rotation(c, k))
        return -1;
    json_object_set_new(k->doc, "rotation", json_false());
    return 0;
}

static int enable_rotation(struct api_ctx *c)
{
    return change(c, "kms:EnableKeyRotation", do_enable_rotation);
}
static int disable_rotation(struct api_ctx *c)
{
    return change(c, "kms:DisableKeyRotation", do_disable_rotation);
}
const struct op_def op_kms_enable_key_rotation = {.schema = rotation_schema, .run = enable_rotation};
const struct op_def op_kms_disable_key_rotation = {.schema = key_id_schema, .run = disable_rotation};

static int rotation_status(struct api_ctx *c)
{
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), false, "kms:GetKeyRotationStatus", &k))
        return -1;
    bool on = json_is_true(json_object_get(k.doc, "rotation"));
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "KeyRotationEnabled"), enc_bool(e, on);
    enc_key(e, "KeyId"), enc_strz(e, k.arn);
    if (on) {
        enc_key(e, "RotationPeriodInDays"),
            enc_int(e, json_integer_value(json_object_get(k.doc, "rotation_days")));
        int64_t next = kms_next_rotation(&k);
        if (next != INT64_MAX) {
            enc_key(e, "NextRotationDate"), kms_enc_time(e, next);
        }
    }
    enc_obj_end(e);
    json_decref(k.doc);
    return 0;
}

const struct op_def op_kms_get_key_rotation_status = {.schema = key_id_schema, .run = rotation_status};

#define MAX_ON_DEMAND_ROTATIONS 25

/* A rotation entry of a key document: an object {ms, type}, or (older documents) the time of
 * an on-demand rotation. */
static int64_t rotation_ms(const json_t *r)
{
    return json_is_integer(r) ? json_integer_value(r) : json_integer_value(json_object_get(r, "ms"));
}

static const char *rotation_type(const json_t *r)
{
    return json_is_integer(r) ? "ON_DEMAND" : json_string_value(json_object_get(r, "type")) ?: "ON_DEMAND";
}

static size_t on_demand_rotations(const struct kms_key *k)
{
    json_t *r = json_object_get(k->doc, "rotations");
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(r); i++)
        n += !strcmp(rotation_type(json_array_get(r, i)), "ON_DEMAND");
    return n;
}

static int rotate_now(struct api_ctx *c)
{
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), false, "kms:RotateKeyOnDemand", &k))
        return -1;
    int rc = usable_for_rotation(c, &k);
    if (rc == 0 && on_demand_rotations(&k) >= MAX_ON_DEMAND_ROTATIONS)
        rc = api_fail(c, KERR_KMS_LIMIT_EXCEEDED,
                      "The on-demand rotations limit has been reached for the given key "
                      "%s. No more on-demand rotations can be performed for this key.",
                      k.arn);
    if (rc == 0)
        rc = kms_rotate(c, &k);
    if (rc == 0) {
        enc_obj_begin(&c->out);
        enc_key(&c->out, "KeyId"), enc_strz(&c->out, k.arn);
        enc_obj_end(&c->out);
    }
    json_decref(k.doc);
    return rc;
}

const struct op_def op_kms_rotate_key_on_demand = {.schema = key_id_schema, .run = rotate_now};

/* ---- tags ---- */

static const struct vfield tag_schema[] = {
    F_KEY_ID,
    {"Tags", VT_LIST, {NOT_NULL}, 0, &tag, "com.amazonaws.kms.model.Tag"},
    {0},
};

static int do_tag(struct api_ctx *c, struct kms_key *k)
{
    if (not_pending(c, k))
        return -1;
    json_t *tags = json_object_get(k->doc, "tags");
    if (!json_is_object(tags)) {
        tags = json_object();
        json_object_set_new(k->doc, "tags", tags);
    }
    json_t *add = tags_of(kv_get(c->req, "Tags"));
    json_object_update(tags, add);
    json_decref(add);
    if (json_object_size(tags) > 50)
        return api_fail(c, KERR_KMS_TAG, "Too many tags");
    return 0;
}

static const struct vfield untag_schema[] = {
    F_KEY_ID,
    {"TagKeys", VT_LIST, {NOT_NULL}, 0, &str_elem, 0},
    {0},
};

static int do_untag(struct api_ctx *c, struct kms_key *k)
{
    if (not_pending(c, k))
        return -1;
    json_t *tags = json_object_get(k->doc, "tags");
    const struct kv *keys = kv_get(c->req, "TagKeys");
    for (const struct kv *m = keys->child; m && json_is_object(tags); m = m->next)
        if (m->type == KV_STR)
            json_object_del(tags, m->s);
    return 0;
}

static int tag_resource(struct api_ctx *c) { return change(c, "kms:TagResource", do_tag); }
static int untag_resource(struct api_ctx *c) { return change(c, "kms:UntagResource", do_untag); }
const struct op_def op_kms_tag_resource = {.schema = tag_schema, .run = tag_resource};
const struct op_def op_kms_untag_resource = {.schema = untag_schema, .run = untag_resource};

static const struct vfield list_tags_schema[] = {
    F_KEY_ID,
    {"Limit", VT_INTEGER, {GE(1), LE(50)}, 0, 0, 0},
    {"Marker", VT_STRING, {LEN_GE(1), LEN_LE(1024)}, 0, 0, 0},
    {0},
};

static int list_tags(struct api_ctx *c)
{
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), false, "kms:ListResourceTags", &k))
        return -1;
    json_t *tags = json_object_get(k.doc, "tags");
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Tags");
    enc_arr_begin(e);
    const char **keys = arena_alloc(&c->arena, (json_object_size(tags) + 1) * sizeof *keys);
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(tags, key, v) keys[n++] = key;
    for (size_t i = 1; i < n; i++) /* in key order */
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        enc_obj_begin(e);
        enc_key(e, "TagKey"), enc_strz(e, keys[i]);
        enc_key(e, "TagValue"), enc_strz(e, json_string_value(json_object_get(tags, keys[i])));
        enc_obj_end(e);
    }
    enc_arr_end(e);
    enc_key(e, "Truncated"), enc_bool(e, false);
    enc_obj_end(e);
    json_decref(k.doc);
    return 0;
}

const struct op_def op_kms_list_resource_tags = {.schema = list_tags_schema, .run = list_tags};

/* ---- key policies ---- */

static const struct vfield get_policy_schema[] = {
    F_KEY_ID,
    {"PolicyName", VT_STRING, {LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {0},
};

static int get_policy(struct api_ctx *c)
{
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), false, "kms:GetKeyPolicy", &k))
        return -1;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Policy"),
        enc_strz(e, json_string_value(json_object_get(k.doc, "policy")) ?: kms_default_policy(c, k.account));
    enc_key(e, "PolicyName"), enc_strz(e, "default");
    enc_obj_end(e);
    json_decref(k.doc);
    return 0;
}

const struct op_def op_kms_get_key_policy = {.schema = get_policy_schema, .run = get_policy};

static const struct vfield put_policy_schema[] = {
    F_KEY_ID,
    {"PolicyName", VT_STRING, {LEN_GE(1), LEN_LE(128)}, 0, 0, 0},
    {"Policy", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(32768)}, 0, 0, 0},
    {"BypassPolicyLockoutSafetyCheck", VT_BOOLEAN, {{0}}, 0, 0, 0},
    {0},
};

static int do_put_policy(struct api_ctx *c, struct kms_key *k)
{
    const char *policy = req_str(c, "Policy");
    bool bypass = bypass_lockout(c);
    if (kms_policy_check(c, policy, k->account, k->arn, bypass))
        return -1;
    json_object_set_new(k->doc, "policy", json_string(policy));
    return 0;
}

static int put_policy(struct api_ctx *c) { return change(c, "kms:PutKeyPolicy", do_put_policy); }
const struct op_def op_kms_put_key_policy = {.schema = put_policy_schema, .run = put_policy};

/* ---- ListKeyRotations ---- */

static const struct vfield rotations_schema[] = {
    F_KEY_ID,
    {"Limit", VT_INTEGER, {GE(1), LE(1000)}, 0, 0, 0},
    {"Marker", VT_STRING, {LEN_GE(1), LEN_LE(1024)}, 0, 0, 0},
    {0},
};

static int list_rotations(struct api_ctx *c)
{
    struct kms_key k;
    if (kms_find_for(c, req_str(c, "KeyId"), false, "kms:ListKeyRotations", &k))
        return -1;
    json_t *r = json_object_get(k.doc, "rotations");
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Rotations");
    enc_arr_begin(e);
    for (size_t i = 0; i < json_array_size(r); i++) {
        enc_obj_begin(e);
        enc_key(e, "KeyId"), enc_strz(e, k.arn);
        enc_key(e, "RotationDate"), kms_enc_time(e, rotation_ms(json_array_get(r, i)));
        enc_key(e, "RotationType"), enc_strz(e, rotation_type(json_array_get(r, i)));
        enc_obj_end(e);
    }
    enc_arr_end(e);
    enc_key(e, "Truncated"), enc_bool(e, false);
    enc_obj_end(e);
    json_decref(k.doc);
    return 0;
}

const struct op_def op_kms_list_key_rotations = {.schema = rotations_schema, .run = list_rotations};
