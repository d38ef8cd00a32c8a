/* fuzz_store_record.c — the record envelope decoder: arbitrary bytes must be rejected or
 * decode to a record that encodes back to exactly the same bytes. */
#include "store/store.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kz_record r;
	const char *why;
	if (kz_record_decode(data, size, &r, &why))
		return 0;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert(kz_record_encode(&r, &b) == 0);
	assert(b.len == size && memcmp(kz_buf_head(&b), data, size) == 0);
	kz_buf_cleanup(&b);
	return 0;
}
