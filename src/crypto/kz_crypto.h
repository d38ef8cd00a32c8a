/* kz_crypto.h — the hashes and signatures the rest of kizuna needs, behind one small API
 * (only net/ and crypto/ call OpenSSL). */
#ifndef KZ_CRYPTO_H
#define KZ_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

void kz_sha256(const void *p, size_t n, uint8_t out[32]);
/* SHA-1, for name-based UUIDs (RFC 9562 version 5, as STIX 2.1 derives SCO ids) only. */
void kz_sha1(const void *p, size_t n, uint8_t out[20]);
/* Ed25519 (RFC 8032) with raw 32-byte keys. Return 0 on success. */
int kz_ed25519_keygen(uint8_t priv[32], uint8_t pub[32]);
int kz_ed25519_public(const uint8_t priv[32], uint8_t pub[32]);
int kz_ed25519_sign(const uint8_t priv[32], const void *msg, size_t n, uint8_t sig[64]);
/* 0 when sig is a valid signature of msg by pub. */
int kz_ed25519_verify(const uint8_t pub[32], const void *msg, size_t n, const uint8_t sig[64]);

#endif
