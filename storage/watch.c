/* watch.c: the waiters of store_watch (see watch.h): a doubly linked list under one mutex. */
#include <stdlib.h>

#include "watch.h"

struct store_watch {
    uint64_t log, after;
    store_watch_fn fn;
    void *arg;
    bool listed;
    struct store_watch *prev, *next;
};

void watchlist_init(struct watchlist *l)
{
    pthread_mutex_init(&l->mu, NULL);
    l->head = NULL;
    l->n = 0;
}

static void unlist(struct watchlist *l, struct store_watch *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->listed = false;
    __atomic_sub_fetch(&l->n, 1, __ATOMIC_RELAXED);
}

void watchlist_destroy(struct watchlist *l)
{
    pthread_mutex_lock(&l->mu);
    while (l->head)
        unlist(l, l->head);
    pthread_mutex_unlock(&l->mu);
    pthread_mutex_destroy(&l->mu);
}

int watchlist_watch(struct watchlist *l, uint64_t log, uint64_t after, store_watch_fn fn, void *arg,
                    struct store_watch **out, int (*last_of)(void *ctx, uint64_t log, uint64_t *last),
                    void *ctx)
{
    struct store_watch *w = calloc(1, sizeof *w);
    if (!w)
        return STORE_NOMEM;
    *w = (struct store_watch){.log = log, .after = after, .fn = fn, .arg = arg, .listed = true};
    pthread_mutex_lock(&l->mu);
    w->next = l->head;
    if (w->next)
        w->next->prev = w;
    l->head = w;
    __atomic_add_fetch(&l->n, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->mu);
    *out = w;
    uint64_t last = 0; /* committed before the watch was listed: the fire that told of it is past */
    if (last_of(ctx, log, &last) == 0 && last > after) {
        pthread_mutex_lock(&l->mu);
        if (w->listed) {
            unlist(l, w);
            fn(arg);
        }
        pthread_mutex_unlock(&l->mu);
    }
    return 0;
}

void watchlist_fire(struct watchlist *l, uint64_t log, uint64_t last)
{
    if (!__atomic_load_n(&l->n, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&l->mu);
    for (struct store_watch *w = l->head, *next; w; w = next) {
        next = w->next;
        if ((w->log == log || log == UINT64_MAX) && last > w->after) {
            unlist(l, w);
            w->fn(w->arg);
        }
    }
    pthread_mutex_unlock(&l->mu);
}

bool watchlist_unwatch(struct watchlist *l, struct store_watch *w)
{
    pthread_mutex_lock(&l->mu);
    bool listed = w->listed;
    if (listed)
        unlist(l, w);
    pthread_mutex_unlock(&l->mu);
    free(w);
    return listed;
}
