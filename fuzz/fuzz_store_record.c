/* fuzz_store_record.c — the record envelope decoder: arbitrary bytes must be rejected or
 * decode to a record whose attributes walk to their end in bounds and that encodes back to
 * exactly the same bytes. */
#include "store/store.h"
#include "base/kz_err.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kz_record r;
	const char *why;
	if (kz_record_decode(data, size, &r, &why))
		return 0;
	/* the attribute list of either version walks to its end inside the record */
	size_t off = 0, prev = 0;
	struct kz_rec_attr a;
	while (kz_rec_attr_next(&r, &off, &a)) {
		assert(off > prev && off <= r.attrs.len);
		assert(a.name.len <= size && a.value.len <= size);
		assert(!a.name.len || (a.name.p >= data && a.name.p + a.name.len <= data + size));
		assert(!a.value.len || (a.value.p >= data && a.value.p + a.value.len <= data + size));
		prev = off;
	}
	assert(off == r.attrs.len);
	struct kz_bytes ct = kz_record_content_type(&r);
	assert(!ct.len || (ct.p >= data && ct.p + ct.len <= data + size));
	struct kz_buf b;
	kz_buf_init(&b, 0);
	if (!r.service && kz_topic_reserved(r.topic.p, r.topic.len)) {
		/* read (logs from before the service flag hold such records), never written */
		assert(kz_record_encode(&r, &b) == KZ_EDENIED && b.len == 0);
		kz_buf_cleanup(&b);
		return 0;
	}
	assert(kz_record_encode(&r, &b) == 0);
	assert(b.len == size && memcmp(kz_buf_head(&b), data, size) == 0);
	kz_buf_cleanup(&b);
	return 0;
}
