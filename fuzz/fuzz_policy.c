/* fuzz_policy.c — the policy file and identity registry parsers (kz_policy_parse). The input
 * is the policy text, then optionally "\n%%\n" and the registry text. Errors must be
 * reported (never a silent failure); an accepted policy must answer decisions for every
 * identity of its registry and for an unknown one. */
#include "trust/policy.h"

#include "base/kz_hash.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	if (!devnull) {
		kz_hash_seed();
		devnull = fopen("/dev/null", "w");
	}
	const char *t = (const char *)data;
	const char *sep = memmem(t, size, "\n%%\n", 4);
	size_t pn = sep ? (size_t)(sep - t) : size;
	const char *r = sep ? sep + 4 : "";
	size_t rn = sep ? size - pn - 4 : 0;
	struct kz_policy *p = NULL;
	int errs = kz_policy_parse(t, pn, "policy", r, rn, "registry", 1, &p, devnull);
	if (errs) {
		assert(!p);
		return 0;
	}
	assert(p && p->n_levels >= 1 && p->default_text);
	const char *why;
	const struct kz_label *dl;
	const char *dt;
	for (uint32_t i = 0; i <= p->n_ids; i++) {
		struct kz_subject s;
		kz_subject_init(p, i < p->n_ids ? p->ids[i].id : "spiffe://x/y/user/z", &s);
		(void)kz_policy_connect(p, &s, &why);
		(void)kz_policy_subscribe(p, &s, "a/#", 3, &why);
		if (kz_policy_publish(p, &s, "a/b", 3, &dl, &dt, &why))
			assert(dl && dt);
		(void)kz_dominates(p, &s, &p->default_label, &why);
	}
	kz_policy_free(p);
	return 0;
}
