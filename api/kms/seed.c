/* seed.c: --kms-seed (see seed.h). Runs once at start, through the same key store functions as
 * CreateKey and CreateAlias, on a request context of its own. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "kms.h"
#include "seed.h"
#include "klog.h"

static int material_of(const char *text, unsigned char out[32])
{
    size_t n, len = strlen(text);
    if (len == 64 && sodium_hex2bin(out, 32, text, len, NULL, &n, NULL) == 0 && n == 32)
        return 0;
    if (sodium_base642bin(out, 32, text, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 && n == 32)
        return 0;
    return -1;
}

static int seed_alias(struct api_ctx *c, const char *alias, const char *id)
{
    if (strncmp(alias, "alias/", 6) || !strncmp(alias, "alias/aws/", 10) || strlen(alias) > 256)
        return -1;
    json_t *doc = json_pack("{s:s, s:I, s:I}", "target", id, "created_ms", (json_int_t)c->now_ms,
                            "updated_ms", (json_int_t)c->now_ms);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (!text)
        return -1;
    int rc = store_meta_put(c->api->store, kms_alias_row(c, alias), text, strlen(text));
    free(text);
    return rc ? -1 : 0;
}

static int apply(struct api_ctx *c, json_t *root, const char *path)
{
    json_t *keys = json_object_get(root, "Keys");
    if (!json_is_array(keys)) {
        klog(KLOG_ERROR, "--kms-seed %s: expected {\"Keys\": [...]}", path);
        return -1;
    }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *id = json_string_value(json_object_get(k, "KeyId"));
        const char *mat = json_string_value(json_object_get(k, "KeyMaterial"));
        const char *desc = json_string_value(json_object_get(k, "Description"));
        json_t *enabled = json_object_get(k, "Enabled");
        unsigned char *m = sodium_malloc(32);
        struct kms_key key;
        if (!m || !id || (mat && material_of(mat, m))) {
            sodium_free(m);
            klog(KLOG_ERROR,
                 "--kms-seed %s: key %zu needs a KeyId (a UUID) and, if given, 32 bytes of "
                 "KeyMaterial (base64 or hex)",
                 path, i);
            return -1;
        }
        if (kms_find(c, id, false, &key) == 0) { /* there already: left as it is */
            json_decref(key.doc);
        } else if (c->err != KERR_KMS_NOT_FOUND || strstr(c->err_msg ? c->err_msg : "", "Invalid keyId") ||
                   kms_create(c, id, mat ? m : NULL, desc, NULL, &key)) {
            sodium_free(m);
            klog(KLOG_ERROR, "--kms-seed %s: cannot create key %s%s%s", path, id, c->err_msg ? ": " : "",
                 c->err_msg ? c->err_msg : "");
            return -1;
        } else {
            if (json_is_false(enabled)) {
                json_object_set_new(key.doc, "state", json_string("Disabled"));
                kms_save(c, &key);
            }
            json_decref(key.doc);
        }
        sodium_free(m);
        size_t j;
        json_t *alias;
        json_array_foreach(json_object_get(k, "Aliases"), j, alias)
        {
            if (!json_is_string(alias) || seed_alias(c, json_string_value(alias), key.id)) {
                klog(KLOG_ERROR, "--kms-seed %s: cannot create alias %s", path,
                     json_is_string(alias) ? json_string_value(alias) : "(not a string)");
                return -1;
            }
        }
    }
    return 0;
}

int seed_apply(struct api *a, const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        klog(KLOG_ERROR, "--kms-seed %s: line %d: %s", path, err.line, err.text);
        return -1;
    }
    struct api_ctx c = {.api = a, .region = a->region, .now_ms = clock_now_ms()};
    arena_init(&c.arena);
    enc_init(&c.out, WIRE_JSON);
    int rc = apply(&c, root, path);
    buf_free(&c.out.b);
    arena_free(&c.arena);
    json_decref(root);
    return rc;
}
