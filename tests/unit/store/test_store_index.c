/* test_store_index.c — the SQLite index: catch-up, queries, retention (age, bytes,
 * keep-last, retained messages kept), reindex equivalence, and a rewrite interrupted by a
 * crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/kz_err.h"
#include "store/store.h"

static char dir[256], logdir[300], dbpath[300];
static int put_n; /* records put in this test */
static const uint64_t T0 = 1800000000000000000ull; /* 2027-01-15 */
#define SEC 1000000000ull

static int setup(void **st)
{
	snprintf(dir, sizeof dir, "/tmp/kz-index-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(logdir, sizeof logdir, "%s/log", dir);
	snprintf(dbpath, sizeof dbpath, "%s/index.db", dir);
	put_n = 0;
	return 0;
}

static int teardown(void **st)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct kz_bytes B(const char *s) { return (struct kz_bytes){ (const uint8_t *)s, (uint32_t)strlen(s) }; }

static struct kz_reclog *open_log(uint64_t seg_bytes)
{
	struct kz_reclog_config c = { .dir = logdir, .segment_bytes = seg_bytes, .max_record_bytes = 1 << 20,
				   .fsync = KZ_FSYNC_NEVER };
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	return log;
}

/* Appends one record; payload "<topic>#<n>" unless given. */
static uint64_t put(struct kz_reclog *log, const char *topic, uint64_t time_ns, bool retain, const char *payload,
		    const char *origin, const char *ctype)
{
	char pl[128];
	snprintf(pl, sizeof pl, "%s#%d", topic, put_n++);
	struct kz_record r = { .time_ns = time_ns, .qos = 1, .retain = retain, .service = topic[0] == '$' };
	kz_uuidv7(r.id, time_ns / 1000000u);
	r.topic = B(topic);
	r.origin_node = B("node-a");
	r.origin_id = B(origin ? origin : "spiffe://t/o/sensor/1");
	r.content_type = B(ctype ? ctype : "");
	r.payload = B(payload ? payload : pl);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert_int_equal(kz_record_encode(&r, &b), KZ_OK);
	struct kz_bytes body = { kz_buf_head(&b), (uint32_t)b.len };
	uint64_t seq;
	char why[256];
	assert_int_equal(kz_reclog_append(log, &body, 1, &seq, why, sizeof why), KZ_OK);
	kz_buf_cleanup(&b);
	return seq;
}

static struct kz_index *open_index(const struct kz_retention_rule *rules, size_t n, bool ro)
{
	struct kz_index_config c = { dbpath, logdir, 1 << 20, rules, n, ro };
	struct kz_index *ix;
	char why[512];
	int rc = kz_index_open(&c, &ix, why, sizeof why);
	if (rc)
		fail_msg("kz_index_open: %s", why);
	return ix;
}

static uint64_t catch_up(struct kz_index *ix)
{
	uint64_t added;
	char why[512];
	assert_int_equal(kz_index_catch_up(ix, 0, &added, why, sizeof why), KZ_OK);
	return added;
}

/* Query results as text: "seq topic payload\n" per record. */
struct text {
	char s[1 << 16];
	size_t n;
	uint64_t rows;
};

static int to_text(void *ctx, uint64_t seq, const struct kz_record *r)
{
	struct text *t = ctx;
	t->n += (size_t)snprintf(t->s + t->n, sizeof t->s - t->n, "%" PRIu64 " %.*s %.*s\n", seq,
				 (int)r->topic.len, (const char *)r->topic.p, (int)r->payload.len,
				 (const char *)r->payload.p);
	t->rows++;
	return 0;
}

static uint64_t query(struct kz_index *ix, const struct kz_query *q, struct text *t)
{
	memset(t, 0, sizeof *t);
	char why[512];
	int rc = kz_index_query(ix, q, to_text, t, why, sizeof why);
	if (rc)
		fail_msg("query: %s", why);
	return t->rows;
}

static int count_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	(*(uint64_t *)ctx)++;
	return 0;
}

static uint64_t log_records(void)
{
	uint64_t n = 0;
	char why[512];
	assert_int_equal(kz_reclog_scan(logdir, 1, NULL, 1 << 20, count_cb, &n, why, sizeof why), KZ_OK);
	return n;
}

static void test_index_query(void **st)
{
	struct kz_reclog *log = open_log(1 << 20);
	for (int i = 0; i < 100; i++) {
		put(log, "a", T0 + (uint64_t)i * SEC, false, NULL, NULL, NULL);
		put(log, "a/b", T0 + (uint64_t)i * SEC, false, NULL, "spiffe://t/o/sensor/2", "application/json");
		put(log, "ab", T0 + (uint64_t)i * SEC, false, NULL, NULL, NULL);
	}
	put(log, "$SYS/x", T0, false, NULL, NULL, NULL);
	struct kz_index *ix = open_index(NULL, 0, false);
	assert_int_equal(catch_up(ix), 301);
	assert_int_equal(catch_up(ix), 0);
	assert_int_equal(kz_index_through(ix), 301);
	struct text t;
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "a" }, &t), 100);
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "a/#" }, &t), 200); /* a and a/b */
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "+" }, &t), 200);   /* a and ab */
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "#" }, &t), 300);   /* not $SYS */
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "$SYS/#" }, &t), 1);
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "a/+" }, &t), 100);
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "a/b",
						      .since_ns = T0 + 10 * SEC, .until_ns = T0 + 19 * SEC }, &t), 10);
	assert_non_null(strstr(t.s, "a/b a/b#31\n")); /* i = 10: 3*10 + 1 */
	assert_int_equal(query(ix, &(struct kz_query){ .origin = "spiffe://t/o/sensor/2" }, &t), 100);
	assert_int_equal(query(ix, &(struct kz_query){ .content_type = "application/json", .limit = 7 }, &t), 7);
	assert_int_equal(query(ix, &(struct kz_query){ .origin_node = "node-b" }, &t), 0);
	/* new records are picked up where the last catch-up ended */
	put(log, "a", T0 + 500 * SEC, false, NULL, NULL, NULL);
	assert_int_equal(catch_up(ix), 1);
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "a", .since_ns = T0 + 400 * SEC }, &t), 1);
	/* lookups used by replay */
	assert_int_equal(kz_index_first_since(ix, T0 + 50 * SEC), 151);
	struct kz_record r0;
	(void)r0;
	kz_index_close(ix);
	kz_reclog_close(log);
}

static void test_retention_age_keeps_retained(void **st)
{
	struct kz_reclog *log = open_log(2048); /* many small segments */
	uint64_t kept_ret = put(log, "old/r", T0, true, "retained-state", NULL, NULL);
	for (int i = 0; i < 200; i++)
		put(log, i % 2 ? "old/x" : "keep/y", T0 + (uint64_t)i * SEC, false, NULL, NULL, NULL);
	struct kz_retention_rule rules[1] = { { .filter = "old/#", .max_age_ns = 50 * SEC } };
	struct kz_index *ix = open_index(rules, 1, false);
	catch_up(ix);
	struct kz_retention_report rep;
	char why[512];
	/* now = T0 + 250 s: every old/x is older than 50 s */
	assert_int_equal(kz_index_retention(ix, T0 + 250 * SEC, &rep, why, sizeof why), KZ_OK);
	assert_true(rep.records_dropped > 50);
	assert_true(rep.segments_rewritten > 0);
	struct text t;
	uint64_t left_old = query(ix, &(struct kz_query){ .filter = "old/x" }, &t);
	assert_true(left_old < 100); /* what is left is in the open segment or below the threshold */
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "keep/y" }, &t), 100);
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "old/r" }, &t), 1);
	assert_int_equal(query(ix, &(struct kz_query){ .limit = 0 }, &t), log_records());
	/* the retained message survived although its age is over the limit */
	memset(&t, 0, sizeof t);
	assert_int_equal(kz_index_retained(ix, to_text, &t, why, sizeof why), KZ_OK);
	assert_int_equal(t.rows, 1);
	char want[64];
	snprintf(want, sizeof want, "%" PRIu64 " old/r retained-state\n", kept_ret);
	assert_string_equal(t.s, want);
	/* a second pass finds nothing more to do in closed segments */
	assert_int_equal(kz_index_retention(ix, T0 + 250 * SEC, &rep, why, sizeof why), KZ_OK);
	assert_int_equal(rep.segments_rewritten + rep.segments_deleted, 0);
	kz_index_close(ix);
	/* the log reopens cleanly after rewrites, and appends continue with new seqs */
	uint64_t next = kz_reclog_next_seq(log);
	kz_reclog_close(log);
	log = open_log(2048);
	assert_int_equal(kz_reclog_next_seq(log), next);
	kz_reclog_close(log);
}

static void test_keep_last_and_max_bytes(void **st)
{
	struct kz_reclog *log = open_log(4096);
	for (int i = 0; i < 300; i++) {
		char topic[32];
		snprintf(topic, sizeof topic, "last/%d", i % 3);
		put(log, topic, T0 + (uint64_t)i, false, NULL, NULL, NULL);
		put(log, "cap/z", T0 + (uint64_t)i, false, NULL, NULL, NULL);
	}
	for (int i = 0; i < 40; i++) /* fill a segment, so the records above are all closed */
		put(log, "other", T0 + 1000, false, NULL, NULL, NULL);
	struct kz_retention_rule rules[2] = { { .filter = "last/+", .keep_last = 5 },
					      { .filter = "cap/#", .max_bytes = 3000 } };
	struct kz_index *ix = open_index(rules, 2, false);
	catch_up(ix);
	struct kz_retention_report rep;
	char why[512];
	assert_int_equal(kz_index_retention(ix, T0, &rep, why, sizeof why), KZ_OK);
	struct text t;
	/* whole closed segments were processed: what is left of each topic is within the rule,
	 * except records that share a segment with too few dead ones to be worth a rewrite */
	uint64_t l0 = query(ix, &(struct kz_query){ .filter = "last/0" }, &t);
	assert_true(l0 >= 5 && l0 < 30);
	assert_non_null(strstr(t.s, " last/0 last/0#594\n")); /* the newest is kept */
	uint64_t cz = query(ix, &(struct kz_query){ .filter = "cap/z" }, &t);
	assert_true(cz < 100);
	assert_non_null(strstr(t.s, " cap/z cap/z#599\n"));
	assert_int_equal(query(ix, &(struct kz_query){ .filter = "other" }, &t), 40);
	assert_int_equal(query(ix, &(struct kz_query){ .limit = 0 }, &t), log_records());
	kz_index_close(ix);
	kz_reclog_close(log);
}

static void test_reindex_is_equivalent(void **st)
{
	struct kz_reclog *log = open_log(2048);
	for (int i = 0; i < 300; i++)
		put(log, i % 3 ? "s/a" : "s/b", T0 + (uint64_t)i * SEC, i % 50 == 0, NULL, NULL, NULL);
	put(log, "s/b", T0 + 400 * SEC, true, "", NULL, NULL); /* deletes s/b's retained message */
	struct kz_retention_rule rules[1] = { { .filter = "s/a", .max_age_ns = 100 * SEC } };
	struct kz_index *ix = open_index(rules, 1, false);
	catch_up(ix);
	struct kz_retention_report rep;
	char why[512];
	assert_int_equal(kz_index_retention(ix, T0 + 300 * SEC, &rep, why, sizeof why), KZ_OK);
	assert_true(rep.records_dropped > 0);
	static struct text a1, a2, r1, r2;
	query(ix, &(struct kz_query){ .limit = 0 }, &a1);
	assert_int_equal(kz_index_retained(ix, to_text, &r1, why, sizeof why), KZ_OK);
	kz_index_close(ix);
	unlink(dbpath);
	char side[400];
	snprintf(side, sizeof side, "%s-wal", dbpath);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", dbpath);
	unlink(side);
	ix = open_index(rules, 1, false);
	catch_up(ix);
	query(ix, &(struct kz_query){ .limit = 0 }, &a2);
	assert_int_equal(kz_index_retained(ix, to_text, &r2, why, sizeof why), KZ_OK);
	assert_true(a1.rows > 100);
	assert_string_equal(a1.s, a2.s);
	assert_true(r1.rows >= 1);
	assert_string_equal(r1.s, r2.s);
	assert_null(strstr(r1.s, "s/b")); /* the empty retained message removed it */
	kz_index_close(ix);
	kz_reclog_close(log);
}

static bool drop_odd(void *ctx, uint64_t seq, const uint8_t *body, size_t n) { return seq % 2 == 0; }

static void set_marker(uint64_t base)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	char sql[128];
	snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta(k, v) VALUES('rewriting', %" PRIu64 ")", base);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* A crash between the segment rewrite and the index update: the marker makes the next open
 * re-index that segment, whichever file is there. */
static void test_interrupted_rewrite(void **st)
{
	struct kz_reclog *log = open_log(2048);
	for (int i = 0; i < 100; i++)
		put(log, "t", T0 + (uint64_t)i, false, NULL, NULL, NULL);
	kz_reclog_close(log);
	struct kz_index *ix = open_index(NULL, 0, false);
	catch_up(ix);
	kz_index_close(ix);
	uint64_t *bases;
	size_t n;
	assert_int_equal(kz_reclog_segments(logdir, &bases, &n), KZ_OK);
	assert_true(n >= 3);
	uint64_t base = bases[0];
	free(bases);
	/* crash before the file changed */
	set_marker(base);
	ix = open_index(NULL, 0, false);
	struct text t;
	assert_int_equal(query(ix, &(struct kz_query){ .limit = 0 }, &t), 100);
	kz_index_close(ix);
	/* crash after the file changed */
	uint64_t kept;
	char why[512];
	set_marker(base);
	assert_int_equal(kz_reclog_rewrite(logdir, base, 1 << 20, drop_odd, NULL, &kept, why, sizeof why), KZ_OK);
	assert_true(kept > 0);
	ix = open_index(NULL, 0, false);
	uint64_t rows = query(ix, &(struct kz_query){ .limit = 0 }, &t);
	assert_int_equal(rows, log_records());
	assert_true(rows < 100);
	assert_null(strstr(t.s, "\n1 t ")); /* seq 1 was dropped */
	assert_int_equal(strncmp(t.s, "2 t ", 4), 0);
	/* and indexing goes on after the rewritten segment */
	log = open_log(2048);
	put(log, "t", T0 + 1000, false, "after", NULL, NULL);
	assert_int_equal(catch_up(ix), 1);
	assert_int_equal(query(ix, &(struct kz_query){ .since_ns = T0 + 1000 }, &t), 1);
	kz_index_close(ix);
	kz_reclog_close(log);
}

/* An index written by another schema version is dropped and built again from the log. */
static void test_other_schema_version_rebuilt(void **st)
{
	struct kz_reclog *log = open_log(1 << 20);
	for (int i = 0; i < 30; i++)
		put(log, i % 2 ? "v/a" : "v/b", T0 + (uint64_t)i, i == 4, NULL, NULL, "text/plain");
	struct kz_index *ix = open_index(NULL, 0, false);
	catch_up(ix);
	static struct text before, after;
	query(ix, &(struct kz_query){ .limit = 0 }, &before);
	kz_index_close(ix);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE meta SET v = 1 WHERE k = 'version'", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	ix = open_index(NULL, 0, false);
	assert_int_equal(kz_index_through(ix), 0);
	assert_int_equal(catch_up(ix), 30);
	query(ix, &(struct kz_query){ .limit = 0 }, &after);
	assert_string_equal(before.s, after.s);
	assert_int_equal(query(ix, &(struct kz_query){ .content_type = "text/plain" }, &after), 30);
	kz_index_close(ix);
	kz_reclog_close(log);
}

/* A read-only reader (kizuna query) beside a live node: the node appends and commits
 * between the reader's open and its check. The check must see one consistent position
 * (the CI failure "record 15 is not where it says": a new "through" paired with the
 * offset read at open), and must not take rows indexed after it read the log's end for a
 * cut tail. */
static void test_reader_beside_writer(void **st)
{
	struct kz_reclog *log = open_log(1 << 20);
	for (int i = 0; i < 10; i++)
		put(log, "w/a", T0 + (uint64_t)i, false, NULL, NULL, NULL);
	struct kz_index *w = open_index(NULL, 0, false);
	assert_int_equal(catch_up(w), 10);
	struct kz_index *r = open_index(NULL, 0, true);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 5; i++)
			put(log, "w/a", T0 + 100 + (uint64_t)i, false, NULL, NULL, NULL);
		assert_int_equal(catch_up(w), 5);
		uint64_t hw;
		char why[400] = "";
		int bad = kz_index_check(r, KZ_INDEX_LOG_END_NOW, &hw, why, sizeof why);
		if (bad)
			fail_msg("round %d: %s", round, why);
		assert_int_equal(hw, 15 + 5 * (uint64_t)round);
		assert_int_equal(kz_index_through(r), hw);
	}
	/* a log end passed in that is older than the index is still caught */
	uint64_t hw;
	char why[400] = "";
	assert_int_equal(kz_index_check(r, 20, &hw, why, sizeof why), 1);
	assert_non_null(strstr(why, "up to 25"));
	kz_index_close(r);
	kz_index_close(w);
	kz_reclog_close(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_index_query, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_age_keeps_retained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_last_and_max_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reindex_is_equivalent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupted_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_schema_version_rebuilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_beside_writer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
