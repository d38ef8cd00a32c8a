/* cli_audit.c — `kizuna audit verify | show`: the audit log from the outside. */
#include "cli/cli.h"
#include "base/kz_file.h"
#include "base/kz_time.h"
#include "cluster/cluster.h"
#include "node/node_config.h"
#include "store/store.h"
#include "trust/audit.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna audit verify [--data DIR]\n"
		   "       kizuna audit verify --cluster NODE [--config FILE] [--data DIR]\n"
		   "       kizuna audit show [--data DIR] [--subject ID] [--action A] [--decision allow|deny]\n"
		   "                         [--since TIME] [--until TIME]\n"
		   "       kizuna audit reset [--data DIR] --reason TEXT\n"
		   "verify exits 0 when the log is intact, 1 when it was tampered with, 3 when it is intact but\n"
		   "incomplete (gap entries: decisions the node could not write; or a new chain after reset).\n"
		   "--cluster NODE: NODE's chain as the cluster holds it (stream KZ_AUDIT, keys and head in\n"
		   "KZ_TRUST), rebuilt in a temporary directory and checked the same way; this node's\n"
		   "configuration says how to reach NATS. Exit codes as above.\n"
		   "reset (node stopped) moves a log the node refuses to start on (shorter than its signed head,\n"
		   "emptied, deleted) to DIR/audit/quarantine-TIME/ and starts a new chain that names it.\n");
}

static void report(void *ctx, const char *line)
{
	fprintf(ctx, "%s\n", line);
}

struct rebuild {
	FILE *log;
	char dir[1100];
	uint64_t last, n, dups, gaps;
};

static int rebuild_entry(void *ctx, const char *line, size_t len)
{
	struct rebuild *r = ctx;
	uint64_t n = 0;
	if (len > 5 && memcmp(line, "{\"n\":", 5) == 0)
		for (size_t i = 5; i < len && line[i] >= '0' && line[i] <= '9'; i++)
			n = n * 10 + (uint64_t)(line[i] - '0');
	if (n && n <= r->last) { /* published twice (a crash between a publish and its note) */
		r->dups++;
		return 0;
	}
	if (n && r->last && n != r->last + 1)
		r->gaps++; /* written as it is: the check names what is missing */
	if (n)
		r->last = n;
	r->n++;
	return fwrite(line, 1, len, r->log) == len && fputc('\n', r->log) != EOF ? 0 : -1;
}

static int rebuild_key(void *ctx, const char *key, const uint8_t *v, size_t n)
{
	struct rebuild *r = ctx;
	const char *name = !strcmp(key, "pub") ? "audit.pub" : !strcmp(key, "mldsa.pub") ? "audit.mldsa.pub" : "head";
	return kz_file_replace(r->dir, name, v, n, 0644) ? -1 : 0;
}

static int verify_cluster(const char *config, const char *data, const char *node)
{
	struct node_config cfg;
	if (node_config_for_command(&cfg, config, data, stderr))
		return 1;
	node_config_finish(&cfg);
	if (!cfg.cluster_nats[0]) {
		fprintf(stderr, "kizuna audit verify: this node is not in a cluster (cluster.nats is empty)\n");
		return 1;
	}
	/* the rebuilt chain in the data directory, where the node's own audit is: not in /tmp */
	char tmp[1060], path[1200], why[1024] = "";
	snprintf(tmp, sizeof tmp, "%s/audit-verify-XXXXXX", cfg.data_dir);
	if (!mkdtemp(tmp)) {
		fprintf(stderr, "kizuna audit verify: cannot make a temporary directory in %s: %s\n", cfg.data_dir,
			strerror(errno));
		return 1;
	}
	struct rebuild r = { 0 };
	snprintf(r.dir, sizeof r.dir, "%s/audit", tmp);
	mkdir(r.dir, 0700);
	snprintf(path, sizeof path, "%s/audit.log", r.dir);
	r.log = fopen(path, "w");
	struct kz_cluster_config cc;
	cli_cluster_config(&cfg, NULL, &cc);
	int rc = r.log ? kz_cluster_audit_fetch(&cc, node, rebuild_entry, rebuild_key, &r, why, sizeof why) : -1;
	if (r.log && fclose(r.log))
		rc = -1;
	if (rc) {
		fprintf(stderr, "kizuna audit verify: %s\n", why[0] ? why : "cannot write the rebuilt chain");
		rc = 1;
	} else if (r.n == 0) {
		fprintf(stderr, "kizuna audit verify: the cluster holds no audit entries of node %s\n", node);
		rc = 1;
	} else {
		printf("node %s: %" PRIu64 " entries from KZ_AUDIT (%" PRIu64 " published twice, dropped)\n", node, r.n,
		       r.dups);
		rc = kz_audit_verify(r.dir, report, stdout, why, sizeof why);
		if (rc < 0)
			fprintf(stderr, "kizuna audit verify: %s\n", why);
		rc = rc < 0 ? 1 : rc;
	}
	static const char *const files[] = { "audit.log", "audit.pub", "audit.mldsa.pub", "head" };
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", r.dir, files[i]);
		unlink(path);
	}
	rmdir(r.dir);
	rmdir(tmp);
	return rc;
}

int cli_audit_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *verb = argv[1], *data = "./var";
	struct kz_audit_filter flt = { 0 };
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },   { "subject", required_argument, NULL, 's' },
		{ "action", required_argument, NULL, 'a' }, { "decision", required_argument, NULL, 'D' },
		{ "since", required_argument, NULL, 'S' },  { "until", required_argument, NULL, 'U' },
		{ "reason", required_argument, NULL, 'r' }, { "cluster", required_argument, NULL, 'C' },
		{ "config", required_argument, NULL, 'c' }, { NULL, 0, NULL, 0 } };
	const char *reason = NULL, *cluster = NULL, *config = NULL;
	bool data_given = false;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; data_given = true; break;
		case 'r': reason = optarg; break;
		case 'C': cluster = optarg; break;
		case 'c': config = optarg; break;
		case 's': flt.subject = optarg; break;
		case 'a': flt.action = optarg; break;
		case 'D':
			if (strcmp(optarg, "allow") && strcmp(optarg, "deny")) {
				fprintf(stderr, "kizuna audit: --decision: expected allow or deny\n");
				return 2;
			}
			flt.decision = optarg;
			break;
		case 'S':
		case 'U':
			if (kz_time_parse(optarg, c == 'S' ? &flt.since_ns : &flt.until_ns)) {
				fprintf(stderr, "kizuna audit: '%s' is not an RFC 3339 time\n", optarg);
				return 2;
			}
			break;
		default: usage(stderr); return 2;
		}
	}
	if (cluster && !strcmp(verb, "verify"))
		return verify_cluster(config, data_given ? data : NULL, cluster);
	if (cluster || config) {
		fprintf(stderr, "kizuna audit %s: --cluster and --config go with verify only\n", verb);
		return 2;
	}
	char dir[4200], why[1024] = "";
	if (kz_data_dir_check(data, why, sizeof why)) {
		fprintf(stderr, "kizuna audit %s: %s\n", verb, why);
		return 1;
	}
	snprintf(dir, sizeof dir, "%s/audit", data);
	if (!strcmp(verb, "verify")) {
		int rc = kz_audit_verify(dir, report, stdout, why, sizeof why);
		if (rc < 0)
			fprintf(stderr, "kizuna audit verify: %s\n", why);
		return rc < 0 ? 1 : rc;
	}
	if (!strcmp(verb, "reset")) {
		if (!reason || !*reason) {
			fprintf(stderr, "kizuna audit reset: --reason TEXT is required (it goes into the new chain's first entry)\n");
			return 2;
		}
		int lfd = kz_data_lock(data, why, sizeof why);
		if (lfd < 0) {
			fprintf(stderr, "kizuna audit reset: %s\n", why);
			return 1;
		}
		char q[4400];
		int rc = kz_audit_new_chain(dir, reason, q, sizeof q, why, sizeof why);
		close(lfd);
		if (rc) {
			fprintf(stderr, "kizuna audit reset: %s\n", why);
			return 1;
		}
		printf("%s/audit.log: a new chain begins; the old log and head are in %s\n", dir, q);
		return 0;
	}
	if (!strcmp(verb, "show")) {
		if (kz_audit_show(dir, &flt, stdout, why, sizeof why)) {
			fprintf(stderr, "kizuna audit show: %s\n", why);
			return 1;
		}
		return 0;
	}
	fprintf(stderr, "kizuna audit: unknown action '%s'\n", verb);
	usage(stderr);
	return 2;
}
