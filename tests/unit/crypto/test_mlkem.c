/* test_mlkem.c — Keccak against OpenSSL's SHA-3/SHAKE, the division by q, and ML-KEM-768
 * against every vector in ../shared/data/pqc: NIST ACVP keyGen and encapDecap
 * (internalProjection, FIPS 203 final) and Wycheproof mlkem_768_{keygen_seed,encaps,test}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/kz_keccak.h"
#include "crypto/kz_mlkem.h"

#include "kat.h"

static void openssl_digest(const char *alg, const uint8_t *p, size_t n, uint8_t *out, size_t out_len)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	const EVP_MD *md = EVP_get_digestbyname(alg);
	assert_non_null(md);
	assert_int_equal(EVP_DigestInit_ex(c, md, NULL), 1);
	assert_int_equal(EVP_DigestUpdate(c, p, n), 1);
	if (EVP_MD_flags(md) & EVP_MD_FLAG_XOF)
		assert_int_equal(EVP_DigestFinalXOF(c, out, out_len), 1);
	else
		assert_int_equal(EVP_DigestFinal_ex(c, out, NULL), 1);
	EVP_MD_CTX_free(c);
}

static void test_keccak_against_openssl(void **st)
{
	(void)st;
	static uint8_t in[1200], a[700], b[700];
	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (uint8_t)(i * 131 + 7);
	for (size_t n = 0; n < sizeof in; n += (n < 300 ? 1 : 37)) {
		kz_sha3_256(in, n, a);
		openssl_digest("SHA3-256", in, n, b, 32);
		assert_memory_equal(a, b, 32);
		kz_sha3_512(in, n, a);
		openssl_digest("SHA3-512", in, n, b, 64);
		assert_memory_equal(a, b, 64);
		size_t out = 1 + (n * 7) % 690;
		kz_shake256(in, n, a, out);
		openssl_digest("SHAKE256", in, n, b, out);
		assert_memory_equal(a, b, out);
		/* SHAKE128 absorbed and squeezed in uneven pieces */
		struct kz_keccak k;
		kz_shake128_init(&k);
		for (size_t off = 0; off < n;) {
			size_t piece = 1 + (off * 13) % 200;
			if (piece > n - off)
				piece = n - off;
			kz_keccak_absorb(&k, in + off, piece);
			off += piece;
		}
		for (size_t off = 0; off < out;) {
			size_t piece = 1 + (off * 11) % 170;
			if (piece > out - off)
				piece = out - off;
			kz_keccak_squeeze(&k, a + off, piece);
			off += piece;
		}
		openssl_digest("SHAKE128", in, n, b, out);
		assert_memory_equal(a, b, out);
	}
}

static void test_div_q(void **st)
{
	(void)st;
	for (uint32_t n = 0; n < (1u << 26); n++)
		if (kz_mlkem_div_q(n) != n / 3329)
			fail_msg("div_q(%u) = %u", n, kz_mlkem_div_q(n));
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 10000000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint32_t n = (uint32_t)x & 0x7FFFFFFF;
		if (kz_mlkem_div_q(n) != n / 3329)
			fail_msg("div_q(%u) = %u", n, kz_mlkem_div_q(n));
	}
}

static bool is_768(json_t *g) { return strcmp(json_string_value(json_object_get(g, "parameterSet")), "ML-KEM-768") == 0; }

static void test_acvp_keygen(void **st)
{
	(void)st;
	json_t *j = load("acvp-ML-KEM-keyGen-FIPS203.internalProjection.json");
	size_t gi, ti, n = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		if (!is_768(g))
			continue;
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t ld, lz, le, lk;
			uint8_t *d = hex(t, "d", &ld), *z = hex(t, "z", &lz), *ek = hex(t, "ek", &le), *dk = hex(t, "dk", &lk);
			uint8_t seed[64], e2[KZ_MLKEM768_EK_BYTES], d2[KZ_MLKEM768_DK_BYTES];
			memcpy(seed, d, 32);
			memcpy(seed + 32, z, 32);
			kz_mlkem768_keygen_seed(seed, e2, d2);
			assert_int_equal(le, sizeof e2);
			assert_memory_equal(e2, ek, le);
			assert_memory_equal(d2, dk, lk);
			assert_int_equal(kz_mlkem768_check_ek(e2, sizeof e2), 0);
			assert_int_equal(kz_mlkem768_check_dk(d2, sizeof d2), 0);
			free(d), free(z), free(ek), free(dk);
			n++;
		}
	}
	json_decref(j);
	print_message("ACVP keyGen ML-KEM-768: %zu vectors\n", n);
	assert_int_equal(n, 25);
}

static void test_acvp_encap_decap(void **st)
{
	(void)st;
	json_t *j = load("acvp-ML-KEM-encapDecap-FIPS203.internalProjection.json");
	size_t gi, ti, enc = 0, dec = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		if (!is_768(g))
			continue;
		const char *fn = json_string_value(json_object_get(g, "function"));
		size_t lek, ldk;
		uint8_t *gek = NULL, *gdk = NULL;
		if (strcmp(fn, "decapsulation") == 0) {
			gek = hex(g, "ek", &lek);
			gdk = hex(g, "dk", &ldk);
			assert_int_equal(kz_mlkem768_check_dk(gdk, ldk), 0);
		}
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t lc, lk, lm;
			uint8_t *c = hex(t, "c", &lc), *k = hex(t, "k", &lk), ss[32];
			if (strcmp(fn, "encapsulation") == 0) {
				uint8_t *ek = hex(t, "ek", &lek), *dk = hex(t, "dk", &ldk), *m = hex(t, "m", &lm);
				uint8_t ct[KZ_MLKEM768_CT_BYTES];
				assert_int_equal(kz_mlkem768_check_ek(ek, lek), 0);
				kz_mlkem768_encaps_m(ek, m, ct, ss);
				assert_memory_equal(ct, c, lc);
				assert_memory_equal(ss, k, 32);
				kz_mlkem768_decaps(dk, ct, ss);
				assert_memory_equal(ss, k, 32);
				free(ek), free(dk), free(m);
				enc++;
			} else {
				assert_int_equal(lc, KZ_MLKEM768_CT_BYTES);
				kz_mlkem768_decaps(gdk, c, ss); /* modified ciphertexts: the implicit rejection key */
				assert_memory_equal(ss, k, 32);
				dec++;
			}
			free(c), free(k);
		}
		free(gek), free(gdk);
	}
	json_decref(j);
	print_message("ACVP encapDecap ML-KEM-768: %zu encapsulations, %zu decapsulations\n", enc, dec);
	assert_int_equal(enc, 25);
	assert_int_equal(dec, 10);
}

static void test_wycheproof_keygen(void **st)
{
	(void)st;
	json_t *j = load("mlkem_768_keygen_seed_test.json");
	size_t gi, ti, n = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t ls, le, lk;
			uint8_t *seed = hex(t, "seed", &ls), *ek = hex(t, "ek", &le), *dk = hex(t, "dk", &lk);
			uint8_t e2[KZ_MLKEM768_EK_BYTES], d2[KZ_MLKEM768_DK_BYTES];
			assert_int_equal(ls, 64);
			kz_mlkem768_keygen_seed(seed, e2, d2);
			assert_memory_equal(e2, ek, le);
			assert_memory_equal(d2, dk, lk);
			free(seed), free(ek), free(dk);
			n++;
		}
	}
	json_decref(j);
	print_message("Wycheproof keygen_seed: %zu vectors\n", n);
	assert_int_equal(n, 100);
}

static void test_wycheproof_encaps(void **st)
{
	(void)st;
	json_t *j = load("mlkem_768_encaps_test.json");
	size_t gi, ti, valid = 0, invalid = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t le, lm, lc, lk;
			uint8_t *ek = hex(t, "ek", &le), *m = hex(t, "m", &lm), *c = hex(t, "c", &lc), *k = hex(t, "K", &lk);
			bool ok = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
			if (!ok) {
				assert_int_not_equal(kz_mlkem768_check_ek(ek, le), 0);
				invalid++;
			} else {
				uint8_t ct[KZ_MLKEM768_CT_BYTES], ss[32];
				assert_int_equal(kz_mlkem768_check_ek(ek, le), 0);
				kz_mlkem768_encaps_m(ek, m, ct, ss);
				assert_memory_equal(ct, c, lc);
				assert_memory_equal(ss, k, lk);
				valid++;
			}
			free(ek), free(m), free(c), free(k);
		}
	}
	json_decref(j);
	print_message("Wycheproof encaps: %zu valid, %zu invalid (rejected by the §7.2 check)\n", valid, invalid);
	assert_int_equal(valid + invalid, 265);
}

static void test_wycheproof_decaps(void **st)
{
	(void)st;
	json_t *j = load("mlkem_768_test.json");
	size_t gi, ti, valid = 0, invalid = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t ls, lc, lk;
			uint8_t *seed = hex(t, "seed", &ls), *c = hex(t, "c", &lc), *k = hex(t, "K", &lk);
			bool ok = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
			/* the API's types: a 64-byte seed and a 1088-byte ciphertext, anything else is
			 * refused before any computation (the provider checks lengths the same way) */
			bool accepted = ls == KZ_MLKEM_SEED_BYTES && lc == KZ_MLKEM768_CT_BYTES;
			assert_int_equal(accepted, ok);
			if (accepted) {
				uint8_t ek[KZ_MLKEM768_EK_BYTES], dk[KZ_MLKEM768_DK_BYTES], ss[32];
				kz_mlkem768_keygen_seed(seed, ek, dk);
				if (json_object_get(t, "ek")) {
					size_t le;
					uint8_t *ek2 = hex(t, "ek", &le);
					assert_memory_equal(ek, ek2, le);
					free(ek2);
				}
				kz_mlkem768_decaps(dk, c, ss);
				assert_memory_equal(ss, k, lk);
				valid++;
			} else {
				invalid++;
			}
			free(seed), free(c), free(k);
		}
	}
	json_decref(j);
	print_message("Wycheproof decaps: %zu valid, %zu invalid\n", valid, invalid);
	assert_int_equal(valid + invalid, 193);
}

static void test_round_trip_and_rejection(void **st)
{
	(void)st;
	uint8_t ek[KZ_MLKEM768_EK_BYTES], dk[KZ_MLKEM768_DK_BYTES], ct[KZ_MLKEM768_CT_BYTES], a[32], b[32], c[32];
	for (int i = 0; i < 50; i++) {
		assert_int_equal(kz_mlkem768_keygen(ek, dk), 0);
		assert_int_equal(kz_mlkem768_encaps(ek, sizeof ek, ct, a), 0);
		kz_mlkem768_decaps(dk, ct, b);
		assert_memory_equal(a, b, 32);
		ct[i * 7 % sizeof ct] ^= 1;
		kz_mlkem768_decaps(dk, ct, c);
		assert_memory_not_equal(a, c, 32); /* implicit rejection */
	}
	/* a key with a coefficient of q is refused; so is a corrupted H(ek) in dk */
	ek[0] = 0x01, ek[1] = (uint8_t)((ek[1] & 0xF0) | 0x0D); /* 0xD01 = 3329 */
	assert_int_not_equal(kz_mlkem768_check_ek(ek, sizeof ek), 0);
	assert_int_not_equal(kz_mlkem768_encaps(ek, sizeof ek, ct, a), 0);
	dk[KZ_MLKEM768_DK_BYTES - 40] ^= 1;
	assert_int_not_equal(kz_mlkem768_check_dk(dk, sizeof dk), 0);
	assert_int_not_equal(kz_mlkem768_check_dk(dk, sizeof dk - 1), 0);
}

int main(void)
{
	if (kat_present("mlkem_768_test.json"))
		return 77;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keccak_against_openssl), cmocka_unit_test(test_div_q),
		cmocka_unit_test(test_acvp_keygen),	       cmocka_unit_test(test_acvp_encap_decap),
		cmocka_unit_test(test_wycheproof_keygen),      cmocka_unit_test(test_wycheproof_encaps),
		cmocka_unit_test(test_wycheproof_decaps),      cmocka_unit_test(test_round_trip_and_rejection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
