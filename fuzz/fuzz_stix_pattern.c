/* fuzz_stix_pattern.c — the STIX pattern parser on arbitrary text: never reads past the
 * input, always explains a refusal, and a valid pattern stays valid with white space and a
 * comment around it. */
#include "services/stix/stix.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "";
	char *p = malloc(size + 16);
	memcpy(p, data, size); /* not NUL-terminated: the parser must respect size */
	if (stix_pattern_check(p, size, err, sizeof err) == 0) {
		memcpy(p, " ", 1);
		memcpy(p + 1, data, size);
		memcpy(p + 1 + size, " /* c */", 8);
		assert(stix_pattern_check(p, size + 9, err, sizeof err) == 0);
	} else
		assert(err[0]);
	free(p);
	return 0;
}
