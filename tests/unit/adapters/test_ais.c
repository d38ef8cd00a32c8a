/* test_ais.c — the AIS adapter's decoder and its entity updates: checksums, tag blocks,
 * reassembly (in order, out of order, timed out), the armour, the fields of known messages
 * (gpsd's sample, its comments and expected decodes), and every message of the two recorded
 * samples in ../shared turned into an update that the entity decoder accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/ais.h"
#include "adapters/ais_entity.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "services/entity/entity.h"

static int feed(struct ais_nmea *r, const char *line, uint64_t now, struct ais_payload *p, const char **why)
{
	return ais_nmea_line(r, line, strlen(line), now, p, why);
}

/* "!" body "*hh" with its checksum. */
static const char *with_cs(const char *body)
{
	static char out[256];
	unsigned char cs = 0;
	for (const char *q = body; *q; q++)
		cs ^= (unsigned char)*q;
	snprintf(out, sizeof out, "!%s*%02X", body, cs);
	return out;
}

static void test_sentences(void **st)
{
	(void)st;
	struct ais_nmea r;
	struct ais_payload p;
	struct ais_msg m;
	const char *why;
	ais_nmea_init(&r, 2000);
	/* type 1, gpsd's first example */
	assert_int_equal(feed(&r, "!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A\r\n", 0, &p, &why), 1);
	assert_int_equal(ais_decode(&p, &m, &why), 0);
	assert_int_equal(m.type, 1);
	assert_int_equal(m.mmsi, 371798000);
	assert_true(fabs(m.speed - 12.3) < 1e-9 && fabs(m.lon + 123.395383333) < 1e-6 && fabs(m.lat - 48.381633333) < 1e-6);
	assert_true(fabs(m.course - 224) < 1e-9 && m.heading == 215 && m.second == 33 && m.turn == -127 && m.accuracy);
	/* the checksum, the armour, the shape */
	assert_int_equal(feed(&r, "!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4B", 0, &p, &why), -1);
	assert_string_equal(why, "checksum mismatch");
	assert_int_equal(r.bad_checksum, 1);
	assert_int_equal(feed(&r, "!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0", 0, &p, &why), -1);
	assert_int_equal(feed(&r, with_cs("AIVDM,1,1,,A,1|,0"), 0, &p, &why), -1); /* '|' is not armour */
	assert_non_null(strstr(why, "armour"));
	assert_int_equal(feed(&r, "# a comment", 0, &p, &why), 0);
	assert_null(why);
	assert_int_equal(feed(&r, "$GPGGA,1,2,3*00", 0, &p, &why), 0);
	/* a tag block before the sentence, and receiver metadata after it */
	assert_int_equal(feed(&r, "\\s:rx1,c:1700000000*5A\\!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A", 0, &p, &why), 1);
	assert_int_equal(feed(&r, "!AIVDM,1,1,,B,15RTgt0PAso;90TKcjM8h6g208CQ,0*49,s36310,d-081", 0, &p, &why), 1);
	assert_int_equal(p.channel, 'B');
	/* type 5 in two parts */
	const char *a = "!AIVDM,2,1,1,A,55?MbV02;H;s<HtKR20EHE:0@T4@Dn2222222216L961O5Gf0NSQEp6ClRp8,0*1C";
	const char *b = "!AIVDM,2,2,1,A,88888888880,2*25";
	assert_int_equal(feed(&r, a, 10, &p, &why), 0);
	assert_int_equal(feed(&r, b, 11, &p, &why), 1);
	assert_int_equal(ais_decode(&p, &m, &why), 0);
	assert_int_equal(m.type, 5);
	assert_int_equal(m.mmsi, 351759000);
	assert_string_equal(m.shipname, "EVER DIADEM");
	assert_string_equal(m.callsign, "3FOF8");
	assert_string_equal(m.destination, "NEW YORK");
	assert_int_equal(m.imo, 9134270);
	assert_int_equal(m.to_bow + m.to_stern, 295);
	/* part 2 without part 1, and a part 1 that times out */
	assert_int_equal(feed(&r, b, 20, &p, &why), -1);
	assert_non_null(strstr(why, "earlier parts"));
	assert_int_equal(feed(&r, a, 30, &p, &why), 0);
	assert_int_equal(feed(&r, b, 30 + 2001, &p, &why), -1);
	/* more sequences at once than slots: the oldest goes, the rest complete */
	for (int i = 0; i < AIS_SLOTS + 2; i++) {
		char s1[128];
		snprintf(s1, sizeof s1, "!AIVDM,2,1,%d,%c,55?MbV02;H;s<HtKR20EHE:0@T4@Dn2222222216L961O5Gf0NSQEp6ClRp8,0*", i % 10,
			 i < 10 ? 'A' : 'B');
		unsigned char cs = 0;
		for (const char *q = s1 + 1; *q != '*'; q++)
			cs ^= (unsigned char)*q;
		snprintf(s1 + strlen(s1), 8, "%02X", cs);
		assert_int_equal(feed(&r, s1, 5000 + (uint64_t)i, &p, &why), 0);
	}
	/* unknown types are reported, not decoded */
	assert_int_equal(feed(&r, "!AIVDM,1,1,,B,:6TMCD1GOS60,0*5B", 0, &p, &why), 1);
	assert_int_equal(ais_decode(&p, &m, &why), -1);
	assert_non_null(strstr(why, "not decoded"));
}

/* Every message of a recorded file: decoded ones become updates the entity decoder takes. */
static void file_to_entities(const char *path, unsigned min_updates)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		print_message("%s not here: skipped\n", path);
		return;
	}
	struct ais_nmea r;
	struct ais_vessels v;
	ais_nmea_init(&r, 60000);
	assert_int_equal(ais_vessels_init(&v, 1000), 0);
	struct kz_json_doc d = { 0 };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char line[4096];
	unsigned updates = 0, n = 0;
	while (fgets(line, sizeof line, f)) {
		struct ais_payload p;
		struct ais_msg m;
		const char *why;
		if (ais_nmea_line(&r, line, strlen(line), ++n, &p, &why) != 1 || ais_decode(&p, &m, &why))
			continue;
		char id[32];
		kz_buf_reset(&b);
		if (ais_entity_update(&v, &m, "rx-1", &b, id))
			continue;
		struct entity_update u;
		if (entity_decode(&d, (const char *)kz_buf_head(&b), b.len, &u, &why))
			fail_msg("%s: %.*s", why, (int)b.len, (const char *)kz_buf_head(&b));
		assert_string_equal(u.id, id);
		updates++;
	}
	fclose(f);
	print_message("%s: %u entity updates\n", path, updates);
	assert_true(updates >= min_updates);
	kz_buf_cleanup(&b);
	kz_json_free(&d);
	ais_vessels_free(&v);
}

static void test_samples_to_entities(void **st)
{
	(void)st;
	file_to_entities(KZ_SHARED "/data/tracks/gpsd/sample.aivdm", 25);
	file_to_entities(KZ_SHARED "/data/tracks/pyais/nmea_data_sample.txt", 100);
}

/* A vessel's static data (type 5) rides along with its later position reports. */
static void test_static_kept(void **st)
{
	(void)st;
	struct ais_nmea r;
	struct ais_vessels v;
	struct ais_payload p;
	struct ais_msg m;
	const char *why;
	char id[32];
	ais_nmea_init(&r, 2000);
	assert_int_equal(ais_vessels_init(&v, 2), 0);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	feed(&r, "!AIVDM,2,1,1,A,55?MbV02;H;s<HtKR20EHE:0@T4@Dn2222222216L961O5Gf0NSQEp6ClRp8,0*1C", 0, &p, &why);
	assert_int_equal(feed(&r, "!AIVDM,2,2,1,A,88888888880,2*25", 0, &p, &why), 1);
	assert_int_equal(ais_decode(&p, &m, &why), 0);
	assert_int_equal(ais_entity_update(&v, &m, NULL, &b, id), 0);
	/* the same MMSI's position, forged from the type 1 example with the MMSI of the type 5 */
	m = (struct ais_msg){ .type = 1, .mmsi = 351759000, .has = AIS_HAS_POS | AIS_HAS_SPEED | AIS_HAS_COURSE,
			      .lat = 40.5, .lon = -74, .speed = 10, .course = 90, .heading = 511 };
	kz_buf_reset(&b);
	assert_int_equal(ais_entity_update(&v, &m, NULL, &b, id), 0);
	char *j = strndup((const char *)kz_buf_head(&b), b.len);
	assert_non_null(strstr(j, "\"name\":\"EVER DIADEM\""));
	assert_non_null(strstr(j, "\"aliases\":[\"callsign:3FOF8\"]"));
	assert_non_null(strstr(j, "\"destination\":\"NEW YORK\""));
	assert_non_null(strstr(j, "\"speed\":5.144"));
	assert_null(strstr(j, "heading")); /* 511: not available */
	free(j);
	/* the table is full at two vessels: a third starts it over */
	m.mmsi = 1;
	kz_buf_reset(&b);
	assert_int_equal(ais_entity_update(&v, &m, NULL, &b, id), 0);
	m.mmsi = 2;
	assert_int_equal(ais_entity_update(&v, &m, NULL, &b, id), 0);
	assert_int_equal(v.restarts, 1);
	m.mmsi = 0;
	assert_int_equal(ais_entity_update(&v, &m, NULL, &b, id), KZ_EINVAL);
	kz_buf_cleanup(&b);
	ais_vessels_free(&v);
}

int main(void)
{
	kz_hash_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sentences),
		cmocka_unit_test(test_samples_to_entities),
		cmocka_unit_test(test_static_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
