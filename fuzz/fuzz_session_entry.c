/* fuzz_session_entry.c — a cluster's session entry (KZ_SESSIONS, kz_session_entry_decode):
 * whatever decodes must encode back to the same bytes. */
#include "store/store.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kz_session_entry e;
	void *blk;
	const char *why = NULL;
	if (kz_session_entry_decode(data, size, &e, &blk, &why)) {
		assert(why && why[0]);
		return 0;
	}
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int rc = kz_session_entry_encode(&e, &b);
	assert(rc == 0 && b.len == size && memcmp(kz_buf_head(&b), data, size) == 0);
	kz_buf_cleanup(&b);
	free(blk);
	return 0;
}
