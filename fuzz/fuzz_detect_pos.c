/* fuzz_detect_pos.c — the saved matching position (data_dir/detect.pos) on arbitrary bytes:
 * accepted only in its one canonical form, so an accepted text is exactly what
 * detect_pos_format writes for its value, and every value formats into text that parses
 * back to it. */
#include "services/detect/detect.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t v = 0;
	char out[DETECT_POS_MAX];
	if (detect_pos_parse((const char *)data, size, &v) == 0) {
		assert(v != 0);
		size_t n = detect_pos_format(v, out);
		assert(n == size && memcmp(out, data, n) == 0);
	}
	if (size >= 8) { /* any value, from the input's first bytes */
		memcpy(&v, data, 8);
		size_t n = detect_pos_format(v, out);
		uint64_t back = 0;
		assert(n > 0 && n < DETECT_POS_MAX);
		assert(detect_pos_parse(out, n, &back) == (v ? 0 : -1));
		assert(!v || back == v);
	}
	return 0;
}
