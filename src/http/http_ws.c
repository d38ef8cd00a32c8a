/* http_ws.c — WebSocket connections on the HTTPS listener (RFC 6455), for MQTT over
 * WebSocket (docs/MQTT.md "Over WebSocket"). An HTTP/1.1 GET with the opening handshake
 * (§4.2.1) is answered 101 with the agreed subprotocol; h2o then hands over its TLS socket
 * (h2o_http1_upgrade) and the bytes are ours: frames decoded by ws_frame.c, the binary
 * payloads handed to the user as a byte stream, the user's bytes sent as binary frames.
 *
 *   OPENING (101 being written) --socket handed over--> OPEN --kz_http_ws_move--> MOVING (socket
 *   exported, on its way to another worker's loop) --imported there--> OPEN
 *   OPEN --close frame, error, or kz_http_ws_close--> CLOSING (what is queued, then a close
 *   frame, is written) --> closed() told once, the socket closed, the connection freed.
 *
 * Everything runs on the worker whose loop holds the socket; a move is the only crossing
 * (h2o_socket_export/import: the descriptor and the TLS state travel, through the target
 * worker's handoff wake-up). */
#include "http/http.h"
#include "http/http_internal.h"
#include "http/ws_frame.h"
#include "base/kz_buf.h"
#include "base/kz_log.h"

#include <h2o.h>
#include <h2o/http1.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kz_ws {
	h2o_socket_t *sock;
	struct kz_http *h;
	unsigned worker;
	struct kz_ws_dec dec;
	const struct kz_ws_cbs *cbs;
	void *ctx;             /* of open() */
	void *user;            /* open()'s answer */
	struct kz_buf out;     /* the user's bytes, not framed yet */
	struct kz_buf wq;      /* frames waiting for the socket */
	struct kz_buf wbuf;    /* frames being written */
	h2o_socket_export_t exp;
	int move_to;           /* -1; else a move waits for the write in progress */
	bool opened, closing, told, held, in_read;
	struct hworker *moved_in; /* counted in its nws while open there */
	struct kz_ws_peer peer;
	char id[512], serial[80], issuer[160], addr[64], group[32], suite[64];
};

static void on_read(h2o_socket_t *sock, const char *err);
static void kick(struct kz_ws *ws);

static void tell_closed(struct kz_ws *ws)
{
	if (ws->told)
		return;
	ws->told = true;
	if (ws->opened && ws->cbs->closed)
		ws->cbs->closed(ws->user);
}

static void ws_free(struct kz_ws *ws)
{
	if (ws->moved_in)
		atomic_fetch_sub(&ws->moved_in->nws, 1);
	kz_buf_cleanup(&ws->out);
	kz_buf_cleanup(&ws->wq);
	kz_buf_cleanup(&ws->wbuf);
	free(ws);
}

/* The end: the user told, the socket closed, ws freed (nothing of it is used after). */
static void finish(struct kz_ws *ws)
{
	tell_closed(ws);
	if (ws->sock) {
		ws->sock->data = NULL;
		h2o_socket_close(ws->sock);
		ws->sock = NULL;
	}
	ws_free(ws);
}

static void frame(struct kz_ws *ws, uint8_t op, const uint8_t *p, size_t n)
{
	uint8_t hdr[KZ_WS_MAX_HEADER];
	size_t hl = kz_http_ws_header(hdr, op, n);
	if (kz_buf_append(&ws->wq, hdr, hl) || (n && kz_buf_append(&ws->wq, p, n)))
		ws->closing = true; /* out of memory: what is written so far goes, then the end */
}

static void close_frame(struct kz_ws *ws, uint16_t code, const char *why)
{
	uint8_t p[2 + 123];
	size_t wl = why ? strlen(why) : 0;
	if (wl > 123)
		wl = 123;
	p[0] = (uint8_t)(code >> 8);
	p[1] = (uint8_t)code;
	memcpy(p + 2, why ? why : "", wl);
	frame(ws, KZ_WS_CLOSE, p, 2 + wl);
	ws->closing = true;
}

static void do_move(struct kz_ws *ws);

static void on_written(h2o_socket_t *sock, const char *err)
{
	struct kz_ws *ws = sock->data;
	if (!ws)
		return;
	ws->wbuf.len = 0;
	if (err) {
		finish(ws);
		return;
	}
	if (ws->wq.len || ws->closing) {
		kick(ws); /* more to write, or the end */
		return;
	}
	if (ws->move_to >= 0) {
		do_move(ws);
		return;
	}
	if (ws->cbs->writable)
		ws->cbs->writable(ws->user);
}

/* Writes what is queued, if the socket is free; ends a closing connection once all is out. */
static void kick(struct kz_ws *ws)
{
	if (!ws->sock || h2o_socket_is_writing(ws->sock))
		return;
	if (!ws->wq.len) {
		if (ws->closing && !ws->in_read)
			finish(ws);
		return;
	}
	struct kz_buf t = ws->wbuf;
	ws->wbuf = ws->wq;
	ws->wq = t;
	ws->wq.len = 0;
	h2o_iovec_t b = h2o_iovec_init(kz_buf_head(&ws->wbuf), ws->wbuf.len);
	h2o_socket_write(ws->sock, &b, 1, on_written);
}

struct kz_buf *kz_http_ws_out(struct kz_ws *ws) { return &ws->out; }

const struct kz_ws_peer *kz_http_ws_peer(const struct kz_ws *ws) { return &ws->peer; }

void kz_http_ws_flush(struct kz_ws *ws)
{
	if (ws->out.len && !ws->closing) {
		frame(ws, KZ_WS_BINARY, kz_buf_head(&ws->out), ws->out.len);
		ws->out.len = 0;
	}
	kick(ws);
}

void kz_http_ws_close(struct kz_ws *ws, uint16_t code, const char *why)
{
	if (ws->closing)
		return;
	kz_http_ws_flush(ws);
	close_frame(ws, code, why);
	ws->move_to = -1;
	kick(ws);
}

void kz_http_ws_hold_reading(struct kz_ws *ws, bool hold)
{
	if (hold == ws->held || !ws->sock)
		return;
	ws->held = hold;
	if (hold)
		h2o_socket_read_stop(ws->sock);
	else if (!ws->closing) {
		h2o_socket_read_start(ws->sock, on_read);
		if (ws->sock->input->size && !ws->in_read)
			on_read(ws->sock, NULL); /* what came before the hold */
	}
}

size_t kz_http_ws_pending(const struct kz_ws *ws) { return ws->wq.len + ws->wbuf.len; }

/* ---------- reading ---------- */

static int on_data(void *arg, const uint8_t *p, size_t n)
{
	struct kz_ws *ws = arg;
	ws->cbs->data(ws->user, p, n);
	/* the user may have closed, asked for a move, or held reading: stop after these bytes */
	return ws->closing || ws->move_to >= 0 || ws->held ? KZ_WS_STOPPED : 0;
}

static int on_control(void *arg, uint8_t op, const uint8_t *p, size_t n)
{
	struct kz_ws *ws = arg;
	if (op == KZ_WS_PING) {
		frame(ws, KZ_WS_PONG, p, n);
		kick(ws);
	} else if (op == KZ_WS_CLOSE) {
		/* §5.5.1: answer with a close frame (echoing the code), then close */
		uint16_t code = n >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : KZ_WS_NORMAL;
		tell_closed(ws);
		close_frame(ws, code, NULL);
		return KZ_WS_STOPPED;
	}
	return ws->closing || ws->move_to >= 0 ? KZ_WS_STOPPED : 0;
}

static const struct kz_ws_dec_cbs dec_cbs = { on_data, on_control };

static void on_read(h2o_socket_t *sock, const char *err)
{
	struct kz_ws *ws = sock->data;
	if (!ws)
		return;
	if (err) {
		finish(ws);
		return;
	}
	ws->in_read = true;
	int rc = 0;
	while (sock->input->size && !ws->closing && ws->move_to < 0 && !ws->held) {
		size_t used = 0;
		rc = kz_http_ws_decode(&ws->dec, (uint8_t *)sock->input->bytes, sock->input->size, &used, &dec_cbs, ws);
		h2o_buffer_consume(&sock->input, used);
		if (rc >= 1000) {
			kz_info("%s: WebSocket closed: %s", ws->addr, ws->dec.why);
			kz_http_ws_flush(ws);
			tell_closed(ws);
			close_frame(ws, (uint16_t)rc, ws->dec.why);
		}
		if (rc)
			break;
	}
	ws->in_read = false;
	if (ws->closing) {
		h2o_socket_read_stop(sock);
		kick(ws);
	} else if (ws->move_to >= 0 && !h2o_socket_is_writing(sock)) {
		if (ws->wq.len)
			kick(ws); /* the move follows the write */
		else
			do_move(ws);
	}
}

/* ---------- moving to another worker ---------- */

int kz_http_ws_move(struct kz_ws *ws, unsigned worker)
{
	if (ws->closing || worker >= ws->h->cfg.workers)
		return -1;
	ws->move_to = (int)worker;
	if (ws->in_read || h2o_socket_is_writing(ws->sock) || ws->wq.len)
		return 0; /* after this read, or once what is queued is written */
	do_move(ws);
	return 0;
}

void kz_http_ws_drop(struct kz_ws *ws)
{
	h2o_socket_dispose_export(&ws->exp);
	tell_closed(ws);
	ws_free(ws);
}

static void do_move(struct kz_ws *ws)
{
	struct hworker *w = &ws->h->w[ws->move_to];
	h2o_socket_read_stop(ws->sock);
	ws->sock->data = NULL;
	if (h2o_socket_export(ws->sock, &ws->exp) != 0) {
		ws->sock->data = ws;
		kz_warn("%s: a WebSocket connection could not be moved to worker %u; closing", ws->addr, w->idx);
		ws->move_to = -1;
		kz_http_ws_close(ws, KZ_WS_INTERNAL, "cannot move the connection");
		return;
	}
	ws->sock = NULL; /* exported: h2o closed our handle of it */
	if (ws->moved_in)
		atomic_fetch_sub(&ws->moved_in->nws, 1);
	ws->moved_in = NULL;
	pthread_mutex_lock(&w->hlock);
	bool ok = !w->ended;
	if (ok && w->nhws == w->caphws) {
		size_t cap = w->caphws ? w->caphws * 2 : 8;
		struct kz_ws **nv = realloc(w->hws, cap * sizeof *nv);
		if (nv) {
			w->hws = nv;
			w->caphws = cap;
		}
		ok = nv != NULL;
	}
	if (ok)
		w->hws[w->nhws++] = ws;
	pthread_mutex_unlock(&w->hlock);
	if (!ok) {
		kz_warn("%s: worker %u takes no connection now; closing a WebSocket connection", ws->addr, w->idx);
		kz_http_ws_drop(ws);
		return;
	}
	uv_async_send(&w->handoff);
}

void kz_http_ws_adopt(struct hworker *w, struct kz_ws *ws)
{
	ws->sock = h2o_socket_import(w->loop, &ws->exp);
	if (!ws->sock) {
		kz_http_ws_drop(ws);
		return;
	}
	ws->sock->data = ws;
	ws->worker = w->idx;
	ws->move_to = -1;
	ws->moved_in = w;
	atomic_fetch_add(&w->nws, 1);
	ws->in_read = true; /* what moved() does (a close) ends the connection after it, not inside */
	if (ws->cbs->moved)
		ws->cbs->moved(ws->user, ws, w->idx);
	ws->in_read = false;
	if (ws->closing) {
		kick(ws);
		return;
	}
	if (!ws->held) {
		h2o_socket_read_start(ws->sock, on_read);
		if (ws->sock->input->size)
			on_read(ws->sock, NULL); /* what came with it */
	}
	kick(ws);
}


/* ---------- the opening handshake ---------- */

static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize)
{
	struct kz_ws *ws = data;
	if (!sock) {
		kz_info("%s: the WebSocket handshake's answer could not be written", ws->addr);
		ws_free(ws);
		return;
	}
	ws->sock = sock;
	sock->data = ws;
	h2o_buffer_consume(&sock->input, reqsize);
	ws->user = ws->cbs->open(ws->ctx, ws, ws->worker, &ws->peer);
	ws->opened = ws->user != NULL;
	if (!ws->opened) {
		close_frame(ws, KZ_WS_INTERNAL, "not taken");
		kick(ws);
		return;
	}
	h2o_socket_read_start(sock, on_read);
	if (sock->input->size)
		on_read(sock, NULL); /* frames that came with the request */
}

static bool token_in(const h2o_req_t *req, const char *name, const char *token)
{
	for (ssize_t i = -1; (i = h2o_find_header_by_str(&req->headers, name, strlen(name), i)) != -1;) {
		const h2o_iovec_t *v = &req->headers.entries[i].value;
		if (h2o_contains_token(v->base, v->len, token, strlen(token), ','))
			return true;
	}
	return false;
}

static const char *header(const h2o_req_t *req, const char *name, size_t *len)
{
	ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
	if (i < 0)
		return NULL;
	*len = req->headers.entries[i].value.len;
	return req->headers.entries[i].value.base;
}

int kz_http_ws_accept(struct kz_http_req *r, const char *subprotocol, const struct kz_ws_cbs *cbs, void *ctx)
{
	h2o_req_t *req = r->h2o;
	size_t kl = 0, vl = 0;
	const char *key = header(req, "sec-websocket-key", &kl);
	const char *ver = header(req, "sec-websocket-version", &vl);
	if (strcmp(r->method, "GET") != 0) {
		kz_http_header(r, "Allow", "GET");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "%s takes a WebSocket opening handshake (GET)", r->path);
		return -1;
	}
	if (!req->upgrade.base || !h2o_lcstris(req->upgrade.base, req->upgrade.len, H2O_STRLIT("websocket"))) {
		kz_http_header(r, "Upgrade", "websocket");
		kz_http_error(r, 426, NULL, "Upgrade Required", "%s speaks %s over WebSocket only (Upgrade: websocket, "
			      "HTTP/1.1)", r->path, subprotocol);
		return -1;
	}
	if (r->http_version >= 0x200) { /* h2o 2.2 has no RFC 8441 */
		kz_http_error(r, 400, NULL, "Bad Request", "a WebSocket needs HTTP/1.1");
		return -1;
	}
	if (!key || kl != 24) {
		kz_http_error(r, 400, NULL, "Bad Request", "Sec-WebSocket-Key is missing or not 16 bytes in base64");
		return -1;
	}
	if (!ver || vl != 2 || memcmp(ver, "13", 2) != 0) {
		kz_http_header(r, "Sec-WebSocket-Version", "13");
		kz_http_error(r, 426, NULL, "Upgrade Required", "Sec-WebSocket-Version must be 13 (RFC 6455)");
		return -1;
	}
	if (!token_in(req, "sec-websocket-protocol", subprotocol)) {
		kz_http_error(r, 400, NULL, "Bad Request", "the WebSocket subprotocol '%s' was not offered "
			      "(Sec-WebSocket-Protocol)", subprotocol);
		return -1;
	}
	struct kz_ws *ws = calloc(1, sizeof *ws);
	if (!ws) {
		kz_http_error(r, 503, NULL, "Service Unavailable", "out of memory");
		return -1;
	}
	ws->h = r->srv;
	ws->worker = r->worker;
	ws->cbs = cbs;
	ws->ctx = ctx;
	ws->move_to = -1;
	kz_http_ws_dec_init(&ws->dec);
	kz_buf_init(&ws->out, 0);
	kz_buf_init(&ws->wq, 0);
	kz_buf_init(&ws->wbuf, 0);
	snprintf(ws->id, sizeof ws->id, "%s", r->identity ? r->identity : "");
	snprintf(ws->serial, sizeof ws->serial, "%s", r->serial ? r->serial : "");
	snprintf(ws->issuer, sizeof ws->issuer, "%s", r->issuer ? r->issuer : "");
	snprintf(ws->addr, sizeof ws->addr, "%s", r->peer_addr);
	snprintf(ws->group, sizeof ws->group, "%s", r->tls_group ? r->tls_group : "-");
	snprintf(ws->suite, sizeof ws->suite, "%s", r->tls_suite ? r->tls_suite : "");
	ws->peer = (struct kz_ws_peer){ r->identity ? ws->id : NULL, ws->serial, ws->issuer, ws->addr, ws->group,
					ws->suite, r->cert_not_after };
	/* §4.2.2: the accept key is base64(SHA-1(key + the GUID)) */
	char cat[24 + 36 + 1];
	memcpy(cat, key, 24);
	memcpy(cat + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
	uint8_t md[SHA_DIGEST_LENGTH];
	SHA1((const uint8_t *)cat, 60, md);
	char *accept = h2o_mem_alloc_pool(&req->pool, 29);
	EVP_EncodeBlock((uint8_t *)accept, md, SHA_DIGEST_LENGTH);
	req->res.status = 101;
	req->res.reason = "Switching Protocols";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, accept, 28);
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-protocol"), 0, NULL, subprotocol,
			      strlen(subprotocol));
	r->status = 101;
	kz_http_finish_req(r);
	h2o_http1_upgrade(req, NULL, 0, on_upgraded, ws);
	return 0;
}
