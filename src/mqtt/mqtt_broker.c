/* mqtt_broker.c — shards, routing, the retained store and shared subscriptions. */
#include "mqtt/mqtt_internal.h"
#include "base/kz_array.h"
#include "base/kz_err.h"
#include "base/kz_hash.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "trust/audit.h"
#include "trust/ca.h"

#include <stdlib.h>
#include <string.h>

void mqtt_limits_default(struct mqtt_limits *lim)
{
	lim->max_packet_size = 1u << 20;
	lim->max_topic_len = 1024;
	lim->max_topic_levels = 32;
	lim->max_subs_per_client = 1000;
	lim->max_inflight = 64;
	lim->max_queued_msgs = 10000;
	lim->max_queued_bytes = 64u << 20;
	lim->max_connections = 100000;
	lim->connect_timeout_ms = 10000;
	lim->max_unconnected_per_identity = 64;
	lim->max_publish_rate = 0;
	lim->max_keepalive = 0;
	lim->max_session_expiry = 7 * 24 * 3600;
	lim->topic_alias_max = 16;
	lim->max_out_buffer = 4u << 20;
	lim->slow_client_ms = 30000;
	lim->max_store_backlog = 64u << 20;
	lim->max_route_backlog = 16u << 20;
	lim->max_retained = 100000;
	lim->max_client_id_len = 256;
	lim->handshake_timeout_ms = 10000;
	lim->max_handshakes = 4096;
	lim->max_handshakes_per_address = 256;
	lim->close_linger_ms = 5000;
	lim->fd_reserve = 64;
}

int mqtt_broker_init(struct mqtt_broker *b, const struct mqtt_limits *lim, unsigned n_shards)
{
	memset(b, 0, sizeof *b);
	kz_hash_seed();
	b->lim = *lim;
	b->topic_lim.max_len = lim->max_topic_len;
	b->topic_lim.max_levels = lim->max_topic_levels;
	b->n_shards = n_shards;
	b->shards = calloc(n_shards, sizeof *b->shards);
	if (!b->shards || mqtt_trie_init(&b->retained, 0))
		return KZ_ENOMEM;
	pthread_mutex_init(&b->retained_lock, NULL);
	pthread_mutex_init(&b->conns_lock, NULL);
	pthread_rwlock_init(&b->share_lock, NULL);
	b->store_out = calloc(n_shards, sizeof *b->store_out);
	b->slow = calloc(MQTT_SLOW_MAX, sizeof *b->slow);
	if (!b->store_out || !b->slow)
		return KZ_ENOMEM;
	pthread_mutex_init(&b->slow_lock, NULL);
	for (unsigned i = 0; i < n_shards; i++) {
		struct mqtt_shard *s = &b->shards[i];
		s->broker = b;
		s->idx = i;
		s->now_ms = kz_now_mono_ms();
		pthread_mutex_init(&s->inbox_lock, NULL);
		s->outbox = calloc(n_shards, sizeof *s->outbox);
		if (!s->outbox || mqtt_trie_init(&s->subs, 0))
			return KZ_ENOMEM;
	}
	return KZ_OK;
}

static void retained_free_visit(struct mqtt_trie_node *nd, void *ctx)
{
	(void)ctx;
	mqtt_msg_unref(nd->value);
	nd->value = NULL;
}

static void envq_release(struct mqtt_envq *q)
{
	for (uint32_t i = 0; i < q->n; i++) {
		if (q->v[i].stored) {
			q->v[i].stored->status = KZ_ECLOSED;
			q->v[i].stored->done(q->v[i].stored, MQTT_RC_SUCCESS, NULL);
		}
		mqtt_msg_unref(q->v[i].msg);
		free(q->v[i].client_id);
	}
	free(q->v);
	memset(q, 0, sizeof *q);
}


void mqtt_broker_cleanup(struct mqtt_broker *b)
{
	for (unsigned i = 0; b->shards && i < b->n_shards; i++) {
		struct mqtt_shard *s = &b->shards[i];
		kz_json_free(&s->json);
		for (uint32_t k = 0; k < s->cap_sessions; k++) {
			if (s->sessions[k]) {
				struct mqtt_session *ss = s->sessions[k];
				s->sessions[k] = NULL;
				mqtt_session_free(ss);
			}
		}
		free(s->sessions);
		for (unsigned j = 0; j < b->n_shards && s->outbox; j++)
			envq_release(&s->outbox[j]);
		free(s->outbox);
		for (uint32_t k = 0; k < s->st_n; k++) { /* never submitted: the store was gone */
			struct kz_store_item *it = &s->st_items[k];
			free(it->data);
			if (it->done == mqtt_stored_done) {
				struct mqtt_stored *st = it->ctx;
				st->status = KZ_ECLOSED;
				st->done(st, MQTT_RC_SUCCESS, NULL);
			} else if (it->done) {
				it->done(it->ctx, KZ_ECLOSED, 0);
			}
		}
		for (uint32_t k = 0; k < s->n_parked; k++) { /* never confirmed by the cluster */
			s->parked[k]->status = KZ_ECLOSED;
			s->parked[k]->done(s->parked[k], s->parked[k]->rc, s->parked[k]->why);
		}
		free(s->parked);
		free(s->replays);
		free(s->st_items);
		envq_release(&s->inbox);
		envq_release(&s->draining);
		mqtt_trie_cleanup(&s->subs);
		pthread_mutex_destroy(&s->inbox_lock);
	}
	free(b->shards);
	for (unsigned i = 0; b->store_out && i < b->n_shards; i++)
		envq_release(&b->store_out[i]);
	free(b->store_out);
	if (b->retained.root)
		mqtt_trie_walk(b->retained.root, retained_free_visit, NULL);
	mqtt_trie_cleanup(&b->retained);
	for (struct mqtt_share_group *g = b->groups, *n; g; g = n) {
		n = g->next;
		for (uint32_t i = 0; i < g->n; i++)
			free(g->m[i].client_id);
		free(g->m);
		free(g->group);
		free(g->filter);
		free(g);
	}
	pthread_mutex_destroy(&b->retained_lock);
	pthread_mutex_destroy(&b->conns_lock);
	pthread_rwlock_destroy(&b->share_lock);
	if (b->slow)
		pthread_mutex_destroy(&b->slow_lock);
	free(b->slow);
	b->slow = NULL;
}

/* Adds a client's new QoS 0 drops (and a slow-client disconnect) to the broker's table. */
void mqtt_broker_slow_report(struct mqtt_client *c, bool disconnected)
{
	struct mqtt_broker *b = c->broker;
	uint64_t d = c->dropped - c->dropped_reported;
	if ((!d && !disconnected) || !b->slow)
		return;
	c->dropped_reported = c->dropped;
	const char *cid = c->session ? c->session->client_id : "";
	uint64_t now = kz_now_mono_ms();
	pthread_mutex_lock(&b->slow_lock);
	struct mqtt_slow_entry *e = NULL;
	for (uint32_t i = 0; i < b->n_slow && !e; i++)
		if (strcmp(b->slow[i].client_id, cid) == 0 && strcmp(b->slow[i].identity, c->peer_id) == 0)
			e = &b->slow[i];
	if (!e && b->n_slow < MQTT_SLOW_MAX)
		e = &b->slow[b->n_slow++];
	else if (!e) { /* full: the least recently updated entry makes room */
		e = &b->slow[0];
		for (uint32_t i = 1; i < b->n_slow; i++)
			if (b->slow[i].updated_ms < e->updated_ms)
				e = &b->slow[i];
		memset(e, 0, sizeof *e);
	}
	if (!e->client_id[0] && !e->identity[0]) {
		snprintf(e->client_id, sizeof e->client_id, "%s", cid);
		snprintf(e->identity, sizeof e->identity, "%s", c->peer_id);
	}
	e->dropped += d;
	e->disconnects += disconnected;
	e->updated_ms = now;
	pthread_mutex_unlock(&b->slow_lock);
}

void mqtt_broker_slow_clients(struct mqtt_broker *b, void (*fn)(void *ctx, const struct mqtt_slow_entry *e),
			      void *ctx)
{
	if (!b->slow)
		return;
	pthread_mutex_lock(&b->slow_lock);
	for (uint32_t i = 0; i < b->n_slow; i++)
		fn(ctx, &b->slow[i]);
	pthread_mutex_unlock(&b->slow_lock);
}

unsigned mqtt_broker_home(const struct mqtt_broker *b, const uint8_t *id, size_t n)
{
	return (unsigned)(kz_hash(id, n) % b->n_shards);
}

void mqtt_broker_stats(struct mqtt_broker *b, uint64_t out[7])
{
	memset(out, 0, 7 * sizeof out[0]);
	for (unsigned i = 0; i < b->n_shards; i++) {
		struct mqtt_stats *st = &b->shards[i].stats;
		out[0] += atomic_load(&st->msgs_in);
		out[1] += atomic_load(&st->msgs_out);
		out[2] += atomic_load(&st->bytes_in);
		out[3] += atomic_load(&st->bytes_out);
		out[4] += atomic_load(&st->dropped);
		out[6] += atomic_load(&st->unconnected_closed);
	}
	out[5] = atomic_load(&b->n_connections);
}

/* ---------- envelopes between shards ---------- */

int mqtt_envq_push(struct mqtt_envq *q, const struct mqtt_env *e)
{
	if (q->n == q->cap) {
		size_t ncap;
		struct mqtt_env *nv = kz_array_grow(q->v, sizeof *nv, q->cap, (size_t)q->cap + 1, 64, UINT32_MAX, &ncap);
		if (!nv)
			return KZ_ENOMEM;
		q->v = nv;
		q->cap = (uint32_t)ncap;
	}
	q->v[q->n++] = *e;
	if (e->msg)
		q->bytes += mqtt_msg_size(e->msg);
	return KZ_OK;
}

void mqtt_inbox_append(struct mqtt_broker *b, unsigned idx, struct mqtt_envq *src)
{
	struct mqtt_shard *d = &b->shards[idx];
	bool was_empty;
	uint64_t moved = src->bytes;
	pthread_mutex_lock(&d->inbox_lock);
	was_empty = d->inbox.n == 0;
	if (d->inbox.n == 0 && d->inbox.cap < src->cap) {
		struct mqtt_envq tmp = d->inbox;
		d->inbox = *src;
		*src = tmp;
	} else {
		for (uint32_t i = 0; i < src->n; i++) {
			if (mqtt_envq_push(&d->inbox, &src->v[i])) {
				mqtt_msg_unref(src->v[i].msg);
				free(src->v[i].client_id);
			}
		}
		src->n = 0;
		src->bytes = 0;
	}
	pthread_mutex_unlock(&d->inbox_lock);
	atomic_fetch_add_explicit(&d->inbox_bytes, moved, memory_order_relaxed);
	if (was_empty && b->wake)
		b->wake(b->ctx, idx);
}

/* One envelope into shard idx's inbox from any thread; wakes the shard when it was idle. */
int mqtt_inbox_post(struct mqtt_broker *b, unsigned idx, const struct mqtt_env *e)
{
	struct mqtt_shard *d = &b->shards[idx];
	pthread_mutex_lock(&d->inbox_lock);
	bool was_empty = d->inbox.n == 0;
	int rc = mqtt_envq_push(&d->inbox, e);
	pthread_mutex_unlock(&d->inbox_lock);
	if (!rc && e->msg)
		atomic_fetch_add_explicit(&d->inbox_bytes, mqtt_msg_size(e->msg), memory_order_relaxed);
	if (!rc && was_empty && b->wake)
		b->wake(b->ctx, idx);
	return rc;
}

int mqtt_broker_post_foreign(struct mqtt_broker *b, unsigned idx, void *foreign)
{
	struct mqtt_env e = { .kind = MQTT_ENV_FOREIGN, .foreign = foreign };
	return mqtt_inbox_post(b, idx, &e);
}

int mqtt_broker_inject(struct mqtt_broker *b, unsigned idx, struct mqtt_msg *m)
{
	struct mqtt_env e = { .kind = MQTT_ENV_INJECT, .msg = mqtt_msg_ref(m) };
	int rc = mqtt_inbox_post(b, idx, &e);
	if (rc)
		mqtt_msg_unref(m);
	return rc;
}

int mqtt_broker_session_moved(struct mqtt_broker *b, const char *client_id, uint64_t epoch, bool tie_wins,
			      bool ended)
{
	char *id = strdup(client_id);
	if (!id)
		return KZ_ENOMEM;
	struct mqtt_env e = { .kind = MQTT_ENV_MOVED, .client_id = id, .epoch = epoch,
			       .qos = (uint8_t)(tie_wins | ended << 1) };
	int rc = mqtt_inbox_post(b, mqtt_broker_home(b, (const uint8_t *)id, strlen(id)), &e);
	if (rc)
		free(id);
	return rc;
}

int mqtt_broker_session_adopt(struct mqtt_broker *b, const char *client_id)
{
	char *id = strdup(client_id);
	if (!id)
		return KZ_ENOMEM;
	struct mqtt_env e = { .kind = MQTT_ENV_ADOPT, .client_id = id };
	int rc = mqtt_inbox_post(b, mqtt_broker_home(b, (const uint8_t *)id, strlen(id)), &e);
	if (rc)
		free(id);
	return rc;
}

void mqtt_shard_wake_self(struct mqtt_shard *s)
{
	if (s->wake_posted)
		return;
	struct mqtt_env e = { .kind = MQTT_ENV_WAKE };
	s->wake_posted = mqtt_inbox_post(s->broker, s->idx, &e) == KZ_OK;
}

/* Reads again from the clients held for the store's backlog once it is under half its cap
 * (each iteration and each tick, so also when every client of the shard is held). */
static void store_release(struct mqtt_shard *s)
{
	struct mqtt_broker *b = s->broker;
	if (!s->n_store_held || (b->store && kz_store_pending_bytes(b->store) > b->lim.max_store_backlog / 2) ||
	    (b->lim.max_route_backlog && mqtt_broker_route_backlog(b) > b->lim.max_route_backlog / 2))
		return;
	for (struct mqtt_client *c = s->clients; c && s->n_store_held; c = c->next)
		if (c->store_held) {
			c->store_held = false;
			s->n_store_held--;
			if (c->ops->hold_reading && c->store_pending < b->lim.max_inflight)
				c->ops->hold_reading(c->transport, false);
		}
}

void mqtt_shard_flush(struct mqtt_shard *s)
{
	struct mqtt_broker *b = s->broker;
	if (s->n_replays)
		mqtt_shard_replays_run(s);
	store_release(s);
	if (s->st_n && b->store) {
		kz_store_submit(b->store, s->st_items, s->st_n);
		s->st_n = 0;
	}
	for (unsigned i = 0; i < b->n_shards; i++)
		if (s->outbox[i].n)
			mqtt_inbox_append(b, i, &s->outbox[i]);
}

/* ---------- routing ---------- */

struct route_ctx {
	struct mqtt_shard *s;
	struct mqtt_msg *msg;
};

static void deliver_sub(struct mqtt_sub *sub, struct mqtt_msg *msg)
{
	struct mqtt_session *ss = sub->session;
	if (sub->no_local && msg->origin == ss->uid)
		return;
	uint8_t qos = msg->qos < sub->qos ? msg->qos : sub->qos;
	bool retain = sub->retain_as_published && msg->retain;
	if (sub->replay) {
		mqtt_replay_hold(sub, msg, qos, retain);
		return;
	}
	if (sub->seam_hi) {
		uint64_t seq = atomic_load_explicit(&msg->seq, memory_order_acquire);
		if (seq >= sub->seam_lo && seq <= sub->seam_hi)
			return; /* replayed from the log already */
	}
	mqtt_session_deliver(ss, msg, qos, retain, sub->sub_id);
}

static void route_visit(struct mqtt_trie_node *nd, void *ctx)
{
	struct route_ctx *rc = ctx;
	struct mqtt_sublist *l = nd->value;
	for (uint32_t i = 0; i < l->n; i++)
		deliver_sub(l->v[i], rc->msg);
}

static void route_local(struct mqtt_shard *s, struct mqtt_msg *msg)
{
	struct route_ctx rc = { s, msg };
	if (atomic_load_explicit(&s->n_subs, memory_order_relaxed) == 0)
		return;
	mqtt_trie_match_topic(&s->subs, msg->topic, msg->topic_len, route_visit, &rc);
}

#define SHARE_MAX_HOPS 4

static void share_dropped(struct mqtt_shard *s)
{
	atomic_fetch_add_explicit(&s->stats.dropped, 1, memory_order_relaxed);
}

/* Sends msg to one member of g (see struct mqtt_share_group). Caller holds share_lock. */
static void share_send(struct mqtt_shard *s, struct mqtt_share_group *g, struct mqtt_msg *msg,
		       const char *exclude, uint8_t hops)
{
	if (hops > SHARE_MAX_HOPS || g->n == 0) {
		share_dropped(s);
		return;
	}
	uint32_t start = atomic_fetch_add_explicit(&g->rr, 1, memory_order_relaxed);
	struct mqtt_share_member *m = NULL;
	for (uint32_t i = 0; i < g->n; i++) {
		struct mqtt_share_member *c = &g->m[(start + i) % g->n];
		if (exclude && strcmp(c->client_id, exclude) == 0)
			continue;
		if (atomic_load_explicit(&c->online, memory_order_relaxed)) {
			m = c;
			break;
		}
		if (!m)
			m = c;
	}
	if (!m) {
		share_dropped(s);
		return;
	}
	uint8_t qos = msg->qos < m->qos ? msg->qos : m->qos;
	if (m->shard == s->idx) {
		struct mqtt_session *ss = mqtt_session_find(s, (uint8_t *)m->client_id,
							    strlen(m->client_id));
		if (ss)
			mqtt_session_deliver_shared(ss, msg, qos, m->sub_id, g->gid);
		else
			share_send(s, g, msg, m->client_id, (uint8_t)(hops + 1));
		return;
	}
	struct mqtt_env e = { .kind = MQTT_ENV_DIRECT, .qos = qos, .sub_id = m->sub_id,
			      .share_gid = g->gid, .hops = hops, .msg = mqtt_msg_ref(msg),
			      .client_id = strdup(m->client_id) };
	if (!e.client_id || mqtt_envq_push(&s->outbox[m->shard], &e)) {
		mqtt_msg_unref(msg);
		free(e.client_id);
		share_dropped(s);
	}
}

static void route_shared(struct mqtt_shard *s, struct mqtt_msg *msg)
{
	struct mqtt_broker *b = s->broker;
	pthread_rwlock_rdlock(&b->share_lock);
	for (struct mqtt_share_group *g = b->groups; g; g = g->next)
		if (g->n && kz_topic_match((uint8_t *)g->filter, g->filter_len, msg->topic,
					     msg->topic_len))
			share_send(s, g, msg, NULL, 0);
	pthread_rwlock_unlock(&b->share_lock);
}

void mqtt_share_reroute(struct mqtt_shard *s, uint32_t gid, struct mqtt_msg *msg,
			const char *exclude, uint8_t hops)
{
	struct mqtt_broker *b = s->broker;
	pthread_rwlock_rdlock(&b->share_lock);
	struct mqtt_share_group *g = b->groups;
	while (g && g->gid != gid)
		g = g->next;
	if (g)
		share_send(s, g, msg, exclude, hops);
	else
		share_dropped(s);
	pthread_rwlock_unlock(&b->share_lock);
}

/* The link that points at sub's group (*link is NULL when there is none). Caller holds
 * share_lock. */
static struct mqtt_share_group **group_link(struct mqtt_broker *b, const struct mqtt_sub *sub)
{
	struct mqtt_share_group **pg = &b->groups;
	while (*pg && (strcmp((*pg)->group, sub->group) != 0 || strcmp((*pg)->filter, sub->filter) != 0))
		pg = &(*pg)->next;
	return pg;
}

static struct mqtt_share_member *group_member(struct mqtt_share_group *g, const char *client_id)
{
	for (uint32_t k = 0; g && k < g->n; k++)
		if (strcmp(g->m[k].client_id, client_id) == 0)
			return &g->m[k];
	return NULL;
}

void mqtt_share_set_online(struct mqtt_session *ss, bool online)
{
	struct mqtt_broker *b = ss->shard->broker;
	bool locked = false;
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		if (!ss->subs[i]->group)
			continue;
		if (!locked) {
			pthread_rwlock_rdlock(&b->share_lock);
			locked = true;
		}
		struct mqtt_share_member *m = group_member(*group_link(b, ss->subs[i]), ss->client_id);
		if (m)
			atomic_store_explicit(&m->online, online, memory_order_relaxed);
	}
	if (locked)
		pthread_rwlock_unlock(&b->share_lock);
}

void mqtt_shard_route(struct mqtt_shard *s, struct mqtt_msg *msg)
{
	struct mqtt_broker *b = s->broker;
	route_local(s, msg);
	for (unsigned i = 0; i < b->n_shards; i++) {
		if (i == s->idx || atomic_load_explicit(&b->shards[i].n_subs, memory_order_relaxed) == 0)
			continue;
		struct mqtt_env e = { .kind = MQTT_ENV_PUBLISH, .msg = mqtt_msg_ref(msg) };
		if (mqtt_envq_push(&s->outbox[i], &e))
			mqtt_msg_unref(msg);
	}
	if (atomic_load_explicit(&b->n_share_members, memory_order_relaxed))
		route_shared(s, msg);
}

void mqtt_broker_connects_kick(struct mqtt_broker *b)
{
	for (unsigned i = 0; i < b->n_shards; i++) {
		atomic_store(&b->shards[i].order_kick, true);
		if (b->wake)
			b->wake(b->ctx, i);
	}
}

void mqtt_shard_drain(struct mqtt_shard *s)
{
	if (atomic_exchange(&s->order_kick, false) && s->n_order_wait)
		mqtt_shard_connects_retry(s);
	pthread_mutex_lock(&s->inbox_lock);
	struct mqtt_envq tmp = s->draining;
	s->draining = s->inbox;
	s->inbox = tmp;
	pthread_mutex_unlock(&s->inbox_lock);
	struct mqtt_envq *q = &s->draining;
	uint64_t drained = q->bytes;
	for (uint32_t i = 0; i < q->n; i++) {
		struct mqtt_env *e = &q->v[i];
		switch (e->kind) {
		case MQTT_ENV_PUBLISH:
			route_local(s, e->msg);
			break;
		case MQTT_ENV_DIRECT: {
			struct mqtt_session *ss = mqtt_session_find(s, (uint8_t *)e->client_id,
								    strlen(e->client_id));
			if (ss && e->share_gid)
				mqtt_session_deliver_shared(ss, e->msg, e->qos, e->sub_id, e->share_gid);
			else if (ss)
				mqtt_session_deliver(ss, e->msg, e->qos, e->retain, e->sub_id);
			else if (e->share_gid) /* the member went away meanwhile */
				mqtt_share_reroute(s, e->share_gid, e->msg, e->client_id,
						   (uint8_t)(e->hops + 1));
			free(e->client_id);
			break;
		}
		case MQTT_ENV_FOREIGN:
			if (s->broker->on_foreign)
				s->broker->on_foreign(s->broker->ctx, s->idx, e->foreign);
			break;
		case MQTT_ENV_STORED:
			mqtt_stored_route(e->stored);
			break;
		case MQTT_ENV_INJECT: {
			uint8_t rc;
			const char *why;
			mqtt_broker_publish(s, e->msg, &rc, &why);
			break;
		}
		case MQTT_ENV_MOVED: {
			struct mqtt_session *ss = mqtt_session_find(s, (uint8_t *)e->client_id, strlen(e->client_id));
			if (ss)
				mqtt_session_moved(ss, e->epoch, e->qos & 1, e->qos & 2);
			free(e->client_id);
			break;
		}
		case MQTT_ENV_ADOPT:
			mqtt_session_adopt(s, e->client_id);
			free(e->client_id);
			break;
		case MQTT_ENV_WAKE: /* only here to run another iteration (replays) */
			s->wake_posted = false;
			break;
		}
		mqtt_msg_unref(e->msg);
	}
	q->n = 0;
	q->bytes = 0;
	atomic_fetch_sub_explicit(&s->inbox_bytes, drained, memory_order_relaxed);
	atomic_store(&s->repl_woken, false);
	if (s->n_parked)
		mqtt_parked_release(s);
}

uint64_t mqtt_broker_route_backlog(struct mqtt_broker *b)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < b->n_shards; i++)
		sum += atomic_load_explicit(&b->shards[i].inbox_bytes, memory_order_relaxed);
	return sum;
}

/* ---------- retained store ---------- */

int mqtt_retained_set(struct mqtt_broker *b, struct mqtt_msg *msg)
{
	int rc = KZ_OK;
	pthread_mutex_lock(&b->retained_lock);
	struct mqtt_trie_node *nd = mqtt_trie_get(&b->retained, msg->topic, msg->topic_len,
						   msg->payload_len > 0);
	if (msg->payload_len == 0) { /* §3.3.1.3: an empty retained message deletes */
		if (nd && nd->value) {
			mqtt_msg_unref(nd->value);
			nd->value = NULL;
			b->n_retained--;
			mqtt_trie_prune(&b->retained, nd);
		}
	} else if (!nd) {
		rc = KZ_ENOMEM;
	} else if (!nd->value && b->n_retained >= b->lim.max_retained) {
		mqtt_trie_prune(&b->retained, nd);
		rc = KZ_ETOOBIG;
	} else {
		if (nd->value)
			mqtt_msg_unref(nd->value);
		else
			b->n_retained++;
		nd->value = mqtt_msg_ref(msg);
	}
	pthread_mutex_unlock(&b->retained_lock);
	return rc;
}

int mqtt_retained_restore(struct mqtt_broker *b, const struct kz_record *r, uint64_t now_wall_ns)
{
	if (r->payload.len == 0 || (r->expiry_ns && r->expiry_ns <= now_wall_ns))
		return KZ_OK;
	struct mqtt_msg *m = mqtt_msg_from_record(b, r);
	if (!m)
		return KZ_ENOMEM;
	m->retain = true;
	m->created_ms = kz_now_mono_ms();
	if (r->expiry_ns) { /* what is left of the interval, rounded up */
		uint64_t left = (r->expiry_ns - now_wall_ns + 999999999u) / 1000000000u;
		m->has_expiry = true;
		m->expiry_s = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
	}
	int rc = mqtt_retained_set(b, m);
	mqtt_msg_unref(m);
	return rc;
}

struct retained_ctx {
	struct mqtt_sub *sub;
	struct mqtt_msg **found;
	uint32_t n, cap;
};

static void retained_visit(struct mqtt_trie_node *nd, void *ctx)
{
	struct retained_ctx *rc = ctx;
	if (rc->n == rc->cap) {
		size_t ncap;
		struct mqtt_msg **nv = kz_array_grow(rc->found, sizeof *nv, rc->cap, (size_t)rc->cap + 1, 16, UINT32_MAX, &ncap);
		if (!nv)
			return;
		rc->found = nv;
		rc->cap = (uint32_t)ncap;
	}
	rc->found[rc->n++] = mqtt_msg_ref(nd->value);
}

void mqtt_retained_deliver(struct mqtt_broker *b, struct mqtt_sub *sub)
{
	struct retained_ctx rc = { sub, NULL, 0, 0 };
	/* Collect under the lock, deliver outside it: delivery may encode large packets. */
	pthread_mutex_lock(&b->retained_lock);
	mqtt_trie_match_filter(&b->retained, (uint8_t *)sub->filter, sub->filter_len,
			       retained_visit, &rc);
	pthread_mutex_unlock(&b->retained_lock);
	for (uint32_t i = 0; i < rc.n; i++) {
		struct mqtt_msg *m = rc.found[i];
		uint8_t qos = m->qos < sub->qos ? m->qos : sub->qos;
		mqtt_session_deliver(sub->session, m, qos, true, sub->sub_id);
		mqtt_msg_unref(m);
	}
	free(rc.found);
}

/* ---------- shared subscriptions ---------- */

int mqtt_share_add(struct mqtt_broker *b, const struct mqtt_sub *sub, unsigned shard)
{
	int rc = KZ_ENOMEM;
	pthread_rwlock_wrlock(&b->share_lock);
	struct mqtt_share_group *g = *group_link(b, sub);
	if (!g) {
		g = calloc(1, sizeof *g);
		if (!g)
			goto out;
		g->gid = ++b->next_gid ? b->next_gid : ++b->next_gid; /* 0 means "none" */
		g->group = strdup(sub->group);
		g->filter = strdup(sub->filter);
		g->filter_len = sub->filter_len;
		if (!g->group || !g->filter) {
			free(g->group);
			free(g->filter);
			free(g);
			goto out;
		}
		g->next = b->groups;
		b->groups = g;
	}
	if (g->n == g->cap) {
		size_t ncap;
		struct mqtt_share_member *nm = kz_array_grow(g->m, sizeof *nm, g->cap, (size_t)g->cap + 1, 4, UINT32_MAX, &ncap);
		if (!nm)
			goto out;
		g->m = nm;
		g->cap = (uint32_t)ncap;
	}
	struct mqtt_share_member *m = &g->m[g->n];
	m->client_id = strdup(sub->session->client_id);
	if (!m->client_id)
		goto out;
	m->shard = shard;
	m->qos = sub->qos;
	m->sub_id = sub->sub_id;
	atomic_init(&m->online, sub->session->client != NULL);
	g->n++;
	atomic_fetch_add(&b->n_share_members, 1);
	rc = KZ_OK;
out:
	pthread_rwlock_unlock(&b->share_lock);
	return rc;
}

void mqtt_share_remove(struct mqtt_broker *b, const struct mqtt_sub *sub)
{
	pthread_rwlock_wrlock(&b->share_lock);
	struct mqtt_share_group **pg = group_link(b, sub);
	struct mqtt_share_group *g = *pg;
	if (g) {
		struct mqtt_share_member *m = group_member(g, sub->session->client_id);
		if (m) {
			free(m->client_id);
			*m = g->m[--g->n];
			atomic_fetch_sub(&b->n_share_members, 1);
		}
		if (g->n == 0) {
			*pg = g->next;
			free(g->m);
			free(g->group);
			free(g->filter);
			free(g);
		}
	}
	pthread_rwlock_unlock(&b->share_lock);
}

/* ---------- records, wills, clients, timers ---------- */


/* A will is a message the node publishes for the client: it becomes a record like any
 * other (routed at once, stored on the side, as QoS 0 is), so that a retained will survives
 * a restart and replays include wills. */
static void will_store(struct mqtt_shard *s, struct mqtt_session *ss, struct mqtt_msg *w)
{
	struct mqtt_broker *b = s->broker;
	if (!b->store || !kz_store_wants(b->store, w->topic, w->topic_len, w->qos))
		return;
	struct kz_buf rec;
	kz_buf_init(&rec, 0);
	if (mqtt_record_encode(b, w, ss->peer_id, &rec) ||
	    mqtt_shard_store(s, rec.data, (uint32_t)rec.len, NULL, w)) {
		kz_warn("session '%s': will not stored: out of memory", ss->client_id);
		kz_buf_cleanup(&rec);
	}
}

void mqtt_shard_publish_will(struct mqtt_shard *s, struct mqtt_session *ss)
{
	struct mqtt_msg *w = ss->will;
	if (!mqtt_policy_will_allowed(ss, w))
		return;
	w->created_ms = s->now_ms;
	kz_info("session '%s': publishing will on '%.*s'", ss->client_id, (int)w->topic_len,
		(const char *)w->topic);
	if (w->retain)
		(void)mqtt_retained_set(s->broker, w);
	will_store(s, ss, w);
	mqtt_shard_route(s, w);
}

void mqtt_shard_client_link(struct mqtt_shard *s, struct mqtt_client *c)
{
	c->shard = s;
	c->prev = NULL;
	c->next = s->clients;
	if (s->clients)
		s->clients->prev = c;
	s->clients = c;
	s->n_clients++;
}

void mqtt_shard_client_unlink(struct mqtt_shard *s, struct mqtt_client *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (s->clients == c)
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	s->n_clients--;
}

/* Closes the connections whose certificate was revoked or has expired (issue 4: within
 * cert_check_ms; at once after a new revocation set). MQTT 5 clients get DISCONNECT 0x87
 * Not authorized with the reason; every closure is audited. */
static void cert_sweep(struct mqtt_shard *s)
{
	const struct kz_revoked *r = atomic_load(&s->broker->revoked);
	uint64_t gen = r ? r->gen : 0;
	uint32_t every = s->broker->cert_check_ms ? s->broker->cert_check_ms : 10000;
	if (gen == s->revoked_gen_seen && s->now_ms - s->cert_checked_ms < every)
		return;
	s->revoked_gen_seen = gen;
	s->cert_checked_ms = s->now_ms;
	int64_t now = (int64_t)(kz_now_wall_ns() / 1000000000u);
	for (struct mqtt_client *c = s->clients, *n; c; c = n) {
		n = c->next;
		if (c->state == MQTT_CLIENT_CLOSING || !c->cert_serial[0])
			continue;
		const char *why = NULL;
		if (c->cert_not_after && now >= c->cert_not_after)
			why = "certificate expired";
		else if (kz_revoked_has(r, c->cert_serial))
			why = "certificate revoked";
		if (!why)
			continue;
		kz_info("conn %llu %s (serial %s): %s; closing", (unsigned long long)c->conn_id, c->peer_id,
			c->cert_serial, why);
		kz_audit(&(struct kz_audit_entry){ .subject = c->peer_id, .serial = c->cert_serial, .tls_group = c->tls_group, .issuer = c->cert_issuer, .tls = c->tls_suite, .addr = c->addr, .action = "connection",
						  .resource = c->addr, .allow = false, .reason = why });
		if (c->state == MQTT_CLIENT_CONNECTED) {
			mqtt_client_disconnect(c, MQTT_RC_NOT_AUTHORIZED, why);
		} else {
			c->state = MQTT_CLIENT_CLOSING;
			c->ops->close(c->transport);
		}
	}
}

/* A client whose output stays over limits.max_out_buffer (it does not read what it
 * subscribed to) for limits.slow_client_ms is disconnected with 0x97 Quota exceeded; until
 * then its QoS 0 messages are dropped and QoS 1/2 wait in its session's bounded queue. */
static void slow_check(struct mqtt_client *c, uint64_t now)
{
	const struct mqtt_limits *lim = &c->broker->lim;
	if (mqtt_client_can_send(c))
		c->over_since_ms = 0;
	else if (!c->over_since_ms)
		c->over_since_ms = now ? now : 1;
	mqtt_broker_slow_report(c, false);
	if (!c->over_since_ms || !lim->slow_client_ms || now - c->over_since_ms < lim->slow_client_ms)
		return;
	char why[200];
	snprintf(why, sizeof why, "slow client: %zu bytes of output waited over limits.max_out_buffer (%u) "
		 "for %u ms; %llu QoS 0 messages dropped", mqtt_client_output(c), lim->max_out_buffer,
		 lim->slow_client_ms, (unsigned long long)c->dropped);
	atomic_fetch_add_explicit(&c->broker->slow_disconnects, 1, memory_order_relaxed);
	mqtt_broker_slow_report(c, true);
	mqtt_client_disconnect(c, MQTT_RC_QUOTA_EXCEEDED, why);
}

void mqtt_shard_tick(struct mqtt_shard *s)
{
	uint64_t now = s->now_ms;
	/* An inbox is woken only when it goes from empty to not empty (mqtt_inbox_post): an
	 * envelope posted before the broker had its wake (sessions restored at start) left it
	 * not empty and unwoken, and every later one, a migrating CONNECT included, waited for
	 * ever. The tick drains what is there. */
	pthread_mutex_lock(&s->inbox_lock);
	bool pending = s->inbox.n > 0;
	pthread_mutex_unlock(&s->inbox_lock);
	if (pending)
		mqtt_shard_drain(s);
	store_release(s);
	if (s->n_parked)
		mqtt_parked_release(s);
	if (s->n_order_wait)
		mqtt_shard_connects_retry(s);
	mqtt_policy_tick(s);
	cert_sweep(s);
	/* Acknowledgement watermarks of persistent sessions, capped by the durable end of four
	 * ticks ago: a record that old has reached every subscriber's shard, unless it is held
	 * back (unrouted_floor): a session that was not given it must not count it as acked. */
	uint64_t cap = s->durable_seen[s->ticks % 4];
	s->unrouted_seen[s->ticks % 4] = atomic_load_explicit(&s->broker->unrouted_floor, memory_order_acquire);
	if (s->broker->store)
		s->durable_seen[s->ticks++ % 4] = kz_store_durable_next(s->broker->store);
	for (int k = 0; k < 4; k++) /* the floors of four ticks: one released since is on its way */
		if (s->unrouted_seen[k] && cap > s->unrouted_seen[k])
			cap = s->unrouted_seen[k];
	if (s->broker->state && cap) {
		for (uint32_t i = 0; i < s->cap_sessions; i++)
			if (s->sessions[i])
				mqtt_session_persist_acked(s->sessions[i], cap - 1, false);
	}
	if (s->broker->share)
		for (uint32_t i = 0; i < s->cap_sessions; i++)
			if (s->sessions[i] && s->sessions[i]->share_dirty)
				mqtt_session_share(s->sessions[i], false);
	const struct mqtt_limits *lim = &s->broker->lim;
	size_t idle = 0; /* connections idle without CONNECT, for the per-identity cap below */
	for (struct mqtt_client *c = s->clients, *n; c; c = n) {
		n = c->next;
		if (c->state == MQTT_CLIENT_NEW && now - c->accepted_ms > lim->connect_timeout_ms) {
			kz_info("conn %llu %s: no CONNECT within %u ms; closing",
				(unsigned long long)c->conn_id, c->peer_id, lim->connect_timeout_ms);
			c->state = MQTT_CLIENT_CLOSING;
			c->ops->close(c->transport);
		} else if (mqtt_client_unconnected(c, now)) {
			idle++;
		} else if (c->state == MQTT_CLIENT_CONNECTED && c->keep_alive &&
			   now - c->last_rx_ms > (uint64_t)c->keep_alive * 1500u) {
			/* §3.1.2.10: 1.5 times the Keep Alive without a packet */
			mqtt_client_disconnect(c, MQTT_RC_KEEPALIVE_TIMEOUT, "keep alive timeout");
		} else if (c->state == MQTT_CLIENT_CONNECTED) {
			slow_check(c, now);
		}
	}
	mqtt_shard_cap_unconnected(s, idle);
	/* A cluster node holds the wills of its restored sessions until it has read the other
	 * nodes' sessions, and a tick more for the moves that posted here (wills_ready). */
	const struct mqtt_share_ops *sh = s->broker->share;
	if (s->wills_ready_ticks < 2 && (!sh || !sh->wills_ready || sh->wills_ready(s->broker->share_ctx)))
		s->wills_ready_ticks++;
	bool wills = s->wills_ready_ticks >= 2;
	for (uint32_t i = 0; i < s->cap_sessions; i++) {
		struct mqtt_session *ss = s->sessions[i];
		if (!ss || ss->client)
			continue;
		if (ss->will_at_ms && now >= ss->will_at_ms && wills)
			mqtt_session_fire_will(ss);
		if (ss->expire_at_ms && now >= ss->expire_at_ms) {
			kz_info("session '%s' expired", ss->client_id);
			mqtt_session_end(ss);
			i--; /* backward-shift may have moved another session into slot i */
		}
	}
}

void mqtt_shard_shutdown(struct mqtt_shard *s)
{
	for (struct mqtt_client *c = s->clients, *n; c; c = n) {
		n = c->next;
		if (c->state == MQTT_CLIENT_CONNECTED)
			mqtt_client_disconnect(c, MQTT_RC_SHUTTING_DOWN, "server shutting down");
		else if (c->state == MQTT_CLIENT_NEW) {
			c->state = MQTT_CLIENT_CLOSING;
			c->ops->close(c->transport);
		}
	}
}
