/* net_worker.c — the node's network workers. Each worker thread runs one libuv loop with
 * its own descriptor of the shared listening sockets (accepting is its own, so that it can
 * pause), its own connections and its own broker shard. A connection
 * whose CONNECT names a client id homed on another shard is moved there (socket, TLS state
 * and unparsed bytes) before the CONNECT is processed. */
#include "net/net.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "mqtt/mqtt_broker.h"
#include "trust/audit.h"
#include "trust/ca.h"

#include <openssl/x509.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One worker's side of a listening socket (shared by the workers, each with its own
 * descriptor). Accepting is ours, not libuv's, so that it can stop:
 *   ACCEPTING --accept fails with EMFILE/ENFILE/ENOBUFS/ENOMEM, or the new descriptor is
 *               within limits.fd_reserve of the process's limit--> PAUSED (the poll is
 *               stopped; what was accepted is closed at once)
 *   PAUSED    --back-off timer--> ACCEPTING (one attempt; the back-off doubles to 2 s while it
 *               fails, and resets once accepting works)
 * The change of state is logged once for the whole node (net_server.fd_exhausted). */
struct acceptor {
	uv_poll_t poll;
	uv_timer_t backoff;
	struct net_worker *w;
	int fd;
	bool https, paused, open;
	uint32_t backoff_ms;
};

struct net_worker {
	struct net_server *srv;
	unsigned idx;
	uv_loop_t loop;
	uv_thread_t thread;
	struct net_loop nl;
	struct acceptor mqtt_acc, https_acc;
	uv_async_t wake, stop;
	uv_timer_t tick;
	struct mqtt_shard *shard;
	bool is_stopping;
	uint64_t stop_started_ms;
};

struct net_server {
	struct net_server_config cfg;
	struct mqtt_broker *broker;
	struct net_worker *w;
	unsigned n;
	int port, https_port;
	atomic_uint n_enroll;     /* enrolment connections open */
	atomic_uint n_handshakes; /* MQTT-port connections in their TLS handshake (all workers) */
	atomic_bool fd_exhausted; /* some worker's accepting is paused for descriptors */
};

/* Counters for /metrics (all servers of the process). */
static atomic_uint_fast64_t st_accept_paused, st_accept_refused, st_hs_timeouts, st_hs_evicted, st_lingered;
static atomic_uint fd_limit; /* RLIMIT_NOFILE (soft) once raised by net_raise_fd_limit; 0: unknown */

void net_counters(struct net_counters *out)
{
	out->accept_paused = atomic_load(&st_accept_paused);
	out->accept_refused = atomic_load(&st_accept_refused);
	out->handshake_timeouts = atomic_load(&st_hs_timeouts);
	out->handshake_evicted = atomic_load(&st_hs_evicted);
	out->close_lingered = atomic_load(&st_lingered);
	out->fd_limit = atomic_load(&fd_limit);
}

unsigned net_raise_fd_limit(char *msg, size_t len)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl)) {
		snprintf(msg, len, "file descriptors: cannot read the limit: %s", strerror(errno));
		return 0;
	}
	rlim_t was = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			rl.rlim_cur = was;
	}
	unsigned lim = rl.rlim_cur > (rlim_t)UINT32_MAX / 2 ? UINT32_MAX / 2 : (unsigned)rl.rlim_cur;
	atomic_store(&fd_limit, lim);
	if (was != rl.rlim_cur)
		snprintf(msg, len, "file descriptors: %u (soft limit raised from %llu to the hard limit)", lim,
			 (unsigned long long)was);
	else
		snprintf(msg, len, "file descriptors: %u (the hard limit)", lim);
	return lim;
}

/* A connection in transit between workers. */
struct migration {
	int fd;
	SSL *ssl;            /* or, after the handshake, */
	struct net_rl *rl;   /* the record layer */
	struct mqtt_client *client;
	char addr[64];
};

static void mqtt_want_flush(void *t) { net_conn_want_flush(t); }
static void mqtt_close(void *t) { net_conn_close(t); }
static void mqtt_migrate(void *t, unsigned idx);

static void mqtt_hold_reading(void *t, bool hold) { net_conn_hold_reading(t, hold); }
static size_t mqtt_pending(void *t) { return net_conn_output_pending(t); }
static const struct mqtt_transport_ops mqtt_ops = { mqtt_want_flush, mqtt_close, mqtt_migrate,
						    mqtt_hold_reading, mqtt_pending };

static void on_open(struct net_conn *c);
static void on_data(struct net_conn *c, const uint8_t *p, size_t n);
static void on_writable(struct net_conn *c);
static void on_close(struct net_conn *c);
static const struct net_conn_cbs server_cbs = { on_open, on_data, on_writable, on_close };

static struct net_worker *worker_of(struct net_conn *c) { return c->nl->user; }

/* ---------- enrolment connections (ALPN kizuna-enroll/1) ---------- */

/* One request, one answer, close: READING --complete--> answer, CLOSING;
 * READING --timeout | over the cap | malformed--> ERROR answer, CLOSING. */
struct enroll_conn {
	struct net_conn *c;        /* NULL once the connection is gone (the timer closes later) */
	struct net_server *srv;
	struct kz_buf in;
	uv_timer_t timer;
	bool done;
};

static void enroll_on_data(struct net_conn *c, const uint8_t *p, size_t n);
static void enroll_on_close(struct net_conn *c);
static const struct net_conn_cbs enroll_cbs = { NULL, enroll_on_data, NULL, enroll_on_close };

static void enroll_answer(struct enroll_conn *e, const char *text)
{
	e->done = true;
	uv_timer_stop(&e->timer);
	if (text)
		kz_buf_append(&e->c->out, text, strlen(text));
	net_conn_close(e->c);
}

static void enroll_refuse(struct enroll_conn *e, const char *code, const char *why)
{
	char msg[300];
	snprintf(msg, sizeof msg, "ERROR %s %s\n", code, why);
	kz_warn("%s: enrolment refused: %s", e->c->addr, why);
	kz_audit(&(struct kz_audit_entry){ .action = "enroll", .resource = e->c->addr, .allow = false,
					  .reason = why, .tls_group = net_conn_group(e->c) });
	enroll_answer(e, msg);
}

static void enroll_timeout(uv_timer_t *t)
{
	struct enroll_conn *e = t->data;
	if (!e->done)
		enroll_refuse(e, "timeout", "no complete enrolment request in time");
}

static void enroll_on_data(struct net_conn *c, const uint8_t *p, size_t n)
{
	struct enroll_conn *e = c->user;
	struct net_worker *w = worker_of(c);
	if (!e || e->done)
		return;
	if (e->in.len + n > w->srv->cfg.enroll_max_bytes) {
		enroll_refuse(e, "too-big", "enrolment request is over the node's limit (enroll.max_request_bytes)");
		return;
	}
	kz_buf_append(&e->in, p, n);
	const char *tok, *csr, *why;
	size_t tl, cl;
	int r = kz_enroll_parse((const char *)kz_buf_head(&e->in), e->in.len, &tok, &tl, &csr, &cl, &why);
	if (r > 0)
		return;
	if (r < 0) {
		enroll_refuse(e, "bad-request", why);
		return;
	}
	bool allowed;
	char id[2100], reason[512];
	/* Runs on this worker's loop: a signature and a few small fsync'd file writes, at the
	 * rate machines enrol. */
	char *answer = kz_enroll_serve(w->srv->cfg.ca, tok, tl, csr, cl, w->srv->cfg.max_cert_lifetime_s, &allowed,
				       id, reason, sizeof reason);
	kz_audit(&(struct kz_audit_entry){ .subject = id[0] ? id : NULL, .action = "enroll", .resource = c->addr,
					  .allow = allowed, .reason = reason, .tls_group = net_conn_group(c) });
	if (allowed)
		kz_info("%s: enrolled %s: %s", c->addr, id, reason);
	else
		kz_warn("%s: enrolment refused%s%s: %s", c->addr, id[0] ? " for " : "", id, reason);
	enroll_answer(e, answer ? answer : "ERROR internal out of memory\n");
	free(answer);
}

static void enroll_free(uv_handle_t *h)
{
	struct enroll_conn *e = h->data;
	atomic_fetch_sub(&e->srv->n_enroll, 1);
	kz_buf_cleanup(&e->in);
	free(e);
}

static void enroll_on_close(struct net_conn *c)
{
	struct enroll_conn *e = c->user;
	c->user = NULL;
	if (e) {
		e->c = NULL;
		uv_close((uv_handle_t *)&e->timer, enroll_free);
	}
}

static void enroll_start(struct net_conn *c)
{
	struct net_worker *w = worker_of(c);
	struct enroll_conn *e = calloc(1, sizeof *e);
	if (!e) {
		net_conn_close(c);
		return;
	}
	e->c = c;
	e->srv = w->srv;
	kz_buf_init(&e->in, 0);
	uv_timer_init(&w->loop, &e->timer);
	e->timer.data = e;
	c->user = e;
	c->cbs = &enroll_cbs;
	unsigned open = atomic_fetch_add(&w->srv->n_enroll, 1) + 1;
	if (open > w->srv->cfg.enroll_max_connections) {
		enroll_refuse(e, "busy", "too many enrolment connections open (enroll.max_connections); try again later");
		return;
	}
	if (!w->srv->cfg.ca) {
		enroll_refuse(e, "unavailable", "this node does not enrol (no CA key, or enroll.enabled = 0)");
		return;
	}
	uv_timer_start(&e->timer, enroll_timeout, w->srv->cfg.enroll_timeout_ms ? w->srv->cfg.enroll_timeout_ms : 10000, 0);
}

/* ---------- the minimal HTTPS listener (/healthz) ---------- */

/* ---------- MQTT connections ---------- */

static void on_open(struct net_conn *c)
{
	struct net_worker *w = worker_of(c);
	if (net_tls_is_enroll(c->ssl)) {
		kz_info("%s: TLS 1.3 established, group %s, enrolment", c->addr, net_conn_group(c));
		enroll_start(c);
		return;
	}
	const char *why = NULL;
	char *id = net_tls_peer_spiffe(c->ssl, &why);
	char serial[KZ_SERIAL_HEX] = "";
	X509 *cert = SSL_get0_peer_certificate(c->ssl);
	if (cert)
		kz_x509_serial_hex(cert, serial);
	char issuer[160] = "";
	if (cert)
		X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof issuer);
	kz_audit(&(struct kz_audit_entry){ .subject = id, .serial = serial, .tls_group = net_conn_group(c),
					  .issuer = issuer, .tls = net_tls_suite(c->ssl), .addr = c->addr,
					  .action = "tls", .resource = c->addr, .allow = id != NULL,
					  .reason = id ? "certificate and identity verified" : why });
	if (!id) {
		kz_warn("%s: refused: %s", c->addr, why);
		net_conn_close(c);
		return;
	}
	kz_info("%s: TLS 1.3 established, group %s, identity %s", c->addr, net_conn_group(c), id);
	w->shard->now_ms = uv_now(&w->loop);
	struct mqtt_client *mc = mqtt_client_new(w->shard, &mqtt_ops, c, &c->out, id, c->addr);
	if (!mc) {
		net_conn_close(c);
		return;
	}
	snprintf(mc->cert_serial, sizeof mc->cert_serial, "%s", serial);
	mc->tls_group = net_conn_group(c);
	mc->tls_suite = net_tls_suite(c->ssl);
	X509_NAME_oneline(X509_get_issuer_name(cert), mc->cert_issuer, sizeof mc->cert_issuer);
	struct tm tm;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
		mc->cert_not_after = (int64_t)timegm(&tm);
	c->user = mc;
}

static void on_data(struct net_conn *c, const uint8_t *p, size_t n)
{
	if (!c->user)
		return;
	worker_of(c)->shard->now_ms = uv_now(c->nl->loop);
	mqtt_client_input(c->user, p, n);
}

static void on_writable(struct net_conn *c)
{
	if (c->user && !(c->flags & NET_CONN_MIGRATING))
		mqtt_client_writable(c->user);
}

static void on_close(struct net_conn *c)
{
	if (c->flags & NET_CONN_MIGRATING) {
		c->ssl = NULL; /* moved with the migration */
		c->rl = NULL;
		return;
	}
	if (c->user)
		mqtt_client_closed(c->user);
	c->user = NULL;
}

static void migrate_now(struct net_conn *c, unsigned idx)
{
	struct net_worker *w = worker_of(c);
	struct migration *m = calloc(1, sizeof *m);
	uv_os_fd_t fd;
	if (!m || uv_fileno((uv_handle_t *)&c->tcp, &fd)) {
		free(m);
		c->flags &= ~NET_CONN_MIGRATING;
		net_conn_close(c);
		return;
	}
	m->fd = dup(fd);
	if (m->fd < 0 || net_conn_detach_tls(c, &m->ssl, &m->rl) || (!m->ssl && !m->rl)) {
		if (m->fd >= 0)
			close(m->fd);
		free(m);
		c->flags &= ~NET_CONN_MIGRATING;
		net_conn_close(c);
		return;
	}
	m->client = c->user;
	snprintf(m->addr, sizeof m->addr, "%s", c->addr);
	c->user = NULL;
	kz_buf_cleanup(&c->out);
	/* Closing the original fd removes it from this loop's epoll set; the dup lives on. */
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->flags |= NET_CONN_CLOSED;
	uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
	/* on_close is not called for a migrating conn: the handle's memory is freed only. */
	if (mqtt_broker_post_foreign(w->srv->broker, idx, m)) {
		close(m->fd);
		SSL_free(m->ssl);
		net_rl_free(m->rl);
		mqtt_client_closed(m->client);
		free(m);
	}
}

static void mqtt_migrate(void *t, unsigned idx)
{
	struct net_conn *c = t;
	c->flags |= NET_CONN_MIGRATING;
	mqtt_client_detach(c->user);
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (net_conn_output_pending(c) == 0)
		migrate_now(c, idx);
	else
		kz_warn("%s: output pending at migration; closing", c->addr), net_conn_close(c);
}

static void on_foreign(void *ctx, unsigned idx, void *foreign)
{
	struct net_server *srv = ctx;
	struct net_worker *w = &srv->w[idx];
	struct migration *m = foreign;
	struct net_conn *c = calloc(1, sizeof *c);
	if (!c || uv_tcp_init(&w->loop, &c->tcp)) {
		free(c);
		goto fail;
	}
	if (uv_tcp_open(&c->tcp, m->fd)) {
		c->tcp.data = NULL;
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
		goto fail;
	}
	c->tcp.data = c;
	c->nl = &w->nl;
	c->cbs = &server_cbs;
	c->ssl = m->ssl;
	c->rl = m->rl;
	c->flags = NET_CONN_HANDSHAKEN;
	c->user = m->client;
	snprintf(c->addr, sizeof c->addr, "%s", m->addr);
	kz_buf_init(&c->out, 0);
	free(m);
	w->shard->now_ms = uv_now(&w->loop);
	mqtt_client_resume(c->user, w->shard, c, &c->out);
	if (!(c->flags & NET_CONN_CLOSING))
		net_conn_resume_reading(c);
	return;
fail:
	close(m->fd);
	SSL_free(m->ssl);
	net_rl_free(m->rl);
	mqtt_client_closed(m->client);
	free(m);
}

/* A new MQTT-port connection (enrolment included) into its TLS handshake. Connections
 * that have not finished it are capped overall (limits.max_handshakes, all workers) and per
 * source address (limits.max_handshakes_per_address, per worker: each holds its share):
 * beyond a cap the oldest such connection is closed, so that a flood of half-open
 * connections cannot keep a real client out. */
static void mqtt_accepted(struct net_worker *w, int fd)
{
	const struct mqtt_limits *lim = &w->srv->broker->lim;
	struct net_conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return;
	}
	if (uv_tcp_init(&w->loop, &c->tcp)) {
		free(c);
		close(fd);
		return;
	}
	c->tcp.data = c;
	if (uv_tcp_open(&c->tcp, fd)) {
		close(fd);
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
		return;
	}
	uint32_t hard_cap = lim->max_connections + lim->max_connections / 10 + 16;
	if (atomic_load(&w->srv->broker->n_connections) >= hard_cap || w->is_stopping) {
		kz_warn("refusing a connection: %u connections open", atomic_load(&w->srv->broker->n_connections));
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)(void (*)(void))free);
		return;
	}
	if (net_conn_accept(c, &w->nl, w->srv->cfg.ctx, &server_cbs, NULL)) {
		net_conn_close(c);
		return;
	}
	uint32_t per_addr = lim->max_handshakes_per_address / w->srv->n;
	if (lim->max_handshakes_per_address && per_addr == 0)
		per_addr = 1;
	if (per_addr && net_loop_handshakes_from(&w->nl, c->src) > per_addr) {
		struct net_conn *old = net_loop_oldest_handshake(&w->nl, c->src);
		kz_debug("%s: over limits.max_handshakes_per_address; closing the oldest handshake from it", old->addr);
		atomic_fetch_add_explicit(&st_hs_evicted, 1, memory_order_relaxed);
		net_conn_abort(old);
	}
	while (lim->max_handshakes && atomic_load(&w->srv->n_handshakes) > lim->max_handshakes) {
		struct net_conn *old = net_loop_oldest_handshake(&w->nl, NULL);
		if (!old || old == c)
			break; /* the older ones are another worker's: it evicts at its next accept */
		kz_debug("%s: over limits.max_handshakes; closing the oldest handshake", old->addr);
		atomic_fetch_add_explicit(&st_hs_evicted, 1, memory_order_relaxed);
		net_conn_abort(old);
	}
}

static void acceptor_poll_cb(uv_poll_t *p, int status, int events);

static void acceptor_resume(uv_timer_t *t)
{
	struct acceptor *a = t->data;
	if (a->w->is_stopping || !a->open)
		return;
	a->paused = false;
	uv_poll_start(&a->poll, UV_READABLE, acceptor_poll_cb);
}

static void acceptor_pause(struct acceptor *a, const char *why)
{
	atomic_fetch_add_explicit(&st_accept_paused, 1, memory_order_relaxed);
	if (!atomic_exchange(&a->w->srv->fd_exhausted, true))
		kz_error("not accepting connections for now: %s (existing connections are served; "
			 "limits.fd_reserve descriptors are kept for the node's own files)", why);
	a->paused = true;
	a->backoff_ms = a->backoff_ms ? (a->backoff_ms * 2 > 2000 ? 2000 : a->backoff_ms * 2) : 100;
	uv_poll_stop(&a->poll);
	uv_timer_start(&a->backoff, acceptor_resume, a->backoff_ms, 0);
}

static void acceptor_poll_cb(uv_poll_t *p, int status, int events)
{
	struct acceptor *a = p->data;
	struct net_worker *w = a->w;
	(void)events;
	if (status < 0 || w->is_stopping)
		return;
	unsigned limit = atomic_load(&fd_limit);
	uint32_t reserve = w->srv->broker->lim.fd_reserve;
	for (int i = 0; i < 64; i++) { /* a share of the iteration for each listener */
		int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				char why[160];
				snprintf(why, sizeof why, "accept: %s", strerror(errno));
				acceptor_pause(a, why);
				return;
			}
			continue; /* ECONNABORTED, EINTR, EPROTO...: that connection only */
		}
		/* accept returns the lowest free descriptor: when even that is within the reserve,
		 * every one below it is taken */
		if (limit && reserve && (unsigned)fd + reserve >= limit) {
			close(fd);
			atomic_fetch_add_explicit(&st_accept_refused, 1, memory_order_relaxed);
			char why[200];
			snprintf(why, sizeof why, "%u of %u file descriptors in use (limits.fd_reserve = %u)", (unsigned)fd + 1,
				 limit, reserve);
			acceptor_pause(a, why);
			return;
		}
		if (a->backoff_ms) {
			a->backoff_ms = 0;
			if (atomic_exchange(&w->srv->fd_exhausted, false))
				kz_info("accepting connections again (file descriptors available)");
		}
		if (a->https)
			w->srv->cfg.https_accept(w->srv->cfg.https, w->idx, &w->loop, fd);
		else
			mqtt_accepted(w, fd);
	}
}

static int acceptor_open(struct acceptor *a, struct net_worker *w, int fd, bool https)
{
	a->w = w;
	a->fd = fd;
	a->https = https;
	if (uv_poll_init(&w->loop, &a->poll, fd))
		return -1;
	a->poll.data = a;
	uv_timer_init(&w->loop, &a->backoff);
	a->backoff.data = a;
	a->open = true;
	return uv_poll_start(&a->poll, UV_READABLE, acceptor_poll_cb) ? -1 : 0;
}

static void acceptor_closed(uv_handle_t *h)
{
	struct acceptor *a = h->data;
	close(a->fd);
}

static void acceptor_close(struct acceptor *a)
{
	if (!a->open)
		return;
	a->open = false;
	uv_timer_stop(&a->backoff);
	uv_close((uv_handle_t *)&a->backoff, NULL);
	uv_close((uv_handle_t *)&a->poll, acceptor_closed);
}

static void wake_cb(uv_async_t *h)
{
	struct net_worker *w = h->data;
	w->shard->now_ms = uv_now(&w->loop);
	mqtt_shard_drain(w->shard);
}

static void before_flush(struct net_loop *nl)
{
	struct net_worker *w = nl->user;
	mqtt_shard_flush(w->shard);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void tick_cb(uv_timer_t *t)
{
	struct net_worker *w = t->data;
	w->shard->now_ms = uv_now(&w->loop);
	mqtt_shard_tick(w->shard);
	net_loop_sweep(&w->nl);
	atomic_fetch_add_explicit(&st_hs_timeouts, w->nl.hs_timeouts, memory_order_relaxed);
	atomic_fetch_add_explicit(&st_lingered, w->nl.lingered, memory_order_relaxed);
	w->nl.hs_timeouts = w->nl.lingered = 0;
	bool https_idle = !w->srv->cfg.https_port || w->srv->cfg.https_worker_idle(w->srv->cfg.https, w->idx);
	if (w->is_stopping &&
	    ((w->shard->n_clients == 0 && https_idle) || w->shard->now_ms - w->stop_started_ms > 3000)) {
		/* every client closed (or the grace period passed): end the loop */
		mqtt_shard_flush(w->shard);
		net_loop_close_pending(&w->nl, true); /* their close callbacks run as the loop winds down */
		uv_stop(&w->loop);
	}
}

static void stop_cb(uv_async_t *h)
{
	struct net_worker *w = h->data;
	if (w->is_stopping)
		return;
	w->is_stopping = true;
	w->stop_started_ms = uv_now(&w->loop);
	acceptor_close(&w->mqtt_acc);
	net_loop_close_pending(&w->nl, false); /* nothing to say to a connection not yet authenticated */
	if (w->srv->cfg.https_port) {
		acceptor_close(&w->https_acc);
		w->srv->cfg.https_worker_stop(w->srv->cfg.https, w->idx);
	}
	w->shard->now_ms = uv_now(&w->loop);
	mqtt_shard_shutdown(w->shard);
	uv_timer_start(&w->tick, tick_cb, 20, 20);
}

static void worker_main(void *arg)
{
	struct net_worker *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (w->srv->cfg.https_port)
		w->srv->cfg.https_worker_end(w->srv->cfg.https, w->idx);
	/* close what is left: connections not finished in the grace period, handles */
	uv_walk(&w->loop, walk_close, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int sock_port(int fd)
{
	struct sockaddr_storage got;
	socklen_t gl = sizeof got;
	if (getsockname(fd, (struct sockaddr *)&got, &gl))
		return 0;
	return ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
					       : ((struct sockaddr_in6 *)&got)->sin6_port);
}

int net_bind(const char *host, int port, int *out_port, char *why, size_t why_len)
{
	struct sockaddr_storage sa;
	memset(&sa, 0, sizeof sa);
	int family = AF_INET;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa)) {
		if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)) {
			snprintf(why, why_len, "listen address '%s' is not an IP address", host);
			return -1;
		}
		family = AF_INET6;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;
	/* No SO_REUSEPORT: it would let a second process of the same user bind the port and take
	 * part of the connections. The workers share this one socket (net_server_start). */
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(fd, (struct sockaddr *)&sa, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6))) {
		if (errno == EADDRINUSE)
			snprintf(why, why_len, "cannot listen on %s:%d: address in use (another node or program "
				 "listens there)", host, port);
		else
			snprintf(why, why_len, "cannot listen on %s:%d: %s", host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*out_port = sock_port(fd);
	return fd;
}

static void broker_wake(void *ctx, unsigned idx)
{
	struct net_server *srv = ctx;
	uv_async_send(&srv->w[idx].wake);
}

int net_server_start(struct net_server **out, const struct net_server_config *cfg,
		     struct mqtt_broker *broker, char *why, size_t why_len)
{
	struct net_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return KZ_ENOMEM;
	srv->cfg = *cfg;
	srv->broker = broker;
	srv->n = broker->n_shards;
	srv->w = calloc(srv->n, sizeof *srv->w);
	if (!srv->w) {
		free(srv);
		return KZ_ENOMEM;
	}
	broker->wake = broker_wake;
	broker->on_foreign = on_foreign;
	broker->ctx = srv;
	int port = cfg->port, https_port = cfg->https_port < 0 ? 0 : cfg->https_port;
	/* One listening socket per address, shared by every worker (each accepts from it on
	 * its own loop): only this process can listen there. */
	int lfd = cfg->fd >= 0 ? cfg->fd : net_bind(cfg->host, port, &port, why, why_len), hlfd = -1;
	if (lfd < 0)
		return KZ_EIO; /* the process exits on this error */
	if (cfg->https_port)
		hlfd = cfg->https_fd >= 0 ? cfg->https_fd : net_bind(cfg->https_host, https_port, &https_port, why, why_len);
	if (lfd >= 0 && cfg->fd >= 0)
		port = sock_port(lfd);
	if (hlfd >= 0 && cfg->https_fd >= 0)
		https_port = sock_port(hlfd);
	if ((cfg->https_port && hlfd < 0) || listen(lfd, 1024) || (hlfd >= 0 && listen(hlfd, 1024))) {
		if (!(cfg->https_port && hlfd < 0))
			snprintf(why, why_len, "cannot listen: %s", strerror(errno));
		close(lfd);
		if (hlfd >= 0)
			close(hlfd);
		free(srv->w);
		free(srv);
		return KZ_EIO;
	}
	srv->port = port;
	for (unsigned i = 0; i < srv->n; i++) {
		struct net_worker *w = &srv->w[i];
		w->srv = srv;
		w->idx = i;
		w->shard = &broker->shards[i];
		uv_loop_init(&w->loop);
		net_loop_init(&w->nl, &w->loop);
		w->nl.user = w;
		w->nl.before_flush = before_flush;
		if (cfg->read_budget)
			w->nl.read_budget = cfg->read_budget;
		if (cfg->write_backlog)
			w->nl.write_high = cfg->write_backlog;
		w->nl.handshake_ms = broker->lim.handshake_timeout_ms;
		w->nl.linger_ms = broker->lim.close_linger_ms;
		w->nl.hs_total = &srv->n_handshakes;
		int fd = i + 1 == srv->n ? lfd : fcntl(lfd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(why, why_len, "cannot share the listening socket: %s", strerror(errno));
			return KZ_EIO;
		}
		if (acceptor_open(&w->mqtt_acc, w, fd, false)) {
			snprintf(why, why_len, "cannot listen on %s:%d", cfg->host, port);
			return KZ_EIO;
		}
		if (cfg->https_port) {
			int hfd = i + 1 == srv->n ? hlfd : fcntl(hlfd, F_DUPFD_CLOEXEC, 0);
			if (hfd < 0) {
				snprintf(why, why_len, "cannot share the listening socket: %s", strerror(errno));
				return KZ_EIO;
			}
			srv->https_port = https_port;
			if (acceptor_open(&w->https_acc, w, hfd, true)) {
				snprintf(why, why_len, "cannot listen on %s:%d", cfg->https_host, https_port);
				return KZ_EIO;
			}
			cfg->https_worker_start(cfg->https, i, &w->loop);
		}
		uv_async_init(&w->loop, &w->wake, wake_cb);
		w->wake.data = w;
		/* Work may already wait in the shard's inbox (restored sessions' replays were
		 * posted before there was a loop to wake): drain it in the first iteration, or
		 * later posts, finding the inbox not empty, would never wake the loop. */
		uv_async_send(&w->wake);
		uv_async_init(&w->loop, &w->stop, stop_cb);
		w->stop.data = w;
		uv_timer_init(&w->loop, &w->tick);
		w->tick.data = w;
		uv_timer_start(&w->tick, tick_cb, cfg->tick_ms, cfg->tick_ms);
	}
	for (unsigned i = 0; i < srv->n; i++)
		uv_thread_create(&srv->w[i].thread, worker_main, &srv->w[i]);
	*out = srv;
	return KZ_OK;
}

int net_server_port(const struct net_server *srv) { return srv->port; }
int net_server_https_port(const struct net_server *srv) { return srv->https_port; }

void net_server_stop(struct net_server *srv, void (*after_join)(void *arg), void *arg)
{
	if (!srv)
		return;
	atomic_store(&srv->broker->is_shutting_down, true);
	for (unsigned i = 0; i < srv->n; i++)
		uv_async_send(&srv->w[i].stop);
	for (unsigned i = 0; i < srv->n; i++)
		uv_thread_join(&srv->w[i].thread);
	if (after_join)
		after_join(arg);
	for (unsigned i = 0; i < srv->n; i++) {
		/* drain inboxes of messages posted after the loops ended */
		mqtt_shard_drain(srv->w[i].shard);
		uv_loop_close(&srv->w[i].loop);
	}
	srv->broker->wake = NULL;
	free(srv->w);
	free(srv);
}
