/* cli_replay.c — `kizuna adapter replay ais|avr|beast|sbs|cot FILE`: a recorded feed into a node as
 * the adapters would write it (docs/ADAPTERS.md "Replay"). Each decodable message becomes an
 * entity update, published over MQTT 5 at QoS 1 on kz/entity/<id> with this command's
 * identity (--cert/--key, or the admin of --data) and --label, so that the node's policy
 * decides as for any publisher. --speed max sends as fast as the node acknowledges (within
 * its Receive Maximum); --speed recorded keeps the gaps between the messages' times: an AIS
 * tag block's c: field, the receiver's 12 MHz timestamp of a Beast frame or of an AVR line
 * with '@', an SBS line's generated date and time. Messages without a time go at once. */
#include "cli/cli.h"
#include "cli/cli_client.h"
#include "adapters/ais.h"
#include "adapters/ais_entity.h"
#include "adapters/cot.h"
#include "adapters/modes.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_time.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct update {
	char topic[180];
	char *json;
	size_t len;
	uint64_t at_ms; /* offset from the first message (recorded speed) */
};

struct replay {
	struct cli_mqtt m;
	uv_loop_t loop;
	struct net_loop nl;
	uv_timer_t timer;
	SSL_CTX *ctx;
	struct update *v;
	size_t n, cap, sent, acked, refused;
	bool recorded, finished;
	uint64_t start_ms;
	char props[1100];
	size_t props_len;
	int exit_code;
};

static int add(struct replay *r, const char *id, const struct kz_buf *json, uint64_t at_ms)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;
		struct update *nv = realloc(r->v, cap * sizeof *nv);
		if (!nv)
			return -1;
		r->v = nv;
		r->cap = cap;
	}
	struct update *u = &r->v[r->n];
	snprintf(u->topic, sizeof u->topic, "kz/entity/%s", id);
	if (!(u->json = malloc(json->len)))
		return -1;
	memcpy(u->json, kz_buf_head(json), json->len);
	u->len = json->len;
	u->at_ms = at_ms;
	r->n++;
	return 0;
}

/* The AIS tag block's c: (Unix seconds), 0 when none. */
static uint64_t tag_time_ms(const char *line)
{
	if (line[0] != '\\')
		return 0;
	const char *c = strstr(line, "c:");
	const char *end = strchr(line + 1, '\\');
	if (!c || !end || c > end)
		return 0;
	return strtoull(c + 2, NULL, 10) * 1000;
}

/* An SBS line's generated date and time (fields 7 and 8: "2026/12/04","10:00:00.123"), Unix
 * ms; 0 when absent. */
static uint64_t sbs_time_ms(const char *line)
{
	const char *f = line;
	for (int i = 0; i < 6 && f; i++)
		f = strchr(f, ',') ? strchr(f, ',') + 1 : NULL;
	int y, mo, d, h, mi;
	double sec;
	if (!f || sscanf(f, "%d/%d/%d,%d:%d:%lf", &y, &mo, &d, &h, &mi, &sec) != 6)
		return 0;
	char iso[40];
	snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, h, mi, (int)sec);
	uint64_t ns;
	if (kz_time_parse(iso, &ns))
		return 0;
	return ns / 1000000u + (uint64_t)((sec - (int)sec) * 1000);
}

/* Mode S frames (AVR, Beast): decoded against the aircraft state, timed by the receiver's
 * 12 MHz clock when the frame has it. */
struct modes_load {
	struct replay *r;
	struct modes_state *ms;
	struct kz_buf *b;
	uint64_t n, first;
};

static void modes_frame(void *ctx, const struct modes_frame *f)
{
	struct modes_load *l = ctx;
	struct modes_msg m;
	const char *why;
	char id[32];
	l->n++;
	uint64_t t = f->t12mhz / 12000u; /* ms on the receiver's clock */
	if (f->t12mhz && !l->first)
		l->first = t ? t : 1;
	kz_buf_reset(l->b);
	if (!modes_decode(f, &m, &why) &&
	    !modes_entity_update(l->ms, &m, f->t12mhz ? t : l->n * 100, "replay", l->b, id))
		(void)add(l->r, id, l->b, f->t12mhz && t >= l->first ? t - l->first : 0);
}

static void on_cot(void *ctx, const struct cot_event *e)
{
	struct replay *r = ctx;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char id[160];
	if (cot_to_entity(e, &b, id, sizeof id) == 0)
		(void)add(r, id, &b, 0);
	kz_buf_cleanup(&b);
}

static void on_cot_error(void *ctx, const char *why)
{
	(void)ctx;
	fprintf(stderr, "kizuna adapter replay: an event refused: %s\n", why);
}

static int load(struct replay *r, const char *format, FILE *in)
{
	struct kz_buf b;
	kz_buf_init(&b, 0);
	char line[4096], id[32];
	const char *why;
	uint64_t first = 0, n = 0;
	if (!strcmp(format, "cot")) {
		struct cot_reader *rd = cot_reader_new(1 << 20, on_cot, on_cot_error, r);
		size_t got;
		while (rd && (got = fread(line, 1, sizeof line, in)) > 0)
			cot_reader_feed(rd, line, got);
		cot_reader_free(rd);
		return rd ? 0 : -1;
	}
	struct ais_nmea nm;
	struct ais_vessels vs;
	struct modes_state ms;
	ais_nmea_init(&nm, 60000);
	if (ais_vessels_init(&vs, 100000) || modes_state_init(&ms, 100000, false, 0, 0))
		return -1;
	struct modes_load ml = { .r = r, .ms = &ms, .b = &b };
	if (!strcmp(format, "beast")) {
		struct modes_beast st = { 0 };
		size_t got;
		while ((got = fread(line, 1, sizeof line, in)) > 0)
			modes_beast_feed(&st, (const uint8_t *)line, got, modes_frame, &ml);
	}
	while (strcmp(format, "beast") && fgets(line, sizeof line, in)) {
		n++;
		kz_buf_reset(&b);
		if (!strcmp(format, "ais")) {
			struct ais_payload p;
			struct ais_msg m;
			uint64_t t = tag_time_ms(line);
			if (t && !first)
				first = t;
			if (ais_nmea_line(&nm, line, strlen(line), n, &p, &why) == 1 && !ais_decode(&p, &m, &why) &&
			    !ais_entity_update(&vs, &m, "replay", &b, id))
				(void)add(r, id, &b, t && first ? t - first : 0);
		} else if (!strcmp(format, "avr")) {
			struct modes_frame f;
			if (modes_avr_line(line, strlen(line), &f, &why) == 1)
				modes_frame(&ml, &f);
		} else {
			struct modes_msg m;
			double lat, lon;
			uint64_t t = sbs_time_ms(line);
			if (t && !first)
				first = t;
			if (modes_sbs_line(line, strlen(line), &m, &lat, &lon, &why) == 1 &&
			    !modes_sbs_update(&ms, &m, lat, lon, t ? t : n * 100, "replay", &b, id))
				(void)add(r, id, &b, t && t >= first ? t - first : 0);
		}
	}
	ais_vessels_free(&vs);
	modes_state_free(&ms);
	kz_buf_cleanup(&b);
	return 0;
}

static void finish(struct replay *r)
{
	if (r->finished)
		return;
	r->finished = true;
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, NULL);
	net_loop_close(&r->nl);
}

static void send_next(struct replay *r);

static void on_timer(uv_timer_t *t)
{
	struct replay *r = t->data;
	send_next(r);
	cli_mqtt_flush(&r->m);
}

static void send_next(struct replay *r)
{
	uint64_t now = kz_now_mono_ms();
	while (r->sent < r->n && r->sent - r->acked < r->m.server_receive_max) {
		struct update *u = &r->v[r->sent];
		if (r->recorded && r->start_ms + u->at_ms > now) {
			uv_timer_start(&r->timer, on_timer, r->start_ms + u->at_ms - now, 0);
			return;
		}
		struct mqtt_packet p = { .type = MQTT_PUBLISH, .qos = 1, .packet_id = cli_mqtt_pid(&r->m) };
		p.topic = mqtt_cstr(u->topic);
		p.payload.p = (const uint8_t *)u->json;
		p.payload.len = (uint32_t)u->len;
		if (r->props_len)
			p.props.extra = (struct mqtt_str){ (const uint8_t *)r->props, (uint32_t)r->props_len };
		cli_mqtt_send(&r->m, &p);
		r->sent++;
	}
	if (r->acked == r->n)
		cli_mqtt_disconnect(&r->m);
}

static void on_packet(struct cli_mqtt *m, const struct mqtt_packet *pkt)
{
	struct replay *r = m->user;
	if (pkt->type == MQTT_CONNACK) {
		if (pkt->reason) {
			fprintf(stderr, "kizuna adapter replay: connection refused: 0x%02X %.*s\n", pkt->reason,
				(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
			r->exit_code = 1;
			return;
		}
		r->start_ms = kz_now_mono_ms();
		send_next(r);
	} else if (pkt->type == MQTT_PUBACK) {
		r->acked++;
		if (pkt->reason >= 0x80 && r->refused++ < 5)
			fprintf(stderr, "kizuna adapter replay: refused: 0x%02X %.*s\n", pkt->reason,
				(int)pkt->props.reason_string.len, (const char *)pkt->props.reason_string.p);
		send_next(r);
	}
}

static void on_closed(struct cli_mqtt *m)
{
	struct replay *r = m->user;
	if (r->acked < r->n && !r->exit_code) {
		fprintf(stderr, "kizuna adapter replay: the connection closed with %zu of %zu updates not acknowledged%s%s\n",
			r->n - r->acked, r->n, m->close_why[0] ? ": " : "", m->close_why);
		r->exit_code = 1;
	}
	finish(r);
}

int cli_adapter_replay(int argc, char **argv)
{
	static struct replay r;
	struct cli_opts o;
	cli_opts_default(&o);
	const char *data = NULL, *label = NULL, *speed = "max";
	static const struct option longs[] = { CLI_COMMON_LONG, { "label", required_argument, NULL, 2001 },
					       { "speed", required_argument, NULL, 2002 }, { 0 } };
	int c;
	optind = 3;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, longs, NULL)) != -1) {
		if (cli_opts_parse(&o, c, optarg) == 1)
			continue;
		if (c == 'd')
			data = optarg;
		else if (c == 2001)
			label = optarg;
		else if (c == 2002)
			speed = optarg;
		else {
			fprintf(stderr, "kizuna adapter replay: bad option (kizuna help adapter)\n");
			return 2;
		}
	}
	const char *format = argv[2];
	if (optind != argc - 1 || (strcmp(format, "ais") && strcmp(format, "avr") && strcmp(format, "beast") &&
				   strcmp(format, "sbs") && strcmp(format, "cot")) ||
	    (strcmp(speed, "max") && strcmp(speed, "recorded"))) {
		fprintf(stderr, "kizuna adapter replay: usage: kizuna adapter replay ais|avr|beast|sbs|cot FILE [--speed max|recorded] "
				"[--label L] [options]\n");
		return 2;
	}
	int fr = cli_opts_finish(&o, data, "adapter replay");
	if (fr)
		return fr;
	FILE *in = strcmp(argv[optind], "-") ? fopen(argv[optind], "rb") : stdin;
	if (!in) {
		fprintf(stderr, "kizuna adapter replay: %s: cannot be read\n", argv[optind]);
		return 1;
	}
	kz_hash_seed();
	r.recorded = !strcmp(speed, "recorded");
	int lr = load(&r, format, in);
	if (in != stdin)
		fclose(in);
	if (lr) {
		fprintf(stderr, "kizuna adapter replay: out of memory\n");
		return 1;
	}
	if (!r.n) {
		fprintf(stderr, "kizuna adapter replay: nothing in %s decodes to an entity update\n", argv[optind]);
		return 1;
	}
	if (label) { /* the user property kz-label on every PUBLISH */
		size_t ll = strlen(label);
		if (ll > 1000) {
			fprintf(stderr, "kizuna adapter replay: --label is longer than 1000 bytes\n");
			return 2;
		}
		r.props[r.props_len++] = 0x26;
		r.props[r.props_len++] = 0;
		r.props[r.props_len++] = 8;
		memcpy(r.props + r.props_len, "kz-label", 8);
		r.props_len += 8;
		r.props[r.props_len++] = (char)(ll >> 8);
		r.props[r.props_len++] = (char)ll;
		memcpy(r.props + r.props_len, label, ll);
		r.props_len += ll;
	}
	if (!(r.ctx = cli_tls_ctx(&o)))
		return 1;
	uv_loop_init(&r.loop);
	net_loop_init(&r.nl, &r.loop);
	uv_timer_init(&r.loop, &r.timer);
	r.timer.data = &r;
	r.m.on_packet = on_packet;
	r.m.on_closed = on_closed;
	r.m.user = &r;
	r.m.o = &o;
	uint64_t t0 = kz_now_mono_ns();
	if (cli_mqtt_connect(&r.m, &r.nl, r.ctx, &o)) {
		fprintf(stderr, "kizuna adapter replay: cannot connect to %s:%d\n", o.host, o.port);
		return 1;
	}
	uv_run(&r.loop, UV_RUN_DEFAULT);
	uv_loop_close(&r.loop);
	SSL_CTX_free(r.ctx);
	double s = (kz_now_mono_ns() - t0) / 1e9;
	fprintf(stderr, "kizuna adapter replay: %zu entity updates published, %zu acknowledged, %zu refused, in %.2f s\n",
		r.sent, r.acked, r.refused, s);
	for (size_t i = 0; i < r.n; i++)
		free(r.v[i].json);
	free(r.v);
	return r.exit_code ? r.exit_code : r.refused ? 3 : 0;
}
