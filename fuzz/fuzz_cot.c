/* fuzz_cot.c — the CoT stream reader on arbitrary bytes, fed in two pieces at a point the
 * input picks: every refusal has a reason; every event that parses and is a position report
 * becomes an entity update the entity decoder accepts; every event written back as CoT
 * parses again to the same uid and type. */
#include "adapters/cot.h"
#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "services/entity/entity.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static struct kz_json_doc doc;

static void on_error(void *ctx, const char *why)
{
	(void)ctx;
	assert(why && *why);
}

static void on_event(void *ctx, const struct cot_event *e)
{
	(void)ctx;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char id[160];
	const char *why;
	if (cot_to_entity(e, &b, id, sizeof id) == 0) {
		struct entity_update u;
		assert(entity_decode(&doc, (const char *)kz_buf_head(&b), b.len, &u, &why) == 0);
	}
	kz_buf_reset(&b);
	struct cot_out o = { .uid = e->uid, .type = e->type, .callsign = e->callsign, .remarks = e->remarks,
			     .time_ns = e->time_ns, .stale_ns = e->stale_ns, .has_point = e->has_point, .lat = e->lat,
			     .lon = e->lon, .hae = e->hae, .ce = e->ce, .le = e->le, .has_track = e->has_track,
			     .speed = e->speed, .course = e->course };
	if (cot_write(&o, &b) == 0) {
		struct cot_event again;
		assert(cot_parse((const char *)kz_buf_head(&b), b.len, &again, &why) == 0);
		assert(!strcmp(again.uid, e->uid) && !strcmp(again.type, e->type));
	}
	kz_buf_cleanup(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t cut = data[0] % size;
	struct cot_reader *r = cot_reader_new(8192, on_event, on_error, NULL);
	cot_reader_feed(r, (const char *)data + 1, cut);
	cot_reader_feed(r, (const char *)data + 1 + cut, size - 1 - cut);
	cot_reader_free(r);
	return 0;
}
