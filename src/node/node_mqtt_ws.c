/* node_mqtt_ws.c — MQTT over WebSocket on the HTTPS listener (docs/MQTT.md "Over WebSocket";
 * MQTT 5.0 §6, MQTT 3.1.1 §6): GET /mqtt with the subprotocol "mqtt", the client certificate
 * and policy as on the MQTT port. The broker's client sits on the WebSocket connection as it
 * sits on a TLS connection of the MQTT port (node_mqtt.c): the same shard per worker, and a
 * CONNECT homed on another shard moves the connection to that shard's worker first.
 *
 *   101 written --open: identity checked, caps--> MQTT client on the worker's shard
 *   CONNECT for another shard: client detached --kz_http_ws_move--> moved(): resumed there
 *   close frame / socket error --> closed(): the client is closed (its will, its session) */
#include "node/node_listen.h"
#include "base/kz_buf.h"
#include "base/kz_log.h"
#include "http/http.h"
#include "mqtt/mqtt_broker.h"
#include "trust/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The connection's MQTT client, and the node_mqtt it belongs to: the client's transport. */
struct wsc {
	struct node_mqtt *m;
	struct mqtt_client *mc;
	struct kz_ws *ws;
};

static void t_want_flush(void *t) { kz_http_ws_flush(((struct wsc *)t)->ws); }
static void t_close(void *t) { kz_http_ws_close(((struct wsc *)t)->ws, 1000, NULL); }
static void t_hold_reading(void *t, bool hold) { kz_http_ws_hold_reading(((struct wsc *)t)->ws, hold); }
static size_t t_pending(void *t) { return kz_http_ws_pending(((struct wsc *)t)->ws); }
static void t_migrate(void *t, unsigned idx);
static const struct mqtt_transport_ops ws_ops = { t_want_flush, t_close, t_migrate, t_hold_reading, t_pending };

static struct mqtt_shard *shard_at(struct node_mqtt *m, unsigned idx)
{
	struct mqtt_shard *s = &m->broker->shards[idx];
	s->now_ms = uv_now(net_server_loop(m->srv, idx)->loop);
	return s;
}

static void *ws_open(void *ctx, struct kz_ws *ws, unsigned worker, const struct kz_ws_peer *p)
{
	struct node_mqtt *m = ctx;
	const struct mqtt_limits *lim = &m->broker->lim;
	uint32_t hard_cap = lim->max_connections + lim->max_connections / 10 + 16;
	if (!p->identity)
		return NULL; /* the route needs one: not reached */
	if (atomic_load(&m->broker->n_connections) >= hard_cap || atomic_load(&m->broker->is_shutting_down)) {
		kz_warn("%s: refusing an MQTT connection over WebSocket: %u connections open", p->addr,
			atomic_load(&m->broker->n_connections));
		return NULL;
	}
	struct wsc *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->m = m;
	w->ws = ws;
	char *id = strdup(p->identity); /* the client's own */
	w->mc = id ? mqtt_client_new(shard_at(m, worker), &ws_ops, w, kz_http_ws_out(ws), id, p->addr) : NULL;
	if (!w->mc) {
		free(w);
		return NULL;
	}
	struct mqtt_client *mc = w->mc;
	snprintf(mc->cert_serial, sizeof mc->cert_serial, "%s", p->serial);
	snprintf(mc->cert_issuer, sizeof mc->cert_issuer, "%s", p->issuer);
	mc->tls_group = p->tls_group;
	mc->tls_suite = p->tls_suite;
	mc->cert_not_after = p->cert_not_after;
	mc->websocket = true;
	kz_info("%s: MQTT over WebSocket, TLS group %s, identity %s", p->addr, p->tls_group, p->identity);
	return w;
}

static void ws_data(void *user, const uint8_t *p, size_t n)
{
	struct wsc *w = user;
	shard_at(w->m, w->mc->shard->idx);
	mqtt_client_input(w->mc, p, n);
}

static void ws_writable(void *user)
{
	struct wsc *w = user;
	mqtt_client_writable(w->mc);
}

static void ws_moved(void *user, struct kz_ws *ws, unsigned worker)
{
	struct wsc *w = user;
	w->ws = ws;
	mqtt_client_resume(w->mc, shard_at(w->m, worker), w, kz_http_ws_out(ws));
}

static void ws_closed(void *user)
{
	struct wsc *w = user;
	mqtt_client_closed(w->mc);
	free(w);
}

static const struct kz_ws_cbs ws_cbs = { ws_open, ws_data, ws_writable, ws_moved, ws_closed };

/* The transport's side of the ops: t is the struct wsc. */
static void t_migrate(void *t, unsigned idx)
{
	struct wsc *w = t;
	mqtt_client_detach(w->mc);
	if (kz_http_ws_move(w->ws, idx)) {
		kz_warn("a WebSocket connection could not move to worker %u (its client id's home); closing", idx);
		kz_http_ws_close(w->ws, 1011, "cannot move the connection");
	}
}

static void route(void *ctx, struct kz_http_req *r)
{
	(void)kz_http_ws_accept(r, "mqtt", &ws_cbs, ctx);
}

int node_mqtt_ws_route(struct node_mqtt *m, struct kz_http *h)
{
	return kz_http_route(h, "/mqtt", true, route, m);
}
