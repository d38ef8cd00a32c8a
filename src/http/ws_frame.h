/* ws_frame.h — WebSocket framing, RFC 6455 §5, for a server (ws_frame.c). */
#ifndef KZ_WS_FRAME_H
#define KZ_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { KZ_WS_CONT = 0x0, KZ_WS_TEXT = 0x1, KZ_WS_BINARY = 0x2, KZ_WS_CLOSE = 0x8, KZ_WS_PING = 0x9, KZ_WS_PONG = 0xA };
/* Close codes (§7.4.1). */
enum { KZ_WS_NORMAL = 1000, KZ_WS_GOING_AWAY = 1001, KZ_WS_PROTOCOL_ERROR = 1002, KZ_WS_UNSUPPORTED = 1003,
       KZ_WS_TOO_BIG = 1009, KZ_WS_INTERNAL = 1011 };
#define KZ_WS_MAX_HEADER 10
/* kz_http_ws_decode's answer when a callback asked it to stop (not an error). */
#define KZ_WS_STOPPED 1

struct kz_ws_dec {
	uint8_t state, hlen, need, opcode, hdr[2], mask[4], ctl[125];
	bool fin, masked, in_message, ends_message, allow_text;
	uint8_t rsv;
	unsigned mpos;
	size_t ctl_len;
	uint64_t left;       /* payload bytes of the current frame still to come */
	uint16_t code;       /* after an error: the close code */
	const char *why;     /* after an error: what was wrong */
};

struct kz_ws_dec_cbs {
	/* Payload bytes of a data message, unmasked, in order (a message may come in many
	 * calls). 0 to go on, else kz_http_ws_decode stops after these bytes and returns it. */
	int (*data)(void *arg, const uint8_t *p, size_t n);
	/* A whole control frame (close, ping, pong). The same return. */
	int (*control)(void *arg, uint8_t opcode, const uint8_t *p, size_t n);
};

void kz_http_ws_dec_init(struct kz_ws_dec *d);
/* Decodes p[0..n) (unmasking it in place). *used: the bytes taken (all of them unless a
 * callback stopped it). 0; a callback's non-zero answer; or a close code (>= 1000) after a
 * frame a server must refuse (d->why says which), after which every call returns it. */
int kz_http_ws_decode(struct kz_ws_dec *d, uint8_t *p, size_t n, size_t *used, const struct kz_ws_dec_cbs *cb,
		 void *arg);
/* A server frame's header (FIN, not masked) for len payload bytes: its length. */
size_t kz_http_ws_header(uint8_t out[KZ_WS_MAX_HEADER], uint8_t opcode, uint64_t len);

#endif
