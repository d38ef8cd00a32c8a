/* modes.c — Mode S frames from a receiver's outputs, their parity, and the decoding of
 * DF17/18 extended squitters with CPR (modes.h). Layouts from ICAO Doc 9871 and RTCA
 * DO-260B as summarised in "The 1090 MHz Riddle" (J. Sun, 2021), whose worked examples the
 * unit test checks. */
#include "adapters/modes.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- parity ---------- */

static unsigned bit(const uint8_t *m, unsigned i) { return (m[i / 8] >> (7 - i % 8)) & 1u; }

static uint32_t bits(const uint8_t *m, unsigned start, unsigned len)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < len; i++)
		v = v << 1 | bit(m, start + i);
	return v;
}

uint32_t modes_crc_residual(const uint8_t *msg, unsigned nbits)
{
	uint32_t rem = 0;
	for (unsigned i = 0; i + 24 < nbits; i++) {
		uint32_t msb = (rem >> 23) & 1u;
		rem = (rem << 1) & 0xFFFFFFu;
		if (msb ^ bit(msg, i))
			rem ^= 0xFFF409u;
	}
	return rem ^ bits(msg, nbits - 24, 24);
}

/* ---------- AVR and Beast ---------- */

static int hexv(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int modes_avr_line(const char *line, size_t n, struct modes_frame *f, const char **why)
{
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (!n)
		return 0;
	memset(f, 0, sizeof *f);
	size_t i = 1;
	if (line[0] == '@' && n > 13) { /* MLAT timestamp: 12 hex digits (48 bits, 12 MHz) */
		for (; i < 13; i++) {
			int h = hexv(line[i]);
			if (h < 0) {
				*why = "AVR: a bad timestamp";
				return -1;
			}
			f->t12mhz = f->t12mhz << 4 | (unsigned)h;
		}
	} else if (line[0] != '*') {
		*why = "AVR: a line that starts with neither * nor @";
		return -1;
	}
	if (line[n - 1] != ';') {
		*why = "AVR: no ; at the end";
		return -1;
	}
	size_t hexn = n - 1 - i;
	if (hexn != 14 && hexn != 28) {
		*why = "AVR: not 7 or 14 bytes of hex";
		return -1;
	}
	for (size_t k = 0; k < hexn; k += 2) {
		int hi = hexv(line[i + k]), lo = hexv(line[i + k + 1]);
		if (hi < 0 || lo < 0) {
			*why = "AVR: not hex";
			return -1;
		}
		f->b[k / 2] = (uint8_t)(hi << 4 | lo);
	}
	f->len = (unsigned)hexn / 2;
	return 1;
}

static size_t beast_len(uint8_t type)
{
	return type == '1' ? 2 : type == '2' ? 7 : type == '3' ? 14 : 0;
}

void modes_beast_feed(struct modes_beast *st, const uint8_t *p, size_t n, modes_frame_fn cb, void *ctx)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (st->esc) {
			st->esc = false;
			if (c != 0x1A) { /* 0x1A then not 0x1A: a new frame starts (type c) */
				if (st->n)
					st->skipped++; /* the last one was cut short */
				st->n = 0;
				if (!beast_len(c)) {
					st->skipped++;
					continue;
				}
				st->buf[st->n++] = c;
				continue;
			}
			/* an escaped 0x1A: data */
		} else if (c == 0x1A) {
			st->esc = true;
			continue;
		}
		if (!st->n) {
			st->skipped++; /* bytes outside a frame */
			continue;
		}
		st->buf[st->n++] = c;
		size_t want = 1 + 6 + 1 + beast_len(st->buf[0]);
		if (st->n == want) {
			if (st->buf[0] != '1') { /* Mode A/C carries no ICAO address: not ours */
				struct modes_frame f = { .len = (unsigned)beast_len(st->buf[0]) };
				for (int k = 1; k <= 6; k++)
					f.t12mhz = f.t12mhz << 8 | st->buf[k];
				memcpy(f.b, st->buf + 8, f.len);
				cb(ctx, &f);
			}
			st->n = 0;
		}
	}
}

/* ---------- raw I/Q ---------- */

/* dump1090's sampling: 2 MHz, so a bit is two samples and the 8 us preamble 16, with pulses
 * at 0, 1, 3.5 and 4.5 us. */
void modes_iq_demod(const uint8_t *iq, size_t n, modes_frame_fn cb, void *ctx)
{
	enum { PRE = 16, LONG = 112 };
	size_t nm = n / 2;
	if (nm < PRE + 2 * LONG)
		return;
	uint16_t *m = malloc(nm * sizeof *m);
	if (!m)
		return;
	for (size_t i = 0; i < nm; i++) {
		double I = iq[2 * i] - 127.5, Q = iq[2 * i + 1] - 127.5;
		m[i] = (uint16_t)(sqrt(I * I + Q * Q) * 256);
	}
	for (size_t j = 0; j + PRE + 2 * LONG < nm; j++) {
		const uint16_t *p = m + j;
		/* the four pulses above their neighbours, the quiet parts below them */
		if (!(p[0] > p[1] && p[1] < p[2] && p[2] > p[3] && p[3] < p[0] && p[4] < p[0] && p[5] < p[0] &&
		      p[6] < p[0] && p[7] > p[8] && p[8] < p[9] && p[9] > p[6]))
			continue;
		uint32_t high = (uint32_t)(p[0] + p[2] + p[7] + p[9]) / 6;
		if (p[4] >= high || p[5] >= high || p[11] >= high || p[12] >= high || p[13] >= high || p[14] >= high)
			continue;
		struct modes_frame f = { 0 };
		for (unsigned i = 0; i < LONG; i++) {
			unsigned a = p[PRE + 2 * i], b = p[PRE + 2 * i + 1];
			if (a > b)
				f.b[i / 8] |= (uint8_t)(0x80u >> (i % 8));
		}
		unsigned df = f.b[0] >> 3;
		unsigned len = df >= 16 ? 14 : 7;
		f.len = len;
		if ((df == 17 || df == 18) && modes_crc_residual(f.b, 112) == 0) {
			cb(ctx, &f);
			j += PRE + 2 * LONG - 1; /* past this frame */
		}
	}
	free(m);
}

/* ---------- DF17/18 ---------- */

static const char CHARSET[] = "#ABCDEFGHIJKLMNOPQRSTUVWXYZ##### ###############0123456789######";

static double surface_speed(unsigned mov)
{
	if (mov == 1)
		return 0;
	if (mov <= 8)
		return 0.125 * (mov - 1);
	if (mov <= 12)
		return 1 + (mov - 9) * 0.25;
	if (mov <= 38)
		return 2 + (mov - 13) * 0.5;
	if (mov <= 93)
		return 15 + (mov - 39);
	if (mov <= 108)
		return 70 + (mov - 94) * 2.0;
	if (mov <= 123)
		return 100 + (mov - 109) * 5.0;
	return 175;
}

int modes_decode(const struct modes_frame *f, struct modes_msg *m, const char **why)
{
	memset(m, 0, sizeof *m);
	if (f->len != 14) {
		*why = "a short Mode S frame (no extended squitter)";
		return -1;
	}
	const uint8_t *b = f->b;
	m->df = b[0] >> 3;
	if (m->df != 17 && m->df != 18) {
		*why = "a downlink format other than 17 and 18 (extended squitter)";
		return -1;
	}
	if (modes_crc_residual(b, 112)) {
		*why = "parity (CRC-24) does not check";
		return -1;
	}
	if (m->df == 18 && (b[0] & 7) > 1) {
		*why = "DF18 of a non-transponder that is not ADS-B (CF 2-7)";
		return -1;
	}
	m->icao = bits(b, 8, 24);
	m->tc = bits(b, 32, 5);
	unsigned tc = m->tc;
	if (tc >= 1 && tc <= 4) {
		m->category = bits(b, 37, 3);
		unsigned k = 0;
		for (unsigned i = 0; i < 8; i++) {
			char c = CHARSET[bits(b, 40 + 6 * i, 6)];
			if (c != '#')
				m->callsign[k++] = c;
		}
		while (k && m->callsign[k - 1] == ' ')
			k--;
		m->callsign[k] = 0;
		m->has |= MODES_HAS_CALLSIGN;
		return 0;
	}
	if ((tc >= 5 && tc <= 8) || (tc >= 9 && tc <= 18) || (tc >= 20 && tc <= 22)) {
		m->odd = bits(b, 53, 1);
		m->lat_cpr = bits(b, 54, 17);
		m->lon_cpr = bits(b, 71, 17);
		m->has |= MODES_HAS_POS;
		if (tc <= 8) {
			m->on_ground = true;
			m->has |= MODES_HAS_GROUND;
			unsigned mov = bits(b, 37, 7);
			if (mov >= 1 && mov <= 124) {
				m->speed_kt = surface_speed(mov);
				m->has |= MODES_HAS_VEL;
			}
			if (bits(b, 44, 1))
				m->track_deg = bits(b, 45, 7) * 360.0 / 128, m->has |= MODES_HAS_HEADING;
			return 0;
		}
		uint32_t alt = bits(b, 40, 12);
		if (tc >= 20) { /* GNSS height (HAE) in metres */
			if (alt)
				m->altitude_ft = (int)(alt * 3.28084 + 0.5), m->has |= MODES_HAS_ALT;
		} else if (alt & 0x10) { /* Q = 1: 25 ft steps */
			uint32_t nq = ((alt & 0xFE0) >> 1) | (alt & 0xF);
			m->altitude_ft = (int)nq * 25 - 1000;
			m->has |= MODES_HAS_ALT;
		}
		return 0;
	}
	if (tc == 19) {
		m->subtype = bits(b, 37, 3);
		unsigned vr = bits(b, 69, 9);
		if (vr) {
			m->vrate_fpm = (int)(vr - 1) * 64 * (bits(b, 68, 1) ? -1 : 1);
			m->has |= MODES_HAS_VRATE;
		}
		if (m->subtype == 1 || m->subtype == 2) {
			unsigned vew = bits(b, 46, 10), vns = bits(b, 57, 10);
			if (vew && vns) {
				double k = m->subtype == 2 ? 4 : 1;
				double vx = (bits(b, 45, 1) ? -1.0 : 1.0) * (vew - 1) * k;
				double vy = (bits(b, 56, 1) ? -1.0 : 1.0) * (vns - 1) * k;
				m->speed_kt = sqrt(vx * vx + vy * vy);
				double t = atan2(vx, vy) * 180 / M_PI;
				m->track_deg = t < 0 ? t + 360 : t;
				m->has |= MODES_HAS_VEL;
			}
			return 0;
		}
		if (m->subtype == 3 || m->subtype == 4) {
			if (bits(b, 45, 1)) {
				m->heading_deg = bits(b, 46, 10) * 360.0 / 1024;
				m->has |= MODES_HAS_HEADING;
			}
			unsigned as = bits(b, 57, 10);
			if (as)
				m->airspeed_kt = (as - 1) * (m->subtype == 4 ? 4.0 : 1.0);
			return 0;
		}
		*why = "velocity subtype other than 1-4";
		return -1;
	}
	*why = "a type code not decoded (1-22 but 0 are)";
	return -1;
}

/* ---------- CPR ---------- */

static double fmodp(double a, double b)
{
	double r = fmod(a, b);
	return r < 0 ? r + b : r;
}

int modes_nl(double lat)
{
	double a = fabs(lat);
	if (a < 1e-9)
		return 59;
	if (fabs(a - 87) < 1e-9)
		return 2;
	if (a > 87)
		return 1;
	const double nz = 15;
	double c = cos(M_PI / 180 * a);
	return (int)floor(2 * M_PI / acos(1 - (1 - cos(M_PI / (2 * nz))) / (c * c)));
}

int modes_cpr_global(uint32_t lat_e, uint32_t lon_e, uint32_t lat_o, uint32_t lon_o, bool odd_last, double *lat,
		     double *lon)
{
	const double c = 131072.0;
	double le = lat_e / c, lo = lat_o / c;
	double j = floor(59 * le - 60 * lo + 0.5);
	double late = 360.0 / 60 * (fmodp(j, 60) + le), lato = 360.0 / 59 * (fmodp(j, 59) + lo);
	if (late >= 270)
		late -= 360;
	if (lato >= 270)
		lato -= 360;
	if (modes_nl(late) != modes_nl(lato))
		return -1;
	double la = odd_last ? lato : late;
	int nl = modes_nl(la);
	int ni = nl - (odd_last ? 1 : 0);
	if (ni < 1)
		ni = 1;
	double mm = floor((lon_e / c) * (nl - 1) - (lon_o / c) * nl + 0.5);
	double lo_ = 360.0 / ni * (fmodp(mm, ni) + (odd_last ? lon_o : lon_e) / c);
	if (lo_ >= 180)
		lo_ -= 360;
	*lat = la;
	*lon = lo_;
	return 0;
}

void modes_cpr_local(uint32_t lat_cpr, uint32_t lon_cpr, bool odd, bool surface, double ref_lat, double ref_lon,
		     double *lat, double *lon)
{
	const double c = 131072.0, span = surface ? 90.0 : 360.0;
	double d = span / (odd ? 59 : 60), latc = lat_cpr / c;
	double j = floor(ref_lat / d) + floor(0.5 + fmodp(ref_lat, d) / d - latc);
	double la = d * (j + latc);
	int ni = modes_nl(la) - (odd ? 1 : 0);
	if (ni < 1)
		ni = 1;
	double dl = span / ni, lonc = lon_cpr / c;
	double mm = floor(ref_lon / dl) + floor(0.5 + fmodp(ref_lon, dl) / dl - lonc);
	*lat = la;
	*lon = dl * (mm + lonc);
	if (*lon >= 180)
		*lon -= 360;
	if (*lon < -180)
		*lon += 360;
}

/* ---------- SBS-1 ---------- */

int modes_sbs_line(const char *line, size_t n, struct modes_msg *m, double *lat, double *lon, const char **why)
{
	memset(m, 0, sizeof *m);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (n < 4 || memcmp(line, "MSG,", 4))
		return 0;
	char buf[512];
	if (n >= sizeof buf) {
		*why = "SBS: a line longer than 511 bytes";
		return -1;
	}
	memcpy(buf, line, n);
	buf[n] = 0;
	char *f[24];
	int nf = 0;
	for (char *p = buf; nf < 24;) {
		f[nf++] = p;
		char *c = strchr(p, ',');
		if (!c)
			break;
		*c = 0;
		p = c + 1;
	}
	if (nf < 17) {
		*why = "SBS: fewer than 17 fields";
		return -1;
	}
	char *end;
	unsigned long icao = strtoul(f[4], &end, 16);
	if (strlen(f[4]) != 6 || *end || !icao) {
		*why = "SBS: the hex ident (field 5) is not 6 hex digits";
		return -1;
	}
	m->icao = (uint32_t)icao;
	m->df = 17;
	if (f[10][0]) {
		size_t k = 0;
		for (const char *q = f[10]; *q && k < 8; q++)
			if ((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9'))
				m->callsign[k++] = *q;
		m->callsign[k] = 0;
		if (k)
			m->has |= MODES_HAS_CALLSIGN;
	}
	double v[6];
	for (int i = 0; i < 6; i++) { /* altitude, speed, track, lat, lon, vertical rate: numbers or empty */
		char *e;
		v[i] = f[11 + i][0] ? strtod(f[11 + i], &e) : 0;
		if (f[11 + i][0] && (*e || !isfinite(v[i]))) {
			*why = "SBS: a field that should be a number is not";
			return -1;
		}
	}
	if (f[11][0] && fabs(v[0]) < 200000)
		m->altitude_ft = (int)v[0], m->has |= MODES_HAS_ALT;
	if (f[12][0] && f[13][0]) {
		if (v[1] < 0 || v[1] > 5000 || v[2] < 0 || v[2] > 360) {
			*why = "SBS: ground speed or track out of range";
			return -1;
		}
		m->speed_kt = v[1], m->track_deg = v[2], m->has |= MODES_HAS_VEL;
	}
	if (f[14][0] && f[15][0]) {
		*lat = v[3];
		*lon = v[4];
		if (*lat < -90 || *lat > 90 || *lon < -180 || *lon > 180) {
			*why = "SBS: latitude or longitude out of range";
			return -1;
		}
		m->has |= MODES_HAS_POS;
	}
	if (f[16][0] && fabs(v[5]) < 100000)
		m->vrate_fpm = (int)v[5], m->has |= MODES_HAS_VRATE;
	if (nf >= 22 && (!strcmp(f[21], "-1") || !strcmp(f[21], "1")))
		m->on_ground = true, m->has |= MODES_HAS_GROUND;
	return m->has ? 1 : 0;
}

/* ---------- JSON ---------- */

int modes_to_json(const struct modes_msg *m, const double *lat, const double *lon, struct kz_buf *b)
{
	char t[512];
	int n = snprintf(t, sizeof t, "{\"df\":%u,\"tc\":%u,\"icao\":\"%06x\"", m->df, m->tc, m->icao);
	if (m->has & MODES_HAS_CALLSIGN)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"callsign\":\"%s\",\"category\":%u", m->callsign, m->category);
	if ((m->has & MODES_HAS_POS) && !lat)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"cpr\":\"%s\",\"lat_cpr\":%u,\"lon_cpr\":%u",
			      m->odd ? "odd" : "even", m->lat_cpr, m->lon_cpr);
	if (lat && lon)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"lat\":%.5f,\"lon\":%.5f", *lat, *lon);
	if (m->has & MODES_HAS_ALT)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"altitude_ft\":%d", m->altitude_ft);
	if (m->has & MODES_HAS_VEL)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"speed_kt\":%.2f,\"track\":%.2f", m->speed_kt, m->track_deg);
	if (m->has & MODES_HAS_HEADING)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"heading\":%.2f,\"airspeed_kt\":%.0f",
			      m->tc == 19 ? m->heading_deg : m->track_deg, m->airspeed_kt);
	if (m->has & MODES_HAS_VRATE)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"vrate_fpm\":%d", m->vrate_fpm);
	if (m->on_ground)
		n += snprintf(t + n, sizeof t - (size_t)n, ",\"on_ground\":true");
	n += snprintf(t + n, sizeof t - (size_t)n, "}");
	return n > 0 && (size_t)n < sizeof t && !kz_buf_append(b, t, (size_t)n) ? KZ_OK : KZ_ENOMEM;
}
