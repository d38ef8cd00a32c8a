/* modes_entity.c — decoded Mode S messages as entity updates on kz/entity/icao:<hex>
 * (docs/ADAPTERS.md "ADS-B"): the aircraft table, CPR resolution with it, and the JSON.
 *
 * Position of a CPR frame (airborne), in order:
 *   1. the other format's frame came within 10 s: global decoding of the pair;
 *   2. else the aircraft has a position less than 10 min old: local decoding against it;
 *   3. else the receiver's position is configured: local decoding against it;
 *   4. else nothing yet (the frame is kept for a pair).
 * A surface frame is decoded locally only (against the aircraft's last position, else the
 * receiver's), as 90-degree zones leave four solutions to a global decode. A resolved
 * position more than 500 km from the reference it came from is refused (KZ_EINVAL): a bad
 * pair or a corrupt frame. */
#include "adapters/modes.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_topic.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAIR_MS 10000u
#define LOCAL_MS 600000u

int modes_state_init(struct modes_state *st, uint32_t max_aircraft, bool has_ref, double ref_lat, double ref_lon)
{
	memset(st, 0, sizeof *st);
	st->cap = 64;
	while (st->cap < (size_t)max_aircraft * 2)
		st->cap *= 2;
	st->max = max_aircraft;
	st->has_ref = has_ref;
	st->ref_lat = ref_lat;
	st->ref_lon = ref_lon;
	st->slot = calloc(st->cap, sizeof *st->slot);
	return st->slot ? KZ_OK : KZ_ENOMEM;
}

void modes_state_free(struct modes_state *st)
{
	free(st->slot);
	st->slot = NULL;
}

static struct modes_aircraft *aircraft(struct modes_state *st, uint32_t icao)
{
	for (;;) {
		size_t i = kz_hash(&icao, sizeof icao) & (st->cap - 1);
		for (;; i = (i + 1) & (st->cap - 1)) {
			if (st->slot[i].icao == icao)
				return &st->slot[i];
			if (!st->slot[i].icao)
				break;
		}
		if (st->n < st->max) {
			memset(&st->slot[i], 0, sizeof st->slot[i]);
			st->slot[i].icao = icao;
			st->n++;
			return &st->slot[i];
		}
		memset(st->slot, 0, st->cap * sizeof *st->slot);
		st->n = 0;
		st->restarts++;
	}
}

/* Great-circle distance, km. */
static double km(double la1, double lo1, double la2, double lo2)
{
	double r = M_PI / 180, dla = (la2 - la1) * r, dlo = (lo2 - lo1) * r;
	double a = sin(dla / 2) * sin(dla / 2) + cos(la1 * r) * cos(la2 * r) * sin(dlo / 2) * sin(dlo / 2);
	return 6371 * 2 * atan2(sqrt(a), sqrt(1 - a));
}

/* 0 with the position of m's CPR frame; 1 when it cannot be resolved yet; KZ_EINVAL. */
static int resolve(struct modes_state *st, struct modes_aircraft *a, const struct modes_msg *m, uint64_t now,
		   double *lat, double *lon)
{
	bool surface = m->tc >= 5 && m->tc <= 8;
	int f = m->odd ? 1 : 0;
	a->cpr_lat[f] = m->lat_cpr;
	a->cpr_lon[f] = m->lon_cpr;
	a->cpr_ms[f] = now;
	a->cpr_surface[f] = surface;
	double rla, rlo;
	if (!surface && a->cpr_ms[!f] && !a->cpr_surface[!f] && now - a->cpr_ms[!f] <= PAIR_MS) {
		if (modes_cpr_global(a->cpr_lat[0], a->cpr_lon[0], a->cpr_lat[1], a->cpr_lon[1], f == 1, lat, lon))
			return 1; /* the pair straddles a zone boundary: wait for the next */
		if (a->pos_ms && now - a->pos_ms <= LOCAL_MS && km(*lat, *lon, a->lat, a->lon) > 500)
			return KZ_EINVAL;
		return 0;
	}
	if (a->pos_ms && now - a->pos_ms <= LOCAL_MS)
		rla = a->lat, rlo = a->lon;
	else if (st->has_ref)
		rla = st->ref_lat, rlo = st->ref_lon;
	else
		return 1;
	modes_cpr_local(m->lat_cpr, m->lon_cpr, m->odd, surface, rla, rlo, lat, lon);
	return km(*lat, *lon, rla, rlo) > 500 ? KZ_EINVAL : 0;
}

static int num(struct kz_buf *b, const char *keysep, double v, unsigned decimals)
{
	return kz_buf_append(b, keysep, strlen(keysep)) || kz_buf_append_fixed(b, v, decimals);
}


/* The update of aircraft a after m; pos: a resolved position (lat, lon). */
static int emit(struct modes_aircraft *a, const struct modes_msg *m, bool pos, double lat, double lon, uint64_t now_ms,
		const char *sensor, struct kz_buf *b, char id[16])
{
	if (m->has & MODES_HAS_CALLSIGN)
		snprintf(a->callsign, sizeof a->callsign, "%s", m->callsign);
	if (m->has & MODES_HAS_ALT)
		a->altitude_ft = m->altitude_ft, a->has_alt = true;
	bool vel = (m->has & MODES_HAS_VEL) != 0, vr = (m->has & MODES_HAS_VRATE) != 0;
	if (!pos && !(m->has & (MODES_HAS_CALLSIGN | MODES_HAS_ALT)) && !vel && !vr)
		return 1;
	static const char hx[] = "0123456789abcdef";
	memcpy(id, "icao:", 5);
	for (int i = 0; i < 6; i++)
		id[5 + i] = hx[(m->icao >> (20 - 4 * i)) & 15];
	id[11] = 0;
	int rc = kz_buf_append(b, "{\"id\":\"", 7) || kz_buf_append(b, id, 11) ||
		 kz_buf_append(b, "\",\"type\":\"a-u-A\"", 16);
	if (a->callsign[0] && kz_name_valid(a->callsign, strlen(a->callsign), 64))
		rc = rc || kz_buf_appendf(b, ",\"aliases\":[\"callsign:%s\"]", a->callsign);
	if (a->callsign[0])
		rc = rc || kz_buf_appendf(b, ",\"name\":\"%s\"", a->callsign);
	if (pos) {
		a->lat = lat, a->lon = lon, a->pos_ms = now_ms;
		rc = rc || num(b, ",\"position\":{\"lat\":", lat, 6) || num(b, ",\"lon\":", lon, 6);
		if ((m->has & MODES_HAS_ALT) && m->tc >= 20) /* GNSS height: above the ellipsoid */
			rc = rc || kz_buf_appendf(b, ",\"hae\":%.1f", m->altitude_ft / 3.28084);
		rc = rc || kz_buf_append(b, "}", 1);
	}
	if (vel || vr) {
		const char *sep = "";
		rc = rc || kz_buf_append(b, ",\"motion\":{", 11);
		if (vel) {
			rc = rc || num(b, "\"course\":", fmod(m->track_deg, 360), 2) ||
			     num(b, ",\"speed\":", m->speed_kt * 1852.0 / 3600, 3);
			sep = ",";
		}
		if (vr)
			rc = rc || num(b, *sep ? ",\"climb\":" : "\"climb\":", m->vrate_fpm * 0.3048 / 60, 3);
		rc = rc || kz_buf_append(b, "}", 1);
	}
	rc = rc || kz_buf_append(b, ",\"provenance\":{\"adapter\":\"adsb\"", 31);
	if (sensor && *sensor)
		rc = rc || kz_buf_appendf(b, ",\"sensor\":\"%.64s\"", sensor);
	rc = rc || kz_buf_append(b, "},\"attributes\":{\"icao\":\"", strlen("},\"attributes\":{\"icao\":\"")) || kz_buf_append(b, id + 5, 6) ||
	     kz_buf_append(b, "\"", 1);
	if (a->callsign[0])
		rc = rc || kz_buf_appendf(b, ",\"callsign\":\"%s\"", a->callsign);
	if (a->has_alt)
		rc = rc || (a->altitude_ft < 0 ? kz_buf_appendf(b, ",\"altitude_ft\":%d", a->altitude_ft)
					       : kz_buf_append(b, ",\"altitude_ft\":", strlen(",\"altitude_ft\":")) ||
						 kz_buf_append_u64(b, (uint64_t)a->altitude_ft));
	if (m->has & MODES_HAS_GROUND)
		rc = rc || kz_buf_appendf(b, ",\"on_ground\":%s", m->on_ground ? "true" : "false");
	if (m->tc == 19 && (m->has & MODES_HAS_HEADING))
		rc = rc || kz_buf_appendf(b, ",\"heading\":%.2f,\"airspeed_kt\":%.0f", m->heading_deg, m->airspeed_kt);
	rc = rc || kz_buf_append(b, "}}", 2);
	return rc ? KZ_ENOMEM : KZ_OK;
}

int modes_entity_update(struct modes_state *st, const struct modes_msg *m, uint64_t now_ms, const char *sensor,
			struct kz_buf *b, char id[16])
{
	if (!m->icao)
		return KZ_EINVAL;
	struct modes_aircraft *a = aircraft(st, m->icao);
	double lat = 0, lon = 0;
	bool pos = false;
	if ((m->has & MODES_HAS_POS) && m->tc) { /* a CPR frame */
		int r = resolve(st, a, m, now_ms, &lat, &lon);
		if (r == KZ_EINVAL)
			return KZ_EINVAL;
		pos = r == 0;
	}
	return emit(a, m, pos, lat, lon, now_ms, sensor, b, id);
}

int modes_sbs_update(struct modes_state *st, const struct modes_msg *m, double lat, double lon, uint64_t now_ms,
		     const char *sensor, struct kz_buf *b, char id[16])
{
	if (!m->icao)
		return KZ_EINVAL;
	return emit(aircraft(st, m->icao), m, (m->has & MODES_HAS_POS) != 0, lat, lon, now_ms, sensor, b, id);
}
