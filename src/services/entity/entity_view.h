/* entity_view.h — what one reader may see of the picture, and which entities a request asks
 * for (shared by the list, the single entity, the history and the stream). */
#ifndef KZ_ENTITY_VIEW_H
#define KZ_ENTITY_VIEW_H

#include "services/entity/entity.h"
#include "trust/policy.h"

/* The reader's view: its subject, and the labels already decided (labels are interned, so
 * one pointer is one label). Valid while pol is (policies live until the node stops). */
struct entity_reader {
	const struct kz_policy *pol; /* NULL: policy.open, every entity visible */
	struct kz_subject s;
	const char *seen[16];
	bool allowed[16];
	unsigned n_seen;
	uint64_t withheld;           /* entities it was not shown */
};

void entity_reader_init(struct entity_reader *rd, const struct kz_policy *pol, const char *identity);
/* The decision point for one entity: the reader may subscribe to kz/entity/<id> and
 * dominates the entity's label. Counts what it withholds. */
bool entity_reader_sees(struct entity_reader *rd, const struct entity *e);
/* What of a visible entity the reader may not see (docs/ENTITIES.md "Field labels"): the
 * groups and aliases whose labels it does not dominate, as entity_to_json_hiding's mask. */
uint32_t entity_reader_hides(struct entity_reader *rd, const struct entity *e);
/* May the reader find e by name (its id, or an alias learnt under a label it dominates)? */
bool entity_reader_sees_name(struct entity_reader *rd, const struct entity *e, const char *name);

/* A request's filters (docs/ENTITIES.md "Reading the picture"). */
struct entity_filter {
	uint32_t limit;
	bool has_limit, has_next;
	unsigned status_mask;  /* 1 << enum entity_status */
	const char *type;      /* prefix */
	char type_buf[65];
	const char *origin;
	char origin_buf[256];
	bool has_bbox;
	double bbox[4];        /* min lon, min lat, max lon, max lat */
	uint64_t since_ns;     /* received after */
	uint64_t after_seq;    /* the cursor: the last record sequence of the previous page */
	char why[160];
};

/* Defaults: live and stale, at most max_page. */
void entity_filter_init(struct entity_filter *f, uint32_t max_page);
/* One query parameter (kz_http_query_each's callback, ctx the filter): 0, or -1 with f->why. */
int entity_filter_param(void *ctx, const char *k, const char *v);
bool entity_filter_matches(const struct entity_filter *f, const struct entity *e);

#endif
