/* http_server.c — the HTTPS API on libh2o 2.2 (libuv build) inside the node's workers.
 *
 * TLS is h2o's (it drives our SSL_CTX: TLS 1.3 only, the hybrid group, client certificates
 * verified by net_tls's callback). What h2o does not expose is the SSL object of a
 * connection, which we need for the client's identity: h2o 2.2's socket keeps it as the
 * second member of its private struct st_h2o_socket_ssl_t ({SSL_CTX *, SSL *, ...}, the same
 * in every 2.2 release). We read that prefix and check it (the SSL must belong to our
 * SSL_CTX) before trusting it; a mismatch refuses every authenticated request with 500
 * rather than guessing.
 *
 * The identity is worked out once per connection and kept in the SSL's ex_data; each request
 * re-checks the revocation list (a long-lived HTTP/2 connection must not outlive `kizuna ca
 * revoke`) and the certificate's expiry. */
#include "http/http.h"
#include "base/kz_array.h"
#include "base/kz_log.h"
#include "base/kz_hex.h"
#include "base/kz_mem.h"
#include "base/kz_time.h"
#include "net/net.h"
#include "trust/audit.h"
#include "trust/ca.h"

#include <h2o.h>
#include <jansson.h>
#include <h2o/socket/uv-binding.h>
#include <openssl/x509.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

struct kz_handler {
	h2o_handler_t super;
	struct kz_http *h;
};

/* The per-connection identity, kept in the SSL's ex_data. */
struct peer {
	char *id;            /* NULL: no certificate, or it did not pass */
	char serial[KZ_SERIAL_HEX];
	char issuer[160];    /* the certificate's issuer DN, "" when none */
	time_t not_after;
};
static int peer_idx = -1;
static uv_once_t peer_once = UV_ONCE_INIT;

static void peer_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct peer *p = ptr;
	if (p) {
		free(p->id);
		free(p);
	}
}
static void peer_init(void) { peer_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, peer_free); }

/* h2o 2.2's private socket TLS state starts with these two members (see the top). */
struct h2o22_socket_ssl_prefix {
	SSL_CTX *ssl_ctx;
	SSL *ossl;
};

SSL *kz_http_ssl_of_sock(h2o_socket_t *sock)
{
	if (!sock || !sock->ssl)
		return NULL;
	const struct h2o22_socket_ssl_prefix *p = (const void *)sock->ssl;
	if (!p->ossl || !p->ssl_ctx || SSL_get_SSL_CTX(p->ossl) != p->ssl_ctx)
		return NULL;
	return p->ossl;
}

static SSL *ssl_of(h2o_req_t *req)
{
	return kz_http_ssl_of_sock(req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL);
}

static struct peer *peer_of(SSL *ssl)
{
	struct peer *p = SSL_get_ex_data(ssl, peer_idx);
	if (p)
		return p;
	p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (cert && SSL_get_verify_result(ssl) == X509_V_OK) {
		const char *why = NULL;
		p->id = net_tls_peer_spiffe(ssl, &why);
		kz_x509_serial_hex(cert, p->serial);
		X509_NAME_oneline(X509_get_issuer_name(cert), p->issuer, sizeof p->issuer);
		struct tm tm;
		if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
			p->not_after = timegm(&tm);
	}
	SSL_set_ex_data(ssl, peer_idx, p);
	return p;
}

/* Why a certificate that verified at the handshake is refused now: revoked since (the CRL
 * is re-read while connections stay open), or expired. NULL: it is not. */
static const char *peer_refusal(SSL *ssl, const struct peer *p)
{
	const struct kz_revoked *rv = NULL;
	const struct net_tls_trust *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	if (t)
		rv = atomic_load(&t->revoked);
	if (rv && kz_revoked_has(rv, p->serial))
		return "the client certificate has been revoked";
	if (p->not_after && time(NULL) > p->not_after)
		return "the client certificate has expired";
	return NULL;
}

bool kz_http_peer_known(SSL *ssl)
{
	struct peer *p = ssl ? peer_of(ssl) : NULL;
	return p && p->id && !peer_refusal(ssl, p);
}

static const char *group_of(SSL *ssl)
{
	if (!ssl)
		return "-";
	const char *name = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
	return name ? name : "?";
}

static char *pool_strndup(h2o_mem_pool_t *pool, const char *s, size_t n)
{
	char *d = h2o_mem_alloc_pool(pool, n + 1);
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

static const char *reason_of(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

void kz_http_finish_req(struct kz_http_req *r)
{
	struct kz_http *h = r->srv;
	atomic_fetch_add(&h->requests, 1);
	if (r->status >= 500)
		atomic_fetch_add(&h->e5, 1);
	else if (r->status >= 400)
		atomic_fetch_add(&h->e4, 1);
	atomic_fetch_add(&h->bytes_in, r->body_len);
	char res[600], reason[300];
	snprintf(res, sizeof res, "%s %s", r->method, r->path);
	snprintf(reason, sizeof reason, "%d %s%s%s", r->status, reason_of(r->status), r->audit_reason ? ": " : "",
		 r->audit_reason ? r->audit_reason : "");
	kz_audit(&(struct kz_audit_entry){ .subject = r->identity, .serial = r->serial, .tls_group = r->tls_group,
					  .issuer = r->issuer, .tls = r->tls_suite, .addr = r->peer_addr, .policy = r->policy_version,
					  .action = "http", .resource = res, .label = r->audit_label,
					  .allow = r->status < 400, .reason = reason });
	kz_debug("https: %s %s -> %d (%s)", r->method, r->path, r->status, r->identity ? r->identity : "anonymous");
}

void kz_http_header(struct kz_http_req *r, const char *name, const char *value)
{
	h2o_req_t *req = r->h2o;
	size_t nl = strlen(name);
	char *n = pool_strndup(&req->pool, name, nl);
	for (char *c = n; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a'); /* HTTP/2 wants lower-case names (RFC 9113 §8.2.1) */
	h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));
	h2o_add_header_by_str(&req->pool, &req->res.headers, n, nl, 1, NULL, v.base, v.len);
}

void kz_http_send(struct kz_http_req *r, int status, const char *content_type, const char *body, size_t len)
{
	h2o_req_t *req = r->h2o;
	r->status = status;
	req->res.status = status;
	req->res.reason = reason_of(status);
	if (content_type)
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
	if (h2o_find_header(&req->res.headers, H2O_TOKEN_CACHE_CONTROL, -1) == -1) /* the handler's own, else none */
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
	req->res.content_length = len;
	atomic_fetch_add(&r->srv->bytes_out, len);
	kz_http_finish_req(r);
	h2o_send_inline(req, body, len);
}

void kz_http_error(struct kz_http_req *r, int status, const char *content_type, const char *title, const char *fmt,
		   ...)
{
	char desc[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(desc, sizeof desc, fmt, ap);
	va_end(ap);
	char st[8];
	snprintf(st, sizeof st, "%d", status);
	json_t *o = json_object();
	json_object_set_new(o, "title", json_string(title));
	json_object_set_new(o, "description", json_string(desc)); /* NULL (invalid UTF-8) is ignored */
	json_object_set_new(o, "http_status", json_string(st));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!r->audit_reason)
		r->audit_reason = pool_strndup(&((h2o_req_t *)r->h2o)->pool, desc, strlen(desc));
	kz_http_send(r, status, content_type ? content_type : "application/json", s ? s : "{}", s ? strlen(s) : 2);
	free(s);
}

const char *kz_http_req_header(struct kz_http_req *r, const char *name)
{
	h2o_req_t *req = r->h2o;
	ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
	if (i < 0)
		return NULL;
	h2o_iovec_t v = req->headers.entries[i].value;
	return pool_strndup(&req->pool, v.base, v.len);
}

/* ---------- deferred answers ---------- */

struct kz_http_deferred {
	h2o_multithread_message_t super; /* first: the receiver gets this */
	int kind;                        /* KZ_HTTP_MSG_RESUME (a stream's wake: KZ_HTTP_MSG_WAKE) */
	struct hworker *w;
	struct kz_http_req *r;           /* NULL once the request's pool is gone */
	void (*fn)(void *ctx, struct kz_http_req *r);
	void *ctx;
	int refs;                        /* the guard in the pool + the pending resume */
};

static void guard_dispose(void *p)
{
	struct kz_http_deferred *d = *(struct kz_http_deferred **)p;
	d->r = NULL;
	if (--d->refs == 0)
		free(d);
}

struct kz_http_deferred *kz_http_defer(struct kz_http_req *r)
{
	struct kz_http_deferred *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	h2o_req_t *req = r->h2o;
	d->w = &r->srv->w[r->worker];
	d->r = r;
	d->refs = 2;
	struct kz_http_deferred **g = h2o_mem_alloc_shared(&req->pool, sizeof *g, guard_dispose);
	*g = d;
	return d;
}

void kz_http_resume(struct kz_http_deferred *d, void (*fn)(void *ctx, struct kz_http_req *r), void *ctx)
{
	d->fn = fn;
	d->ctx = ctx;
	/* the message's link is zero (calloc): h2o asserts that it is not linked */
	pthread_mutex_lock(&d->w->qlock);
	bool up = d->w->started;
	if (up)
		h2o_multithread_send_message(&d->w->recv, &d->super);
	pthread_mutex_unlock(&d->w->qlock);
	if (!up) { /* the worker has stopped: its requests are gone */
		fn(ctx, NULL);
		free(d); /* the pool guard went with the connections */
	}
}

static void on_messages(h2o_multithread_receiver_t *recv, h2o_linklist_t *messages)
{
	while (!h2o_linklist_is_empty(messages)) {
		h2o_multithread_message_t *m = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
		h2o_linklist_unlink(&m->link);
		struct kz_http_deferred *d = (struct kz_http_deferred *)m;
		if (d->kind == KZ_HTTP_MSG_WAKE) {
			kz_http_stream_message(m);
			continue;
		}
		d->fn(d->ctx, d->r);
		if (--d->refs == 0)
			free(d);
	}
}

/* ---------- requests ---------- */

static const struct route *route_of(struct kz_http *h, const char *path)
{
	const struct route *best = NULL;
	size_t pl = strlen(path);
	for (size_t i = 0; i < h->n_routes; i++) {
		const struct route *rt = &h->routes[i];
		if (pl >= rt->len && memcmp(path, rt->prefix, rt->len) == 0 &&
		    (pl == rt->len || path[rt->len] == '/' || (rt->len && rt->prefix[rt->len - 1] == '/')) &&
		    (!best || rt->len > best->len))
			best = rt;
	}
	return best;
}

/* libh2o's threshold for moving a body's buffer into a file under /dev/shm, as it was when
 * the node chose tmpfs at start (0: it did not). The start checked for room; /dev/shm can
 * fill later (other programs use it), and a body whose file then cannot grow got no answer.
 * So the room is looked at again, at most once a second, as connections and requests come:
 * without room for one body's buffer at https.max_body_bytes (up to twice the body) new
 * buffers stay in memory until there is. */
static size_t shm_threshold;
static _Atomic uint64_t shm_checked_ms;

static void body_files_room(const struct kz_http *h)
{
	if (!shm_threshold)
		return;
	uint64_t now = kz_now_mono_ms(), last = atomic_load_explicit(&shm_checked_ms, memory_order_relaxed);
	if (now - last < 1000 || !atomic_compare_exchange_strong(&shm_checked_ms, &last, now))
		return;
	struct statfs sf;
	bool room = statfs("/dev/shm", &sf) == 0 &&
		    (uint64_t)sf.f_bavail * (uint64_t)sf.f_bsize / 2 >= h->cfg.max_body_bytes;
	size_t want = room ? shm_threshold : SIZE_MAX;
	/* read by libh2o on the workers as buffers grow: a word, stored whole */
	if (__atomic_exchange_n(&h2o_socket_buffer_mmap_settings.threshold, want, __ATOMIC_RELAXED) != want)
		kz_warn("https: /dev/shm %s: request bodies over 16 MiB are buffered %s", room ? "has room again" :
			"has no room for a body at https.max_body_bytes", room ? "on tmpfs again" : "in memory meanwhile");
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct kz_http *h = ((struct kz_handler *)self)->h;
	struct hworker *w = req->conn->ctx->globalconf == &h->global_anon
				    ? H2O_STRUCT_FROM_MEMBER(struct hworker, ctx_anon, req->conn->ctx)
				    : H2O_STRUCT_FROM_MEMBER(struct hworker, ctx, req->conn->ctx);
	struct kz_http_req *r = h2o_mem_alloc_pool(&req->pool, sizeof *r);
	memset(r, 0, sizeof *r);
	r->srv = h;
	r->h2o = req;
	r->worker = w->idx;
	body_files_room(h);
	r->start_ns = kz_now_mono_ns();
	if (req->timestamps.request_begin_at.tv_sec) {
		uint64_t wall = kz_now_wall_ns(), begun = (uint64_t)req->timestamps.request_begin_at.tv_sec * 1000000000u +
						  (uint64_t)req->timestamps.request_begin_at.tv_usec * 1000u;
		r->received_ns = wall > begun ? wall - begun : 0;
	}
	r->http_version = req->version;
	r->method = pool_strndup(&req->pool, req->method.base, req->method.len);
	size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
	/* the path as sent (percent escapes kept: TAXII ids never need them, and a decoded '/'
	 * must not change the route) */
	r->path = pool_strndup(&req->pool, req->path.base, plen);
	r->query = req->query_at != SIZE_MAX
			   ? pool_strndup(&req->pool, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)
			   : "";
	r->authority = pool_strndup(&req->pool, req->authority.base ? req->authority.base : "", req->authority.base ? req->authority.len : 0);
	r->body = req->entity.base ? req->entity.base : "";
	r->body_len = req->entity.base ? req->entity.len : 0;
	SSL *ssl = ssl_of(req);
	r->tls_group = group_of(ssl);
	r->tls_suite = ssl ? net_tls_suite(ssl) : NULL;
	struct sockaddr_storage sa;
	socklen_t sl = req->conn->callbacks->get_peername ? req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&sa) : 0;
	char *pa = h2o_mem_alloc_pool(&req->pool, 64);
	pa[0] = 0;
	if (sl && sa.ss_family == AF_INET) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, ip, sizeof ip);
		snprintf(pa, 64, "%s:%u", ip, ntohs(((struct sockaddr_in *)&sa)->sin_port));
	} else if (sl && sa.ss_family == AF_INET6) {
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, ip, sizeof ip);
		snprintf(pa, 64, "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
	}
	r->peer_addr = pa;
	const char *refusal = NULL;
	if (ssl) {
		struct peer *p = peer_of(ssl);
		if (p && p->id) {
			r->identity = p->id;
			r->serial = p->serial;
			r->issuer = p->issuer;
			r->cert_not_after = (int64_t)p->not_after;
			refusal = peer_refusal(ssl, p);
		}
	} else if (req->conn->callbacks->get_socket && req->conn->callbacks->get_socket(req->conn) &&
		   req->conn->callbacks->get_socket(req->conn)->ssl) {
		refusal = "cannot read this connection's TLS state (libh2o layout)";
	}
	const struct route *rt = route_of(h, r->path);
	if (!rt) {
		kz_http_error(r, 404, NULL, "Not Found", "no resource at %s", r->path);
		return 0;
	}
	if (rt->auth && (refusal || !r->identity)) {
		if (refusal && strstr(refusal, "libh2o"))
			kz_http_error(r, 500, NULL, "Internal Server Error", "%s", refusal);
		else
			kz_http_error(r, 401, NULL, "Unauthorized", "%s",
				      refusal ? refusal : "a client certificate with a SPIFFE ID is required");
		return 0;
	}
	char gwhy[300];
	int gst = rt->auth && h->cfg.gate ? h->cfg.gate(h->cfg.gate_ctx, r, gwhy, sizeof gwhy) : 0;
	if (gst) {
		r->audit_reason = NULL;
		kz_http_error(r, gst, NULL, gst == 403 ? "Forbidden" : "Refused", "%s", gwhy);
		return 0;
	}
	if (rt->auth && !kz_audit_writable()) {
		kz_http_header(r, "Retry-After", "10");
		kz_http_error(r, 503, NULL, "Service Unavailable",
			      "the audit log cannot be written: requests are refused until it can (docs/AUDIT.md)");
		return 0;
	}
	rt->fn(rt->ctx, r);
	return 0;
}

/* ---------- setup ---------- */

/* One log line and one audit entry per established HTTPS connection, as for MQTT's. */
static void info_cb(const SSL *cssl, int where, int ret)
{
	if (!(where & SSL_CB_HANDSHAKE_DONE))
		return;
	SSL *ssl = (SSL *)cssl;
	struct peer *p = peer_of(ssl);
	const char *id = p && p->id ? p->id : NULL;
	kz_info("https: TLS 1.3 established, group %s, identity %s (HTTPS)", group_of(ssl), id ? id : "none");
	kz_audit(&(struct kz_audit_entry){ .subject = id, .serial = id ? p->serial : NULL, .tls_group = group_of(ssl),
					  .action = "tls", .resource = "https", .allow = true,
					  .reason = id ? "HTTPS, certificate and identity verified" : "HTTPS, no client certificate" });
}

int kz_http_create(const struct kz_http_config *cfg, struct kz_http **out, char *why, size_t why_len)
{
	uv_once(&peer_once, peer_init);
	if (peer_idx < 0) {
		snprintf(why, why_len, "cannot allocate SSL ex_data");
		return -1;
	}
	struct kz_http *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	h->cfg = *cfg;
	SSL_CTX_set_info_callback(cfg->ssl_ctx, info_cb);
	h->w = calloc(cfg->workers ? cfg->workers : 1, sizeof *h->w);
	if (!h->w) {
		free(h);
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	for (unsigned i = 0; i < (cfg->workers ? cfg->workers : 1); i++)
		pthread_mutex_init(&h->w[i].qlock, NULL);
	pthread_mutex_init(&h->init_lock, NULL);
	*out = h;
	return 0;
}

/* ---------- h2o's own error answers, as JSON ----------
 *
 * Some requests are answered by h2o before any handler runs: a body over
 * https.max_body_bytes (HTTP/1.1: 413), a request head h2o cannot parse. h2o makes those
 * answers on the host's fallback path with a text/plain body; this filter on that path
 * gives them the node's JSON error body ({"title", "description", "http_status"}) instead.
 * (HTTP/2 bodies over the limit never get that far: libh2o 2.2 resets the stream.) */
struct err_filter {
	h2o_filter_t super;
	struct kz_http *h;
};
struct err_ostream {
	h2o_ostream_t super;
	h2o_iovec_t body;
};

static void err_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n, h2o_send_state_t state)
{
	struct err_ostream *os = (struct err_ostream *)self;
	h2o_iovec_t b = os->body;
	os->body = h2o_iovec_init(NULL, 0); /* h2o's own text is dropped; ours goes out once */
	h2o_ostream_send_next(self, req, b.base ? &b : NULL, b.base ? 1 : 0, state);
}

static void err_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
	struct kz_http *h = ((struct err_filter *)self)->h;
	if (req->res.status >= 400) {
		char desc[160], *body = h2o_mem_alloc_pool(&req->pool, 400);
		if (req->res.status == 413 && req->conn->ctx->globalconf == &h->global_anon)
			snprintf(desc, sizeof desc, "without a verified client certificate a request body may not exceed "
				 "https.max_anonymous_body_bytes = %llu", (unsigned long long)h->cfg.max_anon_body_bytes);
		else if (req->res.status == 413)
			snprintf(desc, sizeof desc, "the request body is larger than the node accepts (https.max_body_bytes = %llu)",
				 (unsigned long long)h->cfg.max_body_bytes);
		else
			snprintf(desc, sizeof desc, "%s", req->res.reason ? req->res.reason : "the request cannot be handled");
		for (char *c = desc; *c; c++) /* h2o's reasons are plain ASCII; keep the JSON well-formed regardless */
			if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
				*c = ' ';
		int len = snprintf(body, 400, "{\"title\":\"%s\",\"description\":\"%s\",\"http_status\":\"%d\"}",
				   reason_of(req->res.status), desc, req->res.status);
		req->res.content_length = (size_t)len;
		h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"), 1);
		struct err_ostream *os = (struct err_ostream *)h2o_add_ostream(req, sizeof *os, slot);
		os->super.do_send = err_send;
		os->body = h2o_iovec_init(body, (size_t)len);
		slot = &os->super.next;
		/* audited like any other answer (the handler that would have done it never runs) */
		SSL *ssl = ssl_of(req);
		struct peer *p = ssl ? peer_of(ssl) : NULL;
		char res[300], why[300];
		snprintf(res, sizeof res, "%.*s %.*s", (int)(req->method.len < 16 ? req->method.len : 16), req->method.base,
			 (int)(req->path.len < 256 ? req->path.len : 256), req->path.base);
		snprintf(why, sizeof why, "%d %s: %s", req->res.status, reason_of(req->res.status), desc);
		kz_audit(&(struct kz_audit_entry){ .subject = p ? p->id : NULL, .serial = p ? p->serial : NULL,
						  .tls_group = group_of(ssl), .action = "http", .resource = res, .allow = false,
						  .reason = why });
		atomic_fetch_add(&h->requests, 1);
		atomic_fetch_add(req->res.status >= 500 ? &h->e5 : &h->e4, 1);
		kz_info("https: %s -> %s (answered by libh2o before any handler)", res, why);
	}
	h2o_setup_next_ostream(req, slot);
}

/* One h2o configuration: the routes (one handler at /) and the JSON error filter, the
 * timeouts, and the largest request body. */
static void global_setup(struct kz_http *h, h2o_globalconf_t *g, uint64_t max_body)
{
	h2o_config_init(g);
	g->server_name = h2o_iovec_init(H2O_STRLIT("kizuna"));
	g->max_request_entity_size = max_body;
	if (h->cfg.request_timeout_ms)
		g->http1.req_timeout = h->cfg.request_timeout_ms;
	if (h->cfg.handshake_timeout_ms) /* a TLS handshake must finish this long after accept */
		g->handshake_timeout = h->cfg.handshake_timeout_ms;
	if (h->cfg.idle_timeout_ms)
		g->http2.idle_timeout = h->cfg.idle_timeout_ms;
	h2o_hostconf_t *host = h2o_config_register_host(g, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
	struct kz_handler *hd = (struct kz_handler *)h2o_create_handler(pc, sizeof *hd);
	hd->h = h;
	hd->super.on_req = on_req;
	struct err_filter *ef = (struct err_filter *)h2o_create_filter(&host->fallback_path, sizeof *ef);
	ef->h = h;
	ef->super.on_setup_ostream = err_setup;
}

/* h2o's configuration and a worker's context are made on the worker's first HTTPS
 * connection: a node nobody asks over HTTPS keeps none of it (about 0.4 MB). */
static void ensure_global(struct kz_http *h)
{
	pthread_mutex_lock(&h->init_lock);
	if (!h->inited) {
		/* libh2o moves a buffer that grows to 32 MiB (a request body over 16 MiB, HTTP/1.1 or
		 * HTTP/2) into an unlinked file it makes under /tmp, mmap'd shared: the body of a POST
		 * then lies in a disk-backed file outside the node's data directory, where writeback
		 * can put it on disk unencrypted, and with /tmp read-only such a request got no
		 * answer at all (tests/integration/test_taxii_big.py). Here those files go to tmpfs
		 * (/dev/shm: memory, as the node's own; its growth maps the same pages again instead
		 * of copying them, which kept a 52 MB body's receive at 244-266 ms against 326-361 in
		 * malloc'd memory, BENCHMARKS.md), or, without a writable tmpfs there, the buffers
		 * stay malloc'd. Either way they are capped by https.max_body_bytes. */
		struct statfs sf;
		/* room for a few bodies at the cap, each buffer up to twice its body (a container's
		 * /dev/shm is often 64 MB: a full one would leave the request unanswered again) */
		if (statfs("/dev/shm", &sf) == 0 && sf.f_type == TMPFS_MAGIC && access("/dev/shm", W_OK) == 0 &&
		    (uint64_t)sf.f_bavail * (uint64_t)sf.f_bsize / 8 >= h->cfg.max_body_bytes) {
			snprintf(h2o_socket_buffer_mmap_settings.fn_template,
				 sizeof h2o_socket_buffer_mmap_settings.fn_template, "/dev/shm/kizuna-body.XXXXXX");
			shm_threshold = h2o_socket_buffer_mmap_settings.threshold;
		} else
			h2o_socket_buffer_mmap_settings.threshold = SIZE_MAX;
		kz_info("https: request bodies over 16 MiB are buffered %s", h2o_socket_buffer_mmap_settings.threshold == SIZE_MAX
			? "in memory (/dev/shm is not a writable tmpfs with room for 8 bodies at https.max_body_bytes)"
			: "on tmpfs, in unlinked files under /dev/shm");
		global_setup(h, &h->global, h->cfg.max_body_bytes);
		global_setup(h, &h->global_anon, h->cfg.max_anon_body_bytes);
		h->inited = true;
	}
	pthread_mutex_unlock(&h->init_lock);
}

static void worker_context(struct hworker *w)
{
	struct kz_http *h = w->h;
	ensure_global(h);
	/* libh2o keeps a request body in one buffer that it doubles as bytes come (8 KiB ... 4 MiB
	 * for a 3.5 MB ATT&CK bundle), each a fresh malloc copied into: about 2,300 page faults
	 * on a worker's first large POST, 25 ms of its receive on the reference VM against 8 warm.
	 * In huge pages under this worker's arena: about 820 faults, receive 9-17 ms
	 * (BENCHMARKS.md "TAXII ingest", the first POST of a fresh node). Nothing is touched. */
	w->arena_pad = kz_mem_arena_huge((size_t)24 << 20);
	h2o_context_init(&w->ctx, w->loop, &h->global);
	w->accept.ctx = &w->ctx;
	w->accept.hosts = h->global.hosts;
	w->accept.ssl_ctx = h->cfg.ssl_ctx;
	h2o_context_init(&w->ctx_anon, w->loop, &h->global_anon);
	w->accept_anon.ctx = &w->ctx_anon;
	w->accept_anon.hosts = h->global_anon.hosts;
	w->accept_anon.ssl_ctx = h->cfg.ssl_ctx;
	w->queue = h2o_multithread_create_queue(w->loop);
	h2o_multithread_register_receiver(w->queue, &w->recv, on_messages);
	pthread_mutex_lock(&w->qlock);
	w->started = true;
	pthread_mutex_unlock(&w->qlock);
}

int kz_http_route(struct kz_http *h, const char *prefix, bool auth_required, kz_http_handler_fn fn, void *ctx)
{
	if (h->n_routes == KZ_HTTP_MAX_ROUTES || strlen(prefix) >= sizeof h->routes[0].prefix)
		return -1;
	struct route *rt = &h->routes[h->n_routes++];
	snprintf(rt->prefix, sizeof rt->prefix, "%s", prefix);
	rt->len = strlen(prefix);
	rt->auth = auth_required;
	rt->fn = fn;
	rt->ctx = ctx;
	return 0;
}

static void on_handoff(uv_async_t *a);

static void worker_start(void *arg, unsigned idx, struct net_loop *nl)
{
	uv_loop_t *loop = nl->loop;
	struct kz_http *h = arg;
	struct hworker *w = &h->w[idx];
	w->h = h;
	w->idx = idx;
	w->loop = loop; /* the h2o context follows with the first connection */
	pthread_mutex_init(&w->hlock, NULL);
	uv_async_init(loop, &w->handoff, on_handoff);
	w->handoff.data = w;
}

struct hconn {
	uv_tcp_t tcp; /* first: h2o's close callback gets this handle */
	struct kz_http *h;
	struct hworker *w;
	struct hconn *prev, *next;
};

static void conn_closed(uv_handle_t *hd)
{
	struct hconn *c = (struct hconn *)hd;
	atomic_fetch_sub(&c->h->connections, 1);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->w->nconns--;
	atomic_fetch_sub(&c->w->load, 1);
	free(c);
}

static int *realloc_fds(int *v, size_t *cap)
{
	size_t nc;
	int *nv = kz_array_grow(v, sizeof *nv, *cap, (size_t)*cap + 1, 16, SIZE_MAX, &nc);
	if (nv)
		*cap = nc;
	return nv;
}

/* A connection this worker serves: into h2o. */
static void serve_conn(struct hworker *w, struct hconn *c)
{
	struct kz_http *h = w->h;
	if (!w->started && !w->stopping)
		worker_context(w);
	if (!w->started || w->stopping) {
		atomic_fetch_sub(&w->load, 1);
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
		return;
	}
	atomic_fetch_add(&h->connections, 1);
	c->h = h;
	c->w = w;
	c->next = w->conns;
	if (c->next)
		c->next->prev = c;
	w->conns = c;
	w->nconns++;
	uv_tcp_nodelay(&c->tcp, 1); /* answers leave at once, not after a delayed ACK */
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	uint8_t src[16] = { 0 };
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0)
		net_addr_key((struct sockaddr *)&ss, src);
	body_files_room(h);
	kz_http_accept(w, h2o_uv_socket_create((uv_stream_t *)&c->tcp, conn_closed), src);
}

/* Connections handed over by other workers. */
static void on_handoff(uv_async_t *a)
{
	struct hworker *w = a->data;
	for (;;) {
		pthread_mutex_lock(&w->hlock);
		struct kz_ws *ws = w->nhws ? w->hws[--w->nhws] : NULL;
		pthread_mutex_unlock(&w->hlock);
		if (!ws)
			break;
		kz_http_ws_adopt(w, ws);
	}
	for (;;) {
		pthread_mutex_lock(&w->hlock);
		int fd = w->nhfd ? w->hfd[--w->nhfd] : -1;
		pthread_mutex_unlock(&w->hlock);
		if (fd < 0)
			return;
		struct hconn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			atomic_fetch_sub(&w->load, 1);
			continue;
		}
		uv_tcp_init(w->loop, &c->tcp);
		if (uv_tcp_open(&c->tcp, fd)) {
			close(fd);
			atomic_fetch_sub(&w->load, 1);
			uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
			continue;
		}
		serve_conn(w, c);
	}
}

/* Whichever worker wakes first accepts from the shared listening socket: a few busy
 * clients (a bulk import over four connections) can land on one worker while the other
 * idles. A worker that accepts a connection while another one holds fewer hands the
 * descriptor over (an async wake-up per connection). */
static void accept_fd(void *arg, unsigned idx, struct net_loop *nl, int fd)
{
	uv_loop_t *loop = nl->loop;
	struct kz_http *h = arg;
	struct hworker *w = &h->w[idx];
	if (w->stopping) {
		close(fd);
		return;
	}
	unsigned n = h->cfg.workers ? h->cfg.workers : 1, best = idx;
	unsigned least = atomic_load(&w->load);
	for (unsigned i = 0; i < n; i++) {
		unsigned l = atomic_load(&h->w[i].load);
		if (l < least && h->w[i].loop) {
			least = l;
			best = i;
		}
	}
	struct hworker *to = &h->w[best];
	atomic_fetch_add(&to->load, 1);
	if (best != idx) { /* the descriptor itself goes over */
		bool queued = false;
		pthread_mutex_lock(&to->hlock);
		int *nv = to->nhfd < to->caphfd || to->ended ? to->hfd : realloc_fds(to->hfd, &to->caphfd);
		if (nv && !to->ended) {
			to->hfd = nv;
			to->hfd[to->nhfd++] = fd;
			queued = true;
			uv_async_send(&to->handoff);
		}
		pthread_mutex_unlock(&to->hlock);
		if (!queued) {
			close(fd);
			atomic_fetch_sub(&to->load, 1);
		}
		return;
	}
	struct hconn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		atomic_fetch_sub(&w->load, 1);
		return;
	}
	uv_tcp_init(loop, &c->tcp);
	if (uv_tcp_open(&c->tcp, fd) != 0) {
		close(fd); /* not the handle's */
		atomic_fetch_sub(&w->load, 1);
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
		return;
	}
	serve_conn(w, c);
}

/* Stop: every open connection is shut down at the socket, so that h2o reads EOF and closes
 * it the normal way (its memory freed); the idle hook tells when they are gone. */
static void worker_stop(void *arg, unsigned idx)
{
	struct kz_http *h = arg;
	struct hworker *w = &h->w[idx];
	w->stopping = true;
	for (struct hconn *c = w->conns; c; c = c->next) {
		uv_os_fd_t fd;
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
			shutdown(fd, SHUT_RDWR);
	}
}

static bool worker_idle(void *arg, unsigned idx)
{
	struct kz_http *h = arg;
	return h->w[idx].nconns == 0 && atomic_load(&h->w[idx].nws) == 0;
}

/* After the worker's loop has ended, before its handles are closed: answers still to come
 * are dropped (kz_http_resume sees the worker gone) and h2o's context is disposed. */
static void worker_end(void *arg, unsigned idx)
{
	struct kz_http *h = arg;
	struct hworker *w = &h->w[idx];
	pthread_mutex_lock(&w->hlock);
	w->ended = true;
	while (w->nhfd)
		close(w->hfd[--w->nhfd]);
	free(w->hfd);
	w->hfd = NULL;
	while (w->nhws)
		kz_http_ws_drop(w->hws[--w->nhws]);
	free(w->hws);
	w->hws = NULL;
	pthread_mutex_unlock(&w->hlock);
	pthread_mutex_lock(&w->qlock);
	bool was = w->started;
	w->started = false;
	pthread_mutex_unlock(&w->qlock);
	if (!was)
		return;
	h2o_multithread_unregister_receiver(w->queue, &w->recv);
	h2o_multithread_destroy_queue(w->queue);
	h2o_context_dispose(&w->ctx);
	h2o_context_dispose(&w->ctx_anon);
	free(w->arena_pad);
	w->arena_pad = NULL;
}

void kz_http_free(struct kz_http *h)
{
	if (!h)
		return;
	/* h2o's per-loop contexts end with their loops; the global configuration is ours */
	if (h->inited) {
		h2o_config_dispose(&h->global);
		h2o_config_dispose(&h->global_anon);
	}
	free(h->w);
	free(h);
}

void kz_http_stats(struct kz_http *h, struct kz_http_stats *out)
{
	out->requests = atomic_load(&h->requests);
	out->errors_4xx = atomic_load(&h->e4);
	out->errors_5xx = atomic_load(&h->e5);
	out->bytes_in = atomic_load(&h->bytes_in);
	out->bytes_out = atomic_load(&h->bytes_out);
	out->connections = atomic_load(&h->connections);
	out->handshake_timeouts = atomic_load(&h->hs_timeouts);
	out->handshake_evicted = atomic_load(&h->hs_evicted);
}

/* ---------- query strings ---------- */


/* Decodes [p, e) into out (cap bytes incl. NUL). -1: bad escape, -2: too long, NUL inside. */
static int unescape(const char *p, const char *e, char *out, size_t cap)
{
	size_t n = 0;
	while (p < e) {
		int c = (unsigned char)*p++;
		if (c == '+')
			c = ' ';
		else if (c == '%') {
			if (e - p < 2 || kz_hexval(p[0]) < 0 || kz_hexval(p[1]) < 0)
				return -1;
			c = kz_hexval(p[0]) * 16 + kz_hexval(p[1]);
			p += 2;
			if (c == 0)
				return -1;
		}
		if (n + 1 >= cap)
			return -2;
		out[n++] = (char)c;
	}
	out[n] = 0;
	return 0;
}

int kz_http_query_each(const char *q, size_t n, int (*fn)(void *ctx, const char *k, const char *v), void *ctx,
		       const char **why)
{
	char k[4096], v[4096];
	const char *p = q, *end = q + n;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pe = amp ? amp : end;
		if (pe > p) {
			const char *eq = memchr(p, '=', (size_t)(pe - p));
			const char *ke = eq ? eq : pe;
			int a = unescape(p, ke, k, sizeof k);
			int b = a ? 0 : unescape(eq ? eq + 1 : pe, pe, v, sizeof v);
			if (a || b) {
				*why = (a == -2 || b == -2) ? "a query parameter is over 4096 bytes"
							    : "malformed percent-escape in the query string";
				return -1;
			}
			int rc = fn(ctx, k, v);
			if (rc)
				return rc;
		}
		p = pe + (amp ? 1 : 0);
	}
	return 0;
}

unsigned kz_http_workers(const struct kz_http *h) { return h->cfg.workers ? h->cfg.workers : 1; }

unsigned kz_http_worker_load(struct kz_http *h, unsigned idx) { return atomic_load(&h->w[idx].load); }

void kz_http_proto(struct kz_http *h, int fd, const char *host, struct net_proto *out)
{
	*out = (struct net_proto){ .name = "HTTPS", .ctx = h, .fd = fd, .host = host, .worker_start = worker_start,
				   .accept = accept_fd, .stop = worker_stop, .idle = worker_idle, .end = worker_end };
}
