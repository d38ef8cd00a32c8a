/* cli_agent.c — `kizuna agent`: a demonstration effector (docs/TASKS.md "kizuna agent").
 *
 * Over one MQTT 5 connection with its own certificate it registers its kinds
 * (kz/agent/<identity>/kinds), subscribes to its inbox (kz/agent/<identity>/tasks) with
 * kz-snapshot, so that the open tasks come first, publishes its own position as an entity
 * (kz/entity/<entity id>), and walks every task it is given through its states, each move a
 * PUBLISH on kz/task/<id>/state naming the version it moves from:
 *
 *   SENT -> RECEIVED -> ACKNOWLEDGED (or REJECTED: a kind it does not do) -> WILCO
 *        -> EXECUTING -> (the work) -> DONE_OK | DONE_FAILED
 *   CANCEL_REQUESTED -> CANCELLED (the work stops)
 *
 * It is driven by the inbox: each of its moves comes back as the task's new state, and the
 * next move answers that. `goto` ({"lat", "lon"}) moves its position there in --steps
 * steps of --step-ms, publishing each; `observe` ({} and the task's entities) waits one step
 * and reports what it was asked to look at. It reconnects after a lost connection and
 * stops on SIGINT or SIGTERM. */
#include "cli/cli_client.h"
#include "cli/cli.h"
#include "base/kz_json.h"
#include "base/kz_time.h"
#include "base/kz_topic.h"

#include <getopt.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_JOBS 64

struct job {
	char id[129];
	uint64_t version; /* of EXECUTING */
	bool is_goto, used;
	double from_lat, from_lon, to_lat, to_lon;
	unsigned step;
	char entities[1024];
	uv_timer_t timer;
	struct agent *a;
};

struct agent {
	struct cli_mqtt m;
	uv_loop_t loop;
	struct net_loop nl;
	uv_signal_t sigint, sigterm;
	uv_timer_t ping, retry;
	SSL_CTX *ctx;
	char identity[512], inbox[600], kinds_topic[600], entity[129];
	char kinds[512];
	double lat, lon;
	unsigned steps, step_ms;
	bool stopping, finished;
	int exit_code;
	struct kz_json_doc doc;
	struct job jobs[MAX_JOBS];
};

static char *identity_of(const char *cert_file, char *out, size_t cap)
{
	FILE *f = fopen(cert_file, "r");
	if (!f)
		return NULL;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x)
		return NULL;
	char *res = NULL;
	GENERAL_NAMES *gn = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gn && i < sk_GENERAL_NAME_num(gn); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gn, i);
		if (g->type != GEN_URI)
			continue;
		const char *u = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		if (u && !strncmp(u, "spiffe://", 9)) {
			snprintf(out, cap, "%s", u);
			res = out;
			break;
		}
	}
	GENERAL_NAMES_free(gn);
	X509_free(x);
	return res;
}

static void publish(struct agent *a, const char *topic, const char *payload, const char *user_k, const char *user_v)
{
	struct mqtt_packet p = { .type = MQTT_PUBLISH, .qos = 1, .packet_id = cli_mqtt_pid(&a->m) };
	p.topic = mqtt_cstr(topic);
	p.payload.p = (const uint8_t *)payload;
	p.payload.len = (uint32_t)strlen(payload);
	uint8_t props[300];
	if (user_k) { /* one user property */
		size_t kl = strlen(user_k), vl = strlen(user_v), n = 0;
		props[n++] = 0x26;
		props[n++] = (uint8_t)(kl >> 8);
		props[n++] = (uint8_t)kl;
		memcpy(props + n, user_k, kl);
		n += kl;
		props[n++] = (uint8_t)(vl >> 8);
		props[n++] = (uint8_t)vl;
		memcpy(props + n, user_v, vl);
		n += vl;
		p.props.extra = (struct mqtt_str){ props, (uint32_t)n };
	}
	cli_mqtt_send(&a->m, &p);
}

static void publish_position(struct agent *a)
{
	char t[160], body[512], now[32];
	kz_time_format(kz_now_wall_ns(), now);
	snprintf(t, sizeof t, "kz/entity/%s", a->entity);
	snprintf(body, sizeof body,
		 "{\"id\":\"%s\",\"type\":\"a-f-G-U-C\",\"name\":\"%s\",\"position\":{\"lat\":%.7f,\"lon\":%.7f,\"ce\":5},"
		 "\"source_time\":\"%s\",\"provenance\":{\"adapter\":\"kizuna-agent\"}}",
		 a->entity, a->entity, a->lat, a->lon, now);
	publish(a, t, body, NULL, NULL);
}

static void move(struct agent *a, const char *id, const char *state, uint64_t version, const char *extra)
{
	char t[200], body[2048];
	snprintf(t, sizeof t, "kz/task/%s/state", id);
	snprintf(body, sizeof body, "{\"state\":\"%s\",\"version\":%llu%s%s}", state, (unsigned long long)version,
		 extra ? "," : "", extra ? extra : "");
	printf("task %s: %s\n", id, state);
	fflush(stdout);
	publish(a, t, body, NULL, NULL);
}

static struct job *job_find(struct agent *a, const char *id)
{
	for (int i = 0; i < MAX_JOBS; i++)
		if (a->jobs[i].used && !strcmp(a->jobs[i].id, id))
			return &a->jobs[i];
	return NULL;
}

static void job_end(struct job *j)
{
	uv_timer_stop(&j->timer);
	j->used = false;
}

static void on_job_step(uv_timer_t *t)
{
	struct job *j = t->data;
	struct agent *a = j->a;
	if (!a->m.is_connected || a->m.is_closed) {
		job_end(j); /* after the reconnect the snapshot brings EXECUTING again: it starts over */
		return;
	}
	char extra[1400];
	if (j->is_goto) {
		j->step++;
		double f = (double)j->step / a->steps;
		a->lat = j->from_lat + (j->to_lat - j->from_lat) * f;
		a->lon = j->from_lon + (j->to_lon - j->from_lon) * f;
		publish_position(a);
		if (j->step < a->steps) {
			uv_timer_start(&j->timer, on_job_step, a->step_ms, 0);
			cli_mqtt_flush(&a->m);
			return;
		}
		snprintf(extra, sizeof extra, "\"result\":{\"position\":{\"lat\":%.7f,\"lon\":%.7f}}", a->lat, a->lon);
	} else {
		snprintf(extra, sizeof extra, "\"result\":{\"observed\":%s,\"from\":{\"lat\":%.7f,\"lon\":%.7f}}",
			 j->entities[0] ? j->entities : "[]", a->lat, a->lon);
	}
	move(a, j->id, "DONE_OK", j->version, extra);
	job_end(j);
	cli_mqtt_flush(&a->m);
}

static bool kind_ok(const struct agent *a, const char *kind) { return kz_list_has(a->kinds, kind); }

static void start_job(struct agent *a, const char *id, uint64_t version, const char *kind, const struct kz_json *params,
		      const struct kz_json *ents, const char *text)
{
	if (job_find(a, id))
		return; /* the same state again (a snapshot after a live message) */
	struct job *j = NULL;
	for (int i = 0; i < MAX_JOBS && !j; i++)
		if (!a->jobs[i].used)
			j = &a->jobs[i];
	if (!j) {
		move(a, id, "DONE_FAILED", version, "\"reason\":\"the agent is busy with 64 tasks\"");
		return;
	}
	memset(j, 0, offsetof(struct job, timer));
	j->used = true;
	j->a = a;
	snprintf(j->id, sizeof j->id, "%s", id);
	j->version = version;
	j->is_goto = !strcmp(kind, "goto");
	j->from_lat = a->lat;
	j->from_lon = a->lon;
	if (j->is_goto) {
		double la, lo;
		if (!kz_json_num(kz_json_get(params, "lat"), &la) || !kz_json_num(kz_json_get(params, "lon"), &lo) ||
		    la < -90 || la > 90 || lo < -180 || lo > 180) {
			j->used = false;
			move(a, id, "DONE_FAILED", version, "\"reason\":\"goto needs parameters {\\\"lat\\\", \\\"lon\\\"} in range\"");
			return;
		}
		j->to_lat = la;
		j->to_lon = lo;
	}
	if (ents && ents->end - ents->off < sizeof j->entities)
		snprintf(j->entities, sizeof j->entities, "%.*s", (int)(ents->end - ents->off), text + ents->off);
	uv_timer_start(&j->timer, on_job_step, a->step_ms, 0);
}

/* A task's state from the inbox: the agent's answer to it. */
static void on_task(struct agent *a, const uint8_t *p, size_t n)
{
	if (kz_json_parse(&a->doc, (const char *)p, n))
		return;
	const struct kz_json *o = kz_json_root(&a->doc);
	const char *id = kz_json_get_str(o, "id"), *state = kz_json_get_str(o, "state"),
		   *kind = kz_json_get_str(o, "kind");
	long long v;
	if (!id || !state || !kind || !kz_json_int(kz_json_get(o, "version"), &v) || strlen(id) > 128)
		return;
	char idc[129];
	snprintf(idc, sizeof idc, "%s", id);
	uint64_t ver = (uint64_t)v;
	if (!strcmp(state, "SENT"))
		move(a, idc, "RECEIVED", ver, NULL);
	else if (!strcmp(state, "RECEIVED"))
		move(a, idc, kind_ok(a, kind) ? "ACKNOWLEDGED" : "REJECTED", ver,
		     kind_ok(a, kind) ? NULL : "\"reason\":\"not a kind this agent does\"");
	else if (!strcmp(state, "ACKNOWLEDGED"))
		move(a, idc, "WILCO", ver, NULL);
	else if (!strcmp(state, "WILCO"))
		move(a, idc, "EXECUTING", ver, NULL);
	else if (!strcmp(state, "EXECUTING"))
		start_job(a, idc, ver, kind, kz_json_get(o, "parameters"), kz_json_get(o, "entities"), (const char *)p);
	else if (!strcmp(state, "CANCEL_REQUESTED")) {
		struct job *j = job_find(a, idc);
		if (j)
			job_end(j);
		move(a, idc, "CANCELLED", ver, "\"reason\":\"cancelled as asked\"");
	} else {
		struct job *j = job_find(a, idc); /* ended elsewhere (expired) */
		if (j)
			job_end(j);
	}
}

static void finish(struct agent *a)
{
	if (a->finished)
		return;
	a->finished = true;
	for (int i = 0; i < MAX_JOBS; i++)
		uv_close((uv_handle_t *)&a->jobs[i].timer, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->ping, NULL);
	uv_close((uv_handle_t *)&a->retry, NULL);
	net_loop_close(&a->nl);
}

static void on_packet(struct cli_mqtt *m, const struct mqtt_packet *pkt)
{
	struct agent *a = m->user;
	switch (pkt->type) {
	case MQTT_CONNACK: {
		if (pkt->reason) {
			fprintf(stderr, "kizuna agent: connection refused: 0x%02X %s%s%.*s\n", pkt->reason,
				mqtt_rc_name(pkt->reason), pkt->props.reason_string.len ? ": " : "",
				(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
			a->exit_code = 1;
			a->stopping = true;
			return;
		}
		char body[600] = "{\"kinds\":[";
		for (const char *q = a->kinds; *q;) {
			const char *c = strchr(q, ',');
			size_t n = c ? (size_t)(c - q) : strlen(q);
			size_t bl = strlen(body);
			snprintf(body + bl, sizeof body - bl, "%s\"%.*s\"", bl > 10 ? "," : "", (int)n, q);
			q += n + (c != NULL);
		}
		strncat(body, "]}", sizeof body - strlen(body) - 1);
		publish(a, a->kinds_topic, body, NULL, NULL);
		publish_position(a);
		/* the inbox, open tasks first */
		uint8_t list[700], props[32];
		size_t tl = strlen(a->inbox), pn = 0;
		list[0] = (uint8_t)(tl >> 8);
		list[1] = (uint8_t)tl;
		memcpy(list + 2, a->inbox, tl);
		list[2 + tl] = 1;
		static const char k[] = "kz-snapshot";
		props[pn++] = 0x26;
		props[pn++] = 0;
		props[pn++] = sizeof k - 1;
		memcpy(props + pn, k, sizeof k - 1);
		pn += sizeof k - 1;
		props[pn++] = 0;
		props[pn++] = 1;
		props[pn++] = '1';
		struct mqtt_packet s = { .type = MQTT_SUBSCRIBE, .packet_id = cli_mqtt_pid(m) };
		s.payload.p = list;
		s.payload.len = (uint32_t)(tl + 3);
		s.props.extra = (struct mqtt_str){ props, (uint32_t)pn };
		cli_mqtt_send(m, &s);
		printf("agent %s: ready (kinds %s, entity %s)\n", a->identity, a->kinds, a->entity);
		fflush(stdout);
		return;
	}
	case MQTT_SUBACK:
		if (pkt->payload.len && pkt->payload.p[0] >= 0x80) {
			fprintf(stderr, "kizuna agent: the inbox %s was refused: 0x%02X %.*s\n", a->inbox, pkt->payload.p[0],
				(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
			a->exit_code = 1;
			a->stopping = true;
			cli_mqtt_disconnect(m);
		}
		return;
	case MQTT_PUBLISH:
		if (pkt->qos == 1) {
			struct mqtt_packet ack = { .type = MQTT_PUBACK, .packet_id = pkt->packet_id };
			cli_mqtt_send(m, &ack);
		}
		if (pkt->topic.len == strlen(a->inbox) && !memcmp(pkt->topic.p, a->inbox, pkt->topic.len))
			on_task(a, pkt->payload.p, pkt->payload.len);
		return;
	case MQTT_PUBACK:
		if (pkt->reason >= 0x80) /* a move that lost a race, or the node said no: it says why */
			fprintf(stderr, "kizuna agent: refused: 0x%02X %.*s\n", pkt->reason,
				(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
		return;
	case MQTT_DISCONNECT:
		fprintf(stderr, "kizuna agent: disconnected by the node: 0x%02X %.*s\n", pkt->reason,
			(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
		return;
	default:
		return;
	}
}

static void on_retry(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (a->stopping)
		return;
	a->m.is_connected = a->m.is_closed = a->m.said_bye = false;
	a->m.close_why[0] = 0;
	if (cli_mqtt_connect(&a->m, &a->nl, a->ctx, a->m.o))
		uv_timer_start(&a->retry, on_retry, 1000, 0);
}

static void on_closed(struct cli_mqtt *m)
{
	struct agent *a = m->user;
	if (a->stopping) {
		finish(a);
		return;
	}
	fprintf(stderr, "kizuna agent: connection lost (%s); again in 1 s\n", m->close_why[0] ? m->close_why : "closed");
	uv_timer_start(&a->retry, on_retry, 1000, 0);
}

static void on_signal(uv_signal_t *h, int sig)
{
	(void)sig;
	struct agent *a = h->data;
	a->stopping = true;
	if (a->m.conn && !a->m.is_closed)
		cli_mqtt_disconnect(&a->m);
	else
		finish(a);
}

static void on_ping(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (a->m.is_connected && !a->m.is_closed) {
		struct mqtt_packet ping = { .type = MQTT_PINGREQ };
		cli_mqtt_send(&a->m, &ping);
		cli_mqtt_flush(&a->m);
	}
}

int cli_agent_main(int argc, char **argv)
{
	static struct agent a; /* large; one per process */
	struct cli_opts o;
	cli_opts_default(&o);
	const char *data = NULL, *kinds = "observe,goto", *entity = NULL;
	a.lat = 35.681236;
	a.lon = 139.767125;
	a.steps = 4;
	a.step_ms = 500;
	static const struct option longs[] = { CLI_COMMON_LONG, { "kinds", required_argument, NULL, 2001 },
					       { "entity", required_argument, NULL, 2002 },
					       { "position", required_argument, NULL, 2003 },
					       { "step-ms", required_argument, NULL, 2004 },
					       { "steps", required_argument, NULL, 2005 },
					       { "help", no_argument, NULL, 'H' }, { 0 } };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, longs, NULL)) != -1) {
		int r = cli_opts_parse(&o, c, optarg);
		if (r == 1)
			continue;
		char *end;
		switch (c) {
		case 'd': data = optarg; break;
		case 2001: kinds = optarg; break;
		case 2002: entity = optarg; break;
		case 2003:
			if (sscanf(optarg, "%lf,%lf", &a.lat, &a.lon) != 2 || a.lat < -90 || a.lat > 90 || a.lon < -180 ||
			    a.lon > 180) {
				fprintf(stderr, "kizuna agent: --position LAT,LON (WGS 84 degrees)\n");
				return 2;
			}
			break;
		case 2004:
			a.step_ms = (unsigned)strtoul(optarg, &end, 10);
			if (*end || a.step_ms < 10 || a.step_ms > 600000) {
				fprintf(stderr, "kizuna agent: --step-ms 10 to 600000\n");
				return 2;
			}
			break;
		case 2005:
			a.steps = (unsigned)strtoul(optarg, &end, 10);
			if (*end || a.steps < 1 || a.steps > 1000) {
				fprintf(stderr, "kizuna agent: --steps 1 to 1000\n");
				return 2;
			}
			break;
		case 'H': cli_help("agent"); return 0;
		default:
			fprintf(stderr, "kizuna agent: bad option (kizuna help agent)\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kizuna agent: unexpected argument '%s' (kizuna help agent)\n", argv[optind]);
		return 2;
	}
	int fr = cli_opts_finish(&o, data, "agent");
	if (fr)
		return fr;
	if (strlen(kinds) >= sizeof a.kinds || !*kinds) {
		fprintf(stderr, "kizuna agent: --kinds KIND,KIND,... (at most %zu bytes)\n", sizeof a.kinds - 1);
		return 2;
	}
	snprintf(a.kinds, sizeof a.kinds, "%s", kinds);
	if (!identity_of(o.cert, a.identity, sizeof a.identity)) {
		fprintf(stderr, "kizuna agent: %s has no spiffe:// URI: the agent's identity is its certificate's\n", o.cert);
		return 1;
	}
	const char *name = strrchr(a.identity, '/') + 1;
	snprintf(a.entity, sizeof a.entity, "%.128s", entity ? entity : name);
	snprintf(a.inbox, sizeof a.inbox, "kz/agent/%.500s/tasks", a.identity + 9);
	snprintf(a.kinds_topic, sizeof a.kinds_topic, "kz/agent/%.500s/kinds", a.identity + 9);
	if (!(a.ctx = cli_tls_ctx(&o)))
		return 1;
	uv_loop_init(&a.loop);
	net_loop_init(&a.nl, &a.loop);
	uv_signal_init(&a.loop, &a.sigint);
	uv_signal_init(&a.loop, &a.sigterm);
	a.sigint.data = a.sigterm.data = &a;
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_timer_init(&a.loop, &a.ping);
	uv_timer_init(&a.loop, &a.retry);
	a.ping.data = a.retry.data = &a;
	for (int i = 0; i < MAX_JOBS; i++) {
		uv_timer_init(&a.loop, &a.jobs[i].timer);
		a.jobs[i].timer.data = &a.jobs[i];
	}
	uv_timer_start(&a.ping, on_ping, (uint64_t)o.keep_alive * 500, (uint64_t)o.keep_alive * 500);
	a.m.on_packet = on_packet;
	a.m.on_closed = on_closed;
	a.m.user = &a;
	a.m.o = &o;
	on_retry(&a.retry);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	uv_loop_close(&a.loop);
	SSL_CTX_free(a.ctx);
	kz_json_free(&a.doc);
	return a.exit_code;
}
