/* test_mldsa.c — ML-DSA-65 against the NIST ACVP keyGen vectors (internalProjection, FIPS 204
 * final: keyGen, sigGen deterministic and hedged, sigVer) and Wycheproof mldsa_65_verify in
 * ../shared/data/pqc; sign/verify round trips with a context. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/kz_mldsa.h"

#include "kat.h"

static void test_acvp_keygen(void **st)
{
	(void)st;
	char path[1024];
	snprintf(path, sizeof path, "%s/acvp-ML-DSA-keyGen-FIPS204.internalProjection.json", PQC);
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e);
	assert_non_null(j);
	size_t gi, ti, n = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		if (strcmp(json_string_value(json_object_get(g, "parameterSet")), "ML-DSA-65") != 0)
			continue;
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t ls, lp, lk;
			uint8_t *seed = hex(t, "seed", &ls), *pk = hex(t, "pk", &lp), *sk = hex(t, "sk", &lk);
			static uint8_t pk2[KZ_MLDSA65_PK_BYTES], sk2[KZ_MLDSA65_SK_BYTES];
			assert_int_equal(ls, 32);
			assert_int_equal(lp, sizeof pk2);
			assert_int_equal(lk, sizeof sk2);
			kz_mldsa65_keygen_seed(seed, pk2, sk2);
			assert_memory_equal(pk2, pk, lp);
			assert_memory_equal(sk2, sk, lk);
			free(seed), free(pk), free(sk);
			n++;
		}
	}
	json_decref(j);
	print_message("ACVP keyGen ML-DSA-65: %zu vectors\n", n);
	assert_int_equal(n, 25);
}

static void test_acvp_sigver(void **st)
{
	(void)st;
	json_t *j = load("acvp-ML-DSA-sigVer-FIPS204.internalProjection.json");
	size_t gi, ti, good = 0, bad = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		if (strcmp(json_string_value(json_object_get(g, "parameterSet")), "ML-DSA-65") != 0)
			continue;
		size_t lp;
		uint8_t *pk = hex(g, "pk", &lp);
		assert_int_equal(lp, KZ_MLDSA65_PK_BYTES);
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t lm, ls;
			uint8_t *m = hex(t, "message", &lm), *sig = hex(t, "signature", &ls);
			bool want = json_is_true(json_object_get(t, "testPassed"));
			int rc = kz_mldsa65_verify_internal(pk, m, lm, sig, ls);
			if ((rc == 0) != want)
				fail_msg("tcId %lld (%s): verify %d, want %s", (long long)json_integer_value(json_object_get(t, "tcId")),
					 json_string_value(json_object_get(t, "reason")), rc, want ? "valid" : "invalid");
			want ? good++ : bad++;
			free(m), free(sig);
		}
		free(pk);
	}
	json_decref(j);
	print_message("ACVP sigVer ML-DSA-65: %zu valid, %zu invalid\n", good, bad);
	assert_int_equal(good + bad, 15);
}

static void test_wycheproof_verify(void **st)
{
	(void)st;
	json_t *j = load("mldsa_65_verify_test.json");
	size_t gi, ti, good = 0, bad = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		size_t lp;
		uint8_t *pk = hex(g, "publicKey", &lp);
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t lm, ls, lc = 0;
			uint8_t *m = hex(t, "msg", &lm), *sig = hex(t, "sig", &ls), *ctx = NULL;
			if (json_object_get(t, "ctx"))
				ctx = hex(t, "ctx", &lc);
			bool want = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
			int rc = kz_mldsa65_verify(pk, lp, m, lm, ctx, lc, sig, ls);
			if ((rc == 0) != want)
				fail_msg("tcId %lld (%s): verify %d, want %s", (long long)json_integer_value(json_object_get(t, "tcId")),
					 json_string_value(json_object_get(t, "comment")), rc, want ? "valid" : "invalid");
			want ? good++ : bad++;
			free(m), free(sig), free(ctx);
		}
		free(pk);
	}
	json_decref(j);
	print_message("Wycheproof verify ML-DSA-65: %zu valid, %zu invalid\n", good, bad);
	assert_int_equal(good + bad, 210);
}

static void test_div_1023(void **st)
{
	(void)st;
	for (uint32_t y = 0; y < (1u << 15); y++)
		if (kz_mldsa_div_1023(y) != y / 1023)
			fail_msg("div_1023(%u)", y);
}

static void test_acvp_siggen(void **st)
{
	(void)st;
	json_t *j = load("acvp-ML-DSA-sigGen-FIPS204.internalProjection.json");
	size_t gi, ti, n = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		if (strcmp(json_string_value(json_object_get(g, "parameterSet")), "ML-DSA-65") != 0)
			continue;
		bool det = json_is_true(json_object_get(g, "deterministic"));
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			size_t lk, lm, ls, lr;
			uint8_t *sk = hex(t, "sk", &lk), *m = hex(t, "message", &lm), *sig = hex(t, "signature", &ls);
			uint8_t rnd[32] = { 0 }, out[KZ_MLDSA65_SIG_BYTES];
			if (!det) {
				uint8_t *r = hex(t, "rnd", &lr);
				memcpy(rnd, r, 32);
				free(r);
			}
			assert_int_equal(kz_mldsa65_sign_internal(sk, m, lm, rnd, out), 0);
			assert_int_equal(ls, sizeof out);
			if (memcmp(out, sig, ls) != 0)
				fail_msg("tcId %lld: signature differs", (long long)json_integer_value(json_object_get(t, "tcId")));
			free(sk), free(m), free(sig);
			n++;
		}
	}
	json_decref(j);
	print_message("ACVP sigGen ML-DSA-65: %zu vectors (deterministic and hedged)\n", n);
	assert_int_equal(n, 20);
}

static void test_wycheproof_sign(void **st)
{
	(void)st;
	json_t *j = load("mldsa_65_sign_seed_test.json");
	size_t gi, ti, good = 0, bad = 0;
	json_t *g, *t;
	json_array_foreach(json_object_get(j, "testGroups"), gi, g) {
		size_t ls, lp;
		ls = lp = 0;
		uint8_t *seed = json_is_string(json_object_get(g, "privateSeed")) ? hex(g, "privateSeed", &ls) : NULL;
		uint8_t *pub = json_is_string(json_object_get(g, "publicKey")) ? hex(g, "publicKey", &lp) : NULL;
		static uint8_t pk[KZ_MLDSA65_PK_BYTES], sk[KZ_MLDSA65_SK_BYTES], sig[KZ_MLDSA65_SIG_BYTES];
		bool key_ok = ls == 32;
		if (key_ok) {
			kz_mldsa65_keygen_seed(seed, pk, sk);
			if (pub) {
				assert_int_equal(lp, sizeof pk);
				assert_memory_equal(pk, pub, lp);
			}
		}
		json_array_foreach(json_object_get(g, "tests"), ti, t) {
			bool want = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
			size_t lm = 0, lc = 0, lr, lsig, lmu;
			uint8_t rnd[32] = { 0 }, *exp = json_object_get(t, "sig") ? hex(t, "sig", &lsig) : NULL;
			lsig = exp ? lsig : 0;
			if (json_object_get(t, "rnd")) {
				uint8_t *r = hex(t, "rnd", &lr);
				memcpy(rnd, r, 32);
				free(r);
			}
			int rc;
			if (!key_ok) {
				rc = -1; /* a private seed that is not 32 bytes is no key */
			} else if (json_object_get(t, "msg")) {
				uint8_t *m = hex(t, "msg", &lm), *ctx = json_object_get(t, "ctx") ? hex(t, "ctx", &lc) : NULL;
				rc = kz_mldsa65_sign(sk, m, lm, ctx, lc, rnd, sig);
				free(m), free(ctx);
			} else {
				uint8_t *mu = hex(t, "mu", &lmu);
				assert_int_equal(lmu, 64);
				rc = kz_mldsa65_sign_mu(sk, mu, rnd, sig);
				free(mu);
			}
			if ((rc == 0) != want)
				fail_msg("tcId %lld (%s): sign %d, want %s", (long long)json_integer_value(json_object_get(t, "tcId")),
					 json_string_value(json_object_get(t, "comment")), rc, want ? "valid" : "invalid");
			if (want && (!exp || lsig != sizeof sig || memcmp(sig, exp, lsig) != 0))
				fail_msg("tcId %lld (%s): signature differs", (long long)json_integer_value(json_object_get(t, "tcId")),
					 json_string_value(json_object_get(t, "comment")));
			want ? good++ : bad++;
			free(exp);
		}
		free(seed), free(pub);
	}
	json_decref(j);
	print_message("Wycheproof sign_seed ML-DSA-65: %zu valid (byte-identical), %zu invalid\n", good, bad);
	assert_int_equal(good + bad, 105);
}

static void test_sign_verify_round_trip(void **st)
{
	(void)st;
	static uint8_t pk[KZ_MLDSA65_PK_BYTES], sk[KZ_MLDSA65_SK_BYTES], sig[KZ_MLDSA65_SIG_BYTES];
	uint8_t xi[32], rnd[32] = { 7 };
	for (int i = 0; i < 20; i++) {
		memset(xi, i, sizeof xi);
		kz_mldsa65_keygen_seed(xi, pk, sk);
		const uint8_t msg[] = "kizuna audit checkpoint";
		assert_int_equal(kz_mldsa65_sign(sk, msg, sizeof msg, (const uint8_t *)"ctx", 3, rnd, sig), 0);
		assert_int_equal(kz_mldsa65_verify(pk, sizeof pk, msg, sizeof msg, (const uint8_t *)"ctx", 3, sig, sizeof sig), 0);
		assert_int_not_equal(kz_mldsa65_verify(pk, sizeof pk, msg, sizeof msg - 1, (const uint8_t *)"ctx", 3, sig, sizeof sig), 0);
		assert_int_not_equal(kz_mldsa65_verify(pk, sizeof pk, msg, sizeof msg, (const uint8_t *)"ctX", 3, sig, sizeof sig), 0);
		sig[100] ^= 4;
		assert_int_not_equal(kz_mldsa65_verify(pk, sizeof pk, msg, sizeof msg, (const uint8_t *)"ctx", 3, sig, sizeof sig), 0);
	}
}

int main(void)
{
	if (kat_present("acvp-ML-DSA-keyGen-FIPS204.internalProjection.json"))
		return 77;
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_acvp_keygen), cmocka_unit_test(test_acvp_sigver),
					    cmocka_unit_test(test_wycheproof_verify), cmocka_unit_test(test_div_1023),
					    cmocka_unit_test(test_acvp_siggen), cmocka_unit_test(test_wycheproof_sign),
					    cmocka_unit_test(test_sign_verify_round_trip) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
