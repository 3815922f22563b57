/* workers.c: the pool behind workers.h.
 *
 * One locked ring of tasks and a condition variable; each thread takes the oldest task and runs
 * it outside the lock. The ring has a fixed size (queue_max), so a burst of slow calls costs a
 * bounded amount of memory: past it workers_submit refuses and the request is answered with a
 * retryable 503, the way the memory budget is. A task's result goes back to its connection's
 * loop through the loop's queue (conn_job_done), never through the pool. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "workers.h"
#include "klog.h"

struct task {
    void (*run)(void *arg);
    void *arg;
};

struct workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct task *q; /* ring of cap entries; n waiting from head */
    size_t cap, head, n;
    bool stop;
    int nth;
    pthread_t th[];
};

static void *worker_main(void *arg)
{
    pthread_setname_np(pthread_self(), "kinesd-worker"); /* top -H, perf */
    struct workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->n && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->n)
            break; /* stopping and nothing left */
        struct task t = w->q[w->head];
        w->head = (w->head + 1) % w->cap;
        w->n--;
        pthread_mutex_unlock(&w->mu);
        t.run(t.arg);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct workers *workers_new(int n, size_t queue_max)
{
    if (n < 1)
        n = 1;
    if (queue_max < 1)
        queue_max = 1;
    struct workers *w = calloc(1, sizeof *w + (size_t)n * sizeof w->th[0]);
    if (!w || !(w->q = calloc(queue_max, sizeof *w->q))) {
        free(w);
        klog(KLOG_ERROR, "out of memory for the worker pool");
        return NULL;
    }
    w->cap = queue_max;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    for (; w->nth < n; w->nth++)
        if (pthread_create(&w->th[w->nth], NULL, worker_main, w)) {
            klog(KLOG_ERROR, "cannot start worker thread %d", w->nth);
            workers_free(w);
            return NULL;
        }
    return w;
}

int workers_submit(struct workers *w, void (*run)(void *arg), void *arg)
{
    pthread_mutex_lock(&w->mu);
    if (w->n == w->cap || w->stop) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    w->q[(w->head + w->n) % w->cap] = (struct task){run, arg};
    w->n++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void workers_free(struct workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nth; i++)
        pthread_join(w->th[i], NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->q);
    free(w);
}
