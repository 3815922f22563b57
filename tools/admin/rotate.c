/* rotate.c: root-key rotation, offline. The root key wraps the node key (node.key) and the
 * built-in KMS's key material (rows of the store); those wrap the data keys, which seal the
 * records. Rotation re-wraps only the first two (datakeys_rotate_root), so it costs the same
 * whatever the data: records and data keys are not rewritten, and stay readable with the new key
 * and not with the old. Every data key is opened with the old key first (datakeys_attach), so a
 * wrong old key, or a directory it does not fully open, is refused before anything changes. */
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"

int adm_rotate(const struct adm_opts *o)
{
    const struct datakeys_root *old_root = &o->root, *new_root = &o->new_root;
    if (o->npos || !(old_root->file || old_root->env || old_root->command) ||
        !(new_root->file || new_root->env || new_root->command)) {
        fprintf(stderr, "kinesd-admin: usage: rotate-root-key --root-key-file OLD --new-root-key-file NEW "
                        "(or their -env, -command forms)\n");
        return ADM_USAGE;
    }
    struct stat st;
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", o->dir);
    if (stat(o->dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kinesd-admin: %s: no such directory\n", o->dir);
        return ADM_NO_DIR;
    }
    if (access(path, F_OK))
        return adm_fail("cannot rotate", o->dir, STORE_NOT_FOUND);
    snprintf(path, sizeof path, "%s/node.key", o->dir);
    if (access(path, F_OK)) {
        fprintf(stderr,
                "kinesd-admin: %s has no node key: its records are not encrypted, nothing to rotate\n",
                o->dir);
        return ADM_USAGE;
    }
    struct datakeys *dk = NULL, *fresh = NULL;
    struct store *s = NULL;
    int code = 0, rc;
    /* both keys, and the old one opening node.key, before the directory is touched */
    if ((rc = datakeys_open(o->dir, old_root, &dk)) || (rc = datakeys_open(NULL, new_root, &fresh))) {
        code = rc == -2 ? ADM_ROOT_KEY : ADM_FAILED;
        goto out;
    }
    if (!sodium_memcmp(datakeys_root_key(dk), datakeys_root_key(fresh), 32)) {
        fprintf(stderr, "kinesd-admin: the new root key is the old one\n");
        code = ADM_USAGE;
        goto out;
    }
    struct store_config cfg = {
        .engine = "lmdb", .dir = o->dir, .sync = true, .keyring = datakeys_keyring(dk)};
    if ((rc = store_open(&cfg, &s))) {
        code = adm_fail("cannot open", o->dir, rc);
        goto out;
    }
    if ((rc = datakeys_attach(dk, s))) {
        code = rc == -2 ? ADM_ROOT_KEY : ADM_FAILED;
        goto out;
    }
    size_t materials = 0;
    if ((rc = datakeys_rotate_root(dk, o->dir, datakeys_root_key(fresh), &materials))) {
        fprintf(stderr, "kinesd-admin: the rotation did not complete: run it again with the same keys\n");
        code = rc == -2 ? ADM_ROOT_KEY : ADM_FAILED;
        goto out;
    }
    printf(
        "re-wrapped the node key and %zu KMS key material versions of %s under the new root key: start the "
        "server with it\n",
        materials, o->dir);
    snprintf(path, sizeof path, "%s/root.key", o->dir);
    if (access(path, F_OK) == 0)
        fprintf(stderr,
                "kinesd-admin: note: %s still holds the old root key, which opens nothing any more; a server "
                "started without a root key source would use it and refuse to start\n",
                path);
out:
    store_close(s);
    datakeys_close(dk);
    datakeys_close(fresh);
    return code;
}
