/* cli_bench_audit.c — `kizuna bench audit`: an audit log of any size, written by the node's
 * own writer (kz_audit_record: the chain, signed checkpoints, rotation), for bench/audit.sh.
 *
 * Appends N entries to DIR/audit (node stopped: it takes the data directory lock) with the
 * node's defaults (a checkpoint every 1,000 entries, audit.log rotated at 64 MiB, 16 rotated
 * files kept; --max-file-mb and --max-files change the last two), shaped like the entries of
 * a busy node: connections of 1,000 identities from their addresses, their subscriptions and
 * publishes, one in 50 denied (the writer summarises repeated denials of a peer and kind:
 * about 40 deny entries per 100,000). */
#include "cli/cli.h"
#include "base/kz_time.h"
#include "store/store.h"
#include "trust/audit.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_bench_audit_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' }, { "entries", required_argument, NULL, 'n' },
		{ "max-file-mb", required_argument, NULL, 'm' }, { "max-files", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 } };
	const char *data = "./var";
	uint64_t n = 1000000, file_mb = 64;
	unsigned files = 16;
	int c;
	optind = 1; /* argv[0] is "audit" */
	while ((c = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 'm': file_mb = strtoull(optarg, NULL, 10); break;
		case 'f': files = (unsigned)strtoul(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (!n) {
		fprintf(stderr, "kizuna bench audit: --entries must be positive\n");
		return 2;
	}
	char why[1024], dir[4200];
	int lock = kz_data_lock(data, why, sizeof why);
	if (lock < 0) {
		fprintf(stderr, "kizuna bench audit: %s\n", why);
		return 1;
	}
	snprintf(dir, sizeof dir, "%s/audit", data);
	struct kz_audit *a;
	if (kz_audit_open(dir, 1000, 10000, &a, why, sizeof why)) {
		fprintf(stderr, "kizuna bench audit: %s\n", why);
		close(lock);
		return 1;
	}
	kz_audit_set_limits(a, 10000, file_mb << 20, files);
	static const char *const actions[] = { "tls", "connect", "subscribe", "publish" };
	uint64_t t0 = kz_now_mono_ms();
	for (uint64_t i = 0; i < n; i++) {
		char subj[96], addr[40], res[64], serial[24];
		unsigned who = (unsigned)(i * 2654435761u % 1000);
		snprintf(subj, sizeof subj, "spiffe://kizuna.local/org%u/sensor/s%u", who % 7, who);
		snprintf(addr, sizeof addr, "10.%u.%u.%u:%u", who % 200, who / 200, who % 250 + 1, 30000 + (unsigned)(i % 30000));
		snprintf(res, sizeof res, "sensors/s%u/%s", who, i % 2 ? "temp" : "track");
		snprintf(serial, sizeof serial, "%016llx", (unsigned long long)(who * 0x9e3779b97f4a7c15ull));
		bool deny = i % 50 == 0;
		kz_audit_record(a, &(struct kz_audit_entry){
					   .subject = subj, .serial = serial, .tls_group = "X25519MLKEM768",
					   .tls = "TLSv1.3 TLS_AES_256_GCM_SHA384", .addr = addr, .action = actions[i % 4],
					   .resource = res, .label = "class=unclassified;rel=jpn", .allow = !deny,
					   .reason = deny ? "no rule allows it" : "allowed", .policy = "7" });
	}
	kz_audit_close(a);
	close(lock);
	double s = (double)(kz_now_mono_ms() - t0) / 1e3;
	printf("kizuna bench audit: %llu entries in %.1f s (%.0f/s) in %s\n", (unsigned long long)n, s,
	       s > 0 ? (double)n / s : 0.0, dir);
	return 0;
}
