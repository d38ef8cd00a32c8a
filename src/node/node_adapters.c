/* node_adapters.c — the node's sensor adapters (docs/ADAPTERS.md): AIS from UDP datagrams
 * (adapter.ais.udp) and from a TCP feed the node connects to (adapter.ais.tcp), each
 * sentence decoded into an entity update written as a record on kz/entity/mmsi:<n> with the
 * adapter's identity and label, under the policy like any publisher's, then delivered to
 * MQTT subscribers once durable (the entity service reads it from the log).
 *
 * One thread per node polls the adapters' sockets. The TCP feed's states:
 *
 *   IDLE --connect--> CONNECTING --writable, no error--> UP --EOF, error--> IDLE
 *     ^                   |  error or adapter.reconnect_max_ms                      |
 *     `---- backoff: 0.5 s, doubling to adapter.reconnect_max_ms <-------------------'
 *
 * Bad input is counted by reason and logged once per reason; it never stops the thread.
 * While the store has more than adapter.max_pending_bytes waiting, UDP datagrams are dropped
 * (counted) and the TCP feed is not read (TCP holds it back). */
#include "node/node_adapters.h"
#include "adapters/ais.h"
#include "adapters/ais_entity.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "mqtt/mqtt_msg.h"
#include "node/node_config.h"
#include "store/store.h"
#include "trust/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINE_MAX_BYTES 1024 /* an NMEA sentence is at most 82; a tag block and metadata add some */

enum feed_state { FEED_IDLE, FEED_CONNECTING, FEED_UP };

struct node_adapters {
	struct mqtt_broker *b;
	char identity[512], label_text[KZ_LABEL_MAX_LEN + 1], node_id[64];
	char udp_addr[256], tcp_addr[256];
	uint32_t reconnect_max_ms;
	uint64_t max_pending;
	int udp_fd, tcp_fd, wake[2];
	enum feed_state tcp_state;
	uint64_t tcp_next_ms, tcp_backoff_ms;
	char tcp_line[LINE_MAX_BYTES];
	size_t tcp_len;
	bool tcp_overlong;
	pthread_t thread;
	bool started;
	_Atomic bool stop;
	struct ais_nmea nmea_udp, nmea_tcp;
	struct ais_vessels vessels;
	struct kz_buf json, rec;
	/* counters (read by /metrics from another thread: atomics) */
	_Atomic uint64_t datagrams, lines, messages, decoded, updates, refused_policy, dropped_pending,
		connects, rejected[8];
	const char *reasons_seen[8]; /* a reason logged once: the decoders' reasons are static text */
	unsigned n_reasons;
};

enum { R_CHECKSUM, R_MALFORMED, R_TYPE, R_OVERLONG, R_POLICY, R_OTHER, R_N };
static const char *const REASON_NAMES[R_N] = { "checksum", "malformed", "type", "overlong", "policy", "other" };

static void reject(struct node_adapters *a, int kind, const char *why)
{
	atomic_fetch_add(&a->rejected[kind], 1);
	for (unsigned i = 0; i < a->n_reasons; i++)
		if (a->reasons_seen[i] == why)
			return;
	if (a->n_reasons < 8)
		a->reasons_seen[a->n_reasons++] = why;
	kz_warn("adapter ais: input refused: %s (logged once; kizuna_adapter_rejected_total counts them)", why);
}

/* ---------- records ---------- */

static struct mqtt_broker *adapters_broker; /* set before the thread starts, for the store's callbacks */

static void record_done(void *ctx, int status, uint64_t seq)
{
	struct mqtt_msg *m = ctx;
	if (status == KZ_OK) {
		atomic_store_explicit(&m->seq, seq, memory_order_release);
		(void)mqtt_broker_inject(adapters_broker, 0, m);
	}
	mqtt_msg_unref(m);
}

/* The update in a->json as a record on kz/entity/<id>, if the policy lets the adapter
 * publish there. */
static void write_update(struct node_adapters *a, const char *id)
{
	char topic[64];
	snprintf(topic, sizeof topic, "kz/entity/%s", id);
	const struct kz_policy *pol = atomic_load(&a->b->policy);
	char canon[KZ_LABEL_MAX_LEN + 1] = "";
	if (pol) {
		struct kz_subject s;
		kz_subject_init(pol, a->identity, &s);
		const struct kz_label *dl;
		const char *dt, *why;
		if (!kz_policy_publish(pol, &s, topic, strlen(topic), &dl, &dt, &why)) {
			reject(a, R_POLICY, "the policy does not let adapter.ais.identity publish on kz/entity/");
			return;
		}
		if (a->label_text[0]) {
			struct kz_label l;
			size_t cn;
			char lw[160];
			if (kz_label_parse(pol, a->label_text, strlen(a->label_text), &l, canon, &cn, lw, sizeof lw) ||
			    !kz_policy_may_label(pol, &s, &l, &why)) {
				reject(a, R_POLICY, "adapter.ais.label does not parse, or is above the adapter's identity");
				return;
			}
		} else {
			snprintf(canon, sizeof canon, "%s", dt);
		}
	}
	struct kz_record r = { .time_ns = kz_now_wall_ns(), .qos = 1 };
	kz_uuidv7(r.id, r.time_ns / 1000000);
	r.topic = (struct kz_bytes){ (const uint8_t *)topic, (uint32_t)strlen(topic) };
	r.origin_node = (struct kz_bytes){ (const uint8_t *)a->node_id, (uint32_t)strlen(a->node_id) };
	r.origin_id = (struct kz_bytes){ (const uint8_t *)a->identity, (uint32_t)strlen(a->identity) };
	r.label = (struct kz_bytes){ (const uint8_t *)canon, (uint32_t)strlen(canon) };
	r.content_type = (struct kz_bytes){ (const uint8_t *)"application/json", 16 };
	r.payload = (struct kz_bytes){ kz_buf_head(&a->json), (uint32_t)a->json.len };
	kz_buf_reset(&a->rec);
	uint8_t *data;
	struct mqtt_msg *m;
	if (kz_record_encode(&r, &a->rec) || !(data = malloc(a->rec.len)))
		return;
	memcpy(data, kz_buf_head(&a->rec), a->rec.len);
	struct kz_record dec;
	const char *why;
	if (kz_record_decode(data, a->rec.len, &dec, &why) || !(m = mqtt_msg_from_record(&dec))) {
		free(data);
		return;
	}
	struct kz_store_item it = { data, (uint32_t)a->rec.len, record_done, m, NULL };
	kz_store_submit(a->b->store, &it, 1);
	atomic_fetch_add(&a->updates, 1);
}

/* ---------- input ---------- */

static void line_in(struct node_adapters *a, struct ais_nmea *nm, const char *line, size_t n, const char *sensor)
{
	atomic_fetch_add(&a->lines, 1);
	struct ais_payload p;
	struct ais_msg m;
	const char *why;
	uint64_t bad = nm->bad_checksum;
	int rc = ais_nmea_line(nm, line, n, kz_now_mono_ms(), &p, &why);
	if (rc < 0) {
		reject(a, nm->bad_checksum != bad ? R_CHECKSUM : R_MALFORMED, why);
		return;
	}
	if (rc == 0)
		return;
	atomic_fetch_add(&a->messages, 1);
	if (ais_decode(&p, &m, &why)) {
		reject(a, R_TYPE, why);
		return;
	}
	atomic_fetch_add(&a->decoded, 1);
	char id[32];
	kz_buf_reset(&a->json);
	if (ais_entity_update(&a->vessels, &m, sensor, &a->json, id) == KZ_OK)
		write_update(a, id);
}

static void udp_read(struct node_adapters *a)
{
	char buf[65536];
	for (int k = 0; k < 64; k++) {
		ssize_t n = recv(a->udp_fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n <= 0)
			return;
		atomic_fetch_add(&a->datagrams, 1);
		if (kz_store_pending_bytes(a->b->store) > a->max_pending) {
			atomic_fetch_add(&a->dropped_pending, 1);
			continue;
		}
		for (char *p = buf, *end = buf + n; p < end;) { /* one datagram may hold several sentences */
			char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
			if (len > LINE_MAX_BYTES)
				reject(a, R_OVERLONG, "a line longer than 1024 bytes");
			else if (len)
				line_in(a, &a->nmea_udp, p, len, "udp");
			p += len + (nl != NULL);
		}
	}
}

static void tcp_close(struct node_adapters *a, const char *why)
{
	if (a->tcp_fd >= 0)
		close(a->tcp_fd);
	a->tcp_fd = -1;
	if (a->tcp_state == FEED_UP)
		kz_warn("adapter ais: feed %s lost: %s; connecting again", a->tcp_addr, why);
	a->tcp_state = FEED_IDLE;
	a->tcp_next_ms = kz_now_mono_ms() + a->tcp_backoff_ms;
	a->tcp_backoff_ms = a->tcp_backoff_ms * 2 > a->reconnect_max_ms ? a->reconnect_max_ms : a->tcp_backoff_ms * 2;
	a->tcp_len = 0;
}

static void tcp_connect(struct node_adapters *a)
{
	char host[256];
	int port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char ps[16];
	if (node_config_split_addr(a->tcp_addr, host, sizeof host, &port)) {
		tcp_close(a, "bad address");
		return;
	}
	snprintf(ps, sizeof ps, "%d", port);
	if (getaddrinfo(host, ps, &hints, &ai) || !ai) {
		tcp_close(a, "the host name does not resolve");
		return;
	}
	a->tcp_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->tcp_fd < 0 || (connect(a->tcp_fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS)) {
		freeaddrinfo(ai);
		tcp_close(a, strerror(errno));
		return;
	}
	freeaddrinfo(ai);
	a->tcp_state = FEED_CONNECTING;
	a->tcp_next_ms = kz_now_mono_ms() + a->reconnect_max_ms; /* a connect that hangs */
}

static void tcp_read(struct node_adapters *a)
{
	char buf[16384];
	if (kz_store_pending_bytes(a->b->store) > a->max_pending)
		return; /* TCP holds the sender back while the store catches up */
	ssize_t n = recv(a->tcp_fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n == 0) {
		tcp_close(a, "the feed closed the connection");
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			tcp_close(a, strerror(errno));
		return;
	}
	a->tcp_backoff_ms = 500; /* it delivers: the next loss starts the backoff afresh */
	for (ssize_t i = 0; i < n; i++) {
		char c = buf[i];
		if (c == '\n') {
			if (!a->tcp_overlong && a->tcp_len)
				line_in(a, &a->nmea_tcp, a->tcp_line, a->tcp_len, "tcp");
			a->tcp_len = 0;
			a->tcp_overlong = false;
		} else if (a->tcp_len < sizeof a->tcp_line) {
			a->tcp_line[a->tcp_len++] = c;
		} else if (!a->tcp_overlong) {
			a->tcp_overlong = true;
			reject(a, R_OVERLONG, "a line longer than 1024 bytes");
		}
	}
}

static void *run(void *arg)
{
	struct node_adapters *a = arg;
	while (!atomic_load(&a->stop)) {
		uint64_t now = kz_now_mono_ms();
		if (a->tcp_addr[0] && a->tcp_state == FEED_IDLE && now >= a->tcp_next_ms)
			tcp_connect(a);
		else if (a->tcp_state == FEED_CONNECTING && now >= a->tcp_next_ms)
			tcp_close(a, "connect timed out");
		struct pollfd pf[3] = { { a->wake[0], POLLIN, 0 }, { a->udp_fd, POLLIN, 0 },
					{ a->tcp_fd, a->tcp_state == FEED_CONNECTING ? POLLOUT : POLLIN, 0 } };
		int timeout = 200;
		if (poll(pf, 3, timeout) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN)
			udp_read(a);
		if (a->tcp_fd >= 0 && pf[2].revents) {
			if (a->tcp_state == FEED_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof err;
				getsockopt(a->tcp_fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err)
					tcp_close(a, strerror(err));
				else {
					a->tcp_state = FEED_UP;
					atomic_fetch_add(&a->connects, 1);
					kz_info("adapter ais: connected to the feed %s", a->tcp_addr);
				}
			} else {
				tcp_read(a);
			}
		}
	}
	return NULL;
}

static int udp_open(const char *addr, char *why, size_t why_len)
{
	char host[256], ps[16];
	int port;
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
	if (node_config_split_addr(addr, host, sizeof host, &port)) {
		snprintf(why, why_len, "adapter.ais.udp: expected host:port, not '%s'", addr);
		return -1;
	}
	snprintf(ps, sizeof ps, "%d", port);
	if (getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai) || !ai) {
		snprintf(why, why_len, "adapter.ais.udp: %s does not resolve", host);
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen)) {
		snprintf(why, why_len, "adapter.ais.udp %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

int node_adapters_open(struct mqtt_broker *b, const struct node_config *cfg, struct node_adapters **out, char *why,
		       size_t why_len)
{
	*out = NULL;
	if (!cfg->adapter_ais_udp[0] && !cfg->adapter_ais_tcp[0])
		return 0; /* no adapter configured */
	struct node_adapters *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	a->b = b;
	adapters_broker = b;
	a->udp_fd = a->tcp_fd = -1;
	a->wake[0] = a->wake[1] = -1;
	if (cfg->adapter_ais_identity[0])
		snprintf(a->identity, sizeof a->identity, "%s", cfg->adapter_ais_identity);
	else
		snprintf(a->identity, sizeof a->identity, "spiffe://%s/%s/service/ais-adapter", cfg->trust_domain, cfg->org);
	snprintf(a->label_text, sizeof a->label_text, "%s", cfg->adapter_ais_label);
	snprintf(a->node_id, sizeof a->node_id, "%s", cfg->node_id);
	snprintf(a->udp_addr, sizeof a->udp_addr, "%s", cfg->adapter_ais_udp);
	snprintf(a->tcp_addr, sizeof a->tcp_addr, "%s", cfg->adapter_ais_tcp);
	a->reconnect_max_ms = cfg->adapter_reconnect_max_ms;
	a->max_pending = cfg->adapter_max_pending_bytes;
	a->tcp_backoff_ms = 500;
	ais_nmea_init(&a->nmea_udp, cfg->adapter_ais_reassembly_ms);
	ais_nmea_init(&a->nmea_tcp, cfg->adapter_ais_reassembly_ms);
	kz_buf_init(&a->json, 0);
	kz_buf_init(&a->rec, 0);
	if (ais_vessels_init(&a->vessels, cfg->adapter_ais_max_vessels) || pipe2(a->wake, O_CLOEXEC | O_NONBLOCK)) {
		snprintf(why, why_len, "out of memory");
		node_adapters_close(a);
		return -1;
	}
	if (a->udp_addr[0] && (a->udp_fd = udp_open(a->udp_addr, why, why_len)) < 0) {
		node_adapters_close(a);
		return -1;
	}
	if (pthread_create(&a->thread, NULL, run, a)) {
		snprintf(why, why_len, "cannot start the adapters' thread");
		node_adapters_close(a);
		return -1;
	}
	a->started = true;
	kz_info("adapter ais:%s%s%s%s as %s", a->udp_addr[0] ? " UDP on " : "", a->udp_addr,
		a->tcp_addr[0] ? ", feed " : "", a->tcp_addr, a->identity);
	*out = a;
	return 0;
}

void node_adapters_close(struct node_adapters *a)
{
	if (!a)
		return;
	if (a->started) {
		atomic_store(&a->stop, true);
		(void)!write(a->wake[1], "x", 1);
		pthread_join(a->thread, NULL);
	}
	if (a->udp_fd >= 0)
		close(a->udp_fd);
	if (a->tcp_fd >= 0)
		close(a->tcp_fd);
	if (a->wake[0] >= 0)
		close(a->wake[0]);
	if (a->wake[1] >= 0)
		close(a->wake[1]);
	ais_vessels_free(&a->vessels);
	kz_buf_cleanup(&a->json);
	kz_buf_cleanup(&a->rec);
	free(a);
}

void node_adapters_metrics(struct node_adapters *a, struct kz_buf *b)
{
	if (!a)
		return;
	char t[4096];
	int n = snprintf(t, sizeof t,
			 "# HELP kizuna_adapter_input_total What the AIS adapter read (docs/ADAPTERS.md).\n"
			 "# TYPE kizuna_adapter_input_total counter\n"
			 "kizuna_adapter_input_total{adapter=\"ais\",unit=\"datagram\"} %llu\n"
			 "kizuna_adapter_input_total{adapter=\"ais\",unit=\"line\"} %llu\n"
			 "kizuna_adapter_input_total{adapter=\"ais\",unit=\"message\"} %llu\n"
			 "# HELP kizuna_adapter_decoded_total Messages decoded.\n"
			 "# TYPE kizuna_adapter_decoded_total counter\n"
			 "kizuna_adapter_decoded_total{adapter=\"ais\"} %llu\n"
			 "# HELP kizuna_adapter_entity_updates_total Entity updates written as records.\n"
			 "# TYPE kizuna_adapter_entity_updates_total counter\n"
			 "kizuna_adapter_entity_updates_total{adapter=\"ais\"} %llu\n"
			 "# HELP kizuna_adapter_dropped_total UDP datagrams dropped while the store was behind.\n"
			 "# TYPE kizuna_adapter_dropped_total counter\n"
			 "kizuna_adapter_dropped_total{adapter=\"ais\"} %llu\n"
			 "# HELP kizuna_adapter_feed_connects_total Connections made to the TCP feed.\n"
			 "# TYPE kizuna_adapter_feed_connects_total counter\n"
			 "kizuna_adapter_feed_connects_total{adapter=\"ais\"} %llu\n"
			 "# HELP kizuna_adapter_rejected_total Input refused, by reason.\n"
			 "# TYPE kizuna_adapter_rejected_total counter\n",
			 (unsigned long long)atomic_load(&a->datagrams), (unsigned long long)atomic_load(&a->lines),
			 (unsigned long long)atomic_load(&a->messages), (unsigned long long)atomic_load(&a->decoded),
			 (unsigned long long)atomic_load(&a->updates), (unsigned long long)atomic_load(&a->dropped_pending),
			 (unsigned long long)atomic_load(&a->connects));
	if (n > 0 && (size_t)n < sizeof t)
		(void)kz_buf_append(b, t, (size_t)n);
	for (int i = 0; i < R_N; i++) {
		n = snprintf(t, sizeof t, "kizuna_adapter_rejected_total{adapter=\"ais\",reason=\"%s\"} %llu\n",
			     REASON_NAMES[i], (unsigned long long)atomic_load(&a->rejected[i]));
		(void)kz_buf_append(b, t, (size_t)n);
	}
}
