/* node_admin.h — the operator's API: connections and certificates (node_admin.c). */
#ifndef KZ_NODE_ADMIN_H
#define KZ_NODE_ADMIN_H

#include <stdint.h>

struct kz_http;
struct kz_ca;
struct mqtt_broker;

struct node_admin {
	struct mqtt_broker *b;
	struct kz_ca *ca; /* NULL: this node holds no CA key */
	char audit_dir[1100];
	uint32_t token_ttl_s, lifetime_s, max_lifetime_s; /* ca.token_ttl, ca.cert_lifetime, ca.max_cert_lifetime */
};
int node_admin_routes(struct node_admin *a, struct kz_http *h);

#endif
