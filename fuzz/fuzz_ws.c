/* fuzz_ws.c — the WebSocket frame decoder (src/http/ws_frame.c) on arbitrary bytes: it must
 * never read or write out of bounds, and decoding the input in chunks of any size must give
 * exactly what decoding it whole gives (the same payload stream, control frames and end).
 * The first byte chooses the chunk size. */
#include "http/ws_frame.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct got {
	uint8_t *data;
	size_t n, cap;
	uint8_t ops[4096];
	size_t n_ops;
};

static void put(struct got *g, const uint8_t *p, size_t n)
{
	if (!n)
		return;
	if (g->n + n > g->cap) {
		g->cap = (g->n + n) * 2;
		g->data = realloc(g->data, g->cap);
		assert(g->data);
	}
	memcpy(g->data + g->n, p, n);
	g->n += n;
}

static int on_data(void *arg, const uint8_t *p, size_t n)
{
	put(arg, p, n);
	return 0;
}

static int on_control(void *arg, uint8_t op, const uint8_t *p, size_t n)
{
	struct got *g = arg;
	assert(n <= 125);
	if (g->n_ops < sizeof g->ops)
		g->ops[g->n_ops++] = op;
	put(g, p, n);
	return op == KZ_WS_CLOSE ? KZ_WS_STOPPED : 0; /* as the server does: nothing after a close */
}

static const struct kz_ws_dec_cbs cbs = { on_data, on_control };

static int decode(const uint8_t *in, size_t size, size_t chunk, struct got *g)
{
	uint8_t *buf = malloc(size ? size : 1);
	memcpy(buf, in, size);
	struct kz_ws_dec d;
	kz_http_ws_dec_init(&d);
	int rc = 0;
	size_t off = 0;
	while (off < size && rc == 0) {
		size_t n = size - off < chunk ? size - off : chunk, used = 0;
		rc = kz_http_ws_decode(&d, buf + off, n, &used, &cbs, g);
		assert(used <= n);
		assert(rc != 0 || used == n);
		off += used;
	}
	free(buf);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	struct got whole = { 0 }, parts = { 0 };
	int a = decode(data, size, size ? size : 1, &whole);
	int b = decode(data, size, chunk, &parts);
	assert(a == b);
	assert(whole.n == parts.n && (!whole.n || memcmp(whole.data, parts.data, whole.n) == 0));
	assert(whole.n_ops == parts.n_ops && memcmp(whole.ops, parts.ops, whole.n_ops) == 0);
	free(whole.data);
	free(parts.data);
	/* the encoder's header, decoded back after a mask is added */
	uint8_t hdr[KZ_WS_MAX_HEADER + 4 + 8];
	uint64_t len = 0;
	for (size_t i = 0; i < size && i < 3; i++)
		len = len << 8 | data[i];
	size_t hl = kz_http_ws_header(hdr, KZ_WS_BINARY, len);
	assert(hl == (len < 126 ? 2u : len <= 0xFFFF ? 4u : 10u));
	hdr[1] |= 0x80;
	memset(hdr + hl, 0, 4);
	struct kz_ws_dec d;
	kz_http_ws_dec_init(&d);
	size_t used = 0;
	struct got g = { 0 };
	assert(kz_http_ws_decode(&d, hdr, hl + 4, &used, &cbs, &g) == 0 && used == hl + 4 && d.left == len);
	free(g.data);
	return 0;
}
