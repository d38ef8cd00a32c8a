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
	assert_int_equal(s.confirmed_sseq, 0); /* written before the stream sequence was kept */
	const char with_sseq[] = "confirmed 120 40 9001\n";
	assert_int_equal(kz_cluster_state_parse(with_sseq, strlen(with_sseq), &s), 0);
	assert_int_equal(s.confirmed_origin, 40);
	assert_int_equal(s.confirmed_sseq, 9001);
	const char *bad[] = {
		"confirmed 1 1 1 1\n",                          /* one number too many */
		"confirmed 1 1 x\n",
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

/* Spans published out of order: the resync at watermark 50 with 70 in flight (60..70 stored,
 * 51..59 published again after them); a cut that keeps 60..70 and loses 51..59 leaves 70 as
 * the stream's last record of ours, inside the span: the replicator goes back to 50. */
static void test_spans(void **st)
{
	(void)st;
	struct kz_cluster_spans s = { .n = 0 };
	assert_false(kz_cluster_span_add(&s, 500, 50, 900, 50)); /* nothing in flight */
	assert_true(kz_cluster_span_add(&s, 500, 50, 900, 70));
	assert_null(kz_cluster_span_of(&s, 50)); /* every record up to 50 is before the span */
	assert_int_equal(kz_cluster_span_of(&s, 70)->wm_origin, 50);
	assert_int_equal(kz_cluster_span_of(&s, 51)->wm_local, 500);
	assert_null(kz_cluster_span_of(&s, 71)); /* published after the span, in order */
	/* a second failure at 56 before the first span was passed: a cut at 65 may have lost
	 * some of 51..55 (stored after the message that ends at 65) and goes back to 50; a cut at
	 * 85, past the first span, to 56 */
	assert_true(kz_cluster_span_add(&s, 560, 56, 950, 90));
	assert_int_equal(s.n, 2);
	assert_int_equal(kz_cluster_span_of(&s, 65)->wm_origin, 50);
	assert_int_equal(kz_cluster_span_of(&s, 65)->wm_sseq, 900);
	assert_int_equal(kz_cluster_span_of(&s, 85)->wm_origin, 56);
	assert_false(kz_cluster_span_add(&s, 600, 60, 960, 80)); /* inside one */
	/* a watermark that went back (the stream lost its tail) below both */
	assert_true(kz_cluster_span_add(&s, 300, 30, 700, 95));
	assert_int_equal(s.v[0].wm_origin, 30);
	assert_int_equal(kz_cluster_span_of(&s, 85)->wm_origin, 30);
	/* at most KZ_CLUSTER_MAX_SPANS: the ones that end lowest go */
	for (uint64_t i = 0; i < KZ_CLUSTER_MAX_SPANS + 1; i++) /* 20 in all: the 3 above and 1000..1005 go */
		assert_true(kz_cluster_span_add(&s, 0, 1000 + 10 * i, 0, 1005 + 10 * i));
	assert_int_equal(s.n, KZ_CLUSTER_MAX_SPANS);
	assert_null(kz_cluster_span_of(&s, 60));
	assert_null(kz_cluster_span_of(&s, 1003));
	assert_int_equal(kz_cluster_span_of(&s, 1015)->wm_origin, 1010);
	for (uint32_t i = 1; i < s.n; i++)
		assert_true(s.v[i - 1].wm_origin <= s.v[i].wm_origin);
	/* in cluster.state */
	struct kz_cluster_state cs;
	const char ok[] = "confirmed 120 40 9\norigin n2 77\nspan 500 50 900 70\nspan 560 56 950 90\n";
	assert_int_equal(kz_cluster_state_parse(ok, strlen(ok), &cs), 0);
	assert_int_equal(cs.spans.n, 2);
	assert_int_equal(cs.spans.v[1].wm_sseq, 950);
	assert_int_equal(kz_cluster_span_of(&cs.spans, 60)->wm_local, 500);
	const char *bad[] = {
		"confirmed 1 1\nspan 5 50 9 50\n",                    /* empty */
		"confirmed 1 1\nspan 5 50 9 60\nspan 5 45 9 70\n",  /* not by watermark */
		"confirmed 1 1\nspan 5 50 9\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_true(kz_cluster_state_parse(bad[i], strlen(bad[i]), &cs) < 0);
}

/* Our consumer's names: kz-node-<id>, then kz-node-<id>~<gen>; another node's (n1 against n1-2,
 * n10) are not ours. */
static void test_consumer_names(void **st)
{
	(void)st;
	char n[96];
	kz_cluster_consumer_name("n1", 0, n, sizeof n);
	assert_string_equal(n, "kz-node-n1");
	kz_cluster_consumer_name("n1", 7, n, sizeof n);
	assert_string_equal(n, "kz-node-n1~7");
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1"), 0);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1~7"), 7);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1~12"), 12);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1-2"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n10"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1~"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1~0"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1~07"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1~7x"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node-n1~99999999999999999999"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1", "kz-node"), -1);
	assert_int_equal(kz_cluster_consumer_gen("n1-2", "kz-node-n1-2~3"), 3);
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

/* The other fields of the acknowledgement subject: delivered, stream and consumer sequence. */
static void test_ack_parse(void **st)
{
	(void)st;
	struct kz_cluster_ack_info ai;
	assert_true(kz_cluster_ack_parse("$JS.ACK.KZ_RECORDS.kz-node-n2.2.42.17.1796377241712273100.0", &ai));
	assert_int_equal(ai.delivered, 2);
	assert_int_equal(ai.stream_seq, 42);
	assert_int_equal(ai.consumer_seq, 17);
	assert_true(kz_cluster_ack_parse("$JS.ACK.dom.hash.KZ_RECORDS.kz-node-n2.1.43.1.179637.5.rnd", &ai));
	assert_int_equal(ai.delivered, 1);
	assert_int_equal(ai.stream_seq, 43);
	assert_int_equal(ai.consumer_seq, 1);
	assert_false(kz_cluster_ack_parse("$JS.ACK.KZ_RECORDS.kz-node-n2.1.x.17.179.0", &ai));
	assert_false(kz_cluster_ack_parse("$JS.ACK.KZ_RECORDS.kz-node-n2.1.42.17", &ai));
	assert_false(kz_cluster_ack_parse("kz.rec.n1", &ai));
	assert_false(kz_cluster_ack_parse(NULL, &ai));
}

static void take(struct kz_cluster_floor *f, uint64_t sseq)
{
	struct kz_cluster_mark m = { .sseq = sseq, .oseq = sseq * 10 };
	snprintf(m.node, sizeof m.node, "n%llu", (unsigned long long)(sseq % 3));
	kz_cluster_floor_take(f, &m);
}

/* The follower's floor: contiguous decisions move it, with what the stream held there; one
 * decided ahead of a hole waits until the hole fills; one at or below it changes nothing. */
static void test_floor(void **st)
{
	(void)st;
	static struct kz_cluster_floor f;
	kz_cluster_floor_reset(&f, 0);
	assert_false(f.known);
	take(&f, 1);
	take(&f, 2);
	assert_int_equal(f.floor, 2);
	assert_true(f.known);
	assert_int_equal(f.id.sseq, 2);
	assert_int_equal(f.id.oseq, 20);
	assert_string_equal(f.id.node, "n2");
	take(&f, 5); /* 3 and 4 lost in flight: they come again later */
	take(&f, 4);
	take(&f, 5); /* delivered again */
	assert_int_equal(f.floor, 2);
	assert_int_equal(f.n_above, 2);
	take(&f, 3);
	assert_int_equal(f.floor, 5);
	assert_int_equal(f.id.oseq, 50);
	assert_int_equal(f.n_above, 0);
	take(&f, 4); /* below: nothing */
	assert_int_equal(f.floor, 5);
	assert_int_equal(f.id.oseq, 50);
	/* a hole that never fills: above[] fills, the highest are forgotten, the floor stays */
	for (uint64_t s = 7; s < 7 + KZ_CLUSTER_FLOOR_ABOVE + 10; s++)
		take(&f, s);
	assert_int_equal(f.floor, 5);
	assert_int_equal(f.n_above, KZ_CLUSTER_FLOOR_ABOVE);
	assert_int_equal(f.above[KZ_CLUSTER_FLOOR_ABOVE - 1].sseq, 6 + KZ_CLUSTER_FLOOR_ABOVE);
	take(&f, 6); /* it fills: the floor moves over every one kept */
	assert_int_equal(f.floor, 6 + KZ_CLUSTER_FLOOR_ABOVE);
	assert_int_equal(f.n_above, 0);
	/* made again from elsewhere: nothing known until a decision */
	kz_cluster_floor_reset(&f, 100);
	assert_int_equal(f.floor, 100);
	assert_false(f.known);
	take(&f, 101);
	assert_true(f.known);
}

/* A batch's body (docs/CLUSTER.md "Batches"): length-prefixed frames, exactly Kz-Count of
 * them, none empty, nothing after the last. */
static void test_batch_frames(void **st)
{
	(void)st;
	const uint8_t body[] = { 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 1, 'z', 0, 0, 0, 2, 'x', 'y' };
	size_t off = 0, len;
	const uint8_t *rec;
	assert_true(kz_cluster_batch_next(body, sizeof body, &off, &rec, &len));
	assert_int_equal(len, 3);
	assert_memory_equal(rec, "abc", 3);
	assert_true(kz_cluster_batch_next(body, sizeof body, &off, &rec, &len));
	assert_int_equal(len, 1);
	assert_int_equal(rec[0], 'z');
	assert_true(kz_cluster_batch_next(body, sizeof body, &off, &rec, &len));
	assert_memory_equal(rec, "xy", 2);
	assert_int_equal(off, sizeof body);
	assert_false(kz_cluster_batch_next(body, sizeof body, &off, &rec, &len));
	assert_true(kz_cluster_batch_valid(body, sizeof body, 3));
	assert_false(kz_cluster_batch_valid(body, sizeof body, 2)); /* bytes left after two */
	assert_false(kz_cluster_batch_valid(body, sizeof body, 4));
	assert_false(kz_cluster_batch_valid(body, sizeof body - 1, 3)); /* the last frame cut short */
	const uint8_t empty[] = { 0, 0, 0, 0, 0, 0, 0, 1, 'q' };
	assert_false(kz_cluster_batch_valid(empty, sizeof empty, 2));
	const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
	off = 0;
	assert_false(kz_cluster_batch_next(huge, sizeof huge, &off, &rec, &len));
	assert_int_equal(off, 0);
	assert_int_equal(kz_cluster_batch_count(NULL), 1);
	assert_int_equal(kz_cluster_batch_count("64"), 64);
	assert_int_equal(kz_cluster_batch_count("65536"), 65536);
	assert_int_equal(kz_cluster_batch_count("65537"), 0);
	assert_int_equal(kz_cluster_batch_count("0"), 0);
	assert_int_equal(kz_cluster_batch_count("-1"), 0);
	assert_int_equal(kz_cluster_batch_count(""), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_and_duplicates),
		cmocka_unit_test(test_late_record_fills_its_gap),
		cmocka_unit_test(test_too_many_gaps_gives_up_the_oldest),
		cmocka_unit_test(test_state_with_gaps),
		cmocka_unit_test(test_spans),
		cmocka_unit_test(test_ack_pending),
		cmocka_unit_test(test_consumer_names),
		cmocka_unit_test(test_ack_parse),
		cmocka_unit_test(test_floor),
		cmocka_unit_test(test_batch_frames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
