/* mqtt_client.c — one MQTT connection: framing, the per-packet handlers and the outbound
 * encoders. Handlers follow MQTT 5.0 (OASIS Standard, 2019) and 3.1.1 (2014); section
 * numbers in comments refer to 5.0 unless marked. */
#include "base/kz_topic.h"
#include "mqtt/mqtt_internal.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_hash.h"
#include "base/kz_time.h"
#include "base/kz_utf8.h"
#include "trust/audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A log line about one connection, prefixed with its number, identity and client id. */
void mqtt_clog(enum kz_log_level lvl, const struct mqtt_client *c, const char *fmt, ...)
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

/* A certificate holder that opens connections and never sends CONNECT keeps each one for
 * limits.connect_timeout_ms, against limits.max_connections for everyone: past its share of
 * limits.max_unconnected_per_identity the oldest go (the list is newest first). Only
 * connections idle for UNCONNECTED_GRACE_MS count: a client sends CONNECT as soon as its
 * handshake ends, and a storm of reconnections under one certificate (a gateway's clients
 * after a restart) must not lose the ones whose CONNECT is still on its way. A CONNECT that
 * waits for order across a failover (order_wait) has been sent and does not count either. */
#define UNCONNECTED_GRACE_MS 2000
bool mqtt_client_unconnected(const struct mqtt_client *c, uint64_t now)
{
	return c->state == MQTT_CLIENT_NEW && !c->order_wait && now - c->accepted_ms >= UNCONNECTED_GRACE_MS;
}

unsigned mqtt_shard_cap_unconnected(struct mqtt_shard *s, size_t idle)
{
	const struct mqtt_limits *lim = &s->broker->lim;
	unsigned shards = s->broker->n_shards ? s->broker->n_shards : 1;
	uint32_t share = lim->max_unconnected_per_identity / shards;
	if (!lim->max_unconnected_per_identity)
		return 0;
	share = share ? share : 1;
	if (idle <= share)
		return 0; /* no identity can be past it: nothing to count */
	size_t cap = 16;
	while (cap < 2 * idle)
		cap *= 2;
	struct { const char *id; uint32_t seen; } *t = calloc(cap, sizeof *t);
	if (!t)
		return 0;
	unsigned closed = 0;
	for (struct mqtt_client *c = s->clients, *next; c; c = next) {
		next = c->next; /* closing may free c */
		if (!mqtt_client_unconnected(c, s->now_ms))
			continue;
		const char *id = c->peer_id ? c->peer_id : "";
		size_t k = kz_hash(id, strlen(id)) & (cap - 1);
		while (t[k].id && strcmp(t[k].id, id) != 0)
			k = (k + 1) & (cap - 1);
		t[k].id = id;
		if (++t[k].seen <= share)
			continue;
		kz_info("conn %llu %s: %s has more than %u connections without CONNECT on this worker "
			"(limits.max_unconnected_per_identity); closing this, its oldest", (unsigned long long)c->conn_id,
			c->addr, id, share);
		c->state = MQTT_CLIENT_CLOSING;
		c->ops->close(c->transport);
		closed++;
	}
	free(t);
	atomic_fetch_add(&s->stats.unconnected_closed, closed);
	return closed;
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

void mqtt_client_send_packet(struct mqtt_client *c, const struct mqtt_packet *pkt)
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

void mqtt_client_set_reason_string(struct mqtt_client *c, struct mqtt_packet *pkt, const char *why,
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
	mqtt_client_set_reason_string(c, &pkt, why, false);
	mqtt_client_send_packet(c, &pkt);
}

void mqtt_client_disconnect(struct mqtt_client *c, uint8_t rc, const char *why)
{
	if (c->state == MQTT_CLIENT_CLOSING)
		return;
	CLOG(rc >= 0x80 && rc != MQTT_RC_SHUTTING_DOWN ? KZ_LOG_WARN : KZ_LOG_INFO, c,
	     "disconnecting: 0x%02X %s: %s", rc, mqtt_rc_name(rc), why ? why : "");
	if (c->version == MQTT_V5 && c->state == MQTT_CLIENT_CONNECTED) {
		struct mqtt_packet pkt = { .type = MQTT_DISCONNECT, .reason = rc };
		mqtt_client_set_reason_string(c, &pkt, why, true);
		c->state = MQTT_CLIENT_CLOSING;
		mqtt_client_send_packet(c, &pkt);
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
	mqtt_client_set_reason_string(c, &pkt, why, true);
	if (c->version == MQTT_V5 || rc311 != 0xFF)
		mqtt_client_send_packet(c, &pkt);
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
	mqtt_client_send_packet(c, &pkt);
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
void mqtt_client_forward_props(const struct mqtt_props *pp, struct kz_buf *fw, const char *canon, size_t canon_len,
			       const char *origin)
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
		if ((!canon || uk.len != 8 || memcmp(uk.p, "kz-label", 8)) && !mqtt_user_key_lookalike(uk.p, uk.len) &&
		    !mqtt_user_key_is_origin(uk.p, uk.len)) /* only the node says who published */
			(void)mqtt_prop_append_pair(fw, uk, uv);
	if (canon)
		(void)mqtt_prop_append_pair(fw, (struct mqtt_str){ (const uint8_t *)"kz-label", 8 },
					    (struct mqtt_str){ (const uint8_t *)canon, (uint32_t)canon_len });
	if (origin) /* mqtt.origin_property: who published it, as its certificate says */
		(void)mqtt_prop_append_pair(fw, MQTT_ORIGIN_KEY,
					    (struct mqtt_str){ (const uint8_t *)origin, (uint32_t)strlen(origin) });
}

static struct mqtt_msg *will_new(struct mqtt_client *c, const struct mqtt_connect *k, const struct msg_label *ml)
{
	struct kz_buf fw;
	kz_buf_init(&fw, 0);
	const struct mqtt_props *wp = &k->will_props;
	mqtt_client_forward_props(wp, &fw, ml->canon, ml->len, c->broker->lim.origin_property ? c->peer_id : NULL);
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
const char *mqtt_client_reserved_why(const uint8_t *topic, size_t n)
{
	if (!kz_topic_reserved(topic, n))
		return NULL;
	if (n >= strlen(KZ_TOPIC_TAXII) && memcmp(topic, KZ_TOPIC_TAXII, strlen(KZ_TOPIC_TAXII)) == 0)
		return KZ_TOPIC_TAXII " topics hold validated STIX objects: post them over TAXII 2.1";
	if (n >= 4 && memcmp(topic, "$SYS", 4) == 0)
		return "$SYS topics are the server's";
	return "topics starting with '$' are reserved for the server (MQTT 5.0 4.7.2)";
}

/* One audit entry per identity and interval for its refusals by the per-identity limits
 * (aggregated, not per event). */
void mqtt_client_idl_audit(struct mqtt_client *c, const char *what)
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

/* Per-publisher order across a failover (docs/CLUSTER.md "Order across a failover"): a
 * CONNECT with a client id waits, unconsumed and with reading held, until this node has what
 * the stream held when it came (share->settled, which bounds the wait); the shard's tick, or
 * the cluster's kick when it caught up, asks again (mqtt_shard_connects_retry). */
static bool connect_settled(struct mqtt_client *c)
{
	const struct mqtt_share_ops *sh = c->shard->broker->share;
	if (!sh || !sh->settled)
		return true;
	if (!c->order_since_ns)
		c->order_since_ns = kz_now_wall_ns();
	bool ok = sh->settled(c->shard->broker->share_ctx, c->order_since_ns);
	if (ok == !c->order_wait)
		return ok;
	c->order_wait = !ok;
	if (ok)
		c->shard->n_order_wait--;
	else
		c->shard->n_order_wait++;
	if (c->ops->hold_reading)
		c->ops->hold_reading(c->transport, !ok);
	return ok;
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
		if ((why = mqtt_client_reserved_why(k->will_topic.p, k->will_topic.len)) != NULL) {
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
			/* not yet: the CONNECT (unconsumed) must be in c->in before another worker
			 * may take the client (migrate_now, when the input is handled) */
			c->migrate_to = home + 1;
			return;
		}
		if (!connect_settled(c))
			return; /* left unconsumed: answered when this node has caught up */
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
			mqtt_client_idl_audit(c, "connections");
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
	bool session_present = false, taken = false;
	uint64_t epoch = 0;
	if (!ss && b->share && !assigned) { /* another node's session (docs/CLUSTER.md "Sessions") */
		char *cid = malloc(id_len + 1);
		bool other = !cid;
		if (cid) {
			memcpy(cid, id, id_len);
			cid[id_len] = 0;
			ss = mqtt_session_import(c->shard, cid, c->peer_id, k->clean_start, &epoch, &taken, &other);
			free(cid);
		}
		if (other) {
			free(assigned);
			free(subj);
			refuse(c, MQTT_RC_CLIENT_ID_INVALID, MQTT311_ID_REJECTED,
			       "client identifier belongs to a session of another identity (on another node)");
			return;
		}
	}
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
		if (!taken)
			epoch = ss->share_epoch;
		if (k->clean_start) {
			mqtt_session_end(ss);
			ss = NULL;
		} else {
			session_present = true;
		}
	}
	if (!ss)
		ss = mqtt_session_new(c->shard, id, id_len);
	if (ss)
		ss->share_epoch = epoch;
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
	ss->offline_ns = 0;
	mqtt_session_share(ss, false); /* the other nodes learn who serves it now */
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
	mqtt_conns_add(c, ss->client_id);

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
	mqtt_client_send_packet(c, &ack);
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
		mqtt_handle_publish(c, pkt);
		return;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
		mqtt_session_ack(ss, pkt->type, pkt->packet_id, pkt->reason);
		return;
	case MQTT_PUBREL: {
		bool known = mqtt_client_rx_qos2_has(ss, pkt->packet_id);
		(void)mqtt_client_rx_qos2_set(ss, pkt->packet_id, false);
		mqtt_client_send_ack(c, MQTT_PUBCOMP, pkt->packet_id,
				     known ? 0 : MQTT_RC_PID_NOT_FOUND, NULL);
		return;
	}
	case MQTT_SUBSCRIBE:
		mqtt_handle_subscribe(c, pkt);
		return;
	case MQTT_UNSUBSCRIBE:
		mqtt_handle_unsubscribe(c, pkt);
		return;
	case MQTT_PINGREQ: {
		struct mqtt_packet r = { .type = MQTT_PINGRESP };
		mqtt_client_send_packet(c, &r);
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

/* A CONNECT for another shard, once every byte read is kept in c->in: the other worker may
 * run the client as soon as it is posted (a migration posted from inside process() raced
 * with the append of the CONNECT itself, and the CONNECT was then never answered). */
static void migrate_now(struct mqtt_client *c)
{
	if (!c->migrate_to)
		return;
	unsigned idx = c->migrate_to - 1;
	c->migrate_to = 0;
	if (c->state != MQTT_CLIENT_CLOSING)
		c->ops->migrate(c->transport, idx);
}

void mqtt_client_input(struct mqtt_client *c, const uint8_t *p, size_t n)
{
	if (c->state == MQTT_CLIENT_CLOSING)
		return;
	if (!c->shard || c->order_wait) { /* migrating, or the CONNECT waits: keep the bytes */
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
		migrate_now(c);
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
	migrate_now(c);
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
	migrate_now(c); /* not expected: this is the client's home */
}

void mqtt_shard_connects_retry(struct mqtt_shard *s)
{
	for (struct mqtt_client *c = s->clients, *n; c && s->n_order_wait; c = n) {
		n = c->next;
		if (!c->order_wait || c->state != MQTT_CLIENT_NEW)
			continue;
		size_t used;
		process(c, kz_buf_head(&c->in), c->in.len, &used);
		kz_buf_consume(&c->in, used);
		migrate_now(c);
	}
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
	mqtt_conns_remove(c);
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
	if (s && c->order_wait) {
		c->order_wait = false;
		s->n_order_wait--;
	}
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
		mqtt_client_client_free(c);
}

void mqtt_client_client_free(struct mqtt_client *c)
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
