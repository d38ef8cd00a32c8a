/* node_admin.c — the operator's API (docs/HTTP.md "Operators"; the console's Connections page):
 *   GET  /api/v1/connections                    the connected MQTT clients
 *   GET  /api/v1/certificates                   the certificates this node's CA issued
 *   POST /api/v1/certificates/<serial>/revoke   revoke one: {"reason": "keyCompromise", ...}
 *   GET  /api/v1/audit[?subject&action&decision&since&until&limit]   audit entries, newest first
 *   GET  /api/v1/audit/verify                   the chain's verification, as `kizuna audit verify`
 * Who may: node_http_gate decides, on the policy's rules for $SYS/connections (subscribe) and
 * $SYS/ca (subscribe to read, publish to revoke) and $SYS/audit. A revocation writes the CA's list and CRL as
 * `kizuna ca revoke` does; the node takes the new CRL at its next check and closes the
 * identity's connections (tls.cert_check_ms). Every revocation is audited. */
#include "node/node_admin.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "http/http.h"
#include "mqtt/mqtt_broker.h"
#include "trust/audit.h"
#include "trust/ca.h"
#include "base/kz_err.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTED 10000

static void send_json(struct kz_http_req *r, int status, json_t *o)
{
	char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!t) {
		kz_http_error(r, 503, NULL, "Service Unavailable", "out of memory");
		return;
	}
	kz_http_send(r, status, "application/json", t, strlen(t));
	free(t);
}

static void iso(uint64_t ns, char out[40])
{
	kz_time_format(ns, out);
}

static void connections(void *arg, struct kz_http_req *r)
{
	struct node_admin *a = arg;
	if (strcmp(r->method, "GET") != 0) {
		kz_http_header(r, "Allow", "GET");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "use GET on %s", r->path);
		return;
	}
	struct mqtt_conn_entry *v = calloc(MAX_LISTED, sizeof *v);
	if (!v) {
		kz_http_error(r, 503, NULL, "Service Unavailable", "out of memory");
		return;
	}
	size_t total = 0, n = mqtt_broker_connections(a->b, v, MAX_LISTED, &total);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char since[40];
		iso(v[i].since_ns, since);
		json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "conn_id",
						     (json_int_t)v[i].conn_id, "client_id", v[i].client_id, "identity",
						     v[i].identity, "serial", v[i].serial, "address", v[i].addr,
						     "protocol", v[i].version == 5 ? "MQTT 5.0" : "MQTT 3.1.1", "transport",
						     v[i].websocket ? "websocket" : "tls", "tls_group",
						     v[i].tls_group ? v[i].tls_group : "-", "since", since));
	}
	free(v);
	send_json(r, 200, json_pack("{s:o, s:I}", "connections", arr, "total", (json_int_t)total));
}

struct list_ctx {
	json_t *arr;
};

static void add_cert(const struct kz_ca_entry *e, void *arg)
{
	struct list_ctx *l = arg;
	char nb[40], na[40], ra[40] = "";
	iso((uint64_t)e->not_before * 1000000000u, nb);
	iso((uint64_t)e->not_after * 1000000000u, na);
	if (e->revoked_at)
		iso((uint64_t)e->revoked_at * 1000000000u, ra);
	const char *st = e->status == 'R' ? "revoked" : e->not_after <= (int64_t)(kz_now_wall_ns() / 1000000000u) ? "expired" : "valid";
	json_array_append_new(l->arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?}", "serial", e->serial, "identity",
						e->id, "status", st, "not_before", nb, "not_after", na, "revoked_at",
						e->revoked_at ? ra : NULL, "reason", e->status == 'R' ? e->reason : NULL));
}

static void revoke_one(struct node_admin *a, struct kz_http_req *r, const char *serial)
{
	json_error_t je;
	json_t *body = r->body_len ? json_loadb(r->body, r->body_len, 0, &je) : json_object();
	if (!body || !json_is_object(body)) {
		json_decref(body);
		kz_http_error(r, 400, NULL, "Bad Request", "the body must be a JSON object such as {\"reason\": \"keyCompromise\"}");
		return;
	}
	const char *reason = json_string_value(json_object_get(body, "reason"));
	if (json_object_get(body, "reason") && !reason) {
		json_decref(body);
		kz_http_error(r, 400, NULL, "Bad Request", "reason must be a string");
		return;
	}
	char why[512] = "";
	int rc = kz_ca_revoke(a->ca, serial, reason ? reason : "unspecified", why, sizeof why); /* and the CRL */
	char res[160];
	snprintf(res, sizeof res, "certificate %s", serial);
	kz_audit(&(struct kz_audit_entry){ .subject = r->identity, .serial = r->serial, .tls_group = r->tls_group,
					  .issuer = r->issuer, .tls = r->tls_suite, .addr = r->peer_addr,
					  .policy = r->policy_version, .action = "revoke", .resource = res, .allow = rc == 0,
					  .reason = rc == 0 ? (reason ? reason : "unspecified") : why });
	if (rc) {
		json_decref(body);
		int st = rc == KZ_ENOTFOUND ? 404 : rc == KZ_EEXIST ? 409 : rc == KZ_EINVAL ? 400 : 500;
		kz_http_error(r, st, NULL, st == 404 ? "Not Found" : st == 409 ? "Conflict" : st == 400 ? "Bad Request" :
			      "Internal Server Error", "%s", why);
		return;
	}
	kz_info("https: %s revoked certificate %s of %s (%s)", r->identity, serial, why, reason ? reason : "unspecified");
	send_json(r, 200, json_pack("{s:s, s:s, s:s, s:s}", "serial", serial, "identity", why, "status", "revoked",
				    "reason", reason ? reason : "unspecified"));
	json_decref(body);
}

static void certificates(void *arg, struct kz_http_req *r)
{
	struct node_admin *a = arg;
	const char *rest = r->path + strlen("/api/v1/certificates");
	if (!a->ca) {
		kz_http_error(r, 404, NULL, "Not Found", "this node holds no CA key (%s): certificates are managed where "
			      "the CA is (kizuna ca)", "ca.dir");
		return;
	}
	if (*rest == 0 || strcmp(rest, "/") == 0) {
		if (strcmp(r->method, "GET") != 0) {
			kz_http_header(r, "Allow", "GET");
			kz_http_error(r, 405, NULL, "Method Not Allowed", "use GET on %s", r->path);
			return;
		}
		struct list_ctx l = { json_array() };
		char why[512];
		if (kz_ca_list(a->ca, add_cert, &l, why, sizeof why)) {
			json_decref(l.arr);
			kz_http_error(r, 500, NULL, "Internal Server Error", "%s", why);
			return;
		}
		send_json(r, 200, json_pack("{s:o}", "certificates", l.arr));
		return;
	}
	char serial[80];
	const char *slash = strchr(rest + 1, '/');
	if (!slash || strcmp(slash, "/revoke") != 0 || (size_t)(slash - rest - 1) >= sizeof serial || slash == rest + 1) {
		kz_http_error(r, 404, NULL, "Not Found", "no resource at %s", r->path);
		return;
	}
	memcpy(serial, rest + 1, (size_t)(slash - rest - 1));
	serial[slash - rest - 1] = 0;
	if (strcmp(r->method, "POST") != 0) {
		kz_http_header(r, "Allow", "POST");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "use POST on %s", r->path);
		return;
	}
	revoke_one(a, r, serial);
}

/* ---------- the audit log ---------- */

#define AUDIT_DEFAULT 200
#define AUDIT_MAX 2000

struct audit_q {
	struct kz_audit_filter f;
	char subject[512], action[64], decision[16];
	unsigned limit;
	const char *bad;
};

static int audit_param(void *ctx, const char *k, const char *v)
{
	struct audit_q *q = ctx;
	if (!strcmp(k, "subject")) {
		snprintf(q->subject, sizeof q->subject, "%s", v);
		q->f.subject = q->subject;
	} else if (!strcmp(k, "action")) {
		snprintf(q->action, sizeof q->action, "%s", v);
		q->f.action = q->action;
	} else if (!strcmp(k, "decision")) {
		if (strcmp(v, "allow") && strcmp(v, "deny"))
			return q->bad = "decision must be allow or deny", 1;
		snprintf(q->decision, sizeof q->decision, "%s", v);
		q->f.decision = q->decision;
	} else if (!strcmp(k, "since") || !strcmp(k, "until")) {
		uint64_t ns;
		if (kz_time_parse(v, &ns))
			return q->bad = "since and until are RFC 3339 times", 1;
		*(k[0] == 's' ? &q->f.since_ns : &q->f.until_ns) = ns;
	} else if (!strcmp(k, "limit")) {
		char *end;
		unsigned long n = strtoul(v, &end, 10);
		if (*end || n == 0 || n > AUDIT_MAX)
			return q->bad = "limit must be 1 to 2000", 1;
		q->limit = (unsigned)n;
	} else {
		return q->bad = "unknown parameter (subject, action, decision, since, until, limit)", 1;
	}
	return 0;
}

static void report_line(void *ctx, const char *line)
{
	json_array_append_new(ctx, json_string(line));
}

static void audit(void *arg, struct kz_http_req *r)
{
	struct node_admin *a = arg;
	if (strcmp(r->method, "GET") != 0) {
		kz_http_header(r, "Allow", "GET");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "use GET on %s", r->path);
		return;
	}
	char why[512] = "";
	if (!strcmp(r->path, "/api/v1/audit/verify")) {
		json_t *lines = json_array();
		int rc = kz_audit_verify(a->audit_dir, report_line, lines, why, sizeof why);
		if (rc < 0) {
			json_decref(lines);
			kz_http_error(r, 500, NULL, "Internal Server Error", "%s", why);
			return;
		}
		send_json(r, 200, json_pack("{s:b, s:s, s:o}", "intact", rc == 0 || rc == 3, "verdict",
					    rc == 0 ? "intact" : rc == 3 ? "intact, not the whole record" : "broken", "report",
					    lines));
		return;
	}
	if (strcmp(r->path, "/api/v1/audit") && strcmp(r->path, "/api/v1/audit/")) {
		kz_http_error(r, 404, NULL, "Not Found", "no resource at %s", r->path);
		return;
	}
	struct audit_q q = { .limit = AUDIT_DEFAULT };
	const char *qwhy = NULL;
	if (kz_http_query_each(r->query, strlen(r->query), audit_param, &q, &qwhy)) {
		kz_http_error(r, 400, NULL, "Bad Request", "%s", q.bad ? q.bad : qwhy);
		return;
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	int rc = m ? kz_audit_show(a->audit_dir, &q.f, m, why, sizeof why) : -1;
	if (m)
		fclose(m);
	if (rc) {
		free(buf);
		kz_http_error(r, 500, NULL, "Internal Server Error", "%s", m ? why : "out of memory");
		return;
	}
	/* the newest q.limit lines, newest first */
	json_t *arr = json_array();
	size_t total = 0;
	for (size_t i = 0; i < len; i++)
		total += buf[i] == '\n';
	size_t end = len, taken = 0;
	while (end > 0 && taken < q.limit) {
		size_t start = end - 1;
		while (start > 0 && buf[start - 1] != '\n')
			start--;
		json_t *e = json_loadb(buf + start, end - start, 0, NULL);
		if (e)
			json_array_append_new(arr, e);
		taken++;
		end = start;
	}
	free(buf);
	send_json(r, 200, json_pack("{s:o, s:b}", "entries", arr, "more", total > taken));
}

int node_admin_routes(struct node_admin *a, struct kz_http *h)
{
	return kz_http_route(h, "/api/v1/connections", true, connections, a) ||
	       kz_http_route(h, "/api/v1/certificates", true, certificates, a) ||
	       kz_http_route(h, "/api/v1/audit", true, audit, a);
}
