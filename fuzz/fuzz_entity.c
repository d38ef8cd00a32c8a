/* fuzz_entity.c — the entity update decoder (entity_decode) and the table's rules: each input
 * is split at newlines into updates applied in turn to one table (up to 16), with ticks in
 * between; a refused update says why, and the table's invariants hold after every step. */
#include "services/entity/entity.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"

#include <assert.h>
#include <string.h>

static void on_event(void *ctx, enum entity_event ev, const struct entity *e)
{
	(void)ctx;
	assert(ev == ENTITY_EV_STALE || ev == ENTITY_EV_REMOVE);
	assert(e && e->id && e->id[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kz_json_doc doc;
	kz_hash_seed();
	struct entity_table_config cfg = { .max_entities = 8, .default_stale_ms = 1000, .default_expiry_ms = 2000,
					   .removed_keep_ms = 500, .max_interned = 16 };
	struct entity_table *t = NULL;
	if (entity_table_new(&cfg, &t))
		return 0;
	const char *p = (const char *)data, *end = p + size;
	uint64_t now = 1796000000000000000ull;
	for (int k = 0; k < 16 && p < end; k++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct entity_update u;
		const char *why = NULL;
		if (entity_decode(&doc, p, n, &u, &why)) {
			assert(why && why[0]);
		} else {
			assert(u.id && entity_id_valid(u.id, strlen(u.id)) && u.n_aliases <= ENTITY_MAX_ALIASES);
			struct entity_source src = { .seq = (uint64_t)k + 1, .received_ns = now, .origin = "spiffe://f/o",
						     .node = "n", .label = k & 1 ? "class=secret" : "" };
			enum entity_event ev;
			struct entity *e = NULL;
			int rc = entity_table_apply(t, &u, &src, &ev, &e);
			assert(rc == 0 || ev == ENTITY_EV_NONE);
			assert(ev == ENTITY_EV_NONE || e);
		}
		assert(entity_table_check(t));
		now += 700000000ull; /* 0.7 s: stale, expiry and tombstones come within a few steps */
		entity_table_tick(t, now, on_event, NULL);
		assert(entity_table_check(t));
		p += n + (nl ? 1 : 0);
	}
	entity_table_free(t);
	return 0;
}
