/* fuzz_json.c — the strict JSON parser against jansson (JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY) on arbitrary input: both accept or both refuse (except where kz_json.h
 * says they differ: integers beyond 64 bits and reals beyond a double, which jansson
 * refuses while parsing and kz_json only when asked, and a NUL byte after the value, where
 * jansson stops reading and kz_json refuses), and what both accept is the same
 * tree: types, strings, member names and order, numbers, and spans that re-parse to the
 * same value; and its compact form (kz_json_compact) is the same value. */
#include "base/kz_json.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct kz_json_doc doc;
static const char *text;

static void same(const struct kz_json *k, const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_NULL: assert(k->type == KZ_JSON_NULL); break;
	case JSON_TRUE: assert(k->type == KZ_JSON_TRUE); break;
	case JSON_FALSE: assert(k->type == KZ_JSON_FALSE); break;
	case JSON_INTEGER: {
		long long v;
		assert(k->type == KZ_JSON_NUMBER && kz_json_int(k, &v) && v == json_integer_value(j));
		break;
	}
	case JSON_REAL: {
		double v;
		assert(k->type == KZ_JSON_NUMBER && k->real && kz_json_num(k, &v) && v == json_real_value(j));
		break;
	}
	case JSON_STRING:
		assert(k->type == KZ_JSON_STRING && k->len == json_string_length(j) &&
		       memcmp(k->s, json_string_value(j), k->len) == 0 && k->s[k->len] == 0);
		break;
	case JSON_ARRAY: {
		assert(k->type == KZ_JSON_ARRAY && k->len == json_array_size(j));
		size_t i = 0;
		KZ_JSON_FOR(m, k) {
			assert(!m->key);
			same(m, json_array_get(j, i++));
		}
		assert(i == k->len);
		break;
	}
	case JSON_OBJECT: {
		assert(k->type == KZ_JSON_OBJECT && k->len == json_object_size(j));
		KZ_JSON_FOR(m, k) {
			assert(m->key && strlen(m->key) == m->klen);
			same(m, json_object_get(j, m->key));
			assert(kz_json_get(k, m->key) == m);
		}
		break;
	}
	}
	/* the span is the value's text: it parses alone to the same value */
	assert(k->off < k->end);
	json_t *again = json_loadb(text + k->off, k->end - k->off, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	assert(again && json_equal(again, j));
	json_decref(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	text = (const char *)data;
	json_error_t je;
	json_t *j = json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	int rc = kz_json_parse(&doc, text, size);
	if (!j) {
		bool numeric = strstr(je.text, "too big") || strstr(je.text, "overflow");
		assert(rc != 0 || numeric);
		if (rc)
			assert(doc.err[0] && kz_json_root(&doc) == NULL);
	} else {
		assert(rc == 0 || memchr(data, 0, size));
		if (rc == 0) {
			same(kz_json_root(&doc), j);
			/* without its white space (kz_json_compact) it is the same value */
			char *c = malloc(size ? size : 1);
			assert(c);
			size_t cn = kz_json_compact(text, size, c);
			assert(cn <= size);
			json_t *cj = json_loadb(c, cn, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
			assert(cj && json_equal(cj, j));
			json_decref(cj);
			free(c);
		}
		json_decref(j);
	}
	kz_json_trim(&doc, 1 << 20);
	return 0;
}
