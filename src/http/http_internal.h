/* http_internal.h — what the HTTPS server's files share (http_server.c, http_accept.c,
 * http_stream.c, http_ws.c): the server, its workers (two h2o contexts per network worker
 * loop) and its routes. */
#ifndef KZ_HTTP_INTERNAL_H
#define KZ_HTTP_INTERNAL_H

#include "http/http.h"

#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>

#define KZ_HTTP_MAX_ROUTES 32

struct route {
	char prefix[128];
	size_t len;
	bool auth;
	kz_http_handler_fn fn;
	void *ctx;
};

struct hworker {
	struct kz_http *h;
	unsigned idx;
	bool started;
	void *arena_pad; /* kz_mem_arena_huge's, held while the worker runs */
	h2o_context_t ctx, ctx_anon;          /* ctx_anon: connections without a verified certificate */
	h2o_accept_ctx_t accept, accept_anon;
	h2o_multithread_queue_t *queue;
	h2o_multithread_receiver_t recv;
	pthread_mutex_t qlock; /* resume (any thread) vs. stop (the worker) */
	struct hconn *conns;   /* open connections (the worker's thread only) */
	size_t nconns;
	uv_loop_t *loop;
	bool stopping;
	/* connections accepted by another worker and handed to this one (balance) */
	uv_async_t handoff;
	pthread_mutex_t hlock;
	int *hfd;
	size_t nhfd, caphfd;
	struct kz_ws **hws;    /* WebSocket connections moving here (http_ws.c) */
	size_t nhws, caphws;
	atomic_uint nws;       /* WebSocket connections moved here and open (not in conns) */
	atomic_uint load; /* connections open here or on their way here */
	struct handshake *hs_head, *hs_tail; /* TLS handshakes under way here, oldest first (http_accept.c) */
	bool ended;       /* under hlock: the loop is gone, hand nothing over */
};

struct kz_http {
	struct kz_http_config cfg;
	pthread_mutex_t init_lock;
	bool inited;           /* global: made on the first HTTPS connection */
	h2o_globalconf_t global, global_anon; /* global_anon: https.max_anonymous_body_bytes */
	struct route routes[KZ_HTTP_MAX_ROUTES];
	size_t n_routes;
	struct hworker *w;
	atomic_uint_fast64_t requests, e4, e5, bytes_in, bytes_out, connections;
	atomic_uint handshakes;            /* under way, on every worker */
	atomic_uint_fast64_t hs_timeouts, hs_evicted;
};

/* What a worker's message queue carries: a deferred answer, or a stream's wake (both begin
 * with the h2o message, then this kind). */
enum { KZ_HTTP_MSG_RESUME = 0, KZ_HTTP_MSG_WAKE = 1 };

/* http_accept.c: the TLS handshake of a new connection on worker w (its thread), then HTTP in
 * the h2o context its client certificate gives; src: the peer's address (net_addr_key). */
void kz_http_accept(struct hworker *w, h2o_socket_t *sock, const uint8_t src[16]);
/* http_server.c: the SSL of an h2o socket (libh2o 2.2's private layout, checked); does the
 * connection's certificate name an identity now (verified, not revoked since, not expired)? */
SSL *kz_http_ssl_of_sock(h2o_socket_t *sock);
bool kz_http_peer_known(SSL *ssl);

/* The request's audit entry and counters (once, when its answer starts). */
void kz_http_finish_req(struct kz_http_req *r);
/* http_ws.c: a WebSocket connection moved to worker w (on its thread), or dropped at its end. */
void kz_http_ws_adopt(struct hworker *w, struct kz_ws *ws);
void kz_http_ws_drop(struct kz_ws *ws);
/* A stream's wake came to its worker (http_stream.c). */
void kz_http_stream_message(h2o_multithread_message_t *m);

#endif
