/* fuzz_stix.c — the STIX 2.1 validator on arbitrary JSON. Whatever it accepts must be
 * accepted again unchanged (the TLP rewrite is idempotent) and name its own type and id;
 * whatever it refuses must say why. */
#include "services/stix/stix.h"

#include <assert.h>
#include <string.h>

static bool known_some(void *ctx, const char *id) { return strlen(id) % 2 == 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (!o)
		return 0;
	struct stix_opts opts = { .allow_custom = size % 2 == 0, .marking_known = known_some, .now_us = 1795000000000000LL };
	struct stix_info info, again;
	char err[256] = "";
	if (stix_validate(o, &opts, &info, err, sizeof err) == 0) {
		assert(strncmp(info.id, info.type, strlen(info.type)) == 0);
		assert(info.modified_us >= info.created_us);
		char err2[256] = "";
		assert(stix_validate(o, &opts, &again, err2, sizeof err2) == 0);
		assert(!again.tlp_rewritten && again.tlp == info.tlp);
	} else
		assert(err[0]);
	json_decref(o);
	return 0;
}
