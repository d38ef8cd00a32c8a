/* ws_frame.c — WebSocket framing (RFC 6455 §5), the server's side: frames from a client are
 * decoded as the bytes come (any split), payloads unmasked in place and handed on without
 * being gathered; frames to a client are unmasked, FIN set, one header before the payload.
 *
 * Decoder states: HEAD (2 bytes) -> EXT (2 or 8 length bytes) -> MASK (4) -> PAYLOAD
 *   -> HEAD ...; an error is final (the connection closes with its code). */
#include "http/ws_frame.h"

#include <string.h>

enum { S_HEAD, S_EXT, S_MASK, S_PAYLOAD, S_FAILED };

void kz_http_ws_dec_init(struct kz_ws_dec *d)
{
	memset(d, 0, sizeof *d);
}

static int fail(struct kz_ws_dec *d, int code, const char *why)
{
	d->state = S_FAILED;
	d->code = (uint16_t)code;
	d->why = why;
	return code;
}

/* The header is complete: checks it, as §5.2 and §5.5 require of a server. */
static int header_done(struct kz_ws_dec *d)
{
	uint8_t op = d->opcode;
	bool control = op & 0x8;
	if (control) {
		if (op != KZ_WS_CLOSE && op != KZ_WS_PING && op != KZ_WS_PONG)
			return fail(d, KZ_WS_PROTOCOL_ERROR, "a reserved control opcode");
		if (!d->fin || d->left > 125)
			return fail(d, KZ_WS_PROTOCOL_ERROR, "a fragmented or longer than 125 bytes control frame");
		d->ctl_len = 0;
	} else if (op == KZ_WS_CONT) {
		if (!d->in_message)
			return fail(d, KZ_WS_PROTOCOL_ERROR, "a continuation frame outside a message");
	} else if (op == KZ_WS_TEXT || op == KZ_WS_BINARY) {
		if (d->in_message)
			return fail(d, KZ_WS_PROTOCOL_ERROR, "a new message before the last one ended");
		if (op == KZ_WS_TEXT && !d->allow_text)
			return fail(d, KZ_WS_UNSUPPORTED, "a text frame: this endpoint takes binary frames only");
		d->in_message = true;
	} else {
		return fail(d, KZ_WS_PROTOCOL_ERROR, "a reserved data opcode");
	}
	if (!control && d->fin)
		d->ends_message = true;
	d->mpos = 0;
	return 0;
}

int kz_http_ws_decode(struct kz_ws_dec *d, uint8_t *p, size_t n, size_t *used, const struct kz_ws_dec_cbs *cb,
		 void *arg)
{
	size_t i = 0;
	*used = 0;
	if (d->state == S_FAILED)
		return d->code;
	while (i < n) {
		switch (d->state) {
		case S_HEAD:
			d->hdr[d->hlen++] = p[i++];
			if (d->hlen < 2)
				break;
			d->fin = d->hdr[0] & 0x80;
			d->rsv = d->hdr[0] & 0x70;
			d->opcode = d->hdr[0] & 0x0F;
			d->masked = d->hdr[1] & 0x80;
			d->left = d->hdr[1] & 0x7F;
			d->ends_message = false;
			d->hlen = 0;
			/* at once: an unmasked frame has no mask key to wait for */
			if (d->rsv)
				return *used = i, fail(d, KZ_WS_PROTOCOL_ERROR, "a frame with RSV bits set (no extension was agreed)");
			if (!d->masked)
				return *used = i, fail(d, KZ_WS_PROTOCOL_ERROR, "a client frame without a mask (RFC 6455 5.1)");
			d->need = d->left == 126 ? 2 : d->left == 127 ? 8 : 0;
			d->left = d->need ? 0 : d->left;
			d->state = d->need ? S_EXT : S_MASK;
			break;
		case S_EXT:
			d->left = d->left << 8 | p[i++];
			if (--d->need)
				break;
			if (d->left >> 63)
				return *used = i, fail(d, KZ_WS_PROTOCOL_ERROR, "a 64-bit length with its top bit set");
			d->state = S_MASK;
			break;
		case S_MASK:
			d->mask[d->hlen++] = p[i++];
			if (d->hlen < 4)
				break;
			d->hlen = 0;
			if (header_done(d))
				return *used = i, d->code;
			d->state = S_PAYLOAD;
			break;
		case S_PAYLOAD: {
			size_t k = n - i < d->left ? n - i : (size_t)d->left;
			uint8_t *q = p + i;
			for (size_t j = 0; j < k; j++)
				q[j] ^= d->mask[(d->mpos + j) & 3];
			d->mpos = (d->mpos + (unsigned)k) & 3;
			d->left -= k;
			i += k;
			if (d->opcode & 0x8) {
				memcpy(d->ctl + d->ctl_len, q, k);
				d->ctl_len += k;
			} else if (k) {
				*used = i;
				int rc = cb->data(arg, q, k);
				if (rc)
					return rc;
			}
			break;
		}
		}
		if (d->state == S_PAYLOAD && d->left == 0) {
			d->state = S_HEAD;
			*used = i;
			if (d->opcode & 0x8) {
				int rc = cb->control(arg, d->opcode, d->ctl, d->ctl_len);
				if (rc)
					return rc;
			} else if (d->ends_message) {
				d->in_message = false;
			}
		}
	}
	*used = i;
	return 0;
}

size_t kz_http_ws_header(uint8_t out[KZ_WS_MAX_HEADER], uint8_t opcode, uint64_t len)
{
	out[0] = (uint8_t)(0x80 | (opcode & 0x0F));
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xFFFF) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int k = 0; k < 8; k++)
		out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
	return 10;
}
