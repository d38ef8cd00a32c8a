/* kz_mlkem.h — ML-KEM-768 (FIPS 203): key generation, encapsulation, decapsulation with
 * implicit rejection, and the input checks of §7.2 and §7.3. Constant time in secret data:
 * no branch or memory index depends on a secret (checked under valgrind, docs/PQC.md). */
#ifndef KZ_MLKEM_H
#define KZ_MLKEM_H

#include <stddef.h>
#include <stdint.h>

#define KZ_MLKEM768_EK_BYTES 1184 /* encapsulation key: ByteEncode12(t̂) ‖ ρ */
#define KZ_MLKEM768_DK_BYTES 2400 /* decapsulation key: dk_PKE ‖ ek ‖ H(ek) ‖ z */
#define KZ_MLKEM768_CT_BYTES 1088
#define KZ_MLKEM_SS_BYTES 32
#define KZ_MLKEM_SEED_BYTES 64    /* d ‖ z */

/* ML-KEM.KeyGen_internal(d, z) (Algorithm 16): deterministic from the 64-byte seed d ‖ z. */
void kz_mlkem768_keygen_seed(const uint8_t seed[KZ_MLKEM_SEED_BYTES], uint8_t ek[KZ_MLKEM768_EK_BYTES],
			     uint8_t dk[KZ_MLKEM768_DK_BYTES]);
/* KeyGen with fresh randomness (OpenSSL's RAND). 0, or -1 when no randomness. */
int kz_mlkem768_keygen(uint8_t ek[KZ_MLKEM768_EK_BYTES], uint8_t dk[KZ_MLKEM768_DK_BYTES]);

/* The encapsulation key check (§7.2): length, and every coefficient of t̂ below q
 * (ByteEncode12(ByteDecode12(ek)) == ek). 0 when valid. */
int kz_mlkem768_check_ek(const uint8_t *ek, size_t n);
/* The decapsulation key check (§7.3): length, and H(ek) inside dk matches. 0 when valid. */
int kz_mlkem768_check_dk(const uint8_t *dk, size_t n);

/* ML-KEM.Encaps_internal(ek, m) (Algorithm 17) with the message m given. The caller has
 * checked ek. */
void kz_mlkem768_encaps_m(const uint8_t ek[KZ_MLKEM768_EK_BYTES], const uint8_t m[32], uint8_t ct[KZ_MLKEM768_CT_BYTES],
			  uint8_t ss[KZ_MLKEM_SS_BYTES]);
/* Encaps with a fresh m; checks ek first. 0, or -1 when ek is invalid or no randomness. */
int kz_mlkem768_encaps(const uint8_t *ek, size_t ek_len, uint8_t ct[KZ_MLKEM768_CT_BYTES], uint8_t ss[KZ_MLKEM_SS_BYTES]);
/* ML-KEM.Decaps_internal (Algorithm 18): a ciphertext that does not re-encrypt to itself
 * yields the implicit-rejection key J(z ‖ c), indistinguishably. The caller has checked dk;
 * the ciphertext length is fixed by the type. */
void kz_mlkem768_decaps(const uint8_t dk[KZ_MLKEM768_DK_BYTES], const uint8_t ct[KZ_MLKEM768_CT_BYTES],
			uint8_t ss[KZ_MLKEM_SS_BYTES]);

/* Exposed for tests: floor(n / 3329) without a division instruction, for n < 2^32. */
uint32_t kz_mlkem_div_q(uint32_t n);

#endif
