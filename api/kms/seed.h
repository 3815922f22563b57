/* seed.h: --kms-seed FILE: keys with fixed ids, material and aliases, so test fixtures keep
 * their key ids across restarts and fresh data directories.
 *
 * The file (JSON, parsed with jansson):
 *   {"Keys": [{"KeyId": "<uuid>", "KeyMaterial": "<32 bytes: base64 or 64 hex digits>",
 *              "Description": "...", "Enabled": true, "Aliases": ["alias/name", ...]}, ...]}
 * KeyMaterial is optional (random when absent). A key that exists already is left as it is; an
 * alias is created, or pointed at its key. */
#ifndef KINESD_SEED_H
#define KINESD_SEED_H

struct api;

/* Apply the seed file at path. Returns 0, or -1 after printing why to stderr. */
int seed_apply(struct api *a, const char *path);

#endif
