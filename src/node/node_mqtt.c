/* node_mqtt.c — MQTT on the transport: the broker's clients on TLS connections of the
 * server's workers, one broker shard per worker.
 *
 * A connection: TLS handshake --ALPN kizuna-enroll/1--> enrolment (node_enroll.c)
 *                             --otherwise: identity checked and audited--> MQTT client
 *   CONNECT homed on another shard: MIGRATING (client detached, not read) --handoff posted to
 *   that shard--> adopted on its worker, the client resumed there with its unparsed bytes. */
#include "node/node_listen.h"
#include "base/kz_log.h"
#include "mqtt/mqtt_broker.h"
#include "trust/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A connection in transit between workers. */
struct migration {
	struct net_handoff *h;
	struct mqtt_client *client;
	struct node_mqtt *m;
};

static void on_open(struct net_conn *c);
static void on_data(struct net_conn *c, const uint8_t *p, size_t n);
static void on_writable(struct net_conn *c);
static void on_close(struct net_conn *c);
static const struct net_conn_cbs mqtt_cbs = { on_open, on_data, on_writable, on_close };

static void t_want_flush(void *t) { net_conn_want_flush(t); }
static void t_close(void *t) { net_conn_close(t); }
static void t_hold_reading(void *t, bool hold) { net_conn_hold_reading(t, hold); }
static size_t t_pending(void *t) { return net_conn_output_pending(t); }
static void t_migrate(void *t, unsigned idx);
static const struct mqtt_transport_ops mqtt_ops = { t_want_flush, t_close, t_migrate, t_hold_reading, t_pending };

static struct mqtt_shard *shard_of(struct node_mqtt *m, const struct net_conn *c)
{
	struct mqtt_shard *s = &m->broker->shards[c->nl->idx];
	s->now_ms = uv_now(c->nl->loop);
	return s;
}

/* c->user is the connection's MQTT client, c->proto the node_mqtt. */
static struct node_mqtt *mqtt_of(const struct net_conn *c) { return c->proto; }

static void on_open(struct net_conn *c)
{
	struct node_mqtt *m = mqtt_of(c);
	if (net_tls_is_enroll(c->ssl)) {
		kz_info("%s: TLS 1.3 established, group %s, enrolment", c->addr, net_conn_group(c));
		node_enroll_start(m->enroll, c);
		return;
	}
	struct net_peer peer;
	const char *why = net_tls_peer(c->ssl, &peer);
	kz_audit(&(struct kz_audit_entry){ .subject = peer.id, .serial = peer.serial, .tls_group = net_conn_group(c),
					  .issuer = peer.issuer, .tls = net_tls_suite(c->ssl), .addr = c->addr,
					  .action = "tls", .resource = c->addr, .allow = peer.id != NULL,
					  .reason = peer.id ? "certificate and identity verified" : why });
	if (!peer.id) {
		kz_warn("%s: refused: %s", c->addr, why);
		net_conn_close(c);
		return;
	}
	kz_info("%s: TLS 1.3 established, group %s, identity %s", c->addr, net_conn_group(c), peer.id);
	struct mqtt_client *mc = mqtt_client_new(shard_of(m, c), &mqtt_ops, c, &c->out, peer.id, c->addr);
	if (!mc) {
		net_conn_close(c);
		return;
	}
	snprintf(mc->cert_serial, sizeof mc->cert_serial, "%s", peer.serial);
	mc->tls_group = net_conn_group(c);
	mc->tls_suite = net_tls_suite(c->ssl);
	snprintf(mc->cert_issuer, sizeof mc->cert_issuer, "%s", peer.issuer);
	mc->cert_not_after = peer.not_after;
	c->user = mc;
}

static void on_data(struct net_conn *c, const uint8_t *p, size_t n)
{
	if (!c->user)
		return;
	shard_of(mqtt_of(c), c);
	mqtt_client_input(c->user, p, n);
}

static void on_writable(struct net_conn *c)
{
	if (c->user && !(c->flags & NET_CONN_MIGRATING))
		mqtt_client_writable(c->user);
}

static void on_close(struct net_conn *c)
{
	if (c->user)
		mqtt_client_closed(c->user);
	c->user = NULL;
}

static void migration_fail(struct migration *mg)
{
	net_handoff_free(mg->h);
	mqtt_client_closed(mg->client);
	free(mg);
}

/* The client's CONNECT named a client id homed on shard idx. Nothing has been written to
 * the connection yet at that point (the CONNACK comes from the new shard), so its output
 * is normally empty; if not, it is closed rather than moved with bytes in flight. */
static void t_migrate(void *t, unsigned idx)
{
	struct net_conn *c = t;
	struct node_mqtt *m = mqtt_of(c);
	struct mqtt_client *client = c->user;
	c->flags |= NET_CONN_MIGRATING;
	mqtt_client_detach(client);
	if (net_conn_output_pending(c)) {
		kz_warn("%s: output pending at migration; closing", c->addr);
		c->flags &= ~NET_CONN_MIGRATING;
		net_conn_close(c); /* on_close: the client is closed */
		return;
	}
	struct migration *mg = calloc(1, sizeof *mg);
	if (!mg) {
		c->flags &= ~NET_CONN_MIGRATING;
		net_conn_close(c);
		return;
	}
	mg->h = net_conn_handoff(c); /* NULL: c is being closed, on_close closes the client */
	if (!mg->h) {
		free(mg);
		return;
	}
	mg->client = client;
	mg->m = m;
	if (mqtt_broker_post_foreign(m->broker, idx, mg)) {
		kz_warn("%s: the connection could not be handed to worker %u (its inbox is full); closing", c->addr, idx);
		migration_fail(mg);
	}
}

/* On the target shard's worker. */
static void on_foreign(void *ctx, unsigned idx, void *foreign)
{
	struct node_mqtt *m = ctx;
	struct migration *mg = foreign;
	struct net_loop *nl = net_server_loop(m->srv, idx);
	struct net_conn *c = net_conn_adopt(nl, mg->h, &mqtt_cbs, mg->client);
	mg->h = NULL;
	if (!c) { /* a CONNECT that moved to its home worker and could not be taken there: say so,
		   * or the client only sees its connection end without a CONNACK */
		kz_warn("a connection moving to worker %u (its client id's home) could not be adopted there; closing", idx);
		migration_fail(mg);
		return;
	}
	free(mg);
	c->proto = m;
	mqtt_client_resume(c->user, shard_of(m, c), c, &c->out);
	if (!(c->flags & NET_CONN_CLOSING))
		net_conn_resume_reading(c);
}

/* ---------- the protocol's hooks ---------- */

static void accept_fd(void *ctx, unsigned idx, struct net_loop *nl, int fd)
{
	struct node_mqtt *m = ctx;
	const struct mqtt_limits *lim = &m->broker->lim;
	uint32_t hard_cap = lim->max_connections + lim->max_connections / 10 + 16;
	(void)idx;
	if (atomic_load(&m->broker->n_connections) >= hard_cap || atomic_load(&m->broker->is_shutting_down)) {
		kz_warn("refusing a connection: %u connections open", atomic_load(&m->broker->n_connections));
		close(fd);
		return;
	}
	struct net_conn *c = net_conn_accept_fd(nl, fd, m->ctx, &mqtt_cbs, NULL);
	if (c)
		c->proto = m; /* before its handshake can finish (on a later read) */
}

static void wake(void *ctx, unsigned idx)
{
	struct node_mqtt *m = ctx;
	struct mqtt_shard *s = &m->broker->shards[idx];
	s->now_ms = uv_now(net_server_loop(m->srv, idx)->loop);
	mqtt_shard_drain(s);
}

static void before_flush(void *ctx, unsigned idx)
{
	struct node_mqtt *m = ctx;
	mqtt_shard_flush(&m->broker->shards[idx]);
}

static void tick(void *ctx, unsigned idx, uint64_t now_ms)
{
	struct node_mqtt *m = ctx;
	struct mqtt_shard *s = &m->broker->shards[idx];
	s->now_ms = now_ms;
	mqtt_shard_tick(s);
}

static void stop(void *ctx, unsigned idx)
{
	struct node_mqtt *m = ctx;
	struct mqtt_shard *s = &m->broker->shards[idx];
	atomic_store(&m->broker->is_shutting_down, true);
	s->now_ms = uv_now(net_server_loop(m->srv, idx)->loop);
	mqtt_shard_shutdown(s); /* DISCONNECT 0x8B to MQTT 5 clients, close */
}

static bool idle(void *ctx, unsigned idx)
{
	struct node_mqtt *m = ctx;
	return m->broker->shards[idx].n_clients == 0;
}

void node_mqtt_proto(struct node_mqtt *m, int fd, const char *host, struct net_proto *out)
{
	*out = (struct net_proto){ .name = "MQTT", .ctx = m, .fd = fd, .host = host, .accept = accept_fd, .wake = wake, .before_flush = before_flush, .tick = tick,
				   .stop = stop, .idle = idle };
}

static void broker_wake(void *ctx, unsigned idx)
{
	struct node_mqtt *m = ctx;
	net_server_wake(m->srv, idx);
}

void node_mqtt_attach(struct node_mqtt *m, struct net_server *srv)
{
	m->srv = srv;
	m->broker->ctx = m;
	m->broker->on_foreign = on_foreign;
	m->broker->wake = broker_wake;
	/* what was posted before there was a wake (sessions restored at start) is drained at
	 * each worker's first turn */
	for (unsigned i = 0; i < m->broker->n_shards; i++)
		net_server_wake(srv, i);
}

void node_mqtt_drain(struct node_mqtt *m)
{
	for (unsigned i = 0; i < m->broker->n_shards; i++)
		mqtt_shard_drain(&m->broker->shards[i]);
	m->broker->wake = NULL;
}
