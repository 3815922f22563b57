/* tls.h: the TLS context (OpenSSL) for the event loop: certificate, key, ALPN, versions. */
#ifndef KINESD_TLS_H
#define KINESD_TLS_H

#include <openssl/ssl.h>

/* A server context for TLS 1.2 and 1.3 with ALPN h2 and http/1.1, from cert_file and
 * key_file (PEM). With self_signed_dir set instead, the key and certificate live there
 * (kinesd-key.pem, kinesd-cert.pem), made on first use: EC P-256, ten years, SAN localhost,
 * 127.0.0.1 and ::1; the certificate's path and SHA-256 fingerprint are printed on stderr.
 * Returns the context (owned by the caller, SSL_CTX_free), or NULL after printing why. */
SSL_CTX *tls_open(const char *cert_file, const char *key_file, const char *self_signed_dir);

#endif
