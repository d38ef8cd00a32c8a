/* node_listen.h — the node's protocols on the transport's workers: MQTT (with enrolment on
 * the same port, chosen by ALPN) as a struct net_proto. HTTPS brings its own
 * (kz_http_proto). */
#ifndef NODE_LISTEN_H
#define NODE_LISTEN_H

#include "net/net.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct kz_ca;
struct mqtt_broker;

/* Enrolment (ALPN kizuna-enroll/1): one request, one certificate or refusal, close. */
struct node_enroll {
	struct kz_ca *ca;          /* NULL: every request is refused (no CA key, or enroll.enabled = 0) */
	uint32_t max_bytes;        /* enroll.max_request_bytes */
	uint32_t timeout_ms;       /* enroll.timeout_ms: the whole request within this */
	uint32_t max_connections;  /* enroll.max_connections, all workers */
	uint32_t max_lifetime_s;   /* ca.max_lifetime_s: cap on a certificate's lifetime */
	atomic_uint n_open;        /* enrolment connections open */
};
/* Serves enrolment on c (handshake done with ALPN kizuna-enroll/1): takes the connection
 * over (its callbacks and user pointer). */
void node_enroll_start(struct node_enroll *e, struct net_conn *c);

/* MQTT on its TLS port: accepted sockets become net_conns with the broker's clients on them;
 * a connection that negotiated enrolment goes to enroll instead. A client whose CONNECT names
 * a client id homed on another shard moves to that shard's worker (socket, TLS state and
 * unparsed bytes) before its CONNECT is processed. */
struct node_mqtt {
	struct mqtt_broker *broker;
	SSL_CTX *ctx;
	struct node_enroll *enroll;
	struct net_server *srv;    /* node_mqtt_attach */
};
void node_mqtt_proto(struct node_mqtt *m, int fd, const char *host, struct net_proto *out);
/* Before net_server_run: the broker wakes and hands work to the server's workers. */
void node_mqtt_attach(struct node_mqtt *m, struct net_server *srv);
/* After the workers ended (net_server_stop's after_join, once the store has written its
 * last batch): processes what was posted to the shards since, and detaches the broker. */
void node_mqtt_drain(struct node_mqtt *m);
/* MQTT over WebSocket: the route /mqtt on the HTTPS listener (node_mqtt_ws.c). */
struct kz_http;
int node_mqtt_ws_route(struct node_mqtt *m, struct kz_http *h);

#endif
