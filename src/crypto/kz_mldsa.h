/* kz_mldsa.h — ML-DSA-65 (FIPS 204). This step: key generation (Algorithm 6,
 * ML-DSA.KeyGen_internal); signing and verification follow (docs/PQC.md). */
#ifndef KZ_MLDSA_H
#define KZ_MLDSA_H

#include <stdint.h>

#define KZ_MLDSA65_PK_BYTES 1952
#define KZ_MLDSA65_SK_BYTES 4032
#define KZ_MLDSA65_SIG_BYTES 3309

/* KeyGen_internal(ξ): deterministic from the 32-byte seed ξ. */
void kz_mldsa65_keygen_seed(const uint8_t xi[32], uint8_t pk[KZ_MLDSA65_PK_BYTES], uint8_t sk[KZ_MLDSA65_SK_BYTES]);

#endif
