/* format.h: the record format, the one place records are sealed and opened (storage-internal).
 *
 * Every engine calls format_seal once it has assigned a record's position, and format_open
 * when it reads one back; engines store the sealed bytes as they are. The seal binds the
 * record to its log and position, so a record moved or copied to another key on disk fails to
 * open (STORE_CORRUPT) instead of being served as another record.
 *
 * With a keyring (store_config.keyring) records are encrypted: version 4 where the CPU has
 * AES instructions, else version 3. Without one (only for measurements) they carry a checksum:
 * version 2. Every version, and the legacy version 1, is always read (version 4 without AES
 * instructions too, only more slowly).
 *
 * Version 3 (written with a keyring), little-endian, a 36-byte header, then ciphertext, tag:
 *   off size field
 *     0    1 version   3
 *     1    1 flags     0
 *     2    2 pk_len    partition key length in bytes
 *     4    8 key id    the data key (keyring.h: bucket << 24 | generation)
 *    12   24 nonce     16 random bytes drawn once per sealer (a write batch) . 8-byte counter
 *    36    .           XChaCha20-Poly1305 of partition key . data
 *   end   16 tag       Poly1305 tag over the ciphertext and the associated data:
 *                      bytes 0..35 . log (8) . pos (8)
 * A log id names the stream incarnation and the shard; a position is the arrival time
 * (milliseconds << 20) plus a counter, so the tag binds stream, shard, sequence number, arrival
 * time and data key: a record swapped, moved, altered or opened under another key fails.
 * A nonce is never repeated under one key: the random part is new for every sealer and the
 * counter counts within it.
 *
 * XChaCha20 is HChaCha20(key, nonce bytes 0..15) as a subkey, then ChaCha20 under that subkey
 * with the nonce 0^4 . nonce bytes 16..23. A sealer's 16 random bytes are the same for all of
 * its records, so the subkey is derived once per sealer and data key (and an opener keeps the
 * last one for the next record with the same key and random part, the records of one write
 * batch): the bytes written and read, and what they prove, are exactly XChaCha20-Poly1305's.
 *
 * Version 4 (written with a keyring on CPUs with AES instructions): version 3's layout, byte 0
 * = 4, the ciphertext and tag AES-256-GCM's under the same subkey HChaCha20(data key, nonce
 * bytes 0..15), a key of its own per sealer and data key, with the 12-byte nonce 0^4 . nonce
 * bytes 16..23 (the counter: never repeated under one subkey). Same associated data. For a
 * 100-byte record it costs a fraction of what ChaCha20-Poly1305 does here (AES-NI and
 * PCLMULQDQ, gcm.h: the key expanded once per batch and data key, only the nonce per record).
 *
 * The record's index. Records are written with flags FORMAT_F_IX: the header is 8 bytes longer
 * than the version's own, those 8 bytes (little-endian) the record's index in its log (the
 * engine counts a log's records, store.h), so the sealed header is 44 bytes (the
 * associated data is then bytes 0..43 . log . pos) and version 2's 16 (its check covers them).
 * Records of flags 0 (written before the index existed) read with their position as the index.
 *
 * Version 2 (written without a keyring), an 8-byte header:
 *     0    1 version   2
 *     1    1 flags     0
 *     2    2 pk_len
 *     4    4 check     CRC-32C of log (8) . pos (8) . bytes 0..3 . bytes 8.. of the record
 *     8  pk_len        partition key, then data
 * Version 1 (read only): a 32-byte header (version 1, flags 0, pk_len, 28 reserved bytes that
 * must be zero), then the partition key and the data, with no check. */
#ifndef KINESD_FORMAT_H
#define KINESD_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyring.h"
#include "store.h"

#define FORMAT_VERSION 2
#define FORMAT_HDR 8
#define FORMAT_SEALED_VERSION 4 /* the newest; 3 and 4 are both sealed */
#define FORMAT_XCHACHA_VERSION 3
#define FORMAT_SEALED_HDR 36
#define FORMAT_TAG 16
#define FORMAT_MAX_PK 0xFFFF
#define FORMAT_F_IX 1 /* flags: the record's index follows the version's header */
#define FORMAT_IX_LEN 8

/* Bytes that format_seal writes for a record of these sizes (kr: the store's keyring, NULL
 * for none). */
static inline size_t format_sealed_len(const struct store_keyring *kr, size_t pk_len, size_t data_len)
{
    return (kr ? FORMAT_SEALED_HDR + FORMAT_TAG : FORMAT_HDR) + FORMAT_IX_LEN + pk_len + data_len;
}

/* One batch's sealing state: the nonce base and counter, the current data key (cached across
 * the records of one log and bucket). Lives on the sealing thread's stack for one batch. */
struct format_sealer {
    const struct store_keyring *kr; /* borrowed; NULL: version 2 */
    unsigned char nonce[24];        /* 16 random bytes, then the counter */
    uint64_t ctr;
    uint64_t log, bucket_end; /* the cached key's log and the first position past its bucket */
    uint64_t key_id;
    const unsigned char *key; /* the keyring's; NULL when none is cached */
    unsigned char subkey[32]; /* HChaCha20(key, nonce[0..15]), when key is set */
    bool gcm;                 /* writes version 4 */
    void *gcm_ctx;            /* its cipher context, keyed with subkey (owned; NULL until needed) */
    void *gcm_short;          /* ... and gcm.h's expanded key for short records (the same) */
    bool gcm_short_keyed;     /* ... keyed with subkey */
};

/* Start a batch: draws the nonce's random part. kr borrowed for the sealer's life. */
void format_sealer_init(struct format_sealer *s, const struct store_keyring *kr);
/* End a batch: wipes the sealer's derived key (and frees its cipher context). */
void format_sealer_done(struct format_sealer *s);

/* Seal one record for (log, pos) with its index ix into out, which has format_sealed_len bytes of room. n is
 * the number of records of this log the caller is about to seal from here on (the key's
 * count is reserved for them when a key is first taken). pk_len <= FORMAT_MAX_PK (the caller
 * checked). *len gets the bytes written. Returns 0, or a keyring code (STORE_IO, STORE_FULL,
 * STORE_NOMEM) when no data key could be had. */
int format_seal(struct format_sealer *s, char *out, uint64_t log, uint64_t pos, uint64_t ix, size_t n,
                const struct store_rec *r, size_t *len);

/* One scan's opening state: the last record's data key and derived subkey, so that records
 * sealed together are opened without deriving it again. Lives on the scanning thread's stack
 * for one scan. */
struct format_opener {
    const struct store_keyring *kr; /* borrowed; NULL: version 3 records do not open */
    bool have;                      /* subkey is HChaCha20(key, prefix) */
    unsigned char key[32];
    unsigned char prefix[16];
    unsigned char subkey[32];
    void *gcm_ctx;        /* version 4's cipher context (owned; NULL until needed) */
    bool gcm_keyed;       /* ... keyed with subkey */
    void *gcm_short;      /* ... and gcm.h's expanded key for short records (the same) */
    bool gcm_short_keyed; /* ... keyed with subkey */
};

/* Start a scan; kr borrowed for the opener's life. */
void format_opener_init(struct format_opener *o, const struct store_keyring *kr);
/* End a scan: wipes the keys the opener holds (and frees its cipher context). */
void format_opener_done(struct format_opener *o);

/* Check the sealed bytes of the record stored at (log, pos) and append it to out, copying its
 * key and data through out->alloc (decrypted there for version 3, with the opener's keyring;
 * with out->index_only, as store.h says).
 * Returns 0, STORE_CORRUPT (does not check out: moved, altered, swapped, an unknown version, or
 * a data key that is gone), STORE_NOMEM. */
int format_open_with(struct format_opener *o, const char *val, size_t len, uint64_t log, uint64_t pos,
                     struct store_records *out);
/* The same for a single record (an opener of its own). */
int format_open(const struct store_keyring *kr, const char *val, size_t len, uint64_t log, uint64_t pos,
                struct store_records *out);

/* Tests only: behave as on a CPU without AES instructions (write version 3, open version 4
 * through OpenSSL) while on. */
void format_test_no_aes(bool on);

/* Check what needs no key: the layout, and for version 2 the binding to (log, pos); a version 3
 * record's binding is checked when it is opened. Recovery uses it (data keys are rows of the
 * store being recovered), and reads the record's index from it into *ix (may be NULL; as
 * store_read's ix: pos for a record without one). Returns 0 or STORE_CORRUPT. */
int format_check_keyless(const char *val, size_t len, uint64_t log, uint64_t pos, uint64_t *ix);

/* The index a stored record carries (store_read's ix), read from its header without checking
 * anything else: for engines that keep a log's last index beside its last position. */
uint64_t format_index(const char *val, size_t len, uint64_t pos);

/* Only check the record (for verification tools). Returns 0 or STORE_CORRUPT. */
int format_check(const struct store_keyring *kr, const char *val, size_t len, uint64_t log, uint64_t pos);

#endif
