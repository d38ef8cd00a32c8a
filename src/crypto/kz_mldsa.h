/* kz_mldsa.h — ML-DSA-65 (FIPS 204): key generation (Algorithm 6), signing (Algorithms 2
 * and 7, constant time in secret data) and verification (Algorithms 3 and 8); docs/PQC.md. */
#ifndef KZ_MLDSA_H
#define KZ_MLDSA_H

#include <stddef.h>
#include <stdint.h>

#define KZ_MLDSA65_PK_BYTES 1952
#define KZ_MLDSA65_SK_BYTES 4032
#define KZ_MLDSA65_SIG_BYTES 3309

/* KeyGen_internal(ξ): deterministic from the 32-byte seed ξ. */
void kz_mldsa65_keygen_seed(const uint8_t xi[32], uint8_t pk[KZ_MLDSA65_PK_BYTES], uint8_t sk[KZ_MLDSA65_SK_BYTES]);

/* ML-DSA.Verify_internal(pk, M', σ) (Algorithm 8): 0 when the signature is valid. */
int kz_mldsa65_verify_internal(const uint8_t pk[KZ_MLDSA65_PK_BYTES], const uint8_t *msg, size_t msg_len,
			       const uint8_t *sig, size_t sig_len);
/* ML-DSA.Verify(pk, M, σ, ctx) (Algorithm 3, pure ML-DSA; ctx at most 255 bytes). */
int kz_mldsa65_verify(const uint8_t *pk, size_t pk_len, const uint8_t *msg, size_t msg_len, const uint8_t *ctx,
		      size_t ctx_len, const uint8_t *sig, size_t sig_len);

/* ML-DSA.Sign_internal(sk, M', rnd) (Algorithm 7): rnd all zero for the deterministic
 * variant, 32 fresh random bytes for the hedged one. 0, or -1 if no signature was found in
 * 1000 rounds (probability negligible). */
int kz_mldsa65_sign_internal(const uint8_t sk[KZ_MLDSA65_SK_BYTES], const uint8_t *msg, size_t msg_len,
			     const uint8_t rnd[32], uint8_t sig[KZ_MLDSA65_SIG_BYTES]);
/* Sign_internal from the message representative μ = H(tr ‖ M', 64) (the "external μ"
 * interface). */
int kz_mldsa65_sign_mu(const uint8_t sk[KZ_MLDSA65_SK_BYTES], const uint8_t mu[64], const uint8_t rnd[32],
		       uint8_t sig[KZ_MLDSA65_SIG_BYTES]);
/* ML-DSA.Sign(sk, M, ctx) (Algorithm 2, pure ML-DSA) with the given rnd. */
int kz_mldsa65_sign(const uint8_t sk[KZ_MLDSA65_SK_BYTES], const uint8_t *msg, size_t msg_len, const uint8_t *ctx,
		    size_t ctx_len, const uint8_t rnd[32], uint8_t sig[KZ_MLDSA65_SIG_BYTES]);
/* Exposed for tests: ⌊y / 1023⌋ for y < 2^15 without a division. */
uint32_t kz_mldsa_div_1023(uint32_t y);

#endif
