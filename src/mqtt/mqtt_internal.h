/* mqtt_internal.h — functions shared between the broker's own files only. */
#ifndef MQTT_INTERNAL_H
#define MQTT_INTERNAL_H

#include "mqtt/mqtt_broker.h"
#include "base/kz_log.h"

#include <string.h>

/* Subscriber list stored as a subscription-trie node's value. */
struct mqtt_sublist {
	uint32_t n, cap;
	struct mqtt_sub *v[];
};

int mqtt_share_add(struct mqtt_broker *b, const struct mqtt_sub *sub, unsigned shard);
void mqtt_share_remove(struct mqtt_broker *b, const struct mqtt_sub *sub);
/* Queues an encoded record (data: malloc'd, taken) for the store (handed over in
 * mqtt_shard_flush). With st (QoS 1/2) the
 * answer comes back through the shard's inbox; without, msg (QoS 0, a reference taken)
 * only learns its sequence number. */
int mqtt_shard_store(struct mqtt_shard *s, uint8_t *data, uint32_t len, struct mqtt_stored *st,
		     struct mqtt_msg *msg);
/* Marks the session's shared-subscription memberships online or offline. */
void mqtt_share_set_online(struct mqtt_session *ss, bool online);
/* Sends msg to a member of group gid other than exclude (NULL = any); dropped (and counted)
 * when the group is gone, has no other member, or the message was re-routed too often. */
void mqtt_share_reroute(struct mqtt_shard *s, uint32_t gid, struct mqtt_msg *msg,
			const char *exclude, uint8_t hops);
/* Sends retained messages matching sub to its session (on subscribe). */
void mqtt_retained_deliver(struct mqtt_broker *b, struct mqtt_sub *sub);
/* Builds and routes the will message of a session. */
void mqtt_shard_publish_will(struct mqtt_shard *s, struct mqtt_session *ss);
void mqtt_shard_session_remove(struct mqtt_shard *s, struct mqtt_session *ss);
int mqtt_shard_session_insert(struct mqtt_shard *s, struct mqtt_session *ss);
void mqtt_shard_client_unlink(struct mqtt_shard *s, struct mqtt_client *c);
void mqtt_shard_client_link(struct mqtt_shard *s, struct mqtt_client *c);
/* The shards' inboxes (mqtt_broker.c): push onto a queue, append a queue to shard idx's
 * inbox, post one envelope to it (any thread; wakes its worker). */
int mqtt_envq_push(struct mqtt_envq *q, const struct mqtt_env *e);
void mqtt_inbox_append(struct mqtt_broker *b, unsigned idx, struct mqtt_envq *src);
int mqtt_inbox_post(struct mqtt_broker *b, unsigned idx, const struct mqtt_env *e);
/* Records and the store (mqtt_stored.c): the store thread's answer for a QoS 1/2 record; its
 * routing on the shard, then the publisher's answer (or parked for the cluster); the parked
 * answers JetStream has confirmed by now. */
void mqtt_stored_done(void *ctx, int status, uint64_t seq);
void mqtt_stored_route(struct mqtt_stored *st);
void mqtt_parked_release(struct mqtt_shard *s);
/* Asks the shard's worker for another loop iteration soon (posts an empty envelope). */
void mqtt_shard_wake_self(struct mqtt_shard *s);
/* The record of a message accepted from origin_id (a PUBLISH, or a will the node publishes
 * for its client): one builder for both (mqtt_record.c, docs/STORE.md "Attributes"). */
int mqtt_record_encode(const struct mqtt_broker *b, const struct mqtt_msg *m, const char *origin_id,
		       struct kz_buf *out);

/* Bytes of messages posted to the shards' inboxes and not yet drained (all shards). */
uint64_t mqtt_broker_route_backlog(struct mqtt_broker *b);
/* Counts a client's new QoS 0 drops (and a slow-client disconnect) in the broker's table. */
void mqtt_broker_slow_report(struct mqtt_client *c, bool disconnected);

/* Session persistence (mqtt_session.c): no-ops for sessions that are not persisted. */
void mqtt_session_persist_connect(struct mqtt_session *ss, bool fresh);
void mqtt_session_persist_offline(struct mqtt_session *ss);
/* The session's will as session state stores it (pointing into the will), or NULL. */
const struct kz_state_will *mqtt_session_will_state(const struct mqtt_session *ss, struct kz_state_will *w);
/* Tells the cluster the session's state (broker->share; no-op alone, for sessions that are
 * not persistent, and for one another node took). */
void mqtt_session_share(struct mqtt_session *ss, bool ended);
/* Another node took it (MQTT_ENV_MOVED). */
void mqtt_session_moved(struct mqtt_session *ss, uint64_t epoch, bool tie_wins, bool ended);
/* The client's entry in the broker's list of connections (mqtt_conns.c). */
void mqtt_conns_add(struct mqtt_client *c, const char *client_id);
void mqtt_conns_remove(struct mqtt_client *c);
/* This node took the session of a dead node (MQTT_ENV_ADOPT): made here from share->fetch
 * without a connection, unless a session with that client id is here already. */
void mqtt_session_adopt(struct mqtt_shard *s, const char *client_id);
/* At a CONNECT for a client id this node holds no session for: when another node had one,
 * *taken with the *epoch the new session takes over with, and, for clean start 0, that
 * session made here (its subscriptions, its backlog replayed from this node's log), else NULL.
 * *refuse: it belongs to another identity. */
struct mqtt_session *mqtt_session_import(struct mqtt_shard *s, const char *client_id, const char *peer_id,
					 bool clean_start, uint64_t *epoch, bool *taken, bool *refuse);
/* Writes the watermark when it moved and a second has passed (or force). */
void mqtt_session_persist_acked(struct mqtt_session *ss, uint64_t cap, bool force);

/* Replays (kz-replay-since, mqtt_replay.c). */
int mqtt_replay_begin(struct mqtt_sub *sub, uint64_t start_seq);
void mqtt_replay_end(struct mqtt_sub *sub);
/* A live message for a subscription that is still replaying: held until the seam. */
void mqtt_replay_hold(struct mqtt_sub *sub, struct mqtt_msg *msg, uint8_t qos, bool retain);
/* Advances every replay of the shard whose client can take more (each loop iteration). */
void mqtt_shard_replays_run(struct mqtt_shard *s);

/* The user property that says who published a delivery (mqtt.origin_property): only the node
 * writes it; a client's is never forwarded nor stored. */
#define MQTT_ORIGIN_KEY ((struct mqtt_str){ (const uint8_t *)"kz-origin", 9 })
static inline bool mqtt_user_key_is_origin(const uint8_t *k, size_t n)
{
	return n == 9 && memcmp(k, "kz-origin", 9) == 0;
}

/* A user property name that reads as one of the node's own (kz-label, kz-replay-since, ...)
 * without being spelled as one: different case or surrounding white space ("KZ-LABEL",
 * "kz-label "). Such names are refused under a policy and never forwarded. */
static inline bool mqtt_user_key_lookalike(const uint8_t *k, size_t n)
{
	size_t a = 0, b = n;
	while (a < b && (k[a] == ' ' || k[a] == '\t' || k[a] == '\r' || k[a] == '\n'))
		a++;
	while (b > a && (k[b - 1] == ' ' || k[b - 1] == '\t' || k[b - 1] == '\r' || k[b - 1] == '\n'))
		b--;
	if (b - a < 3 || (k[a] | 0x20) != 'k' || (k[a + 1] | 0x20) != 'z' || k[a + 2] != '-')
		return false;
	if (a != 0 || b != n)
		return true;
	for (size_t i = 0; i < n; i++)
		if (k[i] >= 'A' && k[i] <= 'Z')
			return true;
	return false;
}

/* The decision point (mqtt_policy.c). */
static inline const struct kz_policy *mqtt_policy(struct mqtt_broker *b)
{
	return atomic_load_explicit(&b->policy, memory_order_acquire);
}
/* The session's subject under p, recompiled when the policy or the identity changed;
 * NULL on out of memory. */
const struct kz_subject *mqtt_session_subject(struct mqtt_session *ss, const struct kz_policy *p);
/* May msg be delivered to the session? True without a policy. Denials are audited. */
bool mqtt_policy_check_delivery(struct mqtt_session *ss, const struct mqtt_msg *msg, bool count);
/* May msg be sent to the session now (every send: first, queued, resent)? The label, and,
 * while the session's subscriptions have not been re-evaluated under the policy in force,
 * a subscription that the policy still allows must match. True without a policy. */
bool mqtt_policy_may_send(struct mqtt_session *ss, const struct mqtt_msg *msg, bool count);
static inline bool mqtt_policy_may_deliver(struct mqtt_session *ss, const struct mqtt_msg *msg)
{
	return !atomic_load_explicit(&ss->shard->broker->policy, memory_order_relaxed) ||
	       mqtt_policy_may_send(ss, msg, true);
}
/* May the session's will be published now that it fires (the publisher may have lost the
 * right to its topic or label since CONNECT)? Denials are audited. */
bool mqtt_policy_will_allowed(struct mqtt_session *ss, const struct mqtt_msg *will);
/* Drops the queued and in-flight (not yet released) messages for which keep() is false. */
void mqtt_session_purge(struct mqtt_session *ss, bool (*keep)(struct mqtt_session *ss, const struct mqtt_msg *m, void *ctx),
			void *ctx);
/* PUBLISH (and will) decision: the label comes from the user property kz-label (MQTT 5) or
 * the policy's default for the topic. On allow, lab/canon/canon_len hold it; on deny *rc
 * and why (why_len bytes) say why. */
bool mqtt_policy_publish(const struct kz_policy *p, const struct kz_subject *s, const struct mqtt_props *pp,
			 const uint8_t *topic, uint32_t topic_len, struct kz_label *lab, char *canon,
			 size_t *canon_len, uint8_t *rc, char *why, size_t why_len);
/* Per tick: re-evaluates the shard's sessions after a reload, writes audit summaries. */
void mqtt_policy_tick(struct mqtt_shard *s);
/* Writes the session's pending summaries and frees its subject (session free). */
void mqtt_policy_session_end(struct mqtt_session *ss);


/* mqtt_client.c, mqtt_publish.c and mqtt_subscribe.c: one connection's packets. */
/* A label decided by the policy for a message being created: NULL canon = none. */
struct kz_label;
struct msg_label {
	const char *canon;
	size_t len;
	const struct kz_label *lab;
};

void mqtt_client_client_free(struct mqtt_client *c);
void mqtt_client_forward_props(const struct mqtt_props *pp, struct kz_buf *fw, const char *canon, size_t canon_len,
			       const char *origin);
void mqtt_handle_publish(struct mqtt_client *c, const struct mqtt_packet *pkt);
void mqtt_handle_subscribe(struct mqtt_client *c, const struct mqtt_packet *pkt);
void mqtt_handle_unsubscribe(struct mqtt_client *c, const struct mqtt_packet *pkt);
void mqtt_client_idl_audit(struct mqtt_client *c, const char *what);
const char *mqtt_client_reserved_why(const uint8_t *topic, size_t n);
bool mqtt_client_rx_qos2_has(struct mqtt_session *ss, uint16_t pid);
int mqtt_client_rx_qos2_set(struct mqtt_session *ss, uint16_t pid, bool on);
void mqtt_client_send_packet(struct mqtt_client *c, const struct mqtt_packet *pkt);
void mqtt_client_set_reason_string(struct mqtt_client *c, struct mqtt_packet *pkt, const char *why,
				   bool always);
/* A log line about one connection, prefixed with its number, identity and client id. */
void mqtt_clog(enum kz_log_level lvl, const struct mqtt_client *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define CLOG(lvl, c, ...) mqtt_clog(lvl, c, __VA_ARGS__)

#endif
