/* node_http.c — the node's own HTTPS resources: /healthz (no client certificate needed:
 * load balancers and browsers) and /metrics (Prometheus text exposition format 0.0.4). */
#include "node/node_http.h"
#include "base/kz_buf.h"
#include "http/http.h"
#include "mqtt/mqtt_broker.h"
#include "store/store.h"
#include "trust/audit.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void healthz(void *ctx, struct kz_http_req *r)
{
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
		kz_http_header(r, "Allow", "GET, HEAD");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "%s is not allowed on /healthz: use GET", r->method);
		return;
	}
	char json[256];
	int n = snprintf(json, sizeof json, "{\"status\":\"ok\",\"version\":\"%s\",\"tls_group\":\"%s\"}", KZ_VERSION,
			 r->tls_group);
	kz_http_send(r, 200, "application/json", json, (size_t)n);
}

static uint64_t dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	uint64_t sum = 0;
	struct dirent *e;
	char p[2048];
	while ((e = readdir(d))) {
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

static void metric(struct kz_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	char line[512];
	int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
			 (unsigned long long)v);
	kz_buf_append(b, line, (size_t)n);
}

static void metrics(void *arg, struct kz_http_req *r)
{
	struct node_http *nh = arg;
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
		kz_http_header(r, "Allow", "GET, HEAD");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "%s is not allowed on /metrics: use GET", r->method);
		return;
	}
	uint64_t st[6], allowed, denied;
	mqtt_broker_stats(nh->broker, st);
	kz_audit_decisions(&allowed, &denied);
	struct kz_http_stats hs;
	kz_http_stats(nh->http, &hs);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	metric(&b, "kizuna_mqtt_connections", "gauge", "Open MQTT connections.", st[5]);
	metric(&b, "kizuna_mqtt_messages_in_total", "counter", "MQTT PUBLISH packets received.", st[0]);
	metric(&b, "kizuna_mqtt_messages_out_total", "counter", "MQTT PUBLISH packets sent.", st[1]);
	metric(&b, "kizuna_mqtt_bytes_in_total", "counter", "MQTT bytes received.", st[2]);
	metric(&b, "kizuna_mqtt_bytes_out_total", "counter", "MQTT bytes sent.", st[3]);
	metric(&b, "kizuna_mqtt_messages_dropped_total", "counter", "Messages dropped (queue caps, expiry).", st[4]);
	metric(&b, "kizuna_http_connections", "gauge", "Open HTTPS connections.", hs.connections);
	static const char wh[] = "# HELP kizuna_http_worker_connections HTTPS connections per worker (balanced at accept).\n"
				 "# TYPE kizuna_http_worker_connections gauge\n";
	kz_buf_append(&b, wh, sizeof wh - 1);
	for (unsigned i = 0; i < kz_http_workers(nh->http); i++) {
		char line[96];
		int n = snprintf(line, sizeof line, "kizuna_http_worker_connections{worker=\"%u\"} %u\n", i,
				 kz_http_worker_load(nh->http, i));
		kz_buf_append(&b, line, (size_t)n);
	}
	metric(&b, "kizuna_http_requests_total", "counter", "HTTPS requests answered.", hs.requests);
	metric(&b, "kizuna_http_client_errors_total", "counter", "HTTPS answers with a 4xx status.", hs.errors_4xx);
	metric(&b, "kizuna_http_server_errors_total", "counter", "HTTPS answers with a 5xx status.", hs.errors_5xx);
	metric(&b, "kizuna_http_bytes_in_total", "counter", "HTTPS request body bytes.", hs.bytes_in);
	metric(&b, "kizuna_http_bytes_out_total", "counter", "HTTPS response body bytes.", hs.bytes_out);
	metric(&b, "kizuna_store_records", "gauge", "Durable records in the log (next sequence number - 1).",
	       nh->broker->store ? kz_store_durable_next(nh->broker->store) - 1 : 0);
	metric(&b, "kizuna_store_bytes", "gauge", "Bytes of the record log's segment files.", dir_bytes(nh->log_dir));
	metric(&b, "kizuna_decisions_allowed_total", "counter", "Policy decisions that allowed (audited).", allowed);
	metric(&b, "kizuna_decisions_denied_total", "counter", "Policy decisions that denied (audited).", denied);
	kz_http_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
}

int node_http_routes(struct node_http *nh)
{
	if (kz_http_route(nh->http, "/healthz", false, healthz, nh) || kz_http_route(nh->http, "/metrics", true, metrics, nh))
		return -1;
	return 0;
}
