/* ais.c — NMEA 0183 AIVDM/AIVDO sentences to AIS messages (ais.h). Bit layouts from ITU-R
 * M.1371-5 Annex 8 (message types 1-5, 18, 19, 21, 24, 27); the scaled JSON follows gpsd's
 * AIVDM documentation so that its published decodes can check ours field by field. */
#include "adapters/ais.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

void ais_nmea_init(struct ais_nmea *r, uint32_t timeout_ms)
{
	memset(r, 0, sizeof *r);
	r->timeout_ms = timeout_ms;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The comma-separated fields of body [p, end): at most max, each [f[i], f[i] + fl[i]). */
static int split(const char *p, const char *end, const char **f, size_t *fl, int max)
{
	int n = 0;
	for (;;) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		if (n == max)
			return -1;
		f[n] = p;
		fl[n] = (size_t)((c ? c : end) - p);
		n++;
		if (!c)
			return n;
		p = c + 1;
	}
}

static int bad(struct ais_nmea *r, const char **why, const char *w)
{
	r->malformed++;
	*why = w;
	return -1;
}

int ais_nmea_line(struct ais_nmea *r, const char *line, size_t n, uint64_t now_ms, struct ais_payload *out,
		  const char **why)
{
	*why = NULL;
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (n && line[0] == '\\') { /* an IEC 61162-450 tag block: \s:...,c:...*hh\ before the sentence */
		const char *e = memchr(line + 1, '\\', n - 1);
		if (!e)
			return bad(r, why, "a tag block without its closing backslash");
		n -= (size_t)(e + 1 - line);
		line = e + 1;
	}
	if (n < 7 || (line[0] != '!' && line[0] != '$'))
		return 0; /* not a sentence (a comment, an empty line) */
	if (memcmp(line + 3, "VDM,", 4) && memcmp(line + 3, "VDO,", 4))
		return 0; /* another sentence (GPS and the like) */
	r->sentences++;
	/* The first '*' ends the sentence (the armour has none); after *hh some receivers (the
	 * USCG's) append their own metadata, which is ignored, as gpsd does. */
	const char *star = memchr(line, '*', n);
	if (!star || (size_t)(star - line) + 3 > n || hexval(star[1]) < 0 || hexval(star[2]) < 0)
		return bad(r, why, "no *hh checksum after the sentence");
	uint8_t cs = 0;
	for (const char *q = line + 1; q < star; q++)
		cs ^= (uint8_t)*q;
	if (cs != (uint8_t)(hexval(star[1]) << 4 | hexval(star[2]))) {
		r->bad_checksum++;
		*why = "checksum mismatch";
		return -1;
	}
	const char *f[8];
	size_t fl[8];
	if (split(line + 7, star, f, fl, 8) != 6)
		return bad(r, why, "not 7 fields (!AIVDM,count,part,seq,channel,payload,fill)");
	if (fl[0] != 1 || fl[1] != 1 || f[0][0] < '1' || f[0][0] > '9' || f[1][0] < '1' || f[1][0] > f[0][0] ||
	    fl[2] > 1 || fl[3] > 1 || fl[5] != 1 || f[5][0] < '0' || f[5][0] > '5')
		return bad(r, why, "bad count, part number, sequence id, channel or fill bits");
	unsigned count = (unsigned)(f[0][0] - '0'), part = (unsigned)(f[1][0] - '0');
	char seq = fl[2] ? f[2][0] : 0, chan = fl[3] ? f[3][0] : 0;
	for (size_t i = 0; i < fl[4]; i++) {
		char c = f[4][i];
		if (c < '0' || c > 'w' || (c > 'W' && c < '`'))
			return bad(r, why, "a payload character outside the 6-bit armour");
	}
	/* expire old sequences */
	for (int i = 0; i < AIS_SLOTS; i++)
		if (r->slot[i].used && now_ms - r->slot[i].started_ms > r->timeout_ms) {
			r->slot[i].used = false;
			r->dropped_parts += r->slot[i].next - 1;
		}
	struct ais_slot *s = NULL, *free_slot = NULL;
	for (int i = 0; i < AIS_SLOTS; i++) {
		if (r->slot[i].used && r->slot[i].seq == seq && r->slot[i].channel == chan)
			s = &r->slot[i];
		else if (!r->slot[i].used && !free_slot)
			free_slot = &r->slot[i];
	}
	if (part == 1) {
		if (s) { /* a new message under the same key: the old one will not complete */
			r->dropped_parts += s->next - 1;
			s->used = false;
		}
		if (!(s = s ? s : free_slot)) { /* every slot busy: the oldest goes */
			s = &r->slot[0];
			for (int i = 1; i < AIS_SLOTS; i++)
				if (r->slot[i].started_ms < s->started_ms)
					s = &r->slot[i];
			r->dropped_parts += s->next - 1;
		}
		memset(s, 0, offsetof(struct ais_slot, p));
		s->p.n = 0;
		s->used = true;
		s->seq = seq;
		s->channel = chan;
		s->count = count;
		s->next = 1;
		s->started_ms = now_ms;
		s->p.channel = chan;
		s->p.own = line[5] == 'O';
	} else if (!s || s->count != count || s->next != part) {
		if (s) {
			r->dropped_parts += s->next - 1;
			s->used = false;
		}
		r->dropped_parts++;
		*why = "a part of a message whose earlier parts did not come (or came out of order)";
		return -1;
	}
	if (s->p.n + fl[4] > AIS_MAX_CHARS) {
		s->used = false;
		return bad(r, why, "a message longer than 512 payload characters");
	}
	for (size_t i = 0; i < fl[4]; i++) {
		int v = f[4][i] - 48;
		s->p.six[s->p.n++] = (uint8_t)(v > 40 ? v - 8 : v);
	}
	if (part < count) {
		s->next++;
		return 0;
	}
	s->p.fill = (unsigned)(f[5][0] - '0');
	*out = s->p;
	s->used = false;
	return 1;
}

/* ---------- bits ---------- */

static size_t nbits(const struct ais_payload *p)
{
	size_t b = p->n * 6;
	return b > p->fill ? b - p->fill : 0;
}

static uint32_t u(const struct ais_payload *p, size_t start, unsigned len)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < len; i++) {
		size_t bit = start + i;
		v = v << 1 | ((p->six[bit / 6] >> (5 - bit % 6)) & 1u);
	}
	return v;
}

static int32_t s(const struct ais_payload *p, size_t start, unsigned len)
{
	uint32_t v = u(p, start, len);
	if (v & (1u << (len - 1)))
		return (int32_t)(v | ~((1u << len) - 1));
	return (int32_t)v;
}

/* Six-bit text (M.1371 Table 47), trailing '@' and spaces removed. */
static void text(const struct ais_payload *p, size_t start, unsigned chars, char *out, size_t cap)
{
	size_t n = 0;
	for (unsigned i = 0; i < chars && n + 1 < cap; i++) {
		unsigned v = u(p, start + 6 * i, 6);
		out[n++] = (char)(v < 32 ? v + 64 : v);
	}
	while (n && (out[n - 1] == '@' || out[n - 1] == ' '))
		n--;
	out[n] = 0;
	/* '@' inside is the padding of a short name: cut there, as receivers do */
	char *at = strchr(out, '@');
	if (at)
		*at = 0;
}

static void pos(struct ais_msg *m, const struct ais_payload *p, size_t lon_at, unsigned lon_bits, size_t lat_at,
		unsigned lat_bits, double div)
{
	m->lon = s(p, lon_at, lon_bits) / div;
	m->lat = s(p, lat_at, lat_bits) / div;
	m->has |= AIS_HAS_POS;
}

static void dims(struct ais_msg *m, const struct ais_payload *p, size_t at)
{
	m->to_bow = u(p, at, 9);
	m->to_stern = u(p, at + 9, 9);
	m->to_port = u(p, at + 18, 6);
	m->to_starboard = u(p, at + 24, 6);
	m->has |= AIS_HAS_DIMS;
}

/* The motion block every position report has in the same layout, from bit at: speed,
 * accuracy, position, course, heading, second (class A types 1-3 at 50, class B 18 and 19
 * at 46). */
static void motion(struct ais_msg *m, const struct ais_payload *p, unsigned at)
{
	m->speed = u(p, at, 10) / 10.0;
	m->accuracy = u(p, at + 10, 1);
	pos(m, p, at + 11, 28, at + 39, 27, 600000.0);
	m->course = u(p, at + 66, 12) / 10.0;
	m->heading = u(p, at + 78, 9);
	m->second = u(p, at + 87, 6);
	m->has |= AIS_HAS_SPEED | AIS_HAS_COURSE | AIS_HAS_HEADING;
}

/* The position part types 18 and 19 share (class B). */
static void class_b(struct ais_msg *m, const struct ais_payload *p)
{
	m->reserved = u(p, 38, 8);
	motion(m, p, 46);
}

static int need(const struct ais_payload *p, size_t bits, const char **why)
{
	if (nbits(p) < bits) {
		*why = "payload too short for its message type";
		return -1;
	}
	return 0;
}

int ais_decode(const struct ais_payload *p, struct ais_msg *m, const char **why)
{
	memset(m, 0, sizeof *m);
	if (need(p, 38, why))
		return -1;
	m->type = u(p, 0, 6);
	m->repeat = u(p, 6, 2);
	m->mmsi = u(p, 8, 30);
	switch (m->type) {
	case 1:
	case 2:
	case 3:
		/* 168 bits; some transmitters send 163: the radio status is what there is, as
		 * gpsd reads it */
		if (need(p, 149, why))
			return -1;
		m->status = u(p, 38, 4);
		m->turn = s(p, 42, 8);
		motion(m, p, 50);
		m->maneuver = u(p, 143, 2);
		m->raim = u(p, 148, 1);
		m->radio = u(p, 149, (unsigned)(nbits(p) >= 168 ? 19 : nbits(p) - 149));
		m->has |= AIS_HAS_STATUS | AIS_HAS_TURN;
		return 0;
	case 4:
		if (need(p, 168, why))
			return -1;
		m->year = u(p, 38, 14);
		m->month = u(p, 52, 4);
		m->day = u(p, 56, 5);
		m->hour = u(p, 61, 5);
		m->minute = u(p, 66, 6);
		m->tsecond = u(p, 72, 6);
		m->accuracy = u(p, 78, 1);
		pos(m, p, 79, 28, 107, 27, 600000.0);
		m->epfd = u(p, 134, 4);
		m->raim = u(p, 148, 1);
		m->radio = u(p, 149, 19);
		m->has |= AIS_HAS_TIME;
		return 0;
	case 5:
		if (need(p, 420, why))
			return -1;
		m->ais_version = u(p, 38, 2);
		m->imo = u(p, 40, 30);
		text(p, 70, 7, m->callsign, sizeof m->callsign);
		text(p, 112, 20, m->shipname, sizeof m->shipname);
		m->shiptype = u(p, 232, 8);
		dims(m, p, 240);
		m->epfd = u(p, 270, 4);
		m->eta_month = u(p, 274, 4);
		m->eta_day = u(p, 278, 5);
		m->eta_hour = u(p, 283, 5);
		m->eta_minute = u(p, 288, 6);
		m->draught = u(p, 294, 8) / 10.0;
		text(p, 302, 20, m->destination, sizeof m->destination);
		m->dte = nbits(p) >= 423 ? u(p, 422, 1) : 0;
		m->has |= AIS_HAS_NAME | AIS_HAS_CALLSIGN | AIS_HAS_SHIPTYPE | AIS_HAS_VOYAGE;
		return 0;
	case 18:
		if (need(p, 168, why))
			return -1;
		class_b(m, p);
		m->regional = u(p, 139, 2);
		m->cs = u(p, 141, 1);
		m->display = u(p, 142, 1);
		m->dsc = u(p, 143, 1);
		m->band = u(p, 144, 1);
		m->msg22 = u(p, 145, 1);
		m->assigned = u(p, 146, 1);
		m->raim = u(p, 147, 1);
		m->radio = u(p, 148, 20);
		return 0;
	case 19:
		if (need(p, 312, why))
			return -1;
		class_b(m, p);
		m->regional = u(p, 139, 4);
		text(p, 143, 20, m->shipname, sizeof m->shipname);
		m->shiptype = u(p, 263, 8);
		dims(m, p, 271);
		m->epfd = u(p, 301, 4);
		m->raim = u(p, 305, 1);
		m->dte = u(p, 306, 1);
		m->assigned = u(p, 307, 1);
		m->has |= AIS_HAS_NAME | AIS_HAS_SHIPTYPE;
		return 0;
	case 21: {
		if (need(p, 272, why))
			return -1;
		m->aid_type = u(p, 38, 5);
		text(p, 43, 20, m->shipname, sizeof m->shipname);
		m->accuracy = u(p, 163, 1);
		pos(m, p, 164, 28, 192, 27, 600000.0);
		dims(m, p, 219);
		m->epfd = u(p, 249, 4);
		m->second = u(p, 253, 6);
		m->off_position = u(p, 259, 1);
		m->regional = u(p, 260, 8);
		m->raim = u(p, 268, 1);
		m->virtual_aid = u(p, 269, 1);
		m->assigned = u(p, 270, 1);
		size_t ext = (nbits(p) - 272) / 6; /* the name's extension, up to 14 characters */
		if (ext > 14)
			ext = 14;
		if (ext && strlen(m->shipname) == 20) {
			char more[16];
			text(p, 272, (unsigned)ext, more, sizeof more);
			strncat(m->shipname, more, sizeof m->shipname - strlen(m->shipname) - 1);
		}
		m->has |= AIS_HAS_NAME | AIS_HAS_AID;
		return 0;
	}
	case 24:
		if (need(p, 160, why))
			return -1;
		m->partno = u(p, 38, 2);
		if (m->partno == 0) {
			text(p, 40, 20, m->shipname, sizeof m->shipname);
			m->has |= AIS_HAS_NAME;
			return 0;
		}
		if (m->partno != 1) {
			*why = "type 24 part number other than A (0) or B (1)";
			return -1;
		}
		if (need(p, 162, why))
			return -1;
		m->shiptype = u(p, 40, 8);
		text(p, 48, 3, m->vendorid, sizeof m->vendorid);
		m->model = u(p, 66, 4);
		m->serial = u(p, 70, 20);
		text(p, 90, 7, m->callsign, sizeof m->callsign);
		if (m->mmsi / 10000000 != 98) /* an auxiliary craft (98XXXXXXX) has its mothership's MMSI there */
			dims(m, p, 132);
		m->has |= AIS_HAS_SHIPTYPE | AIS_HAS_CALLSIGN | AIS_HAS_VENDOR;
		return 0;
	case 27:
		if (need(p, 96, why))
			return -1;
		m->accuracy = u(p, 38, 1);
		m->raim = u(p, 39, 1);
		m->status = u(p, 40, 4);
		pos(m, p, 44, 18, 62, 17, 600.0);
		m->speed = u(p, 79, 6);
		m->course = u(p, 85, 9);
		m->gnss = u(p, 94, 1);
		m->has |= AIS_HAS_STATUS | AIS_HAS_SPEED | AIS_HAS_COURSE;
		return 0;
	default:
		*why = "a message type not decoded (1-5, 18, 19, 21, 24 and 27 are)";
		return -1;
	}
}

/* ---------- gpsd's JSON ---------- */


static const char *tf(bool v) { return v ? "true" : "false"; }

/* Six-bit text is [@A-Z[\]^_ !"#$%&'()*+,-./0-9:;<=>?]: only " and \ need escaping. */
static int put_text(struct kz_buf *b, const char *key, const char *t)
{
	char esc[80];
	size_t n = 0;
	for (const char *q = t; *q && n + 2 < sizeof esc; q++) {
		if (*q == '"' || *q == '\\')
			esc[n++] = '\\';
		esc[n++] = *q;
	}
	esc[n] = 0;
	return kz_buf_appendf(b, ",\"%s\":\"%s\"", key, esc);
}

int ais_to_json(const struct ais_msg *m, struct kz_buf *b)
{
	int rc = kz_buf_appendf(b, "{\"class\":\"AIS\",\"type\":%u,\"repeat\":%u,\"mmsi\":%u,\"scaled\":true", m->type, m->repeat,
		     m->mmsi);
	switch (m->type) {
	case 1:
	case 2:
	case 3:
		rc = rc || kz_buf_appendf(b, ",\"status\":%u,\"speed\":%.1f,\"accuracy\":%s,\"lon\":%.7f,\"lat\":%.7f,\"course\":%.1f,"
				  "\"heading\":%u,\"second\":%u,\"maneuver\":%u,\"raim\":%s,\"radio\":%u",
			       m->status, m->speed, tf(m->accuracy), m->lon, m->lat, m->course, m->heading, m->second,
			       m->maneuver, tf(m->raim), m->radio);
		break;
	case 4:
		rc = rc || kz_buf_appendf(b, ",\"timestamp\":\"%04u-%02u-%02uT%02u:%02u:%02uZ\",\"accuracy\":%s,\"lon\":%.7f,"
				  "\"lat\":%.7f,\"epfd\":%u,\"raim\":%s,\"radio\":%u",
			       m->year, m->month, m->day, m->hour, m->minute, m->tsecond, tf(m->accuracy), m->lon, m->lat,
			       m->epfd, tf(m->raim), m->radio);
		break;
	case 5:
		rc = rc || kz_buf_appendf(b, ",\"imo\":%u,\"ais_version\":%u", m->imo, m->ais_version) ||
		     put_text(b, "callsign", m->callsign) || put_text(b, "shipname", m->shipname) ||
		     kz_buf_appendf(b, ",\"shiptype\":%u,\"to_bow\":%u,\"to_stern\":%u,\"to_port\":%u,\"to_starboard\":%u,\"epfd\":%u,"
			    "\"eta\":\"%02u-%02uT%02u:%02uZ\",\"draught\":%.1f",
			 m->shiptype, m->to_bow, m->to_stern, m->to_port, m->to_starboard, m->epfd, m->eta_month,
			 m->eta_day, m->eta_hour, m->eta_minute, m->draught) ||
		     put_text(b, "destination", m->destination) || kz_buf_appendf(b, ",\"dte\":%u", m->dte);
		break;
	case 18:
	case 19:
		rc = rc || kz_buf_appendf(b, ",\"reserved\":%u,\"speed\":%.1f,\"accuracy\":%s,\"lon\":%.7f,\"lat\":%.7f,\"course\":%.1f,"
				  "\"heading\":%u,\"second\":%u,\"regional\":%u",
			       m->reserved, m->speed, tf(m->accuracy), m->lon, m->lat, m->course, m->heading, m->second,
			       m->regional);
		if (m->type == 18)
			rc = rc || kz_buf_appendf(b, ",\"cs\":%s,\"display\":%s,\"dsc\":%s,\"band\":%s,\"msg22\":%s,\"raim\":%s,"
					  "\"radio\":%u",
				       tf(m->cs), tf(m->display), tf(m->dsc), tf(m->band), tf(m->msg22), tf(m->raim), m->radio);
		else
			rc = rc || put_text(b, "shipname", m->shipname) ||
			     kz_buf_appendf(b, ",\"shiptype\":%u,\"to_bow\":%u,\"to_stern\":%u,\"to_port\":%u,\"to_starboard\":%u,"
				    "\"epfd\":%u,\"raim\":%s,\"dte\":%u,\"assigned\":%s",
				 m->shiptype, m->to_bow, m->to_stern, m->to_port, m->to_starboard, m->epfd, tf(m->raim),
				 m->dte, tf(m->assigned));
		break;
	case 21:
		rc = rc || kz_buf_appendf(b, ",\"aid_type\":%u", m->aid_type) || put_text(b, "name", m->shipname) ||
		     kz_buf_appendf(b, ",\"lon\":%.7f,\"lat\":%.7f,\"accuracy\":%s,\"to_bow\":%u,\"to_stern\":%u,\"to_port\":%u,"
			    "\"to_starboard\":%u,\"epfd\":%u,\"second\":%u,\"regional\":%u,\"off_position\":%s,\"raim\":%s,"
			    "\"virtual_aid\":%s",
			 m->lon, m->lat, tf(m->accuracy), m->to_bow, m->to_stern, m->to_port, m->to_starboard, m->epfd,
			 m->second, m->regional, tf(m->off_position), tf(m->raim), tf(m->virtual_aid));
		break;
	case 24:
		if (m->partno == 0)
			rc = rc || put_text(b, "shipname", m->shipname);
		else {
			rc = rc || kz_buf_appendf(b, ",\"shiptype\":%u,\"model\":%u,\"serial\":%u", m->shiptype, m->model, m->serial) ||
			     put_text(b, "callsign", m->callsign);
			if (m->has & AIS_HAS_DIMS)
				rc = rc || kz_buf_appendf(b, ",\"to_bow\":%u,\"to_stern\":%u,\"to_port\":%u,\"to_starboard\":%u", m->to_bow,
					       m->to_stern, m->to_port, m->to_starboard);
		}
		break;
	case 27:
		rc = rc || kz_buf_appendf(b, ",\"status\":%u,\"accuracy\":%s,\"lon\":%.4f,\"lat\":%.4f,\"speed\":%.0f,\"course\":%.0f,"
				  "\"raim\":%s,\"gnss\":%s",
			       m->status, tf(m->accuracy), m->lon, m->lat, m->speed, m->course, tf(m->raim), tf(m->gnss));
		break;
	}
	return rc || kz_buf_append(b, "}", 1) ? KZ_ENOMEM : KZ_OK;
}
