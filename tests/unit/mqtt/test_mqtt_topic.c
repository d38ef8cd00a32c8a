/* test_mqtt_topic.c — topic rules, matching, and the trie against the reference matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt_codec.h"
#include "mqtt/mqtt_topic.h"
#include "mqtt/mqtt_trie.h"

#define S(x) (const uint8_t *)(x), strlen(x)

static void test_match(void **st)
{
	static const struct { const char *f, *t; int m; } cases[] = {
		{ "sport/tennis/player1/#", "sport/tennis/player1", 1 },
		{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", 1 },
		{ "sport/#", "sport", 1 }, { "#", "a/b/c", 1 }, { "+", "a", 1 }, { "+", "a/b", 0 },
		{ "sport/tennis/+", "sport/tennis/player1", 1 },
		{ "sport/tennis/+", "sport/tennis/player1/ranking", 0 },
		{ "sport/+", "sport", 0 }, { "sport/+", "sport/", 1 }, { "+/+", "/finance", 1 },
		{ "/+", "/finance", 1 }, { "+", "/finance", 0 }, { "#", "$SYS/x", 0 },
		{ "+/monitor/Clients", "$SYS/monitor/Clients", 0 },
		{ "$SYS/#", "$SYS/monitor/Clients", 1 }, { "$SYS/monitor/+", "$SYS/monitor/Clients", 1 },
		{ "a/b", "a/b", 1 }, { "a/b", "a/bc", 0 }, { "a/+/c", "a/b/c", 1 }, { "a/+/#", "a/b", 1 },
		{ "a//b", "a//b", 1 }, { "a/+/b", "a//b", 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int m = kz_topic_match(S(cases[i].f), S(cases[i].t));
		if (m != cases[i].m)
			fail_msg("'%s' vs '%s': %d", cases[i].f, cases[i].t, m);
	}
}

static void test_checks(void **st)
{
	const char *why;
	struct mqtt_topic_limits lim = { 16, 3 };
	assert_int_equal(mqtt_topic_name_check(S("a/b"), &lim, &why), 0);
	assert_int_equal(mqtt_topic_name_check(S("a/+"), &lim, &why), MQTT_RC_TOPIC_INVALID);
	assert_int_equal(mqtt_topic_name_check(S("a/#"), &lim, &why), MQTT_RC_TOPIC_INVALID);
	assert_int_equal(mqtt_topic_name_check(S(""), &lim, &why), MQTT_RC_TOPIC_INVALID);
	assert_int_equal(mqtt_topic_name_check(S("a/b/c/d"), &lim, &why), MQTT_RC_TOPIC_INVALID);
	assert_int_equal(mqtt_topic_name_check(S("aaaaaaaaaaaaaaaaa"), &lim, &why), MQTT_RC_TOPIC_INVALID);
	assert_int_equal(mqtt_topic_filter_check(S("a/+/#"), &lim, &why), 0);
	assert_int_equal(mqtt_topic_filter_check(S("#"), &lim, &why), 0);
	assert_int_equal(mqtt_topic_filter_check(S("a/#/b"), &lim, &why), MQTT_RC_FILTER_INVALID);
	assert_int_equal(mqtt_topic_filter_check(S("a+"), &lim, &why), MQTT_RC_FILTER_INVALID);
	assert_int_equal(mqtt_topic_filter_check(S("a/b#"), &lim, &why), MQTT_RC_FILTER_INVALID);
	const uint8_t *g, *f;
	size_t gl, fl;
	assert_int_equal(mqtt_topic_share_split(S("$share/grp/a/#"), &g, &gl, &f, &fl, &why), 1);
	assert_int_equal(gl, 3);
	assert_memory_equal(f, "a/#", 3);
	assert_int_equal(mqtt_topic_share_split(S("a/b"), &g, &gl, &f, &fl, &why), 0);
	assert_true(mqtt_topic_share_split(S("$share//a"), &g, &gl, &f, &fl, &why) < 0);
	assert_true(mqtt_topic_share_split(S("$share/g+/a"), &g, &gl, &f, &fl, &why) < 0);
	assert_true(mqtt_topic_share_split(S("$share/g"), &g, &gl, &f, &fl, &why) < 0);
	assert_true(mqtt_topic_share_split(S("$share/g/"), &g, &gl, &f, &fl, &why) < 0);
}

struct hits {
	int n;
	void *seen[64];
};

static void visit(struct mqtt_trie_node *nd, void *ctx)
{
	struct hits *h = ctx;
	h->seen[h->n++] = nd->value;
}

/* The trie walk must agree with kz_topic_match for every (filter, topic) pair. */
static void test_trie_vs_reference(void **st)
{
	static const char *filters[] = { "#", "+", "a", "a/#", "a/+", "a/b", "a/+/c", "+/b/#",
		"$SYS/#", "$SYS/+", "a//b", "+/+", "/+", "a/b/c/#", "x/y" };
	static const char *topics[] = { "a", "a/b", "a/b/c", "a/x/c", "b", "/b", "$SYS/x", "$SYS",
		"a//b", "x/b/z", "a/b/c/d", "x/y", "/", "q/b" };
	struct mqtt_trie t, r;
	mqtt_trie_init(&t, 0);
	mqtt_trie_init(&r, 0);
	for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
		mqtt_trie_get(&t, S(filters[i]), 1)->value = (void *)filters[i];
	for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
		mqtt_trie_get(&r, S(topics[i]), 1)->value = (void *)topics[i];
	for (size_t j = 0; j < sizeof topics / sizeof topics[0]; j++) {
		struct hits h = { 0 };
		mqtt_trie_match_topic(&t, S(topics[j]), visit, &h);
		int expect = 0;
		for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
			expect += kz_topic_match(S(filters[i]), S(topics[j]));
		if (h.n != expect)
			fail_msg("topic '%s': trie %d, reference %d", topics[j], h.n, expect);
	}
	for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
		struct hits h = { 0 };
		mqtt_trie_match_filter(&r, S(filters[i]), visit, &h);
		int expect = 0;
		for (size_t j = 0; j < sizeof topics / sizeof topics[0]; j++)
			expect += kz_topic_match(S(filters[i]), S(topics[j]));
		if (h.n != expect)
			fail_msg("filter '%s': retained walk %d, reference %d", filters[i], h.n, expect);
	}
	/* pruning removes nodes bottom-up and keeps lookups of the rest intact */
	for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i += 2) {
		struct mqtt_trie_node *nd = mqtt_trie_get(&t, S(filters[i]), 0);
		nd->value = NULL;
		mqtt_trie_prune(&t, nd);
	}
	for (size_t i = 1; i < sizeof filters / sizeof filters[0]; i += 2)
		assert_ptr_equal(mqtt_trie_get(&t, S(filters[i]), 0)->value, filters[i]);
	mqtt_trie_cleanup(&t);
	mqtt_trie_cleanup(&r);
}

static void test_trie_many_children(void **st)
{
	struct mqtt_trie t;
	mqtt_trie_init(&t, 0);
	char buf[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(buf, sizeof buf, "tracks/%d", i);
		mqtt_trie_get(&t, S(buf), 1)->value = (void *)(intptr_t)(i + 1);
	}
	for (int i = 0; i < 5000; i += 2) {
		snprintf(buf, sizeof buf, "tracks/%d", i);
		struct mqtt_trie_node *nd = mqtt_trie_get(&t, S(buf), 0);
		nd->value = NULL;
		mqtt_trie_prune(&t, nd);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(buf, sizeof buf, "tracks/%d", i);
		struct mqtt_trie_node *nd = mqtt_trie_get(&t, S(buf), 0);
		if (i % 2)
			assert_int_equal((intptr_t)nd->value, i + 1);
		else
			assert_null(nd);
	}
	assert_int_equal(t.n_nodes, 2501);
	mqtt_trie_cleanup(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match), cmocka_unit_test(test_checks),
		cmocka_unit_test(test_trie_vs_reference), cmocka_unit_test(test_trie_many_children),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
