/* test_kz_buf.c — buffer caps and UTF-8 validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/kz_array.h"
#include "base/kz_base64.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_utf8.h"

static void test_cap(void **st)
{
	struct kz_buf b;
	kz_buf_init(&b, 8);
	assert_int_equal(kz_buf_append(&b, "12345678", 8), KZ_OK);
	assert_int_equal(kz_buf_append(&b, "9", 1), KZ_ETOOBIG);
	assert_int_equal(b.len, 8);
	kz_buf_consume(&b, 3);
	assert_memory_equal(kz_buf_head(&b), "45678", 5);
	assert_int_equal(kz_buf_append(&b, "abc", 3), KZ_OK);
	assert_memory_equal(kz_buf_head(&b), "45678abc", 8);
	kz_buf_cleanup(&b);
}

static void test_utf8(void **st)
{
	assert_true(kz_utf8_valid((const uint8_t *)"h\xc3\xa9llo", 6, true));
	assert_false(kz_utf8_valid((const uint8_t *)"a\0b", 3, true));        /* U+0000 */
	assert_true(kz_utf8_valid((const uint8_t *)"a\0b", 3, false));
	assert_false(kz_utf8_valid((const uint8_t *)"\xc0\xaf", 2, true));    /* overlong */
	assert_false(kz_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3, true));/* surrogate */
	assert_false(kz_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4, true)); /* > U+10FFFF */
	assert_false(kz_utf8_valid((const uint8_t *)"\xe2\x82", 2, true));    /* truncated */
}

/* RFC 4648 §10 test vectors. */
static void test_base64(void **st)
{
	static const char *const in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const want[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	char out[16];
	for (int i = 0; i < 7; i++) {
		assert_int_equal(kz_base64((const uint8_t *)in[i], strlen(in[i]), out), strlen(want[i]));
		assert_string_equal(out, want[i]);
	}
	const uint8_t bin[3] = { 0x00, 0xff, 0x01 };
	kz_base64(bin, 3, out);
	assert_string_equal(out, "AP8B");
}

/* kz_array_grow: doubling from the first capacity, never past max, the array kept on failure. */
static void test_array(void **st)
{
	(void)st;
	int *v = NULL;
	size_t cap = 0, n = 0;
	for (int i = 0; i < 1000; i++) {
		if (n == cap) {
			size_t was = cap;
			int *nv = kz_array_grow(v, sizeof *v, cap, n + 1, 8, SIZE_MAX, &cap);
			assert_non_null(nv);
			assert_int_equal(cap, was ? was * 2 : 8);
			v = nv;
		}
		v[n++] = i;
	}
	for (int i = 0; i < 1000; i++)
		assert_int_equal(v[i], i);
	/* the cap of the caller's type: capped at max, then refused with the array intact */
	size_t c2 = 0;
	int *w = kz_array_grow(NULL, sizeof *w, 0, 1, 64, 100, &c2);
	assert_non_null(w);
	assert_int_equal(c2, 64);
	w = kz_array_grow(w, sizeof *w, c2, 65, 64, 100, &c2);
	assert_non_null(w);
	assert_int_equal(c2, 100);
	size_t c3 = 7;
	assert_null(kz_array_grow(w, sizeof *w, c2, 101, 64, 100, &c3));
	assert_int_equal(c3, 7); /* untouched on failure */
	/* element size times capacity past SIZE_MAX */
	assert_null(kz_array_grow(NULL, SIZE_MAX / 2, 0, 3, 4, SIZE_MAX, &c3));
	free(w);
	free(v);
}

/* kz_buf_append_fixed and _u64 write what printf's %.*f and %llu write (200,000 values, away
 * from exact halves, where printf rounds the binary value and we round half away). */
static void test_fixed(void **st)
{
	(void)st;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		unsigned d = (unsigned)(x % 10);
		double v = ((double)(x >> 11) / (double)(1ull << 53) - 0.5) * (i % 3 ? 400 : 2e8);
		double scaled = fabs(v) * pow(10, d);
		if (fabs(scaled - floor(scaled) - 0.5) < 1e-3)
			continue; /* a near-half: the two may round differently, both right */
		if (scaled + 0.5 >= 9007199254740992.0) { /* beyond 2^53 scaled: refused */
			assert_int_equal(kz_buf_append_fixed(&b, v, d), KZ_EINVAL);
			continue;
		}
		if (scaled >= 1e12)
			continue; /* the product's rounding may reach the last digit: checked up to 10^12 */
		char want[64];
		snprintf(want, sizeof want, "%.*f", (int)d, v);
		if (!strcmp(want, "-0") || !strncmp(want, "-0.", 3)) { /* printf keeps the sign of a negative zero */
			bool zero = true;
			for (const char *q = want + 1; *q; q++)
				zero &= *q == '0' || *q == '.';
			if (zero)
				memmove(want, want + 1, strlen(want));
		}
		kz_buf_reset(&b);
		assert_int_equal(kz_buf_append_fixed(&b, v, d), 0);
		if (b.len != strlen(want) || memcmp(kz_buf_head(&b), want, b.len))
			fail_msg("%.17g with %u decimals: %.*s, printf %s", v, d, (int)b.len, (const char *)kz_buf_head(&b), want);
		kz_buf_reset(&b);
		assert_int_equal(kz_buf_append_u64(&b, x), 0);
		snprintf(want, sizeof want, "%llu", (unsigned long long)x);
		assert_int_equal(b.len, strlen(want));
		assert_memory_equal(kz_buf_head(&b), want, b.len);
	}
	assert_int_equal(kz_buf_append_fixed(&b, NAN, 2), KZ_EINVAL);
	assert_int_equal(kz_buf_append_fixed(&b, 1e10, 2), KZ_EINVAL);
	assert_int_equal(kz_buf_append_fixed(&b, 1, 10), KZ_EINVAL);
	kz_buf_cleanup(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_cap), cmocka_unit_test(test_utf8),
					    cmocka_unit_test(test_base64), cmocka_unit_test(test_array),
					    cmocka_unit_test(test_fixed) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
