/* fuzz_idlimit.c — the limits.identity line parser (kz_idlimit_rule_parse) and the token
 * buckets it configures: an accepted line names a known WHO, a refused one says why, and
 * taking tokens never allows more than one second's worth plus the refill. */
#include "trust/idlimit.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[600];
	if (size >= sizeof text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	struct kz_idlimit_rule r;
	const char *why = NULL;
	if (kz_idlimit_rule_parse(text, &r, &why)) {
		assert(why && why[0]);
		return 0;
	}
	assert(r.who[0]);
	struct kz_idlimits l;
	if (kz_idlimits_init(&l, &r, 1, 16))
		abort();
	struct kz_idlimit_entry *e = kz_idlimits_get(&l, "spiffe://kizuna.local/dev/user/f", NULL);
	assert(e);
	uint64_t ok = 0;
	for (int i = 0; i < 64; i++)
		ok += kz_idlimit_take(e, KZ_IDL_PUBLISH, 1, 1000000000ull + (uint64_t)i);
	assert(!e->lim.publish_rate || ok <= (uint64_t)e->lim.publish_rate + 1);
	uint64_t okp = 0;
	for (int i = 0; i < 64; i++)
		okp += kz_idlimit_take_publish(e, 1000, 3000000000ull + (uint64_t)i);
	assert(!e->lim.publish_rate || okp <= (uint64_t)e->lim.publish_rate + 1);
	assert(kz_idlimit_connect(e) || e->lim.connections == 0 || e->conns >= e->lim.connections);
	kz_idlimits_cleanup(&l);
	return 0;
}
