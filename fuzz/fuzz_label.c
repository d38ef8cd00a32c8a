/* fuzz_label.c — the label text parser (kz_label_parse) against the test fixture policy.
 * Anything accepted must canonicalise to a fixed point with the same hash, and the
 * decision on it must not depend on anything but the compiled label. */
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
