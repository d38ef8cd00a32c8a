/* fuzz_label.c — the label text parser (kz_label_parse) against the test fixture policy.
 * Anything accepted must canonicalise to a fixed point with the same hash, and the
 * decision on it must not depend on anything but the compiled label. Two labels (the input
 * split at its first newline) that both parse are joined (kz_label_join): the join must
 * parse, and whoever dominates it must dominate both (it is at least as strict). */
#include "trust/access.h"
#include "trust/policy.h"

#include "base/kz_hash.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct kz_policy *pol;
static struct kz_subject subs[3];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!pol) {
		kz_hash_seed();
		if (kz_policy_load(KZ_FUZZ_DATA "/policy/kizuna.policy", KZ_FUZZ_DATA "/policy/identities", 1, &pol, stderr))
			abort();
		kz_subject_init(pol, "spiffe://kizuna.local/mod/user/alice", &subs[0]);
		kz_subject_init(pol, "spiffe://kizuna.local/meti/user/bob", &subs[1]);
		kz_subject_init(pol, "spiffe://kizuna.local/acme/user/erin", &subs[2]);
	}
	struct kz_label l, l2;
	char canon[KZ_LABEL_MAX_LEN + 1], canon2[KZ_LABEL_MAX_LEN + 1], why[160];
	size_t n, n2;
	const uint8_t *nl = memchr(data, '\n', size);
	if (nl) {
		char a[KZ_LABEL_MAX_LEN + 1], b[KZ_LABEL_MAX_LEN + 1], j[KZ_LABEL_MAX_LEN + 1];
		struct kz_label la, lb, lj;
		size_t an = (size_t)(nl - data), bn = size - an - 1;
		const char *w;
		if (an <= KZ_LABEL_MAX_LEN && bn <= KZ_LABEL_MAX_LEN &&
		    !kz_label_parse(pol, (const char *)data, an, &la, a, &n, why, sizeof why) &&
		    !kz_label_parse(pol, (const char *)nl + 1, bn, &lb, b, &n, why, sizeof why) &&
		    !kz_label_join(pol, a, b, j, sizeof j, &w)) {
			assert(kz_label_parse(pol, j, strlen(j), &lj, canon, &n, why, sizeof why) == 0);
			for (int i = 0; i < 3; i++) {
				const char *w1;
				if (kz_dominates(pol, &subs[i], &lj, &w1))
					assert(kz_dominates(pol, &subs[i], &la, &w1) && kz_dominates(pol, &subs[i], &lb, &w1));
			}
		}
		return 0;
	}
	if (kz_label_parse(pol, (const char *)data, size, &l, canon, &n, why, sizeof why)) {
		assert(why[0]);
		return 0;
	}
	assert(n == strlen(canon) && n <= KZ_LABEL_MAX_LEN);
	assert(kz_label_parse(pol, canon, n, &l2, canon2, &n2, why, sizeof why) == 0);
	assert(n2 == n && !memcmp(canon, canon2, n) && l.hash == l2.hash);
	for (int i = 0; i < 3; i++) {
		const char *w1, *w2;
		assert(kz_dominates(pol, &subs[i], &l, &w1) == kz_dominates(pol, &subs[i], &l2, &w2));
		(void)kz_policy_may_label(pol, &subs[i], &l, &w1);
	}
	return 0;
}
