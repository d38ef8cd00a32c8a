/* test_entity.c — the entity update decoder (every malformed form refused with its own
 * reason) and the table's rules (docs/ENTITIES.md "Rules"): order by source time, partial
 * updates, alias merge and conflicts, removal and tombstones, stale and expiry, caps, and
 * the invariants after every step. */
#include "services/entity/entity.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "base/kz_time.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct kz_json_doc doc;

static int decode(const char *text, struct entity_update *u, const char **why)
{
	return entity_decode(&doc, text, strlen(text), u, why);
}

static uint64_t ts(const char *s)
{
	uint64_t ns;
	assert_int_equal(kz_time_parse(s, &ns), 0);
	return ns;
}

static void test_decode_full(void **state)
{
	(void)state;
	struct entity_update u;
	const char *why = NULL;
	const char *text = "{\"id\":\"trk-1\",\"aliases\":[\"mmsi:431000000\",\"callsign:KIZUNA\"],\"type\":\"a-f-S-X\","
			   "\"symbol\":\"SFSPXM----\",\"name\":\"Kizuna Maru\",\"position\":{\"lat\":35.6,\"lon\":139.7,"
			   "\"hae\":0,\"ce\":25,\"le\":10},\"motion\":{\"course\":90,\"speed\":5.5},\"source_time\":"
			   "\"2026-12-04T10:00:00Z\",\"stale_time\":\"2026-12-04T10:05:00Z\",\"expiry_time\":"
			   "\"2026-12-04T11:00:00Z\",\"provenance\":{\"adapter\":\"ais\",\"sensor\":\"rx-7\"},\"status\":"
			   "\"live\",\"attributes\":{\"flag\":\"JP\",\"len_m\":120}}";
	assert_int_equal(decode(text, &u, &why), 0);
	assert_string_equal(u.id, "trk-1");
	assert_int_equal(u.n_aliases, 2);
	assert_string_equal(u.aliases[1], "callsign:KIZUNA");
	assert_string_equal(u.type, "a-f-S-X");
	assert_string_equal(u.name, "Kizuna Maru");
	assert_true(u.pos.lat == 35.6 && u.pos.lon == 139.7 && u.pos.ce == 25);
	assert_int_equal(u.pos.has, ENTITY_HAS_HAE | ENTITY_HAS_CE | ENTITY_HAS_LE);
	assert_int_equal(u.motion.has, ENTITY_HAS_COURSE | ENTITY_HAS_SPEED);
	assert_true(u.source_ns == ts("2026-12-04T10:00:00Z"));
	assert_true(u.expiry_ns == ts("2026-12-04T11:00:00Z"));
	assert_string_equal(u.adapter, "ais");
	assert_false(u.has & ENTITY_F_REMOVED);
	assert_int_equal(u.attributes_len, strlen("{\"flag\":\"JP\",\"len_m\":120}"));
	assert_memory_equal(u.attributes, "{\"flag\":\"JP\",\"len_m\":120}", u.attributes_len);
}

static void test_decode_refused(void **state)
{
	(void)state;
	static const struct {
		const char *text, *why; /* why: a part of the reason */
	} bad[] = {
		{ "[1]", "JSON object" },
		{ "{\"id\":\"a\",", "not JSON" },
		{ "{\"name\":\"x\"}", "id is required" },
		{ "{\"id\":\"a/b\"}", "id:" },
		{ "{\"id\":\"\"}", "id:" },
		{ "{\"id\":\"a\",\"colour\":\"red\"}", "unknown member" },
		{ "{\"id\":\"a\",\"position\":{\"lat\":91,\"lon\":0}}", "lat in [-90, 90]" },
		{ "{\"id\":\"a\",\"position\":{\"lat\":1}}", "lat and lon are required together" },
		{ "{\"id\":\"a\",\"position\":{\"lat\":1,\"lon\":2,\"ce\":-1}}", "ce and le >= 0" },
		{ "{\"id\":\"a\",\"position\":{\"lat\":1,\"lon\":2,\"alt\":3}}", "position: unknown member" },
		{ "{\"id\":\"a\",\"position\":{\"lat\":\"1\",\"lon\":2}}", "lat in" },
		{ "{\"id\":\"a\",\"motion\":{\"course\":400}}", "course in [0, 360]" },
		{ "{\"id\":\"a\",\"motion\":{}}", "at least one" },
		{ "{\"id\":\"a\",\"aliases\":[\"nocolon\"]}", "scheme:value" },
		{ "{\"id\":\"a\",\"aliases\":[\"x:1\",\"x:1\"]}", "the same alias twice" },
		{ "{\"id\":\"a\",\"aliases\":[\"a:1\",\"a:2\",\"a:3\",\"a:4\",\"a:5\",\"a:6\",\"a:7\",\"a:8\",\"a:9\"]}", "at most 8" },
		{ "{\"id\":\"a\",\"source_time\":\"yesterday\"}", "RFC 3339" },
		{ "{\"id\":\"a\",\"stale_time\":\"2026-12-04T10:05:00Z\",\"expiry_time\":\"2026-12-04T10:00:00Z\"}",
		  "expiry_time is before stale_time" },
		{ "{\"id\":\"a\",\"status\":\"stale\"}", "status:" },
		{ "{\"id\":\"a\",\"provenance\":{\"origin\":\"spiffe://x\"}}", "set by the node" },
		{ "{\"id\":\"a\",\"label\":\"class=secret\"}", "come from the record" },
		{ "{\"id\":\"a\",\"name\":\"line\\nbreak\"}", "control characters" },
		{ "{\"id\":\"a\",\"attributes\":[1]}", "attributes:" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct entity_update u;
		const char *why = NULL;
		if (decode(bad[i].text, &u, &why) != -1 || !why || !strstr(why, bad[i].why))
			fail_msg("%s: got '%s', wanted '%s'", bad[i].text, why ? why : "(accepted)", bad[i].why);
	}
	/* attributes over the cap */
	char big[ENTITY_ATTR_MAX + 64];
	int n = snprintf(big, sizeof big, "{\"id\":\"a\",\"attributes\":{\"k\":\"");
	memset(big + n, 'x', ENTITY_ATTR_MAX);
	strcpy(big + n + ENTITY_ATTR_MAX, "\"}}");
	struct entity_update u;
	const char *why = NULL;
	assert_int_equal(decode(big, &u, &why), -1);
	assert_non_null(strstr(why, "4096 bytes"));
}

static const char *check(const char *topic, const char *payload)
{
	return entity_payload_check(&doc, (const uint8_t *)topic, strlen(topic), (const uint8_t *)payload, strlen(payload));
}

static void test_payload_check(void **state)
{
	(void)state;
	assert_null(check("sensors/x", "not json at all")); /* not an entity topic */
	assert_null(check("kz/entity/t1", "{\"id\":\"t1\"}"));
	assert_non_null(strstr(check("kz/entity/t1", "{\"id\":\"t2\"}"), "not the topic's last level"));
	assert_non_null(strstr(check("kz/entity/a/b", "{\"id\":\"a\"}"), "one topic level"));
	assert_non_null(strstr(check("kz/entity/", "{\"id\":\"a\"}"), "one topic level"));
	assert_non_null(strstr(check("kz/entity/t1", "[]"), "JSON object"));
}

/* ---------- the table ---------- */

static struct entity_table *table(uint32_t max)
{
	struct entity_table_config cfg = { .max_entities = max, .default_stale_ms = 300000,
					   .default_expiry_ms = 3600000, .removed_keep_ms = 60000, .max_interned = 1000 };
	struct entity_table *t = NULL;
	assert_int_equal(entity_table_new(&cfg, &t), 0);
	return t;
}

static enum entity_event apply_labelled(struct entity_table *t, const char *text, uint64_t seq, const char *received,
				       const char *label);
/* Decodes and applies text as record seq accepted at received (RFC 3339). */
static enum entity_event apply(struct entity_table *t, const char *text, uint64_t seq, const char *received)
{
	return apply_labelled(t, text, seq, received, "class=restricted");
}

static enum entity_event apply_labelled(struct entity_table *t, const char *text, uint64_t seq, const char *received,
				       const char *label)
{
	struct entity_update u;
	const char *why = NULL;
	if (decode(text, &u, &why))
		fail_msg("%s: %s", text, why);
	struct entity_source src = { .seq = seq, .received_ns = ts(received), .origin = "spiffe://kizuna.local/mod/sensor/s1",
				     .node = "n1", .label = label };
	enum entity_event ev;
	assert_int_equal(entity_table_apply(t, &u, &src, &ev, NULL), 0);
	assert_true(entity_table_check(t));
	return ev;
}

static void test_order_and_partial(void **state)
{
	(void)state;
	struct entity_table *t = table(100);
	assert_int_equal(apply(t, "{\"id\":\"t1\",\"name\":\"one\",\"type\":\"a-f-G\",\"position\":{\"lat\":1,\"lon\":2},"
				  "\"source_time\":\"2026-12-04T10:00:00Z\"}", 1, "2026-12-04T10:00:01Z"),
			 ENTITY_EV_CREATE);
	/* partial: only the position changes */
	assert_int_equal(apply(t, "{\"id\":\"t1\",\"position\":{\"lat\":3,\"lon\":4},\"source_time\":\"2026-12-04T10:00:10Z\"}",
			       2, "2026-12-04T10:00:11Z"),
			 ENTITY_EV_UPDATE);
	struct entity *e = entity_table_find(t, "t1");
	assert_non_null(e);
	assert_string_equal(e->name, "one");
	assert_string_equal(e->type, "a-f-G");
	assert_true(e->pos.lat == 3 && (e->pos.has & ENTITY_POS_KNOWN));
	assert_string_equal(e->origin, "spiffe://kizuna.local/mod/sensor/s1");
	assert_string_equal(e->label, "class=restricted");
	assert_int_equal(e->version, 2);
	/* older (source_time before the state's): not applied, counted */
	assert_int_equal(apply(t, "{\"id\":\"t1\",\"name\":\"old\",\"source_time\":\"2026-12-04T10:00:05Z\"}", 3,
			       "2026-12-04T10:00:12Z"),
			 ENTITY_EV_NONE);
	assert_string_equal(entity_table_find(t, "t1")->name, "one");
	/* a replay of an applied record changes nothing */
	assert_int_equal(apply(t, "{\"id\":\"t1\",\"position\":{\"lat\":3,\"lon\":4},\"source_time\":\"2026-12-04T10:00:10Z\"}",
			       2, "2026-12-04T10:00:11Z"),
			 ENTITY_EV_NONE);
	/* no source_time: the record's accept time */
	assert_int_equal(apply(t, "{\"id\":\"t1\",\"name\":\"two\"}", 4, "2026-12-04T10:01:00Z"), ENTITY_EV_UPDATE);
	assert_true(entity_table_find(t, "t1")->source_ns == ts("2026-12-04T10:01:00Z"));
	/* default stale and expiry times follow the source time */
	e = entity_table_find(t, "t1");
	assert_true(e->stale_ns == ts("2026-12-04T10:06:00Z"));
	assert_true(e->expiry_ns == ts("2026-12-04T11:06:00Z"));
	struct entity_table_stats st;
	entity_table_stats(t, &st);
	assert_int_equal(st.live, 1);
	assert_int_equal(st.applied, 3);
	assert_int_equal(st.older, 1);
	entity_table_free(t);
}

static void test_aliases(void **state)
{
	(void)state;
	struct entity_table *t = table(100);
	apply(t, "{\"id\":\"ais-1\",\"aliases\":[\"mmsi:431000000\"],\"source_time\":\"2026-12-04T10:00:00Z\"}", 1,
	      "2026-12-04T10:00:00Z");
	/* an update under another id naming a known alias updates that entity; its id becomes an alias */
	assert_int_equal(apply(t, "{\"id\":\"radar-7\",\"aliases\":[\"mmsi:431000000\"],\"name\":\"seen\","
				  "\"source_time\":\"2026-12-04T10:00:05Z\"}",
			       2, "2026-12-04T10:00:05Z"),
			 ENTITY_EV_UPDATE);
	struct entity *e = entity_table_find(t, "radar-7");
	assert_non_null(e);
	assert_string_equal(e->id, "ais-1");
	assert_ptr_equal(entity_table_find(t, "mmsi:431000000"), e);
	/* conflict: an alias of ais-1 claimed by another entity with a newer update moves there */
	apply(t, "{\"id\":\"cot-9\",\"source_time\":\"2026-12-04T10:00:06Z\"}", 3, "2026-12-04T10:00:06Z");
	assert_int_equal(apply(t, "{\"id\":\"cot-9\",\"aliases\":[\"callsign:ALPHA\"],\"source_time\":\"2026-12-04T10:00:07Z\"}",
			       4, "2026-12-04T10:00:07Z"),
			 ENTITY_EV_UPDATE);
	apply(t, "{\"id\":\"ais-1\",\"aliases\":[\"callsign:ALPHA\"],\"source_time\":\"2026-12-04T10:00:08Z\"}", 5,
	      "2026-12-04T10:00:08Z");
	assert_string_equal(entity_table_find(t, "callsign:ALPHA")->id, "ais-1");
	/* ... an older claim does not take it back */
	apply(t, "{\"id\":\"cot-9\",\"aliases\":[\"callsign:ALPHA\"],\"source_time\":\"2026-12-04T10:00:07.5Z\"}", 6,
	      "2026-12-04T10:00:09Z");
	assert_string_equal(entity_table_find(t, "callsign:ALPHA")->id, "ais-1");
	/* another entity's own id is never taken as an alias */
	apply(t, "{\"id\":\"ais-1\",\"aliases\":[\"x:1\"],\"source_time\":\"2026-12-04T10:00:10Z\"}", 7,
	      "2026-12-04T10:00:10Z");
	struct entity_table_stats st;
	entity_table_stats(t, &st);
	assert_int_equal(st.alias_moves, 1);
	assert_int_equal(st.live, 2);
	entity_table_free(t);
}

struct events {
	int stale, removed;
	char last[64];
};

static void on_event(void *ctx, enum entity_event ev, const struct entity *e)
{
	struct events *x = ctx;
	if (ev == ENTITY_EV_STALE)
		x->stale++;
	if (ev == ENTITY_EV_REMOVE)
		x->removed++;
	snprintf(x->last, sizeof x->last, "%s", e->id);
}

static void test_stale_expiry_removal(void **state)
{
	(void)state;
	struct entity_table *t = table(100);
	apply(t, "{\"id\":\"u1\",\"name\":\"unit\",\"source_time\":\"2026-12-04T10:00:00Z\",\"stale_time\":"
		 "\"2026-12-04T10:01:00Z\",\"expiry_time\":\"2026-12-04T10:02:00Z\"}",
	      1, "2026-12-04T10:00:00Z");
	struct events x = { 0 };
	entity_table_tick(t, ts("2026-12-04T10:00:59Z"), on_event, &x);
	assert_int_equal(x.stale, 0);
	entity_table_tick(t, ts("2026-12-04T10:01:00Z"), on_event, &x);
	assert_int_equal(x.stale, 1);
	assert_int_equal(entity_table_find(t, "u1")->status, ENTITY_STALE);
	/* a newer update makes it live again */
	assert_int_equal(apply(t, "{\"id\":\"u1\",\"source_time\":\"2026-12-04T10:01:30Z\",\"expiry_time\":"
				  "\"2026-12-04T10:03:00Z\"}",
			       2, "2026-12-04T10:01:30Z"),
			 ENTITY_EV_UPDATE);
	assert_int_equal(entity_table_find(t, "u1")->status, ENTITY_LIVE);
	entity_table_tick(t, ts("2026-12-04T10:03:00Z"), on_event, &x);
	assert_int_equal(x.removed, 1); /* past expiry: removed (a tombstone) */
	assert_string_equal(x.last, "u1");
	assert_int_equal(entity_table_find(t, "u1")->status, ENTITY_REMOVED);
	assert_true(entity_table_check(t));
	/* the tombstone blocks what is older than it ... */
	assert_int_equal(apply(t, "{\"id\":\"u1\",\"source_time\":\"2026-12-04T10:01:00Z\"}", 3, "2026-12-04T10:03:01Z"),
			 ENTITY_EV_NONE);
	/* ... and is forgotten after removed_keep_ms */
	entity_table_tick(t, ts("2026-12-04T10:04:00Z"), on_event, &x);
	assert_null(entity_table_find(t, "u1"));
	assert_true(entity_table_check(t));
	/* an explicit removal; a newer update brings it back afresh (its old name is gone) */
	apply(t, "{\"id\":\"u2\",\"name\":\"two\",\"source_time\":\"2026-12-04T10:05:00Z\"}", 4, "2026-12-04T10:05:00Z");
	assert_int_equal(apply(t, "{\"id\":\"u2\",\"status\":\"removed\",\"source_time\":\"2026-12-04T10:05:01Z\"}", 5,
			       "2026-12-04T10:05:01Z"),
			 ENTITY_EV_REMOVE);
	assert_int_equal(apply(t, "{\"id\":\"u2\",\"source_time\":\"2026-12-04T10:05:02Z\"}", 6, "2026-12-04T10:05:02Z"),
			 ENTITY_EV_CREATE);
	assert_null(entity_table_find(t, "u2")->name);
	/* removing what is not there changes nothing */
	assert_int_equal(apply(t, "{\"id\":\"nobody\",\"status\":\"removed\"}", 7, "2026-12-04T10:05:03Z"), ENTITY_EV_NONE);
	assert_null(entity_table_find(t, "nobody"));
	entity_table_free(t);
}

static void test_caps(void **state)
{
	(void)state;
	struct entity_table *t = table(3);
	char text[128];
	for (int i = 0; i < 3; i++) {
		snprintf(text, sizeof text, "{\"id\":\"c%d\"}", i);
		assert_int_equal(apply(t, text, (uint64_t)i + 1, "2026-12-04T10:00:00Z"), ENTITY_EV_CREATE);
	}
	struct entity_update u;
	const char *why;
	assert_int_equal(decode("{\"id\":\"c9\"}", &u, &why), 0);
	struct entity_source src = { .seq = 9, .received_ns = ts("2026-12-04T10:00:00Z") };
	enum entity_event ev;
	assert_int_equal(entity_table_apply(t, &u, &src, &ev, NULL), KZ_ETOOBIG);
	assert_int_equal(ev, ENTITY_EV_NONE);
	assert_null(entity_table_find(t, "c9"));
	/* updates of existing entities go on */
	assert_int_equal(apply(t, "{\"id\":\"c1\",\"name\":\"still\"}", 10, "2026-12-04T10:00:01Z"), ENTITY_EV_UPDATE);
	assert_true(entity_table_check(t));
	entity_table_free(t);
}

/* The API's JSON: parses, and says what the entity holds (quotes and backslashes escaped). */
static void test_to_json(void **state)
{
	(void)state;
	struct entity_table *t = table(10);
	apply(t, "{\"id\":\"j1\",\"aliases\":[\"x:1\"],\"name\":\"say \\\"hi\\\" \\\\ bye\",\"position\":{\"lat\":-33.5,"
		 "\"lon\":151.25,\"hae\":12},\"motion\":{\"speed\":3},\"source_time\":\"2026-12-04T10:00:00.5Z\","
		 "\"attributes\":{\"k\":[1,2]}}",
	      1, "2026-12-04T10:00:01Z");
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert_int_equal(entity_to_json(entity_table_find(t, "j1"), &b), 0);
	struct kz_json_doc d = { 0 };
	if (kz_json_parse(&d, (const char *)kz_buf_head(&b), b.len))
		fail_msg("not JSON: %.*s", (int)b.len, (const char *)kz_buf_head(&b));
	const struct kz_json *o = kz_json_root(&d);
	assert_string_equal(kz_json_get_str(o, "name"), "say \"hi\" \\ bye");
	assert_string_equal(kz_json_get_str(o, "source_time"), "2026-12-04T10:00:00.500000000Z");
	assert_string_equal(kz_json_get_str(o, "received_time"), "2026-12-04T10:00:01.000000000Z");
	assert_string_equal(kz_json_get_str(o, "status"), "live");
	assert_string_equal(kz_json_get_str(o, "label"), "class=restricted");
	assert_string_equal(kz_json_get_str(kz_json_get(o, "provenance"), "origin"), "spiffe://kizuna.local/mod/sensor/s1");
	double v;
	assert_true(kz_json_num(kz_json_get(kz_json_get(o, "position"), "lon"), &v) && v == 151.25);
	assert_true(kz_json_num(kz_json_get(kz_json_get(o, "position"), "hae"), &v) && v == 12);
	assert_null(kz_json_get(kz_json_get(o, "position"), "ce"));
	assert_true(kz_json_num(kz_json_get(kz_json_get(o, "motion"), "speed"), &v) && v == 3);
	assert_true(kz_json_is(kz_json_get(o, "attributes"), KZ_JSON_OBJECT));
	assert_string_equal(kz_json_str(kz_json_at(kz_json_get(o, "aliases"), 0)), "x:1");
	kz_json_free(&d);
	kz_buf_cleanup(&b);
	entity_table_free(t);
}

/* Field labels (docs/ENTITIES.md "Field labels"): the creating update's label is the
 * entity's; an update at another label gives the groups it sets (and the aliases it adds)
 * that label; one at the entity's label takes it back; a removal and a new creation start
 * afresh. */
static void test_field_labels(void **state)
{
	(void)state;
	struct entity_table *t = table(10);
	apply_labelled(t, "{\"id\":\"f1\",\"name\":\"ship\",\"position\":{\"lat\":1,\"lon\":2}}", 1,
		       "2026-12-04T10:00:01Z", "class=restricted");
	struct entity *e = entity_table_find(t, "f1");
	assert_string_equal(e->label, "class=restricted");
	assert_null(e->fl);
	apply_labelled(t, "{\"id\":\"f1\",\"aliases\":[\"mmsi:9\"],\"position\":{\"lat\":1.2345,\"lon\":2.3456,\"ce\":3}}",
		       2, "2026-12-04T10:00:02Z", "class=secret");
	assert_string_equal(e->label, "class=restricted"); /* the entity's label stays */
	assert_non_null(e->fl);
	assert_string_equal(e->fl->group[ENTITY_G_POSITION], "class=secret");
	assert_string_equal(e->fl->group[ENTITY_G_PROVENANCE], "class=secret");
	assert_null(e->fl->group[ENTITY_G_NAME]);
	assert_int_equal(e->n_aliases, 1);
	assert_string_equal(e->fl->alias[0], "class=secret");
	/* what a reader who may not see it gets: no position, no alias, no provenance */
	struct kz_buf b;
	kz_buf_init(&b, 0);
	uint32_t hide = 1u << ENTITY_G_POSITION | 1u << ENTITY_G_PROVENANCE | ENTITY_HIDE_ALIAS(0);
	assert_int_equal(entity_to_json_hiding(e, hide, &b), 0);
	char *j = strndup((const char *)kz_buf_head(&b), b.len);
	assert_null(strstr(j, "position"));
	assert_null(strstr(j, "mmsi"));
	assert_null(strstr(j, "secret"));
	assert_null(strstr(j, "provenance"));
	assert_non_null(strstr(j, "\"name\":\"ship\""));
	free(j);
	kz_buf_reset(&b);
	assert_int_equal(entity_to_json(e, &b), 0);
	j = strndup((const char *)kz_buf_head(&b), b.len);
	assert_non_null(strstr(j, "\"field_labels\":{\"position\":\"class=secret\",\"provenance\":\"class=secret\"}"));
	assert_non_null(strstr(j, "1.2345"));
	free(j);
	/* the entity's label again on the position: its own label goes */
	apply_labelled(t, "{\"id\":\"f1\",\"position\":{\"lat\":1,\"lon\":2}}", 3, "2026-12-04T10:00:03Z",
		       "class=restricted");
	assert_null(e->fl->group[ENTITY_G_POSITION]);
	assert_null(e->fl->group[ENTITY_G_PROVENANCE]);
	assert_string_equal(e->fl->alias[0], "class=secret"); /* an alias keeps what it was learnt under */
	/* removed, then created again at another label: that label is the entity's */
	apply_labelled(t, "{\"id\":\"f1\",\"status\":\"removed\"}", 4, "2026-12-04T10:00:04Z", "class=restricted");
	apply_labelled(t, "{\"id\":\"f1\",\"name\":\"again\"}", 5, "2026-12-04T10:00:05Z", "class=secret");
	assert_string_equal(e->label, "class=secret");
	assert_null(e->fl->group[ENTITY_G_NAME]);
	/* without labels (no policy) nothing of this is made */
	apply_labelled(t, "{\"id\":\"f2\",\"name\":\"open\"}", 6, "2026-12-04T10:00:06Z", NULL);
	apply_labelled(t, "{\"id\":\"f2\",\"name\":\"open2\"}", 7, "2026-12-04T10:00:07Z", "");
	assert_null(entity_table_find(t, "f2")->fl);
	kz_buf_cleanup(&b);
	entity_table_free(t);
}

/* Many entities, removed and forgotten again: the invariants hold and the memory comes back. */
static void test_churn(void **state)
{
	(void)state;
	struct entity_table *t = table(20000);
	char text[160];
	for (int i = 0; i < 10000; i++) {
		snprintf(text, sizeof text, "{\"id\":\"e%d\",\"aliases\":[\"icao:%06x\"],\"position\":{\"lat\":%d,\"lon\":%d}}", i,
			 i, i % 90, i % 180);
		struct entity_update u;
		const char *why;
		assert_int_equal(decode(text, &u, &why), 0);
		struct entity_source src = { .seq = (uint64_t)i + 1, .received_ns = ts("2026-12-04T10:00:00Z"), .origin = "o" };
		enum entity_event ev;
		assert_int_equal(entity_table_apply(t, &u, &src, &ev, NULL), 0);
		assert_int_equal(ev, ENTITY_EV_CREATE);
	}
	assert_true(entity_table_check(t));
	struct entity_table_stats st;
	entity_table_stats(t, &st);
	assert_int_equal(st.live, 10000);
	print_message("10000 position-only entities with an alias: %.0f bytes each (table's count)\n",
		      (double)st.bytes / 10000);
	struct events x = { 0 };
	entity_table_tick(t, ts("2026-12-04T12:00:00Z"), on_event, &x); /* past the default expiry */
	assert_int_equal(x.removed, 10000);
	entity_table_tick(t, ts("2026-12-04T12:02:00Z"), on_event, &x); /* tombstones forgotten */
	entity_table_stats(t, &st);
	assert_int_equal(st.live + st.stale + st.removed, 0);
	assert_true(entity_table_check(t));
	assert_null(entity_table_find(t, "icao:000001"));
	entity_table_free(t);
}

int main(void)
{
	kz_hash_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_full),     cmocka_unit_test(test_decode_refused),
		cmocka_unit_test(test_payload_check),
		cmocka_unit_test(test_order_and_partial), cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_stale_expiry_removal), cmocka_unit_test(test_caps),
		cmocka_unit_test(test_to_json),      cmocka_unit_test(test_churn), cmocka_unit_test(test_field_labels),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	kz_json_free(&doc);
	return rc;
}
