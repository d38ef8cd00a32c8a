/* cli_pubsub.c — `kizuna pub` and `kizuna sub`. */
#include "cli/cli_client.h"
#include "cli/cli.h"
#include "base/kz_err.h"
#include "base/kz_log.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


struct pubsub {
	struct cli_mqtt m;
	uv_loop_t loop;
	struct net_loop nl;
	uv_signal_t sigint;
	uv_timer_t ping;      /* keep alive (MQTT 5.0 3.1.2.10): a PINGREQ at half the interval */
	const char **topics;
	int n_topics;
	const uint8_t *payload;
	size_t payload_len;
	bool retain, verbose, is_sub, pinged;
	long count, received, repeat, sent, acked;
	int exit_code;
	/* failover (-h A,B,C): the servers, the one in use, the retry timer */
	char *server_list;          /* owns the strings below */
	const char *hosts[16];
	int ports[16];
	int n_servers, cur;
	unsigned failures;          /* connection attempts in a row that got nowhere */
	uv_timer_t retry;
	SSL_CTX *ctx;
	bool stopping, finished;
};

#define MAX_FAILURES_PUB 3      /* rounds over the whole list before pub gives up */

/* "host[:port],[v6]:port,..." (port default: the -p value). -1 on a bad entry. */
static int parse_servers(struct pubsub *ps, const char *list, int default_port)
{
	ps->server_list = strdup(list);
	if (!ps->server_list)
		return -1;
	char *sv = NULL;
	for (char *t = strtok_r(ps->server_list, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
		if (ps->n_servers == 16)
			return -1;
		int port = default_port;
		char *colon = NULL;
		if (t[0] == '[') { /* [v6]:port */
			char *end = strchr(t, ']');
			if (!end)
				return -1;
			*end = 0;
			colon = end[1] == ':' ? end + 1 : NULL;
			if (end[1] && !colon)
				return -1;
			t++;
		} else if (strchr(t, ':') == strrchr(t, ':')) { /* one colon: host:port; more: a bare v6 */
			colon = strchr(t, ':');
		}
		if (colon) {
			*colon = 0;
			char *e;
			long v = strtol(colon + 1, &e, 10);
			if (*e || v <= 0 || v > 65535)
				return -1;
			port = (int)v;
		}
		if (!*t)
			return -1;
		ps->hosts[ps->n_servers] = t;
		ps->ports[ps->n_servers++] = port;
	}
	return ps->n_servers ? 0 : -1;
}

static void finish(struct pubsub *ps)
{
	if (ps->finished)
		return;
	ps->finished = true;
	uv_signal_stop(&ps->sigint);
	uv_close((uv_handle_t *)&ps->sigint, NULL);
	uv_timer_stop(&ps->ping);
	uv_close((uv_handle_t *)&ps->ping, NULL);
	uv_timer_stop(&ps->retry);
	uv_close((uv_handle_t *)&ps->retry, NULL);
	net_loop_close(&ps->nl);
}

static void connect_current(struct pubsub *ps)
{
	ps->m.o->host = ps->hosts[ps->cur];
	ps->m.o->port = ps->ports[ps->cur];
	ps->m.is_connected = ps->m.is_closed = ps->m.said_bye = false;
	ps->m.close_why[0] = 0;
	ps->pinged = false;
	if (cli_mqtt_connect(&ps->m, &ps->nl, ps->ctx, ps->m.o)) {
		ps->exit_code = 1;
		finish(ps);
	}
}

static void on_retry(uv_timer_t *t)
{
	struct pubsub *ps = t->data;
	if (!ps->stopping)
		connect_current(ps);
}

static void on_sigint(uv_signal_t *h, int sig)
{
	(void)sig;
	struct pubsub *ps = h->data;
	uv_signal_stop(h);
	ps->stopping = true;
	if (ps->m.conn && !ps->m.is_closed)
		cli_mqtt_disconnect(&ps->m);
	else /* between two attempts */
		finish(ps);
}

static void on_ping(uv_timer_t *t)
{
	struct pubsub *ps = t->data;
	if (ps->m.is_connected && !ps->m.is_closed) {
		struct mqtt_packet ping = { .type = MQTT_PINGREQ };
		cli_mqtt_send(&ps->m, &ping);
		cli_mqtt_flush(&ps->m);
	}
}

static void pub_next(struct pubsub *ps)
{
	while (ps->sent < ps->repeat) {
		struct mqtt_packet p = { .type = MQTT_PUBLISH, .qos = ps->m.o->qos, .retain = ps->retain };
		p.topic = mqtt_cstr(ps->topics[0]);
		p.payload.p = ps->payload;
		p.payload.len = (uint32_t)ps->payload_len;
		if (p.qos)
			p.packet_id = cli_mqtt_pid(&ps->m);
		cli_mqtt_send(&ps->m, &p);
		ps->sent++;
		if (p.qos && ps->sent - ps->acked >= ps->m.server_receive_max)
			return; /* respect the node's Receive Maximum */
	}
	if (ps->m.o->qos == 0 && !ps->pinged) {
		/* QoS 0 has no acknowledgement: a PINGREQ after the publishes is answered only
		 * after the node has handled them (packets are processed in order), so a refusal
		 * (MQTT 5: DISCONNECT with a reason) arrives first and is reported */
		struct mqtt_packet ping = { .type = MQTT_PINGREQ };
		cli_mqtt_send(&ps->m, &ping);
		ps->pinged = true;
		return;
	}
	if (ps->m.o->qos > 0 && ps->acked == ps->repeat)
		cli_mqtt_disconnect(&ps->m);
}

static void print_msg(struct pubsub *ps, const struct mqtt_packet *pkt)
{
	if (ps->verbose)
		printf("%.*s ", (int)pkt->topic.len, (const char *)pkt->topic.p);
	fwrite(pkt->payload.p, 1, pkt->payload.len, stdout);
	putchar('\n');
	fflush(stdout);
}

static void on_packet(struct cli_mqtt *m, const struct mqtt_packet *pkt)
{
	struct pubsub *ps = m->user;
	switch (pkt->type) {
	case MQTT_CONNACK:
		if (pkt->reason) {
			fprintf(stderr, "kizuna: connection refused by %s:%d: 0x%02X %s%s%.*s\n", m->o->host, m->o->port,
				pkt->reason, mqtt_rc_name(pkt->reason), pkt->props.reason_string.len ? ": " : "",
				(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
			/* a node that is busy, going away or unavailable: another one may serve us */
			bool elsewhere = pkt->reason == 0x88 || pkt->reason == 0x89 || pkt->reason == 0x9C ||
					 pkt->reason == 0x9D;
			if (!(elsewhere && ps->n_servers > 1))
				ps->exit_code = 1;
			return;
		}
		if (ps->n_servers > 1) {
			fprintf(stderr, "kizuna: connected to %s:%d%s\n", m->o->host, m->o->port,
				pkt->session_present ? " (session present)" : "");
			if (!ps->is_sub)
				ps->sent = ps->acked; /* what was not acknowledged goes again */
		}
		ps->failures = 0;
		if (ps->is_sub) {
			struct kz_buf list;
			kz_buf_init(&list, 0);
			for (int i = 0; i < ps->n_topics; i++) {
				size_t l = strlen(ps->topics[i]);
				uint8_t h[2] = { (uint8_t)(l >> 8), (uint8_t)l };
				(void)kz_buf_append(&list, h, 2);
				(void)kz_buf_append(&list, ps->topics[i], l);
				(void)kz_buf_append(&list, &m->o->qos, 1);
			}
			struct mqtt_packet s = { .type = MQTT_SUBSCRIBE, .packet_id = cli_mqtt_pid(m) };
			s.payload.p = kz_buf_head(&list);
			s.payload.len = (uint32_t)list.len;
			cli_mqtt_send(m, &s);
			kz_buf_cleanup(&list);
		} else {
			pub_next(ps);
		}
		return;
	case MQTT_SUBACK: {
		uint32_t refused = 0;
		for (uint32_t i = 0; i < pkt->payload.len; i++) {
			if (pkt->payload.p[i] >= 0x80) {
				fprintf(stderr, "kizuna: subscription to '%s' refused: 0x%02X %s%s%.*s\n",
					ps->topics[i < (uint32_t)ps->n_topics ? i : 0], pkt->payload.p[i],
					mqtt_rc_name(pkt->payload.p[i]), pkt->props.reason_string.len ? ": " : "",
					(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
				refused++;
			}
		}
		if (refused && refused == pkt->payload.len) { /* nothing to wait for */
			fprintf(stderr, "kizuna: every subscription was refused\n");
			ps->exit_code = 1;
			cli_mqtt_disconnect(m);
		}
		return;
	}
	case MQTT_PINGRESP:
		if (!ps->is_sub && ps->pinged)
			cli_mqtt_disconnect(m);
		return;
	case MQTT_PUBLISH:
		print_msg(ps, pkt);
		if (pkt->qos == 1) {
			struct mqtt_packet a = { .type = MQTT_PUBACK, .packet_id = pkt->packet_id };
			cli_mqtt_send(m, &a);
		} else if (pkt->qos == 2) {
			struct mqtt_packet a = { .type = MQTT_PUBREC, .packet_id = pkt->packet_id };
			cli_mqtt_send(m, &a);
		}
		if (ps->count && ++ps->received >= ps->count)
			cli_mqtt_disconnect(m);
		return;
	case MQTT_PUBREL: {
		struct mqtt_packet a = { .type = MQTT_PUBCOMP, .packet_id = pkt->packet_id };
		cli_mqtt_send(m, &a);
		return;
	}
	case MQTT_PUBACK:
	case MQTT_PUBCOMP:
	case MQTT_PUBREC:
		if (pkt->reason >= 0x80) {
			fprintf(stderr, "kizuna: publish refused: 0x%02X %s%s%.*s\n", pkt->reason,
				mqtt_rc_name(pkt->reason), pkt->props.reason_string.len ? ": " : "",
				(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
			ps->exit_code = 1;
		}
		if (pkt->type == MQTT_PUBREC && pkt->reason < 0x80) {
			struct mqtt_packet a = { .type = MQTT_PUBREL, .packet_id = pkt->packet_id };
			cli_mqtt_send(m, &a);
			return;
		}
		ps->acked++;
		pub_next(ps);
		return;
	case MQTT_DISCONNECT:
		fprintf(stderr, "kizuna: disconnected by the node: 0x%02X %s%s%.*s\n", pkt->reason,
			mqtt_rc_name(pkt->reason), pkt->props.reason_string.len ? ": " : "",
			(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
		if (pkt->reason >= 0x80)
			ps->exit_code = 1;
		return;
	default:
		return;
	}
}

static void on_closed(struct cli_mqtt *m)
{
	struct pubsub *ps = m->user;
	bool done = ps->stopping || ps->exit_code || m->said_bye ||
		    (!ps->is_sub && (ps->m.o->qos ? ps->acked >= ps->repeat : ps->m.said_bye));
	/* failover: another server of the list, in order, after a short wait (sub: for as long as
	 * it runs; pub: MAX_FAILURES_PUB rounds over the list) */
	if (!done && ps->n_servers > 1 &&
	    (ps->is_sub || ps->failures < (unsigned)(MAX_FAILURES_PUB * ps->n_servers))) {
		ps->failures++;
		const char *h = ps->hosts[ps->cur];
		int port = ps->ports[ps->cur];
		ps->cur = (ps->cur + 1) % ps->n_servers;
		unsigned round = ps->failures / (unsigned)ps->n_servers;
		uint64_t wait = ps->failures % (unsigned)ps->n_servers ? 0 : (250u << (round < 3 ? round : 3));
		fprintf(stderr, "kizuna: %s %s:%d (%s); trying %s:%d%s\n", m->is_connected ? "lost" : "could not reach", h,
			port, m->close_why[0] ? m->close_why : "closed", ps->hosts[ps->cur], ps->ports[ps->cur],
			wait ? " after a pause" : "");
		uv_timer_start(&ps->retry, on_retry, wait, 0);
		return;
	}
	if (!m->is_connected && !ps->exit_code && !ps->stopping) {
		fprintf(stderr, "kizuna: connection to %s:%d closed before CONNACK: %s\n", m->o->host, m->o->port,
			m->close_why[0] ? m->close_why : "the node closed it (see its log)");
		ps->exit_code = 1;
	} else if (!ps->is_sub && !ps->exit_code &&
		   (ps->m.o->qos ? ps->acked < ps->repeat : !ps->m.said_bye)) {
		if (ps->m.o->qos)
			fprintf(stderr, "kizuna: the connection closed with %ld of %ld messages not acknowledged\n",
				ps->repeat - ps->acked, ps->repeat);
		else
			fprintf(stderr, "kizuna: the connection closed before the node confirmed it had handled the "
					"messages\n");
		ps->exit_code = 1;
	}
	finish(ps);
}

static int run(struct pubsub *ps, struct cli_opts *o)
{
	SSL_CTX *ctx = cli_tls_ctx(o);
	if (!ctx)
		return 1;
	uv_loop_init(&ps->loop);
	net_loop_init(&ps->nl, &ps->loop);
	uv_signal_init(&ps->loop, &ps->sigint);
	ps->sigint.data = ps;
	uv_signal_start(&ps->sigint, on_sigint, SIGINT);
	uv_timer_init(&ps->loop, &ps->ping);
	ps->ping.data = ps;
	uv_timer_init(&ps->loop, &ps->retry);
	ps->retry.data = ps;
	ps->ctx = ctx;
	if (o->keep_alive) {
		uint64_t every = (uint64_t)o->keep_alive * 500;
		uv_timer_start(&ps->ping, on_ping, every, every);
	}
	ps->m.on_packet = on_packet;
	ps->m.on_closed = on_closed;
	ps->m.user = ps;
	ps->m.o = o;
	connect_current(ps);
	uv_run(&ps->loop, UV_RUN_DEFAULT);
	uv_loop_close(&ps->loop);
	SSL_CTX_free(ctx);
	free(ps->server_list);
	return ps->exit_code;
}

int cli_sub_main(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_LONG, { "topic", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' }, { "count", required_argument, NULL, 'C' },
		{ "session-expiry", required_argument, NULL, 'x' }, { "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 } };
	struct pubsub ps;
	struct cli_opts o;
	memset(&ps, 0, sizeof ps);
	cli_opts_default(&o);
	const char *data = NULL;
	const char *topics[64];
	ps.topics = topics;
	ps.is_sub = true;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "t:vC:x:c", opts, NULL)) != -1) {
		int r = cli_opts_parse(&o, c, optarg);
		if (r < 0) {
			fprintf(stderr, "kizuna sub: bad value '%s'\n", optarg);
			return 2;
		}
		if (r)
			continue;
		switch (c) {
		case 'd': data = optarg; break;
		case 't':
			if (ps.n_topics == 64) {
				fprintf(stderr, "kizuna sub: at most 64 topics\n");
				return 2;
			}
			topics[ps.n_topics++] = optarg;
			break;
		case 'v': ps.verbose = true; break;
		case 'C': ps.count = atol(optarg); break;
		case 'x': o.session_expiry = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'c': o.clean = false; break;
		case 'H': cli_help("sub"); return 0;
		default: cli_help("sub"); return 2;
		}
	}
	if (ps.n_topics == 0) {
		fprintf(stderr, "kizuna sub: give at least one -t TOPIC-FILTER\n");
		return 2;
	}
	int orc = cli_opts_finish(&o, data, "sub");
	if (orc)
		return orc;
	if (parse_servers(&ps, o.host, o.port)) {
		fprintf(stderr, "kizuna sub: bad -h '%s': HOST[:PORT] separated by commas, at most 16\n", o.host);
		free(ps.server_list);
		return 2;
	}
	return run(&ps, &o);
}

int cli_pub_main(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_LONG, { "topic", required_argument, NULL, 't' },
		{ "message", required_argument, NULL, 'm' }, { "file", required_argument, NULL, 'f' },
		{ "retain", no_argument, NULL, 'r' }, { "repeat", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'H' }, { NULL, 0, NULL, 0 } };
	struct pubsub ps;
	struct cli_opts o;
	memset(&ps, 0, sizeof ps);
	cli_opts_default(&o);
	const char *data = NULL, *topic = NULL, *file = NULL, *msg = NULL;
	ps.repeat = 1;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "t:m:f:rn:", opts, NULL)) != -1) {
		int r = cli_opts_parse(&o, c, optarg);
		if (r < 0) {
			fprintf(stderr, "kizuna pub: bad value '%s'\n", optarg);
			return 2;
		}
		if (r)
			continue;
		switch (c) {
		case 'd': data = optarg; break;
		case 't': topic = optarg; break;
		case 'm': msg = optarg; break;
		case 'f': file = optarg; break;
		case 'r': ps.retain = true; break;
		case 'n': ps.repeat = atol(optarg); break;
		case 'H': cli_help("pub"); return 0;
		default: cli_help("pub"); return 2;
		}
	}
	if (!topic || (!msg && !file) || (msg && file) || ps.repeat < 1) {
		fprintf(stderr, "kizuna pub: give -t TOPIC and one of -m MESSAGE or -f FILE\n");
		return 2;
	}
	char *buf = NULL;
	if (file) {
		FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
		if (!f) {
			fprintf(stderr, "kizuna pub: cannot open %s\n", file);
			return 1;
		}
		size_t cap = 0, len = 0, n;
		char chunk[65536];
		while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
			if (len + n > (256u << 20)) {
				fprintf(stderr, "kizuna pub: %s is larger than 256 MiB\n", file);
				return 1;
			}
			if (len + n > cap) {
				cap = (len + n) * 2;
				char *nb = realloc(buf, cap);
				if (!nb)
					return 1;
				buf = nb;
			}
			memcpy(buf + len, chunk, n);
			len += n;
		}
		if (f != stdin)
			fclose(f);
		ps.payload = (const uint8_t *)buf;
		ps.payload_len = len;
	} else {
		ps.payload = (const uint8_t *)msg;
		ps.payload_len = strlen(msg);
	}
	const char *topics[1] = { topic };
	ps.topics = topics;
	ps.n_topics = 1;
	int rc = cli_opts_finish(&o, data, "pub");
	if (!rc && parse_servers(&ps, o.host, o.port)) {
		fprintf(stderr, "kizuna pub: bad -h '%s': HOST[:PORT] separated by commas, at most 16\n", o.host);
		free(ps.server_list);
		ps.server_list = NULL;
		rc = 2;
	}
	if (!rc)
		rc = run(&ps, &o);
	free(buf);
	return rc;
}
