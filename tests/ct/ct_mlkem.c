/* ct_mlkem.c — constant-time check of ML-KEM-768 (the ctgrind technique): the secret inputs
 * are marked undefined for valgrind's memcheck, which then reports every conditional branch
 * and every memory address computed from them ("Conditional jump or move depends on
 * uninitialised value(s)", "Use of uninitialised value of size 8"). Built from the library's
 * sources with -DKZ_CTGRIND, where the code declassifies what the standard makes public (ρ,
 * which is part of the encapsulation key). Run by ctest under
 * `valgrind --error-exitcode=1`; any report fails the test.
 *
 * Checked: ML-KEM KeyGen from a secret seed (d, z); Decaps with a secret dk_PKE and z on a
 * valid and on a modified ciphertext (the implicit-rejection path); Encaps with a secret m;
 * ML-DSA-65 signing with secret K, s1, s2, t0 and rnd (the rejection decisions, w1 and the
 * hint, which the signature or the verifier reveal anyway, are declassified in the code). */
#include "crypto/kz_mldsa.h"
#include "crypto/kz_mlkem.h"

#include <stdio.h>
#include <string.h>
#include <valgrind/memcheck.h>

#define SECRET(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))

int main(void)
{
	uint8_t seed[KZ_MLKEM_SEED_BYTES], ek[KZ_MLKEM768_EK_BYTES], dk[KZ_MLKEM768_DK_BYTES];
	uint8_t m[32], ct[KZ_MLKEM768_CT_BYTES], ss[32], ss2[32];
	for (size_t i = 0; i < sizeof seed; i++)
		seed[i] = (uint8_t)(i * 37 + 11);
	for (size_t i = 0; i < sizeof m; i++)
		m[i] = (uint8_t)(i * 91 + 5);

	SECRET(seed, sizeof seed);
	kz_mlkem768_keygen_seed(seed, ek, dk);
	PUBLIC(ek, sizeof ek); /* the outputs' public parts, for what follows */
	PUBLIC(dk + 1152, KZ_MLKEM768_EK_BYTES + 32);

	SECRET(m, sizeof m);
	kz_mlkem768_encaps_m(ek, m, ct, ss);
	PUBLIC(ct, sizeof ct);
	PUBLIC(ss, sizeof ss);

	SECRET(dk, 1152);                    /* dk_PKE */
	SECRET(dk + KZ_MLKEM768_DK_BYTES - 32, 32); /* z */
	kz_mlkem768_decaps(dk, ct, ss2);
	PUBLIC(ss2, sizeof ss2);
	int ok = memcmp(ss, ss2, 32) == 0;
	ct[100] ^= 0x10; /* implicit rejection */
	kz_mlkem768_decaps(dk, ct, ss2);
	PUBLIC(ss2, sizeof ss2);
	ok &= memcmp(ss, ss2, 32) != 0;
	/* ML-DSA-65 signing with a secret key (ρ and tr are public: they are in pk) */
	static uint8_t pk[KZ_MLDSA65_PK_BYTES], sk[KZ_MLDSA65_SK_BYTES], sig[KZ_MLDSA65_SIG_BYTES];
	uint8_t xi[32], rnd[32];
	memset(xi, 3, sizeof xi);
	memset(rnd, 5, sizeof rnd);
	kz_mldsa65_keygen_seed(xi, pk, sk);
	PUBLIC(pk, sizeof pk);
	PUBLIC(sk, sizeof sk);
	SECRET(sk + 32, 32);                       /* K */
	SECRET(sk + 128, KZ_MLDSA65_SK_BYTES - 128); /* s1, s2, t0 */
	SECRET(rnd, sizeof rnd);
	static const uint8_t msg[] = "audit checkpoint";
	int s_ok = kz_mldsa65_sign(sk, msg, sizeof msg, NULL, 0, rnd, sig) == 0;
	PUBLIC(sig, sizeof sig);
	PUBLIC(sk, sizeof sk);
	ok &= s_ok && kz_mldsa65_verify(pk, sizeof pk, msg, sizeof msg, NULL, 0, sig, sizeof sig) == 0;
	printf("ct_mlkem: ML-KEM keygen, encaps, decaps (valid and rejected) and ML-DSA-65 signing ran with secret "
	       "inputs; %s\n",
	       ok ? "results correct" : "RESULTS WRONG");
	return ok ? 0 : 1;
}
