/* fuzz_detect_indicators.c — the indicator and warning-list loaders on arbitrary text: the
 * first byte picks a warning list or an indicator file (STIX bundle, JSON array or lines,
 * Zeek intel); every refusal has a reason; what loads is matched against the text's own
 * tokens as every kind of observable without trouble. */
#include "base/kz_hash.h"
#include "services/detect/detect.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static void on_match(void *ctx, const struct detect_match *m)
{
	(void)ctx;
	assert(m->ind->id[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int seeded;
	if (!seeded++)
		kz_hash_seed();
	if (size < 1)
		return 0;
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	struct detect_index *x = detect_index_new();
	char why[300] = "";
	int rc = data[0] & 1 ? detect_load_warninglist_text(x, text, size - 1, "fuzz.json", why, sizeof why)
			     : detect_load_text(x, text, size - 1, "", "fuzz.intel", why, sizeof why);
	assert(rc == 0 || why[0]);
	/* the input's first line as each kind of observable */
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	size_t n = strcspn(text, "\n\t");
	struct detect_obs o[DETECT_KINDS - 1];
	for (int k = 1; k < DETECT_KINDS; k++)
		o[k - 1] = (struct detect_obs){ .kind = (uint8_t)k, .value = text, .len = n ? n : 1, .field = "f" };
	(void)detect_match_event(x, o, DETECT_KINDS - 1, 0, on_match, NULL);
	detect_index_free(x);
	free(text);
	return 0;
}
