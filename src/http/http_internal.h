/* http_internal.h — what http_server.c and http_stream.c share: the server, its workers
 * (one h2o context per network worker loop) and its routes. */
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
};

/* What a worker's message queue carries: a deferred answer, or a stream's wake (both begin
 * with the h2o message, then this kind). */
enum { KZ_HTTP_MSG_RESUME = 0, KZ_HTTP_MSG_WAKE = 1 };

/* The request's audit entry and counters (once, when its answer starts). */
void kz_http_finish_req(struct kz_http_req *r);
/* http_ws.c: a WebSocket connection moved to worker w (on its thread), or dropped at its end. */
void kz_http_ws_adopt(struct hworker *w, struct kz_ws *ws);
void kz_http_ws_drop(struct kz_ws *ws);
/* A stream's wake came to its worker (http_stream.c). */
void kz_http_stream_message(h2o_multithread_message_t *m);

#endif
