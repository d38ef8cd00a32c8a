/* fuzz_query.c — the HTTPS API's query-string parser (kz_http_query_each, used by TAXII's
 * filters) on arbitrary bytes: decoded keys and values are bounded and NUL-free, a refusal
 * says why, and the parser never reads past the input. */
#include "http/http.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static int each(void *ctx, const char *k, const char *v)
{
	size_t *n = ctx;
	assert(strlen(k) < 4096 && strlen(v) < 4096);
	(*n)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *q = malloc(size ? size : 1);
	memcpy(q, data, size);
	const char *why = NULL;
	size_t n = 0;
	int rc = kz_http_query_each(q, size, each, &n, &why);
	assert(rc == 0 || (rc == -1 && why && why[0]));
	free(q);
	return 0;
}
