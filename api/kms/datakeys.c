/* datakeys.c: root key, node key and the data keys records are sealed with (see datakeys.h).
 *
 * Model. Every data key of the store is in memory from datakeys_attach on: one open-addressing
 * table in sodium_malloc'd memory, entries keyed by (log, id), and beside them, per (log,
 * bucket), a pointer entry naming the bucket's newest key, which is the one that seals. A key
 * loaded at start counts as used up (how much it sealed before is not known), so every start
 * seals with fresh keys and no nonce space is ever shared with an earlier run.
 *
 * Pointers handed out stay valid: when the table grows, the old one is kept (wiped and freed at
 * close), and a destroyed key is wiped in every copy. A reader that races a shred of the very
 * key it uses can only fail to open the record (the tag does not check out), never read
 * something else; such records are being trimmed anyway.
 *
 * Front-ends sharing a store (PostgreSQL) each seal with keys they made (a key id another one
 * took first moves creation to the next generation), and open the others' keys by reading
 * their rows on a miss.
 *
 * Creating a key: a random key, wrapped by the node key (or the stream's KMS key) with the
 * row's name as associated data, is written with a compare-and-set (version 0: it must not
 * exist, so two writers, threads or front-ends, never both make one id) and only then entered
 * into the table. No lock is held across that write: a bucket being created is marked pending
 * (under mu), and other threads wanting a key for it wait for the mark to go, then find the
 * new key, so one front-end never makes two keys for one bucket at once. Destroying: the rows
 * are deleted in one commit (a trim's own, for keys whose records it deleted: store_trim_row),
 * then the keys are wiped. A KMS key's deletion wipes the data keys it wrapped and marks its
 * class gone, so a key it wrapped that is entered later (a creation racing the deletion) is
 * entered closed; they stay in the table as closed, so their records fail as records of a gone
 * key. Locks: mu (wrappers, pending creations) before rw (the table); neither is held across
 * I/O. Bounds: at most MAX_KEYS keys (STORE_FULL past it), MAX_KIDS KMS keys, one pending
 * creation per sealing thread. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datakeys.h"
#include "kms.h"
#include "klog.h"

#define MAX_KEYS (1u << 22)
#define MAX_TABLES 32
#define SHRED_BATCH 256
#define NODE_MAGIC "KNK1"
#define NODE_FILE_LEN (4 + 24 + 32 + 16)
#define ROW_LEN (2 + 24 + 32 + 16)
#define WRAP_NODE 0 /* a data key row wrapped by the node key */
#define WRAP_KMS 1  /* ... by a KMS key's material: 36 key id . 4 version (BE) . wrapped */
#define KMS_ROW_LEN (2 + 36 + 4 + 72)

enum { FREE = 0, USED, GONE };

struct ent {
    uint64_t log, b; /* key: (log, id); pointer: (log, bucket) */
    uint64_t id;     /* pointer: the bucket's newest key id */
    uint32_t used;   /* key: records it has sealed or reserved */
    uint8_t state, ptr;
    uint16_t cls; /* key: DATAKEYS_CLASS_NODE, or a KMS class (kid_class); CLOSED: no key bytes */
    unsigned char key[KEYRING_KEY_BYTES];
};

#define CLOSED 0x8000u   /* cls flag: the KMS key that wrapped it is gone; the bytes are wiped */
#define MAX_KIDS 0x7F00u /* KMS keys that wrap data keys, each a class */

struct datakeys {
    unsigned char *root, *node; /* sodium_malloc'd, 32 bytes each */
    bool in_store;              /* a networked store: node key (and default root key) are rows */
    bool root_pending;          /* in_store without a root key source: the store's own */
    struct store *store;
    struct store_keyring kr;
    pthread_rwlock_t rw;    /* the table, kids */
    pthread_mutex_t mu;     /* wraps, pending; never held across I/O */
    pthread_cond_t created; /* a pending creation ended */
    struct pending {
        uint64_t log, bucket;
    } * pending; /* buckets whose key a thread is creating (under mu) */
    size_t npending, cappending;
    struct ent *t;       /* sodium_malloc'd */
    size_t cap, n, gone; /* n counts used entries, gone tombstones */
    uint64_t epoch;      /* atomic: bumped before keys are destroyed (readers' caches) */
    uint64_t instance;   /* unique per datakeys_open, so no cache outlives its keyring */
    struct wrapper {
        uint64_t uid;
        char prev[40], kid[40]; /* "" for the node key */
        int64_t switch_ms;      /* from then on kid wraps, before it prev */
        bool pending;           /* the switch is still to be made */
    } * wraps;                  /* streams whose new data keys a KMS key wraps (under mu) */
    size_t nwraps;
    int64_t next_switch;          /* atomic: the earliest pending switch, INT64_MAX for none */
    char (*kids)[KMS_ID_LEN + 1]; /* class DATAKEYS_CLASS_KMS + i: KMS key kids[i] (under rw) */
    bool *kid_gone;               /* kids[i] is deleted: what it wraps enters closed (under rw) */
    size_t nkids, capkids;
    struct ent *old[MAX_TABLES];
    size_t old_cap[MAX_TABLES], nold;
};

static uint64_t mix(uint64_t log, uint64_t b, int ptr)
{
    uint64_t h =
        log * 0x9E3779B97F4A7C15ull ^ (b + (uint64_t)ptr * 0xD6E8FEB86659FD93ull) * 0xC2B2AE3D27D4EB4Full;
    return h ^ h >> 29;
}

/* The entry for (log, b, ptr) in table t, or NULL. */
static struct ent *find_in(struct ent *t, size_t cap, uint64_t log, uint64_t b, int ptr)
{
    if (!t)
        return NULL;
    for (size_t i = mix(log, b, ptr) & (cap - 1), k = 0; k < cap; i = (i + 1) & (cap - 1), k++) {
        struct ent *e = &t[i];
        if (e->state == FREE)
            return NULL;
        if (e->state == USED && e->log == log && e->b == b && e->ptr == ptr)
            return e;
    }
    return NULL;
}

/* A free slot for a new entry (the caller checked it is not there). */
static struct ent *slot_in(struct ent *t, size_t cap, uint64_t log, uint64_t b, int ptr)
{
    for (size_t i = mix(log, b, ptr) & (cap - 1);; i = (i + 1) & (cap - 1))
        if (t[i].state != USED)
            return &t[i];
}

/* Make room for one more entry (rw held for writing). */
static int reserve(struct datakeys *dk)
{
    if ((dk->n + dk->gone + 1) * 4 <= dk->cap * 3)
        return 0;
    size_t cap = dk->cap ? dk->cap : 1024;
    while ((dk->n + 1) * 2 > cap)
        cap *= 2;
    if (cap > 2 * (size_t)MAX_KEYS * 2 || dk->nold == MAX_TABLES)
        return STORE_FULL;
    struct ent *t = sodium_malloc(cap * sizeof *t);
    if (!t)
        return STORE_NOMEM;
    memset(t, 0, cap * sizeof *t);
    for (size_t i = 0; i < dk->cap; i++)
        if (dk->t[i].state == USED)
            *slot_in(t, cap, dk->t[i].log, dk->t[i].b, dk->t[i].ptr) = dk->t[i];
    if (dk->t) { /* kept: pointers into it may be in use (see the file comment) */
        dk->old[dk->nold] = dk->t;
        dk->old_cap[dk->nold++] = dk->cap;
    }
    dk->t = t;
    dk->cap = cap;
    dk->gone = 0;
    return 0;
}

static void row_name(char out[40], uint64_t log, uint64_t id)
{
    snprintf(out, 40, "dk/%016" PRIx64 "/%016" PRIx64, log, id);
}

/* Wrap/unwrap 32 bytes under kek with ad: out gets nonce (24) . ciphertext (32) . tag (16). */
static void wrap(unsigned char out[72], const unsigned char *key, const unsigned char *kek, const void *ad,
                 size_t adlen)
{
    randombytes_buf(out, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 24, NULL, key, 32, ad, adlen, NULL, out, kek);
}

static int unwrap(unsigned char *key, const unsigned char in[72], const unsigned char *kek, const void *ad,
                  size_t adlen)
{
    return crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL, in + 24, 48, ad, adlen, in, kek) ? -1
                                                                                                        : 0;
}

/* The class of data keys wrapped by KMS key kid (NULL: the node key's), added if new (rw held
 * for writing). Returns the class or -1 (out of classes or memory). */
static int kid_class(struct datakeys *dk, const char *kid)
{
    if (!kid)
        return DATAKEYS_CLASS_NODE;
    for (size_t i = 0; i < dk->nkids; i++)
        if (!strcmp(dk->kids[i], kid))
            return (int)(DATAKEYS_CLASS_KMS + i);
    if (dk->nkids == MAX_KIDS)
        return -1;
    if (dk->nkids == dk->capkids) {
        size_t cap = dk->capkids ? 2 * dk->capkids : 16;
        char(*k)[KMS_ID_LEN + 1] = realloc(dk->kids, cap * sizeof *k);
        if (!k)
            return -1;
        dk->kids = k;
        bool *g = realloc(dk->kid_gone, cap * sizeof *g);
        if (!g)
            return -1;
        dk->kid_gone = g, dk->capkids = cap;
    }
    snprintf(dk->kids[dk->nkids], sizeof dk->kids[0], "%s", kid);
    dk->kid_gone[dk->nkids] = false;
    return (int)(DATAKEYS_CLASS_KMS + dk->nkids++);
}

/* Enter a key wrapped by KMS key kid (NULL: by the node key) (rw held for writing); it becomes
 * its bucket's sealing key if it is the newest. key NULL: a closed key (its KMS key is gone). */
static int enter(struct datakeys *dk, uint64_t log, uint64_t id, const unsigned char *key, uint32_t used,
                 const char *kid)
{
    if (find_in(dk->t, dk->cap, log, id, 0))
        return 0; /* there already (two threads fetched it) */
    int cls = kid_class(dk, kid);
    if (cls < 0)
        return STORE_FULL;
    if (kid && dk->kid_gone[cls - DATAKEYS_CLASS_KMS])
        key = NULL; /* its KMS key was deleted meanwhile */
    if (!key)
        cls |= CLOSED, used = KEYRING_KEY_RECORDS;
    int rc = reserve(dk);
    if (rc)
        return rc;
    struct ent *e = slot_in(dk->t, dk->cap, log, id, 0);
    if (e->state == GONE)
        dk->gone--;
    *e = (struct ent){.log = log, .b = id, .used = used, .state = USED, .cls = (uint16_t)cls};
    if (key)
        memcpy(e->key, key, KEYRING_KEY_BYTES);
    dk->n++;
    uint64_t bucket = id >> 24;
    struct ent *p = find_in(dk->t, dk->cap, log, bucket, 1);
    if (p) {
        if (id > p->id)
            p->id = id;
        return 0;
    }
    if ((rc = reserve(dk)))
        return rc;
    p = slot_in(dk->t, dk->cap, log, bucket, 1);
    if (p->state == GONE)
        dk->gone--;
    *p = (struct ent){.log = log, .b = bucket, .id = id, .state = USED, .ptr = 1};
    dk->n++;
    return 0;
}

/* Make a new key for (log, bucket) after id `after` (~0: none yet), wrapped by KMS key kid (NULL:
 * the node key), stored durably. No lock held: the caller marked the bucket pending. */
static int create_one(struct datakeys *dk, uint64_t log, uint64_t bucket, uint64_t gen, const char *kid);

/* Front-ends sharing a store each seal with keys of their own: when another one took this
 * generation of the bucket's key first (the compare-and-set conflicts), the next is tried. */
static int create(struct datakeys *dk, uint64_t log, uint64_t bucket, uint64_t after, const char *kid)
{
    uint64_t gen = after == UINT64_MAX ? 0 : (after & 0xFFFFFF) + 1;
    int rc = STORE_CONFLICT;
    for (int attempt = 0; attempt < 64 && rc == STORE_CONFLICT; attempt++, gen++)
        rc = create_one(dk, log, bucket, gen, kid);
    return rc;
}

static int create_one(struct datakeys *dk, uint64_t log, uint64_t bucket, uint64_t gen, const char *kid)
{
    if (gen > 0xFFFFFF || bucket >> 40)
        return STORE_FULL;
    if (dk->n >= MAX_KEYS)
        return STORE_FULL;
    uint64_t id = bucket << 24 | gen;
    unsigned char *key = sodium_malloc(KEYRING_KEY_BYTES);
    if (!key)
        return STORE_NOMEM;
    randombytes_buf(key, KEYRING_KEY_BYTES);
    char name[64];
    row_name(name, log, id);
    unsigned char row[KMS_ROW_LEN];
    size_t len = ROW_LEN;
    int rc = 0;
    row[0] = 1;
    if (kid) { /* a KMS-encrypted stream: its KMS key's newest material wraps the data key */
        unsigned char *kek = sodium_malloc(32);
        uint32_t ver;
        if (!kek || kms_material_raw(dk->store, dk->root, kid, 0, kek, &ver)) {
            sodium_free(kek);
            sodium_free(key);
            return STORE_UNAVAILABLE;
        }
        row[1] = WRAP_KMS;
        memcpy(row + 2, kid, 36);
        row[38] = (unsigned char)(ver >> 24), row[39] = (unsigned char)(ver >> 16);
        row[40] = (unsigned char)(ver >> 8), row[41] = (unsigned char)ver;
        wrap(row + 42, key, kek, name, strlen(name));
        sodium_free(kek);
        len = KMS_ROW_LEN;
    } else {
        row[1] = WRAP_NODE;
        wrap(row + 2, key, dk->node, name, strlen(name));
    }
    struct store_row r = {.key = name, .version = 0, .val = row, .len = len};
    rc = store_meta_cas(dk->store, &r, 1);
    if (rc == 0) {
        pthread_rwlock_wrlock(&dk->rw);
        rc = enter(dk, log, id, key, 0, kid);
        pthread_rwlock_unlock(&dk->rw);
    }
    sodium_free(key);
    return rc;
}

/* The sealing key of (log, bucket) with n more records reserved, or its id (~0 for none) in
 * *newest when it has none or it is used up. */
static const unsigned char *current(struct datakeys *dk, uint64_t log, uint64_t bucket, uint32_t n,
                                    uint64_t *id, uint64_t *newest)
{
    const unsigned char *key = NULL;
    *newest = UINT64_MAX;
    pthread_rwlock_rdlock(&dk->rw);
    struct ent *p = find_in(dk->t, dk->cap, log, bucket, 1);
    struct ent *e = p ? find_in(dk->t, dk->cap, log, p->id, 0) : NULL;
    if (p)
        *newest = p->id;
    if (e) {
        uint32_t u = __atomic_load_n(&e->used, __ATOMIC_RELAXED);
        while (u <= KEYRING_KEY_RECORDS - n && !key)
            if (__atomic_compare_exchange_n(&e->used, &u, u + n, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                key = e->key;
                *id = e->b;
            }
    }
    pthread_rwlock_unlock(&dk->rw);
    return key;
}

static void apply_switches(struct datakeys *dk);

/* (mu held) */
static struct pending *pending_find(struct datakeys *dk, uint64_t log, uint64_t bucket)
{
    for (size_t i = 0; i < dk->npending; i++)
        if (dk->pending[i].log == log && dk->pending[i].bucket == bucket)
            return &dk->pending[i];
    return NULL;
}

/* The KMS key new data keys of log are wrapped by now, into kid; false for the node key (mu
 * held). */
static bool wrapping_kid(struct datakeys *dk, uint64_t log, char kid[40])
{
    int64_t now = clock_now_ms();
    kid[0] = 0;
    for (size_t i = 0; i < dk->nwraps; i++)
        if (dk->wraps[i].uid == log >> 24)
            snprintf(kid, 40, "%s", now >= dk->wraps[i].switch_ms ? dk->wraps[i].kid : dk->wraps[i].prev);
    return kid[0] != 0;
}

#define MAX_CREATE_ROUNDS 8 /* new keys used up by other threads before this one got its share */

static int kr_seal_key(void *ctx, uint64_t log, uint64_t bucket, uint32_t n, uint64_t *id,
                       const unsigned char **key)
{
    struct datakeys *dk = ctx;
    int64_t next = __atomic_load_n(&dk->next_switch, __ATOMIC_ACQUIRE);
    if (next != INT64_MAX && next <= clock_now_ms())
        apply_switches(dk);
    uint64_t newest;
    if ((*key = current(dk, log, bucket, n, id, &newest)))
        return 0;
    int rc = STORE_FULL;
    pthread_mutex_lock(&dk->mu);
    for (int round = 0; round < MAX_CREATE_ROUNDS; round++) {
        while (pending_find(dk, log, bucket)) /* another thread is making it: it will be there */
            pthread_cond_wait(&dk->created, &dk->mu);
        if ((*key = current(dk, log, bucket, n, id, &newest))) {
            rc = 0;
            break;
        }
        if (dk->npending == dk->cappending) {
            size_t cap = dk->cappending ? 2 * dk->cappending : 16;
            struct pending *v = realloc(dk->pending, cap * sizeof *v);
            if (!v) {
                rc = STORE_NOMEM;
                break;
            }
            dk->pending = v, dk->cappending = cap;
        }
        dk->pending[dk->npending++] = (struct pending){.log = log, .bucket = bucket};
        char kid[40];
        bool kms = wrapping_kid(dk, log, kid);
        pthread_mutex_unlock(&dk->mu);
        rc = create(dk, log, bucket, newest, kms ? kid : NULL); /* I/O: no lock held */
        pthread_mutex_lock(&dk->mu);
        struct pending *mine = pending_find(dk, log, bucket);
        *mine = dk->pending[--dk->npending];
        pthread_cond_broadcast(&dk->created);
        if (rc)
            break;
        if ((*key = current(dk, log, bucket, n, id, &newest)))
            break;
        rc = STORE_FULL; /* used up at once by others (or closed): make the next one */
    }
    pthread_mutex_unlock(&dk->mu);
    return rc;
}

/* Each reading thread remembers the last key it opened: a scan opens runs of records of one
 * log and key, so most records cost no lock and no probe. A destroyed key bumps the epoch, which
 * empties every cache (a reader that races the bump can only fail to open, as above). */
static uint64_t instances; /* atomic */

static _Thread_local struct {
    uint64_t instance;
    uint64_t log, id, epoch;
    const unsigned char *key;
    uint32_t cls;
} last_opened;

/* A data key another front-end sharing the store made: read its row and enter it, used up (it
 * opens records here, and never seals). No lock held (entering twice is harmless). */
static void fetch(struct datakeys *dk, uint64_t log, uint64_t id)
{
    char name[64];
    row_name(name, log, id);
    char *v;
    size_t len;
    if (store_meta_get(dk->store, name, &v, &len, NULL))
        return;
    const unsigned char *r = (const unsigned char *)v;
    unsigned char *k = sodium_malloc(32), *kek = sodium_malloc(32);
    bool ok = false;
    char kid[37] = "";
    if (k && kek && len == ROW_LEN && r[0] == 1 && r[1] == WRAP_NODE &&
        !unwrap(k, r + 2, dk->node, name, strlen(name))) {
        ok = true;
    } else if (k && kek && len == KMS_ROW_LEN && r[0] == 1 && r[1] == WRAP_KMS) {
        memcpy(kid, r + 2, 36);
        kid[36] = 0;
        uint32_t want = (uint32_t)r[38] << 24 | (uint32_t)r[39] << 16 | (uint32_t)r[40] << 8 | r[41], got;
        ok = !kms_material_raw(dk->store, dk->root, kid, want, kek, &got) && got == want &&
             !unwrap(k, r + 42, kek, name, strlen(name));
    }
    if (ok) {
        pthread_rwlock_wrlock(&dk->rw);
        enter(dk, log, id, k, KEYRING_KEY_RECORDS, kid[0] ? kid : NULL);
        pthread_rwlock_unlock(&dk->rw);
    }
    sodium_free(k);
    sodium_free(kek);
    free(v);
}

static int kr_open_key(void *ctx, uint64_t log, uint64_t id, const unsigned char **key, uint32_t *cls)
{
    struct datakeys *dk = ctx;
    uint64_t epoch = __atomic_load_n(&dk->epoch, __ATOMIC_ACQUIRE);
    if (last_opened.instance == dk->instance && last_opened.log == log && last_opened.id == id &&
        last_opened.epoch == epoch) {
        *key = last_opened.key;
        *cls = last_opened.cls;
        return 0;
    }
    for (int pass = 0;; pass++) {
        pthread_rwlock_rdlock(&dk->rw);
        struct ent *e = find_in(dk->t, dk->cap, log, id, 0);
        if (e && (e->cls & CLOSED)) { /* its KMS key is gone: it opens nothing */
            pthread_rwlock_unlock(&dk->rw);
            return STORE_NOT_FOUND;
        }
        *key = e ? e->key : NULL;
        *cls = e ? e->cls : 0;
        pthread_rwlock_unlock(&dk->rw);
        if (*key || pass || !dk->in_store)
            break;
        fetch(dk, log, id); /* a key another front-end made */
    }
    if (*key) {
        last_opened.instance = dk->instance, last_opened.log = log, last_opened.id = id,
        last_opened.epoch = epoch;
        last_opened.key = *key, last_opened.cls = *cls;
    }
    return *key ? 0 : STORE_NOT_FOUND;
}

struct shred_scan {
    uint64_t log, below_bucket;
    uint64_t ids[SHRED_BATCH];
    size_t n, max;
};

static int shred_visit(void *ctx, const char *key, size_t klen, const char *val, size_t vlen,
                       uint64_t version)
{
    (void)val, (void)vlen, (void)version;
    struct shred_scan *s = ctx;
    char name[64];
    if (klen != 36 || klen >= sizeof name)
        return 0;
    memcpy(name, key, klen);
    name[klen] = 0;
    uint64_t id = strtoull(name + 20, NULL, 16);
    if (id >> 24 >= s->below_bucket)
        return 1; /* rows are in id order: nothing further is due */
    s->ids[s->n++] = id;
    return s->n == s->max;
}

/* The ids of log's oldest keys below below_bucket, at most max (<= SHRED_BATCH), into s. */
static int oldest(struct datakeys *dk, uint64_t log, uint64_t below_bucket, size_t max, struct shred_scan *s)
{
    *s = (struct shred_scan){.log = log, .below_bucket = below_bucket, .max = max};
    char prefix[64];
    snprintf(prefix, sizeof prefix, "dk/%016" PRIx64 "/", log);
    return store_meta_scan(dk->store, prefix, shred_visit, s);
}

/* Wipe the n keys ids of log whose rows are deleted. */
static void wipe(struct datakeys *dk, uint64_t log, const uint64_t *ids, size_t n)
{
    pthread_rwlock_wrlock(&dk->rw);
    __atomic_add_fetch(&dk->epoch, 1, __ATOMIC_ACQ_REL);
    for (size_t i = 0; i < n; i++) {
        for (size_t t = 0; t < dk->nold; t++) {
            struct ent *o = find_in(dk->old[t], dk->old_cap[t], log, ids[i], 0);
            if (o)
                sodium_memzero(o->key, sizeof o->key);
        }
        struct ent *e = find_in(dk->t, dk->cap, log, ids[i], 0);
        if (e) {
            sodium_memzero(e->key, sizeof e->key);
            e->state = GONE;
            dk->n--, dk->gone++;
        }
        struct ent *p = find_in(dk->t, dk->cap, log, ids[i] >> 24, 1);
        if (p && p->id == ids[i]) {
            p->state = GONE;
            dk->n--, dk->gone++;
        }
    }
    pthread_rwlock_unlock(&dk->rw);
}

/* A trim is about to run: the rows of log's oldest keys, each with its bucket's end. */
static int kr_shred_rows(void *ctx, uint64_t log, struct store_trim_row *rows, size_t max, size_t *n)
{
    struct datakeys *dk = ctx;
    struct shred_scan s;
    *n = 0;
    int rc = dk->store ? oldest(dk, log, UINT64_MAX, max < SHRED_BATCH ? max : SHRED_BATCH, &s) : 0;
    for (size_t i = 0; rc == 0 && dk->store && i < s.n; i++) {
        rows[i] = (struct store_trim_row){.end = keyring_bucket_start((s.ids[i] >> 24) + 1), .tag = s.ids[i]};
        row_name(rows[i].key, log, s.ids[i]);
        *n = i + 1;
    }
    return rc;
}

/* The trim committed: wipe the keys whose rows went with it. */
static void kr_shredded(void *ctx, uint64_t log, const struct store_trim_row *rows, size_t n)
{
    struct datakeys *dk = ctx;
    uint64_t ids[SHRED_BATCH];
    size_t k = 0;
    for (size_t i = 0; i < n && k < SHRED_BATCH; i++)
        if (rows[i].gone)
            ids[k++] = rows[i].tag;
    if (k)
        wipe(dk, log, ids, k);
}

/* Log is gone: destroy all of its keys, rows first, then memory. */
static int kr_dropped(void *ctx, uint64_t log)
{
    struct datakeys *dk = ctx;
    if (!dk->store)
        return 0;
    int rc = 0; /* no lock across the scans and the commit: nothing seals for a dropped log */
    for (;;) {
        struct shred_scan s;
        if ((rc = oldest(dk, log, UINT64_MAX, SHRED_BATCH, &s)) || !s.n)
            break;
        struct store_row rows[SHRED_BATCH];
        char names[SHRED_BATCH][64];
        for (size_t i = 0; i < s.n; i++) {
            row_name(names[i], log, s.ids[i]);
            rows[i] = (struct store_row){.key = names[i], .version = STORE_ANY_VERSION};
        }
        if ((rc = store_meta_cas(dk->store, rows, s.n)))
            break;
        wipe(dk, log, s.ids, s.n);
        if (s.n < SHRED_BATCH)
            break;
    }
    return rc;
}

/* ---- the root key ---- */

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* 32 bytes from 64 hex digits, 44 base64 characters, or (raw_ok) 32 raw bytes; trailing
 * whitespace ignored. */
static int parse_key(const unsigned char *s, size_t len, bool raw_ok, unsigned char out[32])
{
    if (raw_ok && len == 32) {
        memcpy(out, s, 32);
        return 0;
    }
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        len--;
    if (len == 64) {
        for (size_t i = 0; i < 32; i++) {
            int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
            if (h < 0 || l < 0)
                return -1;
            out[i] = (unsigned char)(h << 4 | l);
        }
        return 0;
    }
    size_t n;
    if (len == 44 &&
        sodium_base642bin(out, 32, (const char *)s, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) ==
            0 &&
        n == 32)
        return 0;
    return -1;
}

/* Read at most cap bytes of fd into buf. */
static ssize_t read_all(int fd, unsigned char *buf, size_t cap)
{
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    return (ssize_t)n;
}

#define KEY_TEXT_MAX 256

static int root_from_file(const char *path, bool must_be_private, unsigned char out[32])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        klog(KLOG_ERROR, "cannot read the root key file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -2;
    }
    if (must_be_private && (st.st_mode & 077)) {
        fprintf(
            stderr,
            "kinesd: the root key file %s is readable by others (mode %03o); it must be 0600 or stricter\n",
            path, (unsigned)(st.st_mode & 0777));
        close(fd);
        return -2;
    }
    unsigned char *buf = sodium_malloc(KEY_TEXT_MAX);
    ssize_t n = buf ? read_all(fd, buf, KEY_TEXT_MAX) : -1;
    close(fd);
    int rc = n < 0 || parse_key(buf, (size_t)n, true, out) ? -2 : 0;
    if (rc)
        klog(KLOG_ERROR, "the root key file %s must hold 32 bytes (raw, 64 hex digits or base64)", path);
    sodium_free(buf);
    return rc;
}

static int root_from_command(const char *cmd, unsigned char out[32])
{
    FILE *p = popen(cmd, "r");
    if (!p) {
        klog(KLOG_ERROR, "cannot run the root key command: %s", strerror(errno));
        return -2;
    }
    unsigned char *buf = sodium_malloc(KEY_TEXT_MAX);
    size_t n = buf ? fread(buf, 1, KEY_TEXT_MAX, p) : 0;
    int status = pclose(p);
    int rc = !buf || status != 0 || parse_key(buf, n, false, out) ? -2 : 0;
    if (rc)
        klog(KLOG_ERROR, "the root key command must exit 0 and print 32 bytes as 64 hex digits or base64");
    sodium_free(buf);
    return rc;
}

/* The data directory's own root key, created if missing (tests and development). */
static int root_in_dir(const char *dir, unsigned char out[32])
{
    char path[4200];
    snprintf(path, sizeof path, "%s/root.key", dir);
    if (access(path, F_OK) == 0) {
        klog(KLOG_WARN,
             "root key: using %s from the data directory (for tests and development; "
             "pass --root-key-file, --root-key-env or --root-key-command in production)",
             path);
        return root_from_file(path, true, out);
    }
    unsigned char key[32];
    char hex[65];
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(hex, sizeof hex, key, sizeof key);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    hex[64] = '\n';
    bool ok = fd >= 0 && write(fd, hex, 65) == 65 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    memcpy(out, key, 32);
    sodium_memzero(key, sizeof key);
    sodium_memzero(hex, sizeof hex);
    if (!ok) {
        klog(KLOG_ERROR, "cannot create the root key %s: %s", path, strerror(errno));
        return -1;
    }
    klog(KLOG_WARN,
         "root key: created %s in the data directory (for tests and development; "
         "pass --root-key-file, --root-key-env or --root-key-command in production)",
         path);
    return 0;
}

static const char node_ad[] = "kinesd node key v1";

/* Write dir/node.key: node wrapped by root, into a file beside it renamed over it, durably. */
static int write_node_key(const char *dir, const unsigned char *node, const unsigned char *root)
{
    char path[4200], tmp[4210];
    unsigned char file[NODE_FILE_LEN];
    snprintf(path, sizeof path, "%s/node.key", dir);
    memcpy(file, NODE_MAGIC, 4);
    wrap(file + 4, node, root, node_ad, sizeof node_ad - 1);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, file, NODE_FILE_LEN) == NODE_FILE_LEN && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    ok = ok && rename(tmp, path) == 0;
    int dfd = ok ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    ok = ok && dfd >= 0 && fsync(dfd) == 0;
    if (dfd >= 0)
        close(dfd);
    if (!ok) {
        klog(KLOG_ERROR, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Open dir/node.key with the root key, or create it when the directory has none. */
static int node_key(struct datakeys *dk, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/node.key", dir);
    unsigned char file[NODE_FILE_LEN + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read_all(fd, file, sizeof file);
        close(fd);
        if (n != NODE_FILE_LEN || memcmp(file, NODE_MAGIC, 4)) {
            klog(KLOG_ERROR, "%s is not a node key file", path);
            return -2;
        }
        if (unwrap(dk->node, file + 4, dk->root, node_ad, sizeof node_ad - 1)) {
            klog(KLOG_ERROR, "the root key does not open %s: wrong root key (nothing was changed)", path);
            return -2;
        }
        return 0;
    }
    if (errno != ENOENT) {
        klog(KLOG_ERROR, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    randombytes_buf(dk->node, 32);
    return write_node_key(dir, dk->node, dk->root);
}

/* A 32-byte key in row `name` of the store: its wrapped form under kek (or, kek NULL, as it is),
 * created when missing. Returns 0, -2 (it does not open under kek), -1. */
static int key_row(struct store *s, const char *name, const unsigned char *kek, unsigned char *key,
                   bool *created)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        char *v;
        size_t len;
        int rc = store_meta_get(s, name, &v, &len, NULL);
        if (rc == 0) {
            int ok = kek ? len == 72 && unwrap(key, (unsigned char *)v, kek, name, strlen(name)) == 0
                         : len == 32 && (memcpy(key, v, 32), 1);
            sodium_memzero(v, len);
            free(v);
            return ok ? 0 : -2;
        }
        if (rc != STORE_NOT_FOUND)
            return -1;
        unsigned char row[72];
        randombytes_buf(key, 32);
        if (kek)
            wrap(row, key, kek, name, strlen(name));
        else
            memcpy(row, key, 32);
        struct store_row r = {.key = name, .version = 0, .val = row, .len = kek ? 72 : 32};
        rc = store_meta_cas(s, &r, 1);
        sodium_memzero(row, sizeof row);
        if (rc == 0) {
            *created = true;
            return 0;
        }
        if (rc != STORE_CONFLICT) /* else another front-end made it first: read theirs */
            return -1;
    }
    return -1;
}

static int keys_in_store(struct datakeys *dk, struct store *s)
{
    bool created = false;
    if (dk->root_pending) {
        int rc = key_row(s, "keyring/root", NULL, dk->root, &created);
        if (rc) {
            klog(KLOG_ERROR, "cannot read or create the store's root key");
            return -1;
        }
        klog(KLOG_WARN,
             "root key: %s in the store (for tests and development; pass --root-key-file, "
             "--root-key-env or --root-key-command in production)",
             created ? "created" : "using the one");
    }
    int rc = key_row(s, "keyring/node", dk->root, dk->node, &created);
    if (rc == -2)
        klog(KLOG_ERROR, "the root key does not open the store's node key: wrong root key");
    else if (rc)
        klog(KLOG_ERROR, "cannot read or create the store's node key");
    return rc;
}

int datakeys_open(const char *dir, const struct datakeys_root *root, struct datakeys **out)
{
    int given = !!root->file + !!root->env + !!root->command;
    if (given > 1) {
        klog(KLOG_ERROR, "give at most one of --root-key-file, --root-key-env, --root-key-command");
        return -2;
    }
    struct datakeys *dk = calloc(1, sizeof *dk);
    if (!dk)
        return -1;
    pthread_rwlock_init(&dk->rw, NULL);
    pthread_mutex_init(&dk->mu, NULL);
    pthread_cond_init(&dk->created, NULL);
    dk->instance = __atomic_add_fetch(&instances, 1, __ATOMIC_RELAXED);
    dk->next_switch = INT64_MAX;
    dk->root = sodium_malloc(32);
    dk->node = sodium_malloc(32);
    if (!dk->root || !dk->node) {
        datakeys_close(dk);
        return -1;
    }
    int rc;
    if (root->file) {
        rc = root_from_file(root->file, true, dk->root);
    } else if (root->env) {
        const char *v = getenv(root->env);
        rc = v && parse_key((const unsigned char *)v, strlen(v), false, dk->root) == 0 ? 0 : -2;
        if (rc)
            klog(KLOG_ERROR, "the environment variable %s must hold 32 bytes as 64 hex digits or base64",
                 root->env);
    } else if (root->command) {
        rc = root_from_command(root->command, dk->root);
    } else if (dir) {
        rc = root_in_dir(dir, dk->root);
    } else {
        rc = 0;
        dk->root_pending = true;
    }
    dk->in_store = !dir;
    if (rc == 0 && dir)
        rc = node_key(dk, dir);
    if (rc) {
        datakeys_close(dk);
        return rc;
    }
    /* key material must not end up in a core file */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    dk->kr = (struct store_keyring){.seal_key = kr_seal_key,
                                    .open_key = kr_open_key,
                                    .shred_rows = kr_shred_rows,
                                    .shredded = kr_shredded,
                                    .dropped = kr_dropped,
                                    .ctx = dk};
    *out = dk;
    return 0;
}

const struct store_keyring *datakeys_keyring(struct datakeys *dk) { return &dk->kr; }

const unsigned char *datakeys_root_key(const struct datakeys *dk) { return dk->root; }

int datakeys_rotate_root(struct datakeys *dk, const char *dir, const unsigned char *new_root,
                         size_t *materials)
{
    if (!dk->store || !dir)
        return -1;
    /* the KMS key material first: a run stopped before node.key is rewritten still opens with
       the old key, and running it again keeps what is under the new one already */
    int rc = kms_rewrap_all(dk->store, dk->root, new_root, materials);
    if (rc == 0)
        rc = write_node_key(dir, dk->node, new_root);
    if (rc == 0)
        memcpy(dk->root, new_root, 32);
    return rc;
}

struct load {
    struct datakeys *dk;
    int rc;
    char bad[64];
    struct kms_row {
        char name[40];
        unsigned char v[KMS_ROW_LEN];
    } * kms; /* rows wrapped by KMS keys, opened after the scan (it must not call the store) */
    size_t nkms, capkms;
};

static int load_visit(void *ctx, const char *key, size_t klen, const char *val, size_t vlen, uint64_t version)
{
    (void)version;
    struct load *l = ctx;
    char name[64];
    if (klen != 36 || key[19] != '/') {
        snprintf(l->bad, sizeof l->bad, "%.*s", (int)(klen < 40 ? klen : 40), key);
        l->rc = -1;
        return 1;
    }
    memcpy(name, key, klen);
    name[klen] = 0;
    name[19] = 0;
    uint64_t log = strtoull(name + 3, NULL, 16), id = strtoull(name + 20, NULL, 16);
    name[19] = '/';
    unsigned char *k = sodium_malloc(32);
    if (!k) {
        l->rc = -1;
        return 1;
    }
    const unsigned char *v = (const unsigned char *)val;
    if (vlen == KMS_ROW_LEN && v[0] == 1 && v[1] == WRAP_KMS) {
        sodium_free(k);
        if (l->nkms == l->capkms) {
            size_t cap = l->capkms ? 2 * l->capkms : 16;
            struct kms_row *m = realloc(l->kms, cap * sizeof *m);
            if (!m) {
                l->rc = -1;
                return 1;
            }
            l->kms = m, l->capkms = cap;
        }
        memcpy(l->kms[l->nkms].name, name, klen + 1);
        memcpy(l->kms[l->nkms++].v, v, KMS_ROW_LEN);
        return 0;
    }
    if (vlen != ROW_LEN || v[0] != 1 || v[1] != WRAP_NODE || unwrap(k, v + 2, l->dk->node, name, klen)) {
        snprintf(l->bad, sizeof l->bad, "%s", name);
        l->rc = -1;
    } else {
        l->rc = enter(l->dk, log, id, k, KEYRING_KEY_RECORDS, NULL) ? -1 : 0; /* used up */
    }
    sodium_free(k);
    return l->rc;
}

int datakeys_attach(struct datakeys *dk, struct store *store)
{
    dk->store = store;
    if (dk->in_store) {
        int rc = keys_in_store(dk, store);
        if (rc)
            return rc;
    }
    struct load l = {.dk = dk};
    pthread_rwlock_wrlock(&dk->rw);
    int rc = store_meta_scan(store, "dk/", load_visit, &l);
    pthread_rwlock_unlock(&dk->rw);
    if (rc || l.rc) {
        klog(KLOG_ERROR, "cannot load the data keys%s%s (%s)", l.bad[0] ? ": " : "", l.bad,
             rc ? store_strerror(rc) : "it does not open under the node key");
        free(l.kms);
        return -1;
    }
    /* keys wrapped by KMS keys: one whose KMS key is gone stays closed (its records cannot be
       read: a deleted KMS key takes them with it) */
    unsigned char *kek = sodium_malloc(32), *k = sodium_malloc(32);
    size_t closed = 0;
    for (size_t i = 0; kek && k && i < l.nkms; i++) {
        struct kms_row *r = &l.kms[i];
        char kid[37];
        memcpy(kid, r->v + 2, 36);
        kid[36] = 0;
        uint32_t want =
                     (uint32_t)r->v[38] << 24 | (uint32_t)r->v[39] << 16 | (uint32_t)r->v[40] << 8 | r->v[41],
                 got;
        r->name[19] = 0;
        uint64_t log = strtoull(r->name + 3, NULL, 16), id = strtoull(r->name + 20, NULL, 16);
        r->name[19] = '/';
        bool open = !kms_material_raw(store, dk->root, kid, want, kek, &got) && got == want &&
                    !unwrap(k, r->v + 42, kek, r->name, strlen(r->name));
        /* a closed one is kept as such: its records then fail as records of a gone KMS key */
        pthread_rwlock_wrlock(&dk->rw);
        enter(dk, log, id, open ? k : NULL, KEYRING_KEY_RECORDS, kid);
        pthread_rwlock_unlock(&dk->rw);
        if (!open)
            closed++;
    }
    if (closed)
        klog(KLOG_WARN, "%zu data keys stay closed: their KMS keys are gone", closed);
    sodium_free(kek);
    sodium_free(k);
    free(l.kms);
    return 0;
}

/* Mark the keys of stream uid's logs used up, so the next record makes a new one (rw held for
 * writing). */
static void use_up(struct datakeys *dk, uint64_t uid)
{
    for (size_t j = 0; j < dk->cap; j++)
        if (dk->t[j].state == USED && !dk->t[j].ptr && dk->t[j].log >> 24 == uid)
            dk->t[j].used = KEYRING_KEY_RECORDS;
}

/* Make every switch that is due (mu held). */
static void switch_due(struct datakeys *dk, int64_t now)
{
    int64_t next = INT64_MAX;
    pthread_rwlock_wrlock(&dk->rw);
    for (size_t i = 0; i < dk->nwraps;) {
        struct wrapper *w = &dk->wraps[i];
        if (w->pending && w->switch_ms <= now) {
            use_up(dk, w->uid);
            w->pending = false;
        }
        if (!w->pending && !w->kid[0]) { /* the node key again: nothing to remember */
            *w = dk->wraps[--dk->nwraps];
            continue;
        }
        if (w->pending && w->switch_ms < next)
            next = w->switch_ms;
        i++;
    }
    pthread_rwlock_unlock(&dk->rw);
    __atomic_store_n(&dk->next_switch, next, __ATOMIC_RELEASE);
}

static void apply_switches(struct datakeys *dk)
{
    pthread_mutex_lock(&dk->mu);
    switch_due(dk, clock_now_ms());
    pthread_mutex_unlock(&dk->mu);
}

int datakeys_stream_key(struct datakeys *dk, uint64_t uid, const char *prev, const char *kid,
                        int64_t switch_ms)
{
    prev = prev ? prev : "", kid = kid ? kid : "";
    pthread_mutex_lock(&dk->mu);
    size_t i = 0;
    while (i < dk->nwraps && dk->wraps[i].uid != uid)
        i++;
    /* told again (a reload of the stream's row, a restart): nothing changes, and no key is
       retired for nothing */
    bool same = i < dk->nwraps ? !strcmp(dk->wraps[i].prev, prev) && !strcmp(dk->wraps[i].kid, kid) &&
                                     dk->wraps[i].switch_ms == switch_ms
                               : !kid[0] && (!prev[0] || switch_ms <= clock_now_ms());
    if (same) {
        pthread_mutex_unlock(&dk->mu);
        return 0;
    }
    int rc = 0;
    if (i == dk->nwraps) {
        struct wrapper *w = realloc(dk->wraps, (dk->nwraps + 1) * sizeof *w);
        if (w) {
            dk->wraps = w;
            dk->nwraps++;
        } else {
            rc = -1;
        }
    }
    if (rc == 0) {
        struct wrapper *w = &dk->wraps[i];
        *w = (struct wrapper){.uid = uid, .switch_ms = switch_ms, .pending = true};
        snprintf(w->prev, sizeof w->prev, "%s", prev);
        snprintf(w->kid, sizeof w->kid, "%s", kid);
        if (switch_ms < __atomic_load_n(&dk->next_switch, __ATOMIC_ACQUIRE))
            __atomic_store_n(&dk->next_switch, switch_ms, __ATOMIC_RELEASE);
        switch_due(dk, clock_now_ms());
    }
    pthread_mutex_unlock(&dk->mu);
    return rc;
}

int datakeys_class_kid(struct datakeys *dk, uint32_t cls, char kid[KMS_ID_LEN + 1])
{
    int rc = -1;
    pthread_rwlock_rdlock(&dk->rw);
    if (cls >= DATAKEYS_CLASS_KMS && cls - DATAKEYS_CLASS_KMS < dk->nkids) {
        memcpy(kid, dk->kids[cls - DATAKEYS_CLASS_KMS], KMS_ID_LEN + 1);
        rc = 0;
    }
    pthread_rwlock_unlock(&dk->rw);
    return rc;
}

void datakeys_kms_gone(struct datakeys *dk, const char *kid)
{
    pthread_rwlock_wrlock(&dk->rw);
    int cls = kid_class(dk, kid); /* known from now on as gone, if new */
    if (cls >= 0) {
        dk->kid_gone[cls - DATAKEYS_CLASS_KMS] = true;
        __atomic_add_fetch(&dk->epoch, 1, __ATOMIC_ACQ_REL);
        for (size_t j = 0; j < dk->cap; j++) {
            struct ent *e = &dk->t[j];
            if (e->state != USED || e->ptr || e->cls != cls)
                continue;
            for (size_t t = 0; t < dk->nold; t++) {
                struct ent *o = find_in(dk->old[t], dk->old_cap[t], e->log, e->b, 0);
                if (o)
                    sodium_memzero(o->key, sizeof o->key);
            }
            sodium_memzero(e->key, sizeof e->key);
            e->cls |= CLOSED;
            e->used = KEYRING_KEY_RECORDS;
        }
    }
    pthread_rwlock_unlock(&dk->rw);
}

bool datakeys_log_closed(struct datakeys *dk, uint64_t log)
{
    bool found = false;
    pthread_rwlock_rdlock(&dk->rw);
    for (size_t j = 0; j < dk->cap && !found; j++)
        found = dk->t[j].state == USED && !dk->t[j].ptr && dk->t[j].log == log && (dk->t[j].cls & CLOSED);
    pthread_rwlock_unlock(&dk->rw);
    return found;
}

void datakeys_close(struct datakeys *dk)
{
    if (!dk)
        return;
    if (dk->t) {
        sodium_memzero(dk->t, dk->cap * sizeof *dk->t);
        sodium_free(dk->t);
    }
    for (size_t i = 0; i < dk->nold; i++) {
        sodium_memzero(dk->old[i], dk->old_cap[i] * sizeof *dk->old[i]);
        sodium_free(dk->old[i]);
    }
    free(dk->wraps);
    free(dk->kids);
    free(dk->kid_gone);
    free(dk->pending);
    pthread_rwlock_destroy(&dk->rw);
    pthread_mutex_destroy(&dk->mu);
    pthread_cond_destroy(&dk->created);
    sodium_free(dk->root);
    sodium_free(dk->node);
    free(dk);
}
