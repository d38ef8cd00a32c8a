/* node_http.c — the node's own HTTPS resources: /healthz (no client certificate needed:
 * load balancers and browsers) and /metrics (Prometheus text exposition format 0.0.4). */
#include "node/node_http.h"
#include "node/node_sessions.h"
#include "node/node_console.h"
#include "node/node_config.h"
#include "services/entity/entity_service.h"
#include "services/task/task_service.h"
#include "node/node_adapters.h"
#include "node/node_detect.h"
#include "node/node_tak.h"
#include "cluster/cluster.h"
#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "http/http.h"
#include "mqtt/mqtt_broker.h"
#include "net/net.h"
#include "store/store.h"
#include "trust/audit.h"

#include "base/kz_time.h"
#include "trust/ca.h"
#include "trust/idlimit.h"
#include "trust/policy.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>

/* Component states, worst last: the node's status is the worst of its components'. */
enum health { H_OK, H_DEGRADED, H_FAILING };
static const char *const health_word[] = { "ok", "degraded", "failing" };

static void component(struct kz_buf *b, enum health *worst, const char *name, enum health h, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void component(struct kz_buf *b, enum health *worst, const char *name, enum health h, const char *fmt, ...)
{
	char raw[400], detail[800], line[1000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);
	size_t k = 0; /* a JSON string: quotes and backslashes escaped, control characters dropped */
	for (const char *p = raw; *p && k + 2 < sizeof detail; p++) {
		if (*p == '"' || *p == '\\')
			detail[k++] = '\\';
		if ((unsigned char)*p >= 0x20)
			detail[k++] = *p;
	}
	detail[k] = 0;
	int n = snprintf(line, sizeof line, "%s\"%s\":{\"status\":\"%s\",\"detail\":\"%s\"}", b->len ? "," : "", name,
			 health_word[h], detail);
	kz_buf_append(b, line, (size_t)n);
	if (h > *worst)
		*worst = h;
}

/* /healthz (docs/HTTP.md): ok, degraded or failing with a reason per component; 503 when the
 * node cannot accept durable writes (the store or the audit log cannot be written). */
static void healthz(void *ctx, struct kz_http_req *r)
{
	struct node_http *nh = ctx;
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
		kz_http_header(r, "Allow", "GET, HEAD");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "%s is not allowed on /healthz: use GET", r->method);
		return;
	}
	struct kz_buf c;
	kz_buf_init(&c, 0);
	enum health worst = H_OK;
	/* counts of records, bytes and revoked certificates only for an identity the HTTPS decision
	 * point admits; anyone else (no certificate, not in the registry) gets states and reasons */
	char gwhy[300];
	bool counts = r->identity && node_http_gate(nh, r, gwhy, sizeof gwhy) == 0;
	time_t now = time(NULL);
	struct kz_store *st = nh->broker->store;
	if (st) {
		struct kz_store_health sh;
		kz_store_health(st, &sh);
		uint64_t lag = sh.durable_next - 1 > sh.indexed_through ? sh.durable_next - 1 - sh.indexed_through : 0;
		char free_text[64] = "";
		if (counts)
			snprintf(free_text, sizeof free_text, " (%llu bytes free)", (unsigned long long)sh.free_bytes);
		if (sh.write_failing)
			component(&c, &worst, "store", H_FAILING, "writes fail: durable writes are refused%s", free_text);
		else if (sh.free_bytes < nh->segment_bytes)
			component(&c, &worst, "store", H_DEGRADED, "less free space than one segment%s", free_text);
		else if (counts)
			component(&c, &worst, "store", H_OK, "writable, %llu bytes free", (unsigned long long)sh.free_bytes);
		else
			component(&c, &worst, "store", H_OK, "writable");
		if (sh.index_failing)
			component(&c, &worst, "index", H_DEGRADED, "index writes fail: queries may miss recent records (%llu behind)",
				  (unsigned long long)lag);
		else if (counts)
			component(&c, &worst, "index", lag > nh->index_lag_max ? H_DEGRADED : H_OK, "%llu records behind the log",
				  (unsigned long long)lag);
		else
			component(&c, &worst, "index", lag > nh->index_lag_max ? H_DEGRADED : H_OK,
				  lag > nh->index_lag_max ? "behind the log" : "up to date");
	}
	if (kz_audit_writable())
		component(&c, &worst, "audit", H_OK, "writable");
	else
		component(&c, &worst, "audit", H_FAILING, "cannot be written: new connections and decisions are refused");
	if (!nh->cert_not_after)
		component(&c, &worst, "certificate", H_DEGRADED, "the node's certificate could not be read");
	else if (nh->cert_not_after < now)
		component(&c, &worst, "certificate", H_FAILING, "the node's certificate has expired");
	else
		component(&c, &worst, "certificate", nh->cert_not_after - now < 86400 ? H_DEGRADED : H_OK,
			  "valid for %lld more seconds", (long long)(nh->cert_not_after - now));
	const struct kz_revoked *rv = atomic_load(&nh->broker->revoked);
	const char *crl_bad = nh->trust ? atomic_load(&nh->trust->crl_failing) : NULL;
	if (crl_bad)
		component(&c, &worst, "crl", H_FAILING, "%s: new handshakes are refused", crl_bad);
	else if (rv && rv->next_update && rv->next_update < now)
		component(&c, &worst, "crl", H_FAILING, "the revocation list is past its nextUpdate");
	else if (counts)
		component(&c, &worst, "crl", H_OK, "%zu revoked certificates", rv ? rv->n : (size_t)0);
	else
		component(&c, &worst, "crl", H_OK, "current");
	const struct kz_policy *pol = atomic_load(&nh->broker->policy);
	if (pol)
		component(&c, &worst, "policy", H_OK, "%s version %s", pol->id, pol->version);
	else
		component(&c, &worst, "policy", H_DEGRADED, "no policy loaded");
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char head[300];
	int n = snprintf(head, sizeof head, "{\"status\":\"%s\",\"version\":\"%s\",\"tls_group\":\"%s\",\"components\":{",
			 health_word[worst], KZ_VERSION, r->tls_group);
	kz_buf_append(&b, head, (size_t)n);
	kz_buf_append(&b, kz_buf_head(&c), c.len);
	kz_buf_append(&b, "}}", 2);
	kz_http_send(r, worst != H_FAILING ? 200 : 503, "application/json", (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
	kz_buf_cleanup(&c);
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

static void throttled_metric(void *ctx, const struct kz_idlimit_entry *e)
{
	static const char *const what[KZ_IDL_N] = { "publish_rate", "publish_bytes", "https_rate", "connections" };
	for (int k = 0; k < KZ_IDL_N; k++) {
		uint64_t v = atomic_load(&e->throttled[k]);
		if (!v)
			continue;
		char line[700];
		int n = snprintf(line, sizeof line, "kizuna_identity_throttled_total{identity=\"%.500s\",limit=\"%s\"} %llu\n",
				 e->id, what[k], (unsigned long long)v);
		kz_buf_append(ctx, line, (size_t)n);
	}
}

/* A Prometheus label value: backslash, double quote and newline escaped (text format 0.0.4). */
static void label_value(char *out, size_t cap, const char *v)
{
	size_t o = 0;
	for (; *v && o + 3 < cap; v++) {
		if (*v == '\\' || *v == '"' || *v == '\n') {
			out[o++] = '\\';
			out[o++] = *v == '\n' ? 'n' : *v;
		} else {
			out[o++] = *v;
		}
	}
	out[o] = 0;
}

/* Two passes (a metric family's samples must be together): drops, then disconnects. */
struct slow_pass {
	struct kz_buf *b;
	bool disconnects;
};

static void slow_metric(void *ctx, const struct mqtt_slow_entry *e)
{
	struct slow_pass *sp = ctx;
	uint64_t v = sp->disconnects ? e->disconnects : e->dropped;
	if (sp->disconnects && !v)
		return;
	char cid[300], id[560], line[1000];
	label_value(cid, sizeof cid, e->client_id);
	label_value(id, sizeof id, e->identity);
	int n = snprintf(line, sizeof line, "kizuna_mqtt_client_%s_total{client_id=\"%s\",identity=\"%s\"} %llu\n",
			 sp->disconnects ? "slow_disconnects" : "dropped", cid, id, (unsigned long long)v);
	kz_buf_append(sp->b, line, (size_t)n);
}

/* Connected MQTT clients by key-exchange group: how many use the post-quantum hybrid. */
static void tls_groups(struct kz_buf *b, struct node_http *nh)
{
	const char *g[8];
	uint64_t c[8];
	size_t ng = mqtt_broker_connection_groups(nh->broker, g, c, 8);
	kz_buf_appendf(b, "# HELP kizuna_mqtt_connections_by_group Connected MQTT clients by TLS key-exchange group.\n"
			  "# TYPE kizuna_mqtt_connections_by_group gauge\n");
	for (size_t k = 0; k < ng; k++)
		kz_buf_appendf(b, "kizuna_mqtt_connections_by_group{group=\"%s\"} %llu\n", g[k], (unsigned long long)c[k]);
}

static void metrics(void *arg, struct kz_http_req *r)
{
	struct node_http *nh = arg;
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
		kz_http_header(r, "Allow", "GET, HEAD");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "%s is not allowed on /metrics: use GET", r->method);
		return;
	}
	uint64_t st[7], allowed, denied;
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
	metric(&b, "kizuna_mqtt_unconnected_closed_total", "counter",
	       "Connections closed: their identity had more without CONNECT than limits.max_unconnected_per_identity.",
	       st[6]);
	metric(&b, "kizuna_http_connections", "gauge", "Open HTTPS connections.", hs.connections);
	metric(&b, "kizuna_http_handshake_timeouts_total", "counter",
	       "HTTPS connections closed: no TLS handshake within limits.handshake_timeout_ms.", hs.handshake_timeouts);
	metric(&b, "kizuna_http_handshake_evicted_total", "counter",
	       "HTTPS handshakes closed as the oldest over limits.max_handshakes(_per_address).", hs.handshake_evicted);
	tls_groups(&b, nh);
	if (nh->cfg) {
		kz_buf_appendf(&b, "# HELP kizuna_listener The node's listeners (value 1), by protocol and configured address.\n"
				   "# TYPE kizuna_listener gauge\n");
		kz_buf_appendf(&b, "kizuna_listener{protocol=\"mqtt\",address=\"%s\"} 1\n", nh->cfg->mqtt_listen);
		kz_buf_appendf(&b, "kizuna_listener{protocol=\"https\",address=\"%s\"} 1\n", nh->cfg->https_listen);
	}
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
	metric(&b, "kizuna_uptime_seconds", "gauge", "Seconds since the node started serving.",
	       (kz_now_mono_ns() - nh->started_ns) / 1000000000u);
	metric(&b, "kizuna_decisions_allowed_total", "counter", "Policy decisions that allowed (audited).", allowed);
	metric(&b, "kizuna_decisions_denied_total", "counter", "Policy decisions that denied (audited).", denied);
	metric(&b, "kizuna_audit_write_errors_total", "counter", "Audit log writes that failed.", kz_audit_write_errors());
	static const char pr[] = "# HELP kizuna_mqtt_publish_refused_total PUBLISH packets refused, by MQTT reason code.\n"
				 "# TYPE kizuna_mqtt_publish_refused_total counter\n";
	kz_buf_append(&b, pr, sizeof pr - 1);
	for (unsigned rc = 0; rc < 256; rc++) {
		uint64_t v = atomic_load(&nh->broker->publish_refused[rc]);
		if (!v)
			continue;
		char line[160];
		int n = snprintf(line, sizeof line, "kizuna_mqtt_publish_refused_total{reason=\"0x%02X\"} %llu\n", rc,
				 (unsigned long long)v);
		kz_buf_append(&b, line, (size_t)n);
	}
	static const char tf[] = "# HELP kizuna_tls_handshake_failures_total TLS handshakes refused, by reason.\n"
				 "# TYPE kizuna_tls_handshake_failures_total counter\n";
	kz_buf_append(&b, tf, sizeof tf - 1);
	for (int k = 0; k < NET_TLS_FAIL_N; k++) {
		char line[160];
		int n = snprintf(line, sizeof line, "kizuna_tls_handshake_failures_total{reason=\"%s\"} %llu\n",
				 net_tls_fail_names[k], (unsigned long long)net_tls_failures((enum net_tls_fail)k));
		kz_buf_append(&b, line, (size_t)n);
	}
	static const char th[] = "# HELP kizuna_identity_throttled_total Refusals by the per-identity limits.\n"
				 "# TYPE kizuna_identity_throttled_total counter\n";
	kz_buf_append(&b, th, sizeof th - 1);
	if (nh->idl)
		kz_idlimits_each(nh->idl, throttled_metric, &b);
	struct net_counters nc;
	net_counters(&nc);
	metric(&b, "kizuna_net_accept_paused_total", "counter",
	       "Times accepting paused: file descriptors exhausted or within limits.fd_reserve.", nc.accept_paused);
	metric(&b, "kizuna_net_accept_refused_total", "counter",
	       "Connections closed at accept because they would use the reserved descriptors.", nc.accept_refused);
	metric(&b, "kizuna_net_fd_limit", "gauge", "The process's file descriptor limit (RLIMIT_NOFILE).", nc.fd_limit);
	metric(&b, "kizuna_net_handshake_timeouts_total", "counter",
	       "Connections closed: no TLS handshake within limits.handshake_timeout_ms.", nc.handshake_timeouts);
	metric(&b, "kizuna_net_handshake_evicted_total", "counter",
	       "Handshaking connections closed as the oldest over limits.max_handshakes(_per_address).", nc.handshake_evicted);
	metric(&b, "kizuna_net_close_lingered_total", "counter",
	       "Closing connections closed hard: the peer did not take the last bytes in limits.close_linger_ms.",
	       nc.close_lingered);
	if (nh->entities) {
		struct entity_service_stats es;
		entity_service_stats(nh->entities, &es);
		metric(&b, "kizuna_entities_live", "gauge", "Live entities in the picture (docs/ENTITIES.md).", es.table.live);
		metric(&b, "kizuna_entities_stale", "gauge", "Stale entities (past stale_time).", es.table.stale);
		metric(&b, "kizuna_entities_removed", "gauge", "Removed entities kept as tombstones (entity.removed_keep_ms).",
		       es.table.removed);
		metric(&b, "kizuna_entity_updates_applied_total", "counter", "Entity updates applied.", es.table.applied);
		metric(&b, "kizuna_entity_updates_older_total", "counter",
		       "Entity updates not applied: older (source_time) than the entity's state.", es.table.older);
		metric(&b, "kizuna_entity_updates_refused_total", "counter",
		       "Entity updates not applied: a cap (entity.max_entities, entity.max_interned).", es.table.refused);
		metric(&b, "kizuna_entity_records_invalid_total", "counter",
		       "Records on kz/entity/ that are not an entity update (skipped).", es.invalid);
		metric(&b, "kizuna_entity_bytes", "gauge", "Memory the entity table holds (its own count).", es.table.bytes);
	}
	node_adapters_metrics(nh->adapters, &b);
	node_tak_metrics(nh->tak, &b);
	node_detect_metrics(nh->detect, &b);
	if (nh->tasks) {
		struct task_service_stats ts;
		task_service_stats(nh->tasks, &ts);
		metric(&b, "kizuna_tasks", "gauge", "Tasks held (open and recently ended, docs/TASKS.md).", ts.tasks);
		metric(&b, "kizuna_tasks_open", "gauge", "Tasks not in a final state.", ts.open);
		metric(&b, "kizuna_task_agents", "gauge", "Agents with registered kinds.", ts.agents);
		metric(&b, "kizuna_tasks_created_total", "counter", "Tasks created.", ts.created);
		metric(&b, "kizuna_task_moves_total", "counter", "Transitions made (by taskers, agents and the node).", ts.moved);
		metric(&b, "kizuna_task_refused_total", "counter", "Creations and transitions refused.", ts.refused);
		metric(&b, "kizuna_tasks_expired_total", "counter", "Tasks the node expired at their deadline.", ts.expired);
	}
	if (nh->cluster) {
		struct kz_cluster_stats cs;
		kz_cluster_stats(nh->cluster, &cs);
		metric(&b, "kizuna_cluster_connected", "gauge", "1 while the node is connected to NATS.", cs.connected);
		metric(&b, "kizuna_cluster_quorum", "gauge",
		       "1 while JetStream acknowledges within cluster.publish_timeout_ms (0: QoS 1/2 refused or waiting).",
		       cs.quorum);
		metric(&b, "kizuna_cluster_confirmed_seq", "gauge",
		       "Every record this node accepted up to this log sequence is in JetStream.", cs.confirmed_seq);
		metric(&b, "kizuna_cluster_pending", "gauge", "Records published to JetStream, not yet acknowledged.",
		       cs.pending);
		metric(&b, "kizuna_cluster_published_total", "counter",
		       "Records published to JetStream (again after a failure or a loss of JetStream's data too).",
		       cs.published);
		metric(&b, "kizuna_cluster_publish_errors_total", "counter",
		       "Publishes to JetStream that failed or timed out (then published again from the watermark).", cs.errors);
		metric(&b, "kizuna_cluster_followed_total", "counter",
		       "Records of other nodes taken from the stream into this node's log.", cs.followed);
		metric(&b, "kizuna_cluster_duplicates_total", "counter",
		       "Records of other nodes dropped from the stream as already in this node's log.", cs.duplicates);
		metric(&b, "kizuna_cluster_late_total", "counter",
		       "Records of other nodes taken after their successors (published again after a failure).", cs.late);
		metric(&b, "kizuna_cluster_held", "gauge",
		       "Records of other nodes stored and held back behind a gap, to be delivered in their origin's order.",
		       cs.held);
		metric(&b, "kizuna_cluster_released_out_of_order_total", "counter",
		       "Held-back records delivered out of order after cluster.gap_timeout_ms.", cs.released_late);
		metric(&b, "kizuna_cluster_gap_records", "gauge",
		       "Records of other nodes below the newest taken, not taken yet (awaited).", cs.gaps_open);
		metric(&b, "kizuna_cluster_gaps_dropped_total", "counter",
		       "Gaps given up because more than 32 were open for one node.", cs.gaps_dropped);
		metric(&b, "kizuna_cluster_failover_order_expired_total", "counter",
		       "CONNECTs of clients that another node served last, answered after cluster.failover_order_ms "
		       "before this node had taken every record of the stream (their order may not hold).",
		       cs.order_expired);
		metric(&b, "kizuna_cluster_server_moves_total", "counter",
		       "Moves to another NATS server because JetStream did not answer through the connected one "
		       "(a server cut off from the others) for 3 x cluster.publish_timeout_ms.", cs.swaps);
		metric(&b, "kizuna_cluster_bridged_total", "counter",
		       "Records of this node acknowledged on the stream KZ_BRIDGE while KZ_RECORDS confirmed none "
		       "for cluster.bridge_ms (a leader election).", cs.bridged);
		metric(&b, "kizuna_cluster_bridge_episodes_total", "counter",
		       "Times the bridge began (KZ_RECORDS confirmed none of this node's records for cluster.bridge_ms).",
		       cs.bridge_episodes);
		metric(&b, "kizuna_cluster_bridging", "gauge", "1 while the bridge publishes (KZ_RECORDS has no leader).",
		       cs.bridging);
		metric(&b, "kizuna_cluster_bridge_adoptions_total", "counter",
		       "Times this node published to KZ_RECORDS another node's records that had been acknowledged on "
		       "KZ_BRIDGE and were not in KZ_RECORDS (that node died before it published them there).",
		       cs.adoptions);
		metric(&b, "kizuna_cluster_bridge_adopted_messages_total", "counter",
		       "Messages of KZ_BRIDGE this node published to KZ_RECORDS for their node.", cs.adopted_msgs);
		metric(&b, "kizuna_cluster_consumers_remade_total", "counter",
		       "This node's consumer of the stream deleted and made again after it did not answer for "
		       "cluster.consumer_stall_ms while the stream did.", cs.consumers_remade);
		metric(&b, "kizuna_cluster_session_writes_total", "counter",
		       "Session entries written to the KV bucket KZ_SESSIONS.", cs.session_puts);
		metric(&b, "kizuna_cluster_session_updates_total", "counter",
		       "Session entries read from KZ_SESSIONS as they changed (this node's own too).", cs.session_updates);
		metric(&b, "kizuna_cluster_session_errors_total", "counter",
		       "Session entry writes that failed (written again) or were dropped.", cs.session_errors);
		metric(&b, "kizuna_cluster_session_queue", "gauge", "Session entries waiting to be written to KZ_SESSIONS.",
		       cs.session_queue);
		if (nh->sessions) {
			struct node_sessions_stats ss;
			node_sessions_stats(nh->sessions, &ss);
			metric(&b, "kizuna_cluster_sessions_known", "gauge",
			       "Entries of KZ_SESSIONS this node holds (every node's sessions, ended ones too).", ss.known);
			metric(&b, "kizuna_cluster_session_tombstones", "gauge",
			       "Of those, sessions that ended (purged after cluster.session_tombstone_ms).", ss.tombstones);
			metric(&b, "kizuna_cluster_nodes_dead", "gauge",
			       "Other nodes without a heartbeat for cluster.node_dead_ms.", ss.nodes_dead);
			metric(&b, "kizuna_cluster_sessions_adopted_total", "counter",
			       "Sessions of dead nodes taken over by this node (their wills published here).", ss.adopted);
			metric(&b, "kizuna_cluster_sessions_ended_dead_total", "counter",
			       "Sessions of dead nodes that had expired, ended by this node.", ss.ended_expired);
			metric(&b, "kizuna_cluster_session_tombstones_purged_total", "counter",
			       "Ended sessions purged from KZ_SESSIONS by this node.", ss.purged);
		}
		metric(&b, "kizuna_cluster_trust_writes_total", "counter",
		       "Revocation lists and signed policies this node put into KZ_TRUST (newer than any it had).",
		       cs.trust_puts);
		metric(&b, "kizuna_cluster_trust_updates_total", "counter",
		       "Values read from KZ_TRUST (each checked before it is taken).", cs.trust_updates);
	}
	metric(&b, "kizuna_mqtt_slow_disconnects_total", "counter",
	       "Clients disconnected (0x97) for output over limits.max_out_buffer longer than limits.slow_client_ms.",
	       atomic_load(&nh->broker->slow_disconnects));
	static const char sc[] = "# HELP kizuna_mqtt_client_dropped_total QoS 0 messages dropped because the client's output "
				 "was over limits.max_out_buffer, per client (the 256 most recently updated).\n"
				 "# TYPE kizuna_mqtt_client_dropped_total counter\n";
	kz_buf_append(&b, sc, sizeof sc - 1);
	mqtt_broker_slow_clients(nh->broker, slow_metric, &(struct slow_pass){ &b, false });
	static const char sd[] = "# HELP kizuna_mqtt_client_slow_disconnects_total Slow-client disconnects (0x97), per client.\n"
				 "# TYPE kizuna_mqtt_client_slow_disconnects_total counter\n";
	kz_buf_append(&b, sd, sizeof sd - 1);
	mqtt_broker_slow_clients(nh->broker, slow_metric, &(struct slow_pass){ &b, true });
	if (nh->broker->store) {
		struct kz_store_health sh;
		kz_store_health(nh->broker->store, &sh);
		metric(&b, "kizuna_store_write_errors_total", "counter", "Record log batches that could not be written.",
		       sh.write_errors);
		metric(&b, "kizuna_store_index_lag_records", "gauge", "Durable records not yet in the index.",
		       sh.durable_next - 1 > sh.indexed_through ? sh.durable_next - 1 - sh.indexed_through : 0);
	}
	kz_http_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
}

/* The identity's https_rate (limits.identity): false with Retry-After set when over. */
static bool https_rate_ok(struct node_http *nh, struct kz_http_req *r, const struct kz_policy *p,
			  const struct kz_subject *s, char *why, size_t why_len)
{
	struct kz_idlimit_entry *e = kz_idlimits_get(nh->idl, r->identity, s);
	uint64_t now = kz_now_mono_ns();
	if (kz_idlimit_take(e, KZ_IDL_HTTPS, 1, now))
		return true;
	uint64_t n = kz_idlimit_report(e, now, 10000000000ull);
	if (n) {
		char reason[160];
		snprintf(reason, sizeof reason, "%llu refusals by the per-identity limits (https_rate; summary)",
			 (unsigned long long)n);
		kz_audit(&(struct kz_audit_entry){ .subject = r->identity, .serial = r->serial, .tls_group = r->tls_group,
						  .issuer = r->issuer, .tls = r->tls_suite, .addr = r->peer_addr,
						  .action = "limit", .resource = r->identity, .allow = false, .reason = reason,
						  .count = n, .policy = p->version });
	}
	kz_http_header(r, "Retry-After", "1");
	snprintf(why, why_len, "this identity makes more than %u HTTPS requests per second, its limit (limits.identity)",
		 e ? e->lim.https_rate : 0);
	return false;
}

int node_http_gate(void *ctx, struct kz_http_req *r, char *why, size_t why_len)
{
	struct node_http *nh = ctx;
	const struct kz_policy *p = atomic_load(&nh->broker->policy);
	if (!p) /* policy.open */
		return 0;
	r->policy_version = p->version; /* snapshots live until the node stops */
	struct kz_subject s;
	const char *w;
	kz_subject_init(p, r->identity, &s);
	if (nh->idl && !https_rate_ok(nh, r, p, &s, why, why_len))
		return 429;
	if (!s.ident) {
		snprintf(why, why_len, "%s is not in the identity registry (%s): no attributes, no access", r->identity,
			 p->registry_path[0] ? p->registry_path : "none: deny by default");
		return 403;
	}
	if (!kz_policy_connect(p, &s, &w)) {
		snprintf(why, why_len, "%s", w);
		return 403;
	}
	/* the operator's paths, each decided as a $SYS topic: reading as a subscription, a change
	 * (POST) as a publish (docs/HTTP.md "Operators") */
	static const struct { const char *prefix, *topic, *example; } SYS[] = {
		{ "/metrics", "$SYS/metrics", "allow subscribe $SYS/metrics where role=monitor" },
		{ "/api/v1/detect", "$SYS/metrics", "allow subscribe $SYS/metrics where role=monitor" },
		{ "/api/v1/connections", "$SYS/connections", "allow subscribe $SYS/connections where role=operator" },
		{ "/api/v1/certificates", "$SYS/ca", "allow publish,subscribe $SYS/ca where role=admin" },
		{ "/api/v1/tokens", "$SYS/ca", "allow publish,subscribe $SYS/ca where role=admin" },
		{ "/api/v1/audit", "$SYS/audit", "allow subscribe $SYS/audit where role=auditor" },
	};
	for (size_t i = 0; i < sizeof SYS / sizeof SYS[0]; i++) {
		size_t n = strlen(SYS[i].prefix);
		if (strncmp(r->path, SYS[i].prefix, n) != 0 || (r->path[n] && r->path[n] != '/'))
			continue;
		bool change = strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0;
		const char *t = SYS[i].topic;
		const struct kz_label *dl;
		const char *dt;
		if (change ? !kz_policy_publish(p, &s, t, strlen(t), &dl, &dt, &w) : !kz_policy_subscribe(p, &s, t, strlen(t), &w)) {
			snprintf(why, why_len, "%s: no rule allows this identity to %s %s (for example `%s`)", r->path,
				 change ? "publish on" : "subscribe to", t, SYS[i].example);
			return 403;
		}
	}
	return 0;
}

/* GET /api/v1/whoami: the caller as this node sees it (the console shows it). */
static void whoami(void *arg, struct kz_http_req *r)
{
	(void)arg;
	if (strcmp(r->method, "GET") != 0) {
		kz_http_header(r, "Allow", "GET");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "use GET on %s", r->path);
		return;
	}
	const char *k[] = { "identity", "serial", "issuer", "tls_group", "tls_suite", "version" };
	const char *v[] = { r->identity, r->serial, r->issuer, r->tls_group, r->tls_suite, KZ_VERSION };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int rc = kz_buf_append(&b, "{", 1);
	for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
		rc = rc || kz_buf_appendf(&b, "%s\"%s\":", i ? "," : "", k[i]);
		rc = rc || (v[i] ? kz_json_put_str(&b, v[i]) : kz_buf_append(&b, "null", 4));
	}
	rc = rc || kz_buf_append(&b, "}", 1);
	if (rc)
		kz_http_error(r, 503, NULL, "Service Unavailable", "out of memory");
	else
		kz_http_send(r, 200, "application/json", (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
}

int node_http_create(struct node_http *nh, void *ssl_ctx, const struct node_config *cfg, struct kz_http **out,
		     char *why, size_t why_len)
{
	struct kz_http_config hc = {
		.ssl_ctx = ssl_ctx, .workers = cfg->threads, .max_body_bytes = cfg->https_max_body,
		.request_timeout_ms = cfg->https_req_timeout_ms, .idle_timeout_ms = cfg->https_idle_timeout_ms,
		.gate = node_http_gate, .gate_ctx = nh, .handshake_timeout_ms = cfg->limits.handshake_timeout_ms,
		.max_anon_body_bytes = cfg->https_max_anon_body, .max_handshakes = cfg->limits.max_handshakes,
		.max_handshakes_per_address = cfg->limits.max_handshakes_per_address,
	};
	return kz_http_create(&hc, out, why, why_len);
}

int node_http_routes(struct node_http *nh)
{
	nh->started_ns = kz_now_mono_ns();
	nh->admin = (struct node_admin){ .b = nh->broker, .ca = nh->ca };
	snprintf(nh->admin.audit_dir, sizeof nh->admin.audit_dir, "%s/audit", nh->cfg ? nh->cfg->data_dir : ".");
	if (nh->cfg) {
		nh->admin.token_ttl_s = nh->cfg->token_ttl_s;
		nh->admin.lifetime_s = nh->cfg->ca_lifetime_s;
		nh->admin.max_lifetime_s = nh->cfg->ca_max_lifetime_s;
	}
	if (kz_http_route(nh->http, "/healthz", false, healthz, nh) || kz_http_route(nh->http, "/metrics", true, metrics, nh) ||
	    kz_http_route(nh->http, "/api/v1/whoami", true, whoami, nh) || node_admin_routes(&nh->admin, nh->http) ||
	    node_console_start(nh->cfg ? nh->cfg->https_console_dir : "auto", nh->http, &nh->console))
		return -1;
	return 0;
}

void node_http_close(struct node_http *nh)
{
	node_console_free(nh->console);
	nh->console = NULL;
}
