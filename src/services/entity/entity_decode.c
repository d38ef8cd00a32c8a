/* entity_decode.c — an entity update's JSON (docs/ENTITIES.md "The update") into a
 * struct entity_update: strict types and ranges, every size capped, unknown members
 * refused (a typo must not pass as an update that changes nothing). */
#include "services/entity/entity.h"
#include "base/kz_topic.h"
#include "base/kz_json.h"
#include "base/kz_time.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

bool entity_id_valid(const char *s, size_t len)
{
	return kz_name_valid(s, len, ENTITY_ID_MAX);
}

/* A string member of at most max bytes with no control characters. */
static int text(const struct kz_json *v, size_t max, const char **out, const char **why, const char *what)
{
	static _Thread_local char msg[96]; /* *why stays valid until this thread's next decode */
	if (!kz_json_is(v, KZ_JSON_STRING) || v->len == 0 || v->len > max) {
		snprintf(msg, sizeof msg, "%s: a string of 1 to %zu bytes", what, max);
		*why = msg;
		return -1;
	}
	for (uint32_t i = 0; i < v->len; i++)
		if ((unsigned char)v->s[i] < 0x20 || v->s[i] == 0x7f) {
			snprintf(msg, sizeof msg, "%s: control characters are not allowed", what);
			*why = msg;
			return -1;
		}
	*out = v->s;
	return 0;
}

static int number(const struct kz_json *v, double lo, double hi, double *out)
{
	double d;
	if (!kz_json_is(v, KZ_JSON_NUMBER) || !kz_json_num(v, &d) || !isfinite(d) || d < lo || d > hi)
		return -1;
	*out = d;
	return 0;
}

static int timestamp(const struct kz_json *v, uint64_t *ns)
{
	const char *s = kz_json_str(v);
	return s && kz_time_parse(s, ns) == 0 ? 0 : -1;
}

static int position(const struct kz_json *o, struct entity_position *p, const char **why)
{
	if (!kz_json_is(o, KZ_JSON_OBJECT)) {
		*why = "position: an object {lat, lon, hae, ce, le}";
		return -1;
	}
	memset(p, 0, sizeof *p);
	bool lat = false, lon = false;
	KZ_JSON_FOR(m, o) {
		int rc;
		if (!strcmp(m->key, "lat")) {
			rc = number(m, -90, 90, &p->lat);
			lat = true;
		} else if (!strcmp(m->key, "lon")) {
			rc = number(m, -180, 180, &p->lon);
			lon = true;
		} else if (!strcmp(m->key, "hae")) {
			rc = number(m, -1e7, 1e9, &p->hae);
			p->has |= ENTITY_HAS_HAE;
		} else if (!strcmp(m->key, "ce")) {
			rc = number(m, 0, 1e9, &p->ce);
			p->has |= ENTITY_HAS_CE;
		} else if (!strcmp(m->key, "le")) {
			rc = number(m, 0, 1e9, &p->le);
			p->has |= ENTITY_HAS_LE;
		} else {
			*why = "position: unknown member (lat, lon, hae, ce, le)";
			return -1;
		}
		if (rc) {
			*why = "position: lat in [-90, 90], lon in [-180, 180], hae a number of metres, ce and le >= 0";
			return -1;
		}
	}
	if (!lat || !lon) {
		*why = "position: lat and lon are required together";
		return -1;
	}
	return 0;
}

static int motion(const struct kz_json *o, struct entity_motion *mo, const char **why)
{
	if (!kz_json_is(o, KZ_JSON_OBJECT)) {
		*why = "motion: an object {course, speed, climb}";
		return -1;
	}
	memset(mo, 0, sizeof *mo);
	KZ_JSON_FOR(m, o) {
		int rc;
		if (!strcmp(m->key, "course")) {
			rc = number(m, 0, 360, &mo->course);
			if (!rc && mo->course == 360)
				mo->course = 0;
			mo->has |= ENTITY_HAS_COURSE;
		} else if (!strcmp(m->key, "speed")) {
			rc = number(m, 0, 1e6, &mo->speed);
			mo->has |= ENTITY_HAS_SPEED;
		} else if (!strcmp(m->key, "climb")) {
			rc = number(m, -1e6, 1e6, &mo->climb);
			mo->has |= ENTITY_HAS_CLIMB;
		} else {
			*why = "motion: unknown member (course, speed, climb)";
			return -1;
		}
		if (rc) {
			*why = "motion: course in [0, 360] degrees, speed >= 0 m/s, climb a number of m/s";
			return -1;
		}
	}
	if (!mo->has) {
		*why = "motion: at least one of course, speed, climb";
		return -1;
	}
	return 0;
}

static int aliases(const struct kz_json *a, struct entity_update *u, const char **why)
{
	if (!kz_json_is(a, KZ_JSON_ARRAY) || a->len > ENTITY_MAX_ALIASES) {
		*why = "aliases: an array of at most 8 strings";
		return -1;
	}
	KZ_JSON_FOR(m, a) {
		if (!kz_json_is(m, KZ_JSON_STRING) || !entity_id_valid(m->s, m->len) || !strchr(m->s, ':')) {
			*why = "aliases: each a scheme:value string (mmsi:431000000, icao:4840d6, callsign:…) of at most 128 "
			       "bytes of [A-Za-z0-9._:@~-]";
			return -1;
		}
		for (unsigned i = 0; i < u->n_aliases; i++)
			if (!strcmp(u->aliases[i], m->s)) {
				*why = "aliases: the same alias twice";
				return -1;
			}
		u->aliases[u->n_aliases++] = m->s;
	}
	return 0;
}

static int provenance(const struct kz_json *o, struct entity_update *u, const char **why)
{
	if (!kz_json_is(o, KZ_JSON_OBJECT)) {
		*why = "provenance: an object {adapter, sensor}";
		return -1;
	}
	KZ_JSON_FOR(m, o) {
		if (!strcmp(m->key, "adapter")) {
			if (text(m, ENTITY_TEXT_MAX, &u->adapter, why, "provenance.adapter"))
				return -1;
			u->has |= ENTITY_F_ADAPTER;
		} else if (!strcmp(m->key, "sensor")) {
			if (text(m, ENTITY_TEXT_MAX, &u->sensor, why, "provenance.sensor"))
				return -1;
			u->has |= ENTITY_F_SENSOR;
		} else if (!strcmp(m->key, "origin") || !strcmp(m->key, "node")) {
			*why = "provenance: origin and node are set by the node from the record, not by the publisher";
			return -1;
		} else {
			*why = "provenance: unknown member (adapter, sensor)";
			return -1;
		}
	}
	return 0;
}

/* One top-level member. */
static int member(const struct kz_json *m, struct entity_update *u, const char **why)
{
	const char *k = m->key;
	if (!strcmp(k, "id")) {
		if (!kz_json_is(m, KZ_JSON_STRING) || !entity_id_valid(m->s, m->len)) {
			*why = "id: 1 to 128 bytes of [A-Za-z0-9._:@~-]";
			return -1;
		}
		u->id = m->s;
	} else if (!strcmp(k, "aliases")) {
		return aliases(m, u, why);
	} else if (!strcmp(k, "type") || !strcmp(k, "symbol") || !strcmp(k, "name")) {
		const char **dst = k[0] == 't' ? &u->type : k[0] == 's' ? &u->symbol : &u->name;
		if (text(m, k[0] == 'n' ? ENTITY_TEXT_MAX : 64, dst, why, k))
			return -1;
		u->has |= k[0] == 't' ? ENTITY_F_TYPE : k[0] == 's' ? ENTITY_F_SYMBOL : ENTITY_F_NAME;
	} else if (!strcmp(k, "position")) {
		u->has |= ENTITY_F_POSITION;
		return position(m, &u->pos, why);
	} else if (!strcmp(k, "motion")) {
		u->has |= ENTITY_F_MOTION;
		return motion(m, &u->motion, why);
	} else if (!strcmp(k, "source_time") || !strcmp(k, "stale_time") || !strcmp(k, "expiry_time")) {
		uint64_t *dst = k[1] == 'o' ? &u->source_ns : k[1] == 't' ? &u->stale_ns : &u->expiry_ns;
		if (timestamp(m, dst)) {
			*why = "source_time, stale_time and expiry_time: RFC 3339 date-times (2026-12-04T10:00:00Z)";
			return -1;
		}
		u->has |= k[1] == 'o' ? ENTITY_F_SOURCE_TIME : k[1] == 't' ? ENTITY_F_STALE_TIME : ENTITY_F_EXPIRY_TIME;
	} else if (!strcmp(k, "provenance")) {
		return provenance(m, u, why);
	} else if (!strcmp(k, "status")) {
		const char *s = kz_json_str(m);
		if (!s || (strcmp(s, "removed") && strcmp(s, "live"))) {
			*why = "status: \"live\" or \"removed\" (stale is decided by the node from stale_time)";
			return -1;
		}
		if (s[0] == 'r')
			u->has |= ENTITY_F_REMOVED;
	} else if (!strcmp(k, "attributes")) {
		if (!kz_json_is(m, KZ_JSON_OBJECT) || m->end - m->off > ENTITY_ATTR_MAX) {
			*why = "attributes: a JSON object of at most 4096 bytes";
			return -1;
		}
		u->has |= ENTITY_F_ATTRIBUTES;
	} else if (!strcmp(k, "received_time") || !strcmp(k, "label")) {
		*why = "received_time and label come from the record (its accept time, its label), not from the payload";
		return -1;
	} else {
		*why = "unknown member (id, aliases, type, symbol, name, position, motion, source_time, stale_time, "
		       "expiry_time, provenance, status, attributes)";
		return -1;
	}
	return 0;
}

int entity_decode(struct kz_json_doc *d, const char *p, size_t n, struct entity_update *u, const char **why)
{
	memset(u, 0, sizeof *u);
	if (kz_json_parse(d, p, n)) {
		*why = "not JSON";
		return -1;
	}
	const struct kz_json *root = kz_json_root(d);
	if (!kz_json_is(root, KZ_JSON_OBJECT)) {
		*why = "an entity update is a JSON object";
		return -1;
	}
	KZ_JSON_FOR(m, root) {
		if (member(m, u, why))
			return -1;
		if (!strcmp(m->key, "attributes")) {
			u->attributes = p + m->off;
			u->attributes_len = m->end - m->off;
		}
	}
	if (!u->id) {
		*why = "id is required";
		return -1;
	}
	if ((u->has & ENTITY_F_STALE_TIME) && (u->has & ENTITY_F_EXPIRY_TIME) && u->expiry_ns < u->stale_ns) {
		*why = "expiry_time is before stale_time";
		return -1;
	}
	return 0;
}

const char *entity_payload_check(struct kz_json_doc *d, const uint8_t *topic, size_t topic_len, const uint8_t *p,
				 size_t n)
{
	static const char prefix[] = "kz/entity/";
	size_t plen = sizeof prefix - 1;
	if (topic_len < plen || memcmp(topic, prefix, plen))
		return NULL;
	const char *id = (const char *)topic + plen;
	size_t id_len = topic_len - plen;
	if (!entity_id_valid(id, id_len))
		return "kz/entity/<id>: one topic level after kz/entity/, the entity's id (1 to 128 bytes of "
		       "[A-Za-z0-9._:@~-])";
	struct entity_update u;
	const char *why = NULL;
	if (entity_decode(d, (const char *)p, n, &u, &why))
		return why;
	if (strlen(u.id) != id_len || memcmp(u.id, id, id_len))
		return "the update's id is not the topic's last level (kz/entity/<id>)";
	return NULL;
}
