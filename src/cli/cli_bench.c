/* cli_bench.c — `kizuna bench mqtt`: an MQTT-over-TLS load generator. N publishers and M
 * subscribers spread over T threads (one libuv loop each). Payloads carry the monotonic send
 * time, so each delivery yields a latency sample; broker CPU comes from /proc/PID/stat. */
#include "cli/cli.h"
#include "cli/cli_client.h"
#include "base/kz_file.h"
#include "base/kz_time.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SAMPLES (1u << 20)

struct bench_cfg {
	struct cli_opts o;
	struct cli_opts so; /* the subscribers' (another node of a cluster with --sub-port) */
	int pubs, subs, threads, size, duration_s, qos;
	long rate; /* total msgs/s, 0 = flat out */
	int broker_pid;
	int window; /* QoS 1 publishes in flight per publisher; 0 = the broker's limit (v5) or 64 */
	bool no_window;
	const char *topic;
};

struct bench_stats {
	atomic_uint_fast64_t sent, delivered, acked, subscribed, connected, failed;
	atomic_bool measuring, stop;
	pthread_mutex_t lock;
	uint64_t *samples; /* publish -> delivery latency, ns */
	size_t n_samples;
	uint64_t *ack_samples; /* publish -> PUBACK latency, ns */
	size_t n_ack_samples;
};

struct bench_conn {
	struct cli_mqtt m;
	struct bench_thread *t;
	bool is_pub;
	int idx;
	uint64_t inflight;
	uint64_t *sent_at; /* QoS 1 publishers: send time by packet id */
};

struct bench_thread {
	struct bench_cfg *cfg;
	struct bench_stats *st;
	SSL_CTX *ctx;
	uv_loop_t loop;
	struct net_loop nl;
	uv_idle_t idle;
	uv_timer_t timer;
	struct bench_conn *conns;
	int n_conns, n_pubs;
	double per_pub_rate; /* msgs/s per publisher, 0 = flat out */
	uint64_t start_ns;
	uint64_t *sent_by_pub;
	uint64_t local_samples[4096], local_acks[4096];
	size_t n_local, n_local_acks;
	pthread_t tid;
};

static void flush_samples(struct bench_thread *t)
{
	struct bench_stats *st = t->st;
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < t->n_local && st->n_samples < MAX_SAMPLES; i++)
		st->samples[st->n_samples++] = t->local_samples[i];
	for (size_t i = 0; i < t->n_local_acks && st->n_ack_samples < MAX_SAMPLES; i++)
		st->ack_samples[st->n_ack_samples++] = t->local_acks[i];
	pthread_mutex_unlock(&st->lock);
	t->n_local = t->n_local_acks = 0;
}

static void on_packet(struct cli_mqtt *m, const struct mqtt_packet *pkt)
{
	struct bench_conn *bc = m->user;
	struct bench_thread *t = bc->t;
	struct bench_stats *st = t->st;
	switch (pkt->type) {
	case MQTT_CONNACK:
		if (pkt->reason) {
			atomic_fetch_add(&st->failed, 1);
			return;
		}
		atomic_fetch_add(&st->connected, 1);
		if (!bc->is_pub) {
			char filter[256];
			snprintf(filter, sizeof filter, "%s/#", t->cfg->topic);
			uint8_t list[300];
			size_t n = strlen(filter);
			list[0] = (uint8_t)(n >> 8);
			list[1] = (uint8_t)n;
			memcpy(list + 2, filter, n);
			list[2 + n] = (uint8_t)t->cfg->qos;
			struct mqtt_packet s = { .type = MQTT_SUBSCRIBE, .packet_id = 1 };
			s.payload.p = list;
			s.payload.len = (uint32_t)(n + 3);
			cli_mqtt_send(m, &s);
		}
		return;
	case MQTT_SUBACK:
		atomic_fetch_add(&st->subscribed, 1);
		return;
	case MQTT_PUBLISH: {
		if (pkt->qos == 1) {
			struct mqtt_packet a = { .type = MQTT_PUBACK, .packet_id = pkt->packet_id };
			cli_mqtt_send(m, &a);
		}
		if (!atomic_load_explicit(&st->measuring, memory_order_relaxed) || pkt->payload.len < 8)
			return;
		atomic_fetch_add_explicit(&st->delivered, 1, memory_order_relaxed);
		uint64_t sent;
		memcpy(&sent, pkt->payload.p, 8);
		t->local_samples[t->n_local++] = kz_now_mono_ns() - sent;
		if (t->n_local == sizeof t->local_samples / sizeof t->local_samples[0])
			flush_samples(t);
		return;
	}
	case MQTT_PUBACK:
		if (bc->inflight)
			bc->inflight--;
		if (bc->sent_at && pkt->reason < 0x80 &&
		    atomic_load_explicit(&st->measuring, memory_order_relaxed) && bc->sent_at[pkt->packet_id]) {
			atomic_fetch_add_explicit(&st->acked, 1, memory_order_relaxed);
			t->local_acks[t->n_local_acks++] = kz_now_mono_ns() - bc->sent_at[pkt->packet_id];
			if (t->n_local_acks == sizeof t->local_acks / sizeof t->local_acks[0])
				flush_samples(t);
		}
		return;
	default:
		return;
	}
}

static void publish_some(struct bench_thread *t, struct bench_conn *bc, uint64_t now)
{
	struct cli_mqtt *m = &bc->m;
	if (!m->is_connected || m->is_closed)
		return;
	uint8_t payload[65536];
	int size = t->cfg->size < 8 ? 8 : t->cfg->size;
	memset(payload + 8, 'x', (size_t)size - 8);
	char topic[256];
	snprintf(topic, sizeof topic, "%s/%d", t->cfg->topic, bc->idx);
	uint64_t budget = 64; /* per loop iteration: keeps every connection moving */
	if (t->per_pub_rate > 0) {
		uint64_t due = (uint64_t)((double)(now - t->start_ns) / 1e9 * t->per_pub_rate);
		uint64_t done = t->sent_by_pub[bc->idx];
		budget = due > done ? due - done : 0;
	}
	while (budget-- && m->conn && m->conn->out.len < (256u << 10) && m->conn->write_pending < (1u << 20)) {
		/* MQTT 5: the node's Receive Maximum. MQTT 3.1.1 has none; like real clients
		 * (paho and mosquitto default to 20) keep a window, here 64. */
		uint32_t window = t->cfg->window ? (uint32_t)t->cfg->window :
				  t->cfg->o.version == MQTT_V5 ? m->server_receive_max : 64;
		if (t->cfg->qos && !t->cfg->no_window && bc->inflight >= window)
			break;
		uint64_t ts = kz_now_mono_ns();
		memcpy(payload, &ts, 8);
		struct mqtt_packet p = { .type = MQTT_PUBLISH, .qos = (uint8_t)t->cfg->qos };
		p.topic = mqtt_cstr(topic);
		p.payload.p = payload;
		p.payload.len = (uint32_t)size;
		if (p.qos) {
			p.packet_id = cli_mqtt_pid(m);
			bc->inflight++;
			if (bc->sent_at)
				bc->sent_at[p.packet_id] = ts;
		}
		cli_mqtt_send(m, &p);
		t->sent_by_pub[bc->idx]++;
		atomic_fetch_add_explicit(&t->st->sent, 1, memory_order_relaxed);
	}
}

static void idle_cb(uv_idle_t *h)
{
	struct bench_thread *t = h->data;
	if (atomic_load(&t->st->stop)) {
		uv_idle_stop(h);
		for (int i = 0; i < t->n_conns; i++)
			cli_mqtt_disconnect(&t->conns[i].m);
		uv_close((uv_handle_t *)&t->idle, NULL);
		uv_close((uv_handle_t *)&t->timer, NULL);
		net_loop_close(&t->nl);
		return;
	}
	if (atomic_load(&t->st->subscribed) < (uint64_t)t->cfg->subs)
		return;
	if (!t->start_ns)
		t->start_ns = kz_now_mono_ns();
	uint64_t now = kz_now_mono_ns();
	for (int i = 0; i < t->n_conns; i++)
		if (t->conns[i].is_pub)
			publish_some(t, &t->conns[i], now);
}

static void timer_cb(uv_timer_t *h) { (void)h; /* keeps the loop polling with a timeout when rate-limited */ }

static void *thread_main(void *arg)
{
	struct bench_thread *t = arg;
	uv_run(&t->loop, UV_RUN_DEFAULT);
	flush_samples(t);
	uv_loop_close(&t->loop);
	return NULL;
}

uint64_t cli_proc_cpu_ticks(int pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (kz_file_read_small(path, buf, sizeof buf) < 0)
		return 0;
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, stt = 0;
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) == 2)
		return ut + stt;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorts v and returns its q-quantile in µs. */
static double pct(uint64_t *v, size_t n, double q)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof *v, cmp_u64);
	size_t i = (size_t)((double)n * q);
	return (double)v[i < n ? i : n - 1] / 1e3;
}

static void usage(void)
{
	printf("usage: kizuna bench mqtt [options]\n"
	       "       kizuna bench fill [--data DIR] [--records N] [--topics T]\n"
	       "       kizuna bench query [--data DIR] [--queries Q] [--topics T] [--rows W]\n"
	       "       kizuna bench policy --policy FILE --registry FILE [--checks N]\n"
	       "       kizuna bench pqc [--iterations N]\n"
	       "       kizuna bench handshake [--groups G] [--threads T] [--duration S] [--broker-pid P]\n"
	       "       kizuna bench taxii --collection ID --bundle FILE... [options] (bench/taxii.sh)\n"
	       "       kizuna bench entities [--entities N] [--updates U] (bench/entities.sh)\n"
	       "       kizuna bench adapters [--shared DIR] [--messages N] (bench/adapters.sh)\n"
	       "       kizuna bench audit [--data DIR] [--entries N] [--max-file-mb M] [--max-files F]\n"
	       "                          (bench/audit.sh)\n\n"
	       "policy times the decision point: the bitset check, the per-delivery check with its\n"
	       "cache, a cache miss and label parsing, in ns per operation.\n"
	       "fill writes N synthetic records (topics sensors/<k>/temp, 100 µs apart) into DIR/log\n"
	       "and builds the index; query times Q queries of one topic and a time window of about W\n"
	       "records (default 200 and 1000). Options of bench mqtt:\n\n"
	       "  --pubs N        publishers (default 4)\n"
	       "  --subs M        subscribers on TOPIC/# (default 4)\n"
	       "  --threads T     load-generator threads (default 2)\n"
	       "  --size B        payload bytes, at least 8 (default 100)\n"
	       "  --qos 0|1       QoS (default 0)\n"
	       "  --rate R        total publish rate in msgs/s, 0 = flat out (default 0)\n"
	       "  --window W      QoS 1 messages in flight per publisher (default: the node's Receive\n"
	       "                  Maximum in MQTT 5, 64 in 3.1.1); 'none' floods without waiting\n"
	       "  --duration S    measured seconds after a 1 s warm-up (default 10)\n"
	       "  --topic T       topic prefix (default bench)\n"
	       "  --broker-pid P  read the broker's CPU time from /proc/P/stat\n"
	       "  --sub-port P    subscribers connect to this port (another node of a cluster)\n" CLI_COMMON_HELP
	       "\nPrints: delivered msgs/s, broker CPU µs per delivered message (per acknowledged one\n"
	       "without subscribers), publish-to-delivery latency p50/p99/p99.9; with QoS 1 also\n"
	       "acknowledged msgs/s and publish-to-PUBACK latency (ack_us_p50, ack_p99).\n");
}

int cli_bench_main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "fill") || !strcmp(argv[1], "query")))
		return cli_bench_store_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "policy"))
		return cli_bench_policy_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "pqc"))
		return cli_bench_pqc_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "handshake"))
		return cli_bench_handshake_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "taxii"))
		return cli_bench_taxii_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "entities"))
		return cli_bench_entity_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "adapters"))
		return cli_bench_adapter_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "audit"))
		return cli_bench_audit_main(argc - 1, argv + 1);
	if (argc < 2 || strcmp(argv[1], "mqtt") != 0) {
		usage();
		return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
	}
	static const struct option opts[] = {
		CLI_COMMON_LONG, { "pubs", required_argument, NULL, 2001 },
		{ "subs", required_argument, NULL, 2002 }, { "threads", required_argument, NULL, 2003 },
		{ "size", required_argument, NULL, 2004 }, { "rate", required_argument, NULL, 2005 },
		{ "duration", required_argument, NULL, 2006 }, { "topic", required_argument, NULL, 2007 },
		{ "broker-pid", required_argument, NULL, 2008 }, { "window", required_argument, NULL, 2009 },
		{ "sub-port", required_argument, NULL, 2010 },
		{ "help", no_argument, NULL, 'H' }, { NULL, 0, NULL, 0 } };
	struct bench_cfg cfg = { .pubs = 4, .subs = 4, .threads = 2, .size = 100, .duration_s = 10,
				 .topic = "bench" };
	cli_opts_default(&cfg.o);
	cfg.o.keep_alive = 300;
	const char *data = NULL;
	int c, sub_port = 0;
	optind = 2;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		int r = cli_opts_parse(&cfg.o, c, optarg);
		if (r < 0) {
			fprintf(stderr, "kizuna bench: bad value '%s'\n", optarg);
			return 2;
		}
		if (r)
			continue;
		switch (c) {
		case 'd': data = optarg; break;
		case 2001: cfg.pubs = atoi(optarg); break;
		case 2002: cfg.subs = atoi(optarg); break;
		case 2003: cfg.threads = atoi(optarg); break;
		case 2004: cfg.size = atoi(optarg); break;
		case 2005: cfg.rate = atol(optarg); break;
		case 2006: cfg.duration_s = atoi(optarg); break;
		case 2007: cfg.topic = optarg; break;
		case 2008: cfg.broker_pid = atoi(optarg); break;
		case 2010:
			sub_port = atoi(optarg);
			if (sub_port <= 0 || sub_port > 65535) {
				fprintf(stderr, "kizuna bench: --sub-port wants a port\n");
				return 2;
			}
			break;
		case 2009:
			cfg.no_window = strcmp(optarg, "none") == 0;
			cfg.window = cfg.no_window ? 0 : atoi(optarg);
			if (!cfg.no_window && (cfg.window < 1 || cfg.window > 65535)) {
				fprintf(stderr, "kizuna bench: --window wants 1..65535 or 'none'\n");
				return 2;
			}
			break;
		case 'H': usage(); return 0;
		default: usage(); return 2;
		}
	}
	cfg.qos = cfg.o.qos;
	if (cfg.pubs < 1 || cfg.subs < 0 || cfg.threads < 1 || cfg.size < 8 || cfg.size > 65536 ||
	    cfg.duration_s < 1 || cfg.qos > 1) {
		fprintf(stderr, "kizuna bench: need pubs >= 1, threads >= 1, 8 <= size <= 65536, qos 0 or 1\n");
		return 2;
	}
	int orc = cli_opts_finish(&cfg.o, data, "bench");
	if (orc)
		return orc;
	cfg.so = cfg.o;
	if (sub_port)
		cfg.so.port = sub_port;
	SSL_CTX *ctx = cli_tls_ctx(&cfg.o);
	if (!ctx)
		return 1;
	struct bench_stats st;
	memset(&st, 0, sizeof st);
	pthread_mutex_init(&st.lock, NULL);
	st.samples = malloc(MAX_SAMPLES * sizeof *st.samples);
	st.ack_samples = malloc(MAX_SAMPLES * sizeof *st.ack_samples);
	struct bench_thread *th = calloc((size_t)cfg.threads, sizeof *th);
	if (!st.samples || !st.ack_samples || !th)
		return 1;
	int total = cfg.pubs + cfg.subs;
	for (int i = 0; i < cfg.threads; i++) {
		struct bench_thread *t = &th[i];
		t->cfg = &cfg;
		t->st = &st;
		t->ctx = ctx;
		uv_loop_init(&t->loop);
		net_loop_init(&t->nl, &t->loop);
		t->conns = calloc((size_t)total, sizeof *t->conns);
		t->sent_by_pub = calloc((size_t)cfg.pubs, sizeof *t->sent_by_pub);
		uv_idle_init(&t->loop, &t->idle);
		t->idle.data = t;
		uv_idle_start(&t->idle, idle_cb);
		uv_timer_init(&t->loop, &t->timer);
		uv_timer_start(&t->timer, timer_cb, 1, 1);
		t->per_pub_rate = cfg.rate > 0 ? (double)cfg.rate / cfg.pubs : 0;
	}
	for (int k = 0; k < total; k++) {
		struct bench_thread *t = &th[k % cfg.threads];
		struct bench_conn *bc = &t->conns[t->n_conns++];
		bc->t = t;
		bc->is_pub = k < cfg.pubs;
		bc->idx = bc->is_pub ? k : k - cfg.pubs;
		bc->m.on_packet = on_packet;
		bc->m.user = bc;
		if (bc->is_pub && cfg.qos && !(bc->sent_at = calloc(65536, sizeof *bc->sent_at)))
			return 1;
		if (cli_mqtt_connect(&bc->m, &t->nl, ctx, bc->is_pub ? &cfg.o : &cfg.so))
			return 1;
	}
	for (int i = 0; i < cfg.threads; i++)
		pthread_create(&th[i].tid, NULL, thread_main, &th[i]);
	/* wait for everyone to be connected and subscribed, then warm up 1 s, then measure */
	for (int w = 0; w < 300 && atomic_load(&st.subscribed) < (uint64_t)cfg.subs; w++)
		usleep(20000);
	if (atomic_load(&st.subscribed) < (uint64_t)cfg.subs || atomic_load(&st.failed)) {
		fprintf(stderr, "kizuna bench: only %llu of %d clients connected and subscribed\n",
			(unsigned long long)atomic_load(&st.connected), total);
		atomic_store(&st.stop, true);
		for (int i = 0; i < cfg.threads; i++)
			pthread_join(th[i].tid, NULL);
		return 1;
	}
	sleep(1);
	uint64_t cpu0 = cfg.broker_pid ? cli_proc_cpu_ticks(cfg.broker_pid) : 0;
	uint64_t t0 = kz_now_mono_ns();
	uint64_t sent0 = atomic_load(&st.sent);
	atomic_store(&st.measuring, true);
	sleep((unsigned)cfg.duration_s);
	atomic_store(&st.measuring, false);
	uint64_t t1 = kz_now_mono_ns();
	uint64_t cpu1 = cfg.broker_pid ? cli_proc_cpu_ticks(cfg.broker_pid) : 0;
	uint64_t sent = atomic_load(&st.sent) - sent0;
	atomic_store(&st.stop, true);
	for (int i = 0; i < cfg.threads; i++)
		pthread_join(th[i].tid, NULL);
	double secs = (double)(t1 - t0) / 1e9;
	uint64_t delivered = atomic_load(&st.delivered);
	uint64_t acked = atomic_load(&st.acked);
	double p50 = pct(st.samples, st.n_samples, 0.5), p99 = pct(st.samples, st.n_samples, 0.99),
	       p999 = pct(st.samples, st.n_samples, 0.999);
	double a50 = pct(st.ack_samples, st.n_ack_samples, 0.5), a99 = pct(st.ack_samples, st.n_ack_samples, 0.99);
	double cpu_us = 0;
	uint64_t per = delivered ? delivered : acked;
	if (cfg.broker_pid && per)
		cpu_us = (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK) * 1e6 / (double)per;
	printf("pubs=%d subs=%d qos=%d size=%d rate=%ld duration=%.1fs\n", cfg.pubs, cfg.subs,
	       cfg.qos, cfg.size, cfg.rate, secs);
	printf("published_per_s=%.0f delivered_per_s=%.0f broker_cpu_us_per_msg=%.3f "
	       "latency_us_p50=%.0f p99=%.0f p99.9=%.0f samples=%zu\n",
	       (double)sent / secs, (double)delivered / secs, cpu_us, p50, p99, p999, st.n_samples);
	if (cfg.qos)
		printf("acked_per_s=%.0f ack_us_p50=%.0f ack_p99=%.0f\n", (double)acked / secs, a50, a99);
	free(st.samples);
	free(st.ack_samples);
	for (int i = 0; i < cfg.threads; i++) {
		for (int k = 0; k < th[i].n_conns; k++)
			free(th[i].conns[k].sent_at);
		free(th[i].conns);
		free(th[i].sent_by_pub);
	}
	free(th);
	SSL_CTX_free(ctx);
	return delivered || acked ? 0 : 1;
}
