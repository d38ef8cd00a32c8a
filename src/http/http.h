/* http.h — the node's HTTPS API server: HTTP/1.1 and HTTP/2 on libh2o (the libuv build),
 * running inside the node's network workers (one h2o context per worker loop), with the
 * node's TLS context (TLS 1.3, the hybrid group, client certificates checked by the same
 * code as MQTT's). docs/HTTP.md.
 *
 * Requests are routed by path prefix to handlers registered before the workers start. A
 * handler runs on the worker thread; it answers at once (kz_http_send/kz_http_error) or
 * later from the same worker (kz_http_defer + kz_http_resume: the work is finished on
 * another thread, the answer is posted back to the worker's loop).
 *
 * Every request except /healthz needs a verified client certificate (401 otherwise); each
 * request is audited (action "http", resource "METHOD path", allow = status < 400). */
#ifndef KZ_HTTP_H
#define KZ_HTTP_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kz_http;
struct kz_policy;
struct kz_subject;

/* One request, valid until it is answered. */
struct kz_http_req {
	struct kz_http *srv;
	void *h2o;             /* h2o_req_t */
	unsigned worker;
	const char *method;    /* NUL-terminated copies */
	const char *path;      /* without the query */
	const char *query;     /* after '?', "" when none */
	const char *authority; /* Host (HTTP/1.1) or :authority (HTTP/2) */
	const char *body;      /* the request entity (buffered up to https.max_body_bytes) */
	size_t body_len;
	const char *identity;  /* verified SPIFFE ID, NULL when no client certificate */
	const char *serial;    /* certificate serial (hex), NULL when none */
	const char *tls_group; /* key exchange group */
	const char *tls_suite; /* "TLSv1.3 <cipher suite>", NULL when unknown */
	const char *issuer;    /* the client certificate's issuer DN, NULL when none */
	const char *peer_addr; /* the client's address and port, "" when unknown */
	int64_t cert_not_after; /* the client certificate's notAfter (Unix s), 0 when none */
	const char *policy_version; /* the policy that decided (set by the gate), NULL: none */
	int http_version;      /* 0x100, 0x101, 0x200 */
	uint64_t start_ns;     /* monotonic: the handler was called */
	uint64_t received_ns;  /* how long from the request's first byte to the handler (its body read) */
	int status;            /* the status sent, for the audit entry */
	const char *audit_reason; /* what the handler decided, NULL: the status line */
	const char *audit_label;  /* label involved, NULL: none */
};

/* A handler: answers r (now or after kz_http_defer). */
typedef void (*kz_http_handler_fn)(void *ctx, struct kz_http_req *r);

struct kz_http_config {
	SSL_CTX *ssl_ctx;         /* the node's HTTPS context (client certificate optional) */
	unsigned workers;
	uint64_t max_body_bytes;  /* 413 above */
	uint32_t request_timeout_ms; /* the whole request must arrive within this (HTTP/1.1) */
	uint32_t idle_timeout_ms;    /* an idle connection is closed after this */
	/* The decision point for every request that needs a client certificate, before its
	 * handler: 0 to go on, else the HTTP status to refuse with (why says why). NULL: none. */
	int (*gate)(void *ctx, struct kz_http_req *r, char *why, size_t why_len);
	void *gate_ctx;
	uint32_t handshake_timeout_ms; /* the TLS handshake must finish this long after accept; 0: h2o's 10 s */
	uint64_t max_anon_body_bytes;  /* 413 above, on a connection without a verified client certificate */
	/* TLS handshakes under way at once, on the whole listener and from one address (each
	 * worker its share); past either the oldest is closed. 0: no cap. */
	uint32_t max_handshakes, max_handshakes_per_address;
};

int kz_http_create(const struct kz_http_config *cfg, struct kz_http **out, char *why, size_t why_len);
/* Routes requests whose path is prefix or starts with prefix + '/' (the longest prefix
 * wins). Before the workers start only. auth_required false: served without a client
 * certificate too (/healthz). */
int kz_http_route(struct kz_http *h, const char *prefix, bool auth_required, kz_http_handler_fn fn, void *ctx);
/* HTTPS as a protocol of the server's workers, listening on fd (net_bind): every worker
 * accepts and serves connections on its own loop; stop closes them, idle is true once none is
 * left, end disposes of the worker's h2o context. */
struct net_proto;
void kz_http_proto(struct kz_http *h, int fd, const char *host, struct net_proto *out);
void kz_http_free(struct kz_http *h);

/* ---------- answering ---------- */

/* Adds a response header (copied). */
void kz_http_header(struct kz_http_req *r, const char *name, const char *value);
/* Sends status with body (copied) and Content-Type. */
void kz_http_send(struct kz_http_req *r, int status, const char *content_type, const char *body, size_t len);
/* A JSON error body in TAXII 2.1's error shape (§3.6.1): {"title", "description",
 * "http_status"}; content type as given (NULL: application/json). */
void kz_http_error(struct kz_http_req *r, int status, const char *content_type, const char *title,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The value of a request header (first occurrence, NUL-terminated copy), NULL if absent. */
const char *kz_http_req_header(struct kz_http_req *r, const char *name);

/* Defers the answer: returns a token for kz_http_resume, which another thread calls once
 * (with fn run on the worker with r still valid, or with r NULL when the client went
 * away meanwhile; fn must then only free ctx). */
struct kz_http_deferred;
struct kz_http_deferred *kz_http_defer(struct kz_http_req *r);
void kz_http_resume(struct kz_http_deferred *d, void (*fn)(void *ctx, struct kz_http_req *r), void *ctx);

/* ---------- streamed answers (Server-Sent Events) ----------
 *
 * A handler may answer with a stream instead: kz_http_stream_start sends the status and
 * headers, then the owner writes chunks, one at a time, each when the previous one has gone
 * (ops->writable). Another thread that has new data calls kz_http_stream_wake; writable
 * follows on the worker. When the client goes away (or the node stops), ops->closed runs on
 * the worker, once, and no callback follows. The handle stays valid for kz_http_stream_wake
 * until its owner calls kz_http_stream_release (after which the owner must not use it).
 *
 *    start --> writable --write--> (sent) --> writable ... --end--> closed
 *                 ^     \--(nothing to write)--> idle --wake--'
 *    any state --client gone / node stops--> closed                                      */
struct kz_http_stream;
struct kz_http_stream_ops {
	void (*writable)(void *ctx, struct kz_http_stream *s); /* on the worker */
	void (*closed)(void *ctx);                            /* on the worker, once */
};
/* NULL when out of memory (an error answer is sent then). */
struct kz_http_stream *kz_http_stream_start(struct kz_http_req *r, int status, const char *content_type,
					    const struct kz_http_stream_ops *ops, void *ctx);
/* Sends n bytes (copied); only inside ops->writable, at most once per call. final: the last
 * chunk (closed follows once it has gone). 0, or -1 when the stream cannot take it. */
int kz_http_stream_write(struct kz_http_stream *s, const void *p, size_t n, bool final);
/* Any thread: ops->writable runs soon on the worker (once for any number of wakes), unless
 * the stream is closed. */
void kz_http_stream_wake(struct kz_http_stream *s);
/* The owner lets go of the handle (any thread). */
void kz_http_stream_release(struct kz_http_stream *s);

/* ---------- counters for /metrics ---------- */

struct kz_http_stats {
	uint64_t requests, errors_4xx, errors_5xx, bytes_in, bytes_out, connections;
	uint64_t handshake_timeouts, handshake_evicted;
};
void kz_http_stats(struct kz_http *h, struct kz_http_stats *out);
/* Workers, and the connections one holds (open or being handed to it). */
unsigned kz_http_workers(const struct kz_http *h);
unsigned kz_http_worker_load(struct kz_http *h, unsigned idx);

/* Parses an application/x-www-form-urlencoded query: calls fn for each key=value pair,
 * percent-decoded ('+' is a space), in order. Returns -1 (with *why) on a malformed
 * escape or a pair over 4096 bytes, else the return of the first fn that is non-zero. */
int kz_http_query_each(const char *q, size_t n, int (*fn)(void *ctx, const char *k, const char *v), void *ctx,
		       const char **why);

/* ---------- WebSocket (http_ws.c, RFC 6455) ---------- */

struct kz_ws;
/* Who is on a WebSocket connection: the request's identity, kept for the connection. */
struct kz_ws_peer {
	const char *identity; /* verified SPIFFE ID, NULL when none */
	const char *serial, *issuer, *addr, *tls_group, *tls_suite;
	int64_t cert_not_after;
};
/* On the connection's worker thread. */
struct kz_ws_cbs {
	/* The handshake is answered and the connection is ours: the user pointer for the other
	 * callbacks (NULL: refuse it, it is closed). */
	void *(*open)(void *ctx, struct kz_ws *ws, unsigned worker, const struct kz_ws_peer *peer);
	/* Payload bytes of binary messages, as one stream. */
	void (*data)(void *user, const uint8_t *p, size_t n);
	/* Everything queued was written (NULL: not wanted). */
	void (*writable)(void *user);
	/* After kz_http_ws_move, on the new worker. */
	void (*moved)(void *user, struct kz_ws *ws, unsigned worker);
	/* The connection ended (once; nothing is called after it, ws is gone). */
	void (*closed)(void *user);
};
/* From a route's handler: answers r 101 and takes the connection for subprotocol (which the
 * client must offer), or answers r with the error (405, 426, 400) and returns -1. open()
 * follows once the 101 is written. */
int kz_http_ws_accept(struct kz_http_req *r, const char *subprotocol, const struct kz_ws_cbs *cbs, void *ctx);
/* The buffer the user writes into; kz_http_ws_flush sends what it holds as one binary frame. */
struct kz_buf *kz_http_ws_out(struct kz_ws *ws);
void kz_http_ws_flush(struct kz_ws *ws);
/* Flushes, sends a close frame (code, why), then closes; closed() follows. */
void kz_http_ws_close(struct kz_ws *ws, uint16_t code, const char *why);
void kz_http_ws_hold_reading(struct kz_ws *ws, bool hold);
/* Bytes queued or being written. */
size_t kz_http_ws_pending(const struct kz_ws *ws);
/* Moves the connection to another worker's loop (after what it has queued is written);
 * moved() follows there, or closed(). -1: it cannot. */
int kz_http_ws_move(struct kz_ws *ws, unsigned worker);
const struct kz_ws_peer *kz_http_ws_peer(const struct kz_ws *ws);

#endif
