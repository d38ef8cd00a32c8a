/* ais_entity.c — an AIS message as an entity update on kz/entity/mmsi:<n> (docs/ADAPTERS.md
 * "AIS"). Static data (types 5, 19, 24, 21) and dynamic data (types 1-3, 18, 27) come in
 * different messages, and an update's attributes replace the entity's whole: the adapter
 * keeps what it learnt of each vessel (struct ais_vessel, at most max_vessels of them) and
 * sends it all with every update. */
#include "adapters/ais_entity.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "base/kz_topic.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ais_vessels_init(struct ais_vessels *v, uint32_t max_vessels)
{
	memset(v, 0, sizeof *v);
	v->cap = 64;
	while (v->cap < (size_t)max_vessels * 2)
		v->cap *= 2;
	v->max = max_vessels;
	v->slot = calloc(v->cap, sizeof *v->slot);
	return v->slot ? KZ_OK : KZ_ENOMEM;
}

void ais_vessels_free(struct ais_vessels *v)
{
	free(v->slot);
	v->slot = NULL;
}

/* The vessel of mmsi (open addressing), made when new; when the table is full it starts
 * over (static data comes again within six minutes, ITU-R M.1371 Table 1). */
static struct ais_vessel *vessel(struct ais_vessels *v, uint32_t mmsi)
{
	if (!mmsi)
		return NULL;
	for (;;) {
		size_t i = kz_hash(&mmsi, sizeof mmsi) & (v->cap - 1);
		for (;; i = (i + 1) & (v->cap - 1)) {
			if (v->slot[i].mmsi == mmsi)
				return &v->slot[i];
			if (!v->slot[i].mmsi)
				break;
		}
		if (v->n < v->max) {
			memset(&v->slot[i], 0, sizeof v->slot[i]);
			v->slot[i].mmsi = mmsi;
			v->n++;
			return &v->slot[i];
		}
		memset(v->slot, 0, v->cap * sizeof *v->slot);
		v->n = 0;
		v->restarts++;
	}
}

static const char *const STATUS[16] = {
	"Under way using engine", "At anchor", "Not under command", "Restricted manoeuverability",
	"Constrained by her draught", "Moored", "Aground", "Engaged in fishing", "Under way sailing",
	"Reserved for HSC", "Reserved for WIG", "Power-driven vessel towing astern",
	"Power-driven vessel pushing ahead or towing alongside", "Reserved", "AIS-SART is active", "Not defined",
};

static void learn(struct ais_vessel *s, const struct ais_msg *m)
{
	if ((m->has & AIS_HAS_NAME) && m->shipname[0])
		snprintf(s->name, sizeof s->name, "%s", m->shipname);
	if ((m->has & AIS_HAS_CALLSIGN) && m->callsign[0])
		snprintf(s->callsign, sizeof s->callsign, "%s", m->callsign);
	if (m->has & AIS_HAS_SHIPTYPE)
		s->shiptype = (uint8_t)m->shiptype, s->has |= AIS_V_SHIPTYPE;
	if (m->has & AIS_HAS_DIMS) {
		s->to_bow = (uint16_t)m->to_bow, s->to_stern = (uint16_t)m->to_stern;
		s->to_port = (uint8_t)m->to_port, s->to_starboard = (uint8_t)m->to_starboard;
		s->has |= AIS_V_DIMS;
	}
	if (m->type == 5) {
		s->imo = m->imo;
		s->draught10 = (uint16_t)(m->draught * 10 + 0.5);
		snprintf(s->destination, sizeof s->destination, "%s", m->destination);
		snprintf(s->eta, sizeof s->eta, "%02u-%02uT%02u:%02uZ", m->eta_month, m->eta_day, m->eta_hour, m->eta_minute);
		s->has |= AIS_V_VOYAGE;
	}
	if (m->has & AIS_HAS_STATUS)
		s->status = (uint8_t)m->status, s->has |= AIS_V_STATUS;
	if ((m->has & AIS_HAS_HEADING) && m->heading < 360)
		s->heading = (uint16_t)m->heading, s->has |= AIS_V_HEADING;
	if (m->type == 21)
		s->has |= AIS_V_AID;
	if (m->type == 4)
		s->has |= AIS_V_BASE;
}


/* ,"key":v with decimals (fixed), without printf (the adapter's hot path). */
static int num(struct kz_buf *b, const char *keysep, double v, unsigned decimals)
{
	return kz_buf_append(b, keysep, strlen(keysep)) || kz_buf_append_fixed(b, v, decimals);
}

static int unum(struct kz_buf *b, const char *keysep, uint64_t v)
{
	return kz_buf_append(b, keysep, strlen(keysep)) || kz_buf_append_u64(b, v);
}

static int put_str(struct kz_buf *b, const char *key, const char *s)
{
	return kz_buf_appendf(b, ",\"%s\":", key) || kz_json_put_str(b, s);
}

static int attributes(struct kz_buf *b, const struct ais_vessel *s)
{
	int rc = unum(b, ",\"attributes\":{\"mmsi\":", s->mmsi);
	if (s->callsign[0])
		rc = rc || put_str(b, "callsign", s->callsign);
	if (s->has & AIS_V_STATUS)
		rc = rc || unum(b, ",\"nav_status\":", s->status) || put_str(b, "nav_status_text", STATUS[s->status & 15]);
	if (s->has & AIS_V_HEADING)
		rc = rc || unum(b, ",\"heading\":", s->heading);
	if (s->has & AIS_V_SHIPTYPE)
		rc = rc || unum(b, ",\"ship_type\":", s->shiptype);
	if (s->has & AIS_V_DIMS)
		rc = rc || unum(b, ",\"length\":", (unsigned)s->to_bow + s->to_stern) ||
		     unum(b, ",\"beam\":", (unsigned)s->to_port + s->to_starboard) || unum(b, ",\"to_bow\":", s->to_bow) ||
		     unum(b, ",\"to_stern\":", s->to_stern) || unum(b, ",\"to_port\":", s->to_port) ||
		     unum(b, ",\"to_starboard\":", s->to_starboard);
	if (s->has & AIS_V_VOYAGE) {
		if (s->imo)
			rc = rc || kz_buf_appendf(b, ",\"imo\":%u", s->imo);
		rc = rc || kz_buf_appendf(b, ",\"draught\":%.1f", s->draught10 / 10.0) || put_str(b, "destination", s->destination) ||
		     put_str(b, "eta", s->eta);
	}
	return rc || kz_buf_append(b, "}", 1) ? KZ_ENOMEM : KZ_OK;
}

int ais_entity_update(struct ais_vessels *v, const struct ais_msg *m, const char *sensor, struct kz_buf *b,
		      char id[32])
{
	struct ais_vessel *s = vessel(v, m->mmsi);
	if (!s)
		return KZ_EINVAL; /* MMSI 0: nobody */
	learn(s, m);
	snprintf(id, 32, "mmsi:%u", m->mmsi);
	const char *type = (s->has & AIS_V_AID) ? "a-u-S-X" : (s->has & AIS_V_BASE) ? "a-u-G-I" : "a-u-S";
	int rc = kz_buf_append(b, "{\"id\":\"", 7) || kz_buf_append(b, id, strlen(id)) ||
		 kz_buf_append(b, "\",\"type\":\"", 10) || kz_buf_append(b, type, strlen(type)) || kz_buf_append(b, "\"", 1);
	if (s->callsign[0] && kz_name_valid(s->callsign, strlen(s->callsign), 64))
		rc = rc || kz_buf_appendf(b, ",\"aliases\":[\"callsign:%s\"]", s->callsign);
	if (s->name[0])
		rc = rc || put_str(b, "name", s->name);
	if ((m->has & AIS_HAS_POS) && m->lat >= -90 && m->lat <= 90 && m->lon >= -180 && m->lon <= 180)
		/* position accuracy flag: better than 10 m (DGNSS), else worse (M.1371 Table 50) */
		rc = rc || num(b, ",\"position\":{\"lat\":", m->lat, 7) || num(b, ",\"lon\":", m->lon, 7) ||
		     kz_buf_append(b, m->accuracy ? ",\"ce\":10}" : ",\"ce\":100}", m->accuracy ? 9 : 10);
	bool course = (m->has & AIS_HAS_COURSE) && m->course < 360;
	bool speed = (m->has & AIS_HAS_SPEED) && (m->type == 27 ? m->speed < 63 : m->speed < 102.3);
	if (course || speed) {
		rc = rc || kz_buf_append(b, ",\"motion\":{", 11);
		if (course)
			rc = rc || num(b, "\"course\":", m->course, 1);
		if (speed) /* knots to m/s */
			rc = rc || num(b, course ? ",\"speed\":" : "\"speed\":", m->speed * 1852.0 / 3600.0, 3);
		rc = rc || kz_buf_append(b, "}", 1);
	}
	rc = rc || kz_buf_append(b, ",\"provenance\":{\"adapter\":\"ais\"", 30);
	if (sensor && *sensor)
		rc = rc || put_str(b, "sensor", sensor);
	rc = rc || kz_buf_append(b, "}", 1) || attributes(b, s) || kz_buf_append(b, "}", 1);
	return rc ? KZ_ENOMEM : KZ_OK;
}
