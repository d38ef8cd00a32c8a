/* test_kz_buf.c — buffer caps and UTF-8 validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_cap), cmocka_unit_test(test_utf8),
					    cmocka_unit_test(test_base64) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
