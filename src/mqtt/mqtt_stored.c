/* mqtt_stored.c — records on their way to the store and back: a QoS 1/2 message is routed
 * once its record is durable (and, in a cluster, its acknowledgement waits until JetStream
 * has the record too: docs/CLUSTER.md); a QoS 0 record learns its sequence number. */
#include "mqtt/mqtt_internal.h"
#include "base/kz_array.h"
#include "base/kz_err.h"

#include <stdlib.h>
#include <string.h>

void mqtt_broker_publish(struct mqtt_shard *s, struct mqtt_msg *m, uint8_t *rc, const char **why)
{
	*rc = MQTT_RC_SUCCESS;
	*why = NULL;
	if (m->retain && mqtt_retained_set(s->broker, m)) {
		*rc = MQTT_RC_QUOTA_EXCEEDED;
		*why = "retained message limit reached; delivered but not retained";
	}
	mqtt_shard_route(s, m);
}

/* A durable record's message is routed here, on the shard that accepted it; then its
 * publisher answers (st->done). */
void mqtt_stored_route(struct mqtt_stored *st)
{
	uint8_t rc = MQTT_RC_SUCCESS;
	const char *why = NULL;
	struct mqtt_shard *s = st->shard;
	if (st->status == KZ_OK)
		mqtt_broker_publish(s, st->msg, &rc, &why);
	if (st->status == KZ_OK && s->broker->repl_gate &&
	    st->seq > atomic_load_explicit(&s->broker->repl_confirmed, memory_order_acquire)) {
		/* delivered here; the publisher's answer waits until JetStream has it too */
		if (s->n_parked == s->cap_parked) {
			size_t nc;
			struct mqtt_stored **nv = kz_array_grow(s->parked, sizeof *nv, s->cap_parked,
								(size_t)s->n_parked + 1, 64, UINT32_MAX, &nc);
			if (!nv) {
				st->status = KZ_ENOMEM; /* not acknowledged: the client resends */
				st->done(st, rc, why);
				return;
			}
			s->parked = nv;
			s->cap_parked = (uint32_t)nc;
		}
		st->rc = rc;
		st->why = why;
		s->parked[s->n_parked++] = st;
		atomic_store_explicit(&s->parked_hint, s->n_parked, memory_order_release);
		return;
	}
	st->done(st, rc, why);
}

/* The parked acknowledgements JetStream has confirmed by now, in order. */
void mqtt_parked_release(struct mqtt_shard *s)
{
	uint64_t conf = atomic_load_explicit(&s->broker->repl_confirmed, memory_order_acquire);
	uint32_t k = 0;
	while (k < s->n_parked && s->parked[k]->seq <= conf)
		k++;
	for (uint32_t i = 0; i < k; i++)
		s->parked[i]->done(s->parked[i], s->parked[i]->rc, s->parked[i]->why);
	if (k) {
		memmove(s->parked, s->parked + k, (s->n_parked - k) * sizeof *s->parked);
		s->n_parked -= k;
		atomic_store_explicit(&s->parked_hint, s->n_parked, memory_order_release);
	}
}

void mqtt_broker_unrouted(struct mqtt_broker *b, uint64_t seq)
{
	atomic_store_explicit(&b->unrouted_floor, seq, memory_order_release);
}

void mqtt_broker_repl_confirmed(struct mqtt_broker *b, uint64_t seq)
{
	uint64_t cur = atomic_load(&b->repl_confirmed);
	while (seq > cur && !atomic_compare_exchange_weak(&b->repl_confirmed, &cur, seq))
		;
	for (unsigned i = 0; i < b->n_shards; i++) {
		struct mqtt_shard *s = &b->shards[i];
		if (atomic_load_explicit(&s->parked_hint, memory_order_acquire) &&
		    !atomic_exchange(&s->repl_woken, true)) {
			struct mqtt_env e = { .kind = MQTT_ENV_WAKE };
			if (mqtt_inbox_post(b, i, &e))
				atomic_store(&s->repl_woken, false); /* the tick releases them */
		}
	}
}

/* The store thread's answer for one record: back to the shard that accepted it. */
void mqtt_stored_done(void *ctx, int status, uint64_t seq)
{
	struct mqtt_stored *st = ctx;
	st->status = status;
	st->seq = seq;
	atomic_store_explicit(&st->msg->seq, status ? MQTT_SEQ_NONE : seq, memory_order_release);
	struct mqtt_env e = { .kind = MQTT_ENV_STORED, .stored = st };
	struct mqtt_broker *b = st->shard->broker;
	/* On the store thread, answers gather per shard until the batch ends (one lock per
	 * shard and batch, not per record). On ENOMEM the shard never learns: that client
	 * gets no acknowledgement. */
	if (kz_store_on_store_thread() && b->store_out && mqtt_envq_push(&b->store_out[st->shard->idx], &e) == KZ_OK)
		return;
	(void)mqtt_inbox_post(b, st->shard->idx, &e);
}

void mqtt_broker_store_batch_end(void *arg)
{
	struct mqtt_broker *b = arg;
	for (unsigned i = 0; b->store_out && i < b->n_shards; i++)
		if (b->store_out[i].n)
			mqtt_inbox_append(b, i, &b->store_out[i]);
}

/* A QoS 0 record's answer: its message (routed already) learns its sequence number, which
 * replays use to find their seam. */
static void qos0_done(void *ctx, int status, uint64_t seq)
{
	struct mqtt_msg *m = ctx;
	atomic_store_explicit(&m->seq, status ? MQTT_SEQ_NONE : seq, memory_order_release);
	mqtt_msg_unref(m);
}

int mqtt_shard_store(struct mqtt_shard *s, uint8_t *data, uint32_t len, struct mqtt_stored *st,
		     struct mqtt_msg *msg)
{
	if (s->st_n == s->st_cap) {
		size_t ncap;
		struct kz_store_item *nv = kz_array_grow(s->st_items, sizeof *nv, s->st_cap, (size_t)s->st_cap + 1, 64, UINT32_MAX, &ncap);
		if (!nv)
			return KZ_ENOMEM;
		s->st_items = nv;
		s->st_cap = (uint32_t)ncap;
	}
	if (st) {
		s->st_items[s->st_n++] = (struct kz_store_item){ data, len, mqtt_stored_done, st, NULL, false };
	} else {
		atomic_store_explicit(&msg->seq, MQTT_SEQ_PENDING, memory_order_relaxed);
		s->st_items[s->st_n++] = (struct kz_store_item){ data, len, qos0_done, mqtt_msg_ref(msg), NULL, false };
	}
	return KZ_OK;
}

