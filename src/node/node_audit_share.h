/* node_audit_share.h — this node's audit log copied to the cluster's KZ_AUDIT stream
 * (node_audit_share.c). */
#ifndef KZ_NODE_AUDIT_SHARE_H
#define KZ_NODE_AUDIT_SHARE_H

#include "cluster/cluster.h"

struct node_audit_share;

/* Starts copying DIR/audit to the cluster (a thread, once a second); NULL when it cannot. */
struct node_audit_share *node_audit_share_start(struct kz_cluster *c, const char *data_dir, const char *node_id);
/* One last pass, then stops (before the cluster stops). */
void node_audit_share_stop(struct node_audit_share *a);

#endif
