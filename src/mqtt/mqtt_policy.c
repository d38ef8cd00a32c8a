/* mqtt_policy.c — the broker's side of the one decision point (docs/POLICY.md): subjects
 * of sessions, the per-delivery label check with its per-session decision cache, the
 * PUBLISH label, re-evaluation after a reload, and audit summaries of allowed decisions.
 *
 * Every send — live, retained, from a session queue, replayed, a restored backlog, a resend
 * with DUP after a reconnect — goes through mqtt_policy_may_send(): the label against the
 * session's subject, and, until the shard's tick has re-evaluated the session's
 * subscriptions under a new policy, whether a subscription that the policy still allows
 * matches the message. The re-evaluation removes the subscriptions that are no longer
 * allowed together with the queued and in-flight messages that only they matched. The
 * cache maps a label's hash to the decision for this session's subject and is cleared when
 * the policy generation changes (a reload of the policy or the registry, the only ways the
 * subject's attributes change: a session's identity is fixed), so a reload takes effect on
 * the next message. A will is decided again when it fires. */
#include "trust/access.h"
#include "mqtt/mqtt_internal.h"

#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_topic.h"
#include "trust/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The certificate and TLS group of the session's connection, when it has one. */
#define SS_SERIAL(ss) ((ss)->client ? (ss)->client->cert_serial : NULL)
#define SS_GROUP(ss) ((ss)->client ? (ss)->client->tls_group : NULL)
#define SS_ISSUER(ss) ((ss)->client ? (ss)->client->cert_issuer : NULL)
#define SS_TLS(ss) ((ss)->client ? (ss)->client->tls_suite : NULL)
#define SS_ADDR(ss) ((ss)->client ? (ss)->client->addr : NULL)

const struct kz_subject *mqtt_session_subject(struct mqtt_session *ss, const struct kz_policy *p)
{
	if (ss->subj && ss->subj->gen == p->gen)
		return ss->subj;
	if (!ss->subj && !(ss->subj = malloc(sizeof *ss->subj)))
		return NULL;
	kz_subject_init(p, ss->peer_id, ss->subj);
	return ss->subj;
}

static void audit_delivery_denied(struct mqtt_session *ss, const struct kz_policy *p, const struct mqtt_msg *m,
				  const char *why)
{
	char topic[256], label[KZ_LABEL_MAX_LEN + 1];
	snprintf(topic, sizeof topic, "%.*s", (int)m->topic_len, (const char *)m->topic);
	snprintf(label, sizeof label, "%.*s", (int)m->label_len, m->label ? (const char *)m->label : "");
	kz_audit(&(struct kz_audit_entry){ .subject = ss->peer_id,
					  .serial = SS_SERIAL(ss), .tls_group = SS_GROUP(ss), .issuer = SS_ISSUER(ss), .tls = SS_TLS(ss), .addr = SS_ADDR(ss), .action = "deliver", .resource = topic,
					  .label = m->label ? label : p->default_text, .allow = false, .reason = why,
					  .policy = p->version });
}

bool mqtt_policy_check_delivery(struct mqtt_session *ss, const struct mqtt_msg *m, bool count)
{
	const struct kz_policy *p = mqtt_policy(ss->shard->broker);
	if (!p)
		return true;
	if (ss->dc_gen != p->gen) {
		memset(ss->dc_val, 0, sizeof ss->dc_val);
		ss->dc_gen = p->gen;
	}
	uint64_t h = m->label ? m->label_hash : p->default_label.hash;
	unsigned slot = (unsigned)(h ^ (h >> 29)) & 7u;
	if (ss->dc_val[slot] && ss->dc_key[slot] == h) {
		if (ss->dc_val[slot] == 2) {
			ss->aud_delivered += count;
			return true;
		}
		ss->aud_withheld++;
		audit_delivery_denied(ss, p, m, "label not dominated by the subject (cached decision)");
		return false;
	}
	/* Miss: compile the label for this generation when the message's is from another. */
	const struct kz_subject *s = mqtt_session_subject(ss, p);
	const struct kz_label *l = &p->default_label;
	struct kz_label tmp;
	const char *why = "out of memory";
	bool allow = false;
	if (s && m->label) {
		if (m->lab && m->lab->gen == p->gen) {
			l = m->lab;
		} else {
			char canon[KZ_LABEL_MAX_LEN + 1], w[160];
			size_t cn;
			l = kz_label_parse(p, (const char *)m->label, m->label_len, &tmp, canon, &cn, w, sizeof w) ? NULL
															       : &tmp;
		}
	}
	if (s) /* l NULL: the label does not parse under this policy (why says so) */
		allow = kz_may_read(p, s, KZ_PATH_DELIVERY, &(struct kz_record_facts){ .label = l }, &why);
	ss->dc_key[slot] = h;
	ss->dc_val[slot] = allow ? 2 : 1;
	if (allow) {
		ss->aud_delivered += count;
	} else {
		ss->aud_withheld++;
		audit_delivery_denied(ss, p, m, why);
	}
	return allow;
}

/* Does a subscription of the session that p still allows match m's topic? */
static bool still_subscribed(struct mqtt_session *ss, const struct kz_policy *p, const struct mqtt_msg *m)
{
	const struct kz_subject *s = mqtt_session_subject(ss, p);
	if (!s)
		return false;
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		const struct mqtt_sub *sub = ss->subs[i];
		const char *why;
		if (kz_topic_match((const uint8_t *)sub->filter, sub->filter_len, m->topic, m->topic_len) &&
		    kz_policy_subscribe(p, s, sub->filter, sub->filter_len, &why))
			return true;
	}
	return false;
}

bool mqtt_policy_may_send(struct mqtt_session *ss, const struct mqtt_msg *m, bool count)
{
	const struct kz_policy *p = mqtt_policy(ss->shard->broker);
	if (!p)
		return true;
	if (ss->subs_gen != p->gen && !still_subscribed(ss, p, m)) {
		audit_delivery_denied(ss, p, m, "no subscription allowed by the policy in force matches");
		return false;
	}
	return mqtt_policy_check_delivery(ss, m, count);
}

bool mqtt_policy_will_allowed(struct mqtt_session *ss, const struct mqtt_msg *w)
{
	const struct kz_policy *p = mqtt_policy(ss->shard->broker);
	if (!p)
		return true;
	const struct kz_subject *s = mqtt_session_subject(ss, p);
	const char *why = "out of memory";
	char wbuf[200], canon[KZ_LABEL_MAX_LEN + 1];
	size_t cn;
	struct kz_label lab;
	bool ok = s && kz_policy_connect(p, s, &why);
	if (ok) {
		enum kz_write wr = kz_may_write(p, s, (const char *)w->topic, w->topic_len, (const char *)w->label,
						w->label_len, &lab, canon, &cn, wbuf, sizeof wbuf);
		/* (the label a will was accepted with is canonical: it parses unless the policy changed) */
		ok = wr == KZ_WRITE_OK;
		why = wr == KZ_WRITE_BAD_LABEL ? "its label is not valid under the policy in force" : wbuf;
	}
	if (ok)
		return true;
	char topic[256], reason[256];
	snprintf(topic, sizeof topic, "%.*s", (int)w->topic_len, (const char *)w->topic);
	snprintf(reason, sizeof reason, "will withheld when it fired: %s", why);
	kz_info("session '%s' (%s): will on '%s' withheld: %s under policy %s", ss->client_id, ss->peer_id, topic,
		why, p->version);
	kz_audit(&(struct kz_audit_entry){ .subject = ss->peer_id, .serial = SS_SERIAL(ss), .tls_group = SS_GROUP(ss), .issuer = SS_ISSUER(ss), .tls = SS_TLS(ss), .addr = SS_ADDR(ss),
					  .action = "publish", .resource = topic, .allow = false, .reason = reason,
					  .policy = p->version });
	return false;
}

bool mqtt_policy_publish(const struct kz_policy *p, const struct kz_subject *s, const struct mqtt_props *pp,
			 const uint8_t *topic, uint32_t topic_len, struct kz_label *lab, char *canon,
			 size_t *canon_len, uint8_t *rc, char *why, size_t why_len)
{
	*rc = MQTT_RC_NOT_AUTHORIZED;
	if (!s) {
		snprintf(why, why_len, "out of memory");
		return false;
	}
	size_t off = 0;
	struct mqtt_str k, v, given = { 0 };
	char bad[200] = ""; /* the first property the node refuses, in order */
	while (pp && !bad[0] && mqtt_user_next(pp, &off, &k, &v)) {
		if (mqtt_user_key_lookalike(k.p, k.len))
			snprintf(bad, sizeof bad, "user property '%.*s' looks like one of the node's (kz-...): names are "
				 "lower case without spaces", (int)(k.len < 64 ? k.len : 64), (const char *)k.p);
		else if (k.len == 8 && memcmp(k.p, "kz-label", 8) == 0 && given.p)
			snprintf(bad, sizeof bad, "kz-label: given twice");
		else if (k.len == 8 && memcmp(k.p, "kz-label", 8) == 0)
			given = v.p ? v : (struct mqtt_str){ (const uint8_t *)"", 0 };
	}
	/* trust decides: the topic's publish rules, then the label asked for (or the default) */
	char w[200];
	enum kz_write wr = kz_may_write(p, s, (const char *)topic, topic_len, (const char *)given.p, given.len, lab,
					canon, canon_len, w, sizeof w);
	if (wr == KZ_WRITE_DENIED) {
		snprintf(why, why_len, "%s", w);
		return false;
	}
	if (bad[0] || wr == KZ_WRITE_BAD_LABEL)
		*rc = MQTT_RC_IMPL_SPECIFIC;
	if (bad[0])
		snprintf(why, why_len, "%s", bad);
	else if (wr != KZ_WRITE_OK)
		snprintf(why, why_len, "kz-label: %s", w);
	return !bad[0] && wr == KZ_WRITE_OK;
}

static bool still_subscribed_cb(struct mqtt_session *ss, const struct mqtt_msg *m, void *p)
{
	return still_subscribed(ss, p, m);
}

/* Re-evaluates a session under a new policy: its connection, its subscriptions. */
static void reevaluate(struct mqtt_session *ss, const struct kz_policy *p)
{
	const struct kz_subject *s = mqtt_session_subject(ss, p);
	if (!s)
		return;
	const char *why;
	bool removed = false;
	ss->subs_gen = p->gen;
	if (ss->client && ss->client->state == MQTT_CLIENT_CONNECTED && !kz_policy_connect(p, s, &why)) {
		kz_info("session '%s' (%s): %s under policy %s; disconnecting", ss->client_id, ss->peer_id, why, p->version);
		kz_audit(&(struct kz_audit_entry){ .subject = ss->peer_id,
					  .serial = SS_SERIAL(ss), .tls_group = SS_GROUP(ss), .issuer = SS_ISSUER(ss), .tls = SS_TLS(ss), .addr = SS_ADDR(ss), .action = "connect", .resource = ss->client_id,
						  .allow = false, .reason = "no longer allowed after a policy reload",
						  .policy = p->version });
		mqtt_client_disconnect(ss->client, MQTT_RC_NOT_AUTHORIZED, "no longer allowed by the policy");
	}
	for (uint32_t i = 0; i < ss->n_subs;) {
		struct mqtt_sub *sub = ss->subs[i];
		if (kz_policy_subscribe(p, s, sub->filter, sub->filter_len, &why)) {
			i++;
			continue;
		}
		char full[1024];
		int n = sub->group ? snprintf(full, sizeof full, "$share/%s/%s", sub->group, sub->filter)
				   : snprintf(full, sizeof full, "%s", sub->filter);
		kz_info("session '%s' (%s): subscription '%s' removed: %s under policy %s", ss->client_id, ss->peer_id,
			full, why, p->version);
		kz_audit(&(struct kz_audit_entry){ .subject = ss->peer_id,
					  .serial = SS_SERIAL(ss), .tls_group = SS_GROUP(ss), .issuer = SS_ISSUER(ss), .tls = SS_TLS(ss), .addr = SS_ADDR(ss), .action = "subscribe", .resource = full,
						  .allow = false, .reason = "removed by a policy reload: not allowed any more",
						  .policy = p->version });
		if (n < 0 || (size_t)n >= sizeof full ||
		    mqtt_session_unsubscribe(ss, (const uint8_t *)full, (size_t)n) != KZ_OK) {
			i++; /* cannot name it: deliveries are still checked one by one */
			ss->subs_gen = 0;
		} else {
			removed = true;
		}
	}
	if (removed) /* what only the removed subscriptions matched is not sent */
		mqtt_session_purge(ss, still_subscribed_cb, (void *)p);
}

static void summarise(struct mqtt_session *ss, const struct kz_policy *p, uint64_t now)
{
	char why[160];
	uint64_t span = now - ss->aud_since_ms;
	if (ss->aud_delivered) {
		snprintf(why, sizeof why, "%llu deliveries allowed in %llu ms (summary)",
			 (unsigned long long)ss->aud_delivered, (unsigned long long)span);
		kz_audit(&(struct kz_audit_entry){ .subject = ss->peer_id,
					  .serial = SS_SERIAL(ss), .tls_group = SS_GROUP(ss), .issuer = SS_ISSUER(ss), .tls = SS_TLS(ss), .addr = SS_ADDR(ss), .action = "deliver", .resource = ss->client_id,
						  .allow = true, .reason = why, .policy = p->version,
						  .count = ss->aud_delivered });
	}
	if (ss->aud_published) {
		snprintf(why, sizeof why, "%llu publishes allowed in %llu ms (summary)",
			 (unsigned long long)ss->aud_published, (unsigned long long)span);
		kz_audit(&(struct kz_audit_entry){ .subject = ss->peer_id,
					  .serial = SS_SERIAL(ss), .tls_group = SS_GROUP(ss), .issuer = SS_ISSUER(ss), .tls = SS_TLS(ss), .addr = SS_ADDR(ss), .action = "publish", .resource = ss->client_id,
						  .allow = true, .reason = why, .policy = p->version,
						  .count = ss->aud_published });
	}
	ss->aud_delivered = ss->aud_published = ss->aud_withheld = 0;
	ss->aud_since_ms = now;
}

void mqtt_policy_tick(struct mqtt_shard *s)
{
	const struct kz_policy *p = mqtt_policy(s->broker);
	if (!p)
		return;
	bool reload = s->policy_gen_seen != p->gen;
	s->policy_gen_seen = p->gen;
	uint64_t now = s->now_ms;
	uint32_t every = s->broker->audit_summary_ms ? s->broker->audit_summary_ms : 10000;
	for (uint32_t i = 0; i < s->cap_sessions; i++) {
		struct mqtt_session *ss = s->sessions[i];
		if (!ss)
			continue;
		if (reload)
			reevaluate(ss, p);
		if (!ss->aud_since_ms)
			ss->aud_since_ms = now;
		else if (now - ss->aud_since_ms >= every)
			summarise(ss, p, now);
	}
}

/* A session ends: its counts are written now rather than lost. */
void mqtt_policy_session_end(struct mqtt_session *ss)
{
	const struct kz_policy *p = mqtt_policy(ss->shard->broker);
	if (p && (ss->aud_delivered || ss->aud_published))
		summarise(ss, p, ss->shard->now_ms);
	free(ss->subj);
	ss->subj = NULL;
}
