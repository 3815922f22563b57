/* teststream.c: a small streaming producer for the transports' tests (--test-clock only).
 *
 * POST /_test/stream?n=N&size=S answers N frames of S bytes. A timer thread makes the next frame
 * ready one millisecond after the previous one was pulled and wakes the sink, so the producer
 * behaves like SubscribeToShard: data arrives on another thread, the server pulls it when the
 * client can take it, and at most one frame is ever held. Frame i reads "frame <i>\n" padded
 * with '.' and ending in '\n'. close() reports why the answer ended on stderr, which the tests
 * read to see that a client that went away was noticed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline.h"
#include "klog.h"

struct tp {
    struct api_producer base; /* first: the producer pointer is the struct's */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long n, size, made, pulled; /* mu */
    bool ready, closed;         /* mu */
    size_t off;                 /* mu: bytes of the ready frame already pulled */
    char *frame;
    struct api_sink *sink;
    pthread_t th;
    bool started;
};

static void *tick(void *arg)
{
    struct tp *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->closed && (t->ready || t->made == t->n))
            pthread_cond_wait(&t->cv, &t->mu);
        if (t->closed)
            break;
        pthread_mutex_unlock(&t->mu);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&t->mu);
        if (t->closed)
            break;
        t->ready = true;
        t->made++;
        pthread_mutex_unlock(&t->mu);
        t->sink->wake(t->sink);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void tp_start(struct api_producer *p, struct api_sink *sink)
{
    struct tp *t = (struct tp *)p;
    t->sink = sink;
    t->started = pthread_create(&t->th, NULL, tick, t) == 0;
}

static long tp_pull(struct api_producer *p, char *buf, size_t cap)
{
    struct tp *t = (struct tp *)p;
    long out = 0;
    pthread_mutex_lock(&t->mu);
    if (t->ready) {
        if (t->off == 0) { /* lay out the frame */
            int k = snprintf(t->frame, (size_t)t->size, "frame %ld\n", t->pulled);
            size_t used = k < 0 ? 0 : (size_t)k >= (size_t)t->size ? (size_t)t->size - 1 : (size_t)k;
            memset(t->frame + used, '.', (size_t)t->size - used);
            t->frame[t->size - 1] = '\n';
        }
        size_t n = (size_t)t->size - t->off;
        if (n > cap)
            n = cap;
        memcpy(buf, t->frame + t->off, n);
        t->off += n;
        out = (long)n;
        if (t->off == (size_t)t->size) {
            t->off = 0;
            t->pulled++;
            t->ready = false;
            pthread_cond_signal(&t->cv);
        }
    } else if (t->made == t->n) {
        out = API_PULL_END;
    }
    pthread_mutex_unlock(&t->mu);
    return out;
}

static void tp_close(struct api_producer *p, enum api_stream_end why)
{
    struct tp *t = (struct tp *)p;
    pthread_mutex_lock(&t->mu);
    t->closed = true;
    pthread_cond_signal(&t->cv);
    long pulled = t->pulled;
    pthread_mutex_unlock(&t->mu);
    if (t->started)
        pthread_join(t->th, NULL);
    static const char *const whys[] = {"done", "client gone", "shutdown"};
    /* a warning so that tests, which run at --log-level warn, see it (--test-clock only) */
    klog(KLOG_WARN, "test stream closed (%s) after %ld of %ld frames", whys[why], pulled, t->n);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->frame);
    free(t);
}

struct api_producer *pipeline_test_producer(long n, long size)
{
    struct tp *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base = (struct api_producer){.start = tp_start, .pull = tp_pull, .close = tp_close};
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->n = n;
    t->size = size;
    t->frame = malloc((size_t)size);
    if (!t->frame) {
        free(t);
        return NULL;
    }
    return &t->base;
}
