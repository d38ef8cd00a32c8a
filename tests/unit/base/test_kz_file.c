/* test_kz_file.c — whole and small reads, and the atomic replace they read back. */
#include "base/kz_file.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void reads(void **state)
{
	(void)state;
	char dir[] = "/tmp/kz-test-file.XXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/f", dir);
	size_t len = 99;
	errno = 0;
	assert_null(kz_file_read_whole(path, 100, &len)); /* absent */
	assert_int_equal(errno, ENOENT);
	static const char data[] = "next_seq 7\n\0and after a NUL";
	assert_int_equal(kz_file_replace(dir, "f", data, sizeof data - 1, 0600), 0);
	char *p = kz_file_read_whole(path, 100, &len);
	assert_non_null(p);
	assert_int_equal(len, sizeof data - 1);
	assert_memory_equal(p, data, len);
	assert_int_equal(p[len], 0);
	free(p);
	errno = 0;
	assert_null(kz_file_read_whole(path, sizeof data - 2, &len)); /* one byte over */
	assert_int_equal(errno, EFBIG);
	p = kz_file_read_whole(path, sizeof data - 1, &len); /* exactly the cap */
	assert_non_null(p);
	free(p);
	char small[8];
	assert_int_equal(kz_file_read_small(path, small, sizeof small), 7);
	assert_string_equal(small, "next_se");
	assert_int_equal(kz_file_replace(dir, "f", "", 0, 0600), 0); /* empty */
	p = kz_file_read_whole(path, 0, &len);
	assert_non_null(p);
	assert_int_equal(len, 0);
	assert_int_equal(p[0], 0);
	free(p);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
