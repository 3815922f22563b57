/* main.c: kinesd-admin, the offline and live administration tool of an lmdb data directory.
 *
 * It links storage/ (the views and copies of lmdb/backup.h, the record format) and, from the
 * API layer, only what defines what the server stores without being HTTP: the key hierarchy
 * (kms/datakeys.h: the root key opens the node key and KMS key material, which open the data
 * keys records are sealed with) and the codecs of sequence numbers and shard ids, so that its
 * answers name records exactly as a Kinesis client sees them. Reading commands (stat, dump,
 * verify, backup) work on a consistent view and change nothing, so they may run while the
 * server does; writing commands (restore, compact, rotate-root-key) lock the directory as the
 * server does and refuse one in use. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include "admin.h"

static void usage(FILE *f)
{
    fputs("usage: kinesd-admin [--data-dir DIR] [--root-key-file FILE | --root-key-env VAR |\n"
          "                    --root-key-command CMD] COMMAND [ARGS]\n"
          "  stat [--json]                      streams, shards, records, sizes\n"
          "  dump STREAM [SHARD] [--from SEQ] [--format jsonl|raw]\n"
          "                                     records with sequence numbers, times, keys\n"
          "  verify                             check every record and the metadata\n"
          "  backup DEST [--compact]            a consistent copy, also while the server runs\n"
          "  restore SRC DATA_DIR               a backup into a new data directory\n"
          "  compact                            rewrite the database without free pages (offline)\n"
          "  rotate-root-key --root-key-file OLD --new-root-key-file NEW   (offline; or -env,\n"
          "                                     -command)\n"
          "DIR defaults to ./kinesd-data; the root key options are the server's (default:\n"
          "DIR/root.key when it has one; --root-key is short for --root-key-file). Exit status: 0 ok,\n"
          "1 problems found, 2 usage, 3 no data directory, 4 directory in use, 5 root key\n"
          "missing or wrong, 6 newer format, 7 failure.\n",
          f);
}

int adm_fail(const char *what, const char *dir, int rc)
{
    switch (rc) {
    case STORE_NOT_FOUND:
        fprintf(stderr, "kinesd-admin: %s: not a kinesd data directory (no data.mdb)\n", dir);
        return ADM_NO_DIR;
    case STORE_BUSY:
        fprintf(stderr, "kinesd-admin: %s is in use by a running server or another tool: stop it first\n",
                dir);
        return ADM_IN_USE;
    case STORE_INVALID:
        fprintf(stderr,
                "kinesd-admin: %s: written by a newer release (a format version this build does not read)\n",
                dir);
        return ADM_NEWER;
    case STORE_CONFLICT:
        fprintf(stderr, "kinesd-admin: %s already holds a data directory: give a new or empty one\n", dir);
        return ADM_USAGE;
    default: fprintf(stderr, "kinesd-admin: %s %s: %s\n", what, dir, store_strerror(rc)); return ADM_FAILED;
    }
}

int adm_open(struct adm_dir *d, const char *dir, const struct datakeys_root *root, bool need_keys)
{
    *d = (struct adm_dir){.path = dir};
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kinesd-admin: %s: no such directory\n", dir);
        return ADM_NO_DIR;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (access(path, F_OK))
        return adm_fail("cannot read", dir, STORE_NOT_FOUND);
    snprintf(path, sizeof path, "%s/node.key", dir);
    d->encrypted = access(path, F_OK) == 0;
    snprintf(path, sizeof path, "%s/root.key", dir);
    bool given = root->file || root->env || root->command;
    bool own = !given && access(path, F_OK) == 0;
    if (d->encrypted && (given || own)) {
        /* never without a key source when the directory has none: that would create one */
        int rc = datakeys_open(dir, root, &d->dk);
        if (rc)
            return rc == -2 ? ADM_ROOT_KEY : ADM_FAILED;
    } else if (d->encrypted && need_keys) {
        fprintf(stderr,
                "kinesd-admin: the records in %s are encrypted: give --root-key-file FILE, --root-key-env "
                "VAR or --root-key-command CMD, as to the server\n",
                dir);
        return ADM_ROOT_KEY;
    }
    struct store_config cfg = {
        .engine = "snapshot", .dir = dir, .keyring = d->dk ? datakeys_keyring(d->dk) : NULL};
    int rc = store_open(&cfg, &d->store);
    if (rc) {
        adm_close(d);
        return adm_fail("cannot read", dir, rc);
    }
    d->snap = backup_snap_of(d->store);
    if (d->dk && (rc = datakeys_attach(d->dk, d->store))) {
        adm_close(d);
        return rc == -2 ? ADM_ROOT_KEY : ADM_FAILED;
    }
    return 0;
}

void adm_close(struct adm_dir *d)
{
    store_close(d->store);
    datakeys_close(d->dk);
    d->store = NULL;
    d->dk = NULL;
}

/* ---- the arena ---- */

struct adm_block {
    struct adm_block *next;
    size_t used, cap;
    _Alignas(16) char mem[];
};

void *adm_arena_alloc(void *arena, size_t n)
{
    struct adm_arena *a = arena;
    n = (n + 15) & ~(size_t)15;
    struct adm_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        if (!(b = malloc(sizeof *b + cap)))
            return NULL;
        *b = (struct adm_block){.next = a->head, .cap = cap};
        a->head = b;
    }
    void *p = b->mem + b->used;
    b->used += n;
    return p;
}

void adm_arena_reset(struct adm_arena *a)
{
    for (struct adm_block *b = a->head, *next; b; b = next) {
        next = b->next;
        sodium_memzero(b->mem, b->used); /* opened records: plaintext */
        free(b);
    }
    a->head = NULL;
}

void adm_time(char out[32], int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* ---- the commands that copy ---- */

/* Copy data directory src into dest (backup and restore are the same copy). */
static int copy_dir(const char *src, const char *dest, bool compact, uint64_t *from_log)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", src);
    if (access(path, F_OK))
        return adm_fail("cannot copy", src, STORE_NOT_FOUND);
    int rc = backup_copy(src, dest, compact, from_log);
    if (rc == STORE_NOT_FOUND) { /* src is there: dest cannot be made */
        fprintf(stderr, "kinesd-admin: cannot create %s: its parent directory does not exist\n", dest);
        return ADM_NO_DIR;
    }
    return rc ? adm_fail("cannot copy into", rc == STORE_CONFLICT || rc == STORE_BUSY ? dest : src, rc) : 0;
}

static int cmd_backup(const struct adm_opts *o)
{
    if (o->npos != 1) {
        usage(stderr);
        return ADM_USAGE;
    }
    uint64_t from_log = 0;
    int rc = copy_dir(o->dir, o->pos[0], o->compact, &from_log);
    if (rc == 0)
        printf("backed up %s to %s (%llu records from the write-ahead log)\n", o->dir, o->pos[0],
               (unsigned long long)from_log);
    return rc;
}

static int cmd_restore(const struct adm_opts *o)
{
    if (o->npos != 2) {
        usage(stderr);
        return ADM_USAGE;
    }
    int rc = copy_dir(o->pos[0], o->pos[1], false, NULL);
    if (rc == 0)
        printf("restored %s into %s\n", o->pos[0], o->pos[1]);
    return rc;
}

static int cmd_compact(const struct adm_opts *o)
{
    if (o->npos != 0) {
        usage(stderr);
        return ADM_USAGE;
    }
    struct stat st;
    if (stat(o->dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kinesd-admin: %s: no such directory\n", o->dir);
        return ADM_NO_DIR;
    }
    uint64_t before = 0, after = 0;
    int rc = backup_compact(o->dir, &before, &after);
    if (rc)
        return adm_fail("cannot compact", o->dir, rc);
    printf("compacted %s/data.mdb: %llu -> %llu bytes\n", o->dir, (unsigned long long)before,
           (unsigned long long)after);
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        O_DIR = 1,
        O_ROOT,
        O_ROOTENV,
        O_ROOTCMD,
        O_NEWROOT,
        O_NEWROOTENV,
        O_NEWROOTCMD,
        O_FROM,
        O_FORMAT,
        O_JSON,
        O_COMPACT,
        O_HELP
    };
    static const struct option opts[] = {
        {"data-dir", required_argument, 0, O_DIR},
        {"root-key-file", required_argument, 0, O_ROOT},
        {"root-key", required_argument, 0, O_ROOT},
        {"new-root-key-file", required_argument, 0, O_NEWROOT},
        {"new-root-key", required_argument, 0, O_NEWROOT},
        {"root-key-env", required_argument, 0, O_ROOTENV},
        {"root-key-command", required_argument, 0, O_ROOTCMD},
        {"new-root-key-env", required_argument, 0, O_NEWROOTENV},
        {"new-root-key-command", required_argument, 0, O_NEWROOTCMD},
        {"from", required_argument, 0, O_FROM},
        {"format", required_argument, 0, O_FORMAT},
        {"json", no_argument, 0, O_JSON},
        {"compact", no_argument, 0, O_COMPACT},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    if (sodium_init() < 0) {
        fprintf(stderr, "kinesd-admin: libsodium does not initialize\n");
        return ADM_FAILED;
    }
    struct adm_opts o = {.dir = "./kinesd-data"};
    for (int c; (c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1;) {
        switch (c) {
        case 'd':
        case O_DIR: o.dir = optarg; break;
        case O_ROOT: o.root.file = optarg; break;
        case O_ROOTENV: o.root.env = optarg; break;
        case O_ROOTCMD: o.root.command = optarg; break;
        case O_NEWROOT: o.new_root.file = optarg; break;
        case O_NEWROOTENV: o.new_root.env = optarg; break;
        case O_NEWROOTCMD: o.new_root.command = optarg; break;
        case O_FROM: o.from = optarg; break;
        case O_FORMAT: o.format = optarg; break;
        case O_JSON: o.json = true; break;
        case O_COMPACT: o.compact = true; break;
        case 'h':
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return ADM_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return ADM_USAGE;
    }
    const char *cmd = argv[optind];
    o.pos = argv + optind + 1;
    o.npos = argc - optind - 1;
    static const struct {
        const char *name;
        int (*fn)(const struct adm_opts *);
    } cmds[] = {
        {"stat", adm_stat},
        {"dump", adm_dump},
        {"verify", adm_verify},
        {"backup", cmd_backup},
        {"restore", cmd_restore},
        {"compact", cmd_compact},
        {"rotate-root-key", adm_rotate},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmds[i].name, cmd)) {
            int rc = cmds[i].fn(&o);
            if (fflush(stdout) || ferror(stdout)) {
                fprintf(stderr, "kinesd-admin: cannot write the output: %s\n", strerror(errno));
                return ADM_FAILED;
            }
            return rc;
        }
    fprintf(stderr, "kinesd-admin: unknown command %s\n", cmd);
    usage(stderr);
    return ADM_USAGE;
}
