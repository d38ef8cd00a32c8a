/* test_takp.c — TAK Protocol version 1: an entity written as a framed TakMessage, read back
 * by the stream reader fed one byte at a time, becomes the same event as XML would; a
 * received event's <detail> children travel as xmlDetail and come back; the payload's
 * encoding checked byte for byte against a TakMessage assembled here by hand from the
 * protobuf wire format; a control-only message is nothing; an oversized message is skipped
 * by its length and the next one read; a missing magic byte and an endless length lose the
 * stream; an xmlDetail with a DTD or an undefined entity is refused by the XML parser; the
 * negotiation's events parse and carry the request's version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adapters/cot.h"
#include "adapters/takp.h"
#include "base/kz_buf.h"

struct got {
	int events, errors;
	struct cot_event last;
	char xml[4096];
	const char *why;
};

static void on_event(void *ctx, const struct cot_event *e)
{
	struct got *g = ctx;
	g->events++;
	g->last = *e;
	snprintf(g->xml, sizeof g->xml, "%.*s", (int)e->xml_len, e->xml);
	g->last.xml = g->xml; /* the reader's bytes are gone after the callback */
}

static void on_error(void *ctx, const char *why)
{
	struct got *g = ctx;
	g->errors++;
	g->why = why;
}

static void test_entity_round_trip(void **st)
{
	(void)st;
	struct cot_out o = { .uid = "mmsi:371798000", .type = "a-u-S", .callsign = "ASTRA <1>", .remarks = "a & b",
			     .access = "SECRET", .time_ns = 1764842400123000000ull, .stale_ns = 1764842700123000000ull,
			     .has_point = true, .lat = 48.3816333, .lon = -123.3953, .hae = NAN, .ce = 10.0, .le = NAN,
			     .has_track = true, .speed = 6.4, .course = 224.0 };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert_int_equal(takp_write(&o, &b), 0);
	assert_int_equal(kz_buf_head(&b)[0], TAKP_MAGIC);
	struct got g = { 0 };
	struct takp_reader *r = takp_reader_new(65536, on_event, on_error, &g);
	const char *why = NULL;
	for (size_t i = 0; i < b.len; i++) /* split at every byte */
		assert_int_equal(takp_reader_feed(r, kz_buf_head(&b) + i, 1, &why), 0);
	assert_int_equal(g.events, 1);
	assert_int_equal(g.errors, 0);
	struct cot_event *e = &g.last;
	assert_string_equal(e->uid, "mmsi:371798000");
	assert_string_equal(e->type, "a-u-S");
	assert_string_equal(e->callsign, "ASTRA <1>");
	assert_string_equal(e->remarks, "a & b");
	assert_string_equal(e->access, "SECRET");
	assert_true(e->has_point && e->lat == 48.3816333 && e->lon == -123.3953);
	assert_true(e->hae == 9999999.0 && e->ce == 10.0 && e->le == 9999999.0);
	assert_true(e->has_track && e->speed == 6.4 && e->course == 224.0);
	assert_true(e->time_ns == 1764842400123000000ull && e->stale_ns == 1764842700123000000ull);
	takp_reader_free(r);
	kz_buf_cleanup(&b);
}

/* The payload by hand (protobuf wire format: key = field << 3 | wire type; 2 = length
 * delimited, 0 = varint, 1 = 64-bit): TakMessage{cotEvent(2){type(1) "a-f-G", uid(5) "U",
 * sendTime(6) 1000, lat(10) 1.5, detail(15){contact(2){callsign(2) "C"}}}} */
static void test_wire_bytes(void **st)
{
	(void)st;
	static const uint8_t want_event[] = {
		0x0a, 5, 'a', '-', 'f', '-', 'G',   /* type */
		0x2a, 1, 'U',                       /* uid */
		0x30, 0xe8, 0x07,                   /* sendTime 1000 */
		0x38, 0xe8, 0x07,                   /* startTime 1000 */
		0x40, 0xd0, 0x0f,                   /* staleTime 2000 */
		0x4a, 3, 'm', '-', 'g',             /* how */
		0x51, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, /* lat 1.5 */
		0x61, 0, 0, 0, 0xe0, 0xcf, 0x12, 0x63, 0x41, /* hae 9999999 */
		0x69, 0, 0, 0, 0xe0, 0xcf, 0x12, 0x63, 0x41, /* ce */
		0x71, 0, 0, 0, 0xe0, 0xcf, 0x12, 0x63, 0x41, /* le */
		0x7a, 5, 0x12, 3, 0x12, 1, 'C',     /* detail{contact{callsign "C"}} */
	};
	struct cot_out o = { .uid = "U", .type = "a-f-G", .callsign = "C", .time_ns = 1000000000ull,
			     .stale_ns = 2000000000ull, .has_point = true, .lat = 1.5, .lon = 0, .hae = NAN, .ce = NAN, .le = NAN };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert_int_equal(takp_write(&o, &b), 0);
	const uint8_t *p = kz_buf_head(&b);
	size_t ev = sizeof want_event;
	assert_int_equal(b.len, 2 + 2 + ev);
	assert_int_equal(p[0], 0xbf);
	assert_int_equal(p[1], 2 + ev); /* the payload's length */
	assert_int_equal(p[2], 0x12);   /* cotEvent(2), length delimited */
	assert_int_equal(p[3], ev);
	assert_memory_equal(p + 4, want_event, ev);
	kz_buf_cleanup(&b);
}

static void test_detail_travels(void **st)
{
	(void)st;
	static const char chat[] =
		"<event version=\"2.0\" uid=\"GeoChat.1\" type=\"b-t-f\" time=\"2026-12-04T10:00:00Z\" "
		"start=\"2026-12-04T10:00:00Z\" stale=\"2026-12-04T10:01:00Z\" how=\"h-g-i-g-o\">"
		"<point lat=\"1\" lon=\"2\"/><detail><__chat chatroom=\"All\"/><remarks>hi &amp; bye</remarks></detail></event>";
	struct cot_event e;
	const char *why = NULL;
	assert_int_equal(cot_parse(chat, sizeof chat - 1, &e, &why), 0);
	assert_true(e.detail_len > 0);
	assert_memory_equal(e.xml + e.detail_off, "<__chat chatroom=\"All\"/><remarks>hi &amp; bye</remarks>", e.detail_len);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert_int_equal(takp_write_event(&e, &b), 0);
	struct got g = { 0 };
	struct takp_reader *r = takp_reader_new(65536, on_event, on_error, &g);
	assert_int_equal(takp_reader_feed(r, kz_buf_head(&b), b.len, &why), 0);
	assert_int_equal(g.events, 1);
	assert_string_equal(g.last.uid, "GeoChat.1");
	assert_string_equal(g.last.remarks, "hi & bye");
	assert_string_equal(g.last.how, "h-g-i-g-o");
	assert_non_null(strstr(g.xml, "<__chat chatroom=\"All\"/>"));
	/* <detail/> and no detail: no xmlDetail */
	static const char empty[] = "<event uid=\"x\" type=\"a-f\"><detail/></event>";
	assert_int_equal(cot_parse(empty, sizeof empty - 1, &e, &why), 0);
	assert_int_equal(e.detail_len, 0);
	takp_reader_free(r);
	kz_buf_cleanup(&b);
}

static void frame(struct kz_buf *b, const void *payload, size_t n)
{
	uint8_t h[11] = { 0xbf };
	size_t k = 1;
	for (size_t v = n;; v >>= 7) {
		h[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		if (v < 0x80)
			break;
	}
	assert_int_equal(kz_buf_append(b, h, k), 0);
	assert_int_equal(kz_buf_append(b, payload, n), 0);
}

static void test_stream_refusals(void **st)
{
	(void)st;
	struct got g = { 0 };
	struct takp_reader *r = takp_reader_new(512, on_event, on_error, &g);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	static const uint8_t control[] = { 0x0a, 4, 0x08, 1, 0x10, 1 }; /* takControl{min 1, max 1} */
	frame(&b, control, sizeof control);
	uint8_t big[600];
	memset(big, 0x12, sizeof big);
	frame(&b, big, sizeof big);                   /* over the cap: skipped by its length */
	static const uint8_t junk[] = { 0x12, 0xff }; /* cotEvent with a length that never ends */
	frame(&b, junk, sizeof junk);
	struct cot_out o = { .uid = "after", .type = "a-f-G", .time_ns = 1, .stale_ns = 2, .has_point = true,
			     .hae = NAN, .ce = NAN, .le = NAN };
	assert_int_equal(takp_write(&o, &b), 0);
	const char *why = NULL;
	assert_int_equal(takp_reader_feed(r, kz_buf_head(&b), b.len, &why), 0);
	assert_int_equal(g.errors, 2);
	assert_int_equal(g.events, 1);
	assert_string_equal(g.last.uid, "after");
	/* no magic: lost for good */
	assert_int_equal(takp_reader_feed(r, (const uint8_t *)"<event", 6, &why), -1);
	assert_non_null(strstr(why, "0xbf"));
	assert_int_equal(takp_reader_feed(r, kz_buf_head(&b), b.len, &why), -1);
	takp_reader_free(r);
	/* a length of more than 10 bytes */
	r = takp_reader_new(512, on_event, on_error, &g);
	static const uint8_t endless[] = { 0xbf, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80 };
	assert_int_equal(takp_reader_feed(r, endless, sizeof endless, &why), -1);
	takp_reader_free(r);
	kz_buf_cleanup(&b);
}

/* xmlDetail is XML from the client: the XML parser's refusals hold for it as for XML. */
static void test_xml_detail_checked(void **st)
{
	(void)st;
	static const char *const bad[] = { "<remarks>&xxe;</remarks>", "<!DOCTYPE x [<!ENTITY a 'b'>]><remarks/>",
					   "</detail></event><event uid='y' type='a'>", "<remarks>" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		uint8_t p[256];
		size_t dl = strlen(bad[i]), n = 0;
		/* TakMessage{cotEvent{type "a-f", uid "x", detail{xmlDetail}}} */
		size_t detail = 2 + dl, ev = 5 + 3 + 2 + detail;
		p[n++] = 0x12, p[n++] = (uint8_t)ev;
		p[n++] = 0x0a, p[n++] = 3, memcpy(p + n, "a-f", 3), n += 3;
		p[n++] = 0x2a, p[n++] = 1, p[n++] = 'x';
		p[n++] = 0x7a, p[n++] = (uint8_t)detail;
		p[n++] = 0x0a, p[n++] = (uint8_t)dl, memcpy(p + n, bad[i], dl), n += dl;
		struct kz_buf b;
		kz_buf_init(&b, 0);
		frame(&b, p, n);
		struct got g = { 0 };
		struct takp_reader *r = takp_reader_new(4096, on_event, on_error, &g);
		const char *why = NULL;
		assert_int_equal(takp_reader_feed(r, kz_buf_head(&b), b.len, &why), 0);
		assert_int_equal(g.events, 0);
		assert_int_equal(g.errors, 1);
		takp_reader_free(r);
		kz_buf_cleanup(&b);
	}
}

static void test_negotiation_events(void **st)
{
	(void)st;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	struct cot_event e;
	const char *why = NULL;
	assert_int_equal(takp_offer(&b, "protouid-1", 1764842400000000000ull), 0);
	assert_int_equal(cot_parse((const char *)kz_buf_head(&b), b.len, &e, &why), 0);
	assert_string_equal(e.type, "t-x-takp-v");
	assert_string_equal(e.uid, "protouid-1");
	kz_buf_reset(&b);
	assert_int_equal(takp_response(&b, "protouid-1", false, 1764842400000000000ull), 0);
	assert_int_equal(cot_parse((const char *)kz_buf_head(&b), b.len, &e, &why), 0);
	assert_string_equal(e.type, "t-x-takp-r");
	assert_non_null(memmem(kz_buf_head(&b), b.len, "status=\"false\"", 14));
	static const char req[] = "<event uid=\"p\" type=\"t-x-takp-q\"><detail><TakControl><TakRequest version=\"1\"/>"
				  "</TakControl></detail></event>";
	assert_int_equal(cot_parse(req, sizeof req - 1, &e, &why), 0);
	assert_int_equal(e.tak_request, 1);
	static const char bad[] = "<event uid=\"p\" type=\"t-x-takp-q\"><detail><TakControl><TakRequest version=\"one\"/>"
				  "</TakControl></detail></event>";
	assert_int_equal(cot_parse(bad, sizeof bad - 1, &e, &why), 0);
	assert_int_equal(e.tak_request, -1);
	kz_buf_cleanup(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entity_round_trip), cmocka_unit_test(test_wire_bytes),
		cmocka_unit_test(test_detail_travels),	  cmocka_unit_test(test_stream_refusals),
		cmocka_unit_test(test_xml_detail_checked), cmocka_unit_test(test_negotiation_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
