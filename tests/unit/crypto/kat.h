/* kat.h — reading the known-answer files of ../shared/data/pqc (KZ_PQC_DATA) in the crypto
 * unit tests: JSON through jansson, hex fields into buffers, and the skip when the files are
 * not there. Include after cmocka.h. */
#ifndef KZ_TEST_KAT_H
#define KZ_TEST_KAT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PQC KZ_PQC_DATA

static json_t *load(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", PQC, name);
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e);
	if (!j)
		fail_msg("%s:%d: %s", path, e.line, e.text);
	return j;
}

/* Hex string of a JSON field (either case) into a new buffer; *n its length. */
static uint8_t *hex(json_t *t, const char *key, size_t *n)
{
	const char *s = json_string_value(json_object_get(t, key));
	assert_non_null(s);
	size_t l = strlen(s);
	assert_int_equal(l % 2, 0);
	uint8_t *b = malloc(l / 2 + 1);
	for (size_t i = 0; i < l / 2; i++) {
		unsigned v;
		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		b[i] = (uint8_t)v;
	}
	*n = l / 2;
	return b;
}

/* 0 when PQC/name exists; else says the test is skipped and returns 77 (ctest's skip). */
static int kat_present(const char *name)
{
	char probe[1024];
	snprintf(probe, sizeof probe, "%s/%s", PQC, name);
	FILE *f = fopen(probe, "r");
	if (!f) {
		fprintf(stderr, "SKIPPED: %s not found (the known-answer files live in ../shared/data/pqc)\n", probe);
		return 77;
	}
	fclose(f);
	return 0;
}

#endif
