/* test_cot.c — Cursor-on-Target: an ATAK-style position report parsed; events back to back
 * split at every byte; prologs, garbage, comments, CDATA holding "</event>", a '>' inside an
 * attribute value, self-closing events, an oversized event skipped; DTDs and entity
 * declarations refused (billion laughs); the report as an entity update the entity decoder
 * accepts (and a uid a topic cannot carry); an entity written as CoT and read back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adapters/cot.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "services/entity/entity.h"

static const char SA[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"
	"<event version=\"2.0\" uid=\"ANDROID-589520ccfcd20f01\" type=\"a-f-G-U-C\" time=\"2026-12-04T10:00:00.000Z\" "
	"start=\"2026-12-04T10:00:00.000Z\" stale=\"2026-12-04T10:06:00.000Z\" how=\"h-e\">"
	"<point lat=\"35.6812362\" lon=\"139.7671248\" hae=\"40.5\" ce=\"9.9\" le=\"9999999.0\"/>"
	"<detail><takv os=\"34\" version=\"4.10.0\" device=\"SAMSUNG\" platform=\"ATAK-CIV\"/>"
	"<contact endpoint=\"*:-1:stcp\" callsign=\"KIZUNA-1\"/><__group name=\"Cyan\" role=\"Team Member\"/>"
	"<track course=\"270.5\" speed=\"1.25\"/><remarks>on patrol &amp; &lt;ok&gt;</remarks></detail></event>";

static void test_parse(void **st)
{
	(void)st;
	struct cot_event e;
	const char *why = NULL;
	assert_int_equal(cot_parse(SA, strlen(SA), &e, &why), 0);
	assert_string_equal(e.uid, "ANDROID-589520ccfcd20f01");
	assert_string_equal(e.type, "a-f-G-U-C");
	assert_string_equal(e.callsign, "KIZUNA-1");
	assert_string_equal(e.remarks, "on patrol & <ok>");
	assert_true(e.has_point && fabs(e.lat - 35.6812362) < 1e-9 && e.hae == 40.5 && e.le == 9999999.0);
	assert_true(e.has_track && e.course == 270.5 && e.speed == 1.25);
	assert_true(e.stale_ns - e.time_ns == 360ull * 1000000000ull);
	/* refusals, each with its reason */
	const char *bad[][2] = {
		{ "<event uid='x' type='a-f'><point lat='91' lon='0'/></event>", "point" },
		{ "<event type='a-f'/>", "uid and type" },
		{ "<event uid='x' type='a-f' time='yesterday'/>", "date-time" },
		{ "<other/>", "root" },
		{ "<event uid='x' type='a-f'><point lat='1' lon='2'></event>", "well-formed" },
		{ "<!DOCTYPE event [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
		  "<event uid='x' type='a-f'>&b;</event>", "DOCTYPE" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		assert_int_equal(cot_parse(bad[i][0], strlen(bad[i][0]), &e, &why), -1);
		if (!strstr(why, bad[i][1]))
			fail_msg("%s: %s", bad[i][0], why);
	}
	char deep[2000] = "<event uid='x' type='a-f'>";
	for (int i = 0; i < 40; i++)
		strcat(deep, "<a>");
	for (int i = 0; i < 40; i++)
		strcat(deep, "</a>");
	strcat(deep, "</event>");
	assert_int_equal(cot_parse(deep, strlen(deep), &e, &why), -1);
	assert_non_null(strstr(why, "deeper"));
}

struct got {
	char uids[16][130];
	int n, errors;
	char last_error[200];
};

static void on_event(void *ctx, const struct cot_event *e)
{
	struct got *g = ctx;
	if (g->n < 16)
		snprintf(g->uids[g->n], sizeof g->uids[0], "%s", e->uid);
	g->n++;
}

static void on_error(void *ctx, const char *why)
{
	struct got *g = ctx;
	g->errors++;
	snprintf(g->last_error, sizeof g->last_error, "%s", why);
}

static void test_stream(void **st)
{
	(void)st;
	char stream[8192];
	snprintf(stream, sizeof stream,
		 "%s\n\n<?xml version='1.0'?><event uid='two' type='b-t-f' time='2026-12-04T10:00:00Z' stale='2026-12-04T10:01:00Z'>"
		 "<detail><remarks><![CDATA[ a chat with </event> in it ]]></remarks><!-- </event> --></detail></event>"
		 "garbage<event uid='three' type='a-h-G' how='m>g'/>"
		 "<eventual/><event\tuid='four' type='u-d-r'><point lat='1' lon='2'/></event >",
		 SA);
	size_t n = strlen(stream);
	/* every split point, and byte by byte */
	for (size_t cut = 0; cut <= n; cut += (cut < 50 || cut > n - 50) ? 1 : 7) {
		struct got g = { 0 };
		struct cot_reader *r = cot_reader_new(4096, on_event, on_error, &g);
		cot_reader_feed(r, stream, cut);
		cot_reader_feed(r, stream + cut, n - cut);
		if (g.n != 4 || g.errors)
			fail_msg("cut %zu: %d events, %d errors (%s)", cut, g.n, g.errors, g.last_error);
		assert_string_equal(g.uids[0], "ANDROID-589520ccfcd20f01");
		assert_string_equal(g.uids[1], "two");
		assert_string_equal(g.uids[2], "three");
		assert_string_equal(g.uids[3], "four");
		cot_reader_free(r);
	}
	struct got g = { 0 };
	struct cot_reader *r = cot_reader_new(4096, on_event, on_error, &g);
	for (size_t i = 0; i < n; i++)
		cot_reader_feed(r, stream + i, 1);
	assert_int_equal(g.n, 4);
	cot_reader_free(r);
	/* many small events in one read far larger than the cap: the cap is per event */
	memset(&g, 0, sizeof g);
	r = cot_reader_new(512, on_event, on_error, &g);
	char many[32768];
	size_t ml = 0;
	for (int i = 0; i < 200; i++)
		ml += (size_t)snprintf(many + ml, sizeof many - ml, "<event uid='u%d' type='a-f-G'><point lat='1' lon='2'/></event>", i);
	cot_reader_feed(r, many, ml);
	assert_int_equal(g.errors, 0);
	assert_int_equal(g.n, 200);
	cot_reader_free(r);
	/* an event over the cap is skipped with a reason; the next one is read */
	memset(&g, 0, sizeof g);
	r = cot_reader_new(512, on_event, on_error, &g);
	char big[4096] = "<event uid='big' type='a-f'><detail><remarks>";
	memset(big + strlen(big), 'x', 1000);
	strcat(big, "</remarks></detail></event><event uid='next' type='a-f'/>");
	cot_reader_feed(r, big, strlen(big));
	assert_int_equal(g.errors, 1);
	assert_non_null(strstr(g.last_error, "cap"));
	assert_int_equal(g.n, 1);
	assert_string_equal(g.uids[0], "next");
	cot_reader_free(r);
}

static void test_entity_and_back(void **st)
{
	(void)st;
	struct cot_event e;
	const char *why;
	assert_int_equal(cot_parse(SA, strlen(SA), &e, &why), 0);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char id[160];
	assert_int_equal(cot_to_entity(&e, &b, id, sizeof id), 0);
	assert_string_equal(id, "cot:ANDROID-589520ccfcd20f01");
	struct kz_json_doc d = { 0 };
	struct entity_update u;
	if (entity_decode(&d, (const char *)kz_buf_head(&b), b.len, &u, &why))
		fail_msg("%s: %.*s", why, (int)b.len, (const char *)kz_buf_head(&b));
	assert_string_equal(u.name, "KIZUNA-1");
	assert_true(fabs(u.pos.lat - 35.6812362) < 1e-9 && u.pos.hae == 40.5 && !(u.pos.has & 4 /* le unknown */));
	assert_true(u.motion.course == 270.5 && u.motion.speed == 1.25);
	/* a uid with characters a topic level cannot carry */
	snprintf(e.uid, sizeof e.uid, "{5b8e8f2a-0000}/#+");
	kz_buf_reset(&b);
	assert_int_equal(cot_to_entity(&e, &b, id, sizeof id), 0);
	assert_int_equal(strncmp(id, "cot:_5b8e8f2a-0000____-", 23), 0);
	assert_int_equal(strlen(id), 23 + 8);
	assert_int_equal(entity_decode(&d, (const char *)kz_buf_head(&b), b.len, &u, &why), 0);
	/* not a position report */
	snprintf(e.type, sizeof e.type, "b-t-f");
	assert_int_equal(cot_to_entity(&e, &b, id, sizeof id), KZ_EINVAL);
	/* an entity as CoT, read back */
	struct cot_out o = { .uid = "mmsi:351759000", .type = "a-u-S", .callsign = "EVER \"DIADEM\" & <co>",
			     .remarks = "from AIS", .time_ns = 1796383200000000000ull, .stale_ns = 1796383500000000000ull,
			     .has_point = true, .lat = 40.5, .lon = -74.25, .hae = NAN, .ce = 10, .le = NAN,
			     .has_track = true, .speed = 5.144, .course = 90 };
	kz_buf_reset(&b);
	assert_int_equal(cot_write(&o, &b), 0);
	assert_int_equal(cot_parse((const char *)kz_buf_head(&b), b.len, &e, &why), 0);
	assert_string_equal(e.uid, "mmsi:351759000");
	assert_string_equal(e.callsign, "EVER \"DIADEM\" & <co>");
	assert_true(e.lat == 40.5 && e.lon == -74.25 && e.hae == 9999999.0 && e.ce == 10 && e.course == 90);
	assert_true(e.stale_ns == o.stale_ns && e.time_ns == o.time_ns);
	kz_json_free(&d);
	kz_buf_cleanup(&b);
}

int main(void)
{
	kz_hash_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_entity_and_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
