/* node_sessions.h — persistent sessions shared across a cluster (node_sessions.c). */
#ifndef KZ_NODE_SESSIONS_H
#define KZ_NODE_SESSIONS_H

#include "cluster/cluster.h"
#include "mqtt/mqtt_broker.h"

struct node_sessions;

/* Before kz_cluster_start: node_sessions_update_fn() and the returned object go into the
 * cluster's config (session, session_arg). */
struct node_sessions *node_sessions_new(struct mqtt_broker *b, struct kz_store *store, const char *node_id,
					uint32_t margin_ms, uint32_t order_ms);
/* The cluster's session callback (kz_cluster_config.session), with the node_sessions as arg. */
void (*node_sessions_update_fn(void))(void *, const uint8_t *, size_t);
/* After kz_cluster_start: the broker shares its sessions from now on. */
void node_sessions_attach(struct node_sessions *ns, struct kz_cluster *c);
/* After kz_cluster_free. */
void node_sessions_free(struct node_sessions *ns);

#endif
