/* mqtt_replay.c — replaying stored records to a subscription (kz-replay-since), then
 * handing over to live delivery with no gap and no duplicate at the seam.
 *
 * A replay reads the log from its start in batches, on the subscriber's own worker, only
 * while the subscriber can take more (its queue is empty, its window has room, its output
 * is small): a slow subscriber slows its replay, never the node, and never overflows its
 * queue. Live messages that match the subscription meanwhile are held (up to the session's
 * queue cap). The seam: every held message learns its record's sequence number (QoS 1/2
 * before they are routed; QoS 0 from the store soon after); those the replay already read
 * from the log are dropped, the rest are delivered.
 *
 * Not covered: a QoS 0 message accepted before the SUBSCRIBE on another connection, whose
 * record reaches the log after the replay has caught up, is neither replayed nor live (QoS
 * 0 is routed before it is stored). QoS 1/2 messages are routed only once durable, so they
 * cannot fall in that gap. */
#include "mqtt/mqtt_internal.h"
#include "base/kz_array.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "base/kz_topic.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_BATCH 256          /* deliveries per subscription per loop iteration */
#define REPLAY_SCAN 4096          /* records read per subscription per loop iteration */
#define REPLAY_OUT_HIGH (256u << 10) /* pause while this much output waits */

int mqtt_replay_begin(struct mqtt_sub *sub, uint64_t start_seq)
{
	struct mqtt_shard *s = sub->session->shard;
	if (sub->replay)
		mqtt_replay_end(sub);
	if (s->n_replays == s->cap_replays) {
		size_t nc;
		struct mqtt_sub **nv = kz_array_grow(s->replays, sizeof *nv, s->cap_replays, (size_t)s->cap_replays + 1, 8, UINT32_MAX, &nc);
		if (!nv)
			return KZ_ENOMEM;
		s->replays = nv;
		s->cap_replays = (uint32_t)nc;
	}
	struct mqtt_replay *r = calloc(1, sizeof *r);
	if (!r)
		return KZ_ENOMEM;
	r->start = r->next = start_seq;
	kz_debug("session '%s': replay of '%s' from seq %" PRIu64, sub->session->client_id, sub->filter, start_seq);
	sub->seam_lo = sub->seam_hi = 0;
	r->idx = s->n_replays;
	s->replays[s->n_replays++] = sub;
	sub->replay = r;
	mqtt_shard_wake_self(s);
	return KZ_OK;
}

void mqtt_replay_end(struct mqtt_sub *sub)
{
	struct mqtt_replay *r = sub->replay;
	struct mqtt_shard *s = sub->session->shard;
	s->replays[r->idx] = s->replays[--s->n_replays];
	if (r->idx < s->n_replays)
		s->replays[r->idx]->replay->idx = r->idx;
	for (uint32_t i = 0; i < r->n_held; i++)
		mqtt_msg_unref(r->held[i].msg);
	free(r->held);
	free(r);
	sub->replay = NULL;
}

void mqtt_replay_hold(struct mqtt_sub *sub, struct mqtt_msg *msg, uint8_t qos, bool retain)
{
	struct mqtt_replay *r = sub->replay;
	const struct mqtt_limits *lim = &sub->session->shard->broker->lim;
	const struct mqtt_client *c = sub->session->client;
	if (qos < r->min_qos || (qos == 0 && !(c && c->state == MQTT_CLIENT_CONNECTED)))
		return; /* as live: QoS 0 is not kept for a session that is away */
	if (r->n_held == r->cap_held) {
		size_t nc; /* up to limits.max_queued_msgs held */
		struct mqtt_delivery *nv = kz_array_grow(r->held, sizeof *nv, r->cap_held, (size_t)r->n_held + 1, 64,
							 lim->max_queued_msgs, &nc);
		if (!nv) {
			/* not lost: a QoS 1/2 message is routed once durable, so the replay's last scan,
			 * which reads to the log's durable end after this, delivers it; a QoS 0 one
			 * routed before its record is stored can miss that scan */
			if (r->held_dropped++ == 0)
				kz_warn("session '%s': more than %u live messages arrived during a replay; later ones "
					"are left to the replay, which reads them from the log (QoS 0 ones may be lost)",
					sub->session->client_id, lim->max_queued_msgs);
			atomic_fetch_add_explicit(&sub->session->shard->stats.dropped, 1, memory_order_relaxed);
			return;
		}
		r->held = nv;
		r->cap_held = (uint32_t)nc;
	}
	r->held[r->n_held++] = (struct mqtt_delivery){ .msg = mqtt_msg_ref(msg), .qos = qos, .retain = retain,
						      .sub_id = sub->sub_id };
}

/* The subscriber can take more right now. */
static bool ready(const struct mqtt_session *ss)
{
	const struct mqtt_client *c = ss->client;
	uint32_t win = ss->shard->broker->lim.max_inflight;
	if (c && c->peer_receive_max < win)
		win = c->peer_receive_max;
	return c && c->state == MQTT_CLIENT_CONNECTED && ss->q_len == 0 && ss->n_inflight < win &&
	       c->out->len < REPLAY_OUT_HIGH && mqtt_client_can_send(c);
}

struct step {
	struct mqtt_sub *sub;
	uint32_t delivered, examined;
	uint64_t now_ns;
};

static int replay_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct step *st = ctx;
	struct mqtt_sub *sub = st->sub;
	struct mqtt_replay *r = sub->replay;
	struct mqtt_session *ss = sub->session;
	struct kz_record rec;
	const char *why;
	r->next = seq + 1;
	r->pos = *pos;
	st->examined++;
	if (kz_record_decode(body, n, &rec, &why) == KZ_OK && rec.qos >= r->min_qos &&
	    kz_topic_match((const uint8_t *)sub->filter, sub->filter_len, rec.topic.p, rec.topic.len) &&
	    !(rec.expiry_ns && rec.expiry_ns <= st->now_ns)) {
		struct mqtt_msg *m = mqtt_msg_from_record(ss->shard->broker, &rec);
		if (m) {
			m->created_ms = ss->shard->now_ms;
			atomic_store_explicit(&m->seq, seq, memory_order_relaxed);
			if (rec.expiry_ns) {
				uint64_t left = (rec.expiry_ns - st->now_ns + 999999999u) / 1000000000u;
				m->has_expiry = true;
				m->expiry_s = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
			}
			uint8_t qos = m->qos < sub->qos ? m->qos : sub->qos;
			mqtt_session_deliver(ss, m, qos, sub->retain_as_published && m->retain, sub->sub_id);
			mqtt_msg_unref(m);
			st->delivered++;
		}
	}
	return st->delivered >= REPLAY_BATCH || st->examined >= REPLAY_SCAN || !ready(ss);
}

/* Delivers what was held, unless the replay read it from the log already; false while a
 * held QoS 0 message does not know its sequence number yet. */
static bool seam(struct mqtt_sub *sub)
{
	struct mqtt_replay *r = sub->replay;
	for (uint32_t i = 0; i < r->n_held; i++)
		if (atomic_load_explicit(&r->held[i].msg->seq, memory_order_acquire) == MQTT_SEQ_PENDING)
			return false;
	for (uint32_t i = 0; i < r->n_held; i++) {
		struct mqtt_delivery *d = &r->held[i];
		uint64_t seq = atomic_load_explicit(&d->msg->seq, memory_order_relaxed);
		if (!(seq >= r->start && seq <= r->scanned_end))
			mqtt_session_deliver(sub->session, d->msg, d->qos, d->retain, d->sub_id);
	}
	return true;
}

static void step(struct mqtt_shard *s, struct mqtt_sub *sub)
{
	struct mqtt_replay *r = sub->replay;
	if (!r->caught_up) {
		struct step st = { .sub = sub, .now_ns = kz_now_wall_ns() };
		uint64_t end = 0;
		char why[512];
		int rc = kz_store_scan(s->broker->store, r->next, r->pos.off ? &r->pos : NULL, replay_cb, &st,
				       &end, why, sizeof why);
		if (rc < 0) {
			kz_error("session '%s': replay stopped: %s", sub->session->client_id, why);
			r->scanned_end = r->next - 1; /* live from here on */
			r->caught_up = true;
		} else if (rc == 0) { /* read everything durable */
			if (end > r->next)
				r->next = end;
			r->scanned_end = r->next - 1;
			r->caught_up = true;
		} else if (ready(sub->session)) {
			mqtt_shard_wake_self(s); /* stopped by the batch limits: go on soon */
			return;
		} else {
			return; /* an acknowledgement or a drained buffer brings the next iteration */
		}
	}
	if (!seam(sub)) {
		mqtt_shard_wake_self(s); /* a QoS 0 record is on its way to the log */
		return;
	}
	kz_debug("session '%s': replay of '%s' caught up at seq %" PRIu64 "; live from here",
		 sub->session->client_id, sub->filter, r->scanned_end);
	sub->seam_lo = r->start;
	sub->seam_hi = r->scanned_end;
	mqtt_replay_end(sub);
}

void mqtt_shard_replays_run(struct mqtt_shard *s)
{
	if (!s->broker->store)
		return;
	for (uint32_t i = s->n_replays; i-- > 0;) {
		struct mqtt_sub *sub = s->replays[i];
		if (ready(sub->session))
			step(s, sub);
	}
}
