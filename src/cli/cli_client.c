/* cli_client.c — MQTT client side for the operator commands and the load generator. */
#include "cli/cli_client.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_opts_default(struct cli_opts *o)
{
	memset(o, 0, sizeof *o);
	o->host = "localhost";
	o->port = 8883;
	o->version = MQTT_V5;
	o->keep_alive = 60;
	o->clean = true;
}

int cli_opts_parse(struct cli_opts *o, int opt, const char *arg)
{
	switch (opt) {
	case 'h': o->host = arg; return 1;
	case 'p': o->port = atoi(arg); return o->port > 0 && o->port < 65536 ? 1 : -1;
	case 1001: snprintf(o->ca, sizeof o->ca, "%s", arg); return 1;
	case 1002: snprintf(o->cert, sizeof o->cert, "%s", arg); return 1;
	case 1003: snprintf(o->key, sizeof o->key, "%s", arg); return 1;
	case 'V':
		if (strcmp(arg, "5") == 0 || strcmp(arg, "mqttv5") == 0)
			o->version = MQTT_V5;
		else if (strcmp(arg, "311") == 0 || strcmp(arg, "mqttv311") == 0)
			o->version = MQTT_V311;
		else
			return -1;
		return 1;
	case 'i': o->client_id = arg; return 1;
	case 'q': o->qos = (uint8_t)atoi(arg); return strlen(arg) == 1 && arg[0] >= '0' && arg[0] <= '2' ? 1 : -1;
	case 'k': o->keep_alive = (uint16_t)atoi(arg); return 1;
	}
	return 0;
}

int cli_opts_finish(struct cli_opts *o, const char *data_dir, const char *cmd)
{
	const char *d = data_dir ? data_dir : "./var";
	if (!o->cert[0] != !o->key[0]) {
		fprintf(stderr, "kizuna %s: --cert and --key go together (a certificate without its key, or a key "
				"without its certificate, is no identity)\n", cmd);
		return 2;
	}
	if (!o->ca[0] || !o->cert[0]) {
		char why[4400];
		if (kz_data_dir_check(d, why, sizeof why)) {
			fprintf(stderr, "kizuna %s: %s; give --data DIR of a node, or --cafile, --cert and --key\n", cmd, why);
			return 1;
		}
	}
	if (!o->ca[0])
		snprintf(o->ca, sizeof o->ca, "%s/pki/ca.pem", d);
	if (!o->cert[0]) { /* never silently: say whose identity this is */
		snprintf(o->cert, sizeof o->cert, "%s/pki/admin.pem", d);
		snprintf(o->key, sizeof o->key, "%s/pki/admin.key", d);
		fprintf(stderr, "kizuna %s: as the node's admin identity (%s); --cert and --key for another\n", cmd, o->cert);
	}
	return 0;
}

SSL_CTX *cli_tls_ctx(const struct cli_opts *o)
{
	struct net_tls_config t = { o->ca, o->cert, o->key, NULL, NULL };
	char why[512];
	SSL_CTX *ctx = net_tls_client_ctx(&t, why, sizeof why);
	if (!ctx)
		fprintf(stderr, "kizuna: %s\n", why);
	return ctx;
}

void cli_mqtt_send(struct cli_mqtt *m, const struct mqtt_packet *pkt)
{
	if (!m->conn || m->is_closed)
		return;
	if (mqtt_encode(pkt, m->o->version, &m->conn->out) == 0)
		net_conn_want_flush(m->conn);
}

void cli_mqtt_flush(struct cli_mqtt *m)
{
	if (m->conn && !m->is_closed)
		net_conn_flush(m->conn);
}

uint16_t cli_mqtt_pid(struct cli_mqtt *m)
{
	if (++m->next_pid == 0)
		m->next_pid = 1;
	return m->next_pid;
}

static void c_open(struct net_conn *c)
{
	struct cli_mqtt *m = c->user;
	struct mqtt_packet p = { .type = MQTT_CONNECT };
	p.connect.clean_start = m->o->clean;
	p.connect.keep_alive = m->o->keep_alive;
	p.connect.client_id = mqtt_cstr(m->o->client_id ? m->o->client_id : "");
	if (m->o->version == MQTT_V5 && m->o->session_expiry) {
		p.props.has |= MQTT_HAS(MQTT_PROP_SESSION_EXPIRY);
		p.props.session_expiry = m->o->session_expiry;
	}
	cli_mqtt_send(m, &p);
}

static void c_data(struct net_conn *c, const uint8_t *d, size_t n)
{
	struct cli_mqtt *m = c->user;
	if (kz_buf_append(&m->in, d, n)) {
		net_conn_close(c);
		return;
	}
	while (!m->is_closed) {
		size_t total;
		int rc = mqtt_frame(kz_buf_head(&m->in), m->in.len, 0, &total);
		if (rc == KZ_EAGAIN)
			break;
		struct mqtt_packet pkt;
		struct mqtt_err err;
		if (rc || mqtt_decode(kz_buf_head(&m->in), total, m->o->version, &pkt, &err)) {
			fprintf(stderr, "kizuna: malformed packet from the node: %s\n", rc ? "bad length" : err.why);
			net_conn_close(c);
			return;
		}
		if (pkt.type == MQTT_CONNACK) {
			m->is_connected = pkt.reason == 0;
			m->server_receive_max = pkt.props.has & MQTT_HAS(MQTT_PROP_RECEIVE_MAX) ?
				pkt.props.receive_max : 65535;
		}
		m->on_packet(m, &pkt);
		kz_buf_consume(&m->in, total);
	}
}

static void c_close(struct net_conn *c)
{
	struct cli_mqtt *m = c->user;
	m->is_closed = true;
	snprintf(m->close_why, sizeof m->close_why, "%s", c->why);
	m->conn = NULL;
	kz_buf_cleanup(&m->in);
	if (m->on_closed)
		m->on_closed(m);
}

static const struct net_conn_cbs client_cbs = { c_open, c_data, NULL, c_close };

int cli_mqtt_connect(struct cli_mqtt *m, struct net_loop *nl, SSL_CTX *ctx, struct cli_opts *o)
{
	m->o = o;
	m->nl = nl;
	kz_buf_init(&m->in, 0);
	m->conn = calloc(1, sizeof *m->conn);
	if (!m->conn)
		return KZ_ENOMEM;
	int rc = net_conn_connect(m->conn, nl, ctx, o->host, o->port, &client_cbs, m);
	if (rc) {
		fprintf(stderr, "kizuna: cannot connect to %s:%d\n", o->host, o->port);
		free(m->conn);
		m->conn = NULL;
	}
	return rc;
}

void cli_mqtt_disconnect(struct cli_mqtt *m)
{
	if (!m->conn || m->is_closed)
		return;
	struct mqtt_packet p = { .type = MQTT_DISCONNECT };
	cli_mqtt_send(m, &p);
	m->said_bye = true;
	net_conn_close(m->conn);
}
