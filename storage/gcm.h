/* gcm.h: AES-256-GCM for short records with AES-NI and PCLMULQDQ (storage-internal).
 *
 * Exactly the standard AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce and a 128-bit tag:
 * what it seals, libsodium's crypto_aead_aes256gcm and OpenSSL's EVP_aes_256_gcm open, and the
 * other way round. A key is expanded once (gcm_init) into a struct gcm_key that then serves any
 * number of messages; gcm.c says why the project carries its own and how it is verified.
 *
 * Only where gcm_available() says so: every other function needs the CPU's AES, PCLMULQDQ and
 * SSSE3 instructions. */
#ifndef KINESD_GCM_H
#define KINESD_GCM_H

#include <stdbool.h>
#include <stddef.h>

#define GCM_KEY_BYTES 32
#define GCM_NONCE_BYTES 12
#define GCM_TAG_BYTES 16
#define GCM_HPOWERS 16 /* blocks hashed per reduction */

/* An expanded key: the AES-256 round keys and the hash key's first powers. Key material: the
 * owner wipes it (sodium_memzero) when done. No pointers inside: copy it freely. */
struct gcm_key {
    _Alignas(16) unsigned char rk[15][16];          /* AES-256 round keys */
    _Alignas(16) unsigned char h[GCM_HPOWERS][16];  /* H^1..H^16, H = AES(key, 0^128), bytes reversed */
    _Alignas(16) unsigned char hk[GCM_HPOWERS][16]; /* each one's halves xor-ed (Karatsuba), low 8 bytes */
};

/* Whether this CPU has what the functions below need (AES-NI, PCLMULQDQ, SSSE3); asked once,
 * then cached. */
bool gcm_available(void);

/* Expand key (GCM_KEY_BYTES, borrowed for the call) into *k. */
void gcm_init(struct gcm_key *k, const unsigned char *key);

/* Encrypt len bytes of m into c (c == m is allowed; otherwise they must not overlap) and
 * write the tag (GCM_TAG_BYTES) to tag, authenticating adlen bytes of ad with them. nonce:
 * GCM_NONCE_BYTES, never used twice with one key. All pointers borrowed for the call; ad may be
 * NULL when adlen is 0, m and c when len is 0. */
void gcm_seal(const struct gcm_key *k, unsigned char *c, unsigned char *tag, const unsigned char *m,
              size_t len, const unsigned char *ad, size_t adlen, const unsigned char *nonce);

/* Check and decrypt len bytes of c with tag, ad and nonce into m (m == c is allowed). Returns 0,
 * or -1 when the tag does not check out: then m's len bytes are zeros (nothing of a message that
 * does not check out is kept). The comparison of tags takes the same time however they differ. */
int gcm_open(const struct gcm_key *k, unsigned char *m, const unsigned char *c, size_t len,
             const unsigned char *tag, const unsigned char *ad, size_t adlen, const unsigned char *nonce);

#endif
