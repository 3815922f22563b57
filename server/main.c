/* main.c: command line, startup and orderly shutdown.
 *
 * kinesd accepts its own flags and kinesalite's spellings of the same settings, so a
 * kinesalite command line keeps working (--ssl serves TLS with a self-signed certificate).
 *
 * Signals: SIGTERM, SIGINT and SIGHUP are blocked before any thread starts, so every thread
 * inherits the mask, and the main thread alone takes them through a signalfd. SIGHUP reloads
 * the --auth file and reopens the --access-log file (log rotation). The first SIGTERM/SIGINT drains the HTTP
 * front (no new requests; in-flight ones finish, HTTP/2 gets GOAWAY), then the store commits and closes, and
 * kinesd exits 0. A second one while draining exits at once (status 1), without waiting. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "console.h"
#include "http.h"
#include "klog.h"
#include "metrics_port.h"
#include "tls.h"

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
            "  --register-consumer-ms N  time a consumer stays CREATING or DELETING (default 500)\n"
            "  --subscription-s N     a SubscribeToShard answer ends after N seconds (default 300)\n"
            "  --shard-limit N        open shards allowed across all streams (default 20000); --shardLimit\n"
            "  --region R             region when a request names none (default us-east-1)\n"
            "  --account-id ID        12-digit account id (default 000000000000)\n"
            "  --sync | --no-sync     fsync every commit (default --sync)\n"
            "  --log-level L          error, warn, info or debug (default info)\n"
            "  --access-log FILE|-    one JSON line per request, appended to FILE (-: standard output)\n"
            "  --metrics-port N       serve GET /metrics on this port too (same --host); the API port\n"
            "                         serves it as well, unless --auth is on\n"
            "  --scalings-per-day N   UpdateShardCount calls per stream per rolling 24 h (default 10)\n"
            "  --max-unflushed-mb N   written records not yet in the database before writes get a\n"
            "                         retryable 503 (default 256)\n"
            "  --no-limits            no per-shard or per-account throughput limits\n"
            "  --rate-limit OP=N,...  control-plane calls per second for the account (0: none)\n"
            "  --error-probability P  fail PutRecord(s) entries and GetRecords calls with probability P\n"
            "  --latency-ms N         add N ms to every API request\n"
            "  --test-clock           accept POST /_test/advance-clock?ms=N and /_test/stream (tests only)\n"
            "  --tls-cert FILE --tls-key FILE   serve TLS too (same port; PEM files)\n"
            "  --tls-self-signed      serve TLS with a certificate made in the data directory; --ssl\n"
            "  --loops N              event loop threads (default: cores, at least 4)\n"
            "  --max-connections N    open connections (default 10000); past it new ones are closed\n"
            "  --memory-budget-mb N   request bodies and unsent answers held at once (default 1024)\n"
            "  --first-byte-timeout-ms N  connection to first byte (default 10000)\n"
            "  --header-timeout-ms N  first byte of a request to the end of its headers (default 10000)\n"
            "  --idle-timeout-ms N    idle keep-alive connection (default 120000)\n"
            "  --body-timeout-ms N    request body without progress (default 30000)\n"
            "  --send-timeout-ms N    answer the client does not read (default 30000)\n"
            "  --drain-timeout-ms N   shutdown: time for in-flight requests (default 8000)\n"
            "  --h2-max-streams N     concurrent HTTP/2 streams per connection (default 128)\n"
            "  --workers N            threads for calls that may wait on storage: reads, the control\n"
            "                         plane, PostgreSQL (default: cores, at least 4)\n"
            "  --worker-queue N       such calls waiting for a worker (default 1024); past it: 503\n"
            "  --auth FILE            verify SigV4 signatures against an AWS credentials file\n"
            "                         (reloaded on SIGHUP); without it any credentials are accepted\n"
            "  --no-console           do not serve the web console at GET /console\n"
            "  --root-key-file F      root key of encryption at rest: a file of mode 0600\n"
            "  --root-key-env VAR     ... or an environment variable, --root-key-command CMD its output\n"
            "                         (64 hex digits or base64; default: DIR/root.key, created if missing)\n"
            "  --no-encryption-at-rest  store records unencrypted (measurements only)\n"
            "  --kms-seed FILE        create the built-in KMS's keys and aliases listed in FILE (JSON)\n"
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
    O_TLSCERT,
    O_TLSKEY,
    O_TLSSELF,
    O_LOOPS,
    O_MAXCONN,
    O_BUDGET,
    O_T_FIRST,
    O_T_HEADER,
    O_T_IDLE,
    O_T_BODY,
    O_T_SEND,
    O_T_DRAIN,
    O_H2STREAMS,
    O_WORKERS,
    O_WORKER_QUEUE,
    O_REGCONSUMER,
    O_SUBSCRIPTION,
    O_KMSSEED,
    O_ACCESSLOG,
    O_METRICSPORT,
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
        {"tls-cert", required_argument, 0, O_TLSCERT},
        {"tls-key", required_argument, 0, O_TLSKEY},
        {"tls-self-signed", no_argument, 0, O_TLSSELF},
        {"loops", required_argument, 0, O_LOOPS},
        {"max-connections", required_argument, 0, O_MAXCONN},
        {"memory-budget-mb", required_argument, 0, O_BUDGET},
        {"first-byte-timeout-ms", required_argument, 0, O_T_FIRST},
        {"header-timeout-ms", required_argument, 0, O_T_HEADER},
        {"idle-timeout-ms", required_argument, 0, O_T_IDLE},
        {"body-timeout-ms", required_argument, 0, O_T_BODY},
        {"send-timeout-ms", required_argument, 0, O_T_SEND},
        {"drain-timeout-ms", required_argument, 0, O_T_DRAIN},
        {"h2-max-streams", required_argument, 0, O_H2STREAMS},
        {"workers", required_argument, 0, O_WORKERS},
        {"worker-queue", required_argument, 0, O_WORKER_QUEUE},
        {"register-consumer-ms", required_argument, 0, O_REGCONSUMER},
        {"subscription-s", required_argument, 0, O_SUBSCRIPTION},
        {"kms-seed", required_argument, 0, O_KMSSEED},
        {"access-log", required_argument, 0, O_ACCESSLOG},
        {"metrics-port", required_argument, 0, O_METRICSPORT},
        {0, 0, 0, 0},
    };
    const char *host = "127.0.0.1", *dir = "./kinesd-data", *region = "us-east-1", *account = "000000000000";
    long port = 4567, create_ms = 500, delete_ms = 500, update_ms = 500, shard_limit = 20000, scalings = 10,
         unflushed_mb = 256, register_consumer_ms = 500, subscription_s = 300;
    int ephemeral = 0, sync = 1, no_limits = 0, test_clock = 0;
    long latency_ms = 0;
    double error_p = 0;
    const char *rates = NULL, *auth = NULL, *access_log = NULL;
    long metrics_port = -1;
    const char *root_file = NULL, *root_env = NULL, *root_cmd = NULL, *kms_seed = NULL;
    int no_enc = 0;
    const char *store = NULL; /* a PostgreSQL connection string, or NULL for LMDB in dir */
    const char *tls_cert = NULL, *tls_key = NULL;
    int tls_self = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* glibc gives each of up to 8 x cores threads a heap of its own, and a heap keeps the top of
     * its largest burst (a GetRecords answer, a 1 MiB request body: several MiB) after it is
     * freed, beyond malloc_trim's reach. With a dozen threads that retention, not live data,
     * was most of RssAnon after a mix of workloads (62 MB against 33 MB with one heap per
     * core). As many heaps as cores keeps lock contention at the level of the cores. */
    mallopt(M_ARENA_MAX, ncpu > 2 ? (int)ncpu : 2);
    /* glibc's own mmap and trim thresholds stay. A GetRecords answer of 10,000 small records
     * is ~3 MB built and freed per request, with the records it was made from, so with them
     * those pages go back after every request and come again, zeroed, in the next (~900 page
     * faults per request, a quarter of GetRecords' CPU). Heaps that kept 16 MB free at their
     * top saved that but held 50-58 MB of RssAnon under the benchmark, above its 48 MB; 4-10
     * MB saved nothing. What would save both is not to allocate those buffers per request. */
    long loops = ncpu > 4 ? ncpu : 4, max_conns = 10000, budget_mb = 1024, t_first = 10000, t_header = 10000,
         t_idle = 120000, t_body = 30000, t_send = 30000, t_drain = 8000, h2_streams = 128,
         workers = ncpu > 4 ? ncpu : 4, worker_queue = 1024;
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
        case O_LOG: {
            enum klog_level lv;
            if (klog_parse_level(optarg, &lv)) {
                fprintf(stderr, "kinesd: --log-level expects error, warn, info or debug, got '%s'\n", optarg);
                return 2;
            }
            klog_set_level(lv);
            break;
        }
        case O_ACCESSLOG: access_log = optarg; break;
        case O_METRICSPORT:
            if (parse_num("--metrics-port", optarg, 0, 65535, &metrics_port))
                return 2;
            break;
        case O_SSL:
        case O_TLSSELF: tls_self = 1; break;
        case O_TLSCERT: tls_cert = optarg; break;
        case O_TLSKEY: tls_key = optarg; break;
#define NUMFLAG(O, name, lo, hi, var)              \
    case O:                                        \
        if (parse_num(name, optarg, lo, hi, &var)) \
            return 2;                              \
        break;
            NUMFLAG(O_LOOPS, "--loops", 1, 64, loops)
            NUMFLAG(O_MAXCONN, "--max-connections", 1, 10000000, max_conns)
            NUMFLAG(O_BUDGET, "--memory-budget-mb", 1, 1048576, budget_mb)
            NUMFLAG(O_T_FIRST, "--first-byte-timeout-ms", 1, 86400000, t_first)
            NUMFLAG(O_T_HEADER, "--header-timeout-ms", 1, 86400000, t_header)
            NUMFLAG(O_T_IDLE, "--idle-timeout-ms", 1, 86400000, t_idle)
            NUMFLAG(O_T_BODY, "--body-timeout-ms", 1, 86400000, t_body)
            NUMFLAG(O_T_SEND, "--send-timeout-ms", 1, 86400000, t_send)
            NUMFLAG(O_T_DRAIN, "--drain-timeout-ms", 0, 86400000, t_drain)
            NUMFLAG(O_H2STREAMS, "--h2-max-streams", 1, 10000, h2_streams)
            NUMFLAG(O_WORKERS, "--workers", 1, 256, workers)
            NUMFLAG(O_WORKER_QUEUE, "--worker-queue", 1, 1000000, worker_queue)
#undef NUMFLAG
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
        case O_KMSSEED: kms_seed = optarg; break;
        case O_UNFLUSHED:
            if (parse_num("--max-unflushed-mb", optarg, 1, 1 << 20, &unflushed_mb))
                return 2;
            break;
        case O_AUTH: auth = optarg; break;
        case O_NOCONSOLE: console_enable(false); break;
        case O_REGCONSUMER:
            if (parse_num("--register-consumer-ms", optarg, 0, 86400000, &register_consumer_ms))
                return 2;
            break;
        case O_SUBSCRIPTION:
            if (parse_num("--subscription-s", optarg, 1, 86400, &subscription_s))
                return 2;
            break;
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
    if ((tls_cert != NULL) != (tls_key != NULL) || (tls_cert && tls_self)) {
        fprintf(stderr,
                "kinesd: TLS needs --tls-cert FILE and --tls-key FILE together, or --tls-self-signed\n");
        return 2;
    }
    SSL_CTX *tls = NULL;
    if (tls_cert && !(tls = tls_open(tls_cert, tls_key, NULL)))
        return 2;
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
        .register_consumer_ms = register_consumer_ms,
        .subscription_ms = subscription_s * 1000,
        .kms_seed = kms_seed,
        .access_log = access_log,
    };
    /* every connection is a descriptor: take all the descriptors the hard limit allows */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    /* before any thread exists: every thread inherits the blocked signals */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("kinesd: signalfd");
        return 1;
    }
    struct api *api;
    int arc = api_open(&cfg, &api);
    if (arc)
        return arc == -2 ? 2 : 1;
    if (tls_self) {
        char tdir[4096];
        snprintf(tdir, sizeof tdir, "%s/tls", dir);
        mkdir(dir, 0700); /* a PostgreSQL store has no data directory of its own */
        if (!(tls = tls_open(NULL, NULL, tdir))) {
            api_close(api);
            return 2;
        }
    }
    struct http_config hc = {
        .host = host,
        .port = (uint16_t)port,
        .test_clock = test_clock,
        .api_metrics = !auth, /* under --auth, scrapes go to --metrics-port */
        .tls = tls,
        .loops = (int)loops,
        .max_conns = max_conns,
        .budget = (size_t)budget_mb << 20,
        .first_byte_ms = (int)t_first,
        .header_ms = (int)t_header,
        .idle_ms = (int)t_idle,
        .body_ms = (int)t_body,
        .send_ms = (int)t_send,
        .drain_ms = (int)t_drain,
        .h2_streams = (int)h2_streams,
        .workers = (int)workers,
        .worker_queue = worker_queue,
    };
    struct http *h;
    if (http_start(api, &hc, &h)) {
        api_close(api);
        SSL_CTX_free(tls);
        return 1;
    }
    struct metrics_port *mp = NULL;
    if (metrics_port >= 0 && metrics_port_start(http_pipeline(h), host, (uint16_t)metrics_port, &mp)) {
        http_stop(h);
        api_close(api);
        SSL_CTX_free(tls);
        return 1;
    }
    klog(KLOG_DEBUG, "event loops %ld, at most %ld connections, memory budget %ld MiB, %s limits", loops,
         max_conns, budget_mb, no_limits ? "no" : "with");
    klog(KLOG_INFO, "version %s listening on %s:%ld%s, data in %s%s", KINESD_VERSION, host, port,
         tls ? " (HTTP and HTTPS)" : "", store ? "PostgreSQL" : dir,
         sync || store ? "" : " (no fsync)"); /* no password in logs */
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t n = read(sfd, &si, sizeof si);
        if (n != sizeof si)
            continue; /* EINTR */
        if (si.ssi_signo != SIGHUP)
            break;
        api_reload_auth(api);
        api_reopen_logs(api);
    }
    http_drain(h);
    while (!http_drained(h)) {
        struct pollfd pfd = {sfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) > 0 && read(sfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGHUP)
                continue;
            klog(KLOG_WARN, "second signal, exiting at once");
            _exit(1);
        }
    }
    metrics_port_stop(mp);
    http_stop(h);
    api_close(api);
    SSL_CTX_free(tls);
    if (ephemeral) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            klog(KLOG_WARN, "could not remove %s", tmp);
    }
    return 0;
}
