/* node_trust.h — the revocation list and the signed policy shared across a cluster
 * (node_trust.c, docs/CLUSTER.md "Trust across the cluster"). */
#ifndef KZ_NODE_TRUST_H
#define KZ_NODE_TRUST_H

#include "cluster/cluster.h"
#include "node/node_config.h"

struct kz_revoked;
struct node_trust;

struct node_trust *node_trust_new(const struct node_config *cfg);
/* The cluster's trust callback (kz_cluster_config.trust, with the node_trust as trust_arg). */
void (*node_trust_update_fn(void))(void *, const char *, const uint8_t *, size_t);
void node_trust_attach(struct node_trust *t, struct kz_cluster *c);
void node_trust_free(struct node_trust *t);
/* Main thread: this revocation list is in force here (put when newer than any this node had). */
void node_trust_crl_in_force(struct node_trust *t, const struct kz_revoked *r);
/* Main thread: the signed policy with manifest sequence seq is in force here. */
void node_trust_policy_in_force(struct node_trust *t, unsigned long long seq);

/* A KZ_TRUST "policy" value: "KZP1", then policy, registry, manifest and signature, each with
 * a 32-bit little-endian length. NULL, or why not. */
const char *node_trust_bundle_parse(const uint8_t *v, size_t n, const uint8_t *part[4], size_t len[4]);

#endif
