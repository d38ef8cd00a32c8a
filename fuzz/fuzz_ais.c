/* fuzz_ais.c — the AIS adapter on arbitrary input, line by line: the NMEA reassembler and
 * the decoder refuse with a reason or decode, and whatever they decode becomes an entity
 * update that the entity decoder accepts (the adapter never writes a record the picture
 * would refuse). */
#include "adapters/ais.h"
#include "adapters/ais_entity.h"
#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "services/entity/entity.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ais_vessels v;
	static struct kz_json_doc d;
	if (!v.slot)
		ais_vessels_init(&v, 64);
	struct ais_nmea r;
	ais_nmea_init(&r, 100);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	const char *p = (const char *)data, *end = p + size;
	uint64_t now = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct ais_payload pl;
		struct ais_msg m;
		const char *why = NULL;
		int rc = ais_nmea_line(&r, p, n, now += 10, &pl, &why);
		assert(rc != -1 || (why && *why));
		if (rc == 1) {
			if (ais_decode(&pl, &m, &why))
				assert(why && *why);
			else {
				char id[32];
				struct entity_update u;
				kz_buf_reset(&b);
				if (ais_entity_update(&v, &m, "fuzz", &b, id) == 0)
					assert(entity_decode(&d, (const char *)kz_buf_head(&b), b.len, &u, &why) == 0);
				kz_buf_reset(&b);
				assert(ais_to_json(&m, &b) == 0);
			}
		}
		p += n + (nl != NULL);
	}
	kz_buf_cleanup(&b);
	return 0;
}
