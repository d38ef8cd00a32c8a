/* fuzz_http.c — the HTTPS listener's request-head parser (net_http_parse) on arbitrary
 * bytes, fed whole and in two pieces: a complete head points inside the input, a refusal
 * carries 400 or 431 and a reason, and a prefix of a complete head never parses differently. */
#include "net/net.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *b = (const char *)data;
	struct net_http_req r, r2;
	int rc = net_http_parse(b, size, 8192, &r);
	if (rc == 0) {
		assert(r.method == b && r.method_len > 0 && r.path > r.method && r.path + r.path_len <= b + size);
		assert(!memchr(r.method, ' ', r.method_len) && !memchr(r.path, ' ', r.path_len));
	} else if (rc < 0) {
		assert((r.status == 400 || r.status == 431) && r.why && r.why[0]);
	}
	if (size > 1 && net_http_parse(b, size / 2, 8192, &r2) == 0)
		assert(rc == 0 && r2.method_len == r.method_len && r2.path_len == r.path_len);
	return 0;
}
