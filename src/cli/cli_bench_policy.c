/* cli_bench_policy.c — `kizuna bench policy`: the cost of the decision point, measured on
 * the real functions: the bitset check alone, the broker's per-delivery check with its
 * per-session cache (what every delivery pays), a cache miss (label compiled from text),
 * and label parsing (what every labelled PUBLISH pays). */
#include "cli/cli.h"
#include "base/kz_hash.h"
#include "base/kz_time.h"
#include "mqtt/mqtt_internal.h"
#include "trust/policy.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Labels of the test fixture's vocabulary (tests/data/policy); others are skipped. */
static const char *const LABELS[] = {
	"class=restricted;rel=jpn",
	"class=restricted;rel=jpn;relorg=mod",
	"class=secret;caveat=cyber;rel=jpn,usa",
	"class=confidential;relorg=mod,meti,nisc",
	"class=unclassified;tlp=green",
	"class=top-secret;caveat=cyber,crypto",
	"class=secret;tlp=amber+strict;aud=org:meti,org:mod",
	"class=unclassified;tlp=red;aud=id:spiffe://kizuna.local/mod/user/alice",
};
#define NL (sizeof LABELS / sizeof LABELS[0])

static double per_op(uint64_t t0, uint64_t n)
{
	return (double)(kz_now_mono_ns() - t0) / (double)n;
}

int cli_bench_policy_main(int argc, char **argv)
{
	static const struct option opts[] = { { "policy", required_argument, NULL, 'p' },
					      { "registry", required_argument, NULL, 'r' },
					      { "checks", required_argument, NULL, 'n' },
					      { NULL, 0, NULL, 0 } };
	const char *pol = NULL, *reg = NULL;
	uint64_t n = 20000000;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pol = optarg; break;
		case 'r': reg = optarg; break;
		case 'n': n = strtoull(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (!pol || !reg || n < 1000) {
	usage:
		fprintf(stderr, "usage: kizuna bench policy --policy FILE --registry FILE [--checks N]\n"
				"(labels use the vocabulary of tests/data/policy)\n");
		return 2;
	}
	kz_hash_seed();
	struct kz_policy *p;
	if (kz_policy_load(pol, reg, 1, &p, stderr))
		return 1;
	if (!p->n_ids) {
		fprintf(stderr, "kizuna bench policy: the registry is empty\n");
		kz_policy_free(p);
		return 1;
	}
	struct kz_label labs[NL];
	char canon[NL][KZ_LABEL_MAX_LEN + 1], why[160];
	size_t cn[NL], nl = 0;
	for (size_t i = 0; i < NL; i++)
		if (!kz_label_parse(p, LABELS[i], strlen(LABELS[i]), &labs[nl], canon[nl], &cn[nl], why, sizeof why))
			nl++;
	if (!nl) {
		fprintf(stderr, "kizuna bench policy: none of the built-in labels fits this policy\n");
		kz_policy_free(p);
		return 1;
	}
	uint32_t ns = p->n_ids < 16 ? p->n_ids : 16;
	struct kz_subject *subs = calloc(ns, sizeof *subs);
	for (uint32_t i = 0; i < ns; i++)
		kz_subject_init(p, p->ids[i].id, &subs[i]);

	/* 1. The bitset check alone. */
	const char *w;
	uint64_t allowed = 0, t0 = kz_now_mono_ns();
	for (uint64_t i = 0; i < n; i++)
		allowed += kz_dominates(p, &subs[i % ns], &labs[(i / ns) % nl], &w);
	double dom_ns = per_op(t0, n);

	/* 2. The broker's per-delivery check: sessions with their caches, messages with
	 * compiled labels, as on the delivery path. */
	struct mqtt_limits lim;
	mqtt_limits_default(&lim);
	struct mqtt_broker b;
	if (mqtt_broker_init(&b, &lim, 1)) {
		free(subs);
		kz_policy_free(p);
		return 1;
	}
	atomic_store(&b.policy, p);
	struct mqtt_session *ss[16];
	for (uint32_t i = 0; i < ns; i++) {
		char cid[16];
		int cl = snprintf(cid, sizeof cid, "b%u", i);
		ss[i] = mqtt_session_new(&b.shards[0], (const uint8_t *)cid, (size_t)cl);
		ss[i]->peer_id = strdup(p->ids[i].id);
	}
	struct mqtt_msg *msgs[NL];
	for (size_t i = 0; i < nl; i++)
		msgs[i] = mqtt_msg_new_labelled((const uint8_t *)"t", 1, (const uint8_t *)"x", 1, NULL, 0,
						(const uint8_t *)canon[i], (uint32_t)cn[i], &labs[i]);
	uint64_t allowed2 = 0;
	t0 = kz_now_mono_ns();
	for (uint64_t i = 0; i < n; i++)
		allowed2 += mqtt_policy_check_delivery(ss[i % ns], msgs[(i / ns) % nl], false);
	double cached_ns = per_op(t0, n);

	/* 3. A cache miss: a message whose label was compiled under another generation. */
	struct mqtt_msg *old = mqtt_msg_new_labelled((const uint8_t *)"t", 1, (const uint8_t *)"x", 1, NULL, 0,
						     (const uint8_t *)canon[0], (uint32_t)cn[0], NULL);
	uint64_t nm = n / 100;
	t0 = kz_now_mono_ns();
	for (uint64_t i = 0; i < nm; i++) {
		ss[0]->dc_val[0] = ss[0]->dc_val[1] = ss[0]->dc_val[2] = ss[0]->dc_val[3] = 0;
		ss[0]->dc_val[4] = ss[0]->dc_val[5] = ss[0]->dc_val[6] = ss[0]->dc_val[7] = 0;
		(void)mqtt_policy_check_delivery(ss[0], old, false);
	}
	double miss_ns = per_op(t0, nm);

	/* 4. Parsing and compiling a label (each labelled PUBLISH). */
	struct kz_label l;
	char cbuf[KZ_LABEL_MAX_LEN + 1];
	size_t cl;
	t0 = kz_now_mono_ns();
	for (uint64_t i = 0; i < nm; i++)
		(void)kz_label_parse(p, LABELS[i % NL], strlen(LABELS[i % NL]), &l, cbuf, &cl, why, sizeof why);
	double parse_ns = per_op(t0, nm);

	printf("policy %s: %u subjects x %zu labels, %llu checks (%.1f%% allowed)\n", p->version, ns, nl,
	       (unsigned long long)n, 100.0 * (double)allowed / (double)n);
	printf("dominates_ns=%.1f delivery_check_ns=%.1f cache_miss_ns=%.1f label_parse_ns=%.1f\n", dom_ns, cached_ns,
	       miss_ns, parse_ns);
	if (allowed != allowed2)
		fprintf(stderr, "kizuna bench policy: the cached path disagrees with the bitset check (%llu vs %llu)\n",
			(unsigned long long)allowed2, (unsigned long long)allowed);
	mqtt_msg_unref(old);
	for (size_t i = 0; i < nl; i++)
		mqtt_msg_unref(msgs[i]);
	atomic_store(&b.policy, NULL); /* the sessions go with the broker */
	mqtt_broker_cleanup(&b);
	free(subs);
	kz_policy_free(p);
	return allowed == allowed2 ? 0 : 1;
}
