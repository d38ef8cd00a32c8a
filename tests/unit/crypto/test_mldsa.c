/* test_mldsa.c — ML-DSA-65 against the NIST ACVP keyGen vectors (internalProjection, FIPS 204
 * final) in ../shared/data/pqc. Signing and verification vectors follow with their code. */
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

#define PQC KZ_PQC_DATA

static uint8_t *hex(json_t *t, const char *key, size_t *n)
{
	const char *s = json_string_value(json_object_get(t, key));
	assert_non_null(s);
	size_t l = strlen(s);
	uint8_t *b = malloc(l / 2 + 1);
	for (size_t i = 0; i < l / 2; i++) {
		unsigned v;
		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		b[i] = (uint8_t)v;
	}
	*n = l / 2;
	return b;
}

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

int main(void)
{
	char probe[1024];
	snprintf(probe, sizeof probe, "%s/acvp-ML-DSA-keyGen-FIPS204.internalProjection.json", PQC);
	FILE *f = fopen(probe, "r");
	if (!f) {
		fprintf(stderr, "SKIPPED: %s not found (the known-answer files live in ../shared/data/pqc)\n", probe);
		return 77;
	}
	fclose(f);
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_acvp_keygen) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
