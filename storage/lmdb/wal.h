/* wal.h: the lmdb engine's write-ahead log (engine-internal; engine.c uses it).
 *
 * Two segment files, "wal.0" and "wal.1", in the data directory. Frames are appended to the
 * active segment; once it is large, the engine switches to the other (free) one, makes the
 * database durable up to the old segment's last frame, and then retires the old segment, so a
 * checkpoint never stops writers. Each segment is
 *
 *   off   size field (little-endian)
 *     0      4 magic "KWSG"
 *     4      4 format version (1)
 *     8      8 run      this segment's run number
 *    16      4 crc      CRC-32C of bytes 0..16
 *    20   4076 zero
 *  4096      . frames, each:
 *                0  4 magic "KWAL"
 *                4  4 len      payload bytes
 *                8  8 run      the segment's run
 *               16  4 crc      CRC-32C of bytes 0..16 and the payload
 *               20  4 zero
 *               24  len payload: entries, each log (8) . pos (8) . len (4) . sealed value
 *
 * Run numbers only grow: a segment's header (with its run) is durable before any frame of that
 * run is written, and every new run is larger than every run ever written, so a frame left
 * over from an earlier run (after a frame torn by a power loss, say) never passes for a frame
 * of the current one. A segment's frames end at the first one that does not check out. After
 * a replay the engine stores everything in the database, makes it durable and restarts both
 * segments with new runs: nothing of an old run is ever continued.
 *
 * A datasync that fails leaves the disk's state unknown: the log is then broken for good (every
 * later write and sync fails; the server must restart and recover). Each committer syncs
 * through a file descriptor of its own, because Linux reports a write-back error once per open
 * file: a second caller on a shared descriptor could be told 0 for pages that never reached
 * the disk. Functions return 0 or a negative STORE_* code. */
#ifndef KINESD_LMDB_WAL_H
#define KINESD_LMDB_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store.h"

#define WAL_HDR 24   /* frame header */
#define WAL_ENTRY 20 /* entry header: log, pos, len */
#define WAL_SEGS 2
/* A segment's header: this magic ("KWSG" read little-endian) and the format version, which
 * this build writes and is the newest it reads (the backup's view refuses a newer one). */
#define WAL_SEG_MAGIC 0x4753574bu
#define WAL_SEG_VERSION 1
#define WAL_SYNCERS 2 /* descriptors per segment for wal_sync */

struct wal;

/* Open or create both segments in dir. io may be NULL (the OS). */
int wal_open(const char *dir, bool sync, const struct store_io *io, struct wal **out);
void wal_close(struct wal *w);

/* Read every frame of the log, oldest run first (a log file of an earlier release before
 * both), calling fn with each frame's payload (valid during the call). fn returns 0 or a
 * negative STORE_* code, which stops the replay with that code. */
typedef int (*wal_frame_fn)(void *ctx, const char *payload, size_t len);
int wal_replay(struct wal *w, wal_frame_fn fn, void *ctx);

/* After a replay whose frames are durable elsewhere: start both segments with new, empty runs
 * (segment 0 active) and remove an earlier release's log file. */
int wal_restart(struct wal *w);

/* Write one frame at the end of the active segment. buf holds WAL_HDR bytes of room followed
 * by the payload (len bytes in all); the header is filled in place. Not concurrent (the caller
 * serializes writes). *seg gets the segment written and *at (if not NULL) the frame's offset
 * in it. On error the segment is unchanged. */
int wal_write(struct wal *w, char *buf, size_t len, int *seg, uint64_t *at);

/* A read-only view of the len bytes at offset `at` of segment seg, as wal_write wrote them
 * (file pages: the page cache's, not the process's memory). The bytes stay as they are until
 * the segment is retired, so the view is valid until then and must be let go of before:
 * wal_unmap(*view). Returns 0 with *data the bytes, or STORE_NOMEM (the caller keeps its own
 * copy instead). */
struct wal_view {
    void *map;
    size_t len;
};
int wal_map(struct wal *w, int seg, uint64_t at, size_t len, struct wal_view *view, const char **data);
void wal_unmap(struct wal_view *view);

/* Make every frame written to seg before the call durable, through syncer's own descriptor
 * (0 <= syncer < WAL_SYNCERS). May run alongside writes and other syncs. */
int wal_sync(struct wal *w, int seg, int syncer);

/* If the active segment holds at least `at` bytes of frames and the other segment is free,
 * make the other one active (no I/O) and return the old one's index, else -1. Call under the
 * lock that serializes wal_write. */
int wal_switch(struct wal *w, uint64_t at);

/* Retire segment seg (no longer active; every frame of it is durable in the database): start
 * it afresh with a new run and make that durable, after which it is free. */
int wal_retire(struct wal *w, int seg);

/* True once a sync failed. */
bool wal_broken(const struct wal *w);

/* Bytes of frames in live segments. */
uint64_t wal_used(const struct wal *w);

/* Write one entry at o (WAL_ENTRY + len bytes of room); returns the bytes written. */
size_t wal_put_entry(char *o, uint64_t log, uint64_t pos, size_t len);

/* Decode the entry at payload + *off, advancing *off. Returns 1 for an entry, 0 at the end,
 * STORE_CORRUPT if the payload does not parse. */
int wal_next_entry(const char *payload, size_t len, size_t *off, uint64_t *log, uint64_t *pos,
                   const char **val, size_t *vlen);

#endif
