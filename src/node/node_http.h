/* node_http.h — the node's own HTTPS resources (/healthz, /metrics). */
#ifndef NODE_HTTP_H
#define NODE_HTTP_H

struct kz_http;
struct mqtt_broker;

struct node_http {
	struct kz_http *http;
	struct mqtt_broker *broker;
	char log_dir[1100];
};

int node_http_routes(struct node_http *nh);

#endif
