/* cli_audit.c — `kizuna audit verify | show`: the audit log from the outside. */
#include "cli/cli.h"
#include "base/kz_time.h"
#include "store/store.h"
#include "trust/audit.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna audit verify [--data DIR]\n"
		   "       kizuna audit show [--data DIR] [--subject ID] [--action A] [--decision allow|deny]\n"
		   "                         [--since TIME] [--until TIME]\n"
		   "       kizuna audit reset [--data DIR] --reason TEXT\n"
		   "verify exits 0 when the log is intact, 1 when it was tampered with, 3 when it is intact but\n"
		   "incomplete (gap entries: decisions the node could not write; or a new chain after reset).\n"
		   "reset (node stopped) moves a log the node refuses to start on (shorter than its signed head,\n"
		   "emptied, deleted) to DIR/audit/quarantine-TIME/ and starts a new chain that names it.\n");
}

static void report(void *ctx, const char *line)
{
	fprintf(ctx, "%s\n", line);
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
		{ "reason", required_argument, NULL, 'r' }, { NULL, 0, NULL, 0 } };
	const char *reason = NULL;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'r': reason = optarg; break;
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
