/* node_http.h — the node's own HTTPS resources (/healthz, /metrics). */
#ifndef NODE_HTTP_H
#define NODE_HTTP_H

#include "node/node_admin.h"

struct kz_http;
struct node_console;
struct node_config;
struct kz_ca;
struct net_tls_trust;
struct kz_idlimits;
struct mqtt_broker;

#include <stddef.h>
#include <stdint.h>

struct entity_service;
struct task_service;
struct node_adapters;
struct node_tak;
struct node_detect;
struct node_sessions;

struct node_http {
	struct kz_http *http;
	struct mqtt_broker *broker;
	char log_dir[1100];
	int64_t cert_not_after;    /* the node's TLS certificate, Unix s (0: unknown) */
	uint64_t segment_bytes;    /* free space below this: the store cannot roll a segment */
	uint64_t index_lag_max;    /* records behind the log above which the index is degraded */
	const char *policy_file;   /* "" when the node runs without a policy */
	struct net_tls_trust *trust; /* the CRL's fail-closed state */
	struct kz_idlimits *idl;     /* per-identity limits (https_rate) */
	struct kz_cluster *cluster;  /* NULL: a single node */
	struct node_sessions *sessions; /* the cluster's shared sessions (with cluster) */
	struct kz_ca *ca;            /* the CA, when this node holds its key: the operator's API */
	const struct node_config *cfg; /* the console's directory, DIR/audit, the listeners */
	struct node_admin admin;     /* node_http_routes fills it */
	struct node_console *console; /* the console's files (node_http_close frees them) */
	uint64_t started_ns;         /* monotonic, when the routes were made: the uptime */
	struct entity_service *entities; /* NULL: not running */
	struct task_service *tasks;      /* NULL: not running */
	struct node_adapters *adapters;  /* NULL: none configured */
	struct node_tak *tak;            /* NULL: no TAK endpoint */
	struct node_detect *detect;      /* NULL: detection not running */
};

int node_http_routes(struct node_http *nh);
/* The node's HTTPS server on ssl_ctx with cfg's https.* limits, gated by node_http_gate(nh). */
struct node_config;
struct kz_http;
int node_http_create(struct node_http *nh, void *ssl_ctx, const struct node_config *cfg, struct kz_http **out,
		     char *why, size_t why_len);
/* After the HTTPS server is freed: what the routes kept. */
void node_http_close(struct node_http *nh);
/* The HTTPS decision point (kz_http_config.gate): under a policy the identity must be in the
 * registry and allowed to connect; /metrics needs subscribe $SYS/metrics (a monitor role). */
struct kz_http_req;
int node_http_gate(void *ctx, struct kz_http_req *r, char *why, size_t why_len);

#endif
