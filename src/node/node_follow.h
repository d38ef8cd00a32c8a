/* node_follow.h — the node's side of the cluster's follower (node_follow.c). */
#ifndef KZ_NODE_FOLLOW_H
#define KZ_NODE_FOLLOW_H

#include "cluster/cluster.h"
#include "mqtt/mqtt_broker.h"
#include "services/taxii/taxii.h"

#include <stddef.h>
#include <stdint.h>

/* What the callbacks below use: the broker (before the follower starts), the TAXII service
 * that indexes followed objects (NULL without HTTPS) and the cluster (until it is freed). */
void node_follow_set(struct mqtt_broker *b, struct taxii *t, struct kz_cluster *c);
/* kz_cluster_config.follow: a record of another node into this node's log (arg: the broker). */
int node_follow(void *arg, const uint8_t *body, size_t n, void **slot);
/* kz_cluster_config.release: a record held back behind a gap, delivered now. */
void node_release(void *arg, void *held);

#endif
