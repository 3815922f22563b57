/* keyring.h: the data keys storage seals records with, as a table handed to store_open.
 *
 * Storage never makes, wraps or stores keys itself: the layer above (the built-in KMS) owns
 * the key hierarchy and implements this table, as an engine implements engine.h. Storage only
 * asks for the data key of a record and says when records are gone, so storage/ needs nothing
 * from above.
 *
 * Model. A data key belongs to one log and one hour bucket of positions (a position is the
 * arrival time in milliseconds shifted left by 20, so a bucket is an hour of arrivals). Its
 * 64-bit id is (bucket << 24 | generation); a key seals at most KEYRING_KEY_RECORDS records,
 * then the next generation takes over. Every record sealed under a key has a position inside
 * its key's bucket, so once a log holds no position below the end of a bucket, the bucket's keys
 * can be destroyed (crypto-shredding): records left in freed pages or old copies of the files
 * can then be opened by nobody.
 *
 * Key bytes (32) stay owned by the keyring, in memory it locked and wipes; the pointers it
 * hands out stay valid until the keys are shredded (records at positions the log still holds
 * never lose their key). */
#ifndef KINESD_KEYRING_H
#define KINESD_KEYRING_H

#include <stdbool.h>
#include <stdint.h>

struct store_trim_row; /* store.h */

#define KEYRING_KEY_BYTES 32
#define KEYRING_KEY_RECORDS (1u << 24) /* records one data key seals at most */
#define KEYRING_BUCKET_MS 3600000ull   /* an hour of arrival time */

/* The hour bucket of a position. */
static inline uint64_t keyring_bucket(uint64_t pos) { return (pos >> 20) / KEYRING_BUCKET_MS; }
/* The first position of bucket b. */
static inline uint64_t keyring_bucket_start(uint64_t b) { return (b * KEYRING_BUCKET_MS) << 20; }

struct store_keyring {
    /* The data key to seal n more records of log at positions of bucket with: *id and *key
     * (borrowed, see above). Creates one (durably stored before this returns) when the bucket
     * has none yet, or its current key has sealed its share. n 0 only makes sure the key
     * exists (store_append_async calls it ahead of the engine, off the engine's locks, so the
     * engine's own call rarely has to create one). Thread-safe. Returns 0, STORE_IO,
     * STORE_FULL, STORE_NOMEM. */
    int (*seal_key)(void *ctx, uint64_t log, uint64_t bucket, uint32_t n, uint64_t *id,
                    const unsigned char **key);
    /* The data key id of log, to open a record with, and its class (*cls: the keyring's own
     * tag, passed on in store_read.key_class; 0 for keys of no particular class). Returns 0 or
     * STORE_NOT_FOUND (shredded, or never made). Thread-safe; no I/O. */
    int (*open_key)(void *ctx, uint64_t log, uint64_t id, const unsigned char **key, uint32_t *cls);
    /* Before a trim of log: the rows of its oldest keys (at most max, in bucket order), each
     * with its bucket's end, into rows; *n gets how many. The trim deletes those no record is
     * left for in its own transaction (store_trim_row). Returns 0 or a STORE_* code of the
     * metadata read (the trim then deletes no key; the next one does). */
    int (*shred_rows)(void *ctx, uint64_t log, struct store_trim_row *rows, size_t max, size_t *n);
    /* After that trim committed: wipe the keys of the rows marked gone. */
    void (*shredded)(void *ctx, uint64_t log, const struct store_trim_row *rows, size_t n);
    /* Log is gone for good: destroy all of its keys. Returns as trimmed. */
    int (*dropped)(void *ctx, uint64_t log);
    void *ctx;
};

#endif
