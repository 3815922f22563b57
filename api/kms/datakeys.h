/* datakeys.h: the key hierarchy under the records at rest, and the keyring storage seals with.
 *
 * A root key (32 bytes) comes from a file (mode 0600 or stricter), an environment variable or a
 * command's output, as 64 hex digits, 44 base64 characters or 32 raw bytes (a file). Without
 * one, a root key is created in the data directory (root.key) and kinesd says so: fit for
 * tests and development only. The root key wraps the node storage key (node.key in the data
 * directory); the node key wraps the data keys, which are metadata rows (dk/<log>/<id>) of the
 * store; data keys seal records (storage/format.h). A wrong root key is found before the store
 * is opened, so nothing is modified.
 *
 * Every key in memory lives in sodium_malloc'd (locked, guarded) memory and is wiped when it is
 * destroyed or the keyring closes. While a keyring is open, core dumps are off. */
#ifndef KINESD_DATAKEYS_H
#define KINESD_DATAKEYS_H

#include <stdbool.h>
#include <stdint.h>

#include "keyring.h"
#include "store.h"

/* Where the root key comes from: at most one of the three; none for the data directory's own. */
struct datakeys_root {
    const char *file, *env, *command; /* borrowed during datakeys_open */
};

struct datakeys;

/* Load the root key, open (or create) dir/node.key with it, switch core dumps off. *out owned
 * by the caller until datakeys_close. Returns 0, or -2 after printing why to stderr (a root
 * key that cannot be had or does not open node.key: the caller exits with status 2), or -1
 * (out of memory, I/O). Nothing in dir is changed on failure.
 * dir NULL: a store shared by front-ends (PostgreSQL): the node key is the store's row
 * "keyring/node", and without a root key source the store's row "keyring/root" is the root key
 * (created by the first front-end, said so at start; tests and development only). Both are
 * read in datakeys_attach, which then also reports a wrong root key (-2). */
int datakeys_open(const char *dir, const struct datakeys_root *root, struct datakeys **out);

/* The keyring table to hand to store_open (owned by dk). */
const struct store_keyring *datakeys_keyring(struct datakeys *dk);

/* Once the store is open: load every data key row. store borrowed until datakeys_close (close
 * the store first). Returns 0, -2 (a wrong root key, dir NULL), or -1 after printing why (a row
 * the node key does not open). */
int datakeys_attach(struct datakeys *dk, struct store *store);

/* The classes of data keys (store_read.key_class): sealed under the node key, or under a KMS
 * key of the built-in KMS: DATAKEYS_CLASS_KMS + n names the n-th KMS key this keyring has seen
 * wrap a data key (datakeys_class_kid). */
#define DATAKEYS_CLASS_NODE 0
#define DATAKEYS_CLASS_KMS 1

/* From switch_ms on (the clock of clock_now_ms), new data keys of stream uid's logs are wrapped
 * by the built-in KMS key kid, before then by prev (NULL or "": by the node key); at the switch
 * the stream's current keys seal nothing more, so records are sealed under the new arrangement
 * from the next one on. A later call replaces an earlier one. kid, prev borrowed. Returns 0 or
 * -1 (out of memory). */
int datakeys_stream_key(struct datakeys *dk, uint64_t uid, const char *prev, const char *kid,
                        int64_t switch_ms);

/* The KMS key id of class cls into kid. Returns 0, or -1 if cls is not a KMS class. */
int datakeys_class_kid(struct datakeys *dk, uint32_t cls, char kid[37]);

/* KMS key kid is deleted: wipe every data key it wrapped. Their records open no more (the
 * keys stay known as closed: datakeys_log_closed). */
void datakeys_kms_gone(struct datakeys *dk, const char *kid);

/* Whether log has data keys whose KMS key is gone (so a record of it may not open). Walks the
 * whole table: for error paths only. */
bool datakeys_log_closed(struct datakeys *dk, uint64_t log);

/* The root key (32 bytes, owned by dk): the built-in KMS wraps its key material with it. */
const unsigned char *datakeys_root_key(const struct datakeys *dk);

/* Root-key rotation, offline (the store open by this process alone): re-wrap what the root key
 * wraps under new_root (32 bytes, borrowed): the built-in KMS's key material, every key in one
 * commit, then dir/node.key (written beside it, renamed over it). Data keys and records are
 * not rewritten. From then on only new_root opens the directory. dk was opened on dir with the
 * old root key and attached. An interrupted run is finished by running it again with the same
 * keys. *materials gets the material versions re-wrapped. Returns 0, -2 (after printing why),
 * -1. */
int datakeys_rotate_root(struct datakeys *dk, const char *dir, const unsigned char *new_root,
                         size_t *materials);

/* Wipe and free everything. NULL allowed. */
void datakeys_close(struct datakeys *dk);

#endif
