/* fuzz_detect_pos.c — what detection saves to resume after a restart, read from arbitrary
 * bytes:
 * - data_dir/detect.pos is accepted only in its one canonical form, so an accepted text is
 *   exactly what detect_pos_format writes for its value, and every value formats into text
 *   that parses back to it;
 * - data_dir/detect.headers is given to readers only when well-formed and saved at or
 *   before the position asked for; each header given, fed to a reader line by line, is written back by
 *   detect_headers_add into a file that parses to the same readers' state. */
#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "services/detect/detect.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void on_event(void *ctx, const struct detect_obs *o, size_t n, int64_t ts, const char *line, size_t len)
{
	(void)ctx, (void)o, (void)n, (void)ts, (void)line, (void)len;
}

static void feed(struct detect_reader *r, const char *h, size_t len)
{
	while (len) {
		const char *nl = memchr(h, '\n', len);
		size_t l = nl ? (size_t)(nl - h) : len;
		if (l)
			(void)detect_reader_line(r, h, l);
		h += nl ? l + 1 : l;
		len -= nl ? l + 1 : l;
	}
}

struct given {
	struct kz_buf out, scratch, again;
	long n;
};

/* the header as a reader takes it, written back; then that, into a fresh reader, written
 * back again: the same text */
static void on_header(void *ctx, const char *topic, size_t topic_len, const char *h, size_t len)
{
	struct given *g = ctx;
	assert(topic_len == strlen(topic) && len == strlen(h) && h[0] == '#');
	struct detect_reader *a = detect_reader_new(DETECT_AUTO, on_event, NULL), *b = detect_reader_new(DETECT_AUTO, on_event, NULL);
	assert(a && b);
	feed(a, h, len);
	kz_buf_reset(&g->again);
	assert(detect_headers_add(&g->out, topic, a, &g->scratch) == 0);
	assert(detect_reader_header(a, &g->again) == 0);
	feed(b, (const char *)kz_buf_head(&g->again), g->again.len);
	kz_buf_reset(&g->scratch);
	assert(detect_reader_header(b, &g->scratch) == 0);
	assert(g->scratch.len == g->again.len && !memcmp(kz_buf_head(&g->scratch), kz_buf_head(&g->again), g->again.len));
	detect_reader_free(a);
	detect_reader_free(b);
	g->n++;
}

static void none(void *ctx, const char *topic, size_t topic_len, const char *h, size_t len)
{
	(void)ctx, (void)topic, (void)topic_len, (void)h, (void)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t v = 0;
	char out[DETECT_POS_MAX];
	if (detect_pos_parse((const char *)data, size, &v) == 0) {
		assert(v != 0);
		size_t n = detect_pos_format(v, out);
		assert(n == size && memcmp(out, data, n) == 0);
	}
	if (size >= 8) { /* any value, from the input's first bytes */
		memcpy(&v, data, 8);
		size_t n = detect_pos_format(v, out);
		uint64_t back = 0;
		assert(n > 0 && n < DETECT_POS_MAX);
		assert(detect_pos_parse(out, n, &back) == (v ? 0 : -1));
		assert(!v || back == v);
	}

	/* the headers, at the position the file names (read as JSON first, to learn it) */
	struct kz_json_doc doc = { 0 };
	long long at = 0;
	if (!kz_json_parse(&doc, (const char *)data, size) && kz_json_int(kz_json_get(kz_json_root(&doc), "next_seq"), &at) && at > 0) {
		struct given g = { .n = 0 };
		kz_buf_init(&g.out, 0), kz_buf_init(&g.scratch, 0), kz_buf_init(&g.again, 0);
		assert(detect_headers_begin(&g.out, (uint64_t)at) == 0);
		long n = detect_headers_parse((const char *)data, size, (uint64_t)at, on_header, &g);
		assert(n == -1 ? g.n == 0 : n == g.n);
		assert(detect_headers_end(&g.out) == 0);
		if (n >= 0) /* what was written back reads again */
			assert(detect_headers_parse((const char *)kz_buf_head(&g.out), g.out.len, (uint64_t)at, none, NULL) >= 0);
		if (at > 1) /* before its position: nothing; after it, the same */
			assert(detect_headers_parse((const char *)data, size, (uint64_t)at - 1, none, NULL) == -1);
		if ((uint64_t)at < UINT64_MAX)
			assert(detect_headers_parse((const char *)data, size, (uint64_t)at + 1, none, NULL) == n);
		kz_buf_cleanup(&g.out), kz_buf_cleanup(&g.scratch), kz_buf_cleanup(&g.again);
	}
	kz_json_free(&doc);
	return 0;
}
