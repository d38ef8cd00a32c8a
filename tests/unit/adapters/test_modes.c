/* test_modes.c — Mode S / ADS-B: the worked examples of "The 1090 MHz Riddle" (J. Sun):
 * identification, an even/odd airborne position pair (global decoding), local decoding,
 * velocity over ground and airspeed; the CRC; AVR, Beast and SBS input; the demodulation of
 * dump1090's raw I/Q test capture (../shared/data/tracks/dump1090/modes1.bin) into frames
 * whose parity checks and whose positions resolve; and entity updates the entity decoder
 * accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/modes.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "services/entity/entity.h"

static struct modes_frame avr(const char *hex)
{
	char line[64];
	snprintf(line, sizeof line, "*%s;", hex);
	struct modes_frame f;
	const char *why;
	assert_int_equal(modes_avr_line(line, strlen(line), &f, &why), 1);
	return f;
}

static void decode(const char *hex, struct modes_msg *m)
{
	struct modes_frame f = avr(hex);
	const char *why = NULL;
	if (modes_decode(&f, m, &why))
		fail_msg("%s: %s", hex, why);
}

static void test_worked_examples(void **st)
{
	(void)st;
	struct modes_msg m;
	decode("8D4840D6202CC371C32CE0576098", &m); /* identification */
	assert_int_equal(m.icao, 0x4840D6);
	assert_int_equal(m.tc, 4);
	assert_string_equal(m.callsign, "KLM1023");
	/* airborne position: even (newer) and odd */
	struct modes_msg e, o;
	decode("8D40621D58C382D690C8AC2863A7", &e);
	decode("8D40621D58C386435CC412692AD6", &o);
	assert_false(e.odd);
	assert_true(o.odd);
	assert_int_equal(e.altitude_ft, 38000);
	assert_int_equal(e.lat_cpr, 93000);
	assert_int_equal(e.lon_cpr, 51372);
	assert_int_equal(o.lat_cpr, 74158);
	assert_int_equal(o.lon_cpr, 50194);
	double lat, lon;
	assert_int_equal(modes_cpr_global(e.lat_cpr, e.lon_cpr, o.lat_cpr, o.lon_cpr, false, &lat, &lon), 0);
	assert_true(fabs(lat - 52.25720) < 1e-5 && fabs(lon - 3.91937) < 1e-5);
	assert_int_equal(modes_nl(52.2572), 36);
	/* local decoding of the even frame against a reference nearby */
	modes_cpr_local(e.lat_cpr, e.lon_cpr, false, false, 52.258, 3.918, &lat, &lon);
	assert_true(fabs(lat - 52.25720) < 1e-5 && fabs(lon - 3.91937) < 1e-5);
	/* velocity over ground (subtype 1) */
	decode("8D485020994409940838175B284F", &m);
	assert_int_equal(m.tc, 19);
	assert_int_equal(m.subtype, 1);
	assert_true(fabs(m.speed_kt - 159.20) < 0.01);
	assert_true(fabs(m.track_deg - 182.88) < 0.01);
	assert_int_equal(m.vrate_fpm, -832);
	/* airspeed and heading (subtype 3) */
	decode("8DA05F219B06B6AF189400CBC33F", &m);
	assert_int_equal(m.subtype, 3);
	assert_true(fabs(m.heading_deg - 243.98) < 0.01);
	assert_true(fabs(m.airspeed_kt - 375) < 0.01);
	assert_int_equal(m.vrate_fpm, -2304);
	/* a flipped bit: the parity no longer checks */
	struct modes_frame f = avr("8D4840D6202CC371C32CE0576098");
	assert_int_equal(modes_crc_residual(f.b, 112), 0);
	f.b[5] ^= 0x10;
	assert_int_not_equal(modes_crc_residual(f.b, 112), 0);
	const char *why;
	assert_int_equal(modes_decode(&f, &m, &why), -1);
	assert_non_null(strstr(why, "parity"));
	/* the NL table's edges */
	assert_int_equal(modes_nl(0), 59);
	assert_int_equal(modes_nl(87), 2);
	assert_int_equal(modes_nl(-88), 1);
	assert_int_equal(modes_nl(10.4704), 59); /* the first transition latitude is 10.47047130 */
	assert_int_equal(modes_nl(10.48), 58);
}

static void test_inputs(void **st)
{
	(void)st;
	struct modes_frame f;
	const char *why;
	assert_int_equal(modes_avr_line("@0000C1A2B3C48D4840D6202CC371C32CE0576098;\r\n", 44, &f, &why), 1);
	assert_int_equal(f.t12mhz, 0xC1A2B3C4);
	assert_int_equal(f.len, 14);
	assert_int_equal(modes_avr_line("*8D4840D6;", 10, &f, &why), -1);
	assert_int_equal(modes_avr_line("*8D4840D6202CC371C32CE05760ZZ;", 30, &f, &why), -1);
	assert_int_equal(modes_avr_line("8D4840D6202CC371C32CE0576098", 28, &f, &why), -1);
	assert_int_equal(modes_avr_line("\r\n", 2, &f, &why), 0);
	/* Beast: a long frame whose timestamp holds 0x1A (escaped), garbage before it */
	uint8_t beast[64];
	size_t n = 0;
	beast[n++] = 0x55; /* garbage */
	beast[n++] = 0x1A;
	beast[n++] = '3';
	const uint8_t ts[6] = { 0, 0, 0x1A, 1, 2, 3 };
	for (int i = 0; i < 6; i++) {
		beast[n++] = ts[i];
		if (ts[i] == 0x1A)
			beast[n++] = 0x1A;
	}
	beast[n++] = 0x80; /* signal */
	struct modes_frame want = avr("8D4840D6202CC371C32CE0576098");
	for (int i = 0; i < 14; i++)
		beast[n++] = want.b[i];
	struct modes_beast bs = { 0 };
	struct { int n; struct modes_frame f; } got = { 0 };
	void cb(void *ctx, const struct modes_frame *fr);
	modes_beast_feed(&bs, beast, 5, cb, &got); /* in two pieces */
	modes_beast_feed(&bs, beast + 5, n - 5, cb, &got);
	assert_int_equal(got.n, 1);
	assert_memory_equal(got.f.b, want.b, 14);
	assert_int_equal(got.f.t12mhz, 0x1A010203);
	assert_int_equal(bs.skipped, 1);
	/* SBS */
	struct modes_msg m;
	double lat, lon;
	const char *l3 = "MSG,3,1,1,4840D6,1,2024/01/01,12:00:00.000,2024/01/01,12:00:00.000,,38000,,,52.25720,3.91937,,,0,0,0,0";
	assert_int_equal(modes_sbs_line(l3, strlen(l3), &m, &lat, &lon, &why), 1);
	assert_int_equal(m.icao, 0x4840D6);
	assert_true((m.has & MODES_HAS_POS) && fabs(lat - 52.2572) < 1e-9 && m.altitude_ft == 38000);
	const char *l1 = "MSG,1,1,1,4840D6,1,2024/01/01,12:00:00.000,2024/01/01,12:00:00.000,KLM1023 ,,,,,,,,,,,0";
	assert_int_equal(modes_sbs_line(l1, strlen(l1), &m, &lat, &lon, &why), 1);
	assert_string_equal(m.callsign, "KLM1023");
	assert_int_equal(modes_sbs_line("MSG,3,1,1,ZZ", 12, &m, &lat, &lon, &why), -1);
	assert_int_equal(modes_sbs_line("STA,,5,179,400AE7", 17, &m, &lat, &lon, &why), 0);
}

void cb(void *ctx, const struct modes_frame *fr)
{
	struct { int n; struct modes_frame f; } *g = ctx;
	g->n++;
	g->f = *fr;
}

/* Entity updates: a pair gives a position; the worked examples pass the entity decoder. */
static void test_entities(void **st)
{
	(void)st;
	struct modes_state s;
	assert_int_equal(modes_state_init(&s, 8, false, 0, 0), 0);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	struct kz_json_doc d = { 0 };
	struct modes_msg m;
	char id[16];
	const char *why;
	struct entity_update u;
	decode("8D40621D58C386435CC412692AD6", &m); /* odd first: nothing to say yet but the altitude */
	assert_int_equal(modes_entity_update(&s, &m, 1000, "rx", &b, id), 0);
	assert_null(memmem(kz_buf_head(&b), b.len, "position", 8));
	kz_buf_reset(&b);
	decode("8D40621D58C382D690C8AC2863A7", &m); /* even, 2 s later: a position */
	assert_int_equal(modes_entity_update(&s, &m, 3000, "rx", &b, id), 0);
	assert_string_equal(id, "icao:40621d");
	assert_int_equal(entity_decode(&d, (const char *)kz_buf_head(&b), b.len, &u, &why), 0);
	assert_true(fabs(u.pos.lat - 52.2572) < 1e-5 && fabs(u.pos.lon - 3.91937) < 1e-5);
	assert_non_null(memmem(kz_buf_head(&b), b.len, "\"altitude_ft\":38000", 18));
	kz_buf_reset(&b);
	decode("8D4840D6202CC371C32CE0576098", &m);
	assert_int_equal(modes_entity_update(&s, &m, 3000, NULL, &b, id), 0);
	assert_int_equal(entity_decode(&d, (const char *)kz_buf_head(&b), b.len, &u, &why), 0);
	assert_string_equal(u.name, "KLM1023");
	kz_buf_reset(&b);
	decode("8D485020994409940838175B284F", &m);
	assert_int_equal(modes_entity_update(&s, &m, 3000, NULL, &b, id), 0);
	assert_int_equal(entity_decode(&d, (const char *)kz_buf_head(&b), b.len, &u, &why), 0);
	assert_true(fabs(u.motion.speed - 159.20 * 1852 / 3600) < 0.01 && fabs(u.motion.climb + 832 * 0.3048 / 60) < 0.01);
	kz_buf_cleanup(&b);
	kz_json_free(&d);
	modes_state_free(&s);
}

struct capture {
	int frames, positions, idents, updates;
	struct modes_state s;
	struct kz_buf b;
	struct kz_json_doc d;
	double minlat, maxlat, minlon, maxlon;
};

static void on_frame(void *ctx, const struct modes_frame *f)
{
	struct capture *c = ctx;
	c->frames++;
	struct modes_msg m;
	const char *why;
	if (modes_decode(f, &m, &why))
		return;
	c->idents += (m.has & MODES_HAS_CALLSIGN) != 0;
	char id[16];
	kz_buf_reset(&c->b);
	int rc = modes_entity_update(&c->s, &m, (uint64_t)c->frames * 100, "iq", &c->b, id);
	if (rc)
		return;
	struct entity_update u;
	if (entity_decode(&c->d, (const char *)kz_buf_head(&c->b), c->b.len, &u, &why))
		fail_msg("%s: %.*s", why, (int)c->b.len, (const char *)kz_buf_head(&c->b));
	c->updates++;
	if (u.has & ENTITY_F_POSITION) {
		c->positions++;
		c->minlat = fmin(c->minlat, u.pos.lat), c->maxlat = fmax(c->maxlat, u.pos.lat);
		c->minlon = fmin(c->minlon, u.pos.lon), c->maxlon = fmax(c->maxlon, u.pos.lon);
	}
}

static void test_dump1090_capture(void **st)
{
	(void)st;
	FILE *f = fopen(KZ_SHARED "/data/tracks/dump1090/modes1.bin", "rb");
	if (!f) {
		print_message("modes1.bin not here: skipped\n");
		return;
	}
	static uint8_t iq[1 << 20];
	size_t n = fread(iq, 1, sizeof iq, f);
	fclose(f);
	struct capture c = { .minlat = 90, .maxlat = -90, .minlon = 180, .maxlon = -180 };
	assert_int_equal(modes_state_init(&c.s, 256, false, 0, 0), 0);
	kz_buf_init(&c.b, 0);
	modes_iq_demod(iq, n, on_frame, &c);
	print_message("modes1.bin: %d extended squitters with good parity, %d identifications, %d updates, %d positions "
		      "in lat %.3f..%.3f lon %.3f..%.3f\n",
		      c.frames, c.idents, c.updates, c.positions, c.minlat, c.maxlat, c.minlon, c.maxlon);
	assert_true(c.frames >= 20);
	assert_true(c.positions >= 1);
	/* one receiver's horizon: every position within a few degrees of the others */
	assert_true(c.maxlat - c.minlat < 5 && c.maxlon - c.minlon < 5);
	kz_buf_cleanup(&c.b);
	kz_json_free(&c.d);
	modes_state_free(&c.s);
}

int main(void)
{
	kz_hash_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worked_examples),
		cmocka_unit_test(test_inputs),
		cmocka_unit_test(test_entities),
		cmocka_unit_test(test_dump1090_capture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
