/* fuzz_modes.c — the ADS-B adapter's inputs on arbitrary bytes: the first byte picks the
 * format (AVR lines, Beast bytes, SBS lines, raw I/Q); every frame that decodes becomes an
 * entity update the entity decoder accepts, and CPR never yields a position outside the
 * globe. */
#include "adapters/modes.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_json.h"
#include "services/entity/entity.h"

#include <assert.h>
#include <string.h>

static struct modes_state st;
static struct kz_json_doc doc;
static uint64_t clock_ms;

static void check_update(const struct modes_msg *m, const double *lat, const double *lon)
{
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char id[16];
	const char *why;
	int rc = lat ? modes_sbs_update(&st, m, *lat, *lon, clock_ms += 50, "f", &b, id)
		     : modes_entity_update(&st, m, clock_ms += 50, "f", &b, id);
	if (rc == KZ_OK) {
		struct entity_update u;
		assert(entity_decode(&doc, (const char *)kz_buf_head(&b), b.len, &u, &why) == 0);
		if (u.has & ENTITY_F_POSITION)
			assert(u.pos.lat >= -90 && u.pos.lat <= 90 && u.pos.lon >= -180 && u.pos.lon <= 180);
	}
	kz_buf_reset(&b);
	(void)modes_to_json(m, lat, lon, &b);
	kz_buf_cleanup(&b);
}

static void on_frame(void *ctx, const struct modes_frame *f)
{
	(void)ctx;
	struct modes_msg m;
	const char *why = NULL;
	if (modes_decode(f, &m, &why))
		assert(why && *why);
	else
		check_update(&m, NULL, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!st.slot)
		modes_state_init(&st, 32, true, 52.0, 4.0);
	if (size < 1)
		return 0;
	unsigned fmt = data[0] % 4;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if (fmt == 1) {
		struct modes_beast bs = { 0 };
		modes_beast_feed(&bs, p, n, on_frame, NULL);
		return 0;
	}
	if (fmt == 3) {
		modes_iq_demod(p, n, on_frame, NULL);
		return 0;
	}
	const char *s = (const char *)p, *end = s + n;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
		const char *why = NULL;
		if (fmt == 0) {
			struct modes_frame f;
			int rc = modes_avr_line(s, len, &f, &why);
			assert(rc != -1 || (why && *why));
			if (rc == 1)
				on_frame(NULL, &f);
		} else {
			struct modes_msg m;
			double lat, lon;
			int rc = modes_sbs_line(s, len, &m, &lat, &lon, &why);
			assert(rc != -1 || (why && *why));
			if (rc == 1)
				check_update(&m, (m.has & MODES_HAS_POS) ? &lat : NULL, &lon);
		}
		s += len + (nl != NULL);
	}
	return 0;
}
