/* node_enroll.c — enrolment on the MQTT port (ALPN kizuna-enroll/1, docs/ENROLL.md): a
 * device presents a one-time token and a CSR, and gets its certificate or a refusal.
 *
 * One request, one answer, close:
 *   READING --complete--> answer, CLOSING
 *   READING --timeout | over the cap | malformed--> ERROR answer, CLOSING */
#include "node/node_listen.h"
#include "base/kz_buf.h"
#include "base/kz_log.h"
#include "trust/audit.h"
#include "trust/ca.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct enroll_conn {
	struct net_conn *c;        /* NULL once the connection is gone (the timer closes later) */
	struct node_enroll *e;
	struct kz_buf in;
	uv_timer_t timer;
	bool done;
};

static void on_data(struct net_conn *c, const uint8_t *p, size_t n);
static void on_close(struct net_conn *c);
static const struct net_conn_cbs enroll_cbs = { NULL, on_data, NULL, on_close };

static void answer(struct enroll_conn *ec, const char *text)
{
	ec->done = true;
	uv_timer_stop(&ec->timer);
	if (text)
		kz_buf_append(&ec->c->out, text, strlen(text));
	net_conn_close(ec->c);
}

static void refuse(struct enroll_conn *ec, const char *code, const char *why)
{
	char msg[300];
	snprintf(msg, sizeof msg, "ERROR %s %s\n", code, why);
	kz_warn("%s: enrolment refused: %s", ec->c->addr, why);
	kz_audit(&(struct kz_audit_entry){ .action = "enroll", .resource = ec->c->addr, .allow = false,
					  .reason = why, .tls_group = net_conn_group(ec->c) });
	answer(ec, msg);
}

static void timeout_cb(uv_timer_t *t)
{
	struct enroll_conn *ec = t->data;
	if (!ec->done)
		refuse(ec, "timeout", "no complete enrolment request in time");
}

static void on_data(struct net_conn *c, const uint8_t *p, size_t n)
{
	struct enroll_conn *ec = c->user;
	if (!ec || ec->done)
		return;
	struct node_enroll *e = ec->e;
	if (ec->in.len + n > e->max_bytes) {
		refuse(ec, "too-big", "enrolment request is over the node's limit (enroll.max_request_bytes)");
		return;
	}
	kz_buf_append(&ec->in, p, n);
	const char *tok, *csr, *why;
	size_t tl, cl;
	int r = kz_enroll_parse((const char *)kz_buf_head(&ec->in), ec->in.len, &tok, &tl, &csr, &cl, &why);
	if (r > 0)
		return;
	if (r < 0) {
		refuse(ec, "bad-request", why);
		return;
	}
	bool allowed;
	char id[2100], reason[512];
	/* Runs on this worker's loop: a signature and a few small fsync'd file writes, at the
	 * rate machines enrol. */
	char *text = kz_enroll_serve(e->ca, tok, tl, csr, cl, e->max_lifetime_s, &allowed, id, reason, sizeof reason);
	kz_audit(&(struct kz_audit_entry){ .subject = id[0] ? id : NULL, .action = "enroll", .resource = c->addr,
					  .allow = allowed, .reason = reason, .tls_group = net_conn_group(c) });
	if (allowed)
		kz_info("%s: enrolled %s: %s", c->addr, id, reason);
	else
		kz_warn("%s: enrolment refused%s%s: %s", c->addr, id[0] ? " for " : "", id, reason);
	answer(ec, text ? text : "ERROR internal out of memory\n");
	free(text);
}

static void conn_free(uv_handle_t *h)
{
	struct enroll_conn *ec = h->data;
	atomic_fetch_sub(&ec->e->n_open, 1);
	kz_buf_cleanup(&ec->in);
	free(ec);
}

static void on_close(struct net_conn *c)
{
	struct enroll_conn *ec = c->user;
	c->user = NULL;
	if (ec) {
		ec->c = NULL;
		uv_close((uv_handle_t *)&ec->timer, conn_free);
	}
}

void node_enroll_start(struct node_enroll *e, struct net_conn *c)
{
	struct enroll_conn *ec = calloc(1, sizeof *ec);
	if (!ec) {
		net_conn_close(c);
		return;
	}
	ec->c = c;
	ec->e = e;
	kz_buf_init(&ec->in, 0);
	uv_timer_init(c->nl->loop, &ec->timer);
	ec->timer.data = ec;
	c->user = ec;
	c->cbs = &enroll_cbs;
	unsigned open = atomic_fetch_add(&e->n_open, 1) + 1;
	if (open > e->max_connections) {
		refuse(ec, "busy", "too many enrolment connections open (enroll.max_connections); try again later");
		return;
	}
	if (!e->ca) {
		refuse(ec, "unavailable", "this node does not enrol (no CA key, or enroll.enabled = 0)");
		return;
	}
	uv_timer_start(&ec->timer, timeout_cb, e->timeout_ms ? e->timeout_ms : 10000, 0);
}
