/* resource_policies.c: the resource policies of streams (PutResourcePolicy), kept in metadata
 * rows and compiled in memory.
 *
 * Model: one row "policy/<ARN>" per resource, holding "<stream uid>\n<document>"; the uid ties
 * the policy to one incarnation of the stream, so a stream deleted and created again under
 * the same name has none. In memory: an array sorted by ARN of (ARN, uid, document, compiled
 * policy) behind a rwlock, loaded at open. A change is persisted first, then swapped in under
 * the write lock (nothing is visible before it is durable). At most MAX_POLICIES entries.
 *
 * A shared store: another front-end's change to a policy row is reported (store_meta_watch) and
 * marks the array stale; the next evaluation loads every row again and swaps the array in.
 * GetResourcePolicy reads its row from the store, so it sees a change made anywhere at once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "policy.h"
#include "klog.h"

#define MAX_POLICIES 100000
#define PREFIX "policy/"

struct rp_entry {
    char *arn;
    uint64_t uid;
    char *text;
    struct policy *policy;
};

struct resource_policies {
    pthread_rwlock_t lock;
    size_t n, cap;
    struct rp_entry *e; /* sorted by arn */
    bool stale;         /* atomic: a row may have changed since they were loaded (shared store) */
};

static size_t find(const struct resource_policies *rp, const char *arn, bool *found)
{
    size_t lo = 0, hi = rp->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(rp->e[mid].arn, arn);
        if (!c) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void entry_free(struct rp_entry *e)
{
    free(e->arn);
    free(e->text);
    policy_free(e->policy);
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        abort();
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Insert or replace (write lock held); steals e's strings and policy. */
static void put_entry(struct resource_policies *rp, struct rp_entry *e)
{
    bool found;
    size_t i = find(rp, e->arn, &found);
    if (found) {
        entry_free(&rp->e[i]);
        rp->e[i] = *e;
        return;
    }
    if (rp->n == rp->cap) {
        rp->cap = rp->cap ? rp->cap * 2 : 16;
        rp->e = realloc(rp->e, rp->cap * sizeof *rp->e);
        if (!rp->e)
            abort();
    }
    memmove(&rp->e[i + 1], &rp->e[i], (rp->n - i) * sizeof *rp->e);
    rp->e[i] = *e;
    __atomic_store_n(&rp->n, rp->n + 1, __ATOMIC_RELEASE);
}

static int load_row(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct resource_policies *rp = ctx;
    const char *nl = memchr(val, '\n', vlen);
    if (!nl || klen <= strlen(PREFIX) || rp->n >= MAX_POLICIES)
        return 0;
    char why[200];
    struct policy *p = policy_parse(nl + 1, vlen - (size_t)(nl - val) - 1, true, why, sizeof why);
    if (!p) {
        klog(KLOG_WARN, "ignoring the stored policy of %.*s: %s", (int)klen, key, why);
        return 0;
    }
    struct rp_entry e = {
        .arn = dupn(key + strlen(PREFIX), klen - strlen(PREFIX)),
        .uid = strtoull(val, NULL, 10),
        .text = dupn(nl + 1, vlen - (size_t)(nl - val) - 1),
        .policy = p,
    };
    put_entry(rp, &e);
    return 0;
}

/* The store's report of a changed row (an engine thread; key NULL: any may have). */
static void on_row(void *arg, const char *key)
{
    (void)key;
    __atomic_store_n(&((struct resource_policies *)arg)->stale, true, __ATOMIC_RELEASE);
}

static void entries_free(struct rp_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        entry_free(&e[i]);
    free(e);
}

/* Load every row again if another front-end may have changed one, and swap them in. */
static void refresh(struct api *a)
{
    struct resource_policies *rp = a->policies;
    if (!__atomic_load_n(&rp->stale, __ATOMIC_ACQUIRE) ||
        !__atomic_exchange_n(&rp->stale, false, __ATOMIC_ACQ_REL))
        return;
    struct resource_policies fresh = {0};
    if (store_meta_scan(a->store, PREFIX, load_row, &fresh)) {
        entries_free(fresh.e, fresh.n);
        __atomic_store_n(&rp->stale, true, __ATOMIC_RELEASE); /* the next evaluation tries again */
        return;
    }
    pthread_rwlock_wrlock(&rp->lock);
    struct rp_entry *old = rp->e;
    size_t n = rp->n;
    rp->e = fresh.e;
    rp->cap = fresh.cap;
    __atomic_store_n(&rp->n, fresh.n, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&rp->lock);
    entries_free(old, n);
}

int resource_policies_open(struct api *a)
{
    struct resource_policies *rp = calloc(1, sizeof *rp);
    if (!rp)
        return STORE_IO;
    pthread_rwlock_init(&rp->lock, NULL);
    a->policies = rp;
    int rc = store_shared(a->store) ? store_meta_watch(a->store, PREFIX, on_row, rp) : 0;
    return rc ? rc : store_meta_scan(a->store, PREFIX, load_row, rp);
}

void resource_policies_close(struct api *a)
{
    struct resource_policies *rp = a->policies;
    if (!rp)
        return;
    entries_free(rp->e, rp->n);
    pthread_rwlock_destroy(&rp->lock);
    free(rp);
    a->policies = NULL;
}

static char *row_key(const char *arn)
{
    size_t n = strlen(PREFIX) + strlen(arn) + 1;
    char *k = malloc(n);
    if (!k)
        abort();
    snprintf(k, n, "%s%s", PREFIX, arn);
    return k;
}

int resource_policies_put(struct api *a, const char *arn, uint64_t uid, const char *text, size_t len,
                          struct policy *p)
{
    struct resource_policies *rp = a->policies;
    pthread_rwlock_rdlock(&rp->lock);
    bool found;
    find(rp, arn, &found);
    bool full = !found && rp->n >= MAX_POLICIES;
    pthread_rwlock_unlock(&rp->lock);
    if (full) {
        policy_free(p);
        return 1;
    }
    char head[24];
    int hl = snprintf(head, sizeof head, "%" PRIu64 "\n", uid);
    char *row = malloc((size_t)hl + len);
    if (!row)
        abort();
    memcpy(row, head, (size_t)hl);
    memcpy(row + hl, text, len);
    char *key = row_key(arn);
    int rc = store_meta_put(a->store, key, row, (size_t)hl + len);
    free(key);
    free(row);
    if (rc) {
        policy_free(p);
        return rc;
    }
    struct rp_entry e = {.arn = dupn(arn, strlen(arn)), .uid = uid, .text = dupn(text, len), .policy = p};
    pthread_rwlock_wrlock(&rp->lock);
    put_entry(rp, &e);
    pthread_rwlock_unlock(&rp->lock);
    return 0;
}

int resource_policies_delete(struct api *a, const char *arn)
{
    struct resource_policies *rp = a->policies;
    char *key = row_key(arn);
    int rc = store_meta_put(a->store, key, NULL, 0);
    free(key);
    if (rc && rc != STORE_NOT_FOUND)
        return rc;
    pthread_rwlock_wrlock(&rp->lock);
    bool found;
    size_t i = find(rp, arn, &found);
    if (found) {
        entry_free(&rp->e[i]);
        memmove(&rp->e[i], &rp->e[i + 1], (rp->n - i - 1) * sizeof *rp->e);
        __atomic_store_n(&rp->n, rp->n - 1, __ATOMIC_RELEASE);
    }
    pthread_rwlock_unlock(&rp->lock);
    return 0;
}

const char *resource_policies_text(struct api_ctx *c, const char *arn, uint64_t uid)
{
    struct resource_policies *rp = c->api->policies;
    if (store_shared(c->api->store)) { /* the row as it is now, whichever front-end wrote it */
        char *key = row_key(arn), *v;
        size_t len;
        int rc = store_meta_get(c->api->store, key, &v, &len, NULL);
        free(key);
        if (rc == STORE_NOT_FOUND)
            return NULL;
        if (rc == 0) {
            const char *nl = memchr(v, '\n', len);
            const char *out = nl && strtoull(v, NULL, 10) == uid
                                  ? arena_printf(&c->arena, "%.*s", (int)(len - (size_t)(nl - v) - 1), nl + 1)
                                  : NULL;
            free(v);
            return out;
        }
    }
    pthread_rwlock_rdlock(&rp->lock);
    bool found;
    size_t i = find(rp, arn, &found);
    const char *out = found && rp->e[i].uid == uid ? arena_printf(&c->arena, "%s", rp->e[i].text) : NULL;
    pthread_rwlock_unlock(&rp->lock);
    return out;
}

bool resource_policies_any(struct api *a)
{
    refresh(a);
    return __atomic_load_n(&a->policies->n, __ATOMIC_ACQUIRE) != 0;
}

enum policy_verdict resource_policies_eval(struct api *a, const char *arn, uint64_t uid,
                                           const struct policy_request *r)
{
    struct resource_policies *rp = a->policies;
    refresh(a);
    if (!__atomic_load_n(&rp->n, __ATOMIC_ACQUIRE)) /* the common case: none at all, no lock */
        return POLICY_NONE;
    pthread_rwlock_rdlock(&rp->lock);
    bool found;
    size_t i = find(rp, arn, &found);
    enum policy_verdict v = found && rp->e[i].uid == uid ? policy_eval(rp->e[i].policy, r) : POLICY_NONE;
    pthread_rwlock_unlock(&rp->lock);
    return v;
}
