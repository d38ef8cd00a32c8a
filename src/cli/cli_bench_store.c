/* cli_bench_store.c — `kizuna bench fill` and `kizuna bench query`: a synthetic record
 * store of any size, and query latency on it (BENCHMARKS.md).
 *
 * fill writes N records straight into DIR/log (node stopped: it takes the data directory
 * lock) on T topics sensors/<k>/temp, accept times 100 µs apart from a fixed start, then
 * builds DIR/index.db from the log and reports both rates. query runs Q queries for one
 * random topic and a time window holding about W records each, reading every record from
 * the log, and reports latency percentiles. */
#include "cli/cli.h"
#include "base/kz_err.h"
#include "base/kz_time.h"
#include "store/store.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0_NS 1800000000000000000ull /* 2027-01-15: fixed, so runs are comparable */
#define STEP_NS 100000ull            /* one record every 100 µs */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int fill(const char *data, uint64_t n, unsigned topics)
{
	char why[1024], logdir[4200], db[4200];
	int lock = kz_data_lock(data, why, sizeof why);
	if (lock < 0) {
		fprintf(stderr, "kizuna bench fill: %s\n", why);
		return 1;
	}
	snprintf(logdir, sizeof logdir, "%s/log", data);
	snprintf(db, sizeof db, "%s/index.db", data);
	struct kz_reclog_config lc = { .dir = logdir, .segment_bytes = 64u << 20, .max_record_bytes = 1 << 20,
				    .fsync = KZ_FSYNC_NEVER };
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	if (kz_reclog_open(&lc, &log, &rec, why, sizeof why)) {
		fprintf(stderr, "kizuna bench fill: %s\n", why);
		return 1;
	}
	enum { BATCH = 1000 };
	struct kz_buf bufs[BATCH];
	struct kz_bytes bodies[BATCH];
	for (int i = 0; i < BATCH; i++)
		kz_buf_init(&bufs[i], 0);
	uint8_t payload[100];
	memset(payload, 'x', sizeof payload);
	uint64_t t0 = kz_now_mono_ns(), base = kz_reclog_next_seq(log);
	int rc = 0;
	for (uint64_t i = 0; i < n && !rc; i += BATCH) {
		size_t k = 0;
		for (; k < BATCH && i + k < n; k++) {
			uint64_t j = i + k;
			char topic[64];
			snprintf(topic, sizeof topic, "sensors/%u/temp", (unsigned)(j % topics));
			struct kz_record r = { .time_ns = T0_NS + (base - 1 + j) * STEP_NS, .qos = 1 };
			kz_uuidv7(r.id, r.time_ns / 1000000u);
			r.topic = (struct kz_bytes){ (const uint8_t *)topic, (uint32_t)strlen(topic) };
			r.origin_node = (struct kz_bytes){ (const uint8_t *)"bench", 5 };
			r.origin_id = (struct kz_bytes){ (const uint8_t *)"spiffe://kizuna.local/dev/sensor/bench", 38 };
			r.payload = (struct kz_bytes){ payload, sizeof payload };
			kz_buf_reset(&bufs[k]);
			if ((rc = kz_record_encode(&r, &bufs[k])) != 0)
				break;
			bodies[k] = (struct kz_bytes){ kz_buf_head(&bufs[k]), (uint32_t)bufs[k].len };
		}
		uint64_t first;
		if (!rc)
			rc = kz_reclog_append(log, bodies, k, &first, why, sizeof why);
	}
	kz_reclog_close(log);
	for (int i = 0; i < BATCH; i++)
		kz_buf_cleanup(&bufs[i]);
	if (rc) {
		fprintf(stderr, "kizuna bench fill: %s\n", why);
		return 1;
	}
	uint64_t t1 = kz_now_mono_ns();
	struct kz_index_config ic = { db, logdir, 1 << 20, NULL, 0, false };
	struct kz_index *ix;
	uint64_t added = 0;
	rc = kz_index_open(&ic, &ix, why, sizeof why);
	if (!rc) {
		rc = kz_index_catch_up(ix, 0, &added, why, sizeof why);
		kz_index_close(ix);
	}
	uint64_t t2 = kz_now_mono_ns();
	close(lock);
	if (rc) {
		fprintf(stderr, "kizuna bench fill: %s\n", why);
		return 1;
	}
	printf("records=%" PRIu64 " topics=%u write_per_s=%.0f index_per_s=%.0f write_s=%.1f index_s=%.1f\n", n,
	       topics, (double)n / ((double)(t1 - t0) / 1e9), (double)added / ((double)(t2 - t1) / 1e9),
	       (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9);
	return 0;
}

static int count_row(void *ctx, uint64_t seq, const struct kz_record *r)
{
	(void)seq;
	(void)r;
	(*(uint64_t *)ctx)++;
	return 0;
}

static int query(const char *data, unsigned queries, unsigned topics, uint64_t want)
{
	char why[1024], logdir[4200], db[4200];
	snprintf(logdir, sizeof logdir, "%s/log", data);
	snprintf(db, sizeof db, "%s/index.db", data);
	struct kz_index_config ic = { db, logdir, 1 << 20, NULL, 0, true };
	struct kz_index *ix;
	if (kz_index_open(&ic, &ix, why, sizeof why)) {
		fprintf(stderr, "kizuna bench query: %s\n", why);
		return 1;
	}
	uint64_t n = kz_index_through(ix);
	/* each topic has a record every topics * STEP_NS: a window of want records */
	uint64_t span = want * topics * STEP_NS;
	uint64_t *lat = calloc(queries, sizeof *lat), rows = 0;
	srandom(42);
	int rc = 0;
	for (unsigned q = 0; q < queries && !rc && lat; q++) {
		char topic[64];
		snprintf(topic, sizeof topic, "sensors/%u/temp", (unsigned)(random() % topics));
		uint64_t total = n * STEP_NS;
		uint64_t since = T0_NS + (total > span ? (uint64_t)random() % (total - span) : 0);
		struct kz_query kq = { .filter = topic, .since_ns = since, .until_ns = since + span - 1 };
		uint64_t got = 0, t0 = kz_now_mono_ns();
		rc = kz_index_query(ix, &kq, count_row, &got, why, sizeof why);
		lat[q] = kz_now_mono_ns() - t0;
		rows += got;
	}
	kz_index_close(ix);
	if (rc || !lat) {
		fprintf(stderr, "kizuna bench query: %s\n", rc ? why : "out of memory");
		free(lat);
		return 1;
	}
	qsort(lat, queries, sizeof *lat, cmp_u64);
	printf("store_records=%" PRIu64 " queries=%u rows_per_query=%.0f query_ms_p50=%.2f p99=%.2f max=%.2f\n", n,
	       queries, (double)rows / queries, (double)lat[queries / 2] / 1e6,
	       (double)lat[(size_t)(queries * 0.99)] / 1e6, (double)lat[queries - 1] / 1e6);
	free(lat);
	return 0;
}

int cli_bench_store_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' }, { "records", required_argument, NULL, 'n' },
		{ "topics", required_argument, NULL, 't' }, { "queries", required_argument, NULL, 'q' },
		{ "rows", required_argument, NULL, 'r' }, { NULL, 0, NULL, 0 } };
	const char *data = "./var";
	uint64_t n = 1000000, want = 1000;
	unsigned topics = 1000, queries = 200;
	int c;
	optind = 1; /* argv[0] is "fill" or "query" */
	while ((c = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 't': topics = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'q': queries = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': want = strtoull(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (!n || !topics || !queries || !want) {
		fprintf(stderr, "kizuna bench: --records, --topics, --queries and --rows must be positive\n");
		return 2;
	}
	return strcmp(argv[0], "fill") == 0 ? fill(data, n, topics) : query(data, queries, topics, want);
}
