/* mqtt_publish.c — PUBLISH from a client: aliases, the policy, the record, the store and
 * its completion, routing, acknowledgements (MQTT 5.0 §3.3, §4.3). */
#include "mqtt/mqtt_internal.h"
#include "base/kz_array.h"
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

bool mqtt_client_rx_qos2_has(struct mqtt_session *ss, uint16_t pid)
{
	return ss->rx_qos2 && (ss->rx_qos2[pid >> 3] & (1u << (pid & 7)));
}

int mqtt_client_rx_qos2_set(struct mqtt_session *ss, uint16_t pid, bool on)
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
	if ((c->version == MQTT_V5 && pp->raw.len) || ml->canon || c->broker->lim.origin_property)
		mqtt_client_forward_props(pp, &fw, ml->canon, ml->len, c->broker->lim.origin_property ? c->peer_id : NULL);
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

/* Retains (when asked) and routes an accepted message; ack_rc and ack_why say what its
 * acknowledgement says. */
/* Remembers a QoS 2 packet id whose record is on its way to the store. */
static int q2_pending_add(struct mqtt_client *c, uint16_t pid)
{
	if (c->n_q2_pending == c->cap_q2_pending) {
		size_t ncap;
		uint16_t *nv = kz_array_grow(c->q2_pending, sizeof *nv, c->cap_q2_pending, (size_t)c->cap_q2_pending + 1, 8, UINT32_MAX, &ncap);
		if (!nv)
			return KZ_ENOMEM;
		c->q2_pending = nv;
		c->cap_q2_pending = (uint32_t)ncap;
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
 * durable, then are routed (by the broker) and acknowledged (publish_stored). */
static void publish_stored(struct mqtt_stored *st, uint8_t rc, const char *why);

static void publish_store(struct mqtt_client *c, const struct mqtt_packet *pkt, struct mqtt_msg *m)
{
	struct mqtt_broker *b = c->broker;
	if (pkt->qos && b->repl_gate && b->repl_ok && !b->repl_ok(b->repl_ctx)) {
		/* cluster.on_quorum_loss = refuse (docs/CLUSTER.md): nothing acknowledged that JetStream
		 * cannot hold too; QoS 0 and reading go on */
		mqtt_msg_unref(m);
		publish_refuse(c, pkt, MQTT_RC_QUOTA_EXCEEDED, "cluster has no JetStream quorum: not stored");
		return;
	}
	struct kz_buf rec;
	kz_buf_init(&rec, 0);
	if (mqtt_record_encode(c->broker, m, c->peer_id, &rec)) {
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
		mqtt_broker_publish(c->shard, m, &rc, &why);
		mqtt_msg_unref(m);
		store_backpressure(c);
		return;
	}
	struct mqtt_stored *st = calloc(1, sizeof *st);
	bool q2 = pkt->qos == 2;
	if (!st || (q2 && mqtt_client_rx_qos2_set(c->session, pkt->packet_id, true))) {
		free(st);
		st = NULL;
	} else if ((q2 && q2_pending_add(c, pkt->packet_id)) || mqtt_shard_store(c->shard, data, len, st, m)) {
		if (q2) {
			q2_pending_del(c, pkt->packet_id);
			(void)mqtt_client_rx_qos2_set(c->session, pkt->packet_id, false);
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
	*st = (struct mqtt_stored){ .done = publish_stored, .client = c, .msg = m, .shard = c->shard,
				    .packet_id = pkt->packet_id, .qos = pkt->qos };
	/* Input flow control: a client (3.1.1 has no Receive Maximum) cannot have more than
	 * max_inflight records waiting for the disk; reading resumes as they become durable. */
	if (++c->store_pending == c->broker->lim.max_inflight && c->ops->hold_reading)
		c->ops->hold_reading(c->transport, true);
	store_backpressure(c);
}


/* The record is durable (or could not be stored) and the broker has routed the message:
 * the publisher's answer, and its reading may resume. */
static void publish_stored(struct mqtt_stored *st, uint8_t rc, const char *why)
{
	struct mqtt_client *c = st->client;
	if (c->store_pending-- == c->broker->lim.max_inflight && !c->zombie && !c->store_held &&
	    c->ops->hold_reading)
		c->ops->hold_reading(c->transport, false);
	if (!c->zombie) {
		if (st->qos == 2)
			q2_pending_del(c, st->packet_id);
		if (st->status != KZ_OK) {
			char reason[128];
			snprintf(reason, sizeof reason, "not stored: %s; nothing was acknowledged",
				 kz_strerror(st->status));
			if (st->qos == 2 && c->session)
				(void)mqtt_client_rx_qos2_set(c->session, st->packet_id, false);
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
		mqtt_client_client_free(c);
}

void mqtt_handle_publish(struct mqtt_client *c, const struct mqtt_packet *pkt)
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
			mqtt_client_idl_audit(c, "publish rate or bytes");
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
	if (pkt->qos == 2 && mqtt_client_rx_qos2_has(ss, pkt->packet_id)) {
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
	if ((why = mqtt_client_reserved_why(topic.p, topic.len)) != NULL) {
		publish_refuse(c, pkt, MQTT_RC_NOT_AUTHORIZED, why);
		return;
	}
	if (b->payload_check &&
	    (why = b->payload_check(&c->shard->json, topic.p, topic.len, pkt->payload.p, pkt->payload.len)) != NULL) {
		publish_refuse(c, pkt, MQTT_RC_PAYLOAD_FORMAT_INVALID, why);
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
	if (b->service_publish) {
		uint8_t src = MQTT_RC_IMPL_SPECIFIC;
		if (pol && ml.len < sizeof canon)
			canon[ml.len] = 0;
		why = b->service_publish(b->service_ctx, c->peer_id, topic.p, topic.len, pkt->payload.p,
					 pkt->payload.len, pol ? canon : NULL, &src);
		if (why) {
			publish_refuse(c, pkt, src, why);
			return;
		}
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
	mqtt_broker_publish(c->shard, m, &ack_rc, &ack_why);
	mqtt_msg_unref(m);
	if (pkt->qos == 1) {
		mqtt_client_send_ack(c, MQTT_PUBACK, pkt->packet_id, ack_rc, ack_why);
	} else if (pkt->qos == 2) {
		if (mqtt_client_rx_qos2_set(ss, pkt->packet_id, true)) {
			mqtt_client_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
			return;
		}
		mqtt_client_send_ack(c, MQTT_PUBREC, pkt->packet_id, ack_rc, ack_why);
	}
}

/* ---------- SUBSCRIBE / UNSUBSCRIBE ---------- */
