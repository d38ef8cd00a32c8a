/* mqtt_conns.c — the broker's connected clients as an operator sees them (GET
 * /api/v1/connections, the console's Connections page): one entry per client from its CONNACK
 * to its close, in a list under one lock. Connections and closes are rare next to messages,
 * and a listing copies under the lock; no shard's state is read from another thread. */
#include "mqtt/mqtt_internal.h"
#include "base/kz_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mqtt_conns_add(struct mqtt_client *c, const char *client_id)
{
	struct mqtt_broker *b = c->broker;
	struct mqtt_conn_entry *e = calloc(1, sizeof *e);
	if (!e)
		return; /* not listed: the connection itself is fine */
	e->conn_id = c->conn_id;
	e->since_ns = kz_now_wall_ns();
	snprintf(e->client_id, sizeof e->client_id, "%s", client_id);
	snprintf(e->identity, sizeof e->identity, "%s", c->peer_id ? c->peer_id : "");
	snprintf(e->serial, sizeof e->serial, "%s", c->cert_serial);
	snprintf(e->addr, sizeof e->addr, "%s", c->addr);
	e->tls_group = c->tls_group;
	e->version = c->version;
	e->websocket = c->websocket;
	pthread_mutex_lock(&b->conns_lock);
	e->next = b->conns;
	if (e->next)
		e->next->prev = e;
	b->conns = e;
	pthread_mutex_unlock(&b->conns_lock);
	c->listed = e;
}

void mqtt_conns_remove(struct mqtt_client *c)
{
	struct mqtt_conn_entry *e = c->listed;
	if (!e)
		return;
	struct mqtt_broker *b = c->broker;
	pthread_mutex_lock(&b->conns_lock);
	if (e->prev)
		e->prev->next = e->next;
	else
		b->conns = e->next;
	if (e->next)
		e->next->prev = e->prev;
	pthread_mutex_unlock(&b->conns_lock);
	c->listed = NULL;
	free(e);
}

size_t mqtt_broker_connections(struct mqtt_broker *b, struct mqtt_conn_entry *out, size_t max, size_t *total)
{
	size_t n = 0, all = 0;
	pthread_mutex_lock(&b->conns_lock);
	for (const struct mqtt_conn_entry *e = b->conns; e; e = e->next, all++)
		if (n < max) {
			out[n] = *e;
			out[n].prev = out[n].next = NULL;
			n++;
		}
	pthread_mutex_unlock(&b->conns_lock);
	*total = all;
	return n;
}

size_t mqtt_broker_connection_groups(struct mqtt_broker *b, const char **groups, uint64_t *counts, size_t max)
{
	size_t n = 0;
	pthread_mutex_lock(&b->conns_lock);
	for (const struct mqtt_conn_entry *e = b->conns; e; e = e->next) {
		const char *g = e->tls_group ? e->tls_group : "unknown";
		size_t k = 0;
		while (k < n && strcmp(groups[k], g) != 0)
			k++;
		if (k == n && n < max) {
			groups[n] = g;
			counts[n++] = 0;
		}
		if (k < n)
			counts[k]++;
	}
	pthread_mutex_unlock(&b->conns_lock);
	return n;
}
