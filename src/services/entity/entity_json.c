/* entity_json.c — an entity as the JSON the API serves (docs/ENTITIES.md "The update", plus
 * what the node sets: received_time, status, label, provenance.origin and .node). */
#include "services/entity/entity.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_json.h"
#include "base/kz_time.h"

#include <stdio.h>
#include <string.h>

static int str(struct kz_buf *b, const char *s) { return kz_json_put_str(b, s); }

static int member(struct kz_buf *b, const char *key, const char *s)
{
	if (!s)
		return KZ_OK;
	char k[40];
	int n = snprintf(k, sizeof k, ",\"%s\":", key);
	return kz_buf_append(b, k, (size_t)n) || str(b, s) ? KZ_ENOMEM : KZ_OK;
}

/* "key":value (after sep) with 9 significant digits. */
static int num(struct kz_buf *b, const char *sep, const char *key, double v)
{
	char t[96];
	int n = snprintf(t, sizeof t, "%s\"%s\":%.9g", sep, key, v);
	return kz_buf_append(b, t, (size_t)n) ? KZ_ENOMEM : KZ_OK;
}

static int time_member(struct kz_buf *b, const char *key, uint64_t ns)
{
	char t[32];
	kz_time_format(ns, t);
	return member(b, key, t);
}

static int position(struct kz_buf *b, const struct entity_position *p)
{
	int rc = num(b, ",\"position\":{", "lat", p->lat);
	rc = rc ? rc : num(b, ",", "lon", p->lon);
	if (!rc && (p->has & ENTITY_HAS_HAE))
		rc = num(b, ",", "hae", p->hae);
	if (!rc && (p->has & ENTITY_HAS_CE))
		rc = num(b, ",", "ce", p->ce);
	if (!rc && (p->has & ENTITY_HAS_LE))
		rc = num(b, ",", "le", p->le);
	return rc || kz_buf_append(b, "}", 1) ? KZ_ENOMEM : KZ_OK;
}

static int motion(struct kz_buf *b, const struct entity_motion *m)
{
	const char *sep = ",\"motion\":{";
	int rc = KZ_OK;
	if (m->has & ENTITY_HAS_COURSE) {
		rc = num(b, sep, "course", m->course);
		sep = ",";
	}
	if (!rc && (m->has & ENTITY_HAS_SPEED)) {
		rc = num(b, sep, "speed", m->speed);
		sep = ",";
	}
	if (!rc && (m->has & ENTITY_HAS_CLIMB))
		rc = num(b, sep, "climb", m->climb);
	return rc || kz_buf_append(b, "}", 1) ? KZ_ENOMEM : KZ_OK;
}

static const char *status_name(uint8_t s)
{
	return s == ENTITY_LIVE ? "live" : s == ENTITY_STALE ? "stale" : "removed";
}

static const char *const GROUP_NAMES[ENTITY_G_N] = { "type", "name", "position", "motion", "attributes",
						      "provenance" };

int entity_to_json_hiding(const struct entity *e, uint32_t hide, struct kz_buf *b)
{
#define SHOWN(g) (!(hide & (1u << (g))))
	int rc = kz_buf_append(b, "{\"id\":", 6) || str(b, e->id) ? KZ_ENOMEM : KZ_OK;
	unsigned na = 0;
	for (unsigned i = 0; !rc && i < e->n_aliases; i++) {
		if (hide & ENTITY_HIDE_ALIAS(i))
			continue;
		const char *open = na++ ? "," : ",\"aliases\":[";
		rc = kz_buf_append(b, open, strlen(open)) || str(b, e->aliases[i]) ? KZ_ENOMEM : KZ_OK;
	}
	rc = rc || (na && kz_buf_append(b, "]", 1)) ? KZ_ENOMEM : KZ_OK;
	if (SHOWN(ENTITY_G_TYPE)) {
		rc = rc ? rc : member(b, "type", e->type);
		rc = rc ? rc : member(b, "symbol", e->symbol);
	}
	if (SHOWN(ENTITY_G_NAME))
		rc = rc ? rc : member(b, "name", e->name);
	if (!rc && (e->pos.has & ENTITY_POS_KNOWN) && SHOWN(ENTITY_G_POSITION))
		rc = position(b, &e->pos);
	if (!rc && e->motion.has && SHOWN(ENTITY_G_MOTION))
		rc = motion(b, &e->motion);
	rc = rc ? rc : time_member(b, "source_time", e->source_ns);
	rc = rc ? rc : time_member(b, "received_time", e->received_ns);
	rc = rc ? rc : time_member(b, "stale_time", e->stale_ns);
	rc = rc ? rc : time_member(b, "expiry_time", e->expiry_ns);
	rc = rc ? rc : member(b, "status", status_name(e->status));
	if (!rc && SHOWN(ENTITY_G_PROVENANCE)) {
		rc = kz_buf_append(b, ",\"provenance\":{\"origin\":", 24) || str(b, e->origin ? e->origin : "") ? KZ_ENOMEM
														  : KZ_OK;
		rc = rc ? rc : member(b, "node", e->node);
		rc = rc ? rc : member(b, "adapter", e->adapter);
		rc = rc ? rc : member(b, "sensor", e->sensor);
		rc = rc || kz_buf_append(b, "}", 1) ? KZ_ENOMEM : KZ_OK;
	}
	rc = rc ? rc : member(b, "label", e->label ? e->label : "");
	if (!rc && e->fl) { /* the labels of the groups shown that have their own */
		bool any = false;
		for (int g = 0; !rc && g < ENTITY_G_N; g++) {
			if (!e->fl->group[g] || !SHOWN(g))
				continue;
			char k[48];
			int n = snprintf(k, sizeof k, "%s\"%s\":", any ? "," : ",\"field_labels\":{", GROUP_NAMES[g]);
			rc = kz_buf_append(b, k, (size_t)n) || str(b, e->fl->group[g]) ? KZ_ENOMEM : KZ_OK;
			any = true;
		}
		rc = rc || (any && kz_buf_append(b, "}", 1)) ? KZ_ENOMEM : KZ_OK;
	}
	if (!rc && e->attributes && SHOWN(ENTITY_G_ATTRIBUTES))
		rc = kz_buf_append(b, ",\"attributes\":", 14) || kz_buf_append(b, e->attributes, strlen(e->attributes))
			     ? KZ_ENOMEM
			     : KZ_OK;
	if (!rc) {
		char v[64];
		int n = snprintf(v, sizeof v, ",\"version\":%llu,\"seq\":%llu}", (unsigned long long)e->version,
				 (unsigned long long)e->seq);
		rc = kz_buf_append(b, v, (size_t)n) ? KZ_ENOMEM : KZ_OK;
	}
	return rc;
#undef SHOWN
}

int entity_to_json(const struct entity *e, struct kz_buf *b)
{
	return entity_to_json_hiding(e, 0, b);
}
