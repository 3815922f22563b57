/* wal.h: the write-ahead log in front of the backend (storage-internal; store.c uses it).
 *
 * One file, "wal", in the data directory: a run of frames from offset 0, each
 *
 *   off size field (little-endian)
 *     0    4 magic   "KWAL"
 *     4    4 len     payload bytes
 *     8    8 epoch   the same for every frame of one run
 *    16    4 crc     CRC-32C of bytes 0..16 and the payload
 *    20    4 zero
 *    24  len payload: entries, each log (8) . pos (8) . len (4) . sealed value (len)
 *
 * A run ends at the first frame that does not check out (torn by a crash, zeroes, or left
 * over from an earlier run: another epoch), so a frame is either wholly in the log or not at
 * all. wal_reset starts a new run: it zeroes the first header, so nothing of the old run is
 * read again, and later frames are written over the old ones. The caller (store.c) decides
 * what a frame means and when the log may be reset; this file only writes and reads frames.
 * Functions return 0 or a negative STORE_* code. */
#ifndef KINESD_WAL_H
#define KINESD_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_HDR 24   /* frame header */
#define WAL_ENTRY 20 /* entry header: log, pos, len */

struct wal;

/* Open or create dir/wal. With sync, wal_sync and wal_reset wait for the disk. */
int wal_open(const char *dir, bool sync, struct wal **out);
void wal_close(struct wal *w);

/* Read the current run from the start, calling fn for each frame's payload (valid during the
 * call), and position the log after it so that appends continue the run. Call once, before
 * any append. fn returns 0 or a negative STORE_* code, which stops the replay with that code. */
typedef int (*wal_frame_fn)(void *ctx, const char *payload, size_t len);
int wal_replay(struct wal *w, wal_frame_fn fn, void *ctx);

/* Write one frame at the end of the run. buf holds WAL_HDR bytes of room followed by the
 * payload (len bytes in all); the header is filled in place. Writes are not concurrent (the
 * caller serializes them). On error the run is unchanged: the next frame is written over
 * whatever part of this one reached the file. */
int wal_write(struct wal *w, char *buf, size_t len);

/* Make every frame written before the call durable. May run alongside wal_write and other
 * wal_sync calls. After a failed sync the disk's state is unknown, so every later write
 * fails too (the server must be restarted). */
int wal_sync(struct wal *w);

/* Start a new, empty run. If the file grew beyond keep bytes, it is cut back to keep. */
int wal_reset(struct wal *w, uint64_t keep);

/* Bytes in the current run. */
uint64_t wal_used(const struct wal *w);

/* Write one entry at o (WAL_ENTRY + len bytes); returns the bytes written. */
size_t wal_put_entry(char *o, uint64_t log, uint64_t pos, const void *val, size_t len);

/* Decode the entry at payload + *off, advancing *off. Returns 1 for an entry, 0 at the end,
 * STORE_CORRUPT if the payload does not parse. */
int wal_next_entry(const char *payload, size_t len, size_t *off, uint64_t *log, uint64_t *pos,
                   const char **val, size_t *vlen);

#endif
