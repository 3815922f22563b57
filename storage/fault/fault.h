/* fault.h: a fault-injecting engine and I/O shim, for tests only (linked into the storage unit
 * tests, never into the server).
 *
 * Two halves, one process-wide state (tests run one faulty store at a time):
 *  - the engine "fault", chosen with store_config.engine "fault:lmdb" after fault_register():
 *    it forwards every entry of the engine table to the inner engine, and can make the Nth call
 *    of an entry (counted from when the fault was armed) return a chosen STORE_* code without
 *    calling the inner engine;
 *  - the I/O shim fault_io(), for store_config.io: it performs the OS calls, classifying each
 *    call on the write-ahead log's segment files (a frame write, a segment header write, the
 *    datasync of frames, the datasync of a header), and can make the Nth call of a class fail
 *    with an errno, write only part of its buffer (a short write), or block until the test
 *    releases it (to hold a sync in flight, or a checkpoint's retire).
 * Every function is thread-safe. */
#ifndef KINESD_FAULT_H
#define KINESD_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "../store.h"

/* Entries of the engine table that can fail. */
enum fault_op {
    FAULT_APPEND,
    FAULT_SCAN,
    FAULT_LOG_BOUNDS,
    FAULT_WATCH,
    FAULT_TRIM,
    FAULT_LOG_DROP,
    FAULT_LOG_SEAL,
    FAULT_LEASE,
    FAULT_META_CAS,
    FAULT_META_GET,
    FAULT_META_SCAN,
    FAULT_OPS
};

/* Classes of I/O calls of the write-ahead log. A header is a segment's first 4096 bytes,
 * written at offset 0; a header sync is the first datasync of that file after a header write. */
enum fault_io_op {
    FAULT_IO_WRITE,    /* pwrite of a frame (offset >= 4096, not only zeros) */
    FAULT_IO_ZERO,     /* pwrite of zeros ahead of the frames (the segment's extension) */
    FAULT_IO_HDR,      /* pwrite of a segment header */
    FAULT_IO_SYNC,     /* datasync of a segment's frames */
    FAULT_IO_HDR_SYNC, /* datasync after a header write (a run started: open, retire) */
    FAULT_IO_OPS
};

/* What the Nth call of an I/O class does. */
enum fault_action {
    FAULT_FAIL,       /* fail with errno err, doing nothing */
    FAULT_SHORT,      /* write only the first half of the buffer (at least 1 byte), succeed */
    FAULT_SHORT_FAIL, /* write the first half, then fail the call with err (a torn write) */
    FAULT_BLOCK,      /* wait until fault_release, then do the call */
    FAULT_BLOCK_FAIL, /* wait until fault_release, then fail with err */
};

/* Register the "fault" wrapper (idempotent). */
void fault_register(void);

/* Disarm every fault, release every blocked call and zero the counters. */
void fault_reset(void);

/* Make the nth call of op from now (1 = the next one) return rc (a STORE_* code). One armed
 * fault per op; arming again replaces it. */
void fault_fail(enum fault_op op, unsigned nth, int rc);

/* Calls of op made through the wrapper since the last reset (failed ones included). */
unsigned fault_calls(enum fault_op op);

/* The I/O shim (pass it as store_config.io). Borrowed; static. */
const struct store_io *fault_io(void);

/* Make the nth I/O call of class op from now do act (err: the errno for the failing ones).
 * Up to four armed faults per class (arming a fifth replaces the last). */
void fault_io_arm(enum fault_io_op op, unsigned nth, enum fault_action act, int err);

/* I/O calls of class op since the last reset, and how many of them have returned. */
unsigned fault_io_calls(enum fault_io_op op);
unsigned fault_io_returned(enum fault_io_op op);

/* Wait until a call is blocked by FAULT_BLOCK or FAULT_BLOCK_FAIL; false after timeout_ms. */
bool fault_wait_blocked(int timeout_ms);

/* Wait until at least n calls of class op have returned; false after timeout_ms. */
bool fault_wait_returned(enum fault_io_op op, unsigned n, int timeout_ms);

/* Let blocked calls go on. */
void fault_release(void);

/* With on, each time the engine reports its database durable (store_io.db_synced), copy
 * DIR/data.mdb to DIR/data.snap (through a temporary name and a rename): the database a power
 * loss right then would leave. Off after fault_reset. */
void fault_io_snapshots(bool on);

#endif
