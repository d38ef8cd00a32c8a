/* cli_query.c — `kizuna query`: records from the index, as JSON or NDJSON. */
#include "cli/cli_store.h"
#include "base/kz_err.h"
#include "base/kz_time.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_RECORD (256u << 20)

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna query [--data DIR] [--topic FILTER] [--since TIME] [--until TIME]\n"
		   "                    [--origin ID] [--node NODE] [--content-type TYPE] [--limit N]\n"
		   "                    [--format json|ndjson]\n");
}

struct out {
	bool ndjson;
	uint64_t n;
};

static int row(void *ctx, uint64_t seq, const struct kz_record *r)
{
	struct out *o = ctx;
	if (!o->ndjson)
		fputs(o->n ? ",\n" : "[\n", stdout);
	cli_record_json(stdout, seq, r);
	if (o->ndjson)
		fputc('\n', stdout);
	o->n++;
	return 0;
}

static int count_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_log_pos *pos)
{
	(void)seq, (void)body, (void)n, (void)pos;
	(*(uint64_t *)ctx)++;
	return 0;
}

static int time_arg(const char *opt, const char *v, uint64_t *ns)
{
	if (kz_time_parse(v, ns)) {
		fprintf(stderr, "kizuna query: %s: '%s' is not an RFC 3339 time such as 2026-11-22T08:00:00Z\n",
			opt, v);
		return -1;
	}
	return 0;
}

int cli_query_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },	  { "topic", required_argument, NULL, 't' },
		{ "since", required_argument, NULL, 's' },	  { "until", required_argument, NULL, 'u' },
		{ "origin", required_argument, NULL, 'o' },	  { "node", required_argument, NULL, 'N' },
		{ "content-type", required_argument, NULL, 'T' }, { "limit", required_argument, NULL, 'l' },
		{ "format", required_argument, NULL, 'f' },	  { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *data = "./var";
	struct kz_query q = { .limit = 1000 };
	struct out o = { 0 };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:t:s:u:o:l:f:h", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'd': data = optarg; break;
		case 't': q.filter = optarg; break;
		case 's': if (time_arg("--since", optarg, &q.since_ns)) return 2; break;
		case 'u': if (time_arg("--until", optarg, &q.until_ns)) return 2; break;
		case 'o': q.origin = optarg; break;
		case 'N': q.origin_node = optarg; break;
		case 'T': q.content_type = optarg; break;
		case 'l':
			q.limit = strtoull(optarg, &end, 10);
			if (*end || !*optarg || optarg[0] == '-') {
				fprintf(stderr, "kizuna query: --limit: expected a number (0 = no limit)\n");
				return 2;
			}
			break;
		case 'f':
			if (strcmp(optarg, "json") && strcmp(optarg, "ndjson")) {
				fprintf(stderr, "kizuna query: --format: expected json or ndjson\n");
				return 2;
			}
			o.ndjson = !strcmp(optarg, "ndjson");
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kizuna query: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (q.since_ns && q.until_ns && q.since_ns > q.until_ns) {
		fprintf(stderr, "kizuna query: --since is after --until\n");
		return 2;
	}
	char logdir[4200], path[4200], why[1024] = "";
	snprintf(logdir, sizeof logdir, "%s/log", data);
	snprintf(path, sizeof path, "%s/index.db", data);
	if (access(path, F_OK) != 0) {
		fprintf(stderr, "kizuna query: no index at %s (start the node, or run `kizuna store reindex`)\n",
			path);
		return 1;
	}
	/* Read only: the node keeps the index current; a stopped node's index may lack the
	 * records written after its last commit, which we count and report. */
	struct kz_index_config icfg = { path, logdir, MAX_RECORD, NULL, 0, true };
	struct kz_index *ix;
	int rc = kz_index_open(&icfg, &ix, why, sizeof why);
	if (!rc) {
		rc = kz_index_query(ix, &q, row, &o, why, sizeof why);
		if (!o.ndjson)
			fputs(o.n ? "\n]\n" : "[]\n", stdout);
	}
	uint64_t behind = 0;
	if (!rc && kz_log_scan(logdir, kz_index_through(ix) + 1, NULL, MAX_RECORD, count_cb, &behind, why,
			       sizeof why) == KZ_OK && behind)
		fprintf(stderr, "kizuna query: %" PRIu64 " newer records in the log are not indexed yet\n", behind);
	kz_index_close(ix);
	if (rc) {
		fprintf(stderr, "kizuna query: %s\n", why);
		return 1;
	}
	return 0;
}
