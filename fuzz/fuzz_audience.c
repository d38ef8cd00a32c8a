/* fuzz_audience.c — the Kizuna-Audience header parser (kz_audience_canon) on arbitrary
 * text: refused with a reason, or a canonical form that is a fixed point (canonicalising it
 * again gives the same text and count). */
#include "trust/access.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 2000)
		return 0;
	char *in = malloc(size + 1);
	memcpy(in, data, size);
	in[size] = 0;
	char a[900], b[900];
	size_t n1 = 0, n2 = 0;
	const char *why = NULL;
	if (kz_audience_canon(in, a, sizeof a, &n1, &why)) {
		assert(why && why[0]);
	} else {
		assert(n1 <= 8);
		assert(kz_audience_canon(a, b, sizeof b, &n2, &why) == 0 && n1 == n2 && strcmp(a, b) == 0);
	}
	free(in);
	return 0;
}
