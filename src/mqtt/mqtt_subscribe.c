/* mqtt_subscribe.c — SUBSCRIBE and UNSUBSCRIBE from a client, with replays of stored
 * records (MQTT 5.0 §3.8, §3.10; docs/MQTT.md). */
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
	if (!g) { /* the subscription, for its retained messages or a snapshot */
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

/* The user property kz-snapshot on a SUBSCRIBE: the subscriptions it makes get the current
 * entity picture first (docs/ENTITIES.md "Over MQTT"). */
static bool snapshot_requested(const struct mqtt_packet *pkt)
{
	size_t off = 0;
	struct mqtt_str k, v;
	while (mqtt_user_next(&pkt->props, &off, &k, &v))
		if (k.len == 11 && memcmp(k.p, "kz-snapshot", 11) == 0)
			return true;
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

void mqtt_handle_subscribe(struct mqtt_client *c, const struct mqtt_packet *pkt)
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
	bool snapshot = c->version == MQTT_V5 && c->shard->broker->sub_snapshot && snapshot_requested(pkt);
	struct mqtt_sub **snaps = snapshot ? calloc(pkt->n_entries, sizeof *snaps) : NULL;
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
		if (snaps && rc < 0x80 && ret[i] && !ret[i]->group)
			snaps[i] = ret[i];
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
		mqtt_client_set_reason_string(c, &ack, replay_why[0] ? replay_why : policy_why, false);
		mqtt_client_send_packet(c, &ack);
		for (uint32_t k = 0; k < i; k++) /* after the SUBACK (§3.8.4) */
			if (ret[k])
				mqtt_retained_deliver(c->shard->broker, ret[k]);
		for (uint32_t k = 0; snaps && k < i; k++)
			if (snaps[k])
				c->shard->broker->sub_snapshot(c->shard->broker->sub_snapshot_ctx, snaps[k]);
	}
	free(snaps);
	if (rcs != codes)
		free(rcs);
	free(ret);
}

void mqtt_handle_unsubscribe(struct mqtt_client *c, const struct mqtt_packet *pkt)
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
	mqtt_client_send_packet(c, &ack);
	if (rcs != codes)
		free(rcs);
}
