/* node_sessions.h — persistent sessions shared across a cluster (node_sessions.c). */
#ifndef KZ_NODE_SESSIONS_H
#define KZ_NODE_SESSIONS_H

#include "cluster/cluster.h"
#include "mqtt/mqtt_broker.h"

struct node_sessions;

struct node_sessions_config {
	const char *node_id;
	uint32_t margin_ms;    /* cluster.session_margin_ms */
	uint32_t order_ms;     /* cluster.failover_order_ms */
	uint32_t dead_ms;      /* cluster.node_dead_ms: no heartbeat this long, a node is dead (0: never) */
	uint32_t tombstone_ms; /* cluster.session_tombstone_ms: ended entries are purged after (0: never) */
};

/* Before kz_cluster_start: node_sessions_hook() fills the cluster config's session hooks. */
struct node_sessions *node_sessions_new(struct mqtt_broker *b, struct kz_store *store,
					const struct node_sessions_config *cfg);
void node_sessions_hook(struct node_sessions *ns, struct kz_cluster_config *cc);
/* After kz_cluster_start: the broker shares its sessions from now on. */
void node_sessions_attach(struct node_sessions *ns, struct kz_cluster *c);

struct node_sessions_stats {
	uint64_t known, tombstones; /* entries of the bucket held here; of which ended */
	uint64_t nodes_dead;        /* other nodes without heartbeats now */
	uint64_t adopted, ended_expired, purged; /* a dead node's sessions taken here; ended here
						  * as expired; tombstones purged by this node */
};
void node_sessions_stats(struct node_sessions *ns, struct node_sessions_stats *out);
/* After kz_cluster_free. */
void node_sessions_free(struct node_sessions *ns);

#endif
