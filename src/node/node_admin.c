/* node_admin.c — the operator's API (docs/HTTP.md "Operators"; the console's Connections page):
 *   GET  /api/v1/connections                    the connected MQTT clients
 *   GET  /api/v1/certificates                   the certificates this node's CA issued
 *   POST /api/v1/certificates/<serial>/revoke   revoke one: {"reason": "keyCompromise", ...}
 *   POST /api/v1/tokens                         an enrolment token: {"id": SPIFFE-ID, "ttl_s", "lifetime_s"}
 *   GET  /api/v1/audit[?subject&action&decision&since&until&limit]   audit entries, newest first
 *   GET  /api/v1/audit/verify                   the chain's verification, as `kizuna audit verify`
 * Who may: node_http_gate decides, on the policy's rules for $SYS/connections (subscribe) and
 * $SYS/ca (subscribe to read, publish to revoke) and $SYS/audit. A revocation writes the CA's list and CRL as
 * `kizuna ca revoke` does; the node takes the new CRL at its next check and closes the
 * identity's connections (tls.cert_check_ms). Every revocation is audited. */
#include "node/node_admin.h"
#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "http/http.h"
#include "mqtt/mqtt_broker.h"
#include "trust/audit.h"
#include "trust/ca.h"
#include "base/kz_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTED 10000

/* A JSON answer built in b: sent, or 503 when building it ran out of memory. */
static void send_buf(struct kz_http_req *r, int status, struct kz_buf *b, int rc)
{
	if (rc)
		kz_http_error(r, 503, NULL, "Service Unavailable", "out of memory");
	else
		kz_http_send(r, status, "application/json", (const char *)kz_buf_head(b), b->len);
	kz_buf_cleanup(b);
}

/* "key":"value" (value NULL: null), with a comma before unless first. */
static int member(struct kz_buf *b, bool first, const char *key, const char *value)
{
	int rc = kz_buf_appendf(b, "%s\"%s\":", first ? "" : ",", key);
	return rc || (value ? kz_json_put_str(b, value) : kz_buf_append(b, "null", 4));
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
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int rc = kz_buf_append(&b, "{\"connections\":[", 16);
	for (size_t i = 0; i < n && !rc; i++) {
		char since[40];
		kz_time_format(v[i].since_ns, since);
		rc = kz_buf_appendf(&b, "%s{\"conn_id\":%llu", i ? "," : "", (unsigned long long)v[i].conn_id) ||
		     member(&b, false, "client_id", v[i].client_id) || member(&b, false, "identity", v[i].identity) ||
		     member(&b, false, "serial", v[i].serial) || member(&b, false, "address", v[i].addr) ||
		     member(&b, false, "protocol", v[i].version == 5 ? "MQTT 5.0" : "MQTT 3.1.1") ||
		     member(&b, false, "transport", v[i].websocket ? "websocket" : "tls") ||
		     member(&b, false, "tls_group", v[i].tls_group ? v[i].tls_group : "-") ||
		     member(&b, false, "since", since) || kz_buf_append(&b, "}", 1);
	}
	free(v);
	rc = rc || kz_buf_appendf(&b, "],\"total\":%zu}", total);
	send_buf(r, 200, &b, rc);
}

struct list_ctx {
	struct kz_buf *b;
	size_t n;
	int rc;
};

static void add_cert(const struct kz_ca_entry *e, void *arg)
{
	struct list_ctx *l = arg;
	char nb[40], na[40], ra[40] = "";
	kz_time_format((uint64_t)e->not_before * 1000000000u, nb);
	kz_time_format((uint64_t)e->not_after * 1000000000u, na);
	if (e->revoked_at)
		kz_time_format((uint64_t)e->revoked_at * 1000000000u, ra);
	const char *st = kz_ca_entry_status(e, (int64_t)(kz_now_wall_ns() / 1000000000u));
	struct kz_buf *b = l->b;
	bool first = l->n++ == 0;
	l->rc = l->rc || kz_buf_append(b, first ? "{" : ",{", first ? 1 : 2) || member(b, true, "serial", e->serial) ||
		member(b, false, "identity", e->id) || member(b, false, "status", st) || member(b, false, "not_before", nb) ||
		member(b, false, "not_after", na) || member(b, false, "revoked_at", e->revoked_at ? ra : NULL) ||
		member(b, false, "reason", e->status == 'R' ? e->reason : NULL) || kz_buf_append(b, "}", 1);
}

static void revoke_one(struct node_admin *a, struct kz_http_req *r, const char *serial)
{
	struct kz_json_doc d = { 0 };
	const struct kz_json *o = NULL, *rs = NULL;
	if (r->body_len && (kz_json_parse(&d, r->body, r->body_len) || !kz_json_is(o = kz_json_root(&d), KZ_JSON_OBJECT))) {
		kz_json_free(&d);
		kz_http_error(r, 400, NULL, "Bad Request", "the body must be a JSON object such as {\"reason\": \"keyCompromise\"}");
		return;
	}
	if (o && (rs = kz_json_get(o, "reason")) && !kz_json_str(rs)) {
		kz_json_free(&d);
		kz_http_error(r, 400, NULL, "Bad Request", "reason must be a string");
		return;
	}
	char reason[64];
	snprintf(reason, sizeof reason, "%s", rs ? kz_json_str(rs) : "unspecified");
	kz_json_free(&d);
	char why[512] = "";
	int rc = kz_ca_revoke(a->ca, serial, reason, why, sizeof why); /* and the CRL */
	char res[160];
	snprintf(res, sizeof res, "certificate %s", serial);
	kz_audit(&(struct kz_audit_entry){ .subject = r->identity, .serial = r->serial, .tls_group = r->tls_group,
					  .issuer = r->issuer, .tls = r->tls_suite, .addr = r->peer_addr,
					  .policy = r->policy_version, .action = "revoke", .resource = res, .allow = rc == 0,
					  .reason = rc == 0 ? reason : why });
	if (rc) {
		int st = rc == KZ_ENOTFOUND ? 404 : rc == KZ_EEXIST ? 409 : rc == KZ_EINVAL ? 400 : 500;
		kz_http_error(r, st, NULL, st == 404 ? "Not Found" : st == 409 ? "Conflict" : st == 400 ? "Bad Request" :
			      "Internal Server Error", "%s", why);
		return;
	}
	kz_info("https: %s revoked certificate %s of %s (%s)", r->identity, serial, why, reason);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int bad = kz_buf_append(&b, "{", 1) || member(&b, true, "serial", serial) || member(&b, false, "identity", why) ||
		  member(&b, false, "status", "revoked") || member(&b, false, "reason", reason) || kz_buf_append(&b, "}", 1);
	send_buf(r, 200, &b, bad);
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
		struct kz_buf b;
		kz_buf_init(&b, 0);
		struct list_ctx l = { &b, 0, kz_buf_append(&b, "{\"certificates\":[", 17) };
		char why[512];
		if (kz_ca_list(a->ca, add_cert, &l, why, sizeof why)) {
			kz_buf_cleanup(&b);
			kz_http_error(r, 500, NULL, "Internal Server Error", "%s", why);
			return;
		}
		send_buf(r, 200, &b, l.rc || kz_buf_append(&b, "]}", 2));
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

/* ---------- enrolment tokens ---------- */

/* POST /api/v1/tokens: a single-use enrolment token (docs/CA.md), shown once in the answer
 * and never again (the CA keeps only its hash). */
static void tokens(void *arg, struct kz_http_req *r)
{
	struct node_admin *a = arg;
	if (strcmp(r->method, "POST") != 0 || (strcmp(r->path, "/api/v1/tokens") && strcmp(r->path, "/api/v1/tokens/"))) {
		kz_http_header(r, "Allow", "POST");
		kz_http_error(r, strcmp(r->method, "POST") ? 405 : 404, NULL, strcmp(r->method, "POST") ? "Method Not Allowed" :
			      "Not Found", "POST a token request to /api/v1/tokens");
		return;
	}
	if (!a->ca) {
		kz_http_error(r, 404, NULL, "Not Found", "this node holds no CA key: tokens are made where the CA is");
		return;
	}
	struct kz_json_doc d = { 0 };
	const struct kz_json *o;
	long long ttl = a->token_ttl_s, life = a->lifetime_s < a->max_lifetime_s ? a->lifetime_s : a->max_lifetime_s;
	const char *id;
	const struct kz_json *t, *l;
	if (kz_json_parse(&d, r->body, r->body_len) || !kz_json_is(o = kz_json_root(&d), KZ_JSON_OBJECT) ||
	    !(id = kz_json_get_str(o, "id")) || ((t = kz_json_get(o, "ttl_s")) && !kz_json_int(t, &ttl)) ||
	    ((l = kz_json_get(o, "lifetime_s")) && !kz_json_int(l, &life)) || ttl <= 0 || ttl > 86400 * 30 || life <= 0 ||
	    life > a->max_lifetime_s) {
		kz_json_free(&d);
		kz_http_error(r, 400, NULL, "Bad Request", "the body must be {\"id\": SPIFFE-ID, \"ttl_s\": 1..2592000, "
			      "\"lifetime_s\": up to ca.max_cert_lifetime (%u)}", a->max_lifetime_s);
		return;
	}
	char tok[KZ_TOKEN_LEN], why[512] = "", sid[2100];
	snprintf(sid, sizeof sid, "%s", id);
	kz_json_free(&d);
	int rc = kz_ca_token(a->ca, sid, (uint32_t)ttl, (uint32_t)life, tok, why, sizeof why);
	kz_audit(&(struct kz_audit_entry){ .subject = r->identity, .serial = r->serial, .tls_group = r->tls_group,
					  .issuer = r->issuer, .tls = r->tls_suite, .addr = r->peer_addr,
					  .policy = r->policy_version, .action = "token", .resource = sid, .allow = rc == 0,
					  .reason = rc == 0 ? "enrolment token made" : why });
	if (rc) {
		kz_http_error(r, rc == KZ_EINVAL ? 400 : 500, NULL, rc == KZ_EINVAL ? "Bad Request" : "Internal Server Error",
			      "%s", why);
		return;
	}
	char exp[40];
	kz_time_format(kz_now_wall_ns() + (uint64_t)ttl * 1000000000u, exp);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int bad = kz_buf_append(&b, "{", 1) || member(&b, true, "token", tok) || member(&b, false, "id", sid) ||
		  member(&b, false, "expires", exp) || kz_buf_appendf(&b, ",\"lifetime_s\":%lld}", life);
	send_buf(r, 201, &b, bad);
}

/* ---------- the audit log ---------- */

#define AUDIT_DEFAULT 200
#define AUDIT_MAX 2000

struct audit_q {
	struct kz_audit_filter f;
	char subject[512], action[64], decision[16];
	unsigned limit;
	long long before; /* 0: from the newest; else entries numbered below it (the next page) */
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
	} else if (!strcmp(k, "before")) {
		char *end;
		long long n = strtoll(v, &end, 10);
		if (*end || n <= 0)
			return q->bad = "before must be an entry number (the n of the oldest entry shown)", 1;
		q->before = n;
	} else if (!strcmp(k, "limit")) {
		char *end;
		unsigned long n = strtoul(v, &end, 10);
		if (*end || n == 0 || n > AUDIT_MAX)
			return q->bad = "limit must be 1 to 2000", 1;
		q->limit = (unsigned)n;
	} else {
		return q->bad = "unknown parameter (subject, action, decision, since, until, before, limit)", 1;
	}
	return 0;
}

struct report {
	struct kz_buf *b;
	size_t n;
	int rc;
};

static void report_line(void *ctx, const char *line)
{
	struct report *rp = ctx;
	rp->rc = rp->rc || (rp->n++ && kz_buf_append(rp->b, ",", 1)) || kz_json_put_str(rp->b, line);
}

struct newest {
	struct kz_buf *b;
	unsigned limit, put;
	bool more;
	int rc;
	struct kz_json_doc d;
};

static int newest_line(void *ctx, const char *line, size_t n)
{
	struct newest *w = ctx;
	if (kz_json_parse(&w->d, line, n) != 0)
		return 0; /* not (yet) a whole entry */
	if (w->put == w->limit) {
		w->more = true;
		return 1;
	}
	w->rc = w->rc || (w->put && kz_buf_append(w->b, ",", 1)) || kz_buf_append(w->b, line, n);
	w->put++;
	return w->rc;
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
		struct kz_buf b;
		kz_buf_init(&b, 0);
		struct report rp = { &b, 0, 0 };
		int rc = kz_audit_verify(a->audit_dir, report_line, &rp, why, sizeof why);
		if (rc < 0) {
			kz_buf_cleanup(&b);
			kz_http_error(r, 500, NULL, "Internal Server Error", "%s", why);
			return;
		}
		struct kz_buf o;
		kz_buf_init(&o, 0);
		int bad = rp.rc || kz_buf_appendf(&o, "{\"intact\":%s,", rc == 0 || rc == 3 ? "true" : "false") ||
			  member(&o, true, "verdict", rc == 0 ? "intact" : rc == 3 ? "intact, not the whole record" : "broken") ||
			  kz_buf_append(&o, ",\"report\":[", 11) || kz_buf_append(&o, kz_buf_head(&b), b.len) ||
			  kz_buf_append(&o, "]}", 2);
		kz_buf_cleanup(&b);
		send_buf(r, 200, &o, bad);
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
	/* the newest q.limit entries (below q.before), newest first, read from the log's end;
	 * each checked to be JSON (a line being written is not); one more that matches says
	 * that there are more */
	struct kz_buf b;
	kz_buf_init(&b, 0);
	struct newest nw = { &b, q.limit, 0, false, 0, { 0 } };
	nw.rc = kz_buf_append(&b, "{\"entries\":[", 12);
	int rc = nw.rc ? 0 : kz_audit_newest(a->audit_dir, &q.f, q.before > 0 ? (uint64_t)q.before : 0, newest_line, &nw,
					      why, sizeof why);
	kz_json_free(&nw.d);
	if (rc) {
		kz_buf_cleanup(&b);
		kz_http_error(r, 500, NULL, "Internal Server Error", "%s", why);
		return;
	}
	int bad = nw.rc || kz_buf_appendf(&b, "],\"more\":%s}", nw.more ? "true" : "false");
	send_buf(r, 200, &b, bad);
}

int node_admin_routes(struct node_admin *a, struct kz_http *h)
{
	return kz_http_route(h, "/api/v1/connections", true, connections, a) ||
	       kz_http_route(h, "/api/v1/certificates", true, certificates, a) ||
	       kz_http_route(h, "/api/v1/audit", true, audit, a) || kz_http_route(h, "/api/v1/tokens", true, tokens, a);
}
