/* test_kz_time.c — kz_time_format (its own civil-date arithmetic) against the C library's
 * gmtime_r and strftime over edge dates and a million random instants, and against
 * kz_time_parse (a round trip). */
#include "base/kz_time.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static void reference(uint64_t ns, char out[32])
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%09uZ", (unsigned)(ns % 1000000000u));
}

static void same(uint64_t ns)
{
	char a[32], b[32];
	kz_time_format(ns, a);
	reference(ns, b);
	if (strcmp(a, b))
		fail_msg("%llu: %s, the C library says %s", (unsigned long long)ns, a, b);
	uint64_t back;
	assert_int_equal(kz_time_parse(a, &back), 0);
	assert_true(back == ns);
}

static void test_edges(void **state)
{
	(void)state;
	static const char *const days[] = { "1970-01-01T00:00:00Z", "1972-02-29T23:59:59Z", "1999-12-31T23:59:59Z",
					    "2000-02-29T12:00:00Z", "2000-03-01T00:00:00Z", "2024-02-29T00:00:00Z",
					    "2026-12-04T13:45:00Z", "2100-02-28T23:59:59Z", "2100-03-01T00:00:00Z",
					    "2200-02-28T23:59:59Z", "2262-04-11T23:47:15Z" };
	for (size_t i = 0; i < sizeof days / sizeof days[0]; i++) {
		uint64_t ns;
		assert_int_equal(kz_time_parse(days[i], &ns), 0);
		same(ns);
		same(ns + 999999999u);
	}
	same(0);
}

static void test_random(void **state)
{
	(void)state;
	uint64_t x = 88172645463325252ull;
	const uint64_t span = 9223372035ull * 1000000000u; /* Unix ns in 63 bits: to 2262 */
	for (int i = 0; i < 1000000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		same(x % span);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_edges), cmocka_unit_test(test_random) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
