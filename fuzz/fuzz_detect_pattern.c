/* fuzz_detect_pattern.c — the indicator compiler on arbitrary patterns: each is refused
 * (invalid), listed as outside the subset with a reason, or compiled into at most 256
 * conjunctions of at most 16 atoms; a compiled indicator is matched against the pattern's
 * own text as every kind of observable without trouble. */
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "base/kz_buf.h"
#include "services/detect/detect.h"
#include "services/detect/detect_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static void on_match(void *ctx, const struct detect_match *m)
{
	(void)ctx;
	assert(m->ind && m->obs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct detect_dnf *d;
	if (!d) {
		kz_hash_seed();
		d = malloc(sizeof *d);
	}
	const char *why = NULL;
	int rc = detect_pattern_compile((const char *)data, size, d, &why);
	assert(rc == 0 || (why && *why));
	if (rc == 0) {
		assert(d->n_terms >= 1 && d->n_terms <= DETECT_MAX_TERMS);
		for (unsigned t = 0; t < d->n_terms; t++)
			assert(d->n_atoms[t] >= 1 && d->n_atoms[t] <= DETECT_MAX_ATOMS);
	}
	/* the same text as an indicator object, then matched */
	struct detect_index *x = detect_index_new();
	char *text = strndup((const char *)data, size);
	struct kz_json_doc doc = { 0 };
	struct kz_buf j;
	kz_buf_init(&j, 0);
	static const char pre[] = "{\"type\":\"indicator\",\"id\":\"indicator--00000000-0000-4000-8000-000000000001\","
				  "\"pattern_type\":\"stix\",\"valid_from\":\"2020-01-01T00:00:00Z\",\"pattern\":";
	(void)kz_buf_append(&j, pre, sizeof pre - 1);
	if (text && kz_json_put_str(&j, text) == 0 && kz_buf_append(&j, "}", 1) == 0 &&
	    kz_json_parse(&doc, (const char *)kz_buf_head(&j), j.len) == 0) {
		(void)detect_add_stix(x, kz_json_root(&doc), "", "fuzz", &why);
		struct detect_obs o[DETECT_KINDS];
		for (int k = 1; k < DETECT_KINDS; k++)
			o[k - 1] = (struct detect_obs){ .kind = (uint8_t)k, .value = text, .len = strlen(text), .field = "f" };
		(void)detect_match_event(x, o, DETECT_KINDS - 1, 0, on_match, NULL);
	}
	kz_json_free(&doc);
	kz_buf_cleanup(&j);
	free(text);
	detect_index_free(x);
	return 0;
}
