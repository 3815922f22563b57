/* main.c: command line, startup and orderly shutdown.
 *
 * kinesd accepts its own flags and kinesalite's spellings of the same settings, so a
 * kinesalite command line keeps working. SIGTERM/SIGINT stop the listener, let in-flight
 * requests finish, commit and close the store, and exit 0. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "console.h"
#include "http.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kinesd [options]\n"
            "  --host ADDR            address to listen on (default 127.0.0.1)\n"
            "  --port N               port (default 4567)\n"
            "  --data-dir DIR         data directory (default ./kinesd-data); kinesalite: --path\n"
            "  --store URL            lmdb:DIR (the default, as --data-dir) or postgresql://... (any libpq\n"
            "                         connection string): several kinesd share one PostgreSQL\n"
            "  --ephemeral            temporary data directory, removed on exit; no fsync\n"
            "  --create-stream-ms N   time a stream stays CREATING (default 500); --createStreamMs\n"
            "  --delete-stream-ms N   time a stream stays DELETING (default 500); --deleteStreamMs\n"
            "  --update-stream-ms N   time a stream stays UPDATING (default 500); --updateStreamMs\n"
            "  --shard-limit N        open shards allowed across all streams (default 20000); --shardLimit\n"
            "  --region R             region when a request names none (default us-east-1)\n"
            "  --account-id ID        12-digit account id (default 000000000000)\n"
            "  --sync | --no-sync     fsync every commit (default --sync)\n"
            "  --log-level L          error, warn, info or debug (default info)\n"
            "  --scalings-per-day N   UpdateShardCount calls per stream per rolling 24 h (default 10)\n"
            "  --max-unflushed-mb N   written records not yet in the database before writes get a\n"
            "                         retryable 503 (default 256)\n"
            "  --no-limits            no per-shard or per-account throughput limits\n"
            "  --rate-limit OP=N,...  control-plane calls per second for the account (0: none)\n"
            "  --error-probability P  fail PutRecord(s) entries and GetRecords calls with probability P\n"
            "  --latency-ms N         add N ms to every API request\n"
            "  --test-clock           accept POST /_test/advance-clock?ms=N (tests only)\n"
            "  --auth FILE            verify SigV4 signatures against an AWS credentials file\n"
            "                         (reloaded on SIGHUP); without it any credentials are accepted\n"
            "  --no-console           do not serve the web console at GET /console\n"
            "  --root-key-file F      root key of encryption at rest: a file of mode 0600\n"
            "  --root-key-env VAR     ... or an environment variable, --root-key-command CMD its output\n"
            "                         (64 hex digits or base64; default: DIR/root.key, created if missing)\n"
            "  --no-encryption-at-rest  store records unencrypted (measurements only)\n"
            "  --help, --version\n");
}

static int parse_num(const char *flag, const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) {
        fprintf(stderr, "kinesd: %s expects a number from %ld to %ld, got '%s'\n", flag, min, max, v);
        return -1;
    }
    *out = n;
    return 0;
}

static volatile sig_atomic_t stop, hup;
static void on_signal(int sig)
{
    if (sig == SIGHUP)
        hup = 1;
    else
        stop = 1;
}

enum {
    O_HOST = 256,
    O_PORT,
    O_DIR,
    O_EPHEMERAL,
    O_CREATE,
    O_DELETE,
    O_UPDATE,
    O_LIMIT,
    O_REGION,
    O_ACCOUNT,
    O_SYNC,
    O_NOSYNC,
    O_LOG,
    O_HELP,
    O_VERSION,
    O_SSL,
    O_NOLIMITS,
    O_RATES,
    O_ERRP,
    O_LATENCY,
    O_TESTCLOCK,
    O_SCALINGS,
    O_UNFLUSHED,
    O_AUTH,
    O_NOCONSOLE,
    O_STORE,
    O_ROOTFILE,
    O_ROOTENV,
    O_ROOTCMD,
    O_NOENC,
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},
        {"data-dir", required_argument, 0, O_DIR},
        {"path", required_argument, 0, O_DIR},
        {"ephemeral", no_argument, 0, O_EPHEMERAL},
        {"create-stream-ms", required_argument, 0, O_CREATE},
        {"createStreamMs", required_argument, 0, O_CREATE},
        {"delete-stream-ms", required_argument, 0, O_DELETE},
        {"deleteStreamMs", required_argument, 0, O_DELETE},
        {"update-stream-ms", required_argument, 0, O_UPDATE},
        {"updateStreamMs", required_argument, 0, O_UPDATE},
        {"shard-limit", required_argument, 0, O_LIMIT},
        {"shardLimit", required_argument, 0, O_LIMIT},
        {"region", required_argument, 0, O_REGION},
        {"account-id", required_argument, 0, O_ACCOUNT},
        {"sync", no_argument, 0, O_SYNC},
        {"no-sync", no_argument, 0, O_NOSYNC},
        {"log-level", required_argument, 0, O_LOG},
        {"help", no_argument, 0, O_HELP},
        {"version", no_argument, 0, O_VERSION},
        {"ssl", no_argument, 0, O_SSL},
        {"no-limits", no_argument, 0, O_NOLIMITS},
        {"rate-limit", required_argument, 0, O_RATES},
        {"error-probability", required_argument, 0, O_ERRP},
        {"latency-ms", required_argument, 0, O_LATENCY},
        {"test-clock", no_argument, 0, O_TESTCLOCK},
        {"scalings-per-day", required_argument, 0, O_SCALINGS},
        {"max-unflushed-mb", required_argument, 0, O_UNFLUSHED},
        {"auth", required_argument, 0, O_AUTH},
        {"no-console", no_argument, 0, O_NOCONSOLE},
        {"store", required_argument, 0, O_STORE},
        {"root-key-file", required_argument, 0, O_ROOTFILE},
        {"root-key-env", required_argument, 0, O_ROOTENV},
        {"root-key-command", required_argument, 0, O_ROOTCMD},
        {"no-encryption-at-rest", no_argument, 0, O_NOENC},
        {0, 0, 0, 0},
    };
    const char *store = NULL; /* a PostgreSQL connection string, or NULL for LMDB in dir */
    const char *host = "127.0.0.1", *dir = "./kinesd-data", *region = "us-east-1", *account = "000000000000";
    long port = 4567, create_ms = 500, delete_ms = 500, update_ms = 500, shard_limit = 20000, scalings = 10,
         unflushed_mb = 256;
    int ephemeral = 0, sync = 1, no_limits = 0, test_clock = 0;
    long latency_ms = 0;
    double error_p = 0;
    const char *rates = NULL, *auth = NULL;
    const char *root_file = NULL, *root_env = NULL, *root_cmd = NULL;
    int no_enc = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_HOST: host = optarg; break;
        case O_PORT:
            if (parse_num("--port", optarg, 0, 65535, &port))
                return 2;
            break;
        case O_DIR: dir = optarg; break;
        case O_STORE:
            if (!strncmp(optarg, "lmdb:", 5) && optarg[5]) {
                dir = optarg + 5;
            } else if (!strncmp(optarg, "postgresql://", 13) || !strncmp(optarg, "postgres://", 11)) {
                store = optarg;
            } else {
                fprintf(stderr, "kinesd: --store expects lmdb:DIR or postgresql://..., got '%s'\n", optarg);
                return 2;
            }
            break;
        case O_EPHEMERAL: ephemeral = 1; break;
        case O_CREATE:
            if (parse_num("--create-stream-ms", optarg, 0, 86400000, &create_ms))
                return 2;
            break;
        case O_DELETE:
            if (parse_num("--delete-stream-ms", optarg, 0, 86400000, &delete_ms))
                return 2;
            break;
        case O_UPDATE:
            if (parse_num("--update-stream-ms", optarg, 0, 86400000, &update_ms))
                return 2;
            break;
        case O_LIMIT:
            if (parse_num("--shard-limit", optarg, 1, 1000000, &shard_limit))
                return 2;
            break;
        case O_REGION: region = optarg; break;
        case O_ACCOUNT:
            if (strlen(optarg) != 12 || strspn(optarg, "0123456789") != 12) {
                fprintf(stderr, "kinesd: --account-id expects 12 digits, got '%s'\n", optarg);
                return 2;
            }
            account = optarg;
            break;
        case O_SYNC: sync = 1; break;
        case O_NOSYNC: sync = 0; break;
        case O_LOG:
            if (strcmp(optarg, "error") && strcmp(optarg, "warn") && strcmp(optarg, "info") &&
                strcmp(optarg, "debug")) {
                fprintf(stderr, "kinesd: --log-level expects error, warn, info or debug, got '%s'\n", optarg);
                return 2;
            }
            break;
        case O_SSL: fprintf(stderr, "kinesd: --ssl is not supported; put a TLS proxy in front\n"); return 2;
        case O_NOLIMITS: no_limits = 1; break;
        case O_RATES: rates = optarg; break;
        case O_LATENCY:
            if (parse_num("--latency-ms", optarg, 0, 600000, &latency_ms))
                return 2;
            break;
        case O_TESTCLOCK: test_clock = 1; break;
        case O_ROOTFILE: root_file = optarg; break;
        case O_ROOTENV: root_env = optarg; break;
        case O_ROOTCMD: root_cmd = optarg; break;
        case O_NOENC: no_enc = 1; break;
        case O_UNFLUSHED:
            if (parse_num("--max-unflushed-mb", optarg, 1, 1 << 20, &unflushed_mb))
                return 2;
            break;
        case O_AUTH: auth = optarg; break;
        case O_NOCONSOLE: console_enable(false); break;
        case O_SCALINGS:
            if (parse_num("--scalings-per-day", optarg, 0, 1000000, &scalings))
                return 2;
            break;
        case O_ERRP: {
            char *end;
            error_p = strtod(optarg, &end);
            if (end == optarg || *end || !(error_p >= 0 && error_p <= 1)) {
                fprintf(stderr, "kinesd: --error-probability expects a number from 0 to 1, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        }
        case O_HELP:
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("kinesd %s\n", KINESD_VERSION); return 0;
        default:
            fprintf(stderr, "kinesd: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kinesd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    char tmp[] = "/tmp/kinesd-XXXXXX";
    if (ephemeral) {
        if (!mkdtemp(tmp)) {
            perror("kinesd: mkdtemp");
            return 1;
        }
        dir = tmp;
        sync = 0;
    }
    struct api_config cfg = {
        .data_dir = dir,
        .store = store,
        .sync = sync,
        .create_ms = create_ms,
        .delete_ms = delete_ms,
        .update_ms = update_ms,
        .shard_limit = (int)shard_limit,
        .region = region,
        .account = account,
        .no_limits = no_limits,
        .error_probability = error_p,
        .latency_ms = latency_ms,
        .rate_limits = rates,
        .scalings_per_day = (int)scalings,
        .max_unflushed = (uint64_t)unflushed_mb << 20,
        .auth_file = auth,
        .root_key_file = root_file,
        .root_key_env = root_env,
        .root_key_command = root_cmd,
        .no_encryption_at_rest = no_enc,
    };
    struct api *api;
    int arc = api_open(&cfg, &api);
    if (arc)
        return arc == -2 ? 2 : 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct http *h;
    if (http_start(api, host, (uint16_t)port, test_clock, &h)) {
        api_close(api);
        return 1;
    }
    fprintf(stderr, "kinesd %s listening on %s:%ld, data in %s%s\n", KINESD_VERSION, host, port,
            store ? "PostgreSQL" : dir, sync || store ? "" : " (no fsync)"); /* no password in logs */
    while (!stop) {
        pause();
        if (hup) {
            hup = 0;
            api_reload_auth(api);
        }
    }
    http_stop(h);
    api_close(api);
    if (ephemeral) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "kinesd: could not remove %s\n", tmp);
    }
    return 0;
}
