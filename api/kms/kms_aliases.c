/* kms_aliases.c: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. An alias is a row
 * of the caller's account and region (kms_alias_row) naming its target key id, with its dates. Names under
 * alias/aws/ are AWS's: they cannot be created here (kinesd makes alias/aws/kinesis itself when it needs it).
 */
#include <string.h>

#include "kms.h"

static struct vregex vre_alias = {"^[a-zA-Z0-9:/_-]+$", 0, {0}};

#define F_ALIAS                                                                               \
    {                                                                                         \
        "AliasName", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(256), REGEX(vre_alias)}, 0, 0, 0 \
    }
#define F_TARGET                                                               \
    {                                                                          \
        "TargetKeyId", VT_STRING, {NOT_NULL, LEN_GE(1), LEN_LE(2048)}, 0, 0, 0 \
    }

static const char *alias_arn(struct api_ctx *c, const char *name)
{
    return arena_printf(&c->arena, "arn:aws:kms:%s:%s:%s", c->region, api_account(c), name);
}

static int check_name(struct api_ctx *c, const char *name)
{
    if (strncmp(name, "alias/", 6))
        return api_fail(c, KERR_VALIDATION,
                        "Alias must start with the prefix \"alias/\". Please see "
                        "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html");
    if (!strncmp(name, "alias/aws/", 10))
        return api_fail(c, KERR_KMS_NOT_AUTHORIZED, "Cannot create alias with prefix 'alias/aws/'");
    return 0;
}

/* The target key: by id or key ARN only, of the caller's account, usable for an alias (not
 * pending deletion); under --auth the caller needs action on it. */
static int target(struct api_ctx *c, const char *action, struct kms_key *k)
{
    const char *t = req_str(c, "TargetKeyId");
    if (!strncmp(t, "alias/", 6) || strstr(t, ":alias/"))
        return api_fail(c, KERR_VALIDATION, "Aliases must refer to keys. Not aliases");
    if (kms_find(c, t, false, k))
        return -1;
    if (strcmp(k->account, api_account(c))) { /* an alias names a key of its own account */
        json_decref(k->doc);
        return api_fail(c, KERR_KMS_NOT_FOUND, "Key '%s' does not exist", k->arn);
    }
    if (kms_authorize(c, k, action, KERR_ACCESS_DENIED, false)) {
        json_decref(k->doc);
        return -1;
    }
    const char *st = json_string_value(json_object_get(k->doc, "state"));
    if (st && !strcmp(st, "PendingDeletion")) {
        json_decref(k->doc);
        return api_fail(c, KERR_KMS_INVALID_STATE, "%s is pending deletion.", k->arn);
    }
    return 0;
}

/* --auth: the key an alias names now (key id) must let the caller do action (UpdateAlias and
 * DeleteAlias need it on that key too); a key that is gone asks nothing. */
static int current_key_allows(struct api_ctx *c, const char *id, const char *action)
{
    struct kms_key k;
    if (!c->caller)
        return 0;
    if (kms_find_for(c, id, false, action, &k) == 0) {
        json_decref(k.doc);
        return 0;
    }
    return c->err == KERR_KMS_NOT_FOUND ? 0 : -1; /* a key that is gone: nothing to ask of it */
}

static int write_alias(struct api_ctx *c, const char *name, const char *id, int64_t created, uint64_t version)
{
    json_t *doc = json_pack("{s:s, s:I, s:I}", "target", id, "created_ms", (json_int_t)created, "updated_ms",
                            (json_int_t)c->now_ms);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (!text)
        return api_fail(c, KERR_KMS_INTERNAL, NULL);
    struct store_row r = {
        .key = kms_alias_row(c, name), .version = version, .val = text, .len = strlen(text)};
    int rc = store_meta_cas(c->api->store, &r, 1);
    free(text);
    if (rc == STORE_CONFLICT && version == 0)
        return api_fail(c, KERR_KMS_ALREADY_EXISTS, "An alias with the name %s already exists",
                        alias_arn(c, name));
    if (rc)
        return api_store_fail(c, rc);
    enc_obj_begin(&c->out);
    enc_obj_end(&c->out);
    return 0;
}

static const struct vfield create_schema[] = {F_ALIAS, F_TARGET, {0}};

static int create_alias(struct api_ctx *c)
{
    const char *name = req_str(c, "AliasName");
    struct kms_key k;
    if (check_name(c, name) || kms_authorize_alias(c, "kms:CreateAlias", alias_arn(c, name)) ||
        target(c, "kms:CreateAlias", &k))
        return -1;
    int rc = write_alias(c, name, k.id, c->now_ms, 0);
    json_decref(k.doc);
    return rc;
}

const struct op_def op_kms_create_alias = {.schema = create_schema, .run = create_alias};

/* An alias row: its target and creation date, and the row's version. */
static int load_alias(struct api_ctx *c, const char *name, char *id, int64_t *created, uint64_t *version)
{
    char *v;
    size_t len;
    int rc = store_meta_get(c->api->store, kms_alias_row(c, name), &v, &len, version);
    if (rc == STORE_NOT_FOUND)
        return api_fail(c, KERR_KMS_NOT_FOUND, "Alias %s is not found.", alias_arn(c, name));
    if (rc)
        return api_store_fail(c, rc);
    json_t *doc = json_loadb(v, len, 0, NULL);
    free(v);
    snprintf(id, KMS_ID_LEN + 1, "%s", json_string_value(json_object_get(doc, "target")) ?: "");
    *created = json_integer_value(json_object_get(doc, "created_ms"));
    json_decref(doc);
    return 0;
}

static int update_alias(struct api_ctx *c)
{
    const char *name = req_str(c, "AliasName");
    char old[KMS_ID_LEN + 1];
    int64_t created;
    uint64_t version;
    struct kms_key k;
    if (check_name(c, name) || load_alias(c, name, old, &created, &version) ||
        kms_authorize_alias(c, "kms:UpdateAlias", alias_arn(c, name)) ||
        current_key_allows(c, old, "kms:UpdateAlias") || target(c, "kms:UpdateAlias", &k))
        return -1;
    int rc = write_alias(c, name, k.id, created, version);
    json_decref(k.doc);
    return rc;
}

const struct op_def op_kms_update_alias = {.schema = create_schema, .run = update_alias};

static const struct vfield delete_schema[] = {F_ALIAS, {0}};

static int delete_alias(struct api_ctx *c)
{
    const char *name = req_str(c, "AliasName");
    char id[KMS_ID_LEN + 1];
    int64_t created;
    uint64_t version;
    if (check_name(c, name) || load_alias(c, name, id, &created, &version) ||
        kms_authorize_alias(c, "kms:DeleteAlias", alias_arn(c, name)) ||
        current_key_allows(c, id, "kms:DeleteAlias"))
        return -1;
    struct store_row r = {.key = kms_alias_row(c, name), .version = version};
    int rc = store_meta_cas(c->api->store, &r, 1);
    if (rc)
        return api_store_fail(c, rc);
    enc_obj_begin(&c->out);
    enc_obj_end(&c->out);
    return 0;
}

const struct op_def op_kms_delete_alias = {.schema = delete_schema, .run = delete_alias};

static const struct vfield list_schema[] = {
    {"KeyId", VT_STRING, {LEN_GE(1), LEN_LE(2048)}, 0, 0, 0},
    {"Limit", VT_INTEGER, {GE(1), LE(100)}, 0, 0, 0},
    {"Marker", VT_STRING, {LEN_GE(1), LEN_LE(1024)}, 0, 0, 0},
    {0},
};

struct alias_list {
    struct api_ctx *c;
    const char *key_id, *after, *prefix;
    size_t n, cap;
    struct {
        const char *name, *target;
        int64_t created, updated;
    } * v;
};

static int collect(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct alias_list *l = ctx;
    size_t skip = strlen(l->prefix);
    const char *name = arena_strndup(&l->c->arena, key + skip, klen - skip);
    if (l->after && strcmp(name, l->after) <= 0)
        return 0;
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    const char *t = json_string_value(json_object_get(doc, "target"));
    if (t && (!l->key_id || !strcmp(t, l->key_id))) {
        if (l->n == l->cap) {
            json_decref(doc);
            return 1;
        }
        l->v[l->n].name = name;
        l->v[l->n].target = arena_strndup(&l->c->arena, t, strlen(t));
        l->v[l->n].created = json_integer_value(json_object_get(doc, "created_ms"));
        l->v[l->n].updated = json_integer_value(json_object_get(doc, "updated_ms"));
        l->n++;
    }
    json_decref(doc);
    return 0;
}

static int list_aliases(struct api_ctx *c)
{
    int64_t limit = 50;
    req_int(c, "Limit", &limit);
    struct alias_list l = {
        .c = c, .after = req_str(c, "Marker"), .prefix = kms_alias_prefix(c), .cap = (size_t)limit + 1};
    const char *key_id = req_str(c, "KeyId");
    if (key_id) {
        struct kms_key k;
        if (kms_find(c, key_id, false, &k))
            return -1;
        l.key_id = arena_strndup(&c->arena, k.id, KMS_ID_LEN);
        json_decref(k.doc);
    }
    l.v = arena_alloc(&c->arena, l.cap * sizeof *l.v);
    int rc = kms_sweep(c); /* the aliases of keys whose deletion date has passed go with them */
    if (rc == 0)
        rc = store_meta_scan(c->api->store, l.prefix, collect, &l);
    if (rc)
        return api_store_fail(c, rc);
    bool more = l.n > (size_t)limit;
    size_t n = more ? (size_t)limit : l.n;
    struct enc *e = &c->out;
    enc_obj_begin(e);
    enc_key(e, "Aliases");
    enc_arr_begin(e);
    for (size_t i = 0; i < n; i++) {
        enc_obj_begin(e);
        enc_key(e, "AliasName"), enc_strz(e, l.v[i].name);
        enc_key(e, "AliasArn"), enc_strz(e, alias_arn(c, l.v[i].name));
        enc_key(e, "TargetKeyId"), enc_strz(e, l.v[i].target);
        enc_key(e, "CreationDate"), kms_enc_time(e, l.v[i].created);
        enc_key(e, "LastUpdatedDate"), kms_enc_time(e, l.v[i].updated);
        enc_obj_end(e);
    }
    enc_arr_end(e);
    if (more) {
        enc_key(e, "NextMarker"), enc_strz(e, l.v[n - 1].name);
    }
    enc_key(e, "Truncated"), enc_bool(e, more);
    enc_obj_end(e);
    return 0;
}

const struct op_def op_kms_list_aliases = {.schema = list_schema, .run = list_aliases};
