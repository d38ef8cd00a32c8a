/* fuzz_mldsa.c — ML-DSA-65 verification on hostile input: the signature decoder (z bounds,
 * HintBitUnpack's ordering and count rules) and the public-key decoder, with a fixed key
 * (first byte even) or an arbitrary public key (odd: the input is pk ‖ signature). Nothing
 * but a real signature may verify: with the fixed key, no input verifies at all unless it is
 * the signature the harness made. */
#include "crypto/kz_mldsa.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t pk[KZ_MLDSA65_PK_BYTES], sk[KZ_MLDSA65_SK_BYTES], good[KZ_MLDSA65_SIG_BYTES];
	static const uint8_t msg[] = "fuzz";
	static int ready;
	if (!ready) {
		uint8_t xi[32] = { 9 }, rnd[32] = { 0 };
		kz_mldsa65_keygen_seed(xi, pk, sk);
		assert(kz_mldsa65_sign(sk, msg, sizeof msg, NULL, 0, rnd, good) == 0);
		ready = 1;
	}
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if (data[0] & 1) {
		if (n < KZ_MLDSA65_PK_BYTES)
			return 0;
		(void)kz_mldsa65_verify(p, KZ_MLDSA65_PK_BYTES, msg, sizeof msg, NULL, 0, p + KZ_MLDSA65_PK_BYTES,
					n - KZ_MLDSA65_PK_BYTES);
		return 0;
	}
	int rc = kz_mldsa65_verify(pk, sizeof pk, msg, sizeof msg, NULL, 0, p, n);
	assert(rc != 0 || (n == sizeof good && memcmp(p, good, n) == 0));
	return 0;
}
