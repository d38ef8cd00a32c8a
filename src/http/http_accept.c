/* http_accept.c — a new HTTPS connection: its TLS handshake under the listener's caps, then
 * HTTP in the h2o context its client certificate gives.
 *
 * This is what libh2o's h2o_accept does (handshake, then h2o_http2_accept or
 * h2o_http1_accept by ALPN), with two differences:
 *
 * - The context is chosen after the handshake. libh2o 2.2 reads a request's whole body
 *   before any handler runs, so before the 401 of a route that needs a certificate: a
 *   connection without a verified, unrevoked certificate goes to the context whose body limit
 *   is https.max_anonymous_body_bytes, and cannot make the node hold https.max_body_bytes per
 *   request (docs/HTTP.md, tests/integration/test_http_anonymous.py).
 * - Handshakes under way are capped as on the MQTT listener (limits.max_handshakes and
 *   limits.max_handshakes_per_address, each worker its share of the per-address cap): past a
 *   cap the oldest handshake is closed, so a client that completes its handshake always gets
 *   its turn however many half-open connections wait (docs/SECURITY.md).
 *
 * Runs on the worker's loop thread only. */
#include "http/http.h"
#include "base/kz_log.h"

#include <h2o.h>
#include <h2o/http1.h>
#include <h2o/http2.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

struct handshake {
	h2o_timeout_entry_t timeout; /* the context's handshake_timeout (limits.handshake_timeout_ms) */
	struct hworker *w;
	h2o_socket_t *sock;
	struct timeval connected_at;
	uint8_t src[16];
	struct handshake *prev, *next; /* the worker's, oldest first */
};

/* Off the worker's list, the timeout unlinked, the count down; the caller frees it. */
static void hs_unlink(struct handshake *hs)
{
	struct hworker *w = hs->w;
	if (hs->prev)
		hs->prev->next = hs->next;
	else
		w->hs_head = hs->next;
	if (hs->next)
		hs->next->prev = hs->prev;
	else
		w->hs_tail = hs->prev;
	h2o_timeout_unlink(&hs->timeout);
	atomic_fetch_sub(&w->h->handshakes, 1);
}

/* Closes a handshake that has not finished (its timeout, or evicted by a cap): libh2o calls
 * no handshake callback for a socket closed meanwhile. */
static void hs_close(struct handshake *hs)
{
	h2o_socket_t *sock = hs->sock;
	hs_unlink(hs);
	sock->data = NULL;
	free(hs);
	h2o_socket_close(sock);
}

static void hs_timeout(h2o_timeout_entry_t *e)
{
	struct handshake *hs = H2O_STRUCT_FROM_MEMBER(struct handshake, timeout, e);
	atomic_fetch_add(&hs->w->h->hs_timeouts, 1);
	hs_close(hs);
}

static void hs_done(h2o_socket_t *sock, const char *err)
{
	struct handshake *hs = sock->data;
	sock->data = NULL;
	struct hworker *w = hs->w;
	struct timeval at = hs->connected_at;
	hs_unlink(hs);
	free(hs);
	if (err) {
		h2o_socket_close(sock);
		return;
	}
	h2o_accept_ctx_t *ac = kz_http_peer_known(kz_http_ssl_of_sock(sock)) ? &w->accept : &w->accept_anon;
	h2o_iovec_t proto = h2o_socket_ssl_get_selected_protocol(sock);
	for (const h2o_iovec_t *id = h2o_http2_alpn_protocols; id->len; id++)
		if (proto.len == id->len && memcmp(proto.base, id->base, proto.len) == 0) {
			h2o_http2_accept(ac, sock, at);
			return;
		}
	h2o_http1_accept(ac, sock, at);
}

static struct handshake *oldest_from(struct hworker *w, const uint8_t src[16], unsigned *n)
{
	struct handshake *first = NULL;
	*n = 0;
	for (struct handshake *hs = w->hs_head; hs; hs = hs->next)
		if (memcmp(hs->src, src, 16) == 0) {
			first = first ? first : hs;
			(*n)++;
		}
	return first;
}

void kz_http_accept(struct hworker *w, h2o_socket_t *sock, const uint8_t src[16])
{
	struct kz_http *h = w->h;
	struct handshake *hs = calloc(1, sizeof *hs);
	if (!hs) {
		h2o_socket_close(sock);
		return;
	}
	hs->w = w;
	hs->sock = sock;
	hs->connected_at = *h2o_get_timestamp(&w->ctx, NULL, NULL);
	memcpy(hs->src, src, 16);
	hs->timeout.cb = hs_timeout;
	h2o_timeout_link(w->loop, &w->ctx.handshake_timeout, &hs->timeout);
	hs->prev = w->hs_tail;
	if (w->hs_tail)
		w->hs_tail->next = hs;
	else
		w->hs_head = hs;
	w->hs_tail = hs;
	unsigned total = atomic_fetch_add(&h->handshakes, 1) + 1;
	sock->data = hs;
	/* the caps, before this one starts: the oldest handshakes give way */
	unsigned workers = h->cfg.workers ? h->cfg.workers : 1;
	unsigned per = h->cfg.max_handshakes_per_address / workers;
	if (h->cfg.max_handshakes_per_address && per == 0)
		per = 1;
	unsigned n;
	struct handshake *old = per ? oldest_from(w, src, &n) : NULL;
	if (old && n > per && old != hs) {
		kz_debug("https: over limits.max_handshakes_per_address; closing the oldest handshake from that address");
		atomic_fetch_add(&h->hs_evicted, 1);
		hs_close(old);
		total--;
	}
	while (h->cfg.max_handshakes && total > h->cfg.max_handshakes && w->hs_head && w->hs_head != hs) {
		kz_debug("https: over limits.max_handshakes; closing the oldest handshake");
		atomic_fetch_add(&h->hs_evicted, 1);
		hs_close(w->hs_head); /* another worker's older ones go at its next accept */
		total = atomic_load(&h->handshakes);
	}
	h2o_socket_ssl_handshake(sock, h->cfg.ssl_ctx, NULL, hs_done);
}
