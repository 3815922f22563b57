/* admin.h: what the kinesd-admin commands share: opening a data directory, the streams and
 * shards its metadata rows describe, exit codes, and an arena for scans. */
#ifndef KINESD_ADMIN_H
#define KINESD_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h" /* u128, sequence numbers and shard ids as the API shows them */
#include "kms/datakeys.h"
#include "lmdb/backup.h"
#include "store.h"

/* Exit codes (README.md lists them). */
enum {
    ADM_OK = 0,
    ADM_PROBLEMS = 1, /* verify found problems; dump met a record that does not open */
    ADM_USAGE = 2,    /* bad command line */
    ADM_NO_DIR = 3,   /* missing directory, or not a data directory */
    ADM_IN_USE = 4,   /* a server (or another tool) holds the directory a write needs */
    ADM_ROOT_KEY = 5, /* no root key given where one is needed, or a wrong one */
    ADM_NEWER = 6,    /* written by a newer release (a format version this build does not read) */
    ADM_FAILED = 7,   /* I/O error, corrupt database, out of memory, no space */
};

/* A data directory opened for reading: a consistent view (lmdb/backup.h) as a read-only store,
 * with the data keys when the records are encrypted and a root key could be had. */
struct adm_dir {
    const char *path;
    struct store *store;
    struct backup_snap *snap;
    struct datakeys *dk; /* NULL: no keys (unencrypted directory, or none asked for) */
    bool encrypted;      /* the directory has a node key: its records are sealed */
};

/* Open dir for reading. root: where the root key comes from, as with the server's flags (none
 * given: the directory's root.key if it has one). need_keys: fail (ADM_ROOT_KEY) when the
 * records are encrypted and no root key can be had. Prints why on failure and returns an exit
 * code, or 0. */
int adm_open(struct adm_dir *d, const char *dir, const struct datakeys_root *root, bool need_keys);
void adm_close(struct adm_dir *d);

/* The exit code and a message for a STORE_* code of what was done to dir (printed). */
int adm_fail(const char *what, const char *dir, int rc);

/* ---- streams and shards, from the metadata rows (api/streams.c writes them) ---- */

struct adm_shard {
    bool present; /* its row exists and parses */
    uint32_t index;
    u128 start, end;
    int64_t created_ms, closed_ms;
    uint64_t end_pos;
    int32_t parent, adjacent;
    bool pending, closing, sealed;
};

struct adm_stream {
    char name[160];
    char account[16], region[64]; /* its owner; "": the server's own (a header without both) */
    uint64_t uid;
    int status; /* as the server shows it now (stream_status()) */
    bool kms;
    char kms_key[80];
    uint32_t nshards;
    struct adm_shard *shards; /* nshards, owned */
};

struct adm_catalog {
    struct adm_stream *v; /* by uid */
    size_t n;
    uint64_t *dropping; /* uids of retired streams whose logs are still being dropped */
    size_t ndropping;
    char **problems; /* rows that do not parse or do not fit, as sentences (verify reports them) */
    size_t nproblems;
};

int adm_catalog_load(struct store *s, struct adm_catalog *c);
void adm_catalog_free(struct adm_catalog *c);
/* The stream a name or a StreamARN ("arn:aws:kinesis:<region>:<account>:stream/<name>") names;
 * NULL when none does, or (*several set) when a bare name is that of several accounts' or
 * regions' streams. */
struct adm_stream *adm_stream_named(struct adm_catalog *c, const char *name, bool *several);
struct adm_stream *adm_stream_uid(struct adm_catalog *c, uint64_t uid);
bool adm_dropping(const struct adm_catalog *c, uint64_t uid);
const char *adm_status_name(int status);
/* Record a problem (printf-style) in c->problems. */
void adm_problem(struct adm_catalog *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "2026-01-02T03:04:05.678Z" into out[32]. */
void adm_time(char out[32], int64_t ms);

/* ---- an arena for store_records ---- */

struct adm_arena {
    struct adm_block *head;
};
void *adm_arena_alloc(void *arena, size_t n);
/* Wipe (it holds opened records) and free everything. */
void adm_arena_reset(struct adm_arena *a);

/* ---- the commands ---- */

/* The command line, parsed once (main.c). */
struct adm_opts {
    const char *dir;               /* --data-dir, default ./kinesd-data */
    struct datakeys_root root;     /* --root-key FILE, --root-key-env VAR, --root-key-command CMD */
    struct datakeys_root new_root; /* --new-root-key FILE, -env VAR, -command CMD */
    const char *from;              /* dump --from SEQ */
    const char *format;            /* dump --format jsonl|raw */
    bool json;                     /* stat --json */
    bool compact;                  /* backup --compact */
    int npos;
    char **pos; /* the positional arguments after the command */
};

int adm_stat(const struct adm_opts *o);
int adm_dump(const struct adm_opts *o);
int adm_verify(const struct adm_opts *o);
int adm_rotate(const struct adm_opts *o);

#endif
