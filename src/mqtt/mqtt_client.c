/* mqtt_client.c — one MQTT connection: framing, the per-packet handlers and the outbound
 * encoders. Handlers follow MQTT 5.0 (OASIS Standard, 2019) and 3.1.1 (2014); section
 * numbers in comments refer to 5.0 unless marked. */
#include "mqtt/mqtt_internal.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "base/kz_utf8.h"
#include "trust/audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A log line about one connection, prefixed with its number, identity and client id. */
static void clog_(enum kz_log_level lvl, const struct mqtt_client *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void clog_(enum kz_log_level lvl, const struct mqtt_client *c, const char *fmt, ...)
{
	if (!KZ_LOG_ENABLED(lvl))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	kz_log(lvl, "conn %llu %s client '%s': %s", (unsigned long long)c->conn_id, c->peer_id,
	       c->session ? c->session->client_id : "-", msg);
}
#define CLOG(lvl, c, ...) clog_(lvl, c, __VA_ARGS__)

struct mqtt_client *mqtt_client_new(struct mqtt_shard *s, const struct mqtt_transport_ops *ops,
				    void *transport, struct kz_buf *out, char *peer_id,
				    const char *addr)
{
	struct mqtt_client *c = calloc(1, sizeof *c);
	if (!c) {
		free(peer_id);
		return NULL;
	}
	c->broker = s->broker;
	c->ops = ops;
	c->transport = transport;
	c->out = out;
	c->peer_id = peer_id;
	snprintf(c->addr, sizeof c->addr, "%s", addr ? addr : "?");
	c->conn_id = atomic_fetch_add(&s->broker->next_conn_id, 1) + 1;
	c->accepted_ms = c->last_rx_ms = s->now_ms;
	c->version = MQTT_V5; /* until CONNECT says otherwise */
	c->peer_receive_max = 65535;
	c->request_problem_info = true;
	kz_buf_init(&c->in, s->broker->lim.max_packet_size + 5);
	mqtt_shard_client_link(s, c);
	atomic_fetch_add(&s->broker->n_connections, 1);
	return c;
}

static void aliases_free(char **a, unsigned n)
{
	if (!a)
		return;
	for (unsigned i = 0; i <= n; i++)
		free(a[i]);
	free(a);
}

/* Every byte queued for the connection counts: the MQTT packets not yet encrypted, and below
 * them the TLS records and the writes the kernel has not taken (a peer that does not read
 * leaves them there). */
size_t mqtt_client_output(const struct mqtt_client *c)
{
	return c->out->len + (c->ops->pending ? c->ops->pending(c->transport) : 0);
}

bool mqtt_client_can_send(const struct mqtt_client *c)
{
	return mqtt_client_output(c) < c->shard->broker->lim.max_out_buffer;
}

static void send_packet(struct mqtt_client *c, const struct mqtt_packet *pkt)
{
	if (!c->shard || (c->state == MQTT_CLIENT_CLOSING && pkt->type != MQTT_DISCONNECT))
		return;
	size_t before = c->out->len;
	if (mqtt_encode(pkt, c->version, c->out)) {
		CLOG(KZ_LOG_WARN, c, "cannot encode %s: output buffer full", mqtt_type_name(pkt->type));
		return;
	}
	atomic_fetch_add_explicit(&c->shard->stats.bytes_out, c->out->len - before,
				  memory_order_relaxed);
	c->ops->want_flush(c->transport);
}

static void set_reason_string(struct mqtt_client *c, struct mqtt_packet *pkt, const char *why,
			      bool always)
{
	/* §3.1.2.11.7: with Request Problem Information 0 only CONNACK, PUBLISH and
	 * DISCONNECT may carry a Reason String. */
	if (!why || c->version != MQTT_V5 || (!always && !c->request_problem_info))
		return;
	pkt->props.has |= MQTT_HAS(MQTT_PROP_REASON_STRING);
	pkt->props.reason_string = mqtt_cstr(why);
}

void mqtt_client_send_ack(struct mqtt_client *c, enum mqtt_type type, uint16_t pid,
			  uint8_t reason, const char *why)
{
	struct mqtt_packet pkt = { .type = type, .packet_id = pid, .reason = reason };
	set_reason_string(c, &pkt, why, false);
	send_packet(c, &pkt);
}

void mqtt_client_disconnect(struct mqtt_client *c, uint8_t rc, const char *why)
{
	if (c->state == MQTT_CLIENT_CLOSING)
		return;
	CLOG(rc >= 0x80 && rc != MQTT_RC_SHUTTING_DOWN ? KZ_LOG_WARN : KZ_LOG_INFO, c,
	     "disconnecting: 0x%02X %s: %s", rc, mqtt_rc_name(rc), why ? why : "");
	if (c->version == MQTT_V5 && c->state == MQTT_CLIENT_CONNECTED) {
		struct mqtt_packet pkt = { .type = MQTT_DISCONNECT, .reason = rc };
		set_reason_string(c, &pkt, why, true);
		c->state = MQTT_CLIENT_CLOSING;
		send_packet(c, &pkt);
	}
	c->state = MQTT_CLIENT_CLOSING;
	c->ops->close(c->transport);
}

/* CONNACK refusal (§3.2.2.2), or the 3.1.1 return code, then close. */
static void refuse(struct mqtt_client *c, uint8_t rc5, uint8_t rc311, const char *why)
{
	CLOG(KZ_LOG_WARN, c, "CONNECT refused: 0x%02X %s: %s", rc5, mqtt_rc_name(rc5), why);
	const struct kz_policy *pol = mqtt_policy(c->shard->broker);
	kz_audit(&(struct kz_audit_entry){ .subject = c->peer_id,
					  .serial = c->cert_serial, .tls_group = c->tls_group, .issuer = c->cert_issuer, .tls = c->tls_suite, .addr = c->addr, .action = "connect", .resource = c->addr,
					  .allow = false, .reason = why, .policy = pol ? pol->version : NULL });
	struct mqtt_packet pkt = { .type = MQTT_CONNACK, .reason = c->version == MQTT_V5 ? rc5 : rc311 };
	set_reason_string(c, &pkt, why, true);
	if (c->version == MQTT_V5 || rc311 != 0xFF)
		send_packet(c, &pkt);
	c->state = MQTT_CLIENT_CLOSING;
	c->ops->close(c->transport);
}

bool mqtt_client_send_publish(struct mqtt_client *c, const struct mqtt_delivery *d, bool dup)
{
	const struct mqtt_msg *m = d->msg;
	struct mqtt_packet pkt = { .type = MQTT_PUBLISH, .qos = d->qos, .dup = dup,
				   .retain = d->retain, .packet_id = d->packet_id };
	pkt.topic.p = m->topic;
	pkt.topic.len = m->topic_len;
	pkt.payload.p = m->payload;
	pkt.payload.len = m->payload_len;
	if (c->version == MQTT_V5) {
		uint32_t remaining;
		if (mqtt_msg_expired(m, c->shard->now_ms, &remaining))
			return false;
		if (m->has_expiry) { /* §3.3.2.3.3: forward the remaining lifetime */
			pkt.props.has |= MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY);
			pkt.props.message_expiry = remaining;
		}
		if (d->sub_id) {
			pkt.props.has |= MQTT_HAS(MQTT_PROP_SUBSCRIPTION_ID);
			pkt.props.sub_ids[0] = d->sub_id;
			pkt.props.n_sub_ids = 1;
		}
		pkt.props.extra.p = m->props;
		pkt.props.extra.len = m->props_len;
		if (c->out_alias && !dup) {
			/* Outbound topic aliases (§3.3.2.3.4): reuse one when the topic has one,
			 * else take the next slot, round robin. */
			uint16_t hit = 0;
			for (uint16_t i = 1; i <= c->peer_alias_max; i++) {
				char *t = c->out_alias[i];
				if (t && strlen(t) == m->topic_len && memcmp(t, m->topic, m->topic_len) == 0) {
					hit = i;
					break;
				}
			}
			if (hit) {
				pkt.topic.len = 0;
			} else {
				hit = c->out_alias_next;
				c->out_alias_next = (uint16_t)(c->out_alias_next % c->peer_alias_max + 1);
				free(c->out_alias[hit]);
				c->out_alias[hit] = strndup((const char *)m->topic, m->topic_len);
			}
			pkt.props.has |= MQTT_HAS(MQTT_PROP_TOPIC_ALIAS);
			pkt.props.topic_alias = hit;
		}
	}
	if (c->peer_max_packet && mqtt_encoded_size(&pkt, c->version) > c->peer_max_packet) {
		/* §3.1.2.11.4: do not send; behave as if it was sent */
		CLOG(KZ_LOG_DEBUG, c, "message on '%.*s' exceeds the client's Maximum Packet Size; discarded",
		     (int)m->topic_len, (const char *)m->topic);
		if (pkt.props.has & MQTT_HAS(MQTT_PROP_TOPIC_ALIAS) && pkt.topic.len) {
			free(c->out_alias[pkt.props.topic_alias]);
			c->out_alias[pkt.props.topic_alias] = NULL;
		}
		return false;
	}
	send_packet(c, &pkt);
	atomic_fetch_add_explicit(&c->shard->stats.msgs_out, 1, memory_order_relaxed);
	return true;
}

/* ---------- CONNECT ---------- */

static char *assign_client_id(struct mqtt_client *c, size_t *len)
{
	/* Pick an id whose home shard is this one so the connection need not move. */
	static const char hex[] = "0123456789abcdef";
	char *id = malloc(40);
	if (!id)
		return NULL;
	for (;;) {
		uint64_t x = atomic_fetch_add(&c->shard->broker->next_uid, 1) * 0x9E3779B97F4A7C15ull ^
			     kz_now_wall_ns();
		memcpy(id, "kz-", 3);
		for (int i = 0; i < 16; i++)
			id[3 + i] = hex[(x >> (4 * i)) & 15];
		id[19] = 0;
		if (mqtt_broker_home(c->shard->broker, (uint8_t *)id, 19) == c->shard->idx)
			break;
	}
	*len = 19;
	return id;
}

/* The properties a message forwards (§3.3.2.3): everything but Topic Alias, Message Expiry
 * (re-encoded per delivery) and Subscription Identifier; user properties keep their order
 * (§3.3.2.3.7). Under a policy, kz-label properties are replaced by the canonical label. */
static void forward_props(const struct mqtt_props *pp, struct kz_buf *fw, const char *canon, size_t canon_len)
{
	if (pp->has & MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT))
		(void)mqtt_prop_append_byte(fw, MQTT_PROP_PAYLOAD_FORMAT, pp->payload_format);
	if (pp->has & MQTT_HAS(MQTT_PROP_CONTENT_TYPE))
		(void)mqtt_prop_append_str(fw, MQTT_PROP_CONTENT_TYPE, pp->content_type.p, pp->content_type.len);
	if (pp->has & MQTT_HAS(MQTT_PROP_RESPONSE_TOPIC))
		(void)mqtt_prop_append_str(fw, MQTT_PROP_RESPONSE_TOPIC, pp->response_topic.p, pp->response_topic.len);
	if (pp->has & MQTT_HAS(MQTT_PROP_CORRELATION_DATA))
		(void)mqtt_prop_append_str(fw, MQTT_PROP_CORRELATION_DATA, pp->correlation_data.p, pp->correlation_data.len);
	size_t off = 0;
	struct mqtt_str uk, uv;
	while (mqtt_user_next(pp, &off, &uk, &uv))
		if ((!canon || uk.len != 8 || memcmp(uk.p, "kz-label", 8)) && !mqtt_user_key_lookalike(uk.p, uk.len))
			(void)mqtt_prop_append_pair(fw, uk, uv);
	if (canon)
		(void)mqtt_prop_append_pair(fw, (struct mqtt_str){ (const uint8_t *)"kz-label", 8 },
					    (struct mqtt_str){ (const uint8_t *)canon, (uint32_t)canon_len });
}

/* A label decided by the policy for a message being created: NULL canon = none. */
struct msg_label {
	const char *canon;
	size_t len;
	const struct kz_label *lab;
};

static struct mqtt_msg *will_new(struct mqtt_client *c, const struct mqtt_connect *k, const struct msg_label *ml)
{
	(void)c;
	struct kz_buf fw;
	kz_buf_init(&fw, 0);
	const struct mqtt_props *wp = &k->will_props;
	forward_props(wp, &fw, ml->canon, ml->len);
	struct mqtt_msg *m = mqtt_msg_new_labelled(k->will_topic.p, k->will_topic.len, k->will_payload.p,
						   k->will_payload.len, kz_buf_head(&fw), (uint32_t)fw.len,
						   (const uint8_t *)ml->canon, (uint32_t)ml->len, ml->lab);
	kz_buf_cleanup(&fw);
	if (!m)
		return NULL;
	m->qos = k->will_qos;
	m->retain = k->will_retain;
	m->has_expiry = wp->has & MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY);
	m->expiry_s = wp->message_expiry;
	m->origin = 0;
	return m;
}

/* Why a client may not create a record on topic (every path: PUBLISH, retained, will,
 * topic alias), or NULL when it may. Topics starting with '$' are the server's (MQTT 5.0
 * §4.7.2); kz_record_encode refuses them too, so this only gives the reason. */
static const char *reserved_why(const uint8_t *topic, size_t n)
{
	if (!kz_topic_reserved(topic, n))
		return NULL;
	if (n >= 6 && memcmp(topic, "$taxii", 6) == 0)
		return "$taxii topics hold validated STIX objects: post them over TAXII 2.1";
	if (n >= 4 && memcmp(topic, "$SYS", 4) == 0)
		return "$SYS topics are the server's";
	return "topics starting with '$' are reserved for the server (MQTT 5.0 4.7.2)";
}

/* One audit entry per identity and interval for its refusals by the per-identity limits
 * (aggregated, not per event). */
static void idl_audit(struct mqtt_client *c, const char *what)
{
	uint64_t n = kz_idlimit_report(c->idl, c->shard->now_ms * 1000000ull, 10000000000ull);
	if (!n)
		return;
	char why[200];
	snprintf(why, sizeof why, "%llu refusals by the per-identity limits (%s; summary)", (unsigned long long)n, what);
	const struct kz_policy *pol = mqtt_policy(c->shard->broker);
	kz_audit(&(struct kz_audit_entry){ .subject = c->peer_id, .serial = c->cert_serial, .tls_group = c->tls_group,
					  .issuer = c->cert_issuer, .tls = c->tls_suite, .addr = c->addr,
					  .action = "limit", .resource = c->peer_id, .allow = false, .reason = why,
					  .count = n, .policy = pol ? pol->version : NULL });
}

/* Identities are equal, or both absent (connections without a certificate: unit tests). */
static bool same_owner(const char *owner, const char *peer)
{
	if (!owner || !peer)
		return owner == peer;
	return strcmp(owner, peer) == 0;
}

static void takeover(struct mqtt_client *c, struct mqtt_session *ss, bool clean_start)
{
	struct mqtt_client *old = ss->client;
	if (old) {
		CLOG(KZ_LOG_INFO, c, "takes over the session from conn %llu",
		     (unsigned long long)old->conn_id);
		mqtt_client_disconnect(old, MQTT_RC_SESSION_TAKEN_OVER, "session taken over");
		old->session = NULL;
		ss->client = NULL;
		mqtt_share_set_online(ss, false);
		/* §3.1.3.2.2: the old connection's will goes now unless a delay keeps it back
		 * and the session continues. */
		if (ss->will && (ss->will_delay_s == 0 || clean_start))
			mqtt_session_fire_will(ss);
	}
	if (clean_start || !old) {
		if (clean_start)
			mqtt_session_fire_will(ss);
	}
	/* A new connection to a continuing session cancels a pending delayed will. */
	if (!clean_start && ss->will) {
		mqtt_msg_unref(ss->will);
		ss->will = NULL;
		ss->will_at_ms = 0;
	}
}

static void handle_connect(struct mqtt_client *c, const struct mqtt_packet *pkt)
{
	const struct mqtt_connect *k = &pkt->connect;
	struct mqtt_broker *b = c->shard->broker;
	const struct mqtt_limits *lim = &b->lim;
	const struct mqtt_props *pp = &pkt->props;
	c->version = k->protocol_level;
	/* §3.1.2.11.10: Authentication Data without an Authentication Method is a Protocol Error */
	if ((pp->has & MQTT_HAS(MQTT_PROP_AUTH_DATA)) && !(pp->has & MQTT_HAS(MQTT_PROP_AUTH_METHOD))) {
		refuse(c, MQTT_RC_PROTOCOL_ERROR, 0xFF, "Authentication Data without an Authentication Method");
		return;
	}
	if (pp->has & MQTT_HAS(MQTT_PROP_AUTH_METHOD)) {
		refuse(c, MQTT_RC_BAD_AUTH_METHOD, 0xFF,
		       "enhanced authentication is not supported; identity is the client certificate");
		return;
	}
	if (atomic_load(&b->is_shutting_down)) {
		refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT311_UNAVAILABLE, "server shutting down");
		return;
	}
	if (!kz_audit_writable()) { /* fail closed: no decision that cannot be recorded */
		refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT311_UNAVAILABLE,
		       "the audit log cannot be written: new connections are refused until it can");
		return;
	}
	if (atomic_load(&b->n_connections) > lim->max_connections) {
		refuse(c, MQTT_RC_SERVER_BUSY, MQTT311_UNAVAILABLE, "connection limit reached");
		return;
	}
	if (k->client_id.len > lim->max_client_id_len) {
		refuse(c, MQTT_RC_CLIENT_ID_INVALID, MQTT311_ID_REJECTED,
		       "client identifier longer than the configured maximum");
		return;
	}
	if (k->has_will) {
		const char *why = NULL;
		if (mqtt_topic_name_check(k->will_topic.p, k->will_topic.len, &b->topic_lim, &why)) {
			refuse(c, MQTT_RC_TOPIC_INVALID, MQTT311_NOT_AUTHORIZED, why);
			return;
		}
		if ((why = reserved_why(k->will_topic.p, k->will_topic.len)) != NULL) {
			char full[160];
			snprintf(full, sizeof full, "will: %s", why);
			refuse(c, MQTT_RC_NOT_AUTHORIZED, MQTT311_NOT_AUTHORIZED, full);
			return;
		}
		if (k->will_props.payload_format == 1 &&
		    !kz_utf8_valid(k->will_payload.p, k->will_payload.len, false)) {
			refuse(c, MQTT_RC_PAYLOAD_FORMAT_INVALID, 0xFF, "will payload is not UTF-8 as its format indicator says");
			return;
		}
	}
	if (k->client_id.len > 0) {
		unsigned home = mqtt_broker_home(b, k->client_id.p, k->client_id.len);
		if (home != c->shard->idx) {
			c->ops->migrate(c->transport, home);
			return;
		}
	}
	const struct kz_policy *pol = mqtt_policy(b);
	struct kz_subject *subj = NULL;
	struct msg_label wl = { 0 };
	struct kz_label wlab;
	char wcanon[KZ_LABEL_MAX_LEN + 1];
	if (pol) { /* the decision point: may it connect, may its will be published */
		const char *why;
		if (!(subj = malloc(sizeof *subj))) {
			refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT311_UNAVAILABLE, "out of memory");
			return;
		}
		kz_subject_init(pol, c->peer_id, subj);
		if (!kz_policy_connect(pol, subj, &why)) {
			free(subj);
			refuse(c, MQTT_RC_NOT_AUTHORIZED, MQTT311_NOT_AUTHORIZED, why);
			return;
		}
		if (k->has_will) {
			char wwhy[KZ_LABEL_MAX_LEN + 200], full[KZ_LABEL_MAX_LEN + 220];
			uint8_t wrc;
			if (!mqtt_policy_publish(pol, subj, &k->will_props, k->will_topic.p, k->will_topic.len, &wlab,
						 wcanon, &wl.len, &wrc, wwhy, sizeof wwhy)) {
				free(subj);
				snprintf(full, sizeof full, "will: %s", wwhy);
				refuse(c, wrc, MQTT311_NOT_AUTHORIZED, full);
				return;
			}
			wl.canon = wcanon;
			wl.lab = &wlab;
		}
	}
	/* Per-identity limits (docs/SECURITY.md): connections of one identity across the node. */
	if (b->idlimits) {
		c->idl = kz_idlimits_get(b->idlimits, c->peer_id, subj);
		if (!kz_idlimit_connect(c->idl)) {
			char why[160];
			snprintf(why, sizeof why, "this identity has %u connections open, its limit (limits.identity)",
				 c->idl->lim.connections);
			free(subj);
			idl_audit(c, "connections");
			refuse(c, MQTT_RC_CONNECTION_RATE_EXCEEDED, MQTT311_UNAVAILABLE, why);
			return;
		}
		c->idl_counted = true;
	}
	/* Accepted: from here on the CONNECT takes effect. */
	char *assigned = NULL;
	size_t id_len = k->client_id.len;
	const uint8_t *id = k->client_id.p;
	if (id_len == 0) {
		if (c->version == MQTT_V311 && !k->clean_start) { /* 3.1.1 §3.1.3.1 */
			refuse(c, MQTT_RC_CLIENT_ID_INVALID, MQTT311_ID_REJECTED,
			       "empty client identifier requires clean session");
			return;
		}
		assigned = assign_client_id(c, &id_len);
		if (!assigned) {
			refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT311_UNAVAILABLE, "out of memory");
			return;
		}
		id = (const uint8_t *)assigned;
	}
	uint32_t expiry;
	if (c->version == MQTT_V5)
		expiry = pp->session_expiry;
	else
		expiry = k->clean_start ? 0 : UINT32_MAX;
	bool expiry_capped = false;
	if (expiry > lim->max_session_expiry && lim->max_session_expiry != UINT32_MAX) {
		expiry = lim->max_session_expiry;
		expiry_capped = c->version == MQTT_V5;
	}
	c->connect_expiry_zero = expiry == 0;
	struct mqtt_session *ss = mqtt_session_find(c->shard, id, id_len);
	bool session_present = false;
	if (ss && !same_owner(ss->peer_id, c->peer_id)) {
		/* A session belongs to the identity that created it (docs/SECURITY.md): another
		 * identity may neither take it over nor end it with clean start. */
		free(assigned);
		free(subj);
		refuse(c, MQTT_RC_CLIENT_ID_INVALID, MQTT311_ID_REJECTED,
		       "client identifier belongs to a session of another identity");
		return;
	}
	if (ss) {
		takeover(c, ss, k->clean_start);
		if (k->clean_start) {
			mqtt_session_end(ss);
			ss = NULL;
		} else {
			session_present = true;
		}
	}
	if (!ss)
		ss = mqtt_session_new(c->shard, id, id_len);
	if (!ss) {
		free(assigned);
		free(subj);
		refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT311_UNAVAILABLE, "out of memory");
		return;
	}
	ss->client = c;
	c->session = ss;
	mqtt_share_set_online(ss, true);
	ss->expiry_s = expiry;
	ss->expire_at_ms = 0;
	if (k->has_will) {
		ss->will = will_new(c, k, &wl);
		ss->will_delay_s = k->will_props.will_delay;
		ss->will_at_ms = 0;
	}
	free(ss->peer_id);
	ss->peer_id = c->peer_id ? strdup(c->peer_id) : NULL;
	free(ss->subj);
	ss->subj = subj; /* NULL without a policy, or recompiled on first use */
	if (!session_present) /* its subscriptions will be decided under this policy */
		ss->subs_gen = pol ? pol->gen : 0;
	mqtt_session_persist_connect(ss, !session_present);
	c->keep_alive = k->keep_alive;
	bool ka_changed = false;
	if (c->version == MQTT_V5 && lim->max_keepalive &&
	    (c->keep_alive == 0 || c->keep_alive > lim->max_keepalive)) {
		c->keep_alive = lim->max_keepalive; /* §3.2.2.3.14 Server Keep Alive */
		ka_changed = true;
	}
	if (pp->has & MQTT_HAS(MQTT_PROP_RECEIVE_MAX))
		c->peer_receive_max = pp->receive_max;
	if (pp->has & MQTT_HAS(MQTT_PROP_MAX_PACKET_SIZE))
		c->peer_max_packet = pp->max_packet_size;
	if (pp->has & MQTT_HAS(MQTT_PROP_REQUEST_PROBLEM_INFO))
		c->request_problem_info = pp->request_problem_info;
	if (pp->topic_alias_max) {
		c->peer_alias_max = pp->topic_alias_max < 64 ? pp->topic_alias_max : 64;
		c->out_alias = calloc((size_t)c->peer_alias_max + 1, sizeof(char *));
		c->out_alias_next = 1;
		if (!c->out_alias)
			c->peer_alias_max = 0;
	}
	if (lim->topic_alias_max && c->version == MQTT_V5)
		c->in_alias = calloc((size_t)lim->topic_alias_max + 1, sizeof(char *));
	c->state = MQTT_CLIENT_CONNECTED;

	struct mqtt_packet ack = { .type = MQTT_CONNACK, .session_present = session_present };
	struct mqtt_props *ap = &ack.props;
	if (c->version == MQTT_V5) {
		ap->has |= MQTT_HAS(MQTT_PROP_RECEIVE_MAX) | MQTT_HAS(MQTT_PROP_MAX_PACKET_SIZE) |
			   MQTT_HAS(MQTT_PROP_TOPIC_ALIAS_MAX);
		ap->receive_max = lim->max_inflight;
		ap->max_packet_size = lim->max_packet_size;
		ap->topic_alias_max = lim->topic_alias_max;
		if (assigned) {
			ap->has |= MQTT_HAS(MQTT_PROP_ASSIGNED_CLIENT_ID);
			ap->assigned_client_id.p = (const uint8_t *)assigned;
			ap->assigned_client_id.len = (uint32_t)id_len;
		}
		if (ka_changed) {
			ap->has |= MQTT_HAS(MQTT_PROP_SERVER_KEEP_ALIVE);
			ap->server_keep_alive = c->keep_alive;
		}
		if (expiry_capped) {
			ap->has |= MQTT_HAS(MQTT_PROP_SESSION_EXPIRY);
			ap->session_expiry = expiry;
		}
	}
	send_packet(c, &ack);
	kz_audit(&(struct kz_audit_entry){ .subject = c->peer_id,
					  .serial = c->cert_serial, .tls_group = c->tls_group, .issuer = c->cert_issuer, .tls = c->tls_suite, .addr = c->addr, .action = "connect", .resource = ss->client_id,
					  .allow = true, .reason = session_present ? "session resumed" : "new session",
					  .policy = pol ? pol->version : NULL });
	CLOG(KZ_LOG_INFO, c, "connected from %s, MQTT %s, keep alive %us, session %s, expiry %us",
	     c->addr, c->version == MQTT_V5 ? "5.0" : "3.1.1", c->keep_alive,
	     session_present ? "resumed" : "new", expiry);
	free(assigned);
	if (session_present) {
		mqtt_session_resend(ss);
		mqtt_session_pump(ss);
	}
}

/* ---------- PUBLISH from the client ---------- */

static bool rx_qos2_has(struct mqtt_session *ss, uint16_t pid)
{
	return ss->rx_qos2 && (ss->rx_qos2[pid >> 3] & (1u << (pid & 7)));
}

static int rx_qos2_set(struct mqtt_session *ss, uint16_t pid, bool on)
{
	if (!ss->rx_qos2) {
		if (!on)
			return KZ_OK;
		ss->rx_qos2 = calloc(8192, 1);
		if (!ss->rx_qos2)
			return KZ_ENOMEM;
	}
	uint8_t bit = (uint8_t)(1u << (pid & 7));
	bool had = ss->rx_qos2[pid >> 3] & bit;
	if (on && !had) {
		ss->rx_qos2[pid >> 3] |= bit;
		ss->n_rx_qos2++;
	} else if (!on && had) {
		ss->rx_qos2[pid >> 3] &= (uint8_t)~bit;
		ss->n_rx_qos2--;
	}
	return KZ_OK;
}

static void publish_refuse(struct mqtt_client *c, const struct mqtt_packet *pkt, uint8_t rc,
			   const char *why)
{
	char topic[256];
	snprintf(topic, sizeof topic, "%.*s", (int)pkt->topic.len, (const char *)pkt->topic.p);
	atomic_fetch_add_explicit(&c->shard->broker->publish_refused[rc], 1, memory_order_relaxed);
	const struct kz_policy *pol = mqtt_policy(c->shard->broker);
	kz_audit(&(struct kz_audit_entry){ .subject = c->peer_id,
					  .serial = c->cert_serial, .tls_group = c->tls_group, .issuer = c->cert_issuer, .tls = c->tls_suite, .addr = c->addr, .action = "publish", .resource = topic,
					  .allow = false, .reason = why, .policy = pol ? pol->version : NULL });
	/* §3.3.4: a QoS 1/2 refusal is an acknowledgement with a reason code (MQTT 5); QoS 0
	 * and MQTT 3.1.1 have no such channel, so the connection is closed. */
	if (c->version == MQTT_V5 && pkt->qos > 0) {
		CLOG(KZ_LOG_WARN, c, "PUBLISH %u refused: 0x%02X %s", pkt->packet_id, rc, why);
		mqtt_client_send_ack(c, pkt->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, pkt->packet_id, rc, why);
		return;
	}
	mqtt_client_disconnect(c, rc, why);
}

static int resolve_alias(struct mqtt_client *c, const struct mqtt_packet *pkt, struct mqtt_str *topic)
{
	*topic = pkt->topic;
	if (!(pkt->props.has & MQTT_HAS(MQTT_PROP_TOPIC_ALIAS)))
		return 0;
	uint16_t a = pkt->props.topic_alias;
	uint16_t max = c->shard->broker->lim.topic_alias_max;
	if (a == 0 || a > max || !c->in_alias) {
		mqtt_client_disconnect(c, MQTT_RC_TOPIC_ALIAS_INVALID, "topic alias out of range");
		return -1;
	}
	if (topic->len == 0) {
		if (!c->in_alias[a]) {
			mqtt_client_disconnect(c, MQTT_RC_PROTOCOL_ERROR, "unknown topic alias");
			return -1;
		}
		topic->p = (const uint8_t *)c->in_alias[a];
		topic->len = (uint32_t)strlen(c->in_alias[a]);
		return 0;
	}
	char *t = strndup((const char *)topic->p, topic->len);
	if (!t) {
		mqtt_client_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
		return -1;
	}
	free(c->in_alias[a]);
	c->in_alias[a] = t;
	return 0;
}

static struct mqtt_msg *msg_from_publish(struct mqtt_client *c, const struct mqtt_packet *pkt,
					 struct mqtt_str topic, const struct msg_label *ml)
{
	const struct mqtt_props *pp = &pkt->props;
	struct kz_buf fw;
	kz_buf_init(&fw, 0);
	if ((c->version == MQTT_V5 && pp->raw.len) || ml->canon)
		forward_props(pp, &fw, ml->canon, ml->len);
	struct mqtt_msg *m = mqtt_msg_new_labelled(topic.p, topic.len, pkt->payload.p, pkt->payload.len,
						   fw.len ? kz_buf_head(&fw) : NULL, (uint32_t)fw.len,
						   (const uint8_t *)ml->canon, (uint32_t)ml->len, ml->lab);
	kz_buf_cleanup(&fw);
	if (!m)
		return NULL;
	m->qos = pkt->qos;
	m->retain = pkt->retain;
	m->has_expiry = pp->has & MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY);
	m->expiry_s = pp->message_expiry;
	m->created_ms = c->shard->now_ms;
	m->origin = c->session->uid;
	return m;
}

static bool rate_ok(struct mqtt_client *c)
{
	uint32_t max = c->shard->broker->lim.max_publish_rate;
	if (!max)
		return true;
	uint64_t now = c->shard->now_ms;
	if (now - c->rate_window_ms >= 1000) {
		c->rate_window_ms = now;
		c->rate_count = 0;
	}
	return ++c->rate_count <= max;
}

static bool q2_pending_has(const struct mqtt_client *c, uint16_t pid)
{
	for (uint32_t i = 0; i < c->n_q2_pending; i++)
		if (c->q2_pending[i] == pid)
			return true;
	return false;
}

static void q2_pending_del(struct mqtt_client *c, uint16_t pid)
{
	for (uint32_t i = 0; i < c->n_q2_pending; i++)
		if (c->q2_pending[i] == pid) {
			c->q2_pending[i] = c->q2_pending[--c->n_q2_pending];
			return;
		}
}

/* Encodes the record of an accepted PUBLISH (docs/STORE.md). */
static int record_encode(struct mqtt_client *c, const struct mqtt_packet *pkt, const struct mqtt_msg *m,
			 struct kz_buf *out)
{
	struct kz_record r = { .qos = m->qos, .retain = m->retain, .precedence = KZ_PREC_ROUTINE };
	r.time_ns = kz_now_wall_ns();
	kz_uuidv7(r.id, r.time_ns / 1000000u);
	if (m->has_expiry)
		r.expiry_ns = r.time_ns + (uint64_t)m->expiry_s * 1000000000u;
	r.topic = (struct kz_bytes){ m->topic, m->topic_len };
	r.origin_node = (struct kz_bytes){ (const uint8_t *)c->broker->node_id,
					   (uint32_t)strlen(c->broker->node_id) };
	r.origin_id = (struct kz_bytes){ (const uint8_t *)c->peer_id, c->peer_id ? (uint32_t)strlen(c->peer_id) : 0 };
	if (pkt->props.has & MQTT_HAS(MQTT_PROP_CONTENT_TYPE))
		r.content_type = (struct kz_bytes){ pkt->props.content_type.p, pkt->props.content_type.len };
	r.mqtt_props = (struct kz_bytes){ m->props, m->props_len };
	r.payload = (struct kz_bytes){ m->payload, m->payload_len };
	r.label = (struct kz_bytes){ m->label, m->label_len };
	return kz_record_encode(&r, out);
}

/* Retains (when asked) and routes an accepted message; ack_rc and ack_why say what its
 * acknowledgement says. */
static void publish_route(struct mqtt_shard *s, struct mqtt_msg *m, uint8_t *ack_rc,
			  const char **ack_why)
{
	*ack_rc = MQTT_RC_SUCCESS;
	*ack_why = NULL;
	if (m->retain && mqtt_retained_set(s->broker, m)) {
		*ack_rc = MQTT_RC_QUOTA_EXCEEDED;
		*ack_why = "retained message limit reached; delivered but not retained";
	}
	mqtt_shard_route(s, m);
}

/* Remembers a QoS 2 packet id whose record is on its way to the store. */
static int q2_pending_add(struct mqtt_client *c, uint16_t pid)
{
	if (c->n_q2_pending == c->cap_q2_pending) {
		uint32_t ncap = c->cap_q2_pending ? c->cap_q2_pending * 2 : 8;
		uint16_t *nv = realloc(c->q2_pending, ncap * sizeof *nv);
		if (!nv)
			return KZ_ENOMEM;
		c->q2_pending = nv;
		c->cap_q2_pending = ncap;
	}
	c->q2_pending[c->n_q2_pending++] = pid;
	return KZ_OK;
}

/* Input flow control for the disk and the other workers: while more than
 * limits.max_store_backlog bytes wait for the store thread (a flood faster than the disk),
 * or more than limits.max_route_backlog bytes wait in the workers' inboxes (a flood faster
 * than the subscribers' workers deliver), publishers are not read — of any QoS, so that QoS 0
 * floods cannot grow memory without bound either. Reading resumes under half of both. */
static void store_backpressure(struct mqtt_client *c)
{
	struct mqtt_shard *s = c->shard;
	const struct mqtt_limits *lim = &c->broker->lim;
	if (c->store_held || !c->ops->hold_reading)
		return;
	bool store_over = c->broker->store && kz_store_pending_bytes(c->broker->store) > lim->max_store_backlog;
	if (!store_over && !(lim->max_route_backlog && mqtt_broker_route_backlog(c->broker) > lim->max_route_backlog))
		return;
	if (s->n_store_held == 0)
		kz_debug("%s backlog over its cap: pausing publishers on worker %u", store_over ? "store" : "routing", s->idx);
	c->store_held = true;
	s->n_store_held++;
	c->ops->hold_reading(c->transport, true);
}

/* The store path: QoS 0 is stored and routed at once; QoS 1/2 wait for the record to be
 * durable, then are routed and acknowledged (mqtt_client_stored). */
static void publish_store(struct mqtt_client *c, const struct mqtt_packet *pkt, struct mqtt_msg *m)
{
	struct kz_buf rec;
	kz_buf_init(&rec, 0);
	if (record_encode(c, pkt, m, &rec)) {
		kz_buf_cleanup(&rec);
		mqtt_msg_unref(m);
		publish_refuse(c, pkt, MQTT_RC_UNSPECIFIED, "out of memory");
		return;
	}
	uint8_t *data = rec.data; /* fresh buffer: off is 0, ownership moves to the store */
	uint32_t len = (uint32_t)rec.len;
	if (pkt->qos == 0) {
		if (!kz_store_wants(c->broker->store, m->topic, m->topic_len, 0) ||
		    mqtt_shard_store(c->shard, data, len, NULL, m))
			free(data);
		uint8_t rc;
		const char *why;
		publish_route(c->shard, m, &rc, &why);
		mqtt_msg_unref(m);
		store_backpressure(c);
		return;
	}
	struct mqtt_stored *st = calloc(1, sizeof *st);
	bool q2 = pkt->qos == 2;
	if (!st || (q2 && rx_qos2_set(c->session, pkt->packet_id, true))) {
		free(st);
		st = NULL;
	} else if ((q2 && q2_pending_add(c, pkt->packet_id)) || mqtt_shard_store(c->shard, data, len, st, m)) {
		if (q2) {
			q2_pending_del(c, pkt->packet_id);
			(void)rx_qos2_set(c->session, pkt->packet_id, false);
		}
		free(st);
		st = NULL;
	}
	if (!st) {
		free(data);
		mqtt_msg_unref(m);
		publish_refuse(c, pkt, MQTT_RC_UNSPECIFIED, "out of memory");
		return;
	}
	*st = (struct mqtt_stored){ .client = c, .msg = m, .shard = c->shard,
				    .packet_id = pkt->packet_id, .qos = pkt->qos };
	/* Input flow control: a client (3.1.1 has no Receive Maximum) cannot have more than
	 * max_inflight records waiting for the disk; reading resumes as they become durable. */
	if (++c->store_pending == c->broker->lim.max_inflight && c->ops->hold_reading)
		c->ops->hold_reading(c->transport, true);
	store_backpressure(c);
}

static void client_free(struct mqtt_client *c);

void mqtt_client_stored(struct mqtt_stored *st)
{
	struct mqtt_client *c = st->client;
	if (c->store_pending-- == c->broker->lim.max_inflight && !c->zombie && !c->store_held &&
	    c->ops->hold_reading)
		c->ops->hold_reading(c->transport, false);
	uint8_t rc = MQTT_RC_SUCCESS;
	const char *why = NULL;
	if (st->status == KZ_OK)
		publish_route(st->shard, st->msg, &rc, &why);
	if (!c->zombie) {
		if (st->qos == 2)
			q2_pending_del(c, st->packet_id);
		if (st->status != KZ_OK) {
			char reason[128];
			snprintf(reason, sizeof reason, "not stored: %s; nothing was acknowledged",
				 kz_strerror(st->status));
			if (st->qos == 2 && c->session)
				(void)rx_qos2_set(c->session, st->packet_id, false);
			struct mqtt_packet pkt = { .type = MQTT_PUBLISH, .qos = st->qos, .packet_id = st->packet_id };
			/* MQTT 5: 0x97 with a reason string; 3.1.1 has no refusal, so the
			 * connection closes (the client resends after reconnecting). */
			publish_refuse(c, &pkt, MQTT_RC_QUOTA_EXCEEDED, reason);
		} else if (c->state == MQTT_CLIENT_CONNECTED) {
			mqtt_client_send_ack(c, st->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, st->packet_id, rc, why);
		}
	}
	mqtt_msg_unref(st->msg);
	free(st);
	if (c->zombie && c->store_pending == 0)
		client_free(c);
}

static void handle_publish(struct mqtt_client *c, const struct mqtt_packet *pkt)
{
	struct mqtt_session *ss = c->session;
	struct mqtt_broker *b = c->shard->broker;
	atomic_fetch_add_explicit(&c->shard->stats.msgs_in, 1, memory_order_relaxed);
	if (!rate_ok(c)) {
		mqtt_client_disconnect(c, MQTT_RC_RATE_TOO_HIGH,
				       "publish rate above the configured maximum");
		return;
	}
	if (c->idl) {
		uint64_t now_ns = c->shard->now_ms * 1000000ull;
		if (!kz_idlimit_take_publish(c->idl, pkt->payload.len, now_ns)) {
			idl_audit(c, "publish rate or bytes");
			atomic_fetch_add_explicit(&b->publish_refused[MQTT_RC_RATE_TOO_HIGH], 1, memory_order_relaxed);
			mqtt_client_disconnect(c, MQTT_RC_RATE_TOO_HIGH,
					       "this identity publishes above its limit (limits.identity)");
			return;
		}
	}
	if (pkt->props.n_sub_ids) { /* §3.3.4-6 */
		mqtt_client_disconnect(c, MQTT_RC_PROTOCOL_ERROR,
				       "PUBLISH from a client must not carry a subscription identifier");
		return;
	}
	struct mqtt_str topic;
	if (resolve_alias(c, pkt, &topic))
		return;
	const char *why = NULL;
	int rc = mqtt_topic_name_check(topic.p, topic.len, &b->topic_lim, &why);
	if (rc) {
		mqtt_client_disconnect(c, (uint8_t)rc, why);
		return;
	}
	if (pkt->qos == 2 && rx_qos2_has(ss, pkt->packet_id)) {
		/* §4.3.3: a resent QoS 2 PUBLISH is acknowledged, not delivered again; while
		 * its record is still on the way to disk, the PUBREC follows from there. */
		if (!q2_pending_has(c, pkt->packet_id))
			mqtt_client_send_ack(c, MQTT_PUBREC, pkt->packet_id, 0, NULL);
		return;
	}
	if (pkt->qos == 2 && ss->n_rx_qos2 >= b->lim.max_inflight) {
		mqtt_client_disconnect(c, MQTT_RC_RECEIVE_MAX_EXCEEDED,
				       "more unacknowledged QoS 2 messages than Receive Maximum");
		return;
	}
	if (pkt->props.payload_format == 1 && !kz_utf8_valid(pkt->payload.p, pkt->payload.len, false)) {
		publish_refuse(c, pkt, MQTT_RC_PAYLOAD_FORMAT_INVALID,
			       "payload is not UTF-8 as its format indicator says");
		return;
	}
	if ((why = reserved_why(topic.p, topic.len)) != NULL) {
		publish_refuse(c, pkt, MQTT_RC_NOT_AUTHORIZED, why);
		return;
	}
	if (!kz_audit_writable()) {
		publish_refuse(c, pkt, MQTT_RC_IMPL_SPECIFIC,
			       "the audit log cannot be written: publishes are refused until it can");
		return;
	}
	struct msg_label ml = { 0 };
	struct kz_label lab;
	char canon[KZ_LABEL_MAX_LEN + 1];
	const struct kz_policy *pol = mqtt_policy(b);
	if (pol) { /* the decision point: may it publish here, and with which label */
		char pwhy[KZ_LABEL_MAX_LEN + 200];
		uint8_t prc;
		if (!mqtt_policy_publish(pol, mqtt_session_subject(ss, pol), &pkt->props, topic.p, topic.len, &lab,
					 canon, &ml.len, &prc, pwhy, sizeof pwhy)) {
			publish_refuse(c, pkt, prc, pwhy);
			return;
		}
		ss->aud_published++;
		ml.canon = canon;
		ml.lab = &lab;
	}
	struct mqtt_msg *m = msg_from_publish(c, pkt, topic, &ml);
	if (!m) {
		publish_refuse(c, pkt, MQTT_RC_UNSPECIFIED, "out of memory");
		return;
	}
	if (b->store) {
		publish_store(c, pkt, m);
		return;
	}
	uint8_t ack_rc;
	const char *ack_why;
	publish_route(c->shard, m, &ack_rc, &ack_why);
	mqtt_msg_unref(m);
	if (pkt->qos == 1) {
		mqtt_client_send_ack(c, MQTT_PUBACK, pkt->packet_id, ack_rc, ack_why);
	} else if (pkt->qos == 2) {
		if (rx_qos2_set(ss, pkt->packet_id, true)) {
			mqtt_client_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
			return;
		}
		mqtt_client_send_ack(c, MQTT_PUBREC, pkt->packet_id, ack_rc, ack_why);
	}
}

/* ---------- SUBSCRIBE / UNSUBSCRIBE ---------- */

static uint8_t subscribe_one(struct mqtt_client *c, const struct mqtt_sub_entry *e,
			     uint32_t sub_id, bool *send_retained, struct mqtt_sub **out_sub,
			     bool *fatal, const char **deny_why)
{
	struct mqtt_broker *b = c->shard->broker;
	const uint8_t *g = NULL, *f = e->filter.p;
	size_t gl = 0, fl = e->filter.len;
	const char *why = NULL;
	*send_retained = false;
	*fatal = false;
	int sh = c->version == MQTT_V5 ?
		mqtt_topic_share_split(e->filter.p, e->filter.len, &g, &gl, &f, &fl, &why) : 0;
	if (sh < 0) {
		CLOG(KZ_LOG_INFO, c, "SUBSCRIBE '%.*s' refused: %s", (int)e->filter.len, e->filter.p, why);
		return MQTT_RC_FILTER_INVALID;
	}
	if (sh == 0) {
		g = NULL;
		f = e->filter.p;
		fl = e->filter.len;
	}
	if (sh == 1 && e->no_local) { /* §3.8.3.1 */
		*fatal = true;
		return MQTT_RC_PROTOCOL_ERROR;
	}
	if (mqtt_topic_filter_check(f, fl, &b->topic_lim, &why)) {
		CLOG(KZ_LOG_INFO, c, "SUBSCRIBE '%.*s' refused: %s", (int)e->filter.len, e->filter.p, why);
		return MQTT_RC_FILTER_INVALID;
	}
	if (!kz_audit_writable()) {
		*deny_why = "the audit log cannot be written: subscriptions are refused until it can";
		return MQTT_RC_IMPL_SPECIFIC;
	}
	const struct kz_policy *pol = mqtt_policy(b);
	if (pol) { /* the decision point: the filter (without $share/GROUP/) must be covered */
		const struct kz_subject *subj = mqtt_session_subject(c->session, pol);
		why = "out of memory";
		if (!subj || !kz_policy_subscribe(pol, subj, (const char *)f, fl, &why)) {
			CLOG(KZ_LOG_INFO, c, "SUBSCRIBE '%.*s' refused: %s", (int)e->filter.len, e->filter.p, why);
			*deny_why = why;
			return MQTT_RC_NOT_AUTHORIZED;
		}
	}
	bool existed;
	int rc = mqtt_session_subscribe(c->session, e, g, gl, f, fl, sub_id, &existed);
	if (rc == KZ_ETOOBIG) {
		CLOG(KZ_LOG_WARN, c, "SUBSCRIBE '%.*s' refused: %u subscriptions is the limit",
		     (int)e->filter.len, e->filter.p, b->lim.max_subs_per_client);
		return MQTT_RC_QUOTA_EXCEEDED;
	}
	if (rc)
		return MQTT_RC_UNSPECIFIED;
	/* §3.3.1.3 Retain Handling; shared subscriptions get no retained messages (§4.8.2). */
	*send_retained = !g && (e->retain_handling == 0 || (e->retain_handling == 1 && !existed));
	if (*send_retained) {
		for (uint32_t i = 0; i < c->session->n_subs; i++) {
			struct mqtt_sub *s = c->session->subs[i];
			if (!s->group && s->filter_len == fl && memcmp(s->filter, f, fl) == 0)
				*out_sub = s;
		}
	}
	return e->qos;
}

/* The user property kz-replay-since on a SUBSCRIBE (docs/MQTT.md "Replay"): true when
 * present; then *from is the first sequence number to replay, or why says what is wrong. */
static bool replay_requested(struct mqtt_client *c, const struct mqtt_packet *pkt, uint64_t *from,
			     char *why, size_t why_len)
{
	size_t off = 0;
	struct mqtt_str k, v;
	while (mqtt_user_next(&pkt->props, &off, &k, &v)) {
		if (k.len != 15 || memcmp(k.p, "kz-replay-since", 15) != 0)
			continue;
		char spec[64];
		if (!c->broker->store) {
			snprintf(why, why_len, "kz-replay-since: this node stores no records");
		} else if (v.len >= sizeof spec) {
			snprintf(why, why_len, "kz-replay-since: not an RFC 3339 time or a record id");
		} else {
			memcpy(spec, v.p, v.len);
			spec[v.len] = 0;
			char w[200];
			if (kz_store_replay_start(c->broker->store, spec, from, w, sizeof w))
				snprintf(why, why_len, "kz-replay-since: %s", w);
		}
		if (why[0])
			CLOG(KZ_LOG_INFO, c, "SUBSCRIBE refused: %s", why);
		return true;
	}
	return false;
}

/* Starts the replay of a subscription just made (not for shared ones). */
static void replay_begin(struct mqtt_client *c, const struct mqtt_sub_entry *e, uint64_t from,
			 bool *send_retained, char *why, size_t why_len, uint8_t *rc)
{
	const uint8_t *g, *f;
	size_t gl, fl;
	const char *w;
	if (mqtt_topic_share_split(e->filter.p, e->filter.len, &g, &gl, &f, &fl, &w) == 1) {
		snprintf(why, why_len, "kz-replay-since: not on shared subscriptions");
		return;
	}
	for (uint32_t i = 0; i < c->session->n_subs; i++) {
		struct mqtt_sub *s = c->session->subs[i];
		if (!s->group && s->filter_len == e->filter.len && memcmp(s->filter, e->filter.p, e->filter.len) == 0) {
			if (mqtt_replay_begin(s, from)) {
				*rc = MQTT_RC_UNSPECIFIED;
				return;
			}
			/* the replay brings the history, the newest retained message included */
			*send_retained = false;
			CLOG(KZ_LOG_INFO, c, "replaying '%s' from seq %" PRIu64, s->filter, from);
		}
	}
}

static void handle_subscribe(struct mqtt_client *c, const struct mqtt_packet *pkt)
{
	uint8_t codes[256];
	uint8_t *rcs = pkt->n_entries <= sizeof codes ? codes : malloc(pkt->n_entries);
	struct mqtt_sub **ret = calloc(pkt->n_entries, sizeof *ret);
	if (!rcs || !ret) {
		if (rcs != codes)
			free(rcs);
		free(ret);
		mqtt_client_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
		return;
	}
	uint32_t sub_id = pkt->props.n_sub_ids ? pkt->props.sub_ids[0] : 0;
	size_t off = 0;
	struct mqtt_sub_entry e;
	uint32_t i = 0;
	bool fatal = false;
	uint64_t replay_from = 0;
	char replay_why[256] = "";
	const char *policy_why = NULL;
	bool replay = c->version == MQTT_V5 && replay_requested(c, pkt, &replay_from, replay_why, sizeof replay_why);
	while (!fatal && mqtt_sub_next(pkt, c->version, &off, &e)) {
		bool send_ret = false;
		uint8_t rc;
		const char *deny_why = NULL;
		if (replay && replay_why[0]) {
			rc = MQTT_RC_IMPL_SPECIFIC; /* not subscribed: the replay cannot be done */
		} else {
			rc = subscribe_one(c, &e, sub_id, &send_ret, &ret[i], &fatal, &deny_why);
			if (replay && rc < 0x80 && !fatal)
				replay_begin(c, &e, replay_from, &send_ret, replay_why, sizeof replay_why, &rc);
		}
		char filter[256];
		snprintf(filter, sizeof filter, "%.*s", (int)e.filter.len, (const char *)e.filter.p);
		const struct kz_policy *pol = mqtt_policy(c->shard->broker);
		kz_audit(&(struct kz_audit_entry){ .subject = c->peer_id,
					  .serial = c->cert_serial, .tls_group = c->tls_group, .issuer = c->cert_issuer, .tls = c->tls_suite, .addr = c->addr, .action = "subscribe", .resource = filter,
						  .allow = rc < 0x80,
						  .reason = rc < 0x80 ? "granted" : deny_why ? deny_why : mqtt_rc_name(rc),
						  .policy = pol ? pol->version : NULL });
		if (deny_why && !policy_why)
			policy_why = deny_why;
		if (c->version == MQTT_V311 && rc >= 0x80)
			rc = 0x80; /* 3.1.1 §3.9.3: the only failure code */
		if (!send_ret)
			ret[i] = NULL;
		rcs[i++] = rc;
	}
	if (fatal) {
		mqtt_client_disconnect(c, MQTT_RC_PROTOCOL_ERROR,
				       "No Local on a shared subscription");
	} else {
		struct mqtt_packet ack = { .type = MQTT_SUBACK, .packet_id = pkt->packet_id };
		ack.payload.p = rcs;
		ack.payload.len = i;
		set_reason_string(c, &ack, replay_why[0] ? replay_why : policy_why, false);
		send_packet(c, &ack);
		for (uint32_t k = 0; k < i; k++) /* after the SUBACK (§3.8.4) */
			if (ret[k])
				mqtt_retained_deliver(c->shard->broker, ret[k]);
	}
	if (rcs != codes)
		free(rcs);
	free(ret);
}

static void handle_unsubscribe(struct mqtt_client *c, const struct mqtt_packet *pkt)
{
	uint8_t codes[256];
	uint8_t *rcs = pkt->n_entries <= sizeof codes ? codes : malloc(pkt->n_entries);
	if (!rcs) {
		mqtt_client_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
		return;
	}
	size_t off = 0;
	struct mqtt_str f;
	uint32_t i = 0;
	while (mqtt_unsub_next(pkt, &off, &f)) {
		int rc = mqtt_session_unsubscribe(c->session, f.p, f.len);
		rcs[i++] = rc ? MQTT_RC_NO_SUBSCRIPTION_EXISTED : MQTT_RC_SUCCESS;
	}
	struct mqtt_packet ack = { .type = MQTT_UNSUBACK, .packet_id = pkt->packet_id };
	ack.payload.p = rcs;
	ack.payload.len = i;
	send_packet(c, &ack);
	if (rcs != codes)
		free(rcs);
}

static void handle_disconnect(struct mqtt_client *c, const struct mqtt_packet *pkt)
{
	struct mqtt_session *ss = c->session;
	if (pkt->props.has & MQTT_HAS(MQTT_PROP_SESSION_EXPIRY)) {
		if (c->connect_expiry_zero && pkt->props.session_expiry != 0) { /* §3.14.2.2.2 */
			mqtt_client_disconnect(c, MQTT_RC_PROTOCOL_ERROR,
					       "session expiry set on DISCONNECT after 0 on CONNECT");
			return;
		}
		uint32_t e = pkt->props.session_expiry;
		ss->expiry_s = e > c->shard->broker->lim.max_session_expiry ?
			c->shard->broker->lim.max_session_expiry : e;
	}
	/* §3.14.4: a normal DISCONNECT discards the will; 0x04 keeps it. */
	c->will_suppressed = pkt->reason != MQTT_RC_DISCONNECT_WITH_WILL;
	CLOG(KZ_LOG_INFO, c, "DISCONNECT 0x%02X from client", pkt->reason);
	c->state = MQTT_CLIENT_CLOSING;
	c->ops->close(c->transport);
}

static void handle_packet(struct mqtt_client *c, const struct mqtt_packet *pkt)
{
	struct mqtt_session *ss = c->session;
	switch (pkt->type) {
	case MQTT_CONNECT:
		mqtt_client_disconnect(c, MQTT_RC_PROTOCOL_ERROR, "second CONNECT");
		return;
	case MQTT_PUBLISH:
		handle_publish(c, pkt);
		return;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
		mqtt_session_ack(ss, pkt->type, pkt->packet_id, pkt->reason);
		return;
	case MQTT_PUBREL: {
		bool known = rx_qos2_has(ss, pkt->packet_id);
		(void)rx_qos2_set(ss, pkt->packet_id, false);
		mqtt_client_send_ack(c, MQTT_PUBCOMP, pkt->packet_id,
				     known ? 0 : MQTT_RC_PID_NOT_FOUND, NULL);
		return;
	}
	case MQTT_SUBSCRIBE:
		handle_subscribe(c, pkt);
		return;
	case MQTT_UNSUBSCRIBE:
		handle_unsubscribe(c, pkt);
		return;
	case MQTT_PINGREQ: {
		struct mqtt_packet r = { .type = MQTT_PINGRESP };
		send_packet(c, &r);
		return;
	}
	case MQTT_DISCONNECT:
		handle_disconnect(c, pkt);
		return;
	case MQTT_AUTH: /* §4.12: AUTH without an Authentication Method in CONNECT */
		mqtt_client_disconnect(c, MQTT_RC_PROTOCOL_ERROR,
				       "AUTH received but no authentication method was agreed");
		return;
	default:
		mqtt_client_disconnect(c, MQTT_RC_PROTOCOL_ERROR,
				       "packet type a client must not send");
		return;
	}
}

/* Returns bytes consumed, or 0 when p holds no whole packet; closes c on error. */
static size_t process_one(struct mqtt_client *c, const uint8_t *p, size_t n)
{
	size_t total;
	int rc = mqtt_frame(p, n, c->shard->broker->lim.max_packet_size, &total);
	if (rc == KZ_EAGAIN)
		return 0;
	if (rc == KZ_ETOOBIG) {
		if (c->state == MQTT_CLIENT_NEW)
			refuse(c, MQTT_RC_PACKET_TOO_LARGE, 0xFF, "packet larger than the maximum packet size");
		else
			mqtt_client_disconnect(c, MQTT_RC_PACKET_TOO_LARGE,
					       "packet larger than the maximum packet size");
		return 0;
	}
	if (rc) {
		mqtt_client_disconnect(c, MQTT_RC_MALFORMED, "bad remaining length");
		return 0;
	}
	struct mqtt_packet pkt;
	struct mqtt_err err;
	if (c->state == MQTT_CLIENT_NEW) {
		if ((p[0] >> 4) != MQTT_CONNECT) { /* §3.1: the first packet must be CONNECT */
			CLOG(KZ_LOG_WARN, c, "first packet is %s, not CONNECT; closing",
			     mqtt_type_name((enum mqtt_type)(p[0] >> 4)));
			c->state = MQTT_CLIENT_CLOSING;
			c->ops->close(c->transport);
			return 0;
		}
		if (mqtt_decode(p, total, 0, &pkt, &err)) {
			/* Answer in the version the client asked for, when it got that far. */
			uint8_t level = pkt.connect.protocol_level;
			c->version = level == MQTT_V311 ? MQTT_V311 : MQTT_V5;
			if (err.reason == MQTT_RC_UNSUPPORTED_VERSION && level && level < MQTT_V5)
				c->version = MQTT_V311;
			refuse(c, err.reason, err.reason == MQTT_RC_UNSUPPORTED_VERSION ?
			       MQTT311_BAD_VERSION : err.reason == MQTT_RC_CLIENT_ID_INVALID ?
			       MQTT311_ID_REJECTED : 0xFF, err.why);
			return 0;
		}
		handle_connect(c, &pkt);
		return c->state == MQTT_CLIENT_CONNECTED ? total : 0;
	}
	if (mqtt_decode(p, total, c->version, &pkt, &err)) {
		mqtt_client_disconnect(c, err.reason, err.why);
		return 0;
	}
	handle_packet(c, &pkt);
	return total;
}

static void process(struct mqtt_client *c, const uint8_t *p, size_t n, size_t *used)
{
	*used = 0;
	while (*used < n && c->state != MQTT_CLIENT_CLOSING) {
		enum mqtt_client_state before = c->state;
		struct mqtt_shard *shard = c->shard;
		size_t k = process_one(c, p + *used, n - *used);
		if (k == 0) {
			/* migrating (CONNECT left unconsumed), error, or incomplete packet */
			if (before == MQTT_CLIENT_NEW && c->state == MQTT_CLIENT_NEW && c->shard != shard)
				return;
			return;
		}
		*used += k;
	}
}

void mqtt_client_input(struct mqtt_client *c, const uint8_t *p, size_t n)
{
	if (c->state == MQTT_CLIENT_CLOSING)
		return;
	if (!c->shard) { /* migrating: keep the bytes for the target shard */
		if (kz_buf_append(&c->in, p, n))
			c->state = MQTT_CLIENT_CLOSING;
		return;
	}
	c->last_rx_ms = c->shard->now_ms;
	atomic_fetch_add_explicit(&c->shard->stats.bytes_in, n, memory_order_relaxed);
	size_t used;
	if (c->in.len == 0) { /* fast path: parse straight from the read buffer */
		process(c, p, n, &used);
		if (used < n && c->state != MQTT_CLIENT_CLOSING && kz_buf_append(&c->in, p + used, n - used))
			mqtt_client_disconnect(c, MQTT_RC_PACKET_TOO_LARGE, "input buffer cap reached");
		return;
	}
	if (kz_buf_append(&c->in, p, n)) {
		mqtt_client_disconnect(c, MQTT_RC_PACKET_TOO_LARGE, "input buffer cap reached");
		return;
	}
	process(c, kz_buf_head(&c->in), c->in.len, &used);
	kz_buf_consume(&c->in, used);
	if (c->in.len == 0)
		kz_buf_shrink(&c->in, 0);
}

void mqtt_client_detach(struct mqtt_client *c)
{
	if (c->store_held) { /* the new worker decides afresh */
		c->store_held = false;
		c->shard->n_store_held--;
		if (c->ops->hold_reading)
			c->ops->hold_reading(c->transport, false);
	}
	mqtt_shard_client_unlink(c->shard, c);
	c->shard = NULL;
}

void mqtt_client_resume(struct mqtt_client *c, struct mqtt_shard *s, void *transport,
			struct kz_buf *out)
{
	c->transport = transport;
	c->out = out;
	mqtt_shard_client_link(s, c);
	c->last_rx_ms = s->now_ms;
	size_t used;
	process(c, kz_buf_head(&c->in), c->in.len, &used);
	kz_buf_consume(&c->in, used);
	kz_buf_shrink(&c->in, 0);
}

void mqtt_client_writable(struct mqtt_client *c)
{
	if (c->session && c->state == MQTT_CLIENT_CONNECTED)
		mqtt_session_pump(c->session);
}

void mqtt_client_closed(struct mqtt_client *c)
{
	struct mqtt_session *ss = c->session;
	struct mqtt_shard *s = c->shard;
	mqtt_broker_slow_report(c, false); /* while the client id is known */
	if (ss && s) {
		ss->client = NULL;
		c->session = NULL;
		mqtt_share_set_online(ss, false);
		if (c->will_suppressed && ss->will) {
			mqtt_msg_unref(ss->will);
			ss->will = NULL;
		}
		if (ss->will) {
			uint32_t delay = ss->will_delay_s < ss->expiry_s ? ss->will_delay_s : ss->expiry_s;
			ss->will_at_ms = s->now_ms + (uint64_t)delay * 1000u;
			if (delay == 0)
				mqtt_session_fire_will(ss);
		}
		if (ss->expiry_s == 0) {
			mqtt_session_end(ss);
		} else {
			if (ss->expiry_s != UINT32_MAX)
				ss->expire_at_ms = s->now_ms + (uint64_t)ss->expiry_s * 1000u;
			mqtt_session_persist_offline(ss);
		}
	}
	CLOG(KZ_LOG_DEBUG, c, "closed");
	if (s && c->store_held) {
		c->store_held = false;
		s->n_store_held--;
	}
	if (s)
		mqtt_shard_client_unlink(s, c);
	atomic_fetch_sub(&c->broker->n_connections, 1);
	c->session = NULL;
	c->zombie = true;
	if (c->store_pending == 0)
		client_free(c);
}

static void client_free(struct mqtt_client *c)
{
	if (c->idl_counted)
		kz_idlimit_disconnected(c->idl);
	free(c->q2_pending);
	kz_buf_cleanup(&c->in);
	aliases_free(c->in_alias, c->broker->lim.topic_alias_max);
	aliases_free(c->out_alias, c->peer_alias_max);
	free(c->peer_id);
	free(c);
}
