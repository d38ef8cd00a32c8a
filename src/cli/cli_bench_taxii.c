/* cli_bench_taxii.c — `kizuna bench taxii`: import throughput and page latency of a node's
 * TAXII 2.1 server (bench/taxii.sh).
 *
 * Import: the objects of the given bundles are re-issued with fresh ids (type--UUIDv4) until
 * --objects are made; the envelopes are built before the clock starts, then --connections
 * threads POST them (each answer means its objects are validated and durable).
 * Pages: GET objects?limit=100 at the first page and at the deepest cursor a walk of the
 * manifest reaches (limit=max), --pages times each; then --readers threads read pages at
 * cursors spread over the whole collection. Latencies are client-side wall times. */
#include "cli/cli.h"
#include "base/kz_array.h"
#include "cli/cli_client.h"
#include "cli/cli_https.h"

#include <getopt.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAXII_MT "application/taxii+json;version=2.1"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct bt {
	struct cli_opts o;
	SSL_CTX *ctx;
	char base[2048], objects[2400], manifest[2400];
	char **bodies;
	size_t *counts, nbodies;
	atomic_size_t next_body;
	atomic_uint_fast64_t ok, refused, errors;
	char **cursors;
	size_t ncursors;
	unsigned pages;
	double *lat;
	atomic_size_t nlat;
};

static int get(struct cli_https *c, const char *url, struct cli_resp *r)
{
	struct cli_url u;
	char why[512];
	if (cli_url_parse(url, &u) || cli_https_request(c, "GET", &u, "Accept: " TAXII_MT "\r\n", NULL, 0, r, why, sizeof why)) {
		fprintf(stderr, "kizuna: GET %s failed\n", url);
		return -1;
	}
	return 0;
}

static void *importer(void *arg)
{
	struct bt *b = arg;
	struct cli_https c = { .ctx = b->ctx, .fd = -1, .max_body = 1u << 30 };
	struct cli_url u;
	cli_url_parse(b->objects, &u);
	for (;;) {
		size_t i = atomic_fetch_add(&b->next_body, 1);
		if (i >= b->nbodies)
			break;
		struct cli_resp r;
		char why[512];
		if (cli_https_request(&c, "POST", &u, "Accept: " TAXII_MT "\r\nContent-Type: " TAXII_MT "\r\n", b->bodies[i],
				      strlen(b->bodies[i]), &r, why, sizeof why)) {
			atomic_fetch_add(&b->errors, 1);
			fprintf(stderr, "kizuna: %s\n", why);
			continue;
		}
		json_t *st = json_loadb((const char *)kz_buf_head(&r.body), r.body.len, 0, NULL);
		atomic_fetch_add(&b->ok, (uint64_t)json_integer_value(json_object_get(st, "success_count")));
		atomic_fetch_add(&b->refused, (uint64_t)json_integer_value(json_object_get(st, "failure_count")));
		if (r.status != 202)
			atomic_fetch_add(&b->errors, 1);
		json_decref(st);
		kz_buf_cleanup(&r.body);
	}
	cli_https_close(&c);
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, size_t n, double wall)
{
	qsort(v, n, sizeof *v, cmp_d);
	if (!n)
		return;
	printf("%s: n=%zu p50=%.2fms p99=%.2fms max=%.2fms%s", what, n, v[n / 2] * 1e3, v[(size_t)((double)n * 0.99)] * 1e3,
	       v[n - 1] * 1e3, wall > 0 ? "" : "\n");
	if (wall > 0)
		printf(" pages/s=%.0f\n", (double)n / wall);
}

/* Times --pages GETs of url (one connection). */
static void time_pages(struct bt *b, const char *what, const char *url)
{
	struct cli_https c = { .ctx = b->ctx, .fd = -1, .max_body = 1u << 30 };
	double *v = calloc(b->pages, sizeof *v);
	size_t n = 0;
	for (unsigned i = 0; i < b->pages; i++) {
		struct cli_resp r;
		double t0 = now_s();
		if (get(&c, url, &r))
			break;
		v[n++] = now_s() - t0;
		if (r.status != 200)
			fprintf(stderr, "kizuna: %s: HTTP %d\n", url, r.status);
		kz_buf_cleanup(&r.body);
	}
	report(what, v, n, 0);
	free(v);
	cli_https_close(&c);
}

static void *reader(void *arg)
{
	struct bt *b = arg;
	struct cli_https c = { .ctx = b->ctx, .fd = -1, .max_body = 1u << 30 };
	unsigned seed = (unsigned)(uintptr_t)&c;
	for (unsigned i = 0; i < b->pages; i++) {
		char url[3000];
		size_t k = b->ncursors ? (size_t)rand_r(&seed) % b->ncursors : 0;
		snprintf(url, sizeof url, "%s?limit=100%s%s", b->objects, b->ncursors ? "&next=" : "",
			 b->ncursors ? b->cursors[k] : "");
		struct cli_resp r;
		double t0 = now_s();
		if (get(&c, url, &r))
			break;
		b->lat[atomic_fetch_add(&b->nlat, 1)] = now_s() - t0;
		kz_buf_cleanup(&r.body);
	}
	cli_https_close(&c);
	return NULL;
}

int cli_bench_taxii_main(int argc, char **argv)
{
	static const struct option lo[] = { { "data", required_argument, NULL, 'd' }, { "url", required_argument, NULL, 'u' },
					    { "collection", required_argument, NULL, 'c' }, { "objects", required_argument, NULL, 'n' },
					    { "batch", required_argument, NULL, 'b' }, { "connections", required_argument, NULL, 'k' },
					    { "readers", required_argument, NULL, 'r' }, { "pages", required_argument, NULL, 'p' },
					    { "bundle", required_argument, NULL, 'f' }, { "skip-import", no_argument, NULL, 's' },
					    { "broker-pid", required_argument, NULL, 'P' },
					    { NULL, 0, NULL, 0 } };
	struct bt *b = calloc(1, sizeof *b);
	const char *data = NULL, *url = "https://localhost:8443", *coll = NULL;
	const char *bundles[8];
	size_t nb = 0, want = 1000000, batch = 1000;
	unsigned conns = 2, readers = 4;
	bool skip_import = false;
	int pid = 0;
	b->pages = 200;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:u:c:n:b:k:r:p:f:sP:", lo, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'u': url = optarg; break;
		case 'c': coll = optarg; break;
		case 'n': want = strtoull(optarg, NULL, 10); break;
		case 'b': batch = strtoull(optarg, NULL, 10); break;
		case 'k': conns = (unsigned)atoi(optarg); break;
		case 'r': readers = (unsigned)atoi(optarg); break;
		case 'p': b->pages = (unsigned)atoi(optarg); break;
		case 'f': if (nb < 8) bundles[nb++] = optarg; break;
		case 's': skip_import = true; break;
		case 'P': pid = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: kizuna bench taxii --collection ID [--url URL] [--data DIR] [--bundle FILE]...\n"
					"       [--objects N] [--batch B] [--connections C] [--readers R] [--pages P] [--skip-import]\n");
			return 2;
		}
	}
	if (!coll || !nb || !batch || !conns || conns > 64 || readers > 64) {
		fprintf(stderr, "kizuna bench taxii: --collection and at least one --bundle are needed\n");
		return 2;
	}
	cli_opts_default(&b->o);
	int orc = cli_opts_finish(&b->o, data, "bench taxii");
	if (orc)
		return orc;
	b->ctx = cli_tls_ctx(&b->o);
	if (!b->ctx)
		return 1;
	snprintf(b->objects, sizeof b->objects, "%s/taxii2/api/collections/%s/objects/", url, coll);
	snprintf(b->manifest, sizeof b->manifest, "%s/taxii2/api/collections/%s/manifest/", url, coll);
	/* templates and marking definitions */
	json_t *tmpl = json_array(), *marks = json_array();
	for (size_t i = 0; i < nb; i++) {
		json_error_t je;
		json_t *bd = json_load_file(bundles[i], 0, &je);
		if (!bd) {
			fprintf(stderr, "kizuna: %s: %s\n", bundles[i], je.text);
			return 1;
		}
		size_t k;
		json_t *o;
		json_array_foreach(json_object_get(bd, "objects"), k, o)
		{
			const char *t = json_string_value(json_object_get(o, "type"));
			json_array_append(t && strcmp(t, "marking-definition") == 0 ? marks : tmpl, o);
		}
		json_decref(bd);
	}
	if (!skip_import) {
		/* the markings once, then the envelopes, built before the clock starts */
		b->nbodies = (want + batch - 1) / batch + 1;
		b->bodies = calloc(b->nbodies, sizeof *b->bodies);
		json_t *env = json_pack("{s:O}", "objects", marks);
		b->bodies[0] = json_dumps(env, JSON_COMPACT);
		json_decref(env);
		size_t made = 0, ti = 0, nt = json_array_size(tmpl);
		fprintf(stderr, "kizuna: building %zu objects from %zu templates...\n", want, nt);
		for (size_t e = 1; e < b->nbodies; e++) {
			json_t *objs = json_array();
			for (size_t k = 0; k < batch && made < want; k++, made++) {
				json_t *o = json_copy(json_array_get(tmpl, ti++ % nt));
				const char *t = json_string_value(json_object_get(o, "type"));
				uint8_t u[16];
				RAND_bytes(u, sizeof u);
				u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
				u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
				char id[300];
				snprintf(id, sizeof id, "%s--%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", t,
					 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
				json_object_set_new(o, "id", json_string(id));
				json_array_append_new(objs, o);
			}
			env = json_pack("{s:o}", "objects", objs);
			b->bodies[e] = json_dumps(env, JSON_COMPACT);
			json_decref(env);
		}
		/* markings first, alone */
		size_t saved = b->nbodies;
		b->nbodies = 1;
		importer(b);
		b->nbodies = saved;
		atomic_store(&b->next_body, 1);
		atomic_store(&b->ok, 0);
		pthread_t th[64];
		uint64_t cpu0 = pid ? cli_proc_cpu_ticks(pid) : 0;
		double t0 = now_s();
		for (unsigned i = 0; i < conns; i++)
			pthread_create(&th[i], NULL, importer, b);
		for (unsigned i = 0; i < conns; i++)
			pthread_join(th[i], NULL);
		double dt = now_s() - t0;
		uint64_t okn = atomic_load(&b->ok);
		double cpu_us = pid && okn ? (double)(cli_proc_cpu_ticks(pid) - cpu0) / (double)sysconf(_SC_CLK_TCK) * 1e6 / (double)okn : 0;
		printf("import: objects=%llu refused=%llu errors=%llu seconds=%.2f objects/s=%.0f connections=%u batch=%zu"
		       " server_cpu_us/object=%.1f\n",
		       (unsigned long long)okn, (unsigned long long)atomic_load(&b->refused),
		       (unsigned long long)atomic_load(&b->errors), dt, (double)okn / dt, conns, batch, cpu_us);
		for (size_t e = 0; e < b->nbodies; e++)
			free(b->bodies[e]);
		free(b->bodies);
	}
	fflush(stdout);
	/* walk the manifest to the end, keeping every page's cursor */
	struct cli_https w = { .ctx = b->ctx, .fd = -1, .max_body = 1u << 30 };
	char next[128] = "";
	size_t depth = 0, cap = 0;
	double tw = now_s();
	for (;;) {
		char u[3000];
		snprintf(u, sizeof u, "%s?limit=1000%s%s", b->manifest, next[0] ? "&next=" : "", next);
		struct cli_resp r;
		if (get(&w, u, &r))
			return 1;
		json_t *j = json_loadb((const char *)kz_buf_head(&r.body), r.body.len, 0, NULL);
		kz_buf_cleanup(&r.body);
		depth += json_array_size(json_object_get(j, "objects"));
		const char *nx = json_string_value(json_object_get(j, "next"));
		bool more = json_is_true(json_object_get(j, "more"));
		if (more && nx) {
			snprintf(next, sizeof next, "%s", nx);
			if (b->ncursors == cap) {
				char **nv = kz_array_grow(b->cursors, sizeof *nv, cap, (size_t)b->ncursors + 1, 1024, SIZE_MAX, &cap);
				if (!nv) {
					json_decref(j);
					break;
				}
				b->cursors = nv;
			}
			b->cursors[b->ncursors++] = strdup(nx);
		}
		json_decref(j);
		if (!more || !nx)
			break;
	}
	cli_https_close(&w);
	printf("manifest walk: %zu objects in %zu pages of 1000, %.2f s\n", depth, b->ncursors + 1, now_s() - tw);
	char first[3000], deep[3000];
	snprintf(first, sizeof first, "%s?limit=100", b->objects);
	time_pages(b, "page limit=100 first", first);
	if (b->ncursors) {
		size_t dc = b->ncursors >= 2 ? b->ncursors - 2 : 0; /* a full page after it */
		snprintf(deep, sizeof deep, "%s?limit=100&next=%s", b->objects, b->cursors[dc]);
		char what[96];
		snprintf(what, sizeof what, "page limit=100 at depth %zu", (dc + 1) * 1000);
		time_pages(b, what, deep);
	}
	if (readers) {
		b->lat = calloc((size_t)readers * b->pages, sizeof *b->lat);
		pthread_t th[64];
		double t0 = now_s();
		for (unsigned i = 0; i < readers; i++)
			pthread_create(&th[i], NULL, reader, b);
		for (unsigned i = 0; i < readers; i++)
			pthread_join(th[i], NULL);
		char what[96];
		snprintf(what, sizeof what, "%u concurrent readers, random depth, limit=100", readers);
		report(what, b->lat, atomic_load(&b->nlat), now_s() - t0);
	}
	return 0;
}
