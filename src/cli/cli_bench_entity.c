/* cli_bench_entity.c — `kizuna bench entities`: the entity picture's costs on the real code
 * (docs/ENTITIES.md, BENCHMARKS.md "Entities"): the process memory that N live
 * position-only entities take, the rate of updates applied among them (decoded from their
 * JSON as the service does, and applied alone), and the time to write all of them as the
 * API's JSON (what a snapshot to a new stream costs before the network). */
#include "cli/cli.h"
#include "base/kz_buf.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "base/kz_time.h"
#include "services/entity/entity.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/* Update i of entity k (position moves a little each time), as JSON. */
static int render(char *out, size_t cap, uint64_t k, uint64_t i)
{
	return snprintf(out, cap, "{\"id\":\"trk-%llu\",\"type\":\"a-f-S-X\",\"position\":{\"lat\":%.6f,\"lon\":%.6f,\"ce\":25}}",
			(unsigned long long)k, 35.0 + (double)(k % 1000) * 0.001 + (double)(i % 100) * 1e-5,
			139.0 + (double)(k / 1000 % 1000) * 0.001);
}

static int apply_json(struct entity_table *t, struct kz_json_doc *doc, const char *text, size_t n, uint64_t seq)
{
	struct entity_update u;
	const char *why;
	if (entity_decode(doc, text, n, &u, &why)) {
		fprintf(stderr, "kizuna bench entities: %s: %s\n", text, why);
		return -1;
	}
	struct entity_source src = { .seq = seq, .received_ns = 1796000000000000000ull + seq * 1000,
				     .origin = "spiffe://kizuna.local/mod/sensor/ais-1", .node = "n1",
				     .label = "class=restricted;rel=jpn" };
	enum entity_event ev;
	return entity_table_apply(t, &u, &src, &ev, NULL);
}

struct snapshot {
	struct kz_buf b;
	uint64_t bytes;
};

/* One SSE event per entity into a 64 KiB buffer, handed on (here: dropped) when full, as a
 * stream writes to its connection. */
static int snapshot_one(void *ctx, const struct entity *e)
{
	struct snapshot *s = ctx;
	if (kz_buf_append(&s->b, "data: ", 6) || entity_to_json(e, &s->b) || kz_buf_append(&s->b, "\n\n", 2))
		return 1;
	if (s->b.len >= 65536) {
		s->bytes += s->b.len;
		kz_buf_reset(&s->b);
	}
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: kizuna bench entities [--entities N] [--updates U]\n"
			"(defaults 100000 and 2000000; bench/entities.sh)\n");
	return 2;
}

int cli_bench_entity_main(int argc, char **argv)
{
	static const struct option opts[] = { { "entities", required_argument, NULL, 'e' },
					      { "updates", required_argument, NULL, 'u' },
					      { NULL, 0, NULL, 0 } };
	uint64_t n = 100000, updates = 2000000;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'e')
			n = strtoull(optarg, NULL, 10);
		else if (c == 'u')
			updates = strtoull(optarg, NULL, 10);
		else
			return usage();
	}
	if (n < 1 || n > 50000000 || updates < 1)
		return usage();
	kz_hash_seed();
	struct entity_table_config cfg = { .max_entities = (uint32_t)n + 1, .default_stale_ms = 3600000,
					   .default_expiry_ms = 3600000, .removed_keep_ms = 60000, .max_interned = 1000 };
	struct entity_table *t;
	struct kz_json_doc doc = { 0 };
	char text[256];
	if (entity_table_new(&cfg, &t))
		return 1;
	long before = rss_kb();
	uint64_t seq = 0;
	for (uint64_t k = 0; k < n; k++) {
		int len = render(text, sizeof text, k, 0);
		if (apply_json(t, &doc, text, (size_t)len, ++seq))
			return 1;
	}
	long after = rss_kb();
	struct entity_table_stats st;
	entity_table_stats(t, &st);
	printf("entities: %llu live; memory: %.0f bytes each (process RSS), %.0f (the table's count)\n",
	       (unsigned long long)st.live, (double)(after - before) * 1024.0 / (double)n, (double)st.bytes / (double)n);
	/* decode + apply, round robin over the entities (as the service does per record) */
	uint64_t t0 = kz_now_mono_ns();
	for (uint64_t i = 0; i < updates; i++) {
		uint64_t k = (i * 7919) % n;
		int len = render(text, sizeof text, k, i);
		if (apply_json(t, &doc, text, (size_t)len, ++seq))
			return 1;
	}
	double secs = (double)(kz_now_mono_ns() - t0) / 1e9;
	printf("updates (JSON decoded and applied, %llu live entities): %.0f/s\n", (unsigned long long)n,
	       (double)updates / secs);
	/* apply alone: the update already decoded */
	struct entity_update u = { .has = ENTITY_F_POSITION, .pos = { .lat = 35.5, .lon = 139.5 } };
	char id[32];
	u.id = id;
	struct entity_source src = { .origin = "spiffe://kizuna.local/mod/sensor/ais-1", .node = "n1",
				     .label = "class=restricted;rel=jpn" };
	t0 = kz_now_mono_ns();
	for (uint64_t i = 0; i < updates; i++) {
		snprintf(id, sizeof id, "trk-%llu", (unsigned long long)((i * 7919) % n));
		src.seq = ++seq;
		src.received_ns = 1796000000000000000ull + seq * 1000;
		enum entity_event ev;
		if (entity_table_apply(t, &u, &src, &ev, NULL))
			return 1;
	}
	secs = (double)(kz_now_mono_ns() - t0) / 1e9;
	printf("updates (applied alone): %.0f/s\n", (double)updates / secs);
	/* the snapshot a new stream gets: every entity as the API's JSON */
	struct snapshot sn = { .bytes = 0 };
	kz_buf_init(&sn.b, 0);
	t0 = kz_now_mono_ns();
	if (entity_table_each(t, snapshot_one, &sn)) {
		fprintf(stderr, "kizuna bench entities: out of memory\n");
		return 1;
	}
	sn.bytes += sn.b.len;
	printf("snapshot of %llu entities as SSE events of the API's JSON, in 64 KiB writes: %.1f ms, %.1f MB\n",
	       (unsigned long long)n, (double)(kz_now_mono_ns() - t0) / 1e6, (double)sn.bytes / 1e6);
	kz_buf_cleanup(&sn.b);
	entity_table_free(t);
	kz_json_free(&doc);
	return 0;
}
