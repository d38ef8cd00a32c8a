/* test_stix.c — STIX 2.1 validation, patterns, timestamps and TLP mapping. Every object of
 * the bundles under ../shared/data/stix validates (custom allowed: ATT&CK's x-mitre-*);
 * each malformed form is refused with its own message. */
#include "services/stix/stix.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

static struct kz_json_doc doc;

/* Validates text as kizuna does (parsed by kz_json). */
static int validate_text(const char *text, const struct stix_opts *opts, struct stix_info *info, char *err, size_t n)
{
	assert_int_equal(kz_json_parse(&doc, text, strlen(text)), 0);
	return stix_validate(kz_json_root(&doc), opts, info, err, n);
}

/* Validates a jansson tree (built or edited by a test) through its compact text. */
static int validate(json_t *o, const struct stix_opts *opts, struct stix_info *info, char *err, size_t n)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(text);
	int rc = validate_text(text, opts, info, err, n);
	free(text);
	return rc;
}

static const char *const shared_bundles[] = { "examples/apt1.json", "examples/poisonivy.json", "ics-attack.json",
					      "mobile-attack-17.1.json", "tlp2/tlp-amber.json",
					      "tlp2/tlp-amber+strict.json", "tlp2/tlp-clear.json" };

static bool known_all(void *ctx, const char *id) { return true; }

static void test_shared_bundles_validate(void **state)
{
	for (size_t b = 0; b < sizeof shared_bundles / sizeof shared_bundles[0]; b++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", KZ_STIX_DATA, shared_bundles[b]);
		FILE *f = fopen(path, "rb");
		if (!f) {
			print_message("%s: cannot open (skipping the shared data)\n", path);
			skip();
		}
		static char buf[64 << 20];
		size_t len = fread(buf, 1, sizeof buf, f);
		fclose(f);
		assert_true(len < sizeof buf);
		if (kz_json_parse(&doc, buf, len)) {
			print_message("%s: line %u: %s\n", path, doc.err_line, doc.err);
			fail();
		}
		size_t i = 0;
		struct stix_opts opts = { .allow_custom = true, .marking_known = known_all };
		KZ_JSON_FOR(o, kz_json_get(kz_json_root(&doc), "objects")) {
			struct stix_info info;
			char err[256];
			if (stix_validate(o, &opts, &info, err, sizeof err)) {
				print_message("%s object %zu (%s): %s\n", shared_bundles[b], i, kz_json_get_str(o, "id"), err);
				fail();
			}
			i++;
		}
		assert_true(i > 0);
	}
}

static const char *good_indicator =
	"{\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f\","
	"\"created\":\"2016-04-06T20:03:48.000Z\",\"modified\":\"2016-04-06T20:03:48.000Z\",\"name\":\"x\","
	"\"pattern\":\"[ipv4-addr:value = '198.51.100.1']\",\"pattern_type\":\"stix\",\"valid_from\":\"2016-01-01T00:00:00Z\","
	"\"object_marking_refs\":[\"marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da\"]}";

/* Applies one change (set key to the JSON value, or delete it when value is NULL) to the
 * good indicator and expects err to contain want. */
static void expect_refused(const char *key, const char *value, const char *want, bool allow_custom)
{
	json_t *o = json_loads(good_indicator, 0, NULL);
	assert_non_null(o);
	if (value)
		json_object_set_new(o, key, json_loads(value, JSON_DECODE_ANY, NULL));
	else
		json_object_del(o, key);
	struct stix_opts opts = { .allow_custom = allow_custom, .now_us = 1795000000000000LL /* 2026-11 */ };
	struct stix_info info;
	char err[256] = "";
	int rc = validate(o, &opts, &info, err, sizeof err);
	if (rc == 0 || !strstr(err, want)) {
		print_message("%s=%s: rc %d, err \"%s\", wanted \"%s\"\n", key, value ? value : "(deleted)", rc, err, want);
		fail();
	}
	json_decref(o);
}

static void test_good_indicator_and_tlp_rewrite(void **state)
{
	struct stix_opts opts = { 0 };
	struct stix_info info;
	char err[256] = "";
	assert_int_equal(validate_text(good_indicator, &opts, &info, err, sizeof err), 0);
	assert_string_equal(info.type, "indicator");
	assert_int_equal(info.kind, STIX_SDO);
	assert_int_equal(info.tlp, 2);
	assert_true(info.tlp_rewritten);
	assert_true(info.modified_us == info.created_us);
	/* TLP 1.0 GREEN becomes TLP 2.0 GREEN; the rest of the text stays byte for byte */
	size_t len;
	char *re = stix_rewrite(good_indicator, kz_json_root(&doc), &len);
	const char *green2 = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
	char want[2048];
	snprintf(want, sizeof want, "%.*s[\"%s\"]}", (int)(strstr(good_indicator, "[\"marking") - good_indicator),
		 good_indicator, green2);
	assert_string_equal(re, want);
	assert_int_equal(len, strlen(want));
	/* and the rewritten object is stored as it is */
	struct stix_info again;
	assert_int_equal(validate_text(re, &opts, &again, err, sizeof err), 0);
	assert_false(again.tlp_rewritten);
	assert_int_equal(again.tlp, 2);
	free(re);
}

static bool known_all_but_x(void *ctx, const char *id) { return !strstr(id, "--11111111-"); }

static void test_markings_normalised(void **state)
{
	/* a level by its 1.0 and 2.0 ids, a repeated custom marking: each kept once, in order */
	const char *green1 = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da";
	const char *green2 = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
	const char *mine = "marking-definition--22222222-2222-4222-8222-222222222222";
	json_t *o = json_loads(good_indicator, 0, NULL);
	json_object_set_new(o, "object_marking_refs", json_pack("[s,s,s,s]", mine, green1, green2, mine));
	char *text = json_dumps(o, JSON_COMPACT);
	struct stix_opts opts = { .marking_known = known_all_but_x };
	struct stix_info info;
	char err[256] = "";
	assert_int_equal(validate_text(text, &opts, &info, err, sizeof err), 0);
	assert_true(info.tlp_rewritten);
	const char *l[STIX_MAX_MARKINGS];
	assert_int_equal(stix_markings(kz_json_root(&doc), l), 2);
	assert_string_equal(l[0], mine);
	assert_string_equal(l[1], green2);
	size_t len;
	char *re = stix_rewrite(text, kz_json_root(&doc), &len);
	json_t *back = json_loads(re, 0, NULL);
	json_object_set_new(o, "object_marking_refs", json_pack("[s,s]", mine, green2));
	assert_true(json_equal(back, o));
	free(re);
	free(text);
	json_decref(back);
	/* already TLP 2.0 and without repeats: nothing to rewrite */
	text = json_dumps(o, JSON_COMPACT);
	assert_int_equal(validate_text(text, &opts, &info, err, sizeof err), 0);
	assert_false(info.tlp_rewritten);
	free(text);
	/* at most STIX_MAX_MARKINGS */
	json_t *many = json_array();
	for (int i = 0; i <= STIX_MAX_MARKINGS; i++)
		json_array_append_new(many, json_string(mine));
	json_object_set_new(o, "object_marking_refs", many);
	assert_int_equal(validate(o, &opts, &info, err, sizeof err), -1);
	assert_non_null(strstr(err, "object_marking_refs: more than 256 markings"));
	json_decref(o);
}

static void test_refusals(void **state)
{
	expect_refused("type", NULL, "type: required", false);
	expect_refused("type", "\"Indicator\"", "type: must be 3 to 250", false);
	expect_refused("type", "\"x-thing\"", "not a STIX 2.1 type", false);
	expect_refused("id", NULL, "id: required", false);
	expect_refused("id", "\"indicator--1234\"", "id: must be an identifier", false);
	expect_refused("id", "\"malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f\"", "does not start with the object's type", false);
	expect_refused("id", "\"indicator--8e2e2d2b-17d4-0cbf-938f-98ee46b3cd3f\"", "id: must be an identifier", false);
	expect_refused("spec_version", NULL, "spec_version: required", false);
	expect_refused("spec_version", "\"2.0\"", "STIX 2.0 objects are not accepted", false);
	expect_refused("created", NULL, "created: required", false);
	expect_refused("created", "\"2016-04-06 20:03:48.000Z\"", "created: not an RFC 3339", false);
	expect_refused("created", "\"2016-02-30T20:03:48.000Z\"", "created: not an RFC 3339", false);
	expect_refused("created", "\"2016-04-06T20:03:48Z\"", "precise to the millisecond", false);
	expect_refused("created", "\"2016-04-06T20:03:48.000+01:00\"", "created: not an RFC 3339", false);
	expect_refused("modified", "\"2016-04-06T20:03:47.999Z\"", "modified: must not be earlier than created", false);
	expect_refused("created_by_ref", "\"malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f\"", "must reference a identity", false);
	expect_refused("object_marking_refs", "[\"marking-definition--11111111-1111-4111-8111-111111111111\"]",
		       "does not resolve", false);
	expect_refused("object_marking_refs",
		       "[\"marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da\",\"marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1\"]",
		       "two different TLP levels", false);
	expect_refused("sample_ref", "\"not-an-id\"", "sample_ref: must be an identifier", false);
	expect_refused("x_custom", "1", "custom properties are not allowed", false);
	expect_refused("bad-name", "1", "only ASCII letters", true);
	expect_refused("confidence", "101", "confidence: must be an integer from 0 to 100", false);
	expect_refused("labels", "[1]", "labels: must be a list of strings", false);
	expect_refused("external_references", "[{\"url\":\"x\"}]", "needs a source_name", false);
	expect_refused("granular_markings", "[{\"selectors\":[],\"lang\":\"en\"}]", "non-empty selectors", false);
	expect_refused("pattern", NULL, "pattern: required", false);
	expect_refused("pattern", "\"[ipv4-addr:value = '1.2.3.4'\"", "pattern: at offset", false);
	expect_refused("pattern", "\"[ipv4-addr:value == ]\"", "expected a literal", false);
	expect_refused("valid_until", "\"2015-01-01T00:00:00Z\"", "valid_until: must be later than valid_from", false);
	expect_refused("modified", "\"9999-01-01T00:00:00.000Z\"", "more than a day in the future", false);
}

static void check_pattern(const char *p, bool ok)
{
	char err[256] = "";
	int rc = stix_pattern_check(p, strlen(p), err, sizeof err);
	if ((rc == 0) != ok) {
		print_message("pattern %s: rc %d (%s), expected %s\n", p, rc, err, ok ? "valid" : "invalid");
		fail();
	}
}

static void test_patterns(void **state)
{
	check_pattern("[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", true);
	check_pattern("[ipv4-addr:value = '198.51.100.0/24']", true);
	check_pattern("[network-traffic:dst_ref.value = '10.0.0.1' AND network-traffic:dst_port = 443]", true);
	check_pattern("[domain-name:value = 'a.example'] OR [url:value LIKE '%.example/%'] FOLLOWEDBY [x:y != true]", true);
	check_pattern("([file:size > 10] AND [file:name MATCHES '^x']) WITHIN 300 SECONDS REPEATS 5 TIMES", true);
	check_pattern("[file:name IN ('a', 'b')] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'", true);
	check_pattern("[process:extensions.'windows-process-ext'.aslr_enabled = false]", true);
	check_pattern("[email-message:to_refs[*].value = 'a@b.example']", true);
	check_pattern("[NOT EXISTS x:y] AND [artifact:payload_bin = b'aGVsbG8='] AND [x:z = h'0aff']", true);
	check_pattern("[x:y = -1.5] AND [x:z <= +3] AND [x:w ISSUBSET '10.0.0.0/8'] /* comment */", true);
	check_pattern("[x:y = 'it\\'s']", true);
	check_pattern("", false);
	check_pattern("[]", false);
	check_pattern("[ipv4-addr:value = '1.2.3.4'", false);
	check_pattern("[ipv4-addr:value = 'x] AND", false);
	check_pattern("[ipv4-addr:value = 1.2.3.4]", false);
	check_pattern("[ipv4-addr:value and '1']", false);
	check_pattern("[x:y = 007]", false);
	check_pattern("[x:y = 'a\\n']", false);
	check_pattern("[x:y = b'abc']", false);
	check_pattern("[x:y = h'abc']", false);
	check_pattern("[x:y = 1] WITHIN -5 SECONDS", false);
	check_pattern("[x:y = 1] WITHIN 0 SECONDS", false);
	check_pattern("[x:y = 1] WITHIN 99999999999999999999 SECONDS", false);
	check_pattern("[x:y = 1] REPEATS 99999999999999999999 TIMES", false);
	check_pattern("[x:y = 1] REPEATS 0 TIMES", false);
	check_pattern("[x:y = 1] REPEATS 2147483647 TIMES", true);
	check_pattern("[x:y = 1] REPEATS 2147483648 TIMES", false);
	check_pattern("[x:y = 1] START t'2016-07-01T00:00:00Z' STOP t'2016-06-01T00:00:00Z'", false);
	check_pattern("[x:y-z = 1]", false);
	check_pattern("[x:y = 1] /* unterminated", false);
	check_pattern("[x:y = 1] extra", false);
	char deep[400];
	memset(deep, '(', 100);
	strcpy(deep + 100, "[x:y = 1]");
	memset(deep + 109, ')', 100);
	deep[209] = 0;
	check_pattern(deep, false);
}

static void test_timestamps_and_tlp(void **state)
{
	int64_t us;
	int frac;
	assert_int_equal(stix_timestamp("1970-01-01T00:00:00Z", &us, &frac), 0);
	assert_true(us == 0 && frac == 0);
	assert_int_equal(stix_timestamp("2016-04-06T20:03:48.123456789Z", &us, &frac), 0);
	assert_true(us == 1459973028123456LL && frac == 9);
	assert_int_equal(stix_timestamp("2000-02-29T00:00:00.000Z", &us, NULL), 0);
	assert_int_equal(stix_timestamp("1900-02-29T00:00:00.000Z", &us, NULL), -1);
	assert_int_equal(stix_timestamp("2016-04-06T24:00:00Z", &us, NULL), -1);
	assert_int_equal(stix_timestamp("2016-04-06T20:03:48.Z", &us, NULL), -1);
	assert_int_equal(stix_timestamp("2016-04-06T20:03:48.1234567890Z", &us, NULL), -1);
	char longfrac[1100] = "2016-04-06T20:03:48.";
	memset(longfrac + 20, '1', 1000);
	strcpy(longfrac + 1020, "Z");
	assert_int_equal(stix_timestamp(longfrac, &us, NULL), -1);
	char out[64];
	stix_format_us(1459973028123456LL, out);
	assert_string_equal(out, "2016-04-06T20:03:48.123456Z");
	/* formatted by hand from 1970 to 2262, by gmtime_r outside: both agree with gmtime_r,
	 * and what is formatted parses back to the same microsecond */
	static const int64_t at[] = { 0, 1, 999999, 951782400000000LL /* 2000-02-29 */,
				      4107542400000000LL /* 2100-03-01 */, 9223372036854775LL /* the last by hand */,
				      9223372036854776LL, 253402300799999999LL /* 9999-12-31T23:59:59.999999 */,
				      -1, -86400000000LL, -62135596800000000LL /* 0001-01-01 */ };
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 100000 + (int)(sizeof at / sizeof at[0]); i++) {
		int64_t u;
		if (i < (int)(sizeof at / sizeof at[0])) {
			u = at[i];
		} else {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: 1900 to 2600 */
			u = (int64_t)(x % 22090000000000000ull) - 2208988800000000LL;
		}
		time_t tt = (time_t)(u >= 0 ? u / 1000000 : (u - 999999) / 1000000);
		struct tm tm;
		gmtime_r(&tt, &tm);
		char want[64];
		snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(u - (int64_t)tt * 1000000));
		stix_format_us(u, out);
		assert_string_equal(out, want);
		int64_t back;
		if (tm.tm_year + 1900 >= 1)
			assert_int_equal(stix_timestamp(out, &back, NULL), 0), assert_true(back == u);
	}
	assert_int_equal(stix_tlp_of("marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"), 1);
	assert_int_equal(stix_tlp_of("marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"), 4);
	assert_int_equal(stix_tlp_of("marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"), 5);
	assert_int_equal(stix_tlp_of("identity--e828b379-4e03-4974-9ac4-e53a884c97c1"), 0);
	for (int t = 1; t <= 5; t++) {
		struct stix_opts opts = { 0 };
		struct stix_info info;
		char err[256];
		assert_int_equal(validate_text(stix_tlp2_object(t), &opts, &info, err, sizeof err), 0);
		assert_string_equal(info.id, stix_tlp2_id(t));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_indicator_and_tlp_rewrite),
		cmocka_unit_test(test_markings_normalised),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_timestamps_and_tlp),
		cmocka_unit_test(test_shared_bundles_validate),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	kz_json_free(&doc);
	return rc;
}
