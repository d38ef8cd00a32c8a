/* test_cluster.c — the follower's bookkeeping per origin (kz_cluster_origin_take) and the
 * cluster.state parser with its gaps: a record the stream has after its successors (a
 * re-publish after a failed one) is taken, not dropped as a duplicate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "cluster/cluster.h"

static void test_in_order_and_duplicates(void **st)
{
	(void)st;
	struct kz_cluster_origin o = { .id = "n1" };
	uint64_t late = 0, dropped = 0;
	for (uint64_t s = 1; s <= 5; s++)
		assert_true(kz_cluster_origin_take(&o, s, &late, &dropped));
	assert_false(kz_cluster_origin_take(&o, 3, &late, &dropped)); /* had it */
	assert_false(kz_cluster_origin_take(&o, 5, &late, &dropped));
	assert_int_equal(o.seq, 5);
	assert_int_equal(o.n_gaps, 0);
	assert_int_equal(late, 0);
}

static void test_late_record_fills_its_gap(void **st)
{
	(void)st;
	/* the stream's order after a failed publish of 5: 1 2 3 4 6 7 8 9 10, then 5 again */
	struct kz_cluster_origin o = { .id = "n1" };
	uint64_t late = 0, dropped = 0;
	uint64_t order[] = { 1, 2, 3, 4, 6, 7, 8, 9, 10 };
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		assert_true(kz_cluster_origin_take(&o, order[i], &late, &dropped));
	assert_int_equal(o.n_gaps, 1);
	assert_int_equal(o.gaps[0].lo, 5);
	assert_int_equal(o.gaps[0].hi, 5);
	assert_true(kz_cluster_origin_take(&o, 5, &late, &dropped)); /* taken, not a duplicate */
	assert_int_equal(late, 1);
	assert_int_equal(o.n_gaps, 0);
	assert_false(kz_cluster_origin_take(&o, 5, &late, &dropped)); /* now it is one */
	/* a wider gap filled from the middle out */
	assert_true(kz_cluster_origin_take(&o, 20, &late, &dropped)); /* 11..19 awaited */
	assert_true(kz_cluster_origin_take(&o, 15, &late, &dropped));
	assert_int_equal(o.n_gaps, 2);
	assert_true(kz_cluster_origin_take(&o, 11, &late, &dropped));
	assert_true(kz_cluster_origin_take(&o, 19, &late, &dropped));
	assert_false(kz_cluster_origin_take(&o, 15, &late, &dropped));
	uint64_t open = 0;
	for (uint32_t g = 0; g < o.n_gaps; g++)
		open += o.gaps[g].hi - o.gaps[g].lo + 1;
	assert_int_equal(open, 6); /* 12..14, 16..18 */
	assert_int_equal(dropped, 0);
}

static void test_too_many_gaps_gives_up_the_oldest(void **st)
{
	(void)st;
	struct kz_cluster_origin o = { .id = "n1" };
	uint64_t late = 0, dropped = 0;
	for (uint64_t k = 0; k <= KZ_CLUSTER_MAX_GAPS; k++) /* 2, 4, 6, ...: a gap below each */
		assert_true(kz_cluster_origin_take(&o, 2 * (k + 1), &late, &dropped));
	assert_int_equal(o.n_gaps, KZ_CLUSTER_MAX_GAPS);
	assert_int_equal(dropped, 1);
	assert_false(kz_cluster_origin_take(&o, 1, &late, &dropped)); /* its gap was given up */
	assert_true(kz_cluster_origin_take(&o, 3, &late, &dropped));
}

static void test_state_with_gaps(void **st)
{
	(void)st;
	struct kz_cluster_state s;
	const char ok[] = "confirmed 120 40\norigin n2 77\ngap n2 5 9\ngap n2 50 50\norigin n3 5\n";
	assert_int_equal(kz_cluster_state_parse(ok, strlen(ok), &s), 0);
	assert_int_equal(s.n_origins, 2);
	assert_int_equal(s.origins[0].n_gaps, 2);
	assert_int_equal(s.origins[0].gaps[1].lo, 50);
	const char *bad[] = {
		"confirmed 1 1\ngap n2 1 2\n",                 /* a gap before its origin */
		"confirmed 1 1\norigin n2 10\ngap n2 5 10\n",   /* not below the origin's sequence */
		"confirmed 1 1\norigin n2 10\ngap n2 6 5\n",    /* empty */
		"confirmed 1 1\norigin n2 10\ngap n3 5 6\n",    /* another origin's */
		"confirmed x\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_true(kz_cluster_state_parse(bad[i], strlen(bad[i]), &s) < 0);
	assert_int_equal(kz_cluster_parse_seq("42"), 42);
	assert_int_equal(kz_cluster_parse_seq("18446744073709551615"), UINT64_MAX);
	assert_int_equal(kz_cluster_parse_seq("18446744073709551616"), 0);
	assert_int_equal(kz_cluster_parse_seq("12a"), 0);
	assert_int_equal(kz_cluster_parse_seq(""), 0);
	assert_int_equal(kz_cluster_parse_seq("-1"), 0);
}

/* The pending count of a JetStream acknowledgement subject (the follower's "caught up"). */
static void test_ack_pending(void **st)
{
	(void)st;
	assert_int_equal(kz_cluster_ack_pending("$JS.ACK.KZ_RECORDS.kz-node-n2.1.42.17.1796377241712273100.0"), 0);
	assert_int_equal(kz_cluster_ack_pending("$JS.ACK.KZ_RECORDS.kz-node-n2.1.42.17.1796377241712273100.123"), 123);
	assert_int_equal(kz_cluster_ack_pending("$JS.ACK.dom.hash.KZ_RECORDS.kz-node-n2.1.42.17.179637.5.rnd"), 5);
	assert_int_equal(kz_cluster_ack_pending("$JS.ACK.KZ_RECORDS.kz-node-n2.1.42.17.x"), -1);
	assert_int_equal(kz_cluster_ack_pending("$JS.ACK.KZ_RECORDS.kz-node-n2.1.42.17.179.-1"), -1);
	assert_int_equal(kz_cluster_ack_pending("kz.rec.n1"), -1);
	assert_int_equal(kz_cluster_ack_pending(NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_and_duplicates),
		cmocka_unit_test(test_late_record_fills_its_gap),
		cmocka_unit_test(test_too_many_gaps_gives_up_the_oldest),
		cmocka_unit_test(test_state_with_gaps),
		cmocka_unit_test(test_ack_pending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
