/*
 * kbench — load generator for Kinesis Data Streams compatible HTTP servers.
 *
 * Speaks plain HTTP/1.1 with keep-alive over blocking sockets, one thread per
 * connection.  Requests carry a syntactically complete (but unverifiable)
 * SigV4 Authorization header, which is what local emulators expect; with
 * --sign KEY:SECRET each request is signed for real (SigV4 over the headers
 * sent and the body's SHA-256, dated now, region us-east-1), for a server that
 * verifies signatures (kinesd --auth).
 *
 * Modes:
 *   create      CreateStream, then poll DescribeStreamSummary until ACTIVE
 *   putrecord   N connections sending PutRecord (random data + keys)
 *   putrecords  N connections sending PutRecords batches
 *   getrecords  optional fill, then TRIM_HORIZON + GetRecords loops per shard
 *   fanout      --consumers consumers subscribed (SubscribeToShard) to every shard
 *               while --connections producers send PutRecords: put-to-event latency
 *   freeport    print a currently free TCP port on 127.0.0.1 (helper)
 *   disksync    time 500 writes of 2,000 bytes, each followed by fdatasync, in a
 *               file overwritten in place in --dir: the floor under a durable
 *               acknowledgement on that disk at that moment (helper)
 *   diskwrite   write --mib MiB (default 256) in 1 MiB writes to a new file in
 *               --dir, then one fdatasync: the disk's sequential write bandwidth,
 *               the ceiling for large-record PutRecords on that disk (helper)
 *
 * --trivial-server makes putrecord, putrecords and getrecords run against a
 * server inside kbench itself that reads each request and answers a canned,
 * realistically sized 200: the load generator's own ceiling on this machine.
 *
 * With --pid, a sampler thread reads the server's /proc/PID/status every 100 ms
 * while the workers run and reports the peak RssAnon (anonymous memory: heap,
 * stacks, anonymous maps; not page cache or a file map's clean pages) next to
 * VmHWM (peak resident set, file-backed pages included).
 *
 * Only loopback endpoints are accepted, every loop is bounded by a deadline
 * or a count, and every run stops by itself.
 *
 * Build:
 *   cc -std=c11 -O2 -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
 *      -Wvla -D_GNU_SOURCE -pthread -o build/kbench tools/bench/kbench.c \
 *      -lcrypto -pthread
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Constants                                                                 */
/* ------------------------------------------------------------------------ */

#define TARGET_PREFIX "Kinesis_20131202."
#define AMZ_DATE "20260101T000000Z"
#define AUTH_VALUE                                                     \
    "AWS4-HMAC-SHA256 "                                                \
    "Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, " \
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "        \
    "Signature="                                                       \
    "0000000000000000000000000000000000000000000000000000000000000000"

#define MAX_HEADER_BYTES (64u * 1024u)
#define MAX_BODY_BYTES (512u * 1024u * 1024u)
#define MAX_ITER_LEN 4096
#define MAX_SHARDS 10000
#define MAX_STREAM_NAME 128
#define MAX_SHARD_ID 128
#define MAX_HASH_KEY 64
#define PKEY_LEN 16
#define POOL_BYTES_BUDGET (8u * 1024u * 1024u)
#define POOL_MAX_ENTRIES 256
#define FILL_MAX_CONSEC_ERRORS 20
#define FILL_CAP_SECONDS 120.0
#define COUNT_CAP_SECONDS 600.0
#define CREATE_POLL_NS 20000000L       /* 20 ms */
#define ERROR_BACKOFF_NS 1000000L      /* 1 ms */
#define RECONNECT_BACKOFF_NS 10000000L /* 10 ms */
#define FIRST_ERROR_SHOW 2000

enum mode {
    MODE_NONE = 0,
    MODE_CREATE,
    MODE_PUTRECORD,
    MODE_PUTRECORDS,
    MODE_GETRECORDS,
    MODE_FREEPORT,
    MODE_DISKSYNC,
    MODE_DISKWRITE,
    MODE_FANOUT
};

enum work_kind { WORK_PUTRECORD, WORK_PUTRECORDS, WORK_FILL, WORK_GETRECORDS };

/* ------------------------------------------------------------------------ */
/* Options and global state                                                  */
/* ------------------------------------------------------------------------ */

struct options {
    const char *host;
    long port;
    const char *stream;
    const char *dir; /* disksync */
    long shards;
    enum mode mode;
    long connections; /* 0 = mode default */
    double seconds;
    int seconds_set;
    long long count; /* 0 = unlimited (time bound) */
    long record_size;
    long batch;
    long limit;
    long fill_per_shard;
    int no_fill;
    long pid; /* 0 = none */
    long timeout_s;
    long mib;           /* diskwrite */
    int trivial_server; /* answer from the built-in canned server */
    long consumers;     /* fanout */
    const char *sign;   /* --sign KEY:SECRET, or NULL */
};

static struct options g_opt = {
    .host = "127.0.0.1",
    .port = 4567,
    .stream = "kbench",
    .shards = 4,
    .mode = MODE_NONE,
    .connections = 0,
    .seconds = 10.0,
    .seconds_set = 0,
    .count = 0,
    .record_size = 100,
    .batch = 500,
    .limit = 10000,
    .fill_per_shard = 25000,
    .no_fill = 0,
    .pid = 0,
    .timeout_s = 30,
    .mib = 256,
    .trivial_server = 0,
    .consumers = 4,
};

static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static char g_host_header[300];

static atomic_int g_first_error_shown;
static atomic_int g_first_io_error_shown;
static atomic_llong g_budget; /* remaining requests when --count */
static pthread_barrier_t g_barrier;
static uint64_t g_deadline_ns; /* set between the two barrier waits */

/* ------------------------------------------------------------------------ */
/* Small utilities                                                           */
/* ------------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("clock_gettime");
        exit(1);
    }
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_seed(unsigned salt)
{
    uint64_t seed = 0;
    if (RAND_bytes((unsigned char *)&seed, (int)sizeof seed) != 1) {
        seed = now_ns() ^ ((uint64_t)getpid() << 32);
    }
    seed ^= (uint64_t)salt * 0x9E3779B97F4A7C15ull;
    return seed ? seed : 0x853c49e6748fea9bull;
}

static void rng_fill(uint64_t *s, unsigned char *dst, size_t n)
{
    while (n >= 8) {
        uint64_t v = rng_next(s);
        memcpy(dst, &v, 8);
        dst += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t v = rng_next(s);
        memcpy(dst, &v, n);
    }
}

static void rng_pkey(uint64_t *s, char out[PKEY_LEN])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = rng_next(s);
    for (int i = 0; i < PKEY_LEN; i++) {
        out[i] = hex[v & 15u];
        v >>= 4;
    }
}

/* ------------------------------------------------------------------------ */
/* Growable byte buffer                                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} buf_t;

static int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        return -1;
    }
    size_t need = b->len + extra + 1; /* room for a terminating NUL */
    if (need <= b->cap) {
        return 0;
    }
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (np == NULL) {
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

static int buf_append(buf_t *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) != 0) {
        return -1;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int buf_str(buf_t *b, const char *s) { return buf_append(b, s, strlen(s)); }

static int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[1];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -1;
    }
    if (buf_reserve(b, (size_t)n) != 0) {
        return -1;
    }
    va_start(ap, fmt);
    int m = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (m != n) {
        return -1;
    }
    b->len += (size_t)n;
    return 0;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Minimal JSON scanning (enough for Kinesis responses)                     */
/* ------------------------------------------------------------------------ */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
    }
    return p;
}

/* Locate the value of "key" (first occurrence); returns pointer to the
 * first character of the value or NULL. */
static const char *json_find_value(const char *body, size_t len, const char *key)
{
    char pat[160];
    int n = snprintf(pat, sizeof pat, "\"%s\"", key);
    if (n < 0 || (size_t)n >= sizeof pat) {
        return NULL;
    }
    const char *p = body;
    const char *end = body + len;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), pat, (size_t)n);
        if (q == NULL) {
            return NULL;
        }
        const char *v = skip_ws(q + n, end);
        if (v < end && *v == ':') {
            return skip_ws(v + 1, end);
        }
        p = q + n;
    }
    return NULL;
}

/* Decode a JSON string starting at *p (which must be '"').  Returns length,
 * -1 malformed/not a string, -2 null, -3 too long. */
static long json_decode_string(const char *v, const char *end, char *out, size_t outsz)
{
    if (v >= end) {
        return -1;
    }
    if ((size_t)(end - v) >= 4 && memcmp(v, "null", 4) == 0) {
        return -2;
    }
    if (*v != '"') {
        return -1;
    }
    size_t o = 0;
    for (const char *p = v + 1; p < end; p++) {
        char c = *p;
        if (c == '"') {
            if (o >= outsz) {
                return -3;
            }
            out[o] = '\0';
            return (long)o;
        }
        if (c == '\\') {
            if (++p >= end) {
                return -1;
            }
            switch (*p) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                if (end - p < 5) {
                    return -1;
                }
                unsigned cp = 0;
                for (int i = 1; i <= 4; i++) {
                    char h = p[i];
                    cp <<= 4;
                    if (h >= '0' && h <= '9') {
                        cp |= (unsigned)(h - '0');
                    } else if (h >= 'a' && h <= 'f') {
                        cp |= (unsigned)(h - 'a' + 10);
                    } else if (h >= 'A' && h <= 'F') {
                        cp |= (unsigned)(h - 'A' + 10);
                    } else {
                        return -1;
                    }
                }
                if (cp >= 0x80) {
                    return -1; /* never needed for iterators / ids */
                }
                c = (char)cp;
                p += 4;
                break;
            }
            default: return -1;
            }
        }
        if (o + 1 >= outsz) {
            return -3;
        }
        out[o++] = c;
    }
    return -1;
}

static long json_get_string(const char *body, size_t len, const char *key, char *out, size_t outsz)
{
    const char *v = json_find_value(body, len, key);
    if (v == NULL) {
        return -4;
    }
    return json_decode_string(v, body + len, out, outsz);
}

/* Reads a non-negative integer value; returns -1 if absent/invalid. */
static long long json_get_uint(const char *body, size_t len, const char *key)
{
    const char *v = json_find_value(body, len, key);
    const char *end = body + len;
    if (v == NULL || v >= end || *v < '0' || *v > '9') {
        return -1;
    }
    long long r = 0;
    while (v < end && *v >= '0' && *v <= '9') {
        if (r > (LLONG_MAX - 9) / 10) {
            return -1;
        }
        r = r * 10 + (*v - '0');
        v++;
    }
    return r;
}

/* Count records ("SequenceNumber" keys) and decoded "Data" payload bytes. */
static void scan_records(const char *body, size_t len, uint64_t *nrec, uint64_t *nbytes)
{
    static const char seq[] = "\"SequenceNumber\"";
    static const char dat[] = "\"Data\"";
    const char *end = body + len;
    const char *p = body;
    uint64_t n = 0, bytes = 0;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), seq, sizeof seq - 1);
        if (q == NULL) {
            break;
        }
        n++;
        p = q + sizeof seq - 1;
    }
    p = body;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), dat, sizeof dat - 1);
        if (q == NULL) {
            break;
        }
        const char *v = skip_ws(q + sizeof dat - 1, end);
        p = q + sizeof dat - 1;
        if (v >= end || *v != ':') {
            continue;
        }
        v = skip_ws(v + 1, end);
        if (v >= end || *v != '"') {
            continue;
        }
        v++;
        /* base64 has no quote; an escape ("\/") is rare, so look for the closing quote with
         * memchr and walk the characters only when the value holds a backslash */
        const char *q2 = memchr(v, '"', (size_t)(end - v));
        const char *s = q2 ? q2 : end;
        size_t chars = (size_t)(s - v), pad = 0;
        if (memchr(v, '\\', chars) != NULL) {
            chars = 0;
            for (s = v; s < end && *s != '"'; s++) {
                if (*s == '\\' && ++s >= end) {
                    break; /* count the escaped character only */
                }
                pad += *s == '=';
                chars++;
            }
        } else {
            for (const char *t = s; t > v && t[-1] == '='; t--) {
                pad++;
            }
        }
        if (chars >= 4) {
            size_t dec = chars / 4 * 3;
            bytes += dec > pad ? dec - pad : 0;
        }
        p = s;
    }
    *nrec = n;
    *nbytes = bytes;
}

/* ------------------------------------------------------------------------ */
/* HTTP client                                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    int fd;
    int close_pending;
    uint64_t nreq;   /* responses completed on this socket */
    buf_t in;        /* raw bytes from the socket */
    buf_t dechunk;   /* body after chunked decoding */
    buf_t hdr;       /* request header scratch */
    size_t consumed; /* bytes of `in` belonging to the last response */
    int status;
    const char *body;
    size_t body_len;
    char err[256]; /* last transport error */
    int err_errno; /* errno of the last transport error, or 0 */
} conn_t;

static void conn_init(conn_t *c)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0) {
        (void)close(c->fd); /* the descriptor is released even when close fails */
    }
    c->fd = -1;
    c->close_pending = 0;
    c->nreq = 0;
    c->in.len = 0;
    c->consumed = 0;
}

static void conn_free(conn_t *c)
{
    conn_close(c);
    buf_free(&c->in);
    buf_free(&c->dechunk);
    buf_free(&c->hdr);
}

static void conn_seterr(conn_t *c, const char *what, int err)
{
    c->err_errno = err;
    if (err != 0) {
        char tmp[128];
        const char *msg = strerror_r(err, tmp, sizeof tmp); /* GNU variant */
        (void)snprintf(c->err, sizeof c->err, "%s: %s", what, msg);
    } else {
        (void)snprintf(c->err, sizeof c->err, "%s", what);
    }
}

static int conn_open(conn_t *c)
{
    conn_close(c);
    int fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_seterr(c, "socket", errno);
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        conn_seterr(c, "setsockopt(TCP_NODELAY)", errno);
        (void)close(fd);
        return -1;
    }
    struct timeval tv = {(time_t)g_opt.timeout_s, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
        conn_seterr(c, "setsockopt(timeout)", errno);
        (void)close(fd);
        return -1;
    }
    int r;
    do {
        r = connect(fd, (const struct sockaddr *)&g_addr, g_addrlen);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        conn_seterr(c, "connect", errno);
        (void)close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

/* Read at least one byte (making room for `want` more). 1 = ok, 0 = EOF,
 * -1 = error. */
static int conn_read(conn_t *c, size_t want)
{
    if (want < 16384) {
        want = 16384;
    }
    if (buf_reserve(&c->in, want) != 0) {
        conn_seterr(c, "out of memory", 0);
        return -1;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            return 1;
        }
        if (n == 0) {
            conn_seterr(c, "connection closed by server", 0);
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            conn_seterr(c, "response timeout", 0);
        } else {
            conn_seterr(c, "recv", errno);
        }
        return -1;
    }
}

static int send_all(conn_t *c, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)iovcnt;
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            conn_seterr(c, errno == EAGAIN ? "send timeout" : "send", errno == EAGAIN ? 0 : errno);
            return -1;
        }
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* ---- SigV4 (--sign) ---- */

static char g_sign_key[128], g_sign_secret[128];

static void hex_of(char *out, const unsigned char *p, size_t n)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = 0;
}

static void hmac256(unsigned char out[32], const void *key, size_t klen, const char *msg)
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

/* The Authorization header's value for op with this body at amz_date (YYYYMMDDTHHMMSSZ),
 * signing content-type, host, x-amz-date and x-amz-target, as send_request sends them. The
 * signing key is derived once per thread and day. */
static void sigv4(char *out, size_t cap, const char *op, const char *body, size_t len, const char *amz_date)
{
    static __thread char key_day[9];
    static __thread unsigned char kx[32];
    if (memcmp(key_day, amz_date, 8)) {
        char secret[160], day[9];
        memcpy(day, amz_date, 8);
        day[8] = 0;
        snprintf(secret, sizeof secret, "AWS4%s", g_sign_secret);
        hmac256(kx, secret, strlen(secret), day);
        hmac256(kx, kx, 32, "us-east-1");
        hmac256(kx, kx, 32, "kinesis");
        hmac256(kx, kx, 32, "aws4_request");
        memcpy(key_day, day, 9);
    }
    unsigned char h[32];
    char body_hex[65], creq_hex[65], sig_hex[65];
    unsigned int hn = 32;
    EVP_Digest(body, len, h, &hn, EVP_sha256(), NULL);
    hex_of(body_hex, h, 32);
    char creq[1024];
    snprintf(creq, sizeof creq,
             "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:%s\nx-amz-date:%s\n"
             "x-amz-target:" TARGET_PREFIX "%s\n\ncontent-type;host;x-amz-date;x-amz-target\n%s",
             g_host_header, amz_date, op, body_hex);
    EVP_Digest(creq, strlen(creq), h, &hn, EVP_sha256(), NULL);
    hex_of(creq_hex, h, 32);
    char sts[256];
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%.8s/us-east-1/kinesis/aws4_request\n%s", amz_date,
             amz_date, creq_hex);
    hmac256(h, kx, 32, sts);
    hex_of(sig_hex, h, 32);
    snprintf(out, cap,
             "AWS4-HMAC-SHA256 Credential=%s/%.8s/us-east-1/kinesis/aws4_request, "
             "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=%s",
             g_sign_key, amz_date, sig_hex);
}

static int send_request(conn_t *c, const char *op, const char *body, size_t len)
{
    c->hdr.len = 0;
    if (g_opt.sign) {
        char amz_date[32], auth[512];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
        sigv4(auth, sizeof auth, op, body, len, amz_date);
        if (buf_printf(&c->hdr,
                       "POST / HTTP/1.1\r\n"
                       "Host: %s\r\n"
                       "Content-Type: application/x-amz-json-1.1\r\n"
                       "X-Amz-Target: " TARGET_PREFIX "%s\r\n"
                       "X-Amz-Date: %s\r\n"
                       "Authorization: %s\r\n"
                       "Content-Length: %zu\r\n"
                       "\r\n",
                       g_host_header, op, amz_date, auth, len) != 0) {
            conn_seterr(c, "out of memory", 0);
            return -1;
        }
    } else if (buf_printf(&c->hdr,
                          "POST / HTTP/1.1\r\n"
                          "Host: %s\r\n"
                          "Content-Type: application/x-amz-json-1.1\r\n"
                          "X-Amz-Target: " TARGET_PREFIX "%s\r\n"
                          "X-Amz-Date: " AMZ_DATE "\r\n"
                          "Authorization: " AUTH_VALUE "\r\n"
                          "Content-Length: %zu\r\n"
                          "\r\n",
                          g_host_header, op, len) != 0) {
        conn_seterr(c, "out of memory", 0);
        return -1;
    }
    struct iovec iov[2];
    iov[0].iov_base = c->hdr.p;
    iov[0].iov_len = c->hdr.len;
    iov[1].iov_base = (void *)(uintptr_t)body;
    iov[1].iov_len = len;
    return send_all(c, iov, len > 0 ? 2 : 1);
}

static int ci_prefix(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && strncasecmp(line, name, n) == 0 && line[n] == ':';
}

static int ci_contains(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(s + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Find "\r\n" in c->in starting at offset `from`; returns offset or -1. */
static long find_crlf(const conn_t *c, size_t from)
{
    if (from >= c->in.len) {
        return -1;
    }
    const char *q = memmem(c->in.p + from, c->in.len - from, "\r\n", 2);
    return q ? (long)(q - c->in.p) : -1;
}

/* 0 = ok, -1 = error, -2 = EOF before the first byte of the response */
static int read_response(conn_t *c)
{
    size_t hdr_end = 0;
    long long content_length = -1;
    int chunked = 0;

    c->dechunk.len = 0;
    c->close_pending = 0;
    for (;;) {
        size_t scanned = 0;
        for (;;) {
            if (c->in.len >= 4) {
                size_t from = scanned > 3 ? scanned - 3 : 0;
                const char *e = memmem(c->in.p + from, c->in.len - from, "\r\n\r\n", 4);
                if (e != NULL) {
                    hdr_end = (size_t)(e - c->in.p) + 4;
                    break;
                }
            }
            scanned = c->in.len;
            if (c->in.len > MAX_HEADER_BYTES) {
                conn_seterr(c, "response header too large", 0);
                return -1;
            }
            int r = conn_read(c, 0);
            if (r == 0 || (r < 0 && c->err_errno == ECONNRESET)) {
                /* -2 lets the caller retry a stale keep-alive socket */
                return c->in.len == 0 ? -2 : -1;
            }
            if (r < 0) {
                return -1;
            }
        }

        const char *h = c->in.p;
        if (hdr_end < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' || h[9] < '1' || h[9] > '5' ||
            h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9') {
            conn_seterr(c, "malformed HTTP status line", 0);
            return -1;
        }
        c->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
        int http10 = h[7] == '0';

        content_length = -1;
        chunked = 0;
        int keep_alive_seen = 0;
        const char *p = memmem(h, hdr_end, "\r\n", 2) + 2;
        const char *hend = h + hdr_end - 2;
        while (p < hend) {
            const char *eol = memmem(p, (size_t)(hend - p) + 2, "\r\n", 2);
            if (eol == NULL) {
                break;
            }
            size_t ll = (size_t)(eol - p);
            if (ci_prefix(p, ll, "content-length")) {
                const char *v = p + sizeof "content-length";
                while (v < eol && (*v == ' ' || *v == '\t')) {
                    v++;
                }
                long long cl = 0;
                int digits = 0;
                while (v < eol && *v >= '0' && *v <= '9') {
                    if (cl > (long long)MAX_BODY_BYTES) {
                        break;
                    }
                    cl = cl * 10 + (*v - '0');
                    v++;
                    digits++;
                }
                if (digits == 0 || cl > (long long)MAX_BODY_BYTES) {
                    conn_seterr(c, "bad Content-Length", 0);
                    return -1;
                }
                content_length = cl;
            } else if (ci_prefix(p, ll, "transfer-encoding")) {
                if (ci_contains(p, ll, "chunked")) {
                    chunked = 1;
                }
            } else if (ci_prefix(p, ll, "connection")) {
                if (ci_contains(p, ll, "close")) {
                    c->close_pending = 1;
                }
                if (ci_contains(p, ll, "keep-alive")) {
                    keep_alive_seen = 1;
                }
            }
            p = eol + 2;
        }
        if (http10 && !keep_alive_seen) {
            c->close_pending = 1;
        }
        if (c->status >= 100 && c->status < 200) {
            /* interim response: drop it and read the real one */
            memmove(c->in.p, c->in.p + hdr_end, c->in.len - hdr_end);
            c->in.len -= hdr_end;
            continue;
        }
        break;
    }

    if (chunked) {
        size_t pos = hdr_end;
        for (;;) {
            long eol;
            while ((eol = find_crlf(c, pos)) < 0) {
                if (c->in.len - pos > 1024) {
                    conn_seterr(c, "bad chunk header", 0);
                    return -1;
                }
                if (conn_read(c, 0) <= 0) {
                    return -1;
                }
            }
            size_t sz = 0;
            int digits = 0;
            for (size_t i = pos; i < (size_t)eol; i++) {
                char ch = c->in.p[i];
                unsigned d;
                if (ch >= '0' && ch <= '9') {
                    d = (unsigned)(ch - '0');
                } else if (ch >= 'a' && ch <= 'f') {
                    d = (unsigned)(ch - 'a' + 10);
                } else if (ch >= 'A' && ch <= 'F') {
                    d = (unsigned)(ch - 'A' + 10);
                } else {
                    break;
                }
                if (sz > MAX_BODY_BYTES) {
                    break;
                }
                sz = sz * 16 + d;
                digits++;
            }
            if (digits == 0 || sz > MAX_BODY_BYTES || c->dechunk.len + sz > MAX_BODY_BYTES) {
                conn_seterr(c, "bad chunk size", 0);
                return -1;
            }
            pos = (size_t)eol + 2;
            if (sz == 0) {
                /* trailers, terminated by an empty line */
                for (;;) {
                    while ((eol = find_crlf(c, pos)) < 0) {
                        if (c->in.len - pos > MAX_HEADER_BYTES) {
                            conn_seterr(c, "trailers too large", 0);
                            return -1;
                        }
                        if (conn_read(c, 0) <= 0) {
                            return -1;
                        }
                    }
                    size_t line_start = pos;
                    pos = (size_t)eol + 2;
                    if ((size_t)eol == line_start) {
                        break;
                    }
                }
                break;
            }
            while (c->in.len - pos < sz + 2) {
                if (conn_read(c, sz + 2 - (c->in.len - pos)) <= 0) {
                    return -1;
                }
            }
            if (buf_append(&c->dechunk, c->in.p + pos, sz) != 0) {
                conn_seterr(c, "out of memory", 0);
                return -1;
            }
            if (c->in.p[pos + sz] != '\r' || c->in.p[pos + sz + 1] != '\n') {
                conn_seterr(c, "bad chunk terminator", 0);
                return -1;
            }
            pos += sz + 2;
        }
        c->consumed = pos;
        if (buf_reserve(&c->dechunk, 0) != 0) {
            conn_seterr(c, "out of memory", 0);
            return -1;
        }
        c->dechunk.p[c->dechunk.len] = '\0';
        c->body = c->dechunk.p;
        c->body_len = c->dechunk.len;
        return 0;
    }

    if (content_length >= 0) {
        size_t need = hdr_end + (size_t)content_length;
        while (c->in.len < need) {
            if (conn_read(c, need - c->in.len) <= 0) {
                return -1;
            }
        }
        c->consumed = need;
        c->body = c->in.p + hdr_end;
        c->body_len = (size_t)content_length;
        return 0;
    }

    if (c->status == 204 || c->status == 304) {
        c->consumed = hdr_end;
        c->body = c->in.p + hdr_end;
        c->body_len = 0;
        return 0;
    }

    /* No framing: body runs until the server closes the connection. */
    for (;;) {
        if (c->in.len - hdr_end > MAX_BODY_BYTES) {
            conn_seterr(c, "response body too large", 0);
            return -1;
        }
        int r = conn_read(c, 0);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            return -1;
        }
    }
    c->close_pending = 1;
    c->consumed = c->in.len;
    c->body = c->in.p + hdr_end;
    c->body_len = c->in.len - hdr_end;
    return 0;
}

/* Send one request and read its response.  0 = got an HTTP response
 * (c->status / c->body valid until the next call), -1 = transport error. */
static int conn_request(conn_t *c, const char *op, const char *body, size_t len)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->close_pending) {
            conn_close(c);
        }
        if (c->consumed > 0) {
            memmove(c->in.p, c->in.p + c->consumed, c->in.len - c->consumed);
            c->in.len -= c->consumed;
            c->consumed = 0;
        }
        if (c->fd < 0 && conn_open(c) != 0) {
            return -1;
        }
        int reused = c->nreq > 0;
        if (send_request(c, op, body, len) != 0) {
            conn_close(c);
            if (reused) {
                continue; /* server may have closed an idle keep-alive socket */
            }
            return -1;
        }
        int r = read_response(c);
        if (r == 0) {
            c->nreq++;
            return 0;
        }
        conn_close(c);
        if (r == -2 && reused) {
            continue;
        }
        return -1;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Error reporting                                                           */
/* ------------------------------------------------------------------------ */

static void report_http_error(const char *op, const conn_t *c)
{
    if (atomic_exchange(&g_first_error_shown, 1) == 0) {
        size_t n = c->body_len < FIRST_ERROR_SHOW ? c->body_len : FIRST_ERROR_SHOW;
        fprintf(stderr, "kbench: first error: %s -> HTTP %d: %.*s%s\n", op, c->status, (int)n, c->body,
                n < c->body_len ? "..." : "");
    }
}

static void report_io_error(const char *op, const conn_t *c)
{
    if (atomic_exchange(&g_first_io_error_shown, 1) == 0) {
        fprintf(stderr, "kbench: first transport error: %s: %s\n", op, c->err);
    }
}

/* ------------------------------------------------------------------------ */
/* Shards                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    char id[MAX_SHARD_ID + 1];
    char start_hash[MAX_HASH_KEY + 1];
    int has_hash;
    int closed;
} shard_t;

static shard_t *g_shards;
static int g_nshards;

/* ------------------------------------------------------------------------ */
/* Workers                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    shard_t *sh;
    char *iter; /* MAX_ITER_LEN + 1 bytes */
    int have_iter;
    long fill_left;
    int consec_errors;
} cursor_t;

typedef struct {
    int id;
    pthread_t th;
    enum work_kind kind;
    conn_t conn;
    uint64_t rng;
    buf_t req;

    /* payload pool: base64 strings of record_size random bytes */
    char *pool;
    size_t pool_stride; /* bytes per entry (b64 length) */
    size_t pool_b64len;
    unsigned pool_n;

    cursor_t *cur;
    int ncur;

    int connect_failed;

    /* stats */
    uint64_t requests;
    uint64_t records;
    uint64_t bytes;
    uint64_t errors;    /* non-200 answers */
    uint64_t io_errors; /* transport failures */
    uint64_t failed_records;
    uint64_t aux_requests; /* GetShardIterator */
    uint64_t drains;
    uint64_t *lat;
    size_t nlat;
    size_t caplat;
    int lat_oom;
} worker_t;

static void lat_push(worker_t *w, uint64_t ns)
{
    if (w->nlat == w->caplat) {
        if (w->lat_oom) {
            return;
        }
        size_t ncap = w->caplat ? w->caplat * 2 : 65536;
        uint64_t *np = realloc(w->lat, ncap * sizeof *np);
        if (np == NULL) {
            w->lat_oom = 1;
            return;
        }
        w->lat = np;
        w->caplat = ncap;
    }
    w->lat[w->nlat++] = ns;
}

static int worker_make_pool(worker_t *w)
{
    size_t rs = (size_t)g_opt.record_size;
    size_t n = POOL_BYTES_BUDGET / (rs ? rs : 1);
    if (n < 1) {
        n = 1;
    }
    if (n > POOL_MAX_ENTRIES) {
        n = POOL_MAX_ENTRIES;
    }
    w->pool_b64len = 4 * ((rs + 2) / 3);
    w->pool_stride = w->pool_b64len + 1;
    w->pool_n = (unsigned)n;
    w->pool = malloc(w->pool_stride * n);
    unsigned char *raw = malloc(rs ? rs : 1);
    if (w->pool == NULL || raw == NULL) {
        free(raw);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        rng_fill(&w->rng, raw, rs);
        int m = EVP_EncodeBlock((unsigned char *)w->pool + i * w->pool_stride, raw, (int)rs);
        if (m < 0 || (size_t)m != w->pool_b64len) {
            free(raw);
            return -1;
        }
    }
    free(raw);
    return 0;
}

static const char *pool_pick(worker_t *w)
{
    unsigned i = (unsigned)(rng_next(&w->rng) % w->pool_n);
    return w->pool + (size_t)i * w->pool_stride;
}

static int should_stop(void) { return now_ns() >= g_deadline_ns; }

static int claim_budget(void)
{
    if (g_opt.count <= 0) {
        return 1;
    }
    return atomic_fetch_sub(&g_budget, 1) > 0;
}

/* Issue a request and classify the outcome; records latency when asked. */
static int do_request(worker_t *w, const char *op, int record_latency)
{
    uint64_t t0 = now_ns();
    int r = conn_request(&w->conn, op, w->req.p, w->req.len);
    uint64_t t1 = now_ns();
    if (r != 0) {
        w->io_errors++;
        report_io_error(op, &w->conn);
        sleep_ns(RECONNECT_BACKOFF_NS);
        return -1;
    }
    if (record_latency) {
        lat_push(w, t1 - t0);
    }
    if (w->conn.status != 200) {
        w->errors++;
        report_http_error(op, &w->conn);
        sleep_ns(ERROR_BACKOFF_NS);
        return -1;
    }
    return 0;
}

static int build_putrecord(worker_t *w)
{
    char pk[PKEY_LEN];
    rng_pkey(&w->rng, pk);
    w->req.len = 0;
    if (buf_str(&w->req, "{\"StreamName\":\"") != 0 || buf_str(&w->req, g_opt.stream) != 0 ||
        buf_str(&w->req, "\",\"PartitionKey\":\"") != 0 || buf_append(&w->req, pk, PKEY_LEN) != 0 ||
        buf_str(&w->req, "\",\"Data\":\"") != 0 || buf_append(&w->req, pool_pick(w), w->pool_b64len) != 0 ||
        buf_str(&w->req, "\"}") != 0) {
        return -1;
    }
    return 0;
}

static int build_putrecords(worker_t *w, long n, const char *explicit_hash)
{
    w->req.len = 0;
    if (buf_str(&w->req, "{\"StreamName\":\"") != 0 || buf_str(&w->req, g_opt.stream) != 0 ||
        buf_str(&w->req, "\",\"Records\":[") != 0) {
        return -1;
    }
    for (long i = 0; i < n; i++) {
        char pk[PKEY_LEN];
        rng_pkey(&w->rng, pk);
        if (buf_str(&w->req, i ? ",{\"Data\":\"" : "{\"Data\":\"") != 0 ||
            buf_append(&w->req, pool_pick(w), w->pool_b64len) != 0 ||
            buf_str(&w->req, "\",\"PartitionKey\":\"") != 0 || buf_append(&w->req, pk, PKEY_LEN) != 0) {
            return -1;
        }
        if (explicit_hash != NULL) {
            if (buf_str(&w->req, "\",\"ExplicitHashKey\":\"") != 0 || buf_str(&w->req, explicit_hash) != 0) {
                return -1;
            }
        }
        if (buf_str(&w->req, "\"}") != 0) {
            return -1;
        }
    }
    return buf_str(&w->req, "]}");
}

static void run_putrecord(worker_t *w)
{
    while (!should_stop() && claim_budget()) {
        if (build_putrecord(w) != 0) {
            fprintf(stderr, "kbench: out of memory\n");
            return;
        }
        w->requests++;
        if (do_request(w, "PutRecord", 1) == 0) {
            w->records++;
            w->bytes += (uint64_t)g_opt.record_size;
        }
    }
}

static void account_putrecords(worker_t *w, long n)
{
    long long failed = json_get_uint(w->conn.body, w->conn.body_len, "FailedRecordCount");
    if (failed < 0) {
        failed = 0;
    }
    if (failed > n) {
        failed = n;
    }
    w->failed_records += (uint64_t)failed;
    w->records += (uint64_t)(n - failed);
    w->bytes += (uint64_t)(n - failed) * (uint64_t)g_opt.record_size;
}

static void run_putrecords(worker_t *w)
{
    while (!should_stop() && claim_budget()) {
        if (build_putrecords(w, g_opt.batch, NULL) != 0) {
            fprintf(stderr, "kbench: out of memory\n");
            return;
        }
        w->requests++;
        if (do_request(w, "PutRecords", 1) == 0) {
            account_putrecords(w, g_opt.batch);
        }
    }
}

static void run_fill(worker_t *w)
{
    int active = 1;
    while (active && !should_stop()) {
        active = 0;
        for (int i = 0; i < w->ncur && !should_stop(); i++) {
            cursor_t *cu = &w->cur[i];
            if (cu->fill_left <= 0 || cu->consec_errors >= FILL_MAX_CONSEC_ERRORS) {
                continue;
            }
            active = 1;
            long n = cu->fill_left < g_opt.batch ? cu->fill_left : g_opt.batch;
            if (build_putrecords(w, n, cu->sh->has_hash ? cu->sh->start_hash : NULL) != 0) {
                fprintf(stderr, "kbench: out of memory\n");
                return;
            }
            w->requests++;
            uint64_t before = w->records;
            if (do_request(w, "PutRecords", 1) == 0) {
                account_putrecords(w, n);
            }
            if (w->records > before) {
                cu->fill_left -= (long)(w->records - before);
                cu->consec_errors = 0;
            } else if (++cu->consec_errors >= FILL_MAX_CONSEC_ERRORS) {
                fprintf(stderr, "kbench: giving up filling %s after %d failed attempts\n", cu->sh->id,
                        FILL_MAX_CONSEC_ERRORS);
            }
        }
    }
}

static int get_iterator(worker_t *w, cursor_t *cu)
{
    w->req.len = 0;
    if (buf_printf(&w->req,
                   "{\"StreamName\":\"%s\",\"ShardId\":\"%s\","
                   "\"ShardIteratorType\":\"TRIM_HORIZON\"}",
                   g_opt.stream, cu->sh->id) != 0) {
        return -1;
    }
    w->aux_requests++;
    if (do_request(w, "GetShardIterator", 0) != 0) {
        return -1;
    }
    long n = json_get_string(w->conn.body, w->conn.body_len, "ShardIterator", cu->iter, MAX_ITER_LEN + 1);
    if (n <= 0) {
        w->errors++;
        if (atomic_exchange(&g_first_error_shown, 1) == 0) {
            fprintf(stderr, "kbench: GetShardIterator answer has no usable ShardIterator: %.*s\n",
                    (int)(w->conn.body_len < FIRST_ERROR_SHOW ? w->conn.body_len : FIRST_ERROR_SHOW),
                    w->conn.body);
        }
        sleep_ns(ERROR_BACKOFF_NS);
        return -1;
    }
    cu->have_iter = 1;
    return 0;
}

static void run_getrecords(worker_t *w)
{
    int i = 0;
    while (!should_stop() && w->ncur > 0) {
        cursor_t *cu = &w->cur[i];
        i = (i + 1) % w->ncur;
        if (!cu->have_iter && get_iterator(w, cu) != 0) {
            continue;
        }
        if (should_stop() || !claim_budget()) {
            break;
        }
        w->req.len = 0;
        if (buf_printf(&w->req, "{\"ShardIterator\":\"%s\",\"Limit\":%ld}", cu->iter, g_opt.limit) != 0) {
            fprintf(stderr, "kbench: out of memory\n");
            return;
        }
        w->requests++;
        if (do_request(w, "GetRecords", 1) != 0) {
            cu->have_iter = 0; /* e.g. expired iterator: start over */
            continue;
        }
        uint64_t nrec = 0, nbytes = 0;
        scan_records(w->conn.body, w->conn.body_len, &nrec, &nbytes);
        w->records += nrec;
        w->bytes += nbytes;
        long n =
            json_get_string(w->conn.body, w->conn.body_len, "NextShardIterator", cu->iter, MAX_ITER_LEN + 1);
        if (nrec == 0 || n <= 0) {
            /* drained (or shard closed): re-read from TRIM_HORIZON */
            cu->have_iter = 0;
            w->drains++;
        }
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    if (conn_open(&w->conn) != 0) {
        w->connect_failed = 1;
        fprintf(stderr, "kbench: connection %d: %s\n", w->id, w->conn.err);
    }
    int r = pthread_barrier_wait(&g_barrier); /* everyone connected */
    if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD) {
        fprintf(stderr, "kbench: pthread_barrier_wait failed\n");
        return NULL;
    }
    r = pthread_barrier_wait(&g_barrier); /* main has set the deadline */
    if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD) {
        fprintf(stderr, "kbench: pthread_barrier_wait failed\n");
        return NULL;
    }
    if (w->connect_failed) {
        return NULL;
    }
    switch (w->kind) {
    case WORK_PUTRECORD: run_putrecord(w); break;
    case WORK_PUTRECORDS: run_putrecords(w); break;
    case WORK_FILL: run_fill(w); break;
    case WORK_GETRECORDS: run_getrecords(w); break;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Server memory                                                             */
/* ------------------------------------------------------------------------ */

#define SAMPLE_NS 100000000L /* 100 ms between samples of the server's memory */

struct memstat {
    long long rss_anon_kb; /* RssAnon, -1 if unknown */
    long long hwm_kb;      /* VmHWM */
    long long rss_kb;      /* VmRSS */
};

/* Reads RssAnon, VmHWM and VmRSS from /proc/PID/status in one pass; -1 when absent. */
static int proc_mem(long pid, struct memstat *m)
{
    m->rss_anon_kb = m->hwm_kb = m->rss_kb = -1;
    char path[64];
    int n = snprintf(path, sizeof path, "/proc/%ld/status", pid);
    if (n < 0 || (size_t)n >= sizeof path) {
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    const struct {
        const char *key;
        long long *dst;
    } keys[] = {
        {"RssAnon:", &m->rss_anon_kb},
        {"VmHWM:", &m->hwm_kb},
        {"VmRSS:", &m->rss_kb},
    };
    char line[256];
    while (fgets(line, sizeof line, f) != NULL) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            size_t kl = strlen(keys[k].key);
            if (strncmp(line, keys[k].key, kl) != 0) {
                continue;
            }
            char *endp = NULL;
            errno = 0;
            unsigned long long v = strtoull(line + kl, &endp, 10);
            if (errno == 0 && endp != line + kl) {
                *keys[k].dst = (long long)v;
            }
        }
    }
    if (fclose(f) != 0) {
        return -1;
    }
    return m->rss_kb < 0 ? -1 : 0;
}

/* Highest RssAnon seen by the sampler over every run of this process, -1 before any. */
static atomic_llong g_peak_anon_kb = -1;
static atomic_int g_sampler_stop;

static void note_anon(long long kb)
{
    long long cur = atomic_load(&g_peak_anon_kb);
    while (kb > cur && !atomic_compare_exchange_weak(&g_peak_anon_kb, &cur, kb)) {
    }
}

static void *sampler_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_sampler_stop)) {
        struct memstat m;
        if (proc_mem(g_opt.pid, &m) == 0) {
            note_anon(m.rss_anon_kb);
        }
        sleep_ns(SAMPLE_NS);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Running a set of workers and reporting                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    double elapsed_s;
    uint64_t requests, records, bytes, errors, io_errors, failed_records;
    uint64_t aux_requests, drains;
    double p50_ms, p99_ms, p999_ms, max_ms;
    size_t nlat;
    int connect_failures;
    int nworkers;
} result_t;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const uint64_t *v, size_t n, double q)
{
    if (n == 0) {
        return 0.0;
    }
    size_t rank = (size_t)(q * (double)n + 0.999999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return (double)v[rank - 1] / 1e6;
}

/* Assign shards to workers: with fewer workers than shards each worker takes
 * every N-th shard; with more, workers wrap around the shard list. */
static int assign_shards(worker_t *ws, int nw, int fill)
{
    for (int t = 0; t < nw; t++) {
        worker_t *w = &ws[t];
        int cnt = 0;
        if (nw <= g_nshards) {
            for (int s = t; s < g_nshards; s += nw) {
                cnt++;
            }
        } else {
            cnt = 1;
        }
        w->cur = calloc((size_t)cnt, sizeof *w->cur);
        if (w->cur == NULL) {
            return -1;
        }
        w->ncur = 0;
        for (int k = 0; k < cnt; k++) {
            int s = nw <= g_nshards ? t + k * nw : t % g_nshards;
            cursor_t *cu = &w->cur[w->ncur++];
            cu->sh = &g_shards[s];
            cu->fill_left = fill ? (g_shards[s].closed ? 0 : g_opt.fill_per_shard) : 0;
            cu->iter = malloc(MAX_ITER_LEN + 1);
            if (cu->iter == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

static int run_workers(enum work_kind kind, int nw, double seconds, result_t *res)
{
    memset(res, 0, sizeof *res);
    res->nworkers = nw;
    worker_t *ws = calloc((size_t)nw, sizeof *ws);
    if (ws == NULL) {
        fprintf(stderr, "kbench: out of memory\n");
        return -1;
    }
    int rc = -1;
    int started = 0;
    int barrier_ok = 0;
    for (int i = 0; i < nw; i++) {
        ws[i].id = i;
        ws[i].kind = kind;
        conn_init(&ws[i].conn);
        ws[i].rng = rng_seed((unsigned)i + 1u);
        if ((kind == WORK_PUTRECORD || kind == WORK_PUTRECORDS || kind == WORK_FILL) &&
            worker_make_pool(&ws[i]) != 0) {
            fprintf(stderr, "kbench: cannot build payload pool\n");
            goto out;
        }
    }
    if ((kind == WORK_FILL || kind == WORK_GETRECORDS) && assign_shards(ws, nw, kind == WORK_FILL) != 0) {
        fprintf(stderr, "kbench: out of memory\n");
        goto out;
    }
    if (pthread_barrier_init(&g_barrier, NULL, (unsigned)nw + 1u) != 0) {
        fprintf(stderr, "kbench: pthread_barrier_init failed\n");
        goto out;
    }
    barrier_ok = 1;
    g_deadline_ns = UINT64_MAX;
    pthread_t sampler;
    int sampling = 0;
    if (g_opt.pid > 0) {
        atomic_store(&g_sampler_stop, 0);
        int e = pthread_create(&sampler, NULL, sampler_main, NULL);
        if (e != 0) {
            fprintf(stderr, "kbench: memory sampler: %s\n", strerror(e));
        } else {
            sampling = 1;
        }
    }
    for (int i = 0; i < nw; i++) {
        int e = pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
        if (e != 0) {
            fprintf(stderr, "kbench: pthread_create: %s\n", strerror(e));
            break;
        }
        started++;
    }
    if (started < nw) {
        /* Cannot complete the barrier: release the started threads by
         * filling the barrier with a fresh one is impossible, so abort. */
        fprintf(stderr, "kbench: could only start %d of %d threads\n", started, nw);
        exit(1);
    }
    int r = pthread_barrier_wait(&g_barrier);
    if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD) {
        fprintf(stderr, "kbench: pthread_barrier_wait failed\n");
        exit(1);
    }
    uint64_t t0 = now_ns();
    g_deadline_ns = t0 + (uint64_t)(seconds * 1e9);
    atomic_store(&g_budget, g_opt.count);
    r = pthread_barrier_wait(&g_barrier);
    if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD) {
        fprintf(stderr, "kbench: pthread_barrier_wait failed\n");
        exit(1);
    }
    for (int i = 0; i < started; i++) {
        int e = pthread_join(ws[i].th, NULL);
        if (e != 0) {
            fprintf(stderr, "kbench: pthread_join: %s\n", strerror(e));
        }
    }
    uint64_t t1 = now_ns();
    res->elapsed_s = (double)(t1 - t0) / 1e9;
    if (sampling) {
        atomic_store(&g_sampler_stop, 1);
        (void)pthread_join(sampler, NULL);
    }

    size_t total = 0;
    for (int i = 0; i < nw; i++) {
        worker_t *w = &ws[i];
        res->requests += w->requests;
        res->records += w->records;
        res->bytes += w->bytes;
        res->errors += w->errors;
        res->io_errors += w->io_errors;
        res->failed_records += w->failed_records;
        res->aux_requests += w->aux_requests;
        res->drains += w->drains;
        res->connect_failures += w->connect_failed;
        if (w->lat_oom) {
            fprintf(stderr, "kbench: warning: latency samples truncated (out of memory)\n");
        }
        total += w->nlat;
    }
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    if (all == NULL) {
        fprintf(stderr, "kbench: out of memory\n");
        goto out;
    }
    size_t k = 0;
    for (int i = 0; i < nw; i++) {
        if (ws[i].nlat > 0) {
            memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof *all);
            k += ws[i].nlat;
        }
    }
    qsort(all, total, sizeof *all, cmp_u64);
    res->nlat = total;
    res->p50_ms = pct_ms(all, total, 0.50);
    res->p99_ms = pct_ms(all, total, 0.99);
    res->p999_ms = pct_ms(all, total, 0.999);
    res->max_ms = total ? (double)all[total - 1] / 1e6 : 0.0;
    free(all);
    rc = 0;

out:
    if (barrier_ok && pthread_barrier_destroy(&g_barrier) != 0) {
        fprintf(stderr, "kbench: pthread_barrier_destroy failed\n");
    }
    for (int i = 0; i < nw; i++) {
        worker_t *w = &ws[i];
        conn_free(&w->conn);
        buf_free(&w->req);
        free(w->pool);
        free(w->lat);
        if (w->cur != NULL) {
            for (int j = 0; j < w->ncur; j++) {
                free(w->cur[j].iter);
            }
            free(w->cur);
        }
    }
    free(ws);
    return rc;
}

static void fmt_mb(char *out, size_t outsz, long long kb)
{
    if (kb < 0) {
        (void)snprintf(out, outsz, "na");
    } else {
        (void)snprintf(out, outsz, "%.1f", (double)kb / 1024.0);
    }
}

static const char *mode_name(enum mode m)
{
    switch (m) {
    case MODE_CREATE: return "create";
    case MODE_PUTRECORD: return "putrecord";
    case MODE_PUTRECORDS: return "putrecords";
    case MODE_GETRECORDS: return "getrecords";
    case MODE_FREEPORT: return "freeport";
    case MODE_DISKSYNC: return "disksync";
    case MODE_DISKWRITE: return "diskwrite";
    case MODE_FANOUT: return "fanout";
    case MODE_NONE: break;
    }
    return "none";
}

static void print_result(enum mode m, const result_t *r, int nconn)
{
    double el = r->elapsed_s > 0 ? r->elapsed_s : 1e-9;
    double rps = (double)r->requests / el;
    double recps = (double)r->records / el;
    double mbps = (double)r->bytes / 1e6 / el;
    char peak[32], cur[32], anon_peak[32], anon_cur[32];
    struct memstat ms = {-1, -1, -1};
    if (g_opt.pid > 0) {
        if (proc_mem(g_opt.pid, &ms) != 0) {
            fprintf(stderr, "kbench: cannot read /proc/%ld/status (server gone?)\n", g_opt.pid);
        }
        note_anon(ms.rss_anon_kb);
    }
    fmt_mb(peak, sizeof peak, ms.hwm_kb);
    fmt_mb(cur, sizeof cur, ms.rss_kb);
    fmt_mb(anon_peak, sizeof anon_peak, g_opt.pid > 0 ? atomic_load(&g_peak_anon_kb) : -1);
    fmt_mb(anon_cur, sizeof anon_cur, ms.rss_anon_kb);

    printf("kbench %s: %s:%ld stream=%s connections=%d", mode_name(m), g_opt.host, g_opt.port, g_opt.stream,
           nconn);
    if (m == MODE_PUTRECORDS) {
        printf(" batch=%ld", g_opt.batch);
    }
    if (m == MODE_GETRECORDS) {
        printf(" limit=%ld shards=%d", g_opt.limit, g_nshards);
    } else {
        printf(" record_size=%ld", g_opt.record_size);
    }
    if (g_opt.trivial_server) {
        printf(" (built-in trivial server)");
    }
    printf("\n");
    printf("  duration     %.3f s\n", r->elapsed_s);
    printf("  requests     %" PRIu64 "  (%.1f req/s)\n", r->requests, rps);
    printf("  records      %" PRIu64 "  (%.1f records/s)\n", r->records, recps);
    printf("  payload      %.2f MB  (%.2f MB/s)\n", (double)r->bytes / 1e6, mbps);
    printf("  latency      p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (%zu samples)\n", r->p50_ms,
           r->p99_ms, r->p999_ms, r->max_ms, r->nlat);
    printf("  errors       %" PRIu64 " non-200, %" PRIu64 " transport, %" PRIu64 " failed records\n",
           r->errors, r->io_errors, r->failed_records);
    if (m == MODE_GETRECORDS) {
        printf("  iterators    %" PRIu64 " GetShardIterator calls, %" PRIu64
               " drains (re-read from TRIM_HORIZON)\n",
               r->aux_requests, r->drains);
    }
    if (g_opt.pid > 0) {
        printf("  server mem   RssAnon peak %s MB (sampled every 100 ms), now %s MB;"
               " VmHWM %s MB, VmRSS now %s MB (pid %ld)\n",
               anon_peak, anon_cur, peak, cur, g_opt.pid);
    }
    printf("RESULT mode=%s connections=%d duration_s=%.3f requests=%" PRIu64
           " requests_per_s=%.1f records=%" PRIu64 " records_per_s=%.1f mb_per_s=%.2f"
           " p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f peak_rss_anon_mb=%s rss_anon_mb=%s"
           " peak_rss_mb=%s rss_mb=%s errors=%" PRIu64 " io_errors=%" PRIu64 " failed_records=%" PRIu64 "\n",
           mode_name(m), nconn, r->elapsed_s, r->requests, rps, r->records, recps, mbps, r->p50_ms, r->p99_ms,
           r->p999_ms, r->max_ms, anon_peak, anon_cur, peak, cur, r->errors, r->io_errors, r->failed_records);
    if (fflush(stdout) != 0) {
        perror("kbench: stdout");
    }
}

/* ------------------------------------------------------------------------ */
/* Single-connection control-plane helpers                                   */
/* ------------------------------------------------------------------------ */

/* Performs op with body on c; returns 0 on HTTP 200, 1 on other status,
 * -1 on transport error. */
static int control_call(conn_t *c, const char *op, const char *body)
{
    if (conn_request(c, op, body, strlen(body)) != 0) {
        fprintf(stderr, "kbench: %s: %s\n", op, c->err);
        return -1;
    }
    return c->status == 200 ? 0 : 1;
}

static int mode_create(void)
{
    conn_t c;
    conn_init(&c);
    char body[512];
    int rc = 1;
    uint64_t t0 = now_ns();
    int n =
        snprintf(body, sizeof body, "{\"StreamName\":\"%s\",\"ShardCount\":%ld}", g_opt.stream, g_opt.shards);
    if (n < 0 || (size_t)n >= sizeof body) {
        goto out;
    }
    int r = control_call(&c, "CreateStream", body);
    if (r < 0) {
        goto out;
    }
    int existed = 0;
    if (r > 0) {
        if (memmem(c.body, c.body_len, "ResourceInUseException", 22) != NULL) {
            existed = 1;
            printf("kbench create: stream %s already exists\n", g_opt.stream);
        } else {
            fprintf(stderr, "kbench: CreateStream -> HTTP %d: %.*s\n", c.status,
                    (int)(c.body_len < FIRST_ERROR_SHOW ? c.body_len : FIRST_ERROR_SHOW), c.body);
            goto out;
        }
    }
    n = snprintf(body, sizeof body, "{\"StreamName\":\"%s\"}", g_opt.stream);
    if (n < 0 || (size_t)n >= sizeof body) {
        goto out;
    }
    double cap = g_opt.seconds_set ? g_opt.seconds : 30.0;
    uint64_t deadline = t0 + (uint64_t)(cap * 1e9);
    char status[64] = "UNKNOWN";
    for (;;) {
        r = control_call(&c, "DescribeStreamSummary", body);
        if (r < 0) {
            goto out;
        }
        if (r > 0) {
            fprintf(stderr, "kbench: DescribeStreamSummary -> HTTP %d: %.*s\n", c.status,
                    (int)(c.body_len < FIRST_ERROR_SHOW ? c.body_len : FIRST_ERROR_SHOW), c.body);
            goto out;
        }
        if (json_get_string(c.body, c.body_len, "StreamStatus", status, sizeof status) <= 0) {
            (void)snprintf(status, sizeof status, "UNKNOWN");
        }
        if (strcmp(status, "ACTIVE") == 0) {
            break;
        }
        if (now_ns() >= deadline) {
            fprintf(stderr, "kbench: stream %s still %s after %.0f s\n", g_opt.stream, status, cap);
            goto out;
        }
        sleep_ns(CREATE_POLL_NS);
    }
    double ms = (double)(now_ns() - t0) / 1e6;
    long long open_shards = json_get_uint(c.body, c.body_len, "OpenShardCount");
    printf("kbench create: stream %s ACTIVE after %.1f ms (open shards: %lld)\n", g_opt.stream, ms,
           open_shards);
    printf("RESULT mode=create status=ACTIVE existed=%d elapsed_ms=%.1f open_shards=%lld errors=0\n", existed,
           ms, open_shards);
    rc = 0;
out:
    conn_free(&c);
    if (rc != 0) {
        printf("RESULT mode=create status=FAILED errors=1\n");
    }
    if (fflush(stdout) != 0) {
        perror("kbench: stdout");
    }
    return rc;
}

/* Parse one ListShards page into g_shards; returns 0 and fills next_token
 * (empty when done), or -1. */
static int parse_shards_page(const char *body, size_t len, char *next_token, size_t ntsz)
{
    static const char key[] = "\"ShardId\"";
    const char *end = body + len;
    const char *p = body;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), key, sizeof key - 1);
        if (q == NULL) {
            break;
        }
        const char *v = skip_ws(q + sizeof key - 1, end);
        p = q + sizeof key - 1;
        if (v >= end || *v != ':') {
            continue;
        }
        v = skip_ws(v + 1, end);
        if (g_nshards >= MAX_SHARDS) {
            fprintf(stderr, "kbench: too many shards\n");
            return -1;
        }
        shard_t *s = &g_shards[g_nshards];
        memset(s, 0, sizeof *s);
        if (json_decode_string(v, end, s->id, sizeof s->id) <= 0) {
            continue;
        }
        /* the shard object extends to the next "ShardId" (or the end) */
        const char *nx = memmem(p, (size_t)(end - p), key, sizeof key - 1);
        size_t span = (size_t)((nx ? nx : end) - p);
        if (json_get_string(p, span, "StartingHashKey", s->start_hash, sizeof s->start_hash) > 0) {
            s->has_hash = 1;
        }
        const char *ev = json_find_value(p, span, "EndingSequenceNumber");
        s->closed = ev != NULL && *ev == '"';
        g_nshards++;
    }
    long n = json_get_string(body, len, "NextToken", next_token, ntsz);
    if (n <= 0) {
        next_token[0] = '\0';
    }
    return 0;
}

static int load_shards(void)
{
    g_shards = calloc(MAX_SHARDS, sizeof *g_shards);
    if (g_shards == NULL) {
        fprintf(stderr, "kbench: out of memory\n");
        return -1;
    }
    g_nshards = 0;
    conn_t c;
    conn_init(&c);
    buf_t body = {0};
    char token[4096] = "";
    int ok = 1;
    for (int page = 0; page < 100; page++) {
        body.len = 0;
        int e;
        if (page == 0) {
            e = buf_printf(&body, "{\"StreamName\":\"%s\",\"MaxResults\":1000}", g_opt.stream);
        } else {
            e = buf_printf(&body, "{\"NextToken\":\"%s\",\"MaxResults\":1000}", token);
        }
        if (e != 0) {
            ok = 0;
            break;
        }
        int r = control_call(&c, "ListShards", body.p);
        if (r != 0) {
            if (r > 0) {
                fprintf(stderr, "kbench: ListShards -> HTTP %d: %.*s\n", c.status,
                        (int)(c.body_len < FIRST_ERROR_SHOW ? c.body_len : FIRST_ERROR_SHOW), c.body);
            }
            ok = 0;
            break;
        }
        if (parse_shards_page(c.body, c.body_len, token, sizeof token) != 0) {
            ok = 0;
            break;
        }
        if (token[0] == '\0') {
            break;
        }
    }
    conn_free(&c);
    buf_free(&body);
    if (!ok || g_nshards == 0) {
        if (g_opt.shards < 1 || g_opt.shards > MAX_SHARDS) {
            return -1;
        }
        fprintf(stderr, "kbench: ListShards unusable; assuming %ld shards shardId-000000000000..\n",
                g_opt.shards);
        g_nshards = 0;
        for (long i = 0; i < g_opt.shards; i++) {
            shard_t *s = &g_shards[g_nshards++];
            memset(s, 0, sizeof *s);
            (void)snprintf(s->id, sizeof s->id, "shardId-%012ld", i);
        }
    }
    return 0;
}

/* A run failed when no connection worked or nothing succeeded at all. */
static int run_failed(const result_t *r, int nconn)
{
    if (r->connect_failures == nconn) {
        fprintf(stderr, "kbench: no connection could be established\n");
        return 1;
    }
    if (r->records == 0 && r->errors + r->io_errors > 0) {
        fprintf(stderr, "kbench: every request failed\n");
        return 1;
    }
    return 0;
}

static int mode_getrecords(int nconn)
{
    if (load_shards() != 0) {
        return 1;
    }
    int open = 0;
    for (int i = 0; i < g_nshards; i++) {
        open += !g_shards[i].closed;
    }
    printf("kbench getrecords: %d shards (%d open)\n", g_nshards, open);
    if (!g_opt.no_fill && g_opt.fill_per_shard > 0 && open > 0) {
        int nfill = open < 16 ? open : 16;
        if (nfill > g_nshards) {
            nfill = g_nshards;
        }
        result_t fr;
        if (run_workers(WORK_FILL, nfill, FILL_CAP_SECONDS, &fr) != 0) {
            return 1;
        }
        printf("kbench getrecords: filled %" PRIu64 " records (%ld per open shard) in %.2f s"
               " (%.0f records/s, %" PRIu64 " errors)\n",
               fr.records, g_opt.fill_per_shard, fr.elapsed_s,
               fr.elapsed_s > 0 ? (double)fr.records / fr.elapsed_s : 0.0, fr.errors + fr.io_errors);
        atomic_store(&g_first_error_shown, 0);
        atomic_store(&g_first_io_error_shown, 0);
    }
    if (nconn <= 0) {
        nconn = g_nshards;
    }
    double secs = g_opt.seconds_set || g_opt.count <= 0 ? g_opt.seconds : COUNT_CAP_SECONDS;
    result_t r;
    if (run_workers(WORK_GETRECORDS, nconn, secs, &r) != 0) {
        return 1;
    }
    print_result(MODE_GETRECORDS, &r, nconn);
    return run_failed(&r, nconn);
}

static int mode_put(enum mode m, int nconn)
{
    double secs = g_opt.seconds_set || g_opt.count <= 0 ? g_opt.seconds : COUNT_CAP_SECONDS;
    result_t r;
    if (run_workers(m == MODE_PUTRECORD ? WORK_PUTRECORD : WORK_PUTRECORDS, nconn, secs, &r) != 0) {
        return 1;
    }
    print_result(m, &r, nconn);
    return run_failed(&r, nconn);
}

/* ------------------------------------------------------------------------ */
/* Fan-out: SubscribeToShard subscribers and a PutRecords producer           */
/* ------------------------------------------------------------------------ */

/* --consumers consumers are registered and each subscribes (HTTP/1.1, chunked or plain body)
 * to every shard from TRIM_HORIZON, one thread per subscription, while --connections producers
 * send PutRecords of --batch records for --seconds. Each record's first 12 bytes carry the
 * monotonic time its PutRecords was sent, so a subscriber that decodes an event takes the
 * put-to-event latency of each record in it. A subscription the server ends (its 5 minutes,
 * or a server without initial-response and clean ends) is renewed AFTER_SEQUENCE_NUMBER of the
 * last record seen. 'complete' says every subscription received exactly the records
 * acknowledged on its shard, in strictly increasing sequence-number order. */

#define FAN_STAMP 12                /* bytes of a record that carry the send time: base64 of 16 chars */
#define FAN_DRAIN_NS 20000000000ull /* after the producers stop, wait this long for the events */
#define FAN_MAX_FRAME (16u * 1024u * 1024u)

typedef struct {
    pthread_t th;
    int shard;
    const char *consumer_arn;
    conn_t conn;
    atomic_int fd; /* for the stopper's shutdown() */
    buf_t frames;  /* body bytes after de-chunking, not yet parsed into frames */
    char last_seq[130];
    atomic_ullong received;
    int out_of_order;
    int exceptions;
    int ready;
    uint64_t *lat;
    size_t nlat, caplat;
} fan_sub_t;

static atomic_int g_fan_stop;
static atomic_int g_fan_ready;
static atomic_ullong g_fan_acked[MAX_SHARDS];

static int b64_val(char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }
    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }
    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* The send time from the first 16 base64 characters of a record's Data; 0 if unreadable. */
static uint64_t fan_stamp(const char *v, const char *end)
{
    if (end - v < 16) {
        return 0;
    }
    unsigned char raw[FAN_STAMP];
    for (int i = 0; i < 4; i++) {
        int a = b64_val(v[4 * i]), b = b64_val(v[4 * i + 1]), c = b64_val(v[4 * i + 2]),
            d = b64_val(v[4 * i + 3]);
        if (a < 0 || b < 0 || c < 0 || d < 0) {
            return 0;
        }
        uint32_t w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        raw[3 * i] = (unsigned char)(w >> 16);
        raw[3 * i + 1] = (unsigned char)(w >> 8);
        raw[3 * i + 2] = (unsigned char)w;
    }
    uint64_t t;
    memcpy(&t, raw, sizeof t);
    return t;
}

/* Sequence numbers are decimal strings without leading zeros: longer is larger. */
static int seq_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

static void fan_records(fan_sub_t *s, const char *p, const char *end, uint64_t now)
{
    static const char kd[] = "\"Data\"", ks[] = "\"SequenceNumber\"";
    for (const char *q = p; (q = memmem(q, (size_t)(end - q), kd, sizeof kd - 1)) != NULL;) {
        q = skip_ws(q + sizeof kd - 1, end);
        if (q < end && *q == ':') {
            q = skip_ws(q + 1, end);
            if (q < end && *q == '"') {
                uint64_t t = fan_stamp(q + 1, end);
                if (t != 0 && t <= now) {
                    if (s->nlat == s->caplat) {
                        size_t cap = s->caplat ? s->caplat * 2 : 4096;
                        uint64_t *n = realloc(s->lat, cap * sizeof *n);
                        if (n == NULL) {
                            continue;
                        }
                        s->lat = n;
                        s->caplat = cap;
                    }
                    s->lat[s->nlat++] = now - t;
                }
                s->received++;
            }
        }
    }
    for (const char *q = p; (q = memmem(q, (size_t)(end - q), ks, sizeof ks - 1)) != NULL;) {
        q = skip_ws(q + sizeof ks - 1, end);
        char seq[sizeof s->last_seq];
        if (q < end && *q == ':' && json_decode_string(skip_ws(q + 1, end), end, seq, sizeof seq) > 0) {
            if (s->last_seq[0] && seq_cmp(seq, s->last_seq) <= 0) {
                s->out_of_order++;
            }
            memcpy(s->last_seq, seq, sizeof seq);
        }
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The value of string header `name` of an event-stream message, or NULL. */
static const char *fan_header(const unsigned char *h, const unsigned char *end, const char *name,
                              size_t *vlen)
{
    static const int fixed[] = {0, 0, 1, 2, 4, 8, -1, -1, 8, 16};
    size_t nl = strlen(name);
    while (h < end) {
        size_t n = *h++;
        if ((size_t)(end - h) < n + 1) {
            return NULL;
        }
        const unsigned char *hn = h;
        h += n;
        unsigned type = *h++;
        if (type > 9) {
            return NULL;
        }
        size_t len;
        if (fixed[type] >= 0) {
            len = (size_t)fixed[type];
        } else {
            if (end - h < 2) {
                return NULL;
            }
            len = (size_t)h[0] << 8 | h[1];
            h += 2;
        }
        if ((size_t)(end - h) < len) {
            return NULL;
        }
        if (type == 7 && n == nl && memcmp(hn, name, nl) == 0) {
            *vlen = len;
            return (const char *)h;
        }
        h += len;
    }
    return NULL;
}

/* Parse every complete frame in s->frames; -1 on a malformed stream. */
static int fan_frames(fan_sub_t *s)
{
    size_t off = 0;
    uint64_t now = now_ns();
    while (s->frames.len - off >= 16) {
        const unsigned char *m = (const unsigned char *)s->frames.p + off;
        uint32_t total = be32(m), hl = be32(m + 4);
        if (total < 16 || total > FAN_MAX_FRAME || hl > total - 16) {
            fprintf(stderr, "kbench: fanout: malformed event-stream frame\n");
            return -1;
        }
        if (s->frames.len - off < total) {
            break;
        }
        size_t el = 0, ml = 0;
        const char *et = fan_header(m + 12, m + 12 + hl, ":event-type", &el);
        const char *mt = fan_header(m + 12, m + 12 + hl, ":message-type", &ml);
        const char *pl = (const char *)m + 12 + hl, *pe = (const char *)m + total - 4;
        if (mt && ml == 9 && memcmp(mt, "exception", 9) == 0) {
            if (s->exceptions++ == 0) {
                fprintf(stderr, "kbench: fanout: exception event on shard %s: %.*s\n", g_shards[s->shard].id,
                        (int)(pe - pl), pl);
            }
        } else if (et && el == 21 && memcmp(et, "SubscribeToShardEvent", 21) == 0) {
            fan_records(s, pl, pe, now);
        }
        off += total;
    }
    memmove(s->frames.p, s->frames.p + off, s->frames.len - off);
    s->frames.len -= off;
    return 0;
}

/* One subscription until the server ends it: 0 ended, -1 failed. */
static int fan_subscribe_once(fan_sub_t *s)
{
    conn_t *c = &s->conn;
    char body[1024];
    int n = s->last_seq[0] ? snprintf(body, sizeof body,
                                      "{\"ConsumerARN\":\"%s\",\"ShardId\":\"%s\",\"StartingPosition\":"
                                      "{\"Type\":\"AFTER_SEQUENCE_NUMBER\",\"SequenceNumber\":\"%s\"}}",
                                      s->consumer_arn, g_shards[s->shard].id, s->last_seq)
                           : snprintf(body, sizeof body,
                                      "{\"ConsumerARN\":\"%s\",\"ShardId\":\"%s\",\"StartingPosition\":"
                                      "{\"Type\":\"TRIM_HORIZON\"}}",
                                      s->consumer_arn, g_shards[s->shard].id);
    if (n < 0 || (size_t)n >= sizeof body) {
        return -1;
    }
    conn_close(c);
    if (conn_open(c) != 0) {
        fprintf(stderr, "kbench: fanout: %s\n", c->err);
        return -1;
    }
    atomic_store(&s->fd, c->fd);
    if (atomic_load(&g_fan_stop)) {
        return 0;
    }
    if (send_request(c, "SubscribeToShard", body, (size_t)n) != 0) {
        return -1;
    }
    const char *e;
    while ((e = memmem(c->in.p, c->in.len, "\r\n\r\n", 4)) == NULL) {
        if (c->in.len > MAX_HEADER_BYTES || conn_read(c, 0) <= 0) {
            return atomic_load(&g_fan_stop) ? 0 : -1;
        }
    }
    size_t hdr_end = (size_t)(e - c->in.p) + 4;
    if (c->in.len < 12 || memcmp(c->in.p + 9, "200", 3) != 0) {
        fprintf(stderr, "kbench: fanout: SubscribeToShard -> %.*s\n",
                (int)(c->in.len < FIRST_ERROR_SHOW ? c->in.len : FIRST_ERROR_SHOW), c->in.p);
        return -1;
    }
    int chunked = ci_contains(c->in.p, hdr_end, "transfer-encoding: chunked");
    if (!s->ready) {
        s->ready = 1;
        atomic_fetch_add(&g_fan_ready, 1);
    }
    size_t pos = hdr_end;                            /* c->in.p[pos..] is body not yet consumed */
    long long chunk_left = chunked ? -1 : LLONG_MAX; /* -1: a size line is next */
    int crlf_next = 0;
    for (;;) {
        while (pos < c->in.len) {
            if (chunk_left == -1) {
                const char *lf = memmem(c->in.p + pos, c->in.len - pos, "\r\n", 2);
                if (lf == NULL) {
                    break;
                }
                if (crlf_next) { /* the CRLF after a chunk's data */
                    pos += 2;
                    crlf_next = 0;
                    continue;
                }
                chunk_left = strtoll(c->in.p + pos, NULL, 16);
                pos = (size_t)(lf - c->in.p) + 2;
                if (chunk_left == 0) {
                    return 0; /* the last chunk: the server ended the subscription */
                }
                continue;
            }
            size_t take = c->in.len - pos;
            if ((unsigned long long)take > (unsigned long long)chunk_left) {
                take = (size_t)chunk_left;
            }
            if (buf_append(&s->frames, c->in.p + pos, take) != 0) {
                return -1;
            }
            pos += take;
            if (chunked && (chunk_left -= (long long)take) == 0) {
                chunk_left = -1;
                crlf_next = 1;
            }
        }
        if (fan_frames(s) != 0) {
            return -1;
        }
        memmove(c->in.p, c->in.p + pos, c->in.len - pos);
        c->in.len -= pos;
        pos = 0;
        int r = conn_read(c, 0);
        if (r <= 0) {
            return r == 0 || atomic_load(&g_fan_stop) ? 0 : -1;
        }
    }
}

static void *fan_sub_main(void *arg)
{
    fan_sub_t *s = arg;
    while (!atomic_load(&g_fan_stop)) {
        if (fan_subscribe_once(s) != 0 && !atomic_load(&g_fan_stop)) {
            sleep_ns(100000000L); /* a failed subscription is retried after 100 ms */
        }
    }
    return NULL;
}

/* Producer: PutRecords of --batch records, each stamped with the send time. */
static void *fan_put_main(void *arg)
{
    worker_t *w = arg;
    size_t rs = (size_t)g_opt.record_size;
    unsigned char *raw = malloc(rs);
    char *b64 = malloc(4 * ((rs + 2) / 3) + 1);
    if (raw == NULL || b64 == NULL) {
        goto out;
    }
    rng_fill(&w->rng, raw, rs);
    while (now_ns() < g_deadline_ns) {
        uint64_t t = now_ns();
        memcpy(raw, &t, sizeof t);
        (void)EVP_EncodeBlock((unsigned char *)b64, raw, (int)rs);
        w->req.len = 0;
        int e = buf_printf(&w->req, "{\"StreamName\":\"%s\",\"Records\":[", g_opt.stream);
        for (long i = 0; i < g_opt.batch && e == 0; i++) {
            char pk[PKEY_LEN + 1];
            rng_pkey(&w->rng, pk);
            pk[PKEY_LEN] = 0;
            e = buf_printf(&w->req, "%s{\"PartitionKey\":\"%s\",\"Data\":\"%s\"}", i ? "," : "", pk, b64);
        }
        if (e != 0 || buf_str(&w->req, "]}") != 0) {
            break;
        }
        if (conn_request(&w->conn, "PutRecords", w->req.p, w->req.len) != 0) {
            w->io_errors++;
            report_io_error("PutRecords", &w->conn);
            sleep_ns(RECONNECT_BACKOFF_NS);
            continue;
        }
        w->requests++;
        if (w->conn.status != 200) {
            w->errors++;
            report_http_error("PutRecords", &w->conn);
            sleep_ns(ERROR_BACKOFF_NS);
            continue;
        }
        static const char ks[] = "\"ShardId\"";
        const char *p = w->conn.body, *end = p + w->conn.body_len;
        while ((p = memmem(p, (size_t)(end - p), ks, sizeof ks - 1)) != NULL) {
            const char *v = skip_ws(p + sizeof ks - 1, end);
            char id[MAX_SHARD_ID + 1];
            p += sizeof ks - 1;
            if (v < end && *v == ':' && json_decode_string(skip_ws(v + 1, end), end, id, sizeof id) > 0) {
                for (int i = 0; i < g_nshards; i++) {
                    if (strcmp(id, g_shards[i].id) == 0) {
                        atomic_fetch_add(&g_fan_acked[i], 1);
                        w->records++;
                        break;
                    }
                }
            }
        }
    }
out:
    free(raw);
    free(b64);
    return NULL;
}

/* Register (or find) consumer i of the stream and wait until it is ACTIVE. */
static int fan_consumer(conn_t *c, const char *stream_arn, int i, char *arn, size_t arnsz)
{
    char body[1024];
    (void)snprintf(body, sizeof body, "{\"StreamARN\":\"%s\",\"ConsumerName\":\"kbench-%d\"}", stream_arn, i);
    int r = control_call(c, "RegisterStreamConsumer", body);
    if (r > 0 && memmem(c->body, c->body_len, "ResourceInUseException", 22) != NULL) {
        r = control_call(c, "DescribeStreamConsumer", body);
    }
    if (r != 0 || json_get_string(c->body, c->body_len, "ConsumerARN", arn, arnsz) <= 0) {
        fprintf(stderr, "kbench: fanout: RegisterStreamConsumer -> HTTP %d: %.*s\n", c->status,
                (int)(c->body_len < FIRST_ERROR_SHOW ? c->body_len : FIRST_ERROR_SHOW), c->body);
        return -1;
    }
    (void)snprintf(body, sizeof body, "{\"ConsumerARN\":\"%s\"}", arn);
    for (int tries = 0; tries < 1500; tries++) { /* 30 s */
        char status[32] = "";
        if (control_call(c, "DescribeStreamConsumer", body) == 0 &&
            json_get_string(c->body, c->body_len, "ConsumerStatus", status, sizeof status) > 0 &&
            strcmp(status, "ACTIVE") == 0) {
            return 0;
        }
        sleep_ns(CREATE_POLL_NS);
    }
    fprintf(stderr, "kbench: fanout: consumer %s never became ACTIVE\n", arn);
    return -1;
}

static int mode_fanout(int nprod)
{
    if (g_opt.record_size < FAN_STAMP) {
        fprintf(stderr, "kbench: fanout needs --record-size of at least %d\n", FAN_STAMP);
        return 2;
    }
    if (mode_create() != 0 || load_shards() != 0) {
        return 1;
    }
    conn_t c;
    conn_init(&c);
    char body[512], stream_arn[512];
    (void)snprintf(body, sizeof body, "{\"StreamName\":\"%s\"}", g_opt.stream);
    if (control_call(&c, "DescribeStreamSummary", body) != 0 ||
        json_get_string(c.body, c.body_len, "StreamARN", stream_arn, sizeof stream_arn) <= 0) {
        fprintf(stderr, "kbench: fanout: no StreamARN\n");
        conn_free(&c);
        return 1;
    }
    int ncons = (int)g_opt.consumers, nsubs = ncons * g_nshards;
    char(*arns)[512] = calloc((size_t)ncons, sizeof *arns);
    fan_sub_t *subs = calloc((size_t)nsubs, sizeof *subs);
    worker_t *prod = calloc((size_t)nprod, sizeof *prod);
    int rc = 1, started = 0, pstarted = 0;
    uint64_t put = 0, put_errors = 0;
    double put_s = 0, all_s = 0;
    if (arns == NULL || subs == NULL || prod == NULL) {
        goto out;
    }
    for (int i = 0; i < ncons; i++) {
        if (fan_consumer(&c, stream_arn, i, arns[i], sizeof arns[i]) != 0) {
            goto out;
        }
    }
    for (; started < nsubs; started++) {
        fan_sub_t *s = &subs[started];
        conn_init(&s->conn);
        atomic_init(&s->fd, -1);
        s->consumer_arn = arns[started / g_nshards];
        s->shard = started % g_nshards;
        if (pthread_create(&s->th, NULL, fan_sub_main, s) != 0) {
            goto stop;
        }
    }
    for (int i = 0; atomic_load(&g_fan_ready) < nsubs; i++) {
        if (i == 1500) {
            fprintf(stderr, "kbench: fanout: only %d of %d subscriptions started\n",
                    atomic_load(&g_fan_ready), nsubs);
            goto stop;
        }
        sleep_ns(CREATE_POLL_NS);
    }
    uint64_t t0 = now_ns();
    g_deadline_ns = t0 + (uint64_t)(g_opt.seconds * 1e9);
    for (; pstarted < nprod; pstarted++) {
        worker_t *w = &prod[pstarted];
        w->id = pstarted;
        conn_init(&w->conn);
        w->rng = rng_seed((unsigned)pstarted + 1000);
        if (pthread_create(&w->th, NULL, fan_put_main, w) != 0) {
            goto stop;
        }
    }
    for (int i = 0; i < pstarted; i++) {
        (void)pthread_join(prod[i].th, NULL);
        put += prod[i].records;
        put_errors += prod[i].errors + prod[i].io_errors;
    }
    put_s = (double)(now_ns() - t0) / 1e9;
    pstarted = 0;
    /* wait until every subscription has what its shard acknowledged (or the drain time ran out) */
    uint64_t drain_end = now_ns() + FAN_DRAIN_NS;
    for (int done = 0; !done && now_ns() < drain_end;) {
        done = 1;
        for (int i = 0; i < nsubs; i++) {
            done &= atomic_load(&subs[i].received) >= atomic_load(&g_fan_acked[subs[i].shard]);
        }
        if (!done) {
            sleep_ns(CREATE_POLL_NS);
        }
    }
    all_s = (double)(now_ns() - t0) / 1e9;
    rc = 0;
stop:
    atomic_store(&g_fan_stop, 1);
    for (int i = 0; i < started; i++) {
        int fd = atomic_load(&subs[i].fd);
        if (fd >= 0) {
            (void)shutdown(fd, SHUT_RDWR);
        }
    }
    for (int i = 0; i < started; i++) {
        (void)pthread_join(subs[i].th, NULL);
    }
    if (rc == 0) {
        uint64_t delivered = 0, nlat = 0;
        int complete = started == nsubs && put > 0;
        for (int i = 0; i < nsubs; i++) {
            delivered += subs[i].received;
            nlat += subs[i].nlat;
            complete &= subs[i].received == atomic_load(&g_fan_acked[subs[i].shard]) &&
                        !subs[i].out_of_order && !subs[i].exceptions;
        }
        uint64_t *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
        size_t k = 0;
        for (int i = 0; lat && i < nsubs; i++) {
            memcpy(lat + k, subs[i].lat, subs[i].nlat * sizeof *lat);
            k += subs[i].nlat;
        }
        if (lat) {
            qsort(lat, k, sizeof *lat, cmp_u64);
        }
        double p50 = lat ? pct_ms(lat, k, 0.50) : 0, p99 = lat ? pct_ms(lat, k, 0.99) : 0;
        free(lat);
        printf("kbench fanout: %d consumers x %d shards, %d producers, %" PRIu64 " records put in %.2f s"
               " (%" PRIu64 " errors), %" PRIu64 " delivered\n",
               ncons, g_nshards, nprod, put, put_s, put_errors, delivered);
        printf(
            "RESULT mode=fanout put_records_per_s=%.0f delivered_records_per_s=%.0f p50_ms=%.2f p99_ms=%.2f"
            " complete=%s\n",
            put_s > 0 ? (double)put / put_s : 0.0, all_s > 0 ? (double)delivered / all_s : 0.0, p50, p99,
            complete ? "yes" : "no");
        rc = complete ? 0 : 1;
    }
out:
    for (int i = 0; i < pstarted; i++) {
        (void)pthread_join(prod[i].th, NULL);
    }
    for (int i = 0; prod && i < nprod; i++) {
        conn_free(&prod[i].conn);
        buf_free(&prod[i].req);
    }
    for (int i = 0; subs && i < started; i++) {
        conn_free(&subs[i].conn);
        buf_free(&subs[i].frames);
        free(subs[i].lat);
    }
    free(arns);
    free(subs);
    free(prod);
    conn_free(&c);
    (void)fflush(stdout);
    return rc;
}

static int mode_freeport(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("kbench: socket");
        return 1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("kbench: bind");
        (void)close(fd);
        return 1;
    }
    printf("%u\n", (unsigned)ntohs(sa.sin_port));
    if (close(fd) != 0) {
        perror("kbench: close");
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define DISKSYNC_N 500
#define DISKSYNC_LEN 2000

static int mode_disksync(void)
{
    char path[4096];
    if (!g_opt.dir || snprintf(path, sizeof path, "%s/kbench-disksync", g_opt.dir) >= (int)sizeof path) {
        fprintf(stderr, "kbench: disksync needs --dir\n");
        return 2;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("kbench: disksync open");
        return 1;
    }
    static char block[DISKSYNC_N * DISKSYNC_LEN];
    static double us[DISKSYNC_N];
    int rc = 0;
    /* written and synced once first, so the timed writes change no file size */
    if (pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block || fdatasync(fd) != 0) {
        perror("kbench: disksync");
        rc = 1;
    }
    memset(block, 0x5a, sizeof block);
    for (int i = 0; rc == 0 && i < DISKSYNC_N; i++) {
        uint64_t t0 = now_ns();
        if (pwrite(fd, block, DISKSYNC_LEN, (off_t)i * DISKSYNC_LEN) != DISKSYNC_LEN || fdatasync(fd) != 0) {
            perror("kbench: disksync");
            rc = 1;
        }
        us[i] = (double)(now_ns() - t0) / 1e3;
    }
    (void)close(fd);
    (void)unlink(path);
    if (rc) {
        printf("RESULT mode=disksync errors=1\n");
        return rc;
    }
    qsort(us, DISKSYNC_N, sizeof us[0], cmp_double);
    printf("RESULT mode=disksync writes=%d p50_us=%.0f p99_us=%.0f errors=0\n", DISKSYNC_N,
           us[DISKSYNC_N / 2], us[DISKSYNC_N * 99 / 100]);
    return 0;
}

#define DISKWRITE_CHUNK (1u << 20)

/* Sequential write bandwidth: --mib MiB in 1 MiB writes to a new file, then one fdatasync,
 * timed from the first write to the end of the sync. The file is removed afterwards. */
static int mode_diskwrite(void)
{
    char path[4096];
    if (!g_opt.dir || snprintf(path, sizeof path, "%s/kbench-diskwrite", g_opt.dir) >= (int)sizeof path) {
        fprintf(stderr, "kbench: diskwrite needs --dir\n");
        return 2;
    }
    struct statvfs sv;
    unsigned long long want = (unsigned long long)g_opt.mib << 20;
    if (statvfs(g_opt.dir, &sv) == 0 && (unsigned long long)sv.f_bavail * sv.f_frsize < want * 2) {
        fprintf(stderr, "kbench: diskwrite: less than %ld MiB free in %s\n", g_opt.mib * 2, g_opt.dir);
        printf("RESULT mode=diskwrite errors=1\n");
        return 1;
    }
    char *block = malloc(DISKWRITE_CHUNK);
    if (block == NULL) {
        fprintf(stderr, "kbench: out of memory\n");
        return 1;
    }
    uint64_t rng = rng_seed(7);
    rng_fill(&rng, (unsigned char *)block, DISKWRITE_CHUNK); /* not zeros: nothing to elide */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("kbench: diskwrite open");
        free(block);
        return 1;
    }
    int rc = 0;
    uint64_t t0 = now_ns();
    for (long i = 0; rc == 0 && i < g_opt.mib; i++) {
        size_t done = 0;
        while (done < DISKWRITE_CHUNK) {
            ssize_t n = write(fd, block + done, DISKWRITE_CHUNK - done);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                perror("kbench: diskwrite write");
                rc = 1;
                break;
            }
            done += (size_t)n;
        }
    }
    uint64_t t_written = now_ns();
    if (rc == 0 && fdatasync(fd) != 0) {
        perror("kbench: diskwrite fdatasync");
        rc = 1;
    }
    uint64_t t1 = now_ns();
    (void)close(fd);
    (void)unlink(path);
    free(block);
    if (rc) {
        printf("RESULT mode=diskwrite errors=1\n");
        return rc;
    }
    double secs = (double)(t1 - t0) / 1e9;
    double mb = (double)want / 1e6;
    printf("kbench diskwrite: %ld MiB in 1 MiB writes + fdatasync in %.3f s (writes %.3f s, sync %.3f s):"
           " %.1f MB/s\n",
           g_opt.mib, secs, (double)(t_written - t0) / 1e9, (double)(t1 - t_written) / 1e9, mb / secs);
    printf("RESULT mode=diskwrite mib=%ld seconds=%.3f mb_per_s=%.1f errors=0\n", g_opt.mib, secs, mb / secs);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Trivial server: the load generator's own ceiling                          */
/* ------------------------------------------------------------------------ */

/* A thread per connection reads each request whole (headers, then Content-Length bytes of
 * body, which it discards) and writes a canned answer chosen by X-Amz-Target. The answers
 * are built once, at the sizes a real server sends (a sequence number per PutRecords
 * record, --limit records of --record-size bytes per GetRecords), so the client parses as
 * much as it would against a real server and only the server's own work is missing. Bounded:
 * TS_MAX_CONN connections, MAX_HEADER_BYTES of header, MAX_BODY_BYTES of body; the threads
 * end with the process. */

#define TS_MAX_CONN 1100
#define TS_IN_BYTES (MAX_HEADER_BYTES + 65536u)
#define TS_SEQ "49660000000000000000000000000000000000000000000000000042"

enum ts_answer { TS_PUTRECORD, TS_PUTRECORDS, TS_GETRECORDS, TS_LISTSHARDS, TS_ITERATOR, TS_OTHER, TS_N };

static buf_t g_ts_answer[TS_N];
static atomic_int g_ts_conns;

static int ts_build_answers(void)
{
    int e = 0;
    buf_t *b = &g_ts_answer[TS_PUTRECORD];
    e |= buf_str(b, "{\"SequenceNumber\":\"" TS_SEQ "\",\"ShardId\":\"shardId-000000000001\"}");
    b = &g_ts_answer[TS_PUTRECORDS];
    e |= buf_str(b, "{\"FailedRecordCount\":0,\"Records\":[");
    for (long i = 0; i < g_opt.batch; i++) {
        e |= buf_str(b, i ? ",{\"SequenceNumber\":\"" TS_SEQ "\",\"ShardId\":\"shardId-000000000001\"}"
                          : "{\"SequenceNumber\":\"" TS_SEQ "\",\"ShardId\":\"shardId-000000000001\"}");
    }
    e |= buf_str(b, "]}");
    /* one base64 payload of record_size bytes, repeated */
    size_t rs = (size_t)g_opt.record_size;
    unsigned char *raw = malloc(rs);
    char *b64 = malloc(4 * ((rs + 2) / 3) + 1);
    if (raw == NULL || b64 == NULL) {
        free(raw);
        free(b64);
        return -1;
    }
    uint64_t rng = rng_seed(99);
    rng_fill(&rng, raw, rs);
    (void)EVP_EncodeBlock((unsigned char *)b64, raw, (int)rs);
    b = &g_ts_answer[TS_GETRECORDS];
    e |= buf_str(b, "{\"Records\":[");
    for (long i = 0; i < g_opt.limit; i++) {
        e |= buf_str(b, i ? ",{\"SequenceNumber\":\"" TS_SEQ "\"" : "{\"SequenceNumber\":\"" TS_SEQ "\"");
        e |= buf_str(b, ",\"ApproximateArrivalTimestamp\":1767225600.123,\"Data\":\"");
        e |= buf_str(b, b64);
        e |= buf_str(b, "\",\"PartitionKey\":\"pk-0123456789abc\"}");
    }
    e |= buf_str(b, "],\"NextShardIterator\":\"AAAAAAAAAAFtrivialtrivialtrivial\",\"MillisBehindLatest\":0}");
    free(raw);
    free(b64);
    b = &g_ts_answer[TS_LISTSHARDS];
    e |= buf_str(b, "{\"Shards\":[");
    for (long i = 0; i < g_opt.shards; i++) {
        e |= buf_printf(
            b,
            "%s{\"ShardId\":\"shardId-%012ld\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
            "\"EndingHashKey\":\"0\"},\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"" TS_SEQ "\"}}",
            i ? "," : "", i);
    }
    e |= buf_str(b, "]}");
    e |= buf_str(&g_ts_answer[TS_ITERATOR], "{\"ShardIterator\":\"AAAAAAAAAAFtrivialtrivialtrivial\"}");
    e |= buf_str(&g_ts_answer[TS_OTHER], "{}");
    return e ? -1 : 0;
}

static enum ts_answer ts_pick(const char *h, size_t len)
{
    static const char key[] = "\r\nx-amz-target:";
    for (size_t i = 0; i + sizeof key - 1 < len; i++) {
        if (strncasecmp(h + i, key, sizeof key - 1) != 0) {
            continue;
        }
        const char *v = h + i + sizeof key - 1;
        const char *end = h + len;
        while (v < end && *v == ' ') {
            v++;
        }
        size_t pl = sizeof TARGET_PREFIX - 1;
        if ((size_t)(end - v) < pl || memcmp(v, TARGET_PREFIX, pl) != 0) {
            return TS_OTHER;
        }
        v += pl;
        const char *eol = memchr(v, '\r', (size_t)(end - v));
        size_t n = eol ? (size_t)(eol - v) : (size_t)(end - v);
        if (n == 9 && memcmp(v, "PutRecord", 9) == 0) {
            return TS_PUTRECORD;
        }
        if (n == 10 && memcmp(v, "PutRecords", 10) == 0) {
            return TS_PUTRECORDS;
        }
        if (n == 10 && memcmp(v, "GetRecords", 10) == 0) {
            return TS_GETRECORDS;
        }
        if (n == 10 && memcmp(v, "ListShards", 10) == 0) {
            return TS_LISTSHARDS;
        }
        if (n == 16 && memcmp(v, "GetShardIterator", 16) == 0) {
            return TS_ITERATOR;
        }
        return TS_OTHER;
    }
    return TS_OTHER;
}

static long long ts_content_length(const char *h, size_t len)
{
    static const char key[] = "\r\ncontent-length:";
    for (size_t i = 0; i + sizeof key - 1 < len; i++) {
        if (strncasecmp(h + i, key, sizeof key - 1) == 0) {
            const char *v = h + i + sizeof key - 1;
            while (v < h + len && *v == ' ') {
                v++;
            }
            long long cl = 0;
            int digits = 0;
            while (v < h + len && *v >= '0' && *v <= '9' && cl <= (long long)MAX_BODY_BYTES) {
                cl = cl * 10 + (*v++ - '0');
                digits++;
            }
            return digits && cl <= (long long)MAX_BODY_BYTES ? cl : -1;
        }
    }
    return 0;
}

static int ts_send(int fd, const buf_t *body)
{
    char head[160];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     body->len);
    if (n < 0 || (size_t)n >= sizeof head) {
        return -1;
    }
    struct iovec iov[2] = {{head, (size_t)n}, {body->p, body->len}};
    conn_t c; /* send_all only needs the descriptor and an error slot */
    conn_init(&c);
    c.fd = fd;
    return send_all(&c, iov, 2);
}

static void *ts_conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *in = malloc(TS_IN_BYTES);
    size_t len = 0;
    while (in != NULL) {
        char *e = len >= 4 ? memmem(in, len, "\r\n\r\n", 4) : NULL;
        if (e == NULL) {
            if (len == TS_IN_BYTES) {
                break; /* header too large */
            }
            ssize_t n = recv(fd, in + len, TS_IN_BYTES - len, 0);
            if (n <= 0) {
                break;
            }
            len += (size_t)n;
            continue;
        }
        size_t hdr = (size_t)(e - in) + 4;
        long long cl = ts_content_length(in, hdr);
        if (cl < 0) {
            break;
        }
        enum ts_answer a = ts_pick(in, hdr);
        size_t have = len - hdr;
        if (have >= (size_t)cl) { /* body (and maybe the next request) already here */
            size_t used = hdr + (size_t)cl;
            memmove(in, in + used, len - used);
            len -= used;
        } else { /* discard the rest of the body as it arrives */
            size_t left = (size_t)cl - have;
            while (left > 0) {
                ssize_t n = recv(fd, in, left < TS_IN_BYTES ? left : TS_IN_BYTES, 0);
                if (n <= 0) {
                    goto out;
                }
                left -= (size_t)n;
            }
            len = 0;
        }
        if (ts_send(fd, &g_ts_answer[a]) != 0) {
            break;
        }
    }
out:
    free(in);
    (void)close(fd);
    atomic_fetch_sub(&g_ts_conns, 1);
    return NULL;
}

static void *ts_accept_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            perror("kbench: trivial server accept");
            return NULL;
        }
        if (atomic_fetch_add(&g_ts_conns, 1) >= TS_MAX_CONN) {
            atomic_fetch_sub(&g_ts_conns, 1);
            (void)close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct timeval tv = {(time_t)g_opt.timeout_s, 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        pthread_attr_t at;
        pthread_t th;
        int ok = pthread_attr_init(&at) == 0;
        ok = ok && pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0;
        ok = ok && pthread_create(&th, &at, ts_conn_main, (void *)(intptr_t)fd) == 0;
        (void)pthread_attr_destroy(&at);
        if (!ok) {
            atomic_fetch_sub(&g_ts_conns, 1);
            (void)close(fd);
        }
    }
}

/* Start the trivial server on a free loopback port and point the workload at it. */
static int ts_start(void)
{
    if (ts_build_answers() != 0) {
        fprintf(stderr, "kbench: out of memory\n");
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("kbench: socket");
        return -1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("kbench: trivial server");
        (void)close(fd);
        return -1;
    }
    pthread_t th;
    int e = pthread_create(&th, NULL, ts_accept_main, (void *)(intptr_t)fd);
    if (e != 0 || pthread_detach(th) != 0) {
        fprintf(stderr, "kbench: trivial server thread: %s\n", strerror(e));
        (void)close(fd);
        return -1;
    }
    g_opt.host = "127.0.0.1";
    g_opt.port = ntohs(sa.sin_port);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kbench --mode MODE [options]\n"
            "\n"
            "modes: create | putrecord | putrecords | getrecords | fanout | freeport | disksync | diskwrite\n"
            "\n"
            "  --host H          server address, loopback only (default 127.0.0.1)\n"
            "  --port P          server port (default 4567)\n"
            "  --stream NAME     stream name (default kbench)\n"
            "  --shards N        shard count for create / fallback (default 4)\n"
            "  --connections N   connections = threads (default: putrecord 16,\n"
            "                    putrecords 4, getrecords one per shard)\n"
            "  --seconds S       measurement duration (default 10)\n"
            "  --count N         stop after N requests (time cap 600 s unless --seconds)\n"
            "  --record-size B   payload bytes per record (default 100)\n"
            "  --batch N         records per PutRecords (default 500)\n"
            "  --limit N         GetRecords Limit (default 10000)\n"
            "  --fill N          getrecords: records put per open shard first (default 25000)\n"
            "  --no-fill         getrecords: read existing data only\n"
            "  --pid PID         sample the server's RssAnon every 100 ms during the run\n"
            "  --sign KEY:SECRET sign each request with SigV4 (us-east-1) for a server that checks\n"
            "                    signatures (kinesd --auth)\n"
            "                    and report its peak, with VmHWM / VmRSS after the run\n"
            "  --timeout S       per-request socket timeout (default 30)\n"
            "  --dir D           disksync, diskwrite: directory on the disk to time\n"
            "  --mib N           diskwrite: MiB to write (default 256)\n"
            "  --trivial-server  putrecord, putrecords, getrecords: run against a canned\n"
            "                    server inside kbench (the load generator's ceiling)\n"
            "  --consumers N     fanout: consumers, each subscribed to every shard (default 4)\n"
            "\n"
            "Each measuring mode ends with a machine-readable line:\n"
            "RESULT mode=... requests_per_s=... records_per_s=... mb_per_s=... p50_ms=...\n"
            "       p99_ms=... p999_ms=... max_ms=... peak_rss_anon_mb=... rss_anon_mb=...\n"
            "       peak_rss_mb=... (VmHWM) rss_mb=... errors=...\n");
}

static int parse_long(const char *s, long lo, long hi, long *out, const char *name)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "kbench: invalid %s '%s' (expected %ld..%ld)\n", name, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out, const char *name)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "kbench: invalid %s '%s'\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int valid_stream_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > MAX_STREAM_NAME) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr)) {
            return 1;
        }
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            return s6->sin6_addr.s6_addr[12] == 127;
        }
    }
    return 0;
}

static int resolve_endpoint(void)
{
    char port[16];
    (void)snprintf(port, sizeof port, "%ld", g_opt.port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *ai = NULL;
    int e = getaddrinfo(g_opt.host, port, &hints, &ai);
    if (e != 0) {
        fprintf(stderr, "kbench: cannot resolve %s: %s\n", g_opt.host, gai_strerror(e));
        return -1;
    }
    int found = 0;
    for (struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
        if (is_loopback(p->ai_addr) && p->ai_addrlen <= sizeof g_addr) {
            memcpy(&g_addr, p->ai_addr, p->ai_addrlen);
            g_addrlen = p->ai_addrlen;
            found = 1;
            break;
        }
    }
    freeaddrinfo(ai);
    if (!found) {
        fprintf(stderr, "kbench: refusing non-loopback endpoint %s\n", g_opt.host);
        return -1;
    }
    int n;
    if (g_addr.ss_family == AF_INET6 && strchr(g_opt.host, ':') != NULL) {
        n = snprintf(g_host_header, sizeof g_host_header, "[%s]:%ld", g_opt.host, g_opt.port);
    } else {
        n = snprintf(g_host_header, sizeof g_host_header, "%s:%ld", g_opt.host, g_opt.port);
    }
    if (n < 0 || (size_t)n >= sizeof g_host_header) {
        fprintf(stderr, "kbench: host name too long\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        O_HOST = 256,
        O_PORT,
        O_STREAM,
        O_SHARDS,
        O_MODE,
        O_CONN,
        O_SECONDS,
        O_COUNT,
        O_RSIZE,
        O_BATCH,
        O_LIMIT,
        O_FILL,
        O_NOFILL,
        O_PID,
        O_SIGN,
        O_TIMEOUT,
        O_DIR,
        O_MIB,
        O_TRIVIAL,
        O_CONSUMERS,
        O_HELP
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"stream", required_argument, NULL, O_STREAM},
        {"shards", required_argument, NULL, O_SHARDS},
        {"mode", required_argument, NULL, O_MODE},
        {"connections", required_argument, NULL, O_CONN},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"count", required_argument, NULL, O_COUNT},
        {"record-size", required_argument, NULL, O_RSIZE},
        {"batch", required_argument, NULL, O_BATCH},
        {"limit", required_argument, NULL, O_LIMIT},
        {"fill", required_argument, NULL, O_FILL},
        {"no-fill", no_argument, NULL, O_NOFILL},
        {"pid", required_argument, NULL, O_PID},
        {"sign", required_argument, NULL, O_SIGN},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"dir", required_argument, NULL, O_DIR},
        {"mib", required_argument, NULL, O_MIB},
        {"trivial-server", no_argument, NULL, O_TRIVIAL},
        {"consumers", required_argument, NULL, O_CONSUMERS},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int ch;
    long v;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_HOST: g_opt.host = optarg; break;
        case O_PORT:
            if (parse_long(optarg, 1, 65535, &g_opt.port, "port") != 0) {
                return 2;
            }
            break;
        case O_STREAM: g_opt.stream = optarg; break;
        case O_SHARDS:
            if (parse_long(optarg, 1, MAX_SHARDS, &g_opt.shards, "shards") != 0) {
                return 2;
            }
            break;
        case O_MODE:
            if (strcmp(optarg, "create") == 0) {
                g_opt.mode = MODE_CREATE;
            } else if (strcmp(optarg, "putrecord") == 0) {
                g_opt.mode = MODE_PUTRECORD;
            } else if (strcmp(optarg, "putrecords") == 0) {
                g_opt.mode = MODE_PUTRECORDS;
            } else if (strcmp(optarg, "getrecords") == 0) {
                g_opt.mode = MODE_GETRECORDS;
            } else if (strcmp(optarg, "freeport") == 0) {
                g_opt.mode = MODE_FREEPORT;
            } else if (strcmp(optarg, "disksync") == 0) {
                g_opt.mode = MODE_DISKSYNC;
            } else if (strcmp(optarg, "diskwrite") == 0) {
                g_opt.mode = MODE_DISKWRITE;
            } else if (strcmp(optarg, "fanout") == 0) {
                g_opt.mode = MODE_FANOUT;
            } else {
                fprintf(stderr, "kbench: unknown mode '%s'\n", optarg);
                return 2;
            }
            break;
        case O_CONN:
            if (parse_long(optarg, 1, 1024, &g_opt.connections, "connections") != 0) {
                return 2;
            }
            break;
        case O_SECONDS:
            if (parse_double(optarg, 0.001, 3600.0, &g_opt.seconds, "seconds") != 0) {
                return 2;
            }
            g_opt.seconds_set = 1;
            break;
        case O_COUNT:
            if (parse_long(optarg, 1, LONG_MAX, &v, "count") != 0) {
                return 2;
            }
            g_opt.count = v;
            break;
        case O_RSIZE:
            if (parse_long(optarg, 1, 1048576, &g_opt.record_size, "record-size") != 0) {
                return 2;
            }
            break;
        case O_BATCH:
            if (parse_long(optarg, 1, 500, &g_opt.batch, "batch") != 0) {
                return 2;
            }
            break;
        case O_LIMIT:
            if (parse_long(optarg, 1, 10000, &g_opt.limit, "limit") != 0) {
                return 2;
            }
            break;
        case O_FILL:
            if (parse_long(optarg, 0, 100000000, &g_opt.fill_per_shard, "fill") != 0) {
                return 2;
            }
            break;
        case O_NOFILL: g_opt.no_fill = 1; break;
        case O_PID:
            if (parse_long(optarg, 1, INT_MAX, &g_opt.pid, "pid") != 0) {
                return 2;
            }
            break;
        case O_SIGN: {
            const char *colon = strchr(optarg, ':');
            size_t kl = colon ? (size_t)(colon - optarg) : 0;
            if (!colon || !kl || kl >= sizeof g_sign_key || strlen(colon + 1) >= sizeof g_sign_secret ||
                !colon[1]) {
                fprintf(stderr, "kbench: --sign wants KEY:SECRET\n");
                return 2;
            }
            memcpy(g_sign_key, optarg, kl);
            g_sign_key[kl] = 0;
            snprintf(g_sign_secret, sizeof g_sign_secret, "%s", colon + 1);
            g_opt.sign = optarg;
            break;
        }
        case O_TIMEOUT:
            if (parse_long(optarg, 1, 3600, &g_opt.timeout_s, "timeout") != 0) {
                return 2;
            }
            break;
        case O_DIR: g_opt.dir = optarg; break;
        case O_MIB:
            if (parse_long(optarg, 1, 65536, &g_opt.mib, "mib") != 0) {
                return 2;
            }
            break;
        case O_TRIVIAL: g_opt.trivial_server = 1; break;
        case O_CONSUMERS:
            if (parse_long(optarg, 1, 20, &g_opt.consumers, "consumers") != 0) {
                return 2;
            }
            break;
        case O_HELP:
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kbench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (g_opt.mode == MODE_NONE) {
        usage(stderr);
        return 2;
    }
    if (g_opt.mode == MODE_FREEPORT) {
        return mode_freeport();
    }
    if (g_opt.mode == MODE_DISKSYNC) {
        return mode_disksync();
    }
    if (g_opt.mode == MODE_DISKWRITE) {
        return mode_diskwrite();
    }
    if (!valid_stream_name(g_opt.stream)) {
        fprintf(stderr, "kbench: invalid stream name '%s'\n", g_opt.stream);
        return 2;
    }
    if ((size_t)g_opt.batch * (size_t)g_opt.record_size > 5u * 1024u * 1024u &&
        g_opt.mode == MODE_PUTRECORDS) {
        fprintf(stderr, "kbench: warning: batch payload exceeds the 5 MiB PutRecords limit\n");
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        perror("kbench: signal");
        return 1;
    }
    if (g_opt.trivial_server) {
        if (g_opt.mode != MODE_PUTRECORD && g_opt.mode != MODE_PUTRECORDS && g_opt.mode != MODE_GETRECORDS) {
            fprintf(stderr, "kbench: --trivial-server works with putrecord, putrecords and getrecords\n");
            return 2;
        }
        if (g_opt.pid > 0) {
            fprintf(stderr, "kbench: --trivial-server runs in this process; --pid ignored\n");
            g_opt.pid = 0;
        }
        g_opt.no_fill = 1;
        if (ts_start() != 0) {
            return 1;
        }
    }
    if (resolve_endpoint() != 0) {
        return 2;
    }
    struct memstat m0;
    if (g_opt.pid > 0 && proc_mem(g_opt.pid, &m0) != 0) {
        fprintf(stderr, "kbench: warning: cannot read memory of pid %ld\n", g_opt.pid);
    }

    int nconn = (int)g_opt.connections;
    switch (g_opt.mode) {
    case MODE_CREATE: return mode_create();
    case MODE_PUTRECORD: return mode_put(MODE_PUTRECORD, nconn > 0 ? nconn : 16);
    case MODE_PUTRECORDS: return mode_put(MODE_PUTRECORDS, nconn > 0 ? nconn : 4);
    case MODE_GETRECORDS: return mode_getrecords(nconn);
    case MODE_FANOUT: return mode_fanout(nconn > 0 ? nconn : 1);
    case MODE_FREEPORT:
    case MODE_DISKSYNC:
    case MODE_DISKWRITE:
    case MODE_NONE: break;
    }
    return 2;
}
