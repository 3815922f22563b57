/* watch.h: the waiters of store_watch, one list shared by every engine (storage-internal).
 *
 * An engine keeps one struct watchlist, fires it as records commit (watchlist_fire) and
 * implements its table's watch/unwatch entries with watchlist_watch/watchlist_unwatch. A watch
 * fires at most once; fn runs under the list's mutex, so once watchlist_unwatch returns it is
 * not running and will not run. */
#ifndef KINESD_WATCH_H
#define KINESD_WATCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct watchlist {
    pthread_mutex_t mu;
    struct store_watch *head;
    size_t n; /* atomic: read without the mutex to skip an empty list */
};

void watchlist_init(struct watchlist *l);
/* Forget every watch left (their owners cancel them) and release the list. */
void watchlist_destroy(struct watchlist *l);

/* List a watch, then ask last_of(ctx, log, &last) for the log's newest committed position and
 * fire the watch at once if it is past `after` (a record committed before the watch was listed).
 * Returns 0 or STORE_NOMEM. */
int watchlist_watch(struct watchlist *l, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                    struct store_watch **out, int (*last_of)(void *ctx, uint64_t log, uint64_t *last),
                    void *ctx);

/* Fire every watch of log waiting for a position below or at `last`; log UINT64_MAX fires every
 * watch (whatever may have been committed). Cheap when the list is empty. */
void watchlist_fire(struct watchlist *l, uint64_t log, uint64_t last);

/* Cancel and free w; true if it had not fired. */
bool watchlist_unwatch(struct watchlist *l, struct store_watch *w);

#endif
