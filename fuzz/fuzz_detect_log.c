/* fuzz_detect_log.c — the log readers on arbitrary lines: the input's first byte picks the
 * format, the rest is split into lines; every event's observables point into the line or
 * the reader's own buffers (ASan checks), and are matched against a small index. */
#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "services/detect/detect.h"

#include <assert.h>
#include <string.h>

static struct detect_index *x;

static void on_match(void *ctx, const struct detect_match *m)
{
	(void)ctx;
	assert(m->obs->len > 0);
}

static void on_event(void *ctx, const struct detect_obs *obs, size_t n, int64_t ts, const char *line, size_t len)
{
	(void)ctx, (void)ts, (void)line, (void)len;
	for (size_t i = 0; i < n; i++) {
		assert(obs[i].kind >= DETECT_IP && obs[i].kind < DETECT_KINDS && obs[i].field);
		volatile char c = obs[i].value[obs[i].len - 1]; /* readable */
		(void)c;
	}
	(void)detect_match_event(x, obs, n, ts, on_match, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!x) {
		kz_hash_seed();
		x = detect_index_new();
		static const char b[] = "[{\"type\":\"indicator\",\"id\":\"indicator--00000000-0000-4000-8000-000000000001\","
					"\"pattern_type\":\"stix\",\"pattern\":\"[domain-name:value = 'example.com'] OR "
					"[ipv4-addr:value = '10.0.0.0/8'] OR [url:value = 'http://a.example/x']\"}]";
		struct kz_json_doc d = { 0 };
		const char *why;
		if (kz_json_parse(&d, b, sizeof b - 1) == 0)
			(void)detect_add_stix(x, kz_json_root(&d) + 1, "", "fuzz", &why);
		kz_json_free(&d);
	}
	if (size < 1)
		return 0;
	struct detect_reader *r = detect_reader_new((enum detect_format)(data[0] % 5), on_event, NULL);
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		(void)detect_reader_line(r, p, n);
		p += n + 1;
	}
	detect_reader_free(r);
	return 0;
}
