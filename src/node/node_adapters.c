/* node_adapters.c — the node's sensor adapters (docs/ADAPTERS.md). Feeds:
 *   AIS     NMEA 0183 sentences as UDP datagrams (adapter.ais.udp) or from a TCP feed the
 *           node connects to (adapter.ais.tcp);
 *   ADS-B   a dump1090-style receiver's outputs, connected to: AVR raw hex (adapter.adsb.avr,
 *           port 30002), Beast binary (adapter.adsb.beast, 30005), SBS-1 BaseStation text
 *           (adapter.adsb.sbs, 30003).
 * Each message becomes an entity update written as a record on kz/entity/<id> (mmsi:<n>,
 * icao:<hex>) with its adapter's identity and label, under the policy like any publisher's,
 * and delivered to MQTT subscribers once durable (the entity service reads it from the log).
 *
 * One thread polls every feed. A TCP feed's states:
 *
 *   IDLE --connect--> CONNECTING --writable, no error--> UP --EOF, error--> IDLE
 *     ^                   |  error, or no answer within adapter.reconnect_max_ms     |
 *     `---- backoff: 0.5 s, doubling to adapter.reconnect_max_ms <-------------------'
 *
 * Bad input is counted by reason and logged once per reason; it never stops the thread.
 * While the store has more than adapter.max_pending_bytes waiting, UDP datagrams are dropped
 * (counted) and TCP feeds are not read (TCP holds the sender back). */
#include "node/node_adapters.h"
#include "adapters/ais.h"
#include "adapters/ais_entity.h"
#include "adapters/modes.h"
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
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINE_MAX_BYTES 1024 /* an NMEA sentence is at most 82 bytes, an SBS line some 150 */

enum feed_kind { F_AIS_UDP, F_AIS_TCP, F_AVR, F_BEAST, F_SBS, F_N };
static const char *const FEED_KEYS[F_N] = { "adapter.ais.udp", "adapter.ais.tcp", "adapter.adsb.avr",
					    "adapter.adsb.beast", "adapter.adsb.sbs" };
enum feed_state { FEED_IDLE, FEED_CONNECTING, FEED_UP };
enum { A_AIS, A_ADSB, A_N };
static const char *const ADAPTER_NAMES[A_N] = { "ais", "adsb" };
enum { R_CHECKSUM, R_MALFORMED, R_TYPE, R_OVERLONG, R_POLICY, R_POSITION, R_N };
static const char *const REASON_NAMES[R_N] = { "checksum", "malformed", "type", "overlong", "policy", "position" };

struct counters {
	_Atomic uint64_t datagrams, lines, messages, decoded, updates, dropped, connects, rejected[R_N];
};

struct feed {
	enum feed_kind kind;
	char addr[256];
	int fd;
	enum feed_state st;
	uint64_t next_ms, backoff_ms;
	char line[LINE_MAX_BYTES];
	size_t len;
	bool overlong;
	struct ais_nmea nmea;
	struct modes_beast beast;
};

struct identity {
	char id[512], label[KZ_LABEL_MAX_LEN + 1];
};

struct node_adapters {
	struct mqtt_broker *b;
	char node_id[64];
	struct identity who[A_N];
	uint32_t reconnect_max_ms;
	uint64_t max_pending;
	struct feed feed[F_N];
	int wake[2];
	pthread_t thread;
	bool started;
	_Atomic bool stop;
	struct ais_vessels vessels;
	struct modes_state aircraft;
	struct kz_buf json;
	struct counters c[A_N];
	const char *reasons_seen[16]; /* a reason logged once: the decoders' reasons are static text */
	unsigned n_reasons;
};

static int adapter_of(enum feed_kind k) { return k <= F_AIS_TCP ? A_AIS : A_ADSB; }

static void reject(struct node_adapters *a, int ad, int kind, const char *why)
{
	atomic_fetch_add(&a->c[ad].rejected[kind], 1);
	for (unsigned i = 0; i < a->n_reasons; i++)
		if (a->reasons_seen[i] == why)
			return;
	if (a->n_reasons < 16)
		a->reasons_seen[a->n_reasons++] = why;
	kz_warn("adapter %s: input refused: %s (logged once; kizuna_adapter_rejected_total counts them)",
		ADAPTER_NAMES[ad], why);
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

int node_entity_write(struct mqtt_broker *b, const char *node_id, const char *identity, const char *label_text,
		      const char *id, const uint8_t *json, size_t n, const char **why)
{
	char topic[16 + 160], canon[KZ_LABEL_MAX_LEN + 1];
	snprintf(topic, sizeof topic, "kz/entity/%s", id);
	return node_record_write(b, node_id, identity, label_text, topic, "application/json", json, n, canon, why);
}

/* Each writing thread's encoding buffer, kept between records (node_record_write_end). */
static _Thread_local struct kz_buf rec;

void node_record_write_end(void)
{
	kz_buf_cleanup(&rec);
	memset(&rec, 0, sizeof rec);
}

int node_record_write(struct mqtt_broker *b, const char *node_id, const char *identity, const char *label_text,
		      const char *topic, const char *content_type, const uint8_t *payload, size_t n,
		      char canon[KZ_LABEL_MAX_LEN + 1], const char **why)
{
	const struct kz_policy *pol = atomic_load(&b->policy);
	canon[0] = 0;
	if (pol) {
		struct kz_subject s;
		kz_subject_init(pol, identity, &s);
		const struct kz_label *dl;
		const char *dt, *pw;
		if (!kz_policy_publish(pol, &s, topic, strlen(topic), &dl, &dt, &pw)) {
			*why = "the policy does not let this identity publish on this topic";
			return -1;
		}
		if (label_text && label_text[0]) {
			struct kz_label l;
			size_t cn;
			char lw[160];
			if (kz_label_parse(pol, label_text, strlen(label_text), &l, canon, &cn, lw, sizeof lw) ||
			    !kz_policy_may_label(pol, &s, &l, &pw)) {
				*why = "the label does not parse, or is above the identity";
				return -1;
			}
		} else {
			snprintf(canon, KZ_LABEL_MAX_LEN + 1, "%s", dt);
		}
	}
	struct kz_record r = { .time_ns = kz_now_wall_ns(), .qos = 1 };
	kz_uuidv7(r.id, r.time_ns / 1000000);
	r.topic = (struct kz_bytes){ (const uint8_t *)topic, (uint32_t)strlen(topic) };
	r.origin_node = (struct kz_bytes){ (const uint8_t *)node_id, (uint32_t)strlen(node_id) };
	r.origin_id = (struct kz_bytes){ (const uint8_t *)identity, (uint32_t)strlen(identity) };
	r.label = (struct kz_bytes){ (const uint8_t *)canon, (uint32_t)strlen(canon) };
	r.content_type = (struct kz_bytes){ (const uint8_t *)content_type, (uint32_t)strlen(content_type) };
	r.payload = (struct kz_bytes){ payload, (uint32_t)n };
	uint8_t *data;
	struct mqtt_msg *m;
	if (!rec.max)
		kz_buf_init(&rec, 0); /* this thread's first record */
	kz_buf_reset(&rec);
	if (kz_record_encode(&r, &rec) || !(data = malloc(rec.len))) {
		*why = "out of memory";
		return -1;
	}
	memcpy(data, kz_buf_head(&rec), rec.len);
	kz_buf_shrink(&rec, 1 << 16);
	struct kz_record dec;
	if (kz_record_decode(data, (size_t)(uint32_t)rec.len, &dec, why) || !(m = mqtt_msg_from_record(b, &dec))) {
		free(data);
		*why = "out of memory";
		return -1;
	}
	adapters_broker = b;
	struct kz_store_item it = { data, (uint32_t)rec.len, record_done, m, NULL, false };
	kz_store_submit(b->store, &it, 1);
	return 0;
}

/* The update in a->json as a record on kz/entity/<id>, if the policy lets the adapter's
 * identity publish there. */
static void write_update(struct node_adapters *a, int ad, const char *id)
{
	const char *why;
	if (node_entity_write(a->b, a->node_id, a->who[ad].id, a->who[ad].label, id, kz_buf_head(&a->json), a->json.len,
			      &why))
		reject(a, ad, R_POLICY, why);
	else
		atomic_fetch_add(&a->c[ad].updates, 1);
}

/* ---------- input ---------- */

static void ais_line(struct node_adapters *a, struct feed *f, const char *line, size_t n)
{
	struct counters *c = &a->c[A_AIS];
	atomic_fetch_add(&c->lines, 1);
	struct ais_payload p;
	struct ais_msg m;
	const char *why;
	uint64_t bad = f->nmea.bad_checksum;
	int rc = ais_nmea_line(&f->nmea, line, n, kz_now_mono_ms(), &p, &why);
	if (rc < 0) {
		reject(a, A_AIS, f->nmea.bad_checksum != bad ? R_CHECKSUM : R_MALFORMED, why);
		return;
	}
	if (rc == 0)
		return;
	atomic_fetch_add(&c->messages, 1);
	if (ais_decode(&p, &m, &why)) {
		reject(a, A_AIS, R_TYPE, why);
		return;
	}
	atomic_fetch_add(&c->decoded, 1);
	char id[32];
	kz_buf_reset(&a->json);
	if (ais_entity_update(&a->vessels, &m, f->kind == F_AIS_UDP ? "udp" : "tcp", &a->json, id) == KZ_OK)
		write_update(a, A_AIS, id);
}

static void modes_msg_in(struct node_adapters *a, const struct modes_msg *m, const char *sensor)
{
	struct counters *c = &a->c[A_ADSB];
	atomic_fetch_add(&c->decoded, 1);
	char id[16];
	kz_buf_reset(&a->json);
	int rc = modes_entity_update(&a->aircraft, m, kz_now_mono_ms(), sensor, &a->json, id);
	if (rc == KZ_EINVAL)
		reject(a, A_ADSB, R_POSITION, "a position that does not resolve near the aircraft's last one");
	else if (rc == KZ_OK)
		write_update(a, A_ADSB, id);
}

static void modes_frame_in(void *ctx, const struct modes_frame *f)
{
	struct node_adapters *a = ctx;
	atomic_fetch_add(&a->c[A_ADSB].messages, 1);
	struct modes_msg m;
	const char *why;
	if (modes_decode(f, &m, &why)) {
		reject(a, A_ADSB, strstr(why, "parity") ? R_CHECKSUM : R_TYPE, why);
		return;
	}
	modes_msg_in(a, &m, "beast");
}

static void adsb_line(struct node_adapters *a, struct feed *f, const char *line, size_t n)
{
	struct counters *c = &a->c[A_ADSB];
	atomic_fetch_add(&c->lines, 1);
	const char *why;
	struct modes_msg m;
	if (f->kind == F_AVR) {
		struct modes_frame fr;
		int rc = modes_avr_line(line, n, &fr, &why);
		if (rc < 0)
			reject(a, A_ADSB, R_MALFORMED, why);
		if (rc != 1)
			return;
		atomic_fetch_add(&c->messages, 1);
		if (modes_decode(&fr, &m, &why)) {
			reject(a, A_ADSB, strstr(why, "parity") ? R_CHECKSUM : R_TYPE, why);
			return;
		}
		modes_msg_in(a, &m, "avr");
		return;
	}
	double lat, lon; /* SBS: decoded by the receiver, positions resolved */
	int rc = modes_sbs_line(line, n, &m, &lat, &lon, &why);
	if (rc < 0)
		reject(a, A_ADSB, R_MALFORMED, why);
	if (rc != 1)
		return;
	atomic_fetch_add(&c->messages, 1);
	atomic_fetch_add(&c->decoded, 1);
	char id[16];
	kz_buf_reset(&a->json);
	if (modes_sbs_update(&a->aircraft, &m, lat, lon, kz_now_mono_ms(), "sbs", &a->json, id) == KZ_OK)
		write_update(a, A_ADSB, id);
}

static void lines_in(struct node_adapters *a, struct feed *f, const char *p, size_t n)
{
	int ad = adapter_of(f->kind);
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (ch == '\n' || (f->kind == F_AVR && ch == ';')) {
			if (f->kind == F_AVR && ch == ';' && f->len < sizeof f->line)
				f->line[f->len++] = ';';
			if (!f->overlong && f->len) {
				if (ad == A_AIS)
					ais_line(a, f, f->line, f->len);
				else
					adsb_line(a, f, f->line, f->len);
			}
			f->len = 0;
			f->overlong = false;
		} else if (f->len < sizeof f->line) {
			if (ch != '\r' || f->kind == F_AIS_UDP || f->kind == F_AIS_TCP)
				f->line[f->len++] = ch;
		} else if (!f->overlong) {
			f->overlong = true;
			reject(a, ad, R_OVERLONG, "a line longer than 1024 bytes");
		}
	}
}

static void udp_read(struct node_adapters *a, struct feed *f)
{
	static char buf[65536];
	for (int k = 0; k < 64; k++) {
		ssize_t n = recv(f->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n <= 0)
			return;
		atomic_fetch_add(&a->c[A_AIS].datagrams, 1);
		if (kz_store_pending_bytes(a->b->store) > a->max_pending) {
			atomic_fetch_add(&a->c[A_AIS].dropped, 1);
			continue;
		}
		lines_in(a, f, buf, (size_t)n);
		if (f->len) { /* a datagram's last sentence needs no newline */
			lines_in(a, f, "\n", 1);
		}
	}
}

static void tcp_close(struct node_adapters *a, struct feed *f, const char *why)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->st == FEED_UP)
		kz_warn("adapter %s: feed %s lost: %s; connecting again", ADAPTER_NAMES[adapter_of(f->kind)], f->addr, why);
	f->st = FEED_IDLE;
	f->next_ms = kz_now_mono_ms() + f->backoff_ms;
	f->backoff_ms = f->backoff_ms * 2 > a->reconnect_max_ms ? a->reconnect_max_ms : f->backoff_ms * 2;
	f->len = 0;
	f->beast = (struct modes_beast){ 0 };
}

static void tcp_connect(struct node_adapters *a, struct feed *f)
{
	char host[256], ps[16];
	int port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	if (node_config_split_addr(f->addr, host, sizeof host, &port)) {
		tcp_close(a, f, "bad address");
		return;
	}
	snprintf(ps, sizeof ps, "%d", port);
	if (getaddrinfo(host, ps, &hints, &ai) || !ai) {
		tcp_close(a, f, "the host name does not resolve");
		return;
	}
	f->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->fd < 0 || (connect(f->fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS)) {
		freeaddrinfo(ai);
		tcp_close(a, f, strerror(errno));
		return;
	}
	freeaddrinfo(ai);
	f->st = FEED_CONNECTING;
	f->next_ms = kz_now_mono_ms() + a->reconnect_max_ms; /* a connect that hangs */
}

static void tcp_read(struct node_adapters *a, struct feed *f)
{
	static char buf[16384];
	if (kz_store_pending_bytes(a->b->store) > a->max_pending)
		return; /* TCP holds the sender back while the store catches up */
	ssize_t n = recv(f->fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n == 0) {
		tcp_close(a, f, "the feed closed the connection");
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			tcp_close(a, f, strerror(errno));
		return;
	}
	f->backoff_ms = 500; /* it delivers: the next loss starts the backoff afresh */
	if (f->kind == F_BEAST) {
		uint64_t skipped = f->beast.skipped;
		modes_beast_feed(&f->beast, (const uint8_t *)buf, (size_t)n, modes_frame_in, a);
		if (f->beast.skipped != skipped)
			reject(a, A_ADSB, R_MALFORMED, "Beast: bytes outside a frame, or a frame cut short");
	} else {
		lines_in(a, f, buf, (size_t)n);
	}
}

static void *run(void *arg)
{
	struct node_adapters *a = arg;
	while (!atomic_load(&a->stop)) {
		uint64_t now = kz_now_mono_ms();
		struct pollfd pf[1 + F_N];
		struct feed *of[1 + F_N];
		int np = 0;
		pf[np] = (struct pollfd){ a->wake[0], POLLIN, 0 };
		of[np++] = NULL;
		for (int i = 0; i < F_N; i++) {
			struct feed *f = &a->feed[i];
			if (!f->addr[0])
				continue;
			if (f->kind != F_AIS_UDP) {
				if (f->st == FEED_IDLE && now >= f->next_ms)
					tcp_connect(a, f);
				else if (f->st == FEED_CONNECTING && now >= f->next_ms)
					tcp_close(a, f, "connect timed out");
			}
			if (f->fd < 0)
				continue;
			pf[np] = (struct pollfd){ f->fd, f->st == FEED_CONNECTING ? POLLOUT : POLLIN, 0 };
			of[np++] = f;
		}
		if (poll(pf, (nfds_t)np, 200) < 0 && errno != EINTR)
			break;
		for (int i = 1; i < np; i++) {
			struct feed *f = of[i];
			if (!pf[i].revents || f->fd < 0)
				continue;
			if (f->kind == F_AIS_UDP) {
				udp_read(a, f);
			} else if (f->st == FEED_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof err;
				getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err) {
					tcp_close(a, f, strerror(err));
				} else {
					f->st = FEED_UP;
					atomic_fetch_add(&a->c[adapter_of(f->kind)].connects, 1);
					kz_info("adapter %s: connected to the feed %s (%s)", ADAPTER_NAMES[adapter_of(f->kind)],
						f->addr, FEED_KEYS[f->kind]);
				}
			} else {
				tcp_read(a, f);
			}
		}
	}
	node_record_write_end();
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
	int one = 1, rcvbuf = 4 << 20; /* bursts of a busy receiver: the kernel may cap it lower */
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	}
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

static void identity_of(struct identity *w, const struct node_config *cfg, const char *given, const char *label,
			const char *name)
{
	if (given[0])
		snprintf(w->id, sizeof w->id, "%s", given);
	else
		snprintf(w->id, sizeof w->id, "spiffe://%s/%s/service/%s-adapter", cfg->trust_domain, cfg->org, name);
	snprintf(w->label, sizeof w->label, "%s", label);
}

int node_adapters_open(struct mqtt_broker *b, const struct node_config *cfg, struct node_adapters **out, char *why,
		       size_t why_len)
{
	*out = NULL;
	const char *addrs[F_N] = { cfg->adapter_ais_udp, cfg->adapter_ais_tcp, cfg->adapter_adsb_avr,
				   cfg->adapter_adsb_beast, cfg->adapter_adsb_sbs };
	bool any = false;
	for (int i = 0; i < F_N; i++)
		any |= addrs[i][0] != 0;
	if (!any)
		return 0;
	struct node_adapters *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	a->b = b;
	adapters_broker = b;
	a->wake[0] = a->wake[1] = -1;
	identity_of(&a->who[A_AIS], cfg, cfg->adapter_ais_identity, cfg->adapter_ais_label, "ais");
	identity_of(&a->who[A_ADSB], cfg, cfg->adapter_adsb_identity, cfg->adapter_adsb_label, "adsb");
	snprintf(a->node_id, sizeof a->node_id, "%s", cfg->node_id);
	a->reconnect_max_ms = cfg->adapter_reconnect_max_ms;
	a->max_pending = cfg->adapter_max_pending_bytes;
	for (int i = 0; i < F_N; i++) {
		struct feed *f = &a->feed[i];
		f->kind = (enum feed_kind)i;
		f->fd = -1;
		f->backoff_ms = 500;
		snprintf(f->addr, sizeof f->addr, "%s", addrs[i]);
		ais_nmea_init(&f->nmea, cfg->adapter_ais_reassembly_ms);
	}
	double rlat = 0, rlon = 0;
	bool has_ref = cfg->adapter_adsb_reference[0] &&
		       sscanf(cfg->adapter_adsb_reference, "%lf,%lf", &rlat, &rlon) == 2 && rlat >= -90 && rlat <= 90 &&
		       rlon >= -180 && rlon <= 180;
	if (cfg->adapter_adsb_reference[0] && !has_ref) {
		snprintf(why, why_len, "adapter.adsb.reference: LAT,LON in degrees, not '%s'", cfg->adapter_adsb_reference);
		node_adapters_close(a);
		return -1;
	}
	kz_buf_init(&a->json, 0);
	if (ais_vessels_init(&a->vessels, cfg->adapter_ais_max_vessels) ||
	    modes_state_init(&a->aircraft, cfg->adapter_adsb_max_aircraft, has_ref, rlat, rlon) ||
	    pipe2(a->wake, O_CLOEXEC | O_NONBLOCK)) {
		snprintf(why, why_len, "out of memory");
		node_adapters_close(a);
		return -1;
	}
	if (a->feed[F_AIS_UDP].addr[0] && (a->feed[F_AIS_UDP].fd = udp_open(a->feed[F_AIS_UDP].addr, why, why_len)) < 0) {
		node_adapters_close(a);
		return -1;
	}
	if (pthread_create(&a->thread, NULL, run, a)) {
		snprintf(why, why_len, "cannot start the adapters' thread");
		node_adapters_close(a);
		return -1;
	}
	a->started = true;
	for (int i = 0; i < F_N; i++)
		if (a->feed[i].addr[0])
			kz_info("adapter %s: %s = %s, records as %s", ADAPTER_NAMES[adapter_of((enum feed_kind)i)],
				FEED_KEYS[i], a->feed[i].addr, a->who[adapter_of((enum feed_kind)i)].id);
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
	for (int i = 0; i < F_N; i++)
		if (a->feed[i].fd >= 0)
			close(a->feed[i].fd);
	if (a->wake[0] >= 0)
		close(a->wake[0]);
	if (a->wake[1] >= 0)
		close(a->wake[1]);
	ais_vessels_free(&a->vessels);
	modes_state_free(&a->aircraft);
	kz_buf_cleanup(&a->json);
	free(a);
}

static void metric(struct kz_buf *b, const char *name, const char *help, const uint64_t *v, const char *unit)
{
	char t[512];
	int n = snprintf(t, sizeof t, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	(void)kz_buf_append(b, t, (size_t)n);
	for (int ad = 0; ad < A_N; ad++) {
		n = unit ? snprintf(t, sizeof t, "%s{adapter=\"%s\",unit=\"%s\"} %llu\n", name, ADAPTER_NAMES[ad], unit,
				    (unsigned long long)v[ad])
			 : snprintf(t, sizeof t, "%s{adapter=\"%s\"} %llu\n", name, ADAPTER_NAMES[ad],
				    (unsigned long long)v[ad]);
		(void)kz_buf_append(b, t, (size_t)n);
	}
}

void node_adapters_metrics(struct node_adapters *a, struct kz_buf *b)
{
	if (!a)
		return;
	uint64_t v[A_N];
#define M(field, name, help, unit)                                  \
	do {                                                        \
		for (int ad = 0; ad < A_N; ad++)                    \
			v[ad] = atomic_load(&a->c[ad].field);       \
		metric(b, name, help, v, unit);                     \
	} while (0)
	M(lines, "kizuna_adapter_lines_total", "Lines read (NMEA, AVR, SBS; docs/ADAPTERS.md).", NULL);
	M(datagrams, "kizuna_adapter_datagrams_total", "UDP datagrams read.", NULL);
	M(messages, "kizuna_adapter_messages_total", "Messages received whole (AIS reassembled, Mode S frames).", NULL);
	M(decoded, "kizuna_adapter_decoded_total", "Messages decoded.", NULL);
	M(updates, "kizuna_adapter_entity_updates_total", "Entity updates written as records.", NULL);
	M(dropped, "kizuna_adapter_dropped_total", "UDP datagrams dropped while the store was behind.", NULL);
	M(connects, "kizuna_adapter_feed_connects_total", "Connections made to TCP feeds.", NULL);
#undef M
	char t[256];
	int n = snprintf(t, sizeof t, "# HELP kizuna_adapter_rejected_total Input refused, by reason.\n"
				      "# TYPE kizuna_adapter_rejected_total counter\n");
	(void)kz_buf_append(b, t, (size_t)n);
	for (int ad = 0; ad < A_N; ad++)
		for (int i = 0; i < R_N; i++) {
			n = snprintf(t, sizeof t, "kizuna_adapter_rejected_total{adapter=\"%s\",reason=\"%s\"} %llu\n",
				     ADAPTER_NAMES[ad], REASON_NAMES[i], (unsigned long long)atomic_load(&a->c[ad].rejected[i]));
			(void)kz_buf_append(b, t, (size_t)n);
		}
}
