/* cli_detect.c — `kizuna detect scan FILE… --indicators SOURCE… [--follow]`: the detection engine
 * (src/services/detect/) over logs on disk, what an analyst does with a capture: indicators
 * from STIX bundles, JSON lines or Zeek intel files (plain or gzip), optional MISP warning
 * lists, then each log (plain or gzip; Zeek TSV or JSON, Suricata EVE, syslog) line by line;
 * every sighting is printed as one line, a STIX 2.1 bundle (docs/DETECTION.md). With
 * --follow, the files are followed as they grow and rotate (detect_tail.c), and sightings
 * new or changed are printed every --flush-ms, until SIGINT or SIGTERM. */
#include "cli/cli.h"
#include "cli/cli_client.h"
#include "cli/cli_https.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "services/detect/detect.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

struct scan {
	struct detect_index *x;
	struct detect_sightings *s;
	const char *label;
	uint64_t matches;
};

static void on_match(void *ctx, const struct detect_match *m)
{
	struct scan *sc = ctx;
	sc->matches++;
	detect_sightings_add(sc->s, m, m->ind->label[0] ? m->ind->label : sc->label);
}

static void on_event(void *ctx, const struct detect_obs *obs, size_t n, int64_t ts_us, const char *line, size_t len)
{
	struct scan *sc = ctx;
	(void)line, (void)len;
	(void)detect_match_event(sc->x, obs, n, ts_us, on_match, sc);
}

static void print(void *ctx, const struct detect_sighting_out *o)
{
	(void)ctx;
	fwrite(o->json, 1, o->len, stdout);
	fputc('\n', stdout);
}

static void list(void *ctx, const char *id, const char *why, const char *label, const char *source,
		 const char *author)
{
	(void)ctx, (void)label, (void)source, (void)author;
	fprintf(stderr, "kizuna detect scan: not matched: %s: %s\n", id, why);
}

static volatile sig_atomic_t stop_follow;

static void on_signal(int sig)
{
	(void)sig;
	stop_follow = 1;
}

static void tail_line(void *ctx, const char *line, size_t n)
{
	(void)detect_reader_line(ctx, line, n);
}

/* --follow: each file read, then followed as it grows and rotates; sightings new or changed
 * printed every flush_ms, until SIGINT or SIGTERM (then a last flush, exit 0). */
static int follow(struct scan *sc, char **files, int n, enum detect_format f, unsigned flush_ms)
{
	struct detect_tail *t[64];
	struct detect_reader *r[64];
	if (n > 64) {
		fprintf(stderr, "kizuna detect scan: --follow takes at most 64 files\n");
		return 2;
	}
	for (int i = 0; i < n; i++) {
		if (access(files[i], R_OK))
			fprintf(stderr, "kizuna detect scan: %s: %s; following it for when it appears\n", files[i],
				strerror(errno));
		t[i] = detect_tail_open(files[i], true);
		r[i] = detect_reader_new(f, on_event, sc);
		if (!t[i] || !r[i]) {
			fprintf(stderr, "kizuna detect scan: out of memory\n");
			return 1;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	struct timespec last;
	clock_gettime(CLOCK_MONOTONIC, &last);
	while (!stop_follow) {
		for (int i = 0; i < n; i++)
			(void)detect_tail_poll(t[i], tail_line, r[i]);
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= flush_ms) {
			detect_sightings_flush(sc->s, print, NULL);
			fflush(stdout);
			last = now;
		}
		usleep(100000);
	}
	for (int i = 0; i < n; i++)
		(void)detect_tail_poll(t[i], tail_line, r[i]);
	detect_sightings_flush(sc->s, print, NULL);
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		detect_tail_close(t[i]);
		detect_reader_free(r[i]);
	}
	return 0;
}

static int scan_file(struct scan *sc, const char *path, enum detect_format f, struct detect_reader_stats *total)
{
	gzFile in = strcmp(path, "-") ? gzopen(path, "rb") : gzdopen(0, "rb");
	if (!in) {
		fprintf(stderr, "kizuna detect scan: %s: cannot be read\n", path);
		return -1;
	}
	struct detect_reader *r = detect_reader_new(f, on_event, sc);
	if (!r) {
		gzclose(in);
		return -1;
	}
	size_t cap = 1 << 20;
	char *line = malloc(cap);
	while (line && gzgets(in, line, (int)cap)) {
		size_t n = strlen(line);
		if (n && line[n - 1] == '\n')
			n--;
		else if (n == cap - 1) { /* longer than 1 MiB: skip the rest of it */
			int c;
			while ((c = gzgetc(in)) >= 0 && c != '\n')
				;
		}
		(void)detect_reader_line(r, line, n);
	}
	free(line);
	struct detect_reader_stats st;
	detect_reader_stats(r, &st);
	if (st.errors)
		fprintf(stderr, "kizuna detect scan: %s: lines that did not parse: %llu (first: %s)\n", path,
			(unsigned long long)st.errors, st.last_error ? st.last_error : "?");
	total->lines += st.lines, total->events += st.events, total->errors += st.errors;
	detect_reader_free(r);
	gzclose(in);
	return 0;
}

/* `kizuna detect status`: the node's detection service (GET /api/v1/detect/status). */
static int status_main(int argc, char **argv)
{
	static const struct option longs[] = { { "url", required_argument, NULL, 'u' }, { "data", required_argument, NULL, 'd' },
					       { "cafile", required_argument, NULL, 1001 }, { "cert", required_argument, NULL, 1002 },
					       { "key", required_argument, NULL, 1003 }, { "json", no_argument, NULL, 'j' },
					       { 0 } };
	struct cli_opts o;
	cli_opts_default(&o);
	const char *url = "https://localhost:8443", *data = NULL;
	bool json = false;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "d:", longs, NULL)) != -1) {
		if (cli_opts_parse(&o, c, optarg) == 1)
			continue;
		if (c == 'u')
			url = optarg;
		else if (c == 'd')
			data = optarg;
		else if (c == 'j')
			json = true;
		else {
			fprintf(stderr, "kizuna detect status: bad option (kizuna help detect)\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kizuna detect status: no arguments (kizuna help detect)\n");
		return 2;
	}
	int fr = cli_opts_finish(&o, data, "detect");
	if (fr)
		return fr;
	char full[2400], why[512];
	snprintf(full, sizeof full, "%s/api/v1/detect/status", url);
	struct cli_url u;
	if (cli_url_parse(full, &u)) {
		fprintf(stderr, "kizuna detect status: %s: not an https:// URL\n", url);
		return 2;
	}
	struct cli_https h = { .ctx = cli_tls_ctx(&o), .fd = -1, .max_body = 16u << 20 };
	struct cli_resp r = { 0 };
	kz_buf_init(&r.body, 0);
	int rc = 1;
	if (!h.ctx)
		return 1;
	if (cli_https_request(&h, "GET", &u, NULL, NULL, 0, &r, why, sizeof why)) {
		fprintf(stderr, "kizuna detect status: %s: %s\n", full, why);
		goto out;
	}
	struct kz_json_doc d = { 0 };
	const struct kz_json *root = NULL;
	if (!kz_json_parse(&d, (const char *)kz_buf_head(&r.body), r.body.len))
		root = kz_json_root(&d);
	if (r.status != 200) {
		const char *desc = kz_json_get_str(root, "description");
		fprintf(stderr, "kizuna detect status: HTTP %d%s%s%s\n", r.status, desc ? ": " : "", desc ? desc : "",
			r.status == 404 ? " (is detect.enabled = 1 in the node's configuration?)" : "");
		rc = r.status == 403 ? 3 : 1;
	} else if (json || !root) {
		fwrite(kz_buf_head(&r.body), 1, r.body.len, stdout);
		fputc('\n', stdout);
		rc = 0;
	} else {
		long long v[12] = { 0 };
		static const char *const keys[] = { "indicators", "unsupported", "suppressed", "removed", "lines",
						    "events", "parse_errors", "matches", "index_bytes" };
		for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
			kz_json_int(kz_json_get(root, keys[i]), &v[i]);
		double eps = 0;
		kz_json_num(kz_json_get(root, "events_per_second"), &eps);
		const struct kz_json *sg = kz_json_get(root, "sightings");
		long long pub = 0, st = 0, refused[3] = { 0 };
		kz_json_int(kz_json_get(sg, "published"), &pub);
		kz_json_int(kz_json_get(sg, "stored"), &st);
		kz_json_int(kz_json_get(sg, "no_label"), &refused[0]);
		kz_json_int(kz_json_get(sg, "publish_refused"), &refused[1]);
		kz_json_int(kz_json_get(sg, "store_refused"), &refused[2]);
		printf("indicators  %lld matched (%lld not matchable, %lld suppressed, %lld removed), %.1f MiB\n", v[0], v[1],
		       v[2], v[3], (double)v[8] / 1048576.0);
		const struct kz_json *bt = kz_json_get(root, "indicators_by_type");
		printf("  by type  ");
		KZ_JSON_FOR(m, bt) {
			long long n = 0;
			if (kz_json_int(m, &n) && n)
				printf(" %s %lld", m->key, n);
		}
		printf("\nevents      %lld from %lld lines (%lld did not parse), %.1f/s now\n", v[5], v[4], v[6], eps);
		printf("matches     %lld\nsightings   %lld published, %lld stored in TAXII%s%s; refused: %lld no common "
		       "label, %lld by the policy, %lld by TAXII\n",
		       v[7], pub, st, kz_json_get_str(root, "collection") && kz_json_get_str(root, "collection")[0] ? " collection " : "",
		       kz_json_get_str(root, "collection") ? kz_json_get_str(root, "collection") : "", refused[0], refused[1],
		       refused[2]);
		KZ_JSON_FOR(e, kz_json_get(root, "not_matched"))
			printf("not matched %s: %s\n", kz_json_get_str(e, "id") ? kz_json_get_str(e, "id") : "?",
			       kz_json_get_str(e, "why") ? kz_json_get_str(e, "why") : "?");
		rc = 0;
	}
	kz_json_free(&d);
out:
	kz_buf_cleanup(&r.body);
	cli_https_close(&h);
	SSL_CTX_free(h.ctx);
	return rc;
}

int cli_detect_main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "status"))
		return status_main(argc, argv);
	if (argc < 2 || strcmp(argv[1], "scan")) {
		fprintf(stderr, "kizuna detect: usage: kizuna detect scan FILE... --indicators SOURCE [options], or "
				"kizuna detect status (kizuna help detect)\n");
		return 2;
	}
	static const struct option longs[] = { { "indicators", required_argument, NULL, 'i' },
					       { "warninglist", required_argument, NULL, 'w' },
					       { "label", required_argument, NULL, 'l' },
					       { "format", required_argument, NULL, 'f' },
					       { "list-skipped", no_argument, NULL, 's' },
					       { "follow", no_argument, NULL, 'F' },
					       { "flush-ms", required_argument, NULL, 'm' },
					       { 0 } };
	const char *ind[64], *warn[64], *label = "", *format = "auto";
	size_t n_ind = 0, n_warn = 0;
	bool list_skipped = false, follow_files = false;
	unsigned flush_ms = 1000;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "i:w:l:f:sFm:", longs, NULL)) != -1) {
		if (c == 'i' && n_ind < 64)
			ind[n_ind++] = optarg;
		else if (c == 'w' && n_warn < 64)
			warn[n_warn++] = optarg;
		else if (c == 'l')
			label = optarg;
		else if (c == 'f')
			format = optarg;
		else if (c == 's')
			list_skipped = true;
		else if (c == 'F')
			follow_files = true;
		else if (c == 'm' && atoi(optarg) >= 10)
			flush_ms = (unsigned)atoi(optarg);
		else {
			fprintf(stderr, "kizuna detect scan: bad option (kizuna help detect)\n");
			return 2;
		}
	}
	enum detect_format f = !strcmp(format, "auto")	  ? DETECT_AUTO
			       : !strcmp(format, "zeek")  ? DETECT_ZEEK_TSV
			       : !strcmp(format, "json")  ? DETECT_ZEEK_JSON
			       : !strcmp(format, "eve")	  ? DETECT_EVE
			       : !strcmp(format, "syslog") ? DETECT_SYSLOG
							   : (enum detect_format)-1;
	if ((int)f < 0 || !n_ind || optind >= argc) {
		fprintf(stderr, "kizuna detect scan: usage: kizuna detect scan FILE... --indicators SOURCE "
				"[--indicators SOURCE...] [--warninglist LIST.json...] [--label L] "
				"[--format auto|zeek|json|eve|syslog] [--list-skipped] [--follow [--flush-ms N]]\n");
		return 2;
	}
	kz_hash_seed();
	struct scan sc = { .x = detect_index_new(), .s = detect_sightings_new("kizuna detect scan"), .label = label };
	if (!sc.x || !sc.s) {
		fprintf(stderr, "kizuna detect scan: out of memory\n");
		return 1;
	}
	int rc = 0;
	char why[300];
	struct timespec t0, t1, t2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < n_warn && !rc; i++)
		if (detect_load_warninglist(sc.x, warn[i], why, sizeof why)) {
			fprintf(stderr, "kizuna detect scan: %s\n", why);
			rc = 1;
		}
	for (size_t i = 0; i < n_ind && !rc; i++)
		if (detect_load_file(sc.x, ind[i], label, why, sizeof why)) {
			fprintf(stderr, "kizuna detect scan: %s\n", why);
			rc = 1;
		}
	struct detect_stats st;
	detect_index_stats(sc.x, &st);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!rc && !st.indicators) {
		fprintf(stderr, "kizuna detect scan: no indicator to match (%llu not supported, %llu on warning lists)\n",
			(unsigned long long)st.unsupported, (unsigned long long)st.suppressed);
		if (list_skipped)
			detect_index_list_skipped(sc.x, list, NULL);
		rc = 1;
	}
	struct detect_reader_stats total = { 0 };
	if (!rc && follow_files)
		rc = follow(&sc, argv + optind, argc - optind, f, flush_ms);
	for (int i = optind; i < argc && !rc && !follow_files; i++)
		if (scan_file(&sc, argv[i], f, &total))
			rc = 1;
	size_t n = rc || follow_files ? 0 : detect_sightings_flush(sc.s, print, NULL);
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &t2);
	if (!rc && !follow_files) {
		if (list_skipped)
			detect_index_list_skipped(sc.x, list, NULL);
		double load = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
		double run = (double)(t2.tv_sec - t1.tv_sec) + (t2.tv_nsec - t1.tv_nsec) / 1e9;
		fprintf(stderr,
			"kizuna detect scan: %llu indicators (%llu not supported, %llu on warning lists, %.1f MB) loaded in "
			"%.2f s; %llu events in %llu lines (%llu did not parse) in %.2f s; %llu matches, %zu sightings\n",
			(unsigned long long)st.indicators, (unsigned long long)st.unsupported,
			(unsigned long long)st.suppressed, st.bytes / 1e6, load, (unsigned long long)total.events,
			(unsigned long long)total.lines, (unsigned long long)total.errors, run,
			(unsigned long long)sc.matches, n);
	}
	detect_sightings_free(sc.s);
	detect_index_free(sc.x);
	return rc;
}
