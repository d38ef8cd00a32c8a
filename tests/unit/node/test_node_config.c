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

/* In a cluster, cluster.failover_order_ms must be below limits.connect_timeout_ms, in either
 * order in the file: a CONNECT held that long would be closed unanswered. A single node
 * holds no CONNECT: a short connect timeout with the default wait is fine there. */
static void test_failover_below_connect_timeout(void **st)
{
	(void)st;
	static const char *const bad[] = { "cluster.nats = tls://127.0.0.1:4222\ncluster.failover_order_ms = 10000\n",
					   "limits.connect_timeout_ms = 2000\ncluster.failover_order_ms = 2000\n"
					   "cluster.nats = tls://127.0.0.1:4222\n" };
	for (int i = 0; i < 2; i++) {
		struct node_config c;
		node_config_default(&c);
		const char *p = write_tmp(bad[i]);
		char err[1024] = "";
		FILE *e = fmemopen(err, sizeof err, "w");
		assert_int_equal(node_config_load(&c, p, e), 1);
		fclose(e);
		assert_non_null(strstr(err, "must be below limits.connect_timeout_ms"));
		unlink(p);
	}
	struct node_config c;
	node_config_default(&c);
	const char *p = write_tmp("cluster.nats = tls://127.0.0.1:4222\ncluster.failover_order_ms = 9999\n");
	assert_int_equal(node_config_load(&c, p, stderr), 0);
	unlink(p);
	node_config_default(&c);
	p = write_tmp("limits.connect_timeout_ms = 500\n"); /* a single node (test_limits.py) */
	assert_int_equal(node_config_load(&c, p, stderr), 0);
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

static void test_retention_rules(void **st)
{
	struct node_config c;
	node_config_default(&c);
	assert_int_equal(c.store.n_rules, 0);
	assert_int_equal(c.store.retention_interval_ms, 60000);
	const char *p = write_tmp("# rules\nstore.retention = tracks/# max_age=7d max_bytes=10G\n"
				  "store.retention = cfg/+/state keep_last=1\nstore.retention = # qos0=skip max_age=90s\n"
				  "store.retention_interval_ms = 500\nlog_level = debug # a comment\n");
	assert_int_equal(node_config_load(&c, p, stderr), 0);
	unlink(p);
	assert_int_equal(c.store.n_rules, 3);
	assert_string_equal(c.store.rules[0].filter, "tracks/#");
	assert_int_equal(c.store.rules[0].max_age_ns, 7ull * 86400 * 1000000000ull);
	assert_int_equal(c.store.rules[0].max_bytes, 10ull << 30);
	assert_int_equal(c.store.rules[1].keep_last, 1);
	assert_false(c.store.rules[1].no_qos0);
	assert_string_equal(c.store.rules[2].filter, "#");
	assert_true(c.store.rules[2].no_qos0);
	assert_int_equal(c.store.rules[2].max_age_ns, 90ull * 1000000000ull);
	assert_int_equal(c.store.retention_interval_ms, 500);
	assert_int_equal(c.log_level, KZ_LOG_DEBUG);
	static const struct { const char *line, *err; } bad[] = {
		{ "store.retention = a/#/b max_age=1d", "the first word is not a valid MQTT topic filter" },
		{ "store.retention = a", "a rule needs at least one of max_age, max_bytes, keep_last, qos0" },
		{ "store.retention = a max_age=7y", "max_age: expected a positive duration such as 90s, 30m, 24h or 7d" },
		{ "store.retention = a max_age=0s", "max_age: expected a positive duration" },
		{ "store.retention = a max_bytes=1Q", "max_bytes: expected a positive size such as 512K, 100M or 10G" },
		{ "store.retention = a keep_last=x", "keep_last: expected a positive number of records" },
		{ "store.retention = a qos0=maybe", "qos0: expected store or skip" },
		{ "store.retention = a ttl=5", "unknown rule key (max_age, max_bytes, keep_last, qos0)" },
		{ "store.retention = a keep_last", "expected key=value after the filter" },
		{ "store.retention = a max_age=99999999999999999999d", "max_age: expected a positive duration" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[256], err[1024] = "";
		snprintf(text, sizeof text, "%s\n", bad[i].line);
		p = write_tmp(text);
		FILE *e = fmemopen(err, sizeof err, "w");
		assert_int_equal(node_config_load(&c, p, e), 1);
		fclose(e);
		unlink(p);
		if (!strstr(err, bad[i].err))
			fail_msg("%s: got '%s'", bad[i].line, err);
	}
	/* the cap on rules */
	char big[64 * 40 + 64] = "";
	for (int i = 0; i <= NODE_MAX_RULES; i++)
		strcat(big, "store.retention = x keep_last=1\n");
	node_config_default(&c);
	char err[1024] = "";
	p = write_tmp(big);
	FILE *e = fmemopen(err, sizeof err, "w");
	assert_int_equal(node_config_load(&c, p, e), 1);
	fclose(e);
	unlink(p);
	assert_non_null(strstr(err, ":65: store.retention: too many retention rules (at most 64)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_valid), cmocka_unit_test(test_errors),
					    cmocka_unit_test(test_store_and_flow), cmocka_unit_test(test_retention_rules),
					    cmocka_unit_test(test_failover_below_connect_timeout) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
