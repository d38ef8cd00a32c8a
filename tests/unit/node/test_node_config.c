/* test_node_config.c — the config parser reports every error as file:line: message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/node_config.h"

static const char *write_tmp(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/kzcfgXXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_valid(void **st)
{
	struct node_config c;
	node_config_default(&c);
	const char *p = write_tmp("# comment\nmqtt.listen = [::1]:1883\nthreads = 3\n"
				  "limits.max_inflight = 100  # trailing\nlog_level = debug\n");
	char err[1024] = "";
	FILE *e = fmemopen(err, sizeof err, "w");
	assert_int_equal(node_config_load(&c, p, e), 0);
	fclose(e);
	assert_int_equal(c.threads, 3);
	assert_int_equal(c.limits.max_inflight, 100);
	assert_string_equal(c.mqtt_listen, "[::1]:1883");
	assert_int_equal(c.limits.max_packet_size, 1u << 20); /* default kept */
	unlink(p);
}

static void test_errors(void **st)
{
	struct node_config c;
	node_config_default(&c);
	const char *p = write_tmp("threads = many\n\nbogus = 1\nno equals here\n"
				  "limits.max_inflight = 0\nmqtt.listen = localhost\nlog_level = loud\n");
	char err[4096] = "";
	FILE *e = fmemopen(err, sizeof err, "w");
	assert_int_equal(node_config_load(&c, p, e), 6);
	fclose(e);
	char expect[256];
	snprintf(expect, sizeof expect, "%s:1: threads: expected a non-negative integer", p);
	assert_non_null(strstr(err, expect));
	snprintf(expect, sizeof expect, "%s:3: unknown directive 'bogus'", p);
	assert_non_null(strstr(err, expect));
	snprintf(expect, sizeof expect, "%s:4: expected 'key = value'", p);
	assert_non_null(strstr(err, expect));
	snprintf(expect, sizeof expect, "%s:5: limits.max_inflight: value out of range", p);
	assert_non_null(strstr(err, expect));
	snprintf(expect, sizeof expect, "%s:6: mqtt.listen: expected host:port", p);
	assert_non_null(strstr(err, expect));
	snprintf(expect, sizeof expect, "%s:7: log_level", p);
	assert_non_null(strstr(err, expect));
	unlink(p);
}

/* store.fsync and the flow-control caps: values and their precise errors. */
static void test_store_and_flow(void **st)
{
	struct node_config c;
	node_config_default(&c);
	assert_int_equal(c.store.fsync, KZ_FSYNC_ALWAYS);
	assert_int_equal(c.read_budget, 65536);
	assert_int_equal(c.write_backlog, 1u << 20);
	const char *p = write_tmp("store.fsync = interval:250\nlimits.read_budget = 4096\n"
				  "limits.max_write_backlog = 65536\nstore.segment_bytes = 8192\n");
	assert_int_equal(node_config_load(&c, p, stderr), 0);
	assert_int_equal(c.store.fsync, KZ_FSYNC_INTERVAL);
	assert_int_equal(c.store.fsync_interval_ms, 250);
	assert_int_equal(c.read_budget, 4096);
	assert_int_equal(c.write_backlog, 65536);
	assert_int_equal(c.store.segment_bytes, 8192);
	unlink(p);
	p = write_tmp("store.fsync = sometimes\nstore.fsync = interval:\nstore.fsync = interval:0\n"
		      "store.fsync = interval:5x\nlimits.read_budget = 10\nstore.segment_bytes = 100\n"
		      "store.fsync = never\n");
	char err[4096] = "";
	FILE *e = fmemopen(err, sizeof err, "w");
	assert_int_equal(node_config_load(&c, p, e), 6);
	fclose(e);
	char expect[256];
	for (int line = 1; line <= 4; line++) {
		snprintf(expect, sizeof expect, "%s:%d: store.fsync: expected always, never or "
			 "interval:<ms> with 1..3600000 ms", p, line);
		assert_non_null(strstr(err, expect));
	}
	snprintf(expect, sizeof expect, "%s:5: limits.read_budget: value out of range", p);
	assert_non_null(strstr(err, expect));
	snprintf(expect, sizeof expect, "%s:6: store.segment_bytes: value out of range", p);
	assert_non_null(strstr(err, expect));
	assert_int_equal(c.store.fsync, KZ_FSYNC_NEVER);
	unlink(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_valid), cmocka_unit_test(test_errors),
					    cmocka_unit_test(test_store_and_flow) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
