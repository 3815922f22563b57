/* accesslog.h: the structured access log (--access-log FILE|-): one JSON line per request.
 *
 * A request formats its line on its own thread into a small stack buffer and copies it into
 * the log's current buffer under a mutex held for the copy only; a thread of the log's own
 * swaps buffers and writes the full one to the file (every 200 ms, or sooner when it is half
 * full). Request threads never wait for the disk. Memory is bounded: two buffers of
 * ACCESSLOG_BUFFER bytes; a line that does not fit while the writer is behind is dropped and
 * counted (accesslog_dropped). */
#ifndef KINESD_ACCESSLOG_H
#define KINESD_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#define ACCESSLOG_BUFFER (1u << 20)

struct accesslog;

/* One request as the log records it. Strings are borrowed for the call; NULL ones are written
 * as null. */
struct accesslog_entry {
    int64_t time_ms; /* wall clock, milliseconds since the epoch */
    const char *request_id;
    const char *account;
    const char *operation;
    const char *stream;
    int status;
    const char *error; /* the answer's __type, NULL on success */
    uint64_t bytes_in, bytes_out;
    uint64_t latency_ns;
};

/* Open path for appending ("-": standard output) and start the writer thread. Returns 0, or
 * -1 after logging why. *out owned by the caller until accesslog_close. */
int accesslog_open(const char *path, struct accesslog **out);

/* Reopen the file by its path before the next write (after a log rotation moved it; SIGHUP).
 * Thread-safe; a file that does not open keeps the previous one (logged). NULL is allowed. */
void accesslog_reopen(struct accesslog *l);

/* Write what is buffered, stop the writer, close the file. NULL is allowed. */
void accesslog_close(struct accesslog *l);

/* Append one line for e. Thread-safe; never waits for I/O. */
void accesslog_write(struct accesslog *l, const struct accesslog_entry *e);

/* Lines dropped because the buffers were full, since open. */
uint64_t accesslog_dropped(const struct accesslog *l);

/* Lines written to the file, since open. */
uint64_t accesslog_lines(const struct accesslog *l);

#endif
