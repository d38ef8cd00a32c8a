/* mqtt_session.c — MQTT sessions: subscriptions, the outbound QoS window, the offline queue
 * and inbound QoS 2 state (MQTT 5.0 §4.1, §4.3, §4.4). */
#include "mqtt/mqtt_internal.h"
#include "base/kz_array.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_log.h"
#include "base/kz_time.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct mqtt_session *mqtt_session_new(struct mqtt_shard *s, const uint8_t *id, size_t n)
{
	struct mqtt_session *ss = calloc(1, sizeof *ss);
	if (!ss)
		return NULL;
	ss->client_id = malloc(n + 1);
	if (!ss->client_id) {
		free(ss);
		return NULL;
	}
	memcpy(ss->client_id, id, n);
	ss->client_id[n] = 0;
	ss->client_id_len = (uint32_t)n;
	ss->shard = s;
	ss->uid = atomic_fetch_add(&s->broker->next_uid, 1) + 1;
	ss->next_pid = 1;
	if (mqtt_shard_session_insert(s, ss)) {
		free(ss->client_id);
		free(ss);
		return NULL;
	}
	return ss;
}

bool mqtt_session_invariants_ok(const struct mqtt_session *ss)
{
	const struct mqtt_limits *lim = &ss->shard->broker->lim;
	if (ss->n_inflight > ss->inflight_cap)
		return false;
	uint32_t used = 0;
	for (uint32_t i = 0; i < ss->inflight_cap; i++)
		used += ss->inflight[i].packet_id != 0;
	if (used != ss->n_inflight)
		return false;
	if (ss->q_len > lim->max_queued_msgs || ss->q_bytes > lim->max_queued_bytes)
		return false;
	return !ss->client || ss->client->session == ss;
}

static void sublist_remove(struct mqtt_shard *s, struct mqtt_sub *sub)
{
	struct mqtt_trie_node *nd = mqtt_trie_get(&s->subs, (const uint8_t *)sub->filter,
						   sub->filter_len, 0);
	if (!nd || !nd->value)
		return;
	struct mqtt_sublist *l = nd->value;
	for (uint32_t i = 0; i < l->n; i++) {
		if (l->v[i] == sub) {
			l->v[i] = l->v[--l->n];
			break;
		}
	}
	if (l->n == 0) {
		free(l);
		nd->value = NULL;
		mqtt_trie_prune(&s->subs, nd);
	}
	atomic_fetch_sub(&s->n_subs, 1);
}

static int sublist_add(struct mqtt_shard *s, struct mqtt_sub *sub)
{
	struct mqtt_trie_node *nd = mqtt_trie_get(&s->subs, (const uint8_t *)sub->filter,
						   sub->filter_len, 1);
	if (!nd)
		return KZ_ENOMEM;
	struct mqtt_sublist *l = nd->value;
	if (!l || l->n == l->cap) {
		uint32_t ncap = l ? l->cap * 2 : 2;
		struct mqtt_sublist *nl = realloc(l, sizeof *nl + ncap * sizeof nl->v[0]);
		if (!nl) {
			if (!l)
				mqtt_trie_prune(&s->subs, nd);
			return KZ_ENOMEM;
		}
		if (!l)
			nl->n = 0;
		nl->cap = ncap;
		l = nl;
		nd->value = l;
	}
	l->v[l->n++] = sub;
	atomic_fetch_add(&s->n_subs, 1);
	return KZ_OK;
}

static void sub_free(struct mqtt_sub *sub)
{
	if (!sub)
		return;
	if (sub->replay)
		mqtt_replay_end(sub);
	free(sub->filter);
	free(sub->group);
	free(sub);
}

static void sub_detach(struct mqtt_session *ss, struct mqtt_sub *sub)
{
	if (sub->group)
		mqtt_share_remove(ss->shard->broker, sub);
	else
		sublist_remove(ss->shard, sub);
}

static bool same_sub(const struct mqtt_sub *sub, const uint8_t *g, size_t gl, const uint8_t *f,
		     size_t fl)
{
	if (sub->filter_len != fl || memcmp(sub->filter, f, fl) != 0)
		return false;
	if (!g)
		return sub->group == NULL;
	return sub->group && strlen(sub->group) == gl && memcmp(sub->group, g, gl) == 0;
}

/* ---------- persistence (DIR/sessions.db through kz_state) ---------- */

static void state_result(struct mqtt_broker *b, int rc)
{
	bool was = atomic_exchange(&b->state_failing, rc != 0);
	if (rc && !was)
		kz_error("sessions: writing session state fails; sessions may not survive a restart");
	else if (!rc && was)
		kz_warn("sessions: writing session state works again");
}

static void persist_sub(struct mqtt_session *ss, const struct mqtt_sub *sub)
{
	ss->share_dirty = ss->shard->broker->share != NULL;
	if (!ss->persisted)
		return;
	struct kz_state_sub s = { sub->filter, sub->group, sub->qos, sub->retain_handling, sub->no_local,
				  sub->retain_as_published, sub->sub_id };
	state_result(ss->shard->broker, kz_state_sub_put(ss->shard->broker->state, ss->client_id, &s));
}

void mqtt_session_persist_connect(struct mqtt_session *ss, bool fresh)
{
	struct mqtt_broker *b = ss->shard->broker;
	if (!b->state)
		return;
	if (ss->expiry_s == 0) { /* not (or no longer) a persistent session */
		if (ss->persisted)
			state_result(b, kz_state_ended(b->state, ss->client_id));
		ss->persisted = false;
		return;
	}
	struct kz_state_will w;
	const struct kz_state_will *wp = mqtt_session_will_state(ss, &w);
	/* from now on: older records are not this session's (one taken from another node keeps
	 * the watermark it came with: its backlog is being replayed) */
	if ((fresh || !ss->persisted) && !ss->imported)
		ss->acked_saved = b->store ? kz_store_durable_next(b->store) - 1 : 0;
	ss->imported = false;
	bool was = ss->persisted;
	state_result(b, kz_state_connected(b->state, ss->client_id, ss->peer_id, ss->expiry_s, wp, fresh || !was,
					   ss->acked_saved, ss->share_epoch));
	ss->persisted = true;
	if (!was && !fresh) /* a continuing session that becomes persistent: its subscriptions */
		for (uint32_t i = 0; i < ss->n_subs; i++)
			persist_sub(ss, ss->subs[i]);
}

const struct kz_state_will *mqtt_session_will_state(const struct mqtt_session *ss, struct kz_state_will *w)
{
	const struct mqtt_msg *m = ss->will;
	if (!m)
		return NULL;
	*w = (struct kz_state_will){ { m->topic, m->topic_len }, { m->payload, m->payload_len }, { m->props, m->props_len },
				     m->qos, m->retain, ss->will_delay_s, m->expiry_s, m->has_expiry };
	return w;
}

void mqtt_session_persist_offline(struct mqtt_session *ss)
{
	if (!ss->offline_ns) /* a connection left now (an adopted session keeps its time) */
		ss->offline_ns = kz_now_wall_ns();
	mqtt_session_share(ss, false);
	if (ss->persisted)
		state_result(ss->shard->broker,
			     kz_state_offline(ss->shard->broker->state, ss->client_id, ss->offline_ns, ss->expiry_s));
}

static void lower(uint64_t *lo, const struct mqtt_msg *m)
{
	if (!m) /* QoS 2 after PUBREC: the client has it (only PUBREL/PUBCOMP remain) */
		return;
	uint64_t seq = atomic_load_explicit(&m->seq, memory_order_acquire);
	if (seq != MQTT_SEQ_NONE && seq != MQTT_SEQ_PENDING && seq - 1 < *lo)
		*lo = seq - 1;
}

void mqtt_session_persist_acked(struct mqtt_session *ss, uint64_t cap, bool force)
{
	if (!ss->persisted)
		return;
	/* Every QoS 1/2 record up to lo was delivered and acknowledged: nothing at or below it
	 * is in flight, queued or still to replay, and cap (the durable end a while ago) keeps
	 * out records that may still be on their way from another worker. */
	uint64_t lo = cap;
	for (uint32_t i = 0; i < ss->inflight_cap; i++)
		if (ss->inflight[i].packet_id)
			lower(&lo, ss->inflight[i].msg);
	for (uint32_t i = 0; i < ss->q_len; i++)
		lower(&lo, ss->queue[(ss->q_head + i) % ss->q_cap].msg);
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		const struct mqtt_replay *r = ss->subs[i]->replay;
		if (r && r->next - 1 < lo)
			lo = r->next - 1;
		for (uint32_t k = 0; r && k < r->n_held; k++)
			lower(&lo, r->held[k].msg);
	}
	uint64_t now = ss->shard->now_ms;
	if (lo == ss->acked_saved || (!force && now - ss->acked_write_ms < 1000))
		return;
	state_result(ss->shard->broker, kz_state_acked(ss->shard->broker->state, ss->client_id, lo));
	ss->acked_saved = lo;
	ss->acked_write_ms = now;
	ss->share_dirty = ss->shard->broker->share != NULL;
}

int mqtt_broker_restore_session(struct mqtt_broker *b, const struct kz_state_session *p, uint64_t now_ns)
{
	size_t idl = strlen(p->client_id);
	struct mqtt_shard *s = &b->shards[mqtt_broker_home(b, (const uint8_t *)p->client_id, idl)];
	struct mqtt_session *ss = mqtt_session_new(s, (const uint8_t *)p->client_id, idl);
	if (!ss)
		return KZ_ENOMEM;
	uint64_t now_ms = kz_now_mono_ms();
	/* Offline since then; one that was connected when the node stopped lost its connection now. */
	uint64_t since = p->offline_since_ns && p->offline_since_ns <= now_ns ? p->offline_since_ns : now_ns;
	uint64_t gone_ms = (now_ns - since) / 1000000u;
	ss->offline_ns = since;
	ss->expiry_s = p->expiry_s;
	ss->persisted = true;
	ss->peer_id = p->peer_id && p->peer_id[0] ? strdup(p->peer_id) : NULL;
	ss->acked_saved = p->acked_through;
	ss->share_epoch = p->epoch;
	if (p->expiry_s != UINT32_MAX) {
		uint64_t left = (uint64_t)p->expiry_s * 1000u > gone_ms ? (uint64_t)p->expiry_s * 1000u - gone_ms : 0;
		ss->expire_at_ms = now_ms + left; /* past: it ends at the first tick */
	}
	if (p->will) {
		const struct kz_state_will *w = p->will;
		/* Its label travels in its forwarded properties (the canonical kz-label). */
		struct mqtt_props fp = { .raw = { w->props.p, w->props.len } };
		struct mqtt_str k, v = { NULL, 0 };
		size_t off = 0;
		while (mqtt_user_next(&fp, &off, &k, &v) && (k.len != 8 || memcmp(k.p, "kz-label", 8)))
			v = (struct mqtt_str){ NULL, 0 };
		ss->will = mqtt_msg_new_labelled(w->topic.p, w->topic.len, w->payload.p, w->payload.len, w->props.p,
						 w->props.len, v.p, v.len, NULL);
		if (ss->will) {
			ss->will->qos = w->qos;
			ss->will->retain = w->retain;
			ss->will->has_expiry = w->has_expiry;
			ss->will->expiry_s = w->expiry_s;
			ss->will->created_ms = now_ms;
			ss->will_delay_s = w->delay_s;
			uint64_t delay = (uint64_t)(w->delay_s < p->expiry_s ? w->delay_s : p->expiry_s) * 1000u;
			ss->will_at_ms = now_ms + (delay > gone_ms ? delay - gone_ms : 0);
			if (ss->will_at_ms == 0)
				ss->will_at_ms = 1;
		}
	}
	for (size_t i = 0; i < p->n_subs; i++) {
		const struct kz_state_sub *st = &p->subs[i];
		struct mqtt_sub_entry e = { .filter = mqtt_cstr(st->filter), .qos = st->qos,
					    .retain_handling = st->retain_handling, .no_local = st->no_local,
					    .retain_as_published = st->retain_as_published };
		bool existed;
		ss->persisted = false; /* already stored: do not write it back */
		int rc = mqtt_session_subscribe(ss, &e, (const uint8_t *)st->group, st->group ? strlen(st->group) : 0,
						(const uint8_t *)st->filter, strlen(st->filter), st->sub_id, &existed);
		ss->persisted = true;
		if (rc)
			return rc;
		struct mqtt_sub *sub = ss->subs[ss->n_subs - 1];
		/* The QoS 1/2 records it had not acknowledged, and those that came while it was
		 * away, wait for it in the log. Shared subscriptions: their messages went to the
		 * group, so no backlog is rebuilt for them. */
		if (!sub->group && sub->qos > 0 && b->store) {
			if ((rc = mqtt_replay_begin(sub, p->acked_through + 1)) != KZ_OK)
				return rc;
			sub->replay->min_qos = 1;
		}
	}
	return KZ_OK;
}

void mqtt_broker_save_sessions(struct mqtt_broker *b, uint64_t durable_end)
{
	if (!b->state || !durable_end)
		return;
	uint64_t cap = durable_end - 1, unrouted = atomic_load_explicit(&b->unrouted_floor, memory_order_acquire);
	if (unrouted && cap > unrouted - 1)
		cap = unrouted - 1;
	for (unsigned i = 0; i < b->n_shards; i++) {
		struct mqtt_shard *s = &b->shards[i];
		for (uint32_t k = 0; k < s->cap_sessions; k++)
			if (s->sessions[k])
				mqtt_session_persist_acked(s->sessions[k], cap, true);
	}
}

int mqtt_session_subscribe(struct mqtt_session *ss, const struct mqtt_sub_entry *e,
			   const uint8_t *g, size_t gl, const uint8_t *f, size_t fl,
			   uint32_t sub_id, bool *existed)
{
	*existed = false;
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		struct mqtt_sub *sub = ss->subs[i];
		if (!same_sub(sub, g, gl, f, fl))
			continue;
		/* §3.8.4: replace the options of the existing subscription */
		*existed = true;
		sub->qos = e->qos;
		sub->no_local = e->no_local;
		sub->retain_as_published = e->retain_as_published;
		sub->retain_handling = e->retain_handling;
		sub->sub_id = sub_id;
		persist_sub(ss, sub);
		if (sub->group) { /* registry holds a copy of qos/sub_id */
			mqtt_share_remove(ss->shard->broker, sub);
			return mqtt_share_add(ss->shard->broker, sub, ss->shard->idx);
		}
		return KZ_OK;
	}
	if (ss->n_subs >= ss->shard->broker->lim.max_subs_per_client)
		return KZ_ETOOBIG;
	if (ss->n_subs == ss->cap_subs) {
		size_t ncap;
		struct mqtt_sub **nv = kz_array_grow(ss->subs, sizeof *nv, ss->cap_subs, (size_t)ss->cap_subs + 1, 4, UINT32_MAX, &ncap);
		if (!nv)
			return KZ_ENOMEM;
		ss->subs = nv;
		ss->cap_subs = (uint32_t)ncap;
	}
	struct mqtt_sub *sub = calloc(1, sizeof *sub);
	if (!sub)
		return KZ_ENOMEM;
	sub->session = ss;
	sub->filter = strndup((const char *)f, fl);
	sub->group = g ? strndup((const char *)g, gl) : NULL;
	sub->filter_len = (uint32_t)fl;
	sub->qos = e->qos;
	sub->no_local = e->no_local;
	sub->retain_as_published = e->retain_as_published;
	sub->retain_handling = e->retain_handling;
	sub->sub_id = sub_id;
	int rc = (!sub->filter || (g && !sub->group)) ? KZ_ENOMEM : KZ_OK;
	if (!rc)
		rc = g ? mqtt_share_add(ss->shard->broker, sub, ss->shard->idx) : sublist_add(ss->shard, sub);
	if (rc) {
		sub_free(sub);
		return rc;
	}
	ss->subs[ss->n_subs++] = sub;
	persist_sub(ss, sub);
	return KZ_OK;
}

int mqtt_session_unsubscribe(struct mqtt_session *ss, const uint8_t *f, size_t n)
{
	const uint8_t *g = NULL, *ff = f;
	size_t gl = 0, fl = n;
	const char *why;
	if (mqtt_topic_share_split(f, n, &g, &gl, &ff, &fl, &why) != 1) {
		g = NULL;
		ff = f;
		fl = n;
	}
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		struct mqtt_sub *sub = ss->subs[i];
		if (!same_sub(sub, g, gl, ff, fl))
			continue;
		if (ss->persisted)
			state_result(ss->shard->broker, kz_state_sub_del(ss->shard->broker->state, ss->client_id,
									 sub->group, sub->filter));
		ss->share_dirty = ss->shard->broker->share != NULL;
		sub_detach(ss, sub);
		sub_free(sub);
		ss->subs[i] = ss->subs[--ss->n_subs];
		return KZ_OK;
	}
	return KZ_ENOTFOUND;
}

/* ---------- outbound window and queue ---------- */

static uint32_t window(const struct mqtt_session *ss)
{
	const struct mqtt_client *c = ss->client;
	uint32_t w = ss->shard->broker->lim.max_inflight;
	if (c && c->peer_receive_max < w)
		w = c->peer_receive_max;
	return w;
}

static int inflight_alloc(struct mqtt_session *ss)
{
	if (ss->inflight)
		return KZ_OK;
	ss->inflight_cap = ss->shard->broker->lim.max_inflight;
	ss->inflight = calloc(ss->inflight_cap, sizeof *ss->inflight);
	return ss->inflight ? KZ_OK : KZ_ENOMEM;
}

static bool pid_in_flight(const struct mqtt_session *ss, uint16_t pid)
{
	for (uint32_t i = 0; i < ss->inflight_cap; i++)
		if (ss->inflight[i].packet_id == pid)
			return true;
	return false;
}

static uint16_t pid_next(struct mqtt_session *ss)
{
	for (;;) {
		uint16_t pid = ss->next_pid++;
		if (ss->next_pid == 0)
			ss->next_pid = 1;
		if (pid != 0 && !pid_in_flight(ss, pid))
			return pid;
	}
}

static void queue_overflow(struct mqtt_session *ss, const char *what)
{
	ss->dropped++;
	atomic_fetch_add_explicit(&ss->shard->stats.dropped, 1, memory_order_relaxed);
	if (!ss->is_overflowing) {
		ss->is_overflowing = true;
		kz_warn("session '%s': %s; dropping new messages until it drains", ss->client_id, what);
	}
}

static int queue_push(struct mqtt_session *ss, const struct mqtt_delivery *d)
{
	const struct mqtt_limits *lim = &ss->shard->broker->lim;
	uint64_t sz = mqtt_msg_size(d->msg);
	if (ss->q_len >= lim->max_queued_msgs) {
		queue_overflow(ss, "queued message limit reached");
		return KZ_ETOOBIG;
	}
	if (ss->q_bytes + sz > lim->max_queued_bytes) {
		queue_overflow(ss, "queued byte limit reached");
		return KZ_ETOOBIG;
	}
	if (ss->q_len == ss->q_cap) {
		uint32_t ncap = ss->q_cap ? ss->q_cap * 2 : 16;
		struct mqtt_delivery *nq = malloc(ncap * sizeof *nq);
		if (!nq)
			return KZ_ENOMEM;
		for (uint32_t i = 0; i < ss->q_len; i++)
			nq[i] = ss->queue[(ss->q_head + i) % ss->q_cap];
		free(ss->queue);
		ss->queue = nq;
		ss->q_cap = ncap;
		ss->q_head = 0;
	}
	ss->queue[(ss->q_head + ss->q_len) % ss->q_cap] = *d;
	ss->q_len++;
	ss->q_bytes += sz;
	mqtt_msg_ref(d->msg);
	return KZ_OK;
}

static void queue_pop(struct mqtt_session *ss, struct mqtt_delivery *d)
{
	*d = ss->queue[ss->q_head];
	ss->q_head = (ss->q_head + 1) % ss->q_cap;
	ss->q_len--;
	ss->q_bytes -= mqtt_msg_size(d->msg);
	if (ss->q_len == 0 && ss->is_overflowing) {
		ss->is_overflowing = false;
		kz_info("session '%s': queue drained; %llu messages were dropped in total",
			ss->client_id, (unsigned long long)ss->dropped);
	}
}

/* Sends one QoS > 0 delivery into a free window slot. Takes d's reference. */
static void send_inflight(struct mqtt_session *ss, struct mqtt_delivery *d)
{
	if (inflight_alloc(ss)) {
		mqtt_msg_unref(d->msg);
		return;
	}
	d->packet_id = pid_next(ss);
	d->state = MQTT_OUT_SENT;
	if (!mqtt_client_send_publish(ss->client, d, false)) {
		/* too large for the client: §3.1.2.11.4 says act as if delivered */
		mqtt_msg_unref(d->msg);
		return;
	}
	for (uint32_t i = 0; i < ss->inflight_cap; i++) {
		if (ss->inflight[i].packet_id == 0) {
			ss->inflight[i] = *d;
			ss->n_inflight++;
			return;
		}
	}
	assert(!"in-flight window accounting broken");
}

static void deliver(struct mqtt_session *ss, struct mqtt_msg *msg, uint8_t qos, bool retain,
		    uint32_t sub_id, uint32_t share_gid)
{
	uint32_t remaining;
	if (mqtt_msg_expired(msg, ss->shard->now_ms, &remaining))
		return;
	if (!mqtt_policy_may_deliver(ss, msg)) /* the one decision point, every delivery */
		return;
	struct mqtt_delivery d = { .msg = msg, .sub_id = sub_id, .share_gid = share_gid,
				   .qos = qos, .retain = retain };
	struct mqtt_client *c = ss->client;
	if (qos == 0) {
		if (!c || c->state != MQTT_CLIENT_CONNECTED)
			return; /* QoS 0 is not queued for offline sessions */
		if (!mqtt_client_can_send(c)) { /* a slow reader: QoS 0 is dropped, counted per client */
			atomic_fetch_add_explicit(&ss->shard->stats.dropped, 1, memory_order_relaxed);
			c->dropped++;
			if (!c->over_since_ms)
				c->over_since_ms = ss->shard->now_ms ? ss->shard->now_ms : 1;
			return;
		}
		(void)mqtt_client_send_publish(c, &d, false);
		return;
	}
	if (c && c->state == MQTT_CLIENT_CONNECTED && ss->q_len == 0 &&
	    ss->n_inflight < window(ss) && mqtt_client_can_send(c)) {
		mqtt_msg_ref(msg);
		send_inflight(ss, &d);
		return;
	}
	(void)queue_push(ss, &d);
}

/* The session's invariants (mqtt_broker.h) after each change from outside; debug builds
 * only (the check walks the window). */
#define SESSION_CHECKED(ss) assert(mqtt_session_invariants_ok(ss))

void mqtt_session_deliver(struct mqtt_session *ss, struct mqtt_msg *msg, uint8_t qos,
			  bool retain, uint32_t sub_id)
{
	deliver(ss, msg, qos, retain, sub_id, 0);
	SESSION_CHECKED(ss);
}

void mqtt_session_deliver_shared(struct mqtt_session *ss, struct mqtt_msg *msg, uint8_t qos,
				 uint32_t sub_id, uint32_t share_gid)
{
	deliver(ss, msg, qos, false, sub_id, share_gid);
	SESSION_CHECKED(ss);
}

void mqtt_session_pump(struct mqtt_session *ss)
{
	struct mqtt_client *c = ss->client;
	while (c && c->state == MQTT_CLIENT_CONNECTED && ss->q_len > 0 &&
	       ss->n_inflight < window(ss) && mqtt_client_can_send(c)) {
		struct mqtt_delivery d;
		queue_pop(ss, &d);
		uint32_t remaining;
		if (mqtt_msg_expired(d.msg, ss->shard->now_ms, &remaining) ||
		    (mqtt_policy(ss->shard->broker) && !mqtt_policy_may_send(ss, d.msg, false))) {
			/* checked again on the way out: the policy may have changed while it waited */
			mqtt_msg_unref(d.msg);
			continue;
		}
		send_inflight(ss, &d);
	}
	SESSION_CHECKED(ss);
}

static void inflight_done(struct mqtt_session *ss, struct mqtt_delivery *d);

/* A resend is a send: decided again under the policy in force (the connection may be a
 * new one of the same identity, the policy may have changed while the session was
 * offline). A refused message leaves the window; a PUBACK for it is then ignored. PUBREL
 * carries no message and completes a flow the client already holds. */
void mqtt_session_resend(struct mqtt_session *ss)
{
	bool pol = mqtt_policy(ss->shard->broker) != NULL;
	for (uint32_t i = 0; i < ss->inflight_cap; i++) {
		struct mqtt_delivery *d = &ss->inflight[i];
		if (d->packet_id == 0)
			continue;
		if (d->state == MQTT_OUT_RELEASED)
			mqtt_client_send_ack(ss->client, MQTT_PUBREL, d->packet_id, 0, NULL);
		else if (pol && !mqtt_policy_may_send(ss, d->msg, false))
			inflight_done(ss, d);
		else
			(void)mqtt_client_send_publish(ss->client, d, true);
	}
	SESSION_CHECKED(ss);
}

void mqtt_session_purge(struct mqtt_session *ss, bool (*keep)(struct mqtt_session *ss, const struct mqtt_msg *m, void *ctx),
			void *ctx)
{
	for (uint32_t i = 0; i < ss->inflight_cap; i++) {
		struct mqtt_delivery *d = &ss->inflight[i];
		if (d->packet_id && d->state == MQTT_OUT_SENT && !keep(ss, d->msg, ctx))
			inflight_done(ss, d);
	}
	uint32_t n = ss->q_len;
	for (uint32_t i = 0; i < n; i++) { /* rotate the ring once, keeping what passes */
		struct mqtt_delivery d;
		queue_pop(ss, &d);
		if (keep(ss, d.msg, ctx))
			(void)queue_push(ss, &d); /* room: one was just taken out */
		mqtt_msg_unref(d.msg);        /* the popped reference */
	}
	SESSION_CHECKED(ss);
}

static struct mqtt_delivery *inflight_find(struct mqtt_session *ss, uint16_t pid)
{
	for (uint32_t i = 0; i < ss->inflight_cap; i++)
		if (ss->inflight[i].packet_id == pid)
			return &ss->inflight[i];
	return NULL;
}

static void inflight_done(struct mqtt_session *ss, struct mqtt_delivery *d)
{
	mqtt_msg_unref(d->msg);
	memset(d, 0, sizeof *d);
	ss->n_inflight--;
}

void mqtt_session_ack(struct mqtt_session *ss, enum mqtt_type type, uint16_t pid, uint8_t reason)
{
	struct mqtt_delivery *d = pid ? inflight_find(ss, pid) : NULL;
	if (!d) {
		if (type == MQTT_PUBREC) /* §4.3.3: answer PUBREC even when unknown */
			mqtt_client_send_ack(ss->client, MQTT_PUBREL, pid, MQTT_RC_PID_NOT_FOUND, NULL);
		return;
	}
	switch (type) {
	case MQTT_PUBACK:
		if (d->qos == 1)
			inflight_done(ss, d);
		break;
	case MQTT_PUBREC:
		if (d->qos != 2)
			break;
		if (reason >= 0x80) { /* the receiver refused: the flow ends here */
			inflight_done(ss, d);
			break;
		}
		d->state = MQTT_OUT_RELEASED;
		mqtt_msg_unref(d->msg); /* the payload is no longer needed */
		d->msg = NULL;
		mqtt_client_send_ack(ss->client, MQTT_PUBREL, pid, 0, NULL);
		break;
	case MQTT_PUBCOMP:
		if (d->state == MQTT_OUT_RELEASED)
			inflight_done(ss, d);
		break;
	default:
		break;
	}
	mqtt_session_pump(ss);
}

void mqtt_session_fire_will(struct mqtt_session *ss)
{
	if (!ss->will)
		return;
	if (ss->persisted)
		state_result(ss->shard->broker, kz_state_will_done(ss->shard->broker->state, ss->client_id));
	mqtt_shard_publish_will(ss->shard, ss);
	mqtt_msg_unref(ss->will);
	ss->will = NULL;
	ss->will_at_ms = 0;
	/* the cluster's entry loses it too, so that no node publishes it again */
	ss->share_dirty = ss->shard->broker->share != NULL;
}

void mqtt_session_free(struct mqtt_session *ss)
{
	if (!ss)
		return;
	mqtt_policy_session_end(ss);
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		sub_detach(ss, ss->subs[i]);
		sub_free(ss->subs[i]);
	}
	free(ss->subs);
	for (uint32_t i = 0; i < ss->inflight_cap; i++)
		if (ss->inflight[i].packet_id)
			mqtt_msg_unref(ss->inflight[i].msg);
	free(ss->inflight);
	while (ss->q_len) {
		struct mqtt_delivery d;
		queue_pop(ss, &d);
		mqtt_msg_unref(d.msg);
	}
	free(ss->queue);
	free(ss->rx_qos2);
	mqtt_msg_unref(ss->will);
	free(ss->client_id);
	free(ss->peer_id);
	free(ss);
}

/* MQTT 5.0 §4.8.2: when a shared-subscription member's session ends, the messages it had
 * not acknowledged or not yet received go to another member of their group. Its own
 * memberships are gone already, so it cannot be picked again. */
static void share_hand_over(struct mqtt_session *ss)
{
	if (atomic_load(&ss->shard->broker->is_shutting_down))
		return;
	for (uint32_t i = 0; i < ss->inflight_cap; i++) {
		struct mqtt_delivery *d = &ss->inflight[i];
		/* RELEASED: the member has the message (PUBREC); only PUBREL/PUBCOMP remain. */
		if (d->packet_id && d->share_gid && d->msg && d->state == MQTT_OUT_SENT)
			mqtt_share_reroute(ss->shard, d->share_gid, d->msg, ss->client_id, 0);
	}
	for (uint32_t i = 0; i < ss->q_len; i++) {
		struct mqtt_delivery *d = &ss->queue[(ss->q_head + i) % ss->q_cap];
		if (d->share_gid)
			mqtt_share_reroute(ss->shard, d->share_gid, d->msg, ss->client_id, 0);
	}
}

void mqtt_session_end(struct mqtt_session *ss)
{
	mqtt_session_fire_will(ss);
	mqtt_session_share(ss, true);
	if (ss->persisted)
		state_result(ss->shard->broker, kz_state_ended(ss->shard->broker->state, ss->client_id));
	ss->persisted = false;
	mqtt_shard_session_remove(ss->shard, ss);
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		sub_detach(ss, ss->subs[i]);
		sub_free(ss->subs[i]);
	}
	ss->n_subs = 0;
	share_hand_over(ss);
	if (ss->client)
		ss->client->session = NULL;
	mqtt_session_free(ss);
}

/* ---------- the shard's session map: open addressing on client id ---------- */

static uint32_t map_slot(const struct mqtt_shard *s, const uint8_t *id, size_t n, bool *found)
{
	uint32_t mask = s->cap_sessions - 1;
	uint32_t i = (uint32_t)kz_hash(id, n) & mask;
	for (;;) {
		struct mqtt_session *x = s->sessions[i];
		if (!x) {
			*found = false;
			return i;
		}
		if (x->client_id_len == n && memcmp(x->client_id, id, n) == 0) {
			*found = true;
			return i;
		}
		i = (i + 1) & mask;
	}
}

struct mqtt_session *mqtt_session_find(struct mqtt_shard *s, const uint8_t *id, size_t n)
{
	if (!s->cap_sessions)
		return NULL;
	bool found;
	uint32_t i = map_slot(s, id, n, &found);
	return found ? s->sessions[i] : NULL;
}

int mqtt_shard_session_insert(struct mqtt_shard *s, struct mqtt_session *ss)
{
	if ((s->n_sessions + 1) * 2 > s->cap_sessions) {
		uint32_t ncap = s->cap_sessions ? s->cap_sessions * 2 : 64;
		struct mqtt_session **old = s->sessions;
		uint32_t ocap = s->cap_sessions;
		s->sessions = calloc(ncap, sizeof *s->sessions);
		if (!s->sessions) {
			s->sessions = old;
			return KZ_ENOMEM;
		}
		s->cap_sessions = ncap;
		for (uint32_t i = 0; i < ocap; i++) {
			if (!old[i])
				continue;
			bool found;
			uint32_t k = map_slot(s, (uint8_t *)old[i]->client_id, old[i]->client_id_len, &found);
			s->sessions[k] = old[i];
		}
		free(old);
	}
	bool found;
	uint32_t i = map_slot(s, (uint8_t *)ss->client_id, ss->client_id_len, &found);
	assert(!found);
	s->sessions[i] = ss;
	s->n_sessions++;
	return KZ_OK;
}

void mqtt_shard_session_remove(struct mqtt_shard *s, struct mqtt_session *ss)
{
	bool found;
	uint32_t mask = s->cap_sessions - 1;
	uint32_t i = map_slot(s, (uint8_t *)ss->client_id, ss->client_id_len, &found);
	if (!found)
		return;
	s->sessions[i] = NULL;
	s->n_sessions--;
	uint32_t j = i;
	for (;;) { /* backward-shift deletion */
		j = (j + 1) & mask;
		struct mqtt_session *m = s->sessions[j];
		if (!m)
			break;
		uint32_t home = (uint32_t)kz_hash(m->client_id, m->client_id_len) & mask;
		bool movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
		if (movable) {
			s->sessions[i] = m;
			s->sessions[j] = NULL;
			i = j;
		}
	}
}
