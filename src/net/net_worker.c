/* net_worker.c — the server's workers. Each worker thread runs one libuv loop with its own
 * descriptor of every protocol's listening socket (accepting is its own, so that it can
 * pause), and the connections it accepted or adopted. Protocols (struct net_proto) are
 * called on the worker's thread through their hooks; the transport knows none of them.
 *
 * A worker:  RUNNING --net_server_stop--> STOPPING (acceptors closed, handshakes dropped,
 *            the protocols' stop hooks) --every protocol idle, or stop_grace_ms--> ENDED
 *            (loop stopped; what is left is closed as the loop winds down) */
#include "net/net.h"
#include "base/kz_err.h"
#include "base/kz_log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
	const struct net_proto *proto;
	int fd;
	bool paused, open;
	uint32_t backoff_ms;
};

struct net_worker {
	struct net_server *srv;
	unsigned idx;
	uv_loop_t loop;
	uv_thread_t thread;
	struct net_loop nl;
	struct acceptor acc[NET_MAX_PROTOS];
	uv_async_t wake, stop;
	uv_timer_t tick;
	bool is_stopping;
	uint64_t stop_started_ms;
};

struct net_server {
	struct net_server_config cfg;
	struct net_worker *w;
	unsigned n;
	atomic_uint n_handshakes; /* connections in their TLS handshake (all workers) */
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
	uint32_t reserve = w->srv->cfg.fd_reserve;
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
		a->proto->accept(a->proto->ctx, w->idx, &w->nl, fd);
	}
}

static int acceptor_open(struct acceptor *a, struct net_worker *w, int fd, const struct net_proto *proto)
{
	a->w = w;
	a->fd = fd;
	a->proto = proto;
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

#define EACH_PROTO(w, p) for (const struct net_proto *p = (w)->srv->cfg.protos; p < (w)->srv->cfg.protos + (w)->srv->cfg.n_protos; p++)

static void wake_cb(uv_async_t *h)
{
	struct net_worker *w = h->data;
	EACH_PROTO(w, p)
		if (p->wake)
			p->wake(p->ctx, w->idx);
}

static void before_flush(struct net_loop *nl)
{
	struct net_worker *w = nl->user;
	EACH_PROTO(w, p)
		if (p->before_flush)
			p->before_flush(p->ctx, w->idx);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static bool all_idle(struct net_worker *w)
{
	EACH_PROTO(w, p)
		if (p->idle && !p->idle(p->ctx, w->idx))
			return false;
	return true;
}

static void tick_cb(uv_timer_t *t)
{
	struct net_worker *w = t->data;
	uint64_t now = uv_now(&w->loop);
	EACH_PROTO(w, p)
		if (p->tick)
			p->tick(p->ctx, w->idx, now);
	net_loop_sweep(&w->nl);
	atomic_fetch_add_explicit(&st_hs_timeouts, w->nl.hs_timeouts, memory_order_relaxed);
	atomic_fetch_add_explicit(&st_hs_evicted, w->nl.hs_evicted, memory_order_relaxed);
	atomic_fetch_add_explicit(&st_lingered, w->nl.lingered, memory_order_relaxed);
	w->nl.hs_timeouts = w->nl.hs_evicted = w->nl.lingered = 0;
	uint32_t grace = w->srv->cfg.stop_grace_ms ? w->srv->cfg.stop_grace_ms : 3000;
	if (w->is_stopping && (all_idle(w) || now - w->stop_started_ms > grace)) {
		/* everything closed (or the grace period passed): end the loop */
		before_flush(&w->nl);
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
	for (unsigned i = 0; i < w->srv->cfg.n_protos; i++)
		acceptor_close(&w->acc[i]);
	net_loop_close_pending(&w->nl, false); /* nothing to say to a connection not yet authenticated */
	EACH_PROTO(w, p)
		if (p->stop)
			p->stop(p->ctx, w->idx);
	uv_timer_start(&w->tick, tick_cb, 20, 20);
}

static void worker_main(void *arg)
{
	struct net_worker *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
	EACH_PROTO(w, p)
		if (p->end)
			p->end(p->ctx, w->idx);
	/* close what is left: connections not finished in the grace period, handles */
	uv_walk(&w->loop, walk_close, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

int net_bound_port(int fd)
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
	 * part of the connections. The workers share this one socket (net_server_create). */
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
	*out_port = net_bound_port(fd);
	return fd;
}

static void close_fds(const struct net_server_config *cfg)
{
	for (unsigned i = 0; i < cfg->n_protos; i++)
		if (cfg->protos[i].fd >= 0)
			close(cfg->protos[i].fd);
}

int net_server_create(struct net_server **out, const struct net_server_config *cfg, char *why, size_t why_len)
{
	*out = NULL;
	struct net_server *srv = calloc(1, sizeof *srv);
	unsigned n = cfg->threads ? cfg->threads : 1;
	if (!srv || cfg->n_protos > NET_MAX_PROTOS || !(srv->w = calloc(n, sizeof *srv->w))) {
		snprintf(why, why_len, "out of memory");
		free(srv);
		close_fds(cfg);
		return KZ_ENOMEM;
	}
	srv->cfg = *cfg;
	srv->n = n;
	for (unsigned k = 0; k < cfg->n_protos; k++) {
		const struct net_proto *p = &cfg->protos[k];
		if (p->fd >= 0 && listen(p->fd, 1024)) {
			snprintf(why, why_len, "cannot listen (%s): %s", p->name, strerror(errno));
			close_fds(cfg);
			free(srv->w);
			free(srv);
			return KZ_EIO;
		}
	}
	/* Every worker accepts from every listening socket, each through its own descriptor (the
	 * last worker takes the original): only this process can listen there. */
	for (unsigned i = 0; i < n; i++) {
		struct net_worker *w = &srv->w[i];
		w->srv = srv;
		w->idx = i;
		uv_loop_init(&w->loop);
		net_loop_init(&w->nl, &w->loop);
		w->nl.user = w;
		w->nl.idx = i;
		w->nl.before_flush = before_flush;
		if (cfg->read_budget)
			w->nl.read_budget = cfg->read_budget;
		if (cfg->write_backlog)
			w->nl.write_high = cfg->write_backlog;
		if (cfg->handshake_timeout_ms)
			w->nl.handshake_ms = cfg->handshake_timeout_ms;
		if (cfg->close_linger_ms)
			w->nl.linger_ms = cfg->close_linger_ms;
		w->nl.hs_total = &srv->n_handshakes;
		w->nl.max_hs = cfg->max_handshakes;
		/* each worker holds its share of the per-address cap */
		w->nl.max_hs_per_addr = cfg->max_handshakes_per_address / n;
		if (cfg->max_handshakes_per_address && w->nl.max_hs_per_addr == 0)
			w->nl.max_hs_per_addr = 1;
		for (unsigned k = 0; k < cfg->n_protos; k++) {
			const struct net_proto *p = &srv->cfg.protos[k];
			if (p->fd < 0)
				continue;
			int fd = i + 1 == n ? p->fd : fcntl(p->fd, F_DUPFD_CLOEXEC, 0);
			if (fd < 0 || acceptor_open(&w->acc[k], w, fd, p)) {
				snprintf(why, why_len, "cannot listen (%s) on %s:%d: %s", p->name, p->host ? p->host : "?",
					 net_bound_port(p->fd), strerror(errno));
				return KZ_EIO; /* the process exits on this error */
			}
		}
		EACH_PROTO(w, p)
			if (p->worker_start)
				p->worker_start(p->ctx, i, &w->nl);
		uv_async_init(&w->loop, &w->wake, wake_cb);
		w->wake.data = w;
		/* Work may already wait for the protocols (posted before there was a loop to wake):
		 * their wake hooks run in the first iteration. */
		uv_async_send(&w->wake);
		uv_async_init(&w->loop, &w->stop, stop_cb);
		w->stop.data = w;
		uv_timer_init(&w->loop, &w->tick);
		w->tick.data = w;
		uv_timer_start(&w->tick, tick_cb, cfg->tick_ms ? cfg->tick_ms : 100, cfg->tick_ms ? cfg->tick_ms : 100);
	}
	*out = srv;
	return KZ_OK;
}

void net_server_run(struct net_server *srv)
{
	for (unsigned i = 0; i < srv->n; i++)
		uv_thread_create(&srv->w[i].thread, worker_main, &srv->w[i]);
}

void net_server_wake(struct net_server *srv, unsigned idx)
{
	uv_async_send(&srv->w[idx].wake);
}

struct net_loop *net_server_loop(struct net_server *srv, unsigned idx)
{
	return &srv->w[idx].nl;
}

void net_server_stop(struct net_server *srv, void (*after_join)(void *arg), void *arg)
{
	if (!srv)
		return;
	for (unsigned i = 0; i < srv->n; i++)
		uv_async_send(&srv->w[i].stop);
	for (unsigned i = 0; i < srv->n; i++)
		uv_thread_join(&srv->w[i].thread);
	if (after_join)
		after_join(arg);
	for (unsigned i = 0; i < srv->n; i++)
		uv_loop_close(&srv->w[i].loop);
	free(srv->w);
	free(srv);
}
