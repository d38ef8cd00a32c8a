/* fuzz_takp.c — the TAK Protocol stream reader on arbitrary bytes, fed in two pieces at a
 * point the input picks: every refusal has a reason; a lost stream stays lost; every event
 * that comes out, written again as a framed TakMessage (its detail as xmlDetail), reads back
 * as the same uid and type. */
#include "adapters/cot.h"
#include "adapters/takp.h"
#include "base/kz_buf.h"

#include <assert.h>
#include <string.h>

struct again {
	int n;
	char uid[COT_UID_MAX + 1], type[COT_TYPE_MAX + 1];
};

static void on_error(void *ctx, const char *why)
{
	(void)ctx;
	assert(why && *why);
}

static void on_again(void *ctx, const struct cot_event *e)
{
	struct again *a = ctx;
	a->n++;
	memcpy(a->uid, e->uid, sizeof a->uid);
	memcpy(a->type, e->type, sizeof a->type);
}

static void on_event(void *ctx, const struct cot_event *e)
{
	(void)ctx;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	if (takp_write_event(e, &b) == 0) {
		struct again a = { 0 };
		struct takp_reader *r = takp_reader_new(1 << 20, on_again, on_error, &a);
		const char *why;
		assert(takp_reader_feed(r, kz_buf_head(&b), b.len, &why) == 0);
		assert(a.n == 1 && !strcmp(a.uid, e->uid) && !strcmp(a.type, e->type));
		takp_reader_free(r);
	}
	kz_buf_cleanup(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t cut = data[0] % size;
	struct takp_reader *r = takp_reader_new(8192, on_event, on_error, NULL);
	const char *why = NULL;
	int rc = takp_reader_feed(r, data + 1, cut, &why);
	if (rc == 0)
		rc = takp_reader_feed(r, data + 1 + cut, size - 1 - cut, &why);
	if (rc) {
		assert(why && *why);
		assert(takp_reader_feed(r, (const uint8_t *)"\xbf\x00", 2, &why) == -1);
	}
	takp_reader_free(r);
	return 0;
}
