/* fuzz_mlkem.c — ML-KEM-768 on hostile inputs: an arbitrary encapsulation key (the peer's
 * key share) through the §7.2 check and, when it passes, encapsulation; an arbitrary
 * ciphertext through decapsulation with a fixed key (implicit rejection: some key always
 * comes out, the same for the same input). First byte: 0 = ek, 1 = ciphertext. */
#include "crypto/kz_mlkem.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t ek[KZ_MLKEM768_EK_BYTES], dk[KZ_MLKEM768_DK_BYTES];
	static int ready;
	if (!ready) {
		uint8_t seed[KZ_MLKEM_SEED_BYTES];
		memset(seed, 0x5A, sizeof seed);
		kz_mlkem768_keygen_seed(seed, ek, dk);
		ready = 1;
	}
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	uint8_t ct[KZ_MLKEM768_CT_BYTES], ss[32], ss2[32], m[32] = { 1 };
	if (data[0] & 1) {
		if (n != KZ_MLKEM768_CT_BYTES)
			return 0;
		kz_mlkem768_decaps(dk, p, ss);
		kz_mlkem768_decaps(dk, p, ss2);
		assert(memcmp(ss, ss2, 32) == 0);
		return 0;
	}
	if (kz_mlkem768_check_ek(p, n) != 0)
		return 0;
	/* a valid key: encapsulation succeeds, and re-encoding the key changes nothing */
	kz_mlkem768_encaps_m(p, m, ct, ss);
	assert(kz_mlkem768_encaps(p, n, ct, ss) == 0);
	return 0;
}
