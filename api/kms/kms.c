/* kms.c: the built-in KMS's key store and ciphertext blobs (see kms.h).
 *
 * Every operation reads what it needs from the store (a key is one row) and writes back with a
 * compare-and-set, so a restart or a kill -9 loses nothing acknowledged. Key material is
 * unwrapped into sodium_malloc'd memory for one operation and wiped at once.
 *
 * The data plane's parsed documents. Every write to a KMS stream and every read of its
 * records checks its key's state and, under --auth, the key policy; parsing the key row and
 * the policy with jansson on every call was most of the CPU of a KMS stream's PutRecord. So
 * the data plane keeps them parsed, content-addressed: a key row by its exact bytes (still
 * read from the store on every call, so a change made through any front-end applies to the
 * next call), a policy by its text. No stale entry can be returned, whatever changes rows.
 * Entries are shared read-only: a document by jansson's atomic reference count, a policy by
 * the entry's own count. Both caches are direct-mapped, with a slot per key or policy in use
 * (DOC_SLOTS, POLICY_SLOTS); a collision only costs a parse. */
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../auth.h"
#include "../policy.h"
#include "datakeys.h"
#include "kms.h"
#include "klog.h"

const char *kms_key_arn(struct api_ctx *c, const char *id)
{
    return arena_printf(&c->arena, "arn:aws:kms:%s:%s:key/%s", c->region, api_account(c), id);
}

/* The account and region that own a key document (rows from before keys were per account:
 * the server's own). */
static void doc_owner(struct api_ctx *c, const json_t *doc, const char **account, const char **region)
{
    const char *a = json_string_value(json_object_get(doc, "account"));
    const char *r = json_string_value(json_object_get(doc, "region"));
    *account = arena_strndup(&c->arena, a ? a : c->api->account, strlen(a ? a : c->api->account));
    *region = arena_strndup(&c->arena, r ? r : c->api->region, strlen(r ? r : c->api->region));
}

/* The rows of the aliases of (account, region) start with this: the server's own account and
 * region keep the first form, "kms/alias/<name>"; others "kms/xalias/<account>/<region>/". */
static const char *alias_prefix(struct api_ctx *c, const char *account, const char *region)
{
    if (!strcmp(account, c->api->account) && !strcmp(region, c->api->region))
        return "kms/alias/";
    return arena_printf(&c->arena, "kms/xalias/%s/%s/", account, region);
}

const char *kms_alias_prefix(struct api_ctx *c) { return alias_prefix(c, api_account(c), c->region); }

const char *kms_key_row(struct api_ctx *c, const char *id)
{
    return arena_printf(&c->arena, "kms/key/%s", id);
}

const char *kms_alias_row(struct api_ctx *c, const char *alias)
{
    return arena_printf(&c->arena, "%s%s", kms_alias_prefix(c), alias);
}

void kms_enc_time(struct enc *e, int64_t ms) { enc_time_ms(e, ms); }

static bool is_uuid(const char *s)
{
    if (strlen(s) != KMS_ID_LEN)
        return false;
    for (int i = 0; i < KMS_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    }
    return true;
}

static int load_row(struct api_ctx *c, const char *row, json_t **doc, uint64_t *version)
{
    char *v;
    size_t len;
    int rc = store_meta_get(c->api->store, row, &v, &len, version);
    if (rc)
        return rc;
    *doc = json_loadb(v, len, 0, NULL);
    free(v);
    return *doc ? 0 : STORE_CORRUPT;
}

/* ---- parsed documents of the data plane (see the header) ---- */

#define KEY_POLICY_FLAGS (POLICY_PARSE_RESOURCE | POLICY_PARSE_SERVICE_PRINCIPALS)
#define DOC_SLOTS 64
#define POLICY_SLOTS 64

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static struct doc_slot {
    char *row, *bytes; /* malloc'd: the row's key and value */
    size_t len;
    json_t *doc; /* one reference, the cache's */
} doc_slots[DOC_SLOTS];
static pthread_mutex_t doc_mu = PTHREAD_MUTEX_INITIALIZER;

/* load_row for read-only callers: the document parsed from these bytes before, if any. The
 * caller owns one reference to *doc, as from load_row, and must not change it. */
static int load_row_shared(struct api_ctx *c, const char *row, json_t **doc, uint64_t *version)
{
    char *v;
    size_t len;
    int rc = store_meta_get(c->api->store, row, &v, &len, version);
    if (rc)
        return rc;
    struct doc_slot *sl = &doc_slots[fnv1a(row, strlen(row)) % DOC_SLOTS];
    pthread_mutex_lock(&doc_mu);
    bool hit = sl->doc && sl->len == len && !strcmp(sl->row, row) && !memcmp(sl->bytes, v, len);
    if (hit)
        *doc = json_incref(sl->doc);
    pthread_mutex_unlock(&doc_mu);
    if (hit) {
        free(v);
        return 0;
    }
    *doc = json_loadb(v, len, 0, NULL);
    char *r = *doc ? strdup(row) : NULL;
    if (!r) {
        free(v);
        return *doc ? 0 : STORE_CORRUPT;
    }
    pthread_mutex_lock(&doc_mu);
    struct doc_slot old = *sl;
    *sl = (struct doc_slot){r, v, len, json_incref(*doc)};
    pthread_mutex_unlock(&doc_mu);
    free(old.row);
    free(old.bytes);
    json_decref(old.doc);
    return 0;
}

struct parsed_policy {
    size_t refs;      /* under policy_mu: the slot's and each caller's */
    struct policy *p; /* NULL: the text does not parse */
    size_t len;
    char text[];
};
static struct parsed_policy *policy_slots[POLICY_SLOTS];
static pthread_mutex_t policy_mu = PTHREAD_MUTEX_INITIALIZER;

static void policy_put(struct parsed_policy *e)
{
    pthread_mutex_lock(&policy_mu);
    bool last = !--e->refs;
    pthread_mutex_unlock(&policy_mu);
    if (last) {
        policy_free(e->p);
        free(e);
    }
}

/* The key policy text parsed, shared: give it back with policy_put. NULL only without memory. */
static struct parsed_policy *policy_get(const char *text, const char *key_arn)
{
    size_t len = strlen(text);
    struct parsed_policy **sl = &policy_slots[fnv1a(text, len) % POLICY_SLOTS], *e = NULL;
    pthread_mutex_lock(&policy_mu);
    if (*sl && (*sl)->len == len && !memcmp((*sl)->text, text, len))
        e = *sl, e->refs++;
    pthread_mutex_unlock(&policy_mu);
    if (e)
        return e;
    if (!(e = malloc(sizeof *e + len + 1)))
        return NULL;
    char why[256];
    e->p = policy_parse_opts(text, len, KEY_POLICY_FLAGS, why, sizeof why);
    if (!e->p)
        klog(KLOG_WARN, "kms: the key policy of %s does not parse (%s): it allows nothing", key_arn, why);
    e->len = len;
    memcpy(e->text, text, len + 1);
    e->refs = 2;
    pthread_mutex_lock(&policy_mu);
    struct parsed_policy *old = *sl;
    *sl = e;
    pthread_mutex_unlock(&policy_mu);
    if (old)
        policy_put(old);
    return e;
}

static int internal(struct api_ctx *c, int rc)
{
    klog(KLOG_ERROR, "kms: storage: %s", store_strerror(rc));
    return api_fail(c, KERR_KMS_INTERNAL, NULL);
}

#define MAX_KEY_ALIASES 1024 /* aliases removed with their key in one commit (AWS allows 50) */

struct alias_rows {
    struct api_ctx *c;
    const char *id;
    struct store_row *rows;
    size_t n;
};

static int alias_visit(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                       uint64_t version)
{
    struct alias_rows *l = ctx;
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    const char *t = json_string_value(json_object_get(doc, "target"));
    if (t && !strcmp(t, l->id))
        l->rows[l->n++] =
            (struct store_row){.key = arena_strndup(&l->c->arena, key, klen), .version = version};
    json_decref(doc);
    return l->n == MAX_KEY_ALIASES;
}

/* Delete key id (its row at version) with every alias naming it, in one commit, as AWS removes
 * a key's aliases when it deletes the key; then wipe the data keys it wrapped. */
static int delete_key(struct api_ctx *c, const char *id, const json_t *doc, uint64_t version)
{
    struct alias_rows l = {.c = c, .id = id};
    l.rows = arena_alloc(&c->arena, (MAX_KEY_ALIASES + 1) * sizeof *l.rows);
    l.rows[l.n++] = (struct store_row){.key = kms_key_row(c, id), .version = version};
    const char *account, *region;
    doc_owner(c, doc, &account, &region);
    int rc = store_meta_scan(c->api->store, alias_prefix(c, account, region), alias_visit, &l);
    if (rc == 0)
        rc = store_meta_cas(c->api->store, l.rows, l.n);
    if (rc == 0 && c->api->dk)
        datakeys_kms_gone(c->api->dk, id);
    return rc;
}

static int add_material(struct api_ctx *c, json_t *doc, const char *id, const unsigned char *given);

#define DAY_MS (24 * 3600 * 1000LL)
#define MAX_CATCH_UP 100 /* automatic rotations made at once after a long pause */

/* When the next automatic rotation of doc is due (INT64_MAX: never): a period after rotation
 * was enabled or last rotated automatically. Only an Enabled key rotates (as AWS: a disabled
 * one rotates once enabled again, if its date has passed). */
static int64_t rotation_due(const json_t *doc)
{
    const char *state = json_string_value(json_object_get(doc, "state"));
    if (!json_is_true(json_object_get(doc, "rotation")) || (state && strcmp(state, "Enabled")))
        return INT64_MAX;
    const json_t *base = json_object_get(doc, "rotation_base_ms");
    return json_integer_value(base ? base : json_object_get(doc, "created_ms")) +
           json_integer_value(json_object_get(doc, "rotation_days")) * DAY_MS;
}

int64_t kms_next_rotation(const struct kms_key *k) { return rotation_due(k->doc); }

void kms_note_rotation(json_t *doc, int64_t ms, const char *type)
{
    json_t *r = json_object_get(doc, "rotations");
    if (!json_is_array(r)) {
        r = json_array();
        json_object_set_new(doc, "rotations", r);
    }
    json_array_append_new(r, json_pack("{s:I, s:s}", "ms", (json_int_t)ms, "type", type));
}

/* Make the automatic rotations of k that are due, on a copy written back with a compare-and-set
 * (a conflict leaves k as it was: the next load rotates). Old material versions stay, so every
 * earlier ciphertext still decrypts. */
static void rotate_due(struct api_ctx *c, struct kms_key *k)
{
    int64_t due = rotation_due(k->doc);
    if (due > c->now_ms || !c->api->dk)
        return;
    json_t *doc = json_deep_copy(k->doc);
    int64_t days = json_integer_value(json_object_get(doc, "rotation_days"));
    for (int i = 0; doc && due <= c->now_ms && i < MAX_CATCH_UP; i++, due += days * DAY_MS) {
        if (add_material(c, doc, k->id, NULL)) {
            json_decref(doc);
            return;
        }
        kms_note_rotation(doc, due, "AUTOMATIC");
        json_object_set_new(doc, "rotation_base_ms", json_integer(due));
    }
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct store_row r = {
        .key = kms_key_row(c, k->id), .version = k->version, .val = text, .len = text ? strlen(text) : 0};
    if (text && store_meta_cas(c->api->store, &r, 1) == 0) {
        json_decref(k->doc);
        k->doc = doc;
        k->version = r.version;
        doc = NULL;
    }
    free(text);
    json_decref(doc);
}

/* Whether key doc's deletion date has passed at now. */
static bool deletion_due(const json_t *doc, int64_t now)
{
    const char *state = json_string_value(json_object_get(doc, "state"));
    json_int_t del = json_integer_value(json_object_get(doc, "deletion_ms"));
    return state && !strcmp(state, "PendingDeletion") && del && now >= del;
}

/* Load key id, read-only (the data plane's): a key past its deletion date is not found at once,
 * though its row is deleted only by kms_maintain or a KMS operation (settle). settle (the KMS's
 * own operations and the control plane, never a Kinesis data-plane call): make what is due for
 * this key first, its deletion or its automatic rotations (a commit). */
static int load_key(struct api_ctx *c, const char *id, bool settle, struct kms_key *k)
{
    const char *row = kms_key_row(c, id);
    /* without settling, nothing changes the document: the data plane's shared one serves */
    int rc = (settle ? load_row : load_row_shared)(c, row, &k->doc, &k->version);
    if (rc)
        return rc;
    if (deletion_due(k->doc, c->now_ms)) {
        rc = settle ? delete_key(c, id, k->doc, k->version) : 0;
        json_decref(k->doc);
        k->doc = NULL;
        return rc && rc != STORE_CONFLICT ? rc : STORE_NOT_FOUND;
    }
    snprintf(k->id, sizeof k->id, "%s", id);
    doc_owner(c, k->doc, &k->account, &k->region);
    k->arn = arena_printf(&c->arena, "arn:aws:kms:%s:%s:key/%s", k->region, k->account, k->id);
    if (settle)
        rotate_due(c, k);
    return 0;
}

struct due_list {
    struct api_ctx *c;
    const char **ids;
    size_t n, cap;
};

static int due_visit(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct due_list *l = ctx;
    json_t *doc = json_loadb(val, vlen, 0, NULL);
    bool due = doc && (deletion_due(doc, l->c->now_ms) || rotation_due(doc) <= l->c->now_ms);
    json_decref(doc);
    if (due && klen == 8 + KMS_ID_LEN) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 16;
            const char **v = arena_alloc(&l->c->arena, cap * sizeof *v);
            if (l->n)
                memcpy(v, l->ids, l->n * sizeof *v);
            l->ids = v, l->cap = cap;
        }
        l->ids[l->n++] = arena_strndup(&l->c->arena, key + 8, KMS_ID_LEN);
    }
    return 0;
}

int kms_sweep(struct api_ctx *c)
{
    struct due_list l = {.c = c};
    int rc = store_meta_scan(c->api->store, "kms/key/", due_visit, &l);
    for (size_t i = 0; rc == 0 && i < l.n; i++) { /* settling deletes or rotates it */
        struct kms_key k = {0};
        int lrc = load_key(c, l.ids[i], true, &k);
        json_decref(k.doc);
        if (lrc && lrc != STORE_NOT_FOUND)
            rc = lrc;
    }
    return rc;
}

void kms_maintain(struct api *a, int64_t now)
{
    if (!a->dk)
        return;
    struct api_ctx c = {.api = a, .region = a->region, .now_ms = now};
    arena_init(&c.arena);
    int rc = kms_sweep(&c);
    if (rc)
        klog(KLOG_WARN, "kms: key deletions and rotations: storage: %s (retried)", store_strerror(rc));
    arena_free(&c.arena);
}

/* Resolve key_id as kms_find does. A key id or alias name names a key of the caller's account
 * and region; an ARN names its account (any: another account's key is usable as far as its key
 * policy lets the caller) and must name the request's region. any_owner: key_id is a key id
 * taken from a ciphertext or a stream, whatever account owns it. */
static int resolve(struct api_ctx *c, const char *key_id, bool allow_alias, bool settle, bool any_owner,
                   struct kms_key *k)
{
    *k = (struct kms_key){0};
    const char *account = api_account(c), *rest = key_id;
    bool arn = !strncmp(key_id, "arn:", 4);
    if (arn) {
        size_t rl = strlen(c->region);
        bool ok = !strncmp(key_id, "arn:aws:kms:", 12) && !strncmp(key_id + 12, c->region, rl) &&
                  key_id[12 + rl] == ':';
        const char *acct = ok ? key_id + 12 + rl + 1 : key_id;
        ok = ok && strlen(acct) > 13 && acct[12] == ':';
        for (int i = 0; ok && i < 12; i++)
            ok = acct[i] >= '0' && acct[i] <= '9';
        if (!ok)
            return api_fail(c, KERR_KMS_NOT_FOUND, "Invalid arn %s", key_id);
        account = arena_strndup(&c->arena, acct, 12);
        rest = acct + 13;
    }
    const char *prefix = arena_printf(&c->arena, "arn:aws:kms:%s:%s:", c->region, account);
    const char *id = NULL;
    if (!strncmp(rest, "alias/", 6) && (allow_alias || !arn)) {
        if (!allow_alias)
            return api_fail(c, KERR_KMS_NOT_FOUND, "Invalid keyId '%s'", key_id);
        json_t *a;
        uint64_t v;
        const char *row = arena_printf(&c->arena, "%s%s", alias_prefix(c, account, c->region), rest);
        int rc = load_row(c, row, &a, &v);
        if (rc == STORE_NOT_FOUND)
            return api_fail(c, KERR_KMS_NOT_FOUND, "Alias %s%s is not found.", prefix, rest);
        if (rc)
            return internal(c, rc);
        id = arena_strndup(&c->arena, json_string_value(json_object_get(a, "target")) ?: "", KMS_ID_LEN);
        json_decref(a);
    } else if (arn ? !strncmp(rest, "key/", 4) && is_uuid(rest + 4) : is_uuid(rest)) {
        id = arn ? rest + 4 : rest;
    } else {
        return api_fail(c, KERR_KMS_NOT_FOUND, "Invalid keyId '%s'", key_id);
    }
    char lower[KMS_ID_LEN + 1];
    for (int i = 0; i <= KMS_ID_LEN; i++)
        lower[i] = (char)(id[i] >= 'A' && id[i] <= 'F' ? id[i] - 'A' + 'a' : id[i]);
    int rc = load_key(c, lower, settle, k);
    if (rc == 0 && !any_owner && (strcmp(k->account, account) || strcmp(k->region, c->region))) {
        json_decref(k->doc); /* another account's or region's key, named as if it were this one's */
        *k = (struct kms_key){0};
        rc = STORE_NOT_FOUND;
    }
    if (rc == STORE_NOT_FOUND)
        return api_fail(c, KERR_KMS_NOT_FOUND, "Key '%skey/%s' does not exist", prefix, lower);
    return rc ? internal(c, rc) : 0;
}

int kms_find(struct api_ctx *c, const char *key_id, bool allow_alias, struct kms_key *k)
{
    return resolve(c, key_id, allow_alias, true, false, k);
}

int kms_find_id(struct api_ctx *c, const char *id, struct kms_key *k)
{
    return resolve(c, id, false, true, true, k);
}

int kms_find_for(struct api_ctx *c, const char *key_id, bool allow_alias, const char *action,
                 struct kms_key *k)
{
    if (resolve(c, key_id, allow_alias, true, false, k))
        return -1;
    if (kms_authorize(c, k, action, KERR_ACCESS_DENIED, false) == 0)
        return 0;
    json_decref(k->doc);
    k->doc = NULL;
    return -1;
}

int kms_usable(struct api_ctx *c, const struct kms_key *k)
{
    const char *state = json_string_value(json_object_get(k->doc, "state"));
    if (state && !strcmp(state, "Disabled"))
        return api_fail(c, KERR_KMS_DISABLED, "%s is disabled.", k->arn);
    if (state && !strcmp(state, "PendingDeletion"))
        return api_fail(c, KERR_KMS_INVALID_STATE, "%s is pending deletion.", k->arn);
    return 0;
}

int kms_save(struct api_ctx *c, struct kms_key *k)
{
    char *text = json_dumps(k->doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return api_fail(c, KERR_KMS_INTERNAL, NULL);
    struct store_row r = {
        .key = kms_key_row(c, k->id), .version = k->version, .val = text, .len = strlen(text)};
    int rc = store_meta_cas(c->api->store, &r, 1);
    free(text);
    if (rc)
        return internal(c, rc);
    k->version = r.version;
    return 0;
}

static const char *str_of(const struct kms_key *k, const char *name)
{
    return json_string_value(json_object_get(k->doc, name));
}

void kms_enc_metadata(struct api_ctx *c, const struct kms_key *k)
{
    struct enc *e = &c->out;
    const char *state = str_of(k, "state");
    enc_key(e, "AWSAccountId"), enc_strz(e, k->account);
    enc_key(e, "KeyId"), enc_strz(e, k->id);
    enc_key(e, "Arn"), enc_strz(e, k->arn);
    enc_key(e, "CreationDate"), kms_enc_time(e, json_integer_value(json_object_get(k->doc, "created_ms")));
    enc_key(e, "Enabled"), enc_bool(e, state && !strcmp(state, "Enabled"));
    enc_key(e, "Description"), enc_strz(e, str_of(k, "description") ?: "");
    enc_key(e, "KeyUsage"), enc_strz(e, "ENCRYPT_DECRYPT");
    enc_key(e, "KeyState"), enc_strz(e, state ?: "Enabled");
    if (state && !strcmp(state, "PendingDeletion")) {
        enc_key(e, "DeletionDate"),
            kms_enc_time(e, json_integer_value(json_object_get(k->doc, "deletion_ms")));
        enc_key(e, "PendingDeletionWindowInDays");
        enc_int(e, json_integer_value(json_object_get(k->doc, "pending_days")));
    }
    enc_key(e, "Origin"), enc_strz(e, "AWS_KMS");
    enc_key(e, "KeyManager"), enc_strz(e, str_of(k, "manager") ?: "CUSTOMER");
    enc_key(e, "CustomerMasterKeySpec"), enc_strz(e, "SYMMETRIC_DEFAULT");
    enc_key(e, "KeySpec"), enc_strz(e, "SYMMETRIC_DEFAULT");
    enc_key(e, "EncryptionAlgorithms");
    enc_arr_begin(e);
    enc_strz(e, "SYMMETRIC_DEFAULT");
    enc_arr_end(e);
    enc_key(e, "MultiRegion"), enc_bool(e, false);
}

/* ---- material ---- */

static void material_ad(char ad[64], const char *id, json_int_t version)
{
    snprintf(ad, 64, "kms:%s:%" JSON_INTEGER_FORMAT, id, version);
}

/* Unwrap version `version` (0: the newest) of the material list of key id with root into out
 * (32 bytes); *used gets the version. Returns 0 or -1. */
static int unwrap_material(json_t *versions, const char *id, json_int_t version, const unsigned char *root,
                           unsigned char *out, json_int_t *used)
{
    if (!version)
        version = (json_int_t)json_array_size(versions);
    const char *b64 = version > 0 ? json_string_value(json_array_get(versions, (size_t)(version - 1))) : NULL;
    unsigned char wrapped[72];
    size_t n;
    if (!b64 ||
        sodium_base642bin(wrapped, sizeof wrapped, b64, strlen(b64), NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) ||
        n != sizeof wrapped)
        return -1;
    char ad[64];
    material_ad(ad, id, version);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, wrapped + 24, 48, (unsigned char *)ad,
                                                   strlen(ad), wrapped, root))
        return -1;
    *used = version;
    return 0;
}

static int material(struct api_ctx *c, const struct kms_key *k, json_int_t version, unsigned char *out,
                    json_int_t *used)
{
    if (!c->api->dk)
        return -1;
    return unwrap_material(json_object_get(k->doc, "material"), k->id, version, datakeys_root_key(c->api->dk),
                           out, used);
}

int kms_material_raw(struct store *s, const unsigned char *root, const char *id, uint32_t version,
                     unsigned char out[32], uint32_t *used)
{
    char row[64];
    snprintf(row, sizeof row, "kms/key/%s", id);
    char *v;
    size_t len;
    if (store_meta_get(s, row, &v, &len, NULL))
        return -1;
    json_t *doc = json_loadb(v, len, 0, NULL);
    free(v);
    json_int_t u = 0;
    int rc = doc ? unwrap_material(json_object_get(doc, "material"), id, version, root, out, &u) : -1;
    json_decref(doc);
    *used = (uint32_t)u;
    return rc;
}

/* Root-key rotation: the rows of every key, collected by a scan (which must not call the store). */
struct rewrap {
    struct store_row *rows;
    char **keys, **vals;
    size_t n, cap;
    int rc;
};

static int collect_key_row(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                           uint64_t version)
{
    struct rewrap *w = ctx;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        struct store_row *r = realloc(w->rows, cap * sizeof *r);
        char **k = realloc(w->keys, cap * sizeof *k), **v = realloc(w->vals, cap * sizeof *v);
        if (r)
            w->rows = r;
        if (k)
            w->keys = k;
        if (v)
            w->vals = v;
        if (!r || !k || !v)
            return w->rc = -1;
        w->cap = cap;
    }
    w->keys[w->n] = strndup(key, klen);
    w->vals[w->n] = strndup(val, vlen);
    if (!w->keys[w->n] || !w->vals[w->n]) {
        free(w->keys[w->n]);
        free(w->vals[w->n]);
        return w->rc = -1;
    }
    w->rows[w->n] = (struct store_row){.key = w->keys[w->n], .version = version};
    w->n++;
    return 0;
}

/* Re-wrap each material version of doc (key id) under new_root; *n counts them. */
static int rewrap_doc(json_t *doc, const char *id, const unsigned char *old_root,
                      const unsigned char *new_root, size_t *n)
{
    json_t *versions = json_object_get(doc, "material");
    unsigned char *m = sodium_malloc(32);
    int rc = m ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < json_array_size(versions); i++) {
        json_int_t used;
        if (unwrap_material(versions, id, (json_int_t)i + 1, new_root, m, &used) == 0)
            continue; /* already under the new key: an interrupted rotation run again */
        if (unwrap_material(versions, id, (json_int_t)i + 1, old_root, m, &used)) {
            klog(KLOG_ERROR, "material version %zu of KMS key %s opens under neither root key", i + 1, id);
            rc = -2;
            break;
        }
        unsigned char wrapped[72];
        char ad[64], b64[sodium_base64_ENCODED_LEN(72, sodium_base64_VARIANT_ORIGINAL)];
        material_ad(ad, id, (json_int_t)i + 1);
        randombytes_buf(wrapped, 24);
        crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + 24, NULL, m, 32, (unsigned char *)ad, strlen(ad),
                                                   NULL, wrapped, new_root);
        sodium_bin2base64(b64, sizeof b64, wrapped, sizeof wrapped, sodium_base64_VARIANT_ORIGINAL);
        json_array_set_new(versions, i, json_string(b64));
        (*n)++;
    }
    sodium_free(m);
    return rc;
}

int kms_rewrap_all(struct store *s, const unsigned char *old_root, const unsigned char *new_root, size_t *n)
{
    struct rewrap w = {0};
    *n = 0;
    int rc = store_meta_scan(s, "kms/key/", collect_key_row, &w) ? -1 : w.rc;
    for (size_t i = 0; rc == 0 && i < w.n; i++) {
        json_t *doc = json_loads(w.vals[i], 0, NULL);
        rc = doc ? rewrap_doc(doc, w.keys[i] + strlen("kms/key/"), old_root, new_root, n) : -1;
        char *text = rc == 0 ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(doc);
        if (rc == 0 && !text)
            rc = -1;
        free(w.vals[i]);
        w.vals[i] = text;
        w.rows[i].val = text;
        w.rows[i].len = text ? strlen(text) : 0;
    }
    if (rc == 0 && w.n && store_meta_cas(s, w.rows, w.n)) /* every key at once, or none */
        rc = -1;
    for (size_t i = 0; i < w.n; i++) {
        free(w.keys[i]);
        if (w.vals[i])
            sodium_memzero(w.vals[i], strlen(w.vals[i]));
        free(w.vals[i]);
    }
    free(w.rows);
    free(w.keys);
    free(w.vals);
    return rc;
}

/* Append a new material version to doc (random, or the given 32 bytes). */
static int add_material(struct api_ctx *c, json_t *doc, const char *id, const unsigned char *given)
{
    if (!c->api->dk)
        return -1;
    json_t *versions = json_object_get(doc, "material");
    if (!versions) {
        versions = json_array();
        json_object_set_new(doc, "material", versions);
    }
    unsigned char *m = sodium_malloc(32);
    if (!m)
        return -1;
    if (given)
        memcpy(m, given, 32);
    else
        randombytes_buf(m, 32);
    unsigned char wrapped[72];
    char ad[64], b64[sodium_base64_ENCODED_LEN(72, sodium_base64_VARIANT_ORIGINAL)];
    material_ad(ad, id, (json_int_t)json_array_size(versions) + 1);
    randombytes_buf(wrapped, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + 24, NULL, m, 32, (unsigned char *)ad, strlen(ad),
                                               NULL, wrapped, datakeys_root_key(c->api->dk));
    sodium_free(m);
    sodium_bin2base64(b64, sizeof b64, wrapped, sizeof wrapped, sodium_base64_VARIANT_ORIGINAL);
    json_array_append_new(versions, json_string(b64));
    return 0;
}

/* ---- blobs ---- */

static int cmp_kv(const void *a, const void *b)
{
    const struct kv *x = *(const struct kv *const *)a, *y = *(const struct kv *const *)b;
    return strcmp(x->key, y->key);
}

static void put32(struct buf *b, size_t n)
{
    unsigned char v[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                          (unsigned char)n};
    buf_add(b, v, 4);
}

/* header . canonical context, in b. */
static void blob_ad(struct api_ctx *c, struct buf *b, const unsigned char *hdr, const struct kv *ctx)
{
    buf_add(b, hdr, KMS_BLOB_HDR);
    if (!ctx || ctx->type != KV_OBJ || !ctx->n)
        return;
    const struct kv **v = arena_alloc(&c->arena, ctx->n * sizeof *v);
    size_t n = 0;
    for (const struct kv *m = ctx->child; m; m = m->next)
        v[n++] = m;
    qsort(v, n, sizeof *v, cmp_kv);
    for (size_t i = 0; i < n; i++) {
        put32(b, strlen(v[i]->key));
        buf_add(b, v[i]->key, strlen(v[i]->key));
        put32(b, v[i]->len);
        buf_add(b, v[i]->s, v[i]->len);
    }
}

int kms_seal(struct api_ctx *c, const struct kms_key *k, const struct kv *ctx, const void *pt, size_t len,
             unsigned char **blob, size_t *blob_len)
{
    unsigned char *m = sodium_malloc(32);
    json_int_t ver;
    if (!m || material(c, k, 0, m, &ver)) {
        sodium_free(m);
        return api_fail(c, KERR_KMS_INTERNAL, NULL);
    }
    unsigned char *o = arena_alloc(&c->arena, KMS_BLOB_OVERHEAD + len);
    o[0] = 'K';
    o[1] = 1;
    memcpy(o + 2, k->id, KMS_ID_LEN);
    o[38] = (unsigned char)(ver >> 24), o[39] = (unsigned char)(ver >> 16), o[40] = (unsigned char)(ver >> 8);
    o[41] = (unsigned char)ver;
    randombytes_buf(o + 42, 24);
    struct buf ad = BUF_INIT;
    blob_ad(c, &ad, o, ctx);
    crypto_aead_xchacha20poly1305_ietf_encrypt(o + KMS_BLOB_HDR, NULL, pt, len, (unsigned char *)ad.p, ad.len,
                                               NULL, o + 42, m);
    buf_free(&ad);
    sodium_free(m);
    *blob = o;
    *blob_len = KMS_BLOB_OVERHEAD + len;
    return 0;
}

int kms_blob_key(const unsigned char *blob, size_t len, char id[KMS_ID_LEN + 1])
{
    if (len < KMS_BLOB_OVERHEAD || blob[0] != 'K' || blob[1] != 1)
        return -1;
    memcpy(id, blob + 2, KMS_ID_LEN);
    id[KMS_ID_LEN] = 0;
    return is_uuid(id) ? 0 : -1;
}

int kms_unseal(struct api_ctx *c, const struct kms_key *k, const struct kv *ctx, const unsigned char *blob,
               size_t len, unsigned char **pt, size_t *pt_len)
{
    char id[KMS_ID_LEN + 1];
    if (kms_blob_key(blob, len, id) || strcmp(id, k->id))
        return api_fail(c, KERR_KMS_INVALID_CIPHERTEXT, NULL);
    json_int_t ver =
        (json_int_t)blob[38] << 24 | (json_int_t)blob[39] << 16 | (json_int_t)blob[40] << 8 | blob[41];
    json_int_t used;
    unsigned char *m = sodium_malloc(32);
    if (!m)
        return api_fail(c, KERR_KMS_INTERNAL, NULL);
    if (!ver || ver > (json_int_t)json_array_size(json_object_get(k->doc, "material")) ||
        material(c, k, ver, m, &used)) {
        sodium_free(m);
        return api_fail(c, KERR_KMS_INVALID_CIPHERTEXT, NULL);
    }
    size_t n = len - KMS_BLOB_OVERHEAD;
    unsigned char *out = arena_alloc(&c->arena, n ? n : 1);
    struct buf ad = BUF_INIT;
    blob_ad(c, &ad, blob, ctx);
    int rc =
        crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, blob + KMS_BLOB_HDR, len - KMS_BLOB_HDR,
                                                   (unsigned char *)ad.p, ad.len, blob + 42, m);
    buf_free(&ad);
    sodium_free(m);
    if (rc)
        return api_fail(c, KERR_KMS_INVALID_CIPHERTEXT, NULL);
    *pt = out;
    *pt_len = n;
    return 0;
}

const char *kms_default_policy(struct api_ctx *c, const char *account)
{
    return arena_printf(
        &c->arena,
        "{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {\n"
        "    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n"
        "    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::%s:root\"\n    },\n"
        "    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  } ]\n}",
        account);
}

int kms_create(struct api_ctx *c, const char *id, const unsigned char *given, const char *description,
               const char *policy, struct kms_key *k)
{
    if (!c->api->dk)
        return api_fail(c, KERR_KMS_INTERNAL,
                        "The built-in KMS needs encryption at rest (kinesd runs without it).");
    *k = (struct kms_key){0};
    if (id) {
        snprintf(k->id, sizeof k->id, "%s", id);
    } else {
        unsigned char u[16];
        randombytes_buf(u, sizeof u);
        u[6] = (unsigned char)((u[6] & 0x0F) | 0x40);
        u[8] = (unsigned char)((u[8] & 0x3F) | 0x80);
        snprintf(k->id, sizeof k->id, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                 u[14], u[15]);
    }
    k->account = api_account(c);
    k->region = c->region;
    k->arn = kms_key_arn(c, k->id);
    k->doc = json_pack("{s:s, s:I, s:s, s:s, s:b, s:i, s:[], s:s, s:s}", "state", "Enabled", "created_ms",
                       (json_int_t)c->now_ms, "description", description ? description : "", "policy",
                       policy ? policy : kms_default_policy(c, k->account), "rotation", 0, "rotation_days",
                       365, "tags", "account", k->account, "region", k->region);
    if (k->doc)
        json_object_set_new(k->doc, "rotation_base_ms", json_integer(c->now_ms));
    if (!k->doc || add_material(c, k->doc, k->id, given)) {
        json_decref(k->doc);
        k->doc = NULL;
        return api_fail(c, KERR_KMS_INTERNAL, NULL);
    }
    k->version = 0; /* the row must not exist */
    if (kms_save(c, k)) {
        json_decref(k->doc);
        k->doc = NULL;
        return -1;
    }
    return 0;
}

int kms_rotate(struct api_ctx *c, struct kms_key *k)
{
    if (add_material(c, k->doc, k->id, NULL))
        return api_fail(c, KERR_KMS_INTERNAL, NULL);
    kms_note_rotation(k->doc, c->now_ms, "ON_DEMAND");
    return kms_save(c, k);
}

/* ---- Kinesis server-side encryption ---- */

static int stream_key_state(struct api_ctx *c, const struct kms_key *k)
{
    const char *state = json_string_value(json_object_get(k->doc, "state"));
    if (state && !strcmp(state, "Disabled"))
        return api_fail(
            c, KERR_KMS_K_DISABLED,
            "The request was rejected because the specified customer master key (CMK) isn't enabled.");
    if (state && !strcmp(state, "PendingDeletion"))
        return api_fail(
            c, KERR_KMS_INVALID_STATE,
            "The request was rejected because the state of the specified resource isn't valid for "
            "this request.");
    return 0;
}

static int stream_not_found(struct api_ctx *c)
{
    return api_fail(c, KERR_KMS_K_NOT_FOUND,
                    "The request was rejected because the specified entity or resource can't be found.");
}

/* ---- key policies (--auth) ---- */

/* Why key policy text (NULL: the default one) and the caller's identity policy refuse action on
 * the key key_arn, as AWS KMS decides: an explicit Deny in either wins; else the key policy must
 * allow the caller, naming it (its ARN, or "*": enough on its own) or its account (the default
 * policy's "Enable IAM User Permissions": arn:aws:iam::<account>:root, which delegates to that
 * account's identity policies, so one of them must allow it too). A caller of another account
 * needs both in any case. NULL when allowed; *hidden when the refusal comes from the key policy
 * of another account's key (AWS's message then does not confirm the key exists). */
static const char *refusal(struct api_ctx *c, const char *owner, const char *text, const char *key_arn,
                           const char *action, bool via_kinesis, bool *hidden)
{
    const struct auth_cred *who = c->caller;
    bool same = !strcmp(who->account, owner);
    if (!text)
        text = kms_default_policy(c, owner);
    struct parsed_policy *kp = policy_get(text, key_arn);
    struct policy_request pr = caller_request(c, action, key_arn);
    if (via_kinesis)
        pr.via_service = arena_printf(&c->arena, "kinesis.%s.amazonaws.com", c->region);
    enum policy_grant grant;
    enum policy_verdict kv = policy_eval_grant(kp ? kp->p : NULL, &pr, &grant); /* none: allows nothing */
    if (kp)
        policy_put(kp);
    enum policy_verdict iv = who->policy ? policy_eval(who->policy, &pr) : POLICY_ALLOW;
    *hidden = false;
    if (iv == POLICY_DENY)
        return "with an explicit deny in an identity-based policy";
    if (kv == POLICY_DENY) {
        *hidden = !same;
        return "with an explicit deny in a resource-based policy";
    }
    if (kv != POLICY_ALLOW) {
        *hidden = !same;
        return arena_printf(&c->arena, "because no resource-based policy allows the %s action", action);
    }
    if ((!same || grant == POLICY_GRANT_ACCOUNT) && iv != POLICY_ALLOW)
        return arena_printf(&c->arena, "because no identity-based policy allows the %s action", action);
    return NULL;
}

int kms_authorize(struct api_ctx *c, const struct kms_key *k, const char *action, enum kerr err,
                  bool by_ciphertext)
{
    if (!c->caller)
        return 0;
    bool hidden;
    const char *why = refusal(c, k->account, json_string_value(json_object_get(k->doc, "policy")), k->arn,
                              action, err == KERR_KMS_K_ACCESS_DENIED, &hidden);
    if (!why)
        return 0;
    const char *user = c->caller->user_arn;
    if (hidden)
        return api_fail(c, err,
                        "User: %s is not authorized to perform: %s on this resource because the resource "
                        "does not exist in this Region, no resource-based policies allow access, or a "
                        "resource-based policy explicitly denies access",
                        user, action);
    if (by_ciphertext)
        return api_fail(c, err,
                        "User: %s is not authorized to perform: %s on the resource associated with this "
                        "ciphertext %s",
                        user, action, why);
    return api_fail(c, err, "User: %s is not authorized to perform: %s on resource: %s %s", user, action,
                    k->arn, why);
}

int kms_authorize_alias(struct api_ctx *c, const char *action, const char *alias_arn)
{
    const struct auth_cred *who = c->caller;
    if (!who || !who->policy) /* no policy file: everything in its own account, as elsewhere */
        return 0;
    struct policy_request pr = caller_request(c, action, alias_arn);
    enum policy_verdict v = policy_eval(who->policy, &pr);
    if (v == POLICY_ALLOW)
        return 0;
    return api_fail(
        c, KERR_ACCESS_DENIED, "User: %s is not authorized to perform: %s on resource: %s %s", who->user_arn,
        action, alias_arn,
        v == POLICY_DENY
            ? "with an explicit deny in an identity-based policy"
            : arena_printf(&c->arena, "because no identity-based policy allows the %s action", action));
}

int kms_policy_check(struct api_ctx *c, const char *text, const char *owner, const char *key_arn,
                     bool bypass_lockout)
{
    char why[256];
    struct policy *p = policy_parse_opts(text, strlen(text), KEY_POLICY_FLAGS, why, sizeof why);
    if (!p)
        return api_fail(c, KERR_KMS_MALFORMED_POLICY, "%s", why);
    policy_free(p);
    bool hidden;
    if (c->caller && !bypass_lockout && refusal(c, owner, text, key_arn, "kms:PutKeyPolicy", false, &hidden))
        return api_fail(c, KERR_KMS_MALFORMED_POLICY,
                        "The new key policy will not allow you to update the key policy in the future.");
    return 0;
}

int kms_stream_key_check(struct api_ctx *c, const char *kid)
{
    struct kms_key k;
    if (resolve(c, kid, false, false, true, &k)) /* the data plane: read-only */
        return c->err == KERR_KMS_NOT_FOUND ? stream_not_found(c) : -1;
    int rc = kms_authorize(c, &k, "kms:GenerateDataKey", KERR_KMS_K_ACCESS_DENIED, false);
    if (rc == 0)
        rc = stream_key_state(c, &k);
    json_decref(k.doc);
    return rc;
}

const char *kms_stream_kid(const struct stream *s, int64_t now)
{
    return now >= s->enc_switch_ms ? s->enc_kid : s->enc_prev_kid;
}

static int records_access_denied(struct api_ctx *c)
{
    return api_fail(c, KERR_KMS_K_ACCESS_DENIED,
                    "The ciphertext references a key that doesn't exist or that you don't have access to.");
}

#define CHECKED_CLASSES 8 /* distinct KMS keys remembered per call; more are checked again */

int kms_records_check(struct api_ctx *c, const struct store_read *v, size_t n)
{
    uint32_t seen[CHECKED_CLASSES];
    size_t nseen = 0;
    for (size_t i = 0; c->api->dk && i < n; i++) {
        uint32_t cls = v[i].key_class;
        bool known = cls < DATAKEYS_CLASS_KMS;
        for (size_t j = 0; j < nseen && !known; j++)
            known = seen[j] == cls;
        if (known)
            continue;
        char kid[KMS_ID_LEN + 1];
        struct kms_key k;
        if (datakeys_class_kid(c->api->dk, cls, kid))
            return records_access_denied(c);
        if (resolve(c, kid, false, false, true, &k)) /* the data plane: read-only */
            return c->err == KERR_KMS_NOT_FOUND ? records_access_denied(c) : -1;
        int rc = kms_authorize(c, &k, "kms:Decrypt", KERR_KMS_K_ACCESS_DENIED, false);
        if (rc == 0)
            rc = stream_key_state(c, &k);
        json_decref(k.doc);
        if (rc)
            return rc;
        if (nseen < CHECKED_CLASSES)
            seen[nseen++] = cls;
    }
    return 0;
}

int kms_scan_fail(struct api_ctx *c, uint64_t log, int rc)
{
    if (rc == STORE_CORRUPT && c->api->dk && datakeys_log_closed(c->api->dk, log))
        return records_access_denied(c);
    return api_store_fail(c, rc);
}

/* The key policy AWS gives its managed key for Kinesis (alias/aws/kinesis): every principal of
 * the account may use it through Kinesis, and the account may read its metadata. */
static const char *kinesis_managed_policy(struct api_ctx *c)
{
    const char *acct = api_account(c);
    return arena_printf(
        &c->arena,
        "{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"auto-kinesis-1\",\n  \"Statement\" : [ {\n"
        "    \"Sid\" : \"Allow access through Amazon Kinesis for all principals in the account that are "
        "authorized to use Amazon Kinesis\",\n    \"Effect\" : \"Allow\",\n"
        "    \"Principal\" : {\n      \"AWS\" : \"*\"\n    },\n"
        "    \"Action\" : [ \"kms:Encrypt\", \"kms:Decrypt\", \"kms:ReEncrypt*\", \"kms:GenerateDataKey*\", "
        "\"kms:DescribeKey\" ],\n    \"Resource\" : \"*\",\n    \"Condition\" : {\n"
        "      \"StringEquals\" : {\n        \"kms:CallerAccount\" : \"%s\",\n"
        "        \"kms:ViaService\" : \"kinesis.%s.amazonaws.com\"\n      }\n    }\n  }, {\n"
        "    \"Sid\" : \"Allow direct access to key metadata to the account\",\n    \"Effect\" : \"Allow\",\n"
        "    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::%s:root\"\n    },\n"
        "    \"Action\" : [ \"kms:Describe*\", \"kms:Get*\", \"kms:List*\", \"kms:RevokeGrant\" ],\n"
        "    \"Resource\" : \"*\"\n  } ]\n}",
        acct, c->region, acct);
}

int kms_stream_key_resolve(struct api_ctx *c, const char *key_id, char kid[KMS_ID_LEN + 1])
{
    const char *aws =
        arena_printf(&c->arena, "arn:aws:kms:%s:%s:alias/aws/kinesis", c->region, api_account(c));
    struct kms_key k;
    if (kms_find(c, key_id, true, &k)) {
        if (c->err != KERR_KMS_NOT_FOUND)
            return -1;
        if (strcmp(key_id, "alias/aws/kinesis") && strcmp(key_id, aws))
            return stream_not_found(c);
        /* the AWS managed key for Kinesis, made on first use */
        if (kms_create(c, NULL, NULL,
                       "Default master key that protects my Kinesis data when no other key is "
                       "defined",
                       kinesis_managed_policy(c), &k))
            return -1;
        json_object_set_new(k.doc, "manager", json_string("AWS"));
        json_object_set_new(k.doc, "rotation", json_true()); /* AWS managed keys rotate yearly */
        json_t *alias = json_pack("{s:s, s:I, s:I}", "target", k.id, "created_ms", (json_int_t)c->now_ms,
                                  "updated_ms", (json_int_t)c->now_ms);
        char *text = alias ? json_dumps(alias, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(alias);
        struct store_row r = {.key = kms_alias_row(c, "alias/aws/kinesis"),
                              .version = 0,
                              .val = text,
                              .len = text ? strlen(text) : 0};
        int rc = !text || kms_save(c, &k) ? -1 : store_meta_cas(c->api->store, &r, 1);
        free(text);
        if (rc) {
            json_decref(k.doc);
            return rc < 0 ? -1 : api_store_fail(c, rc);
        }
    }
    int rc = kms_authorize(c, &k, "kms:GenerateDataKey", KERR_KMS_K_ACCESS_DENIED, false);
    if (rc == 0)
        rc = stream_key_state(c, &k);
    if (rc == 0)
        snprintf(kid, KMS_ID_LEN + 1, "%s", k.id);
    json_decref(k.doc);
    return rc;
}
