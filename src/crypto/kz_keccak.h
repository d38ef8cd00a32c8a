/* kz_keccak.h — Keccak-f[1600] and the FIPS 202 functions ML-KEM and ML-DSA need: SHA3-256,
 * SHA3-512 and SHAKE128/256 with incremental absorb and squeeze (OpenSSL 3.0 cannot squeeze
 * a XOF in steps). Constant time: no data-dependent branch or index. */
#ifndef KZ_KECCAK_H
#define KZ_KECCAK_H

#include <stddef.h>
#include <stdint.h>

struct kz_keccak {
	uint64_t s[25];
	size_t rate;   /* bytes: 168 SHAKE128, 136 SHAKE256/SHA3-256, 72 SHA3-512 */
	size_t pos;    /* absorb: bytes taken into the current block; squeeze: bytes given */
	uint8_t dsep;  /* 0x1F SHAKE, 0x06 SHA3 */
	int squeezing;
};

void kz_shake128_init(struct kz_keccak *k);
void kz_shake256_init(struct kz_keccak *k);
void kz_keccak_absorb(struct kz_keccak *k, const void *p, size_t n);
/* The first call ends absorbing; later calls continue the output stream. */
void kz_keccak_squeeze(struct kz_keccak *k, void *out, size_t n);

void kz_sha3_256(const void *p, size_t n, uint8_t out[32]);
void kz_sha3_512(const void *p, size_t n, uint8_t out[64]);
void kz_shake256(const void *p, size_t n, void *out, size_t out_len);
/* The permutation itself (exposed for tests). */
void kz_keccak_f1600(uint64_t s[25]);

#endif
