/* fuzz_stix.c — the STIX 2.1 validator on arbitrary JSON (parsed by kz_json, as the TAXII
 * server does). Whatever it accepts must name its own type and id, and the text kizuna
 * would store (the object as sent, or stix_rewrite's when its markings change) must be
 * accepted again as it is, with the same type, id, versions and TLP; whatever it refuses
 * must say why. */
#include "services/stix/stix.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static bool known_some(void *ctx, const char *id) { return strlen(id) % 2 == 0; }

static struct kz_json_doc doc, doc2;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	if (kz_json_parse(&doc, text, size))
		return 0;
	const struct kz_json *o = kz_json_root(&doc);
	struct stix_opts opts = { .allow_custom = size % 2 == 0, .marking_known = known_some, .now_us = 1795000000000000LL };
	struct stix_info info, again;
	char err[256] = "";
	if (stix_validate(o, &opts, &info, err, sizeof err) == 0) {
		assert(strncmp(info.id, info.type, strlen(info.type)) == 0);
		assert(info.modified_us >= info.created_us);
		size_t len = o->end - o->off;
		char *stored = info.tlp_rewritten ? stix_rewrite(text, o, &len) : NULL;
		assert(!info.tlp_rewritten || stored);
		assert(kz_json_parse(&doc2, stored ? stored : text + o->off, len) == 0);
		char err2[256] = "";
		assert(stix_validate(kz_json_root(&doc2), &opts, &again, err2, sizeof err2) == 0);
		assert(!again.tlp_rewritten && again.tlp == info.tlp && strcmp(again.id, info.id) == 0 &&
		       again.modified_us == info.modified_us && again.created_us == info.created_us);
		free(stored);
	} else
		assert(err[0]);
	kz_json_trim(&doc, 1 << 20);
	kz_json_trim(&doc2, 1 << 20);
	return 0;
}
