/* detect_saved.c — what the node saves so that matching resumes after a restart: the log
 * position (data_dir/detect.pos) and the Zeek headers the topics' readers held there
 * (data_dir/detect.headers). Both are read back strictly: anything else is ignored. */
#include "services/detect/detect.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_json.h"
#include "base/kz_utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---------- the position (data_dir/detect.pos) ---------- */

int detect_pos_parse(const char *text, size_t n, uint64_t *seq)
{
	static const char head[] = "next_seq ";
	const size_t h = sizeof head - 1;
	if (n < h + 2 || n > h + 21 || memcmp(text, head, h) || text[n - 1] != '\n' || text[h] == '0')
		return -1;
	uint64_t v = 0;
	for (size_t i = h; i < n - 1; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		unsigned d = (unsigned)(text[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*seq = v;
	return 0;
}

size_t detect_pos_format(uint64_t seq, char out[DETECT_POS_MAX])
{
	int n = snprintf(out, DETECT_POS_MAX, "next_seq %" PRIu64 "\n", seq);
	return n > 0 ? (size_t)n : 0;
}

/* ---------- the topics' headers (data_dir/detect.headers) ---------- */

int detect_headers_begin(struct kz_buf *b, uint64_t seq)
{
	kz_buf_reset(b);
	return kz_buf_appendf(b, "{\"next_seq\":%" PRIu64 ",\"topics\":[", seq) ? KZ_ENOMEM : 0;
}

int detect_headers_add(struct kz_buf *b, const char *topic, const struct detect_reader *r, struct kz_buf *scratch)
{
	kz_buf_reset(scratch);
	if (detect_reader_header(r, scratch) || kz_buf_append(scratch, "", 1))
		return KZ_ENOMEM;
	/* none; or not UTF-8 (a sensor's bytes), which JSON cannot carry: that topic is read
	 * without its header after a restart, as before detect.headers */
	if (scratch->len == 1 || !kz_utf8_valid(kz_buf_head(scratch), scratch->len - 1, false) ||
	    !kz_utf8_valid((const uint8_t *)topic, strlen(topic), false))
		return 0;
	const char *open = b->len && kz_buf_head(b)[b->len - 1] == '[' ? "{\"topic\":" : ",{\"topic\":";
	return kz_buf_append(b, open, strlen(open)) || kz_json_put_str(b, topic) ||
			       kz_buf_append(b, ",\"header\":", 10) ||
			       kz_json_put_str(b, (const char *)kz_buf_head(scratch)) || kz_buf_append(b, "}", 1)
		       ? KZ_ENOMEM
		       : 0;
}

bool detect_headers_same(const struct kz_buf *a, const struct kz_buf *b)
{
	const char *x = a->len ? memchr(kz_buf_head(a), ',', a->len) : NULL;
	const char *y = b->len ? memchr(kz_buf_head(b), ',', b->len) : NULL;
	size_t xn = x ? a->len - (size_t)(x - (const char *)kz_buf_head(a)) : 0;
	size_t yn = y ? b->len - (size_t)(y - (const char *)kz_buf_head(b)) : 0;
	return x && y && xn == yn && !memcmp(x, y, xn);
}

int detect_headers_end(struct kz_buf *b) { return kz_buf_append(b, "]}\n", 3) ? KZ_ENOMEM : 0; }

long detect_headers_parse(const char *text, size_t n, uint64_t seq, detect_header_fn fn, void *ctx)
{
	struct kz_json_doc doc = { 0 };
	long long at = 0;
	const struct kz_json *root, *topics;
	long given = -1;
	if (kz_json_parse(&doc, text, n) || !(root = kz_json_root(&doc)) ||
	    !kz_json_int(kz_json_get(root, "next_seq"), &at) || at <= 0 || (uint64_t)at > seq ||
	    !kz_json_is(topics = kz_json_get(root, "topics"), KZ_JSON_ARRAY))
		goto out;
	KZ_JSON_FOR(e, topics) /* all well-formed first: none is given from a file that is not */
	{
		const struct kz_json *t = kz_json_get(e, "topic"), *h = kz_json_get(e, "header");
		if (!kz_json_is(t, KZ_JSON_STRING) || !kz_json_is(h, KZ_JSON_STRING) || !t->len || !h->len ||
		    memchr(t->s, 0, t->len) || memchr(h->s, 0, h->len) || h->s[0] != '#')
			goto out;
	}
	given = 0;
	KZ_JSON_FOR(e, topics)
	{
		const struct kz_json *t = kz_json_get(e, "topic"), *h = kz_json_get(e, "header");
		fn(ctx, t->s, t->len, h->s, h->len);
		given++;
	}
out:
	kz_json_free(&doc);
	return given;
}
