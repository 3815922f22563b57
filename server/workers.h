/* workers.h: a small fixed pool of threads for the calls that may block (storage reads,
 * metadata commits, PostgreSQL), so that no event loop waits on one. */
#ifndef KINESD_WORKERS_H
#define KINESD_WORKERS_H

#include <stddef.h>

struct workers;

/* Start n threads taking tasks from one queue of at most queue_max waiting tasks. Returns the
 * pool (owned by the caller until workers_free), or NULL after printing why. */
struct workers *workers_new(int n, size_t queue_max);

/* Queue run(arg) for a worker. Returns 0, or -1 when the queue is full (the caller answers a
 * retryable error; run is not called). Thread-safe. */
int workers_submit(struct workers *w, void (*run)(void *arg), void *arg);

/* Run what is queued, then stop and join the threads and free the pool. NULL is allowed. No
 * task may be submitted once this is called. */
void workers_free(struct workers *w);

#endif
