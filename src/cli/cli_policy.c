/* cli_policy.c — `kizuna policy check | reload | label | decide`: the policy from the
 * outside (docs/POLICY.md). */
#include "cli/cli.h"
#include "base/kz_hash.h"
#include "node/node_config.h"
#include "trust/sign.h"
#include "trust/policy.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna policy check  [--config FILE | --policy FILE --registry FILE]\n"
		   "       kizuna policy reload [--config FILE] [--data DIR]\n"
		   "       kizuna policy keygen --out DIR\n"
		   "       kizuna policy sign   --key KEYFILE [--seq N] POLICY REGISTRY\n"
		   "       kizuna policy label  [--config FILE | --policy FILE --registry FILE] LABEL\n"
		   "       kizuna policy decide [--config FILE | --policy FILE --registry FILE] --as SPIFFE-ID\n"
		   "                            [--label LABEL] [--publish TOPIC] [--subscribe FILTER]\n");
}

/* Reads "ok N VERSION" / "error N\n..." from DIR/policy.status (N counts load attempts). */
static int read_status(const char *data, unsigned *gen, char *text, size_t cap)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/policy.status", data);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(text, 1, cap - 1, f);
	fclose(f);
	text[n] = 0;
	char word[8];
	if (sscanf(text, "%7s %u", word, gen) != 2)
		return -1;
	return !strcmp(word, "ok") ? 0 : 1;
}

static int reload(const char *data, const struct node_config *cfg)
{
	struct kz_policy *p;
	if (node_policy_load(cfg, 0, &p, stderr, NULL)) {
		fprintf(stderr, "kizuna policy reload: not sent; the node keeps its policy\n");
		return 1;
	}
	kz_policy_free(p);
	char path[4200], buf[64], st[8192];
	snprintf(path, sizeof path, "%s/lock", data);
	FILE *f = fopen(path, "r");
	long pid = 0;
	if (!f || !fgets(buf, sizeof buf, f) || (pid = strtol(buf, NULL, 10)) <= 1) {
		fprintf(stderr, "kizuna policy reload: no node runs on %s (%s)\n", data, f ? "no pid in lock" : strerror(errno));
		if (f)
			fclose(f);
		return 1;
	}
	fclose(f);
	unsigned gen0 = 0, gen;
	(void)read_status(data, &gen0, st, sizeof st);
	if (kill((pid_t)pid, SIGHUP)) {
		fprintf(stderr, "kizuna policy reload: cannot signal pid %ld: %s\n", pid, strerror(errno));
		return 1;
	}
	for (int i = 0; i < 100; i++) {
		nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
		int rc = read_status(data, &gen, st, sizeof st);
		if (rc < 0 || gen <= gen0)
			continue;
		if (rc == 0) {
			printf("policy reloaded: %s", st + 3);
			return 0;
		}
		fprintf(stderr, "kizuna policy reload: the node refused it and keeps its policy:\n%s", strchr(st, '\n') + 1);
		return 1;
	}
	fprintf(stderr, "kizuna policy reload: no answer from pid %ld within 10 s\n", pid);
	return 1;
}

int cli_policy_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *verb = argv[1], *config = NULL, *data = NULL, *pol = NULL, *reg = NULL;
	const char *as = NULL, *label = NULL, *pub = NULL, *sub = NULL, *key = NULL, *outdir = NULL;
	unsigned long long seqarg = 0;
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },   { "data", required_argument, NULL, 'd' },
		{ "policy", required_argument, NULL, 'p' },   { "registry", required_argument, NULL, 'r' },
		{ "as", required_argument, NULL, 'a' },	      { "label", required_argument, NULL, 'l' },
		{ "publish", required_argument, NULL, 'P' },  { "subscribe", required_argument, NULL, 'S' },
		{ "key", required_argument, NULL, 'k' },      { "out", required_argument, NULL, 'o' },
		{ "seq", required_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 } };
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:d:", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'd': data = optarg; break;
		case 'p': pol = optarg; break;
		case 'r': reg = optarg; break;
		case 'a': as = optarg; break;
		case 'l': label = optarg; break;
		case 'P': pub = optarg; break;
		case 'S': sub = optarg; break;
		case 'k': key = optarg; break;
		case 'o': outdir = optarg; break;
		case 'q': seqarg = strtoull(optarg, NULL, 10); break;
		default: usage(stderr); return 2;
		}
	}
	char swhy[1400];
	if (!strcmp(verb, "keygen")) {
		if (!outdir || optind < argc) {
			fprintf(stderr, "kizuna policy keygen: give --out DIR\n");
			return 2;
		}
		if (kz_sign_keygen(outdir, swhy, sizeof swhy)) {
			fprintf(stderr, "kizuna policy keygen: %s\n", swhy);
			return 1;
		}
		printf("ML-DSA-65 policy signing key: %s/policy-signing.key (keep it offline); public key %s\n"
		       "(set policy.signing_key = %s on the nodes)\n", outdir, swhy, swhy);
		return 0;
	}
	if (!strcmp(verb, "sign")) {
		if (!key || optind + 2 != argc) {
			fprintf(stderr, "kizuna policy sign: give --key KEYFILE, the policy and its registry\n");
			return 2;
		}
		unsigned long long got;
		if (kz_manifest_sign(key, argv[optind], argv[optind + 1], seqarg, &got, swhy, sizeof swhy)) {
			fprintf(stderr, "kizuna policy sign: %s\n", swhy);
			return 1;
		}
		printf("signed %s.manifest (sequence %llu) naming %s and %s\n", argv[optind], got, argv[optind], argv[optind + 1]);
		return 0;
	}
	struct node_config cfg;
	if (node_config_for_command(&cfg, config, data, stderr))
		return 1;
	if (pol)
		snprintf(cfg.policy_file, sizeof cfg.policy_file, "%s", pol);
	if (reg)
		snprintf(cfg.policy_registry, sizeof cfg.policy_registry, "%s", reg);
	node_config_finish(&cfg); /* the development policy of DIR/pki, when that is the node's */
	if (!cfg.policy_file[0] || !cfg.policy_registry[0]) {
		fprintf(stderr, "kizuna policy %s: no policy: give --config FILE (policy.file, policy.registry) or "
				"--policy FILE --registry FILE\n", verb);
		return 2;
	}
	kz_hash_seed();
	if (!strcmp(verb, "reload"))
		return reload(cfg.data_dir, &cfg);
	struct kz_policy *p;
	int n = node_policy_load(&cfg, 1, &p, stderr, NULL);
	if (n) {
		fprintf(stderr, "%d error%s\n", n, n == 1 ? "" : "s");
		return 1;
	}
	int rc = 0;
	if (!strcmp(verb, "check")) {
		printf("%s: policy %s version %s: %u levels, %u categories, %u rules, %u identities\n", cfg.policy_file,
		       p->id, p->version, p->n_levels, p->n_cats, p->n_rules, p->n_ids);
	} else if (!strcmp(verb, "label")) {
		if (optind + 1 != argc) {
			usage(stderr);
			rc = 2;
		} else {
			struct kz_label l;
			char canon[KZ_LABEL_MAX_LEN + 1], why[200];
			size_t cn;
			if (kz_label_parse(p, argv[optind], strlen(argv[optind]), &l, canon, &cn, why, sizeof why)) {
				fprintf(stderr, "kizuna policy label: %s\n", why);
				rc = 1;
			} else {
				printf("%s\n", canon);
			}
		}
	} else if (!strcmp(verb, "decide")) {
		if (!as) {
			fprintf(stderr, "kizuna policy decide: --as SPIFFE-ID is required\n");
			kz_policy_free(p);
			return 2;
		}
		struct kz_subject s;
		kz_subject_init(p, as, &s);
		const char *why = "";
		bool ok = kz_policy_connect(p, &s, &why);
		printf("connect %s%s%s\n", ok ? "allow" : "deny", ok ? "" : ": ", ok ? "" : why);
		rc |= !ok;
		if (pub) {
			const struct kz_label *dl;
			const char *dt;
			ok = kz_policy_publish(p, &s, pub, strlen(pub), &dl, &dt, &why);
			printf("publish %s %s%s%s\n", pub, ok ? "allow, default label " : "deny: ", ok ? dt : why, "");
			rc |= !ok;
		}
		if (sub) {
			ok = kz_policy_subscribe(p, &s, sub, strlen(sub), &why);
			printf("subscribe %s %s%s\n", sub, ok ? "allow" : "deny: ", ok ? "" : why);
			rc |= !ok;
		}
		if (label) {
			struct kz_label l;
			char canon[KZ_LABEL_MAX_LEN + 1], lwhy[200];
			size_t cn;
			if (kz_label_parse(p, label, strlen(label), &l, canon, &cn, lwhy, sizeof lwhy)) {
				fprintf(stderr, "kizuna policy decide: --label: %s\n", lwhy);
				kz_policy_free(p);
				return 2;
			}
			ok = kz_dominates(p, &s, &l, &why);
			printf("read %s %s%s\n", canon, ok ? "allow" : "deny: ", ok ? "" : why);
			rc |= !ok;
		}
	} else {
		fprintf(stderr, "kizuna policy: unknown verb '%s'\n", verb);
		usage(stderr);
		rc = 2;
	}
	kz_policy_free(p);
	return rc;
}
