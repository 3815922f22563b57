/* tls.c: the TLS context: versions, ALPN, the certificate (given or made on first start).
 *
 * The loop does the handshakes and the reads and writes (non-blocking, WANT_READ/WANT_WRITE;
 * its own write BIO gathers the records, see loop.c); this module only builds the SSL_CTX once
 * at start: versions, ciphers and their order, buffers, ALPN. ALPN prefers h2 when the client offers it
 * and takes http/1.1 otherwise; the protocol is decided by the first bytes after the handshake
 * anyway (the HTTP/2 preface or not). A self-signed certificate, once made, is reused on every
 * later start, so a client that trusts it keeps trusting it. */
#include "tls.h"
#include "klog.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* the TLS read buffer: four full records and their headers */
#define TLS_READ_BUFFER \
    (4 * (SSL3_RT_MAX_PLAIN_LENGTH + SSL3_RT_MAX_ENCRYPTED_OVERHEAD + SSL3_RT_HEADER_LENGTH))

static void print_errors(const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    klog(KLOG_ERROR, "%s%s%s: %s", what, file ? " " : "", file ? file : "", buf);
    ERR_clear_error();
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char prefs[][9] = {"\x02h2", "\x08http/1.1"};
    for (size_t k = 0; k < sizeof prefs / sizeof prefs[0]; k++)
        for (unsigned i = 0; i < inlen; i += 1u + in[i])
            if (in[i] == prefs[k][0] && i + 1u + in[i] <= inlen && !memcmp(in + i + 1, prefs[k] + 1, in[i])) {
                *out = in + i + 1;
                *outlen = in[i];
                return SSL_TLSEXT_ERR_OK;
            }
    return SSL_TLSEXT_ERR_NOACK;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Make a key and a self-signed certificate and write them. 0 or -1 after printing why. */
static int make_self_signed(const char *cert_path, const char *key_path)
{
    int rc = -1;
    X509 *x = NULL;
    FILE *f = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key) {
        print_errors("cannot make a TLS key", NULL);
        return -1;
    }
    x = X509_new();
    unsigned char serial[16];
    if (!x || RAND_bytes(serial, sizeof serial) != 1)
        goto fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
        BN_free(bn);
        goto fail;
    }
    BN_free(bn);
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) || !X509_set_pubkey(x, key) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"kinesd localhost", -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name))
        goto fail;
    if (add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") ||
        add_ext(x, NID_basic_constraints, "critical,CA:TRUE") ||
        add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") ||
        add_ext(x, NID_ext_key_usage, "serverAuth") || add_ext(x, NID_subject_key_identifier, "hash") ||
        !X509_sign(x, key, EVP_sha256()))
        goto fail;
    int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        klog(KLOG_ERROR, "cannot write %s: %s", key_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    if (!PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) || fclose(f)) {
        f = NULL;
        goto fail;
    }
    f = fopen(cert_path, "w");
    if (!f) {
        klog(KLOG_ERROR, "cannot write %s: %s", cert_path, strerror(errno));
        goto out;
    }
    if (!PEM_write_X509(f, x) || fclose(f)) {
        f = NULL;
        goto fail;
    }
    f = NULL;
    rc = 0;
    goto out;
fail:
    print_errors("cannot make a self-signed certificate", NULL);
    if (f)
        fclose(f);
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

static void print_fingerprint(SSL_CTX *ctx, const char *path)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    char hex[EVP_MAX_MD_SIZE * 3 + 1] = "";
    if (x && X509_digest(x, EVP_sha256(), md, &n))
        for (unsigned i = 0; i < n; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02X%s", md[i], i + 1 < n ? ":" : "");
    klog(KLOG_WARN, "TLS certificate %s (SHA-256 %s)", path, hex);
}

SSL_CTX *tls_open(const char *cert_file, const char *key_file, const char *self_signed_dir)
{
    char cert_path[4096], key_path[4096];
    if (self_signed_dir) {
        snprintf(cert_path, sizeof cert_path, "%s/kinesd-cert.pem", self_signed_dir);
        snprintf(key_path, sizeof key_path, "%s/kinesd-key.pem", self_signed_dir);
        if (access(cert_path, R_OK) || access(key_path, R_OK)) {
            if (mkdir(self_signed_dir, 0700) && errno != EEXIST) {
                klog(KLOG_ERROR, "cannot create %s: %s", self_signed_dir, strerror(errno));
                return NULL;
            }
            if (make_self_signed(cert_path, key_path))
                return NULL;
        }
        cert_file = cert_path;
        key_file = key_path;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        print_errors("cannot set up TLS", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* read what the socket has, not a record header and then its body, into a buffer that
     * holds several full records: one recv per batch of records instead of two per record (a
     * 70 KB request body is four or five records). RELEASE_BUFFERS frees it whenever it is
     * empty, so only a connection in the middle of a record holds it (at most 66 KB, beside the
     * loop's own read buffer of 64 KB). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER);
    /* AES-GCM before ChaCha20 (AES-NI), AES-128 before AES-256 (fewer rounds, the same GHASH);
     * the server's order decides. The same suites as OpenSSL's defaults, reordered: TLS 1.3's
     * three, and for TLS 1.2 DEFAULT's list ("ALL:!COMPLEMENTOFDEFAULT:!eNULL") with the ECDHE
     * AES-GCM ones first (by default ChaCha20 comes before AES-128-GCM). */
    if (SSL_CTX_set_ciphersuites(
            ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AES128+AESGCM:ECDHE+AESGCM:ALL:!COMPLEMENTOFDEFAULT:!eNULL") !=
            1) {
        print_errors("cannot set the TLS ciphers", NULL);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        print_errors("cannot use the TLS certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        print_errors("cannot use the TLS key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        print_errors("the TLS key does not match the certificate", key_file);
        goto fail;
    }
    print_fingerprint(ctx, cert_file);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
