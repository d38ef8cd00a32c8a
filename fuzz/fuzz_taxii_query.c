/* fuzz_taxii_query.c — TAXII's filter parser (added_after, limit, next, match[...] comma
 * lists, kizuna's match[created_by_ref] / match[object_marking_refs]) on arbitrary query
 * strings: each one is accepted or refused with a reason, never a crash or an overread. */
#include "services/taxii/taxii.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *q = malloc(size ? size : 1);
	memcpy(q, data, size);
	char why[256] = "";
	int rc = taxii_query_check(q, size, why, sizeof why);
	assert(rc == 0 || (rc == -1 && why[0]));
	free(q);
	return 0;
}
