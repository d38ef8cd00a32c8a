/* test_kz_json.c — the strict JSON parser: the tree's shape (pre-order, skip, spans),
 * decoding (escapes, surrogate pairs, UTF-8), numbers, and every refusal with its message.
 * fuzz_json checks it against jansson on arbitrary input. */
#include "base/kz_json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct kz_json_doc doc;

static const struct kz_json *parse(const char *s)
{
	int rc = kz_json_parse(&doc, s, strlen(s));
	if (rc)
		print_message("%s: %s at %zu\n", s, doc.err, doc.err_off);
	assert_int_equal(rc, 0);
	return kz_json_root(&doc);
}

static void refused(const char *s, size_t n, const char *want)
{
	int rc = kz_json_parse(&doc, s, n);
	if (rc == 0 || !strstr(doc.err, want)) {
		print_message("%.*s: rc %d err \"%s\", wanted \"%s\"\n", (int)n, s, rc, doc.err, want);
		fail();
	}
	assert_null(kz_json_root(&doc));
}

static void test_tree_shape_and_spans(void **state)
{
	const char *s = " {\"a\": [1, {\"b\": null}, \"x\"], \"c\": true, \"d\": {}} ";
	const struct kz_json *r = parse(s);
	assert_int_equal(r->type, KZ_JSON_OBJECT);
	assert_int_equal(r->len, 3);
	assert_int_equal(r->skip, 8); /* obj, arr, 1, obj, null, "x", true, {} */
	assert_int_equal(r->off, 1);
	assert_int_equal(r->end, strlen(s) - 1);
	const struct kz_json *a = kz_json_get(r, "a");
	assert_int_equal(a->type, KZ_JSON_ARRAY);
	assert_int_equal(a->len, 3);
	assert_int_equal(a->skip, 5);
	assert_memory_equal(s + a->off, "[1, {\"b\": null}, \"x\"]", a->end - a->off);
	const struct kz_json *o = kz_json_at(a, 1);
	assert_int_equal(o->type, KZ_JSON_OBJECT);
	assert_int_equal(kz_json_get(o, "b")->type, KZ_JSON_NULL);
	assert_string_equal(kz_json_str(kz_json_at(a, 2)), "x");
	assert_null(kz_json_at(a, 3));
	assert_int_equal(kz_json_get(r, "c")->type, KZ_JSON_TRUE);
	const struct kz_json *d = kz_json_get(r, "d");
	assert_int_equal(d->len, 0);
	assert_int_equal(d->skip, 1);
	assert_null(kz_json_get(r, "e"));
	assert_null(kz_json_get(a, "a")); /* not an object */
	size_t k = 0;
	const char *names[] = { "a", "c", "d" };
	KZ_JSON_FOR(m, r) {
		assert_string_equal(m->key, names[k]);
		k++;
	}
	assert_int_equal(k, 3);
	KZ_JSON_FOR(m, kz_json_get(r, "c")) {
		fail(); /* a scalar has no members */
	}
	const struct kz_json *none = kz_json_get(r, "nothing");
	KZ_JSON_FOR(m, none) {
		fail(); /* nor does a missing value */
	}
}

static void test_scalars_at_top(void **state)
{
	assert_int_equal(parse("null")->type, KZ_JSON_NULL);
	assert_int_equal(parse(" false ")->type, KZ_JSON_FALSE);
	assert_string_equal(kz_json_str(parse("\"\"")), "");
	long long v;
	assert_true(kz_json_int(parse("-0"), &v) && v == 0);
	assert_true(kz_json_int(parse("9223372036854775807"), &v) && v == 9223372036854775807LL);
	assert_false(kz_json_int(parse("9223372036854775808"), &v)); /* parsed, does not fit */
	assert_false(kz_json_int(parse("1.0"), &v));
	assert_false(kz_json_int(parse("1e2"), &v));
	double d;
	assert_true(kz_json_num(parse("-12.5E+1"), &d) && d == -125.0);
	assert_false(kz_json_num(parse("\"1\""), &d));
	assert_string_equal(parse("-12.5E+1")->s, "-12.5E+1");
}

static void test_string_decoding(void **state)
{
	const struct kz_json *r = parse("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\\ud83d\\ude00\", \"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]");
	assert_string_equal(kz_json_str(kz_json_at(r, 0)), "a\"b\\c/d\b\f\n\r\t");
	assert_string_equal(kz_json_str(kz_json_at(r, 1)), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	assert_int_equal(kz_json_at(r, 1)->len, 9);
	assert_string_equal(kz_json_str(kz_json_at(r, 2)), "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	/* member names are decoded too */
	r = parse("{\"k\\u0041\": 1}");
	assert_non_null(kz_json_get(r, "kA"));
	assert_int_equal(kz_json_get(r, "kA")->klen, 2);
}

static void test_refusals(void **state)
{
	refused("", 0, "empty input");
	refused("   ", 3, "empty input");
	refused("[1,]", 4, "invalid token");
	refused("[1 2]", 5, "',' or ']' expected");
	refused("{\"a\" 1}", 7, "':' expected");
	refused("{\"a\":1,}", 8, "string or '}' expected");
	refused("{1:2}", 5, "string or '}' expected");
	refused("{\"a\":1 \"b\":2}", 13, "',' or '}' expected");
	refused("[1] x", 5, "end of input expected");
	refused("[", 1, "unexpected end of input");
	refused("\"abc", 4, "unterminated string");
	refused("\"a\tb\"", 5, "control character 0x09");
	refused("\"\\x\"", 4, "invalid escape \\x");
	refused("\"\\u12g4\"", 8, "invalid \\u escape");
	refused("\"\\ud800\"", 8, "lone surrogate");
	refused("\"\\udc00\"", 8, "lone surrogate");
	refused("\"\\ud800\\u0041\"", 14, "lone surrogate");
	refused("\"\\u0000\"", 8, "\\u0000 is not allowed");
	refused("\"\xc0\xaf\"", 4, "invalid UTF-8"); /* overlong '/' */
	refused("\"\xed\xa0\x80\"", 5, "invalid UTF-8"); /* a surrogate in UTF-8 */
	refused("\"\xf4\x90\x80\x80\"", 6, "invalid UTF-8"); /* above U+10FFFF */
	refused("\"\xe2\x82\"", 4, "invalid UTF-8");        /* cut short */
	refused("\"a\0b\"", 5, "control character 0x00");
	refused("01", 2, "leading zero");
	refused("-", 1, "invalid number");
	refused("1.", 2, "digits expected after '.'");
	refused("1e+", 3, "digits expected in the exponent");
	refused(".5", 2, "invalid token");
	refused("tru", 3, "invalid token");
	refused("nul", 3, "invalid token");
	refused("{\"a\":1,\"a\":2}", 13, "duplicate object key \"a\"");
	refused("{\"a\\u0062\":1,\"ab\":2}", 20, "duplicate object key \"ab\"");
	/* the position of the error: line and column */
	refused("{\n  \"a\": x}", 11, "invalid token");
	assert_int_equal(doc.err_line, 2);
	assert_int_equal(doc.err_col, 8);
	assert_int_equal(doc.err_off, 9);
}

static void test_duplicates_in_large_objects(void **state)
{
	char buf[4096];
	size_t l = 0;
	l += (size_t)snprintf(buf + l, sizeof buf - l, "{");
	for (int i = 0; i < 100; i++)
		l += (size_t)snprintf(buf + l, sizeof buf - l, "%s\"k%d\":%d", i ? "," : "", i, i);
	snprintf(buf + l, sizeof buf - l, "}");
	const struct kz_json *r = parse(buf);
	assert_int_equal(r->len, 100);
	long long v;
	assert_true(kz_json_int(kz_json_get(r, "k77"), &v) && v == 77);
	snprintf(buf + l, sizeof buf - l, ",\"k42\":0}");
	refused(buf, strlen(buf), "duplicate object key \"k42\"");
}

static void test_depth_limit(void **state)
{
	size_t n = KZ_JSON_MAX_DEPTH + 1;
	char *s = malloc(2 * n + 1);
	memset(s, '[', n);
	memset(s + n, ']', n);
	refused(s, 2 * n, "nested more than");
	s[2 * n - 1] = 0; /* without the outermost pair: exactly the limit */
	const struct kz_json *r = parse(s + 1);
	assert_int_equal(r->skip, KZ_JSON_MAX_DEPTH);
	free(s);
}

static void test_reuse_and_trim(void **state)
{
	/* a big document, then a small one: the buffers are reused; trim gives them back */
	size_t n = 200000;
	char *s = malloc(n * 4 + 3);
	size_t l = 0;
	s[l++] = '[';
	for (size_t i = 0; i < n; i++) {
		s[l++] = '1';
		s[l++] = i + 1 < n ? ',' : ']';
	}
	s[l] = 0;
	const struct kz_json *r = parse(s);
	assert_int_equal(r->len, n);
	assert_int_equal(r->skip, n + 1);
	assert_int_equal(kz_json_at(r, n - 1)->off, l - 2);
	assert_true(doc.v_mapped >= n * sizeof *doc.v); /* 9.6 MB of values: mapped, not malloc'd */
	free(s);
	/* a string of 3 MB with an escape at its end: the decoded strings mapped too */
	size_t sl = 3u << 20;
	s = malloc(sl + 16);
	s[0] = '[', s[1] = '"';
	memset(s + 2, 'a', sl);
	memcpy(s + 2 + sl, "\\n\"]", 5);
	r = parse(s);
	const struct kz_json *str = kz_json_at(r, 0);
	assert_int_equal(str->len, sl + 1);
	assert_int_equal(str->s[sl - 1], 'a');
	assert_int_equal(str->s[sl], '\n');
	assert_true(doc.str_mapped > sl);
	free(s);
	r = parse("{\"x\":\"y\"}");
	assert_string_equal(kz_json_get_str(r, "x"), "y");
	kz_json_trim(&doc, 4096);
	r = parse("[true]");
	assert_int_equal(kz_json_at(r, 0)->type, KZ_JSON_TRUE);
	kz_json_free(&doc);
	r = parse("[false]");
	assert_int_equal(kz_json_at(r, 0)->type, KZ_JSON_FALSE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tree_shape_and_spans), cmocka_unit_test(test_scalars_at_top),
		cmocka_unit_test(test_string_decoding),     cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_duplicates_in_large_objects), cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_reuse_and_trim),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	kz_json_free(&doc);
	return rc;
}
