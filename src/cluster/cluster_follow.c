/* cluster_follow.c — the follower (docs/CLUSTER.md "The path of a delivery on another node"):
 * a durable pull consumer on KZ_RECORDS; other nodes' records go into this node's log once
 * each, by origin sequence, with the gaps a re-publish leaves filled when their records come. */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"
#include "base/kz_time.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------- the follower (docs/CLUSTER.md "The path of a delivery on another node") ---------- */

/* In the follower's scratch copy (f_scratch, n): the origin named id, added when new. */
static struct origin *origin_of(struct origin *v, uint32_t *n, const char *id)
{
	for (uint32_t i = 0; i < *n; i++)
		if (strcmp(v[i].id, id) == 0)
			return &v[i];
	if (*n == MAX_ORIGINS || strlen(id) >= sizeof v[0].id)
		return NULL;
	struct origin *o = &v[(*n)++];
	memset(o, 0, sizeof *o);
	snprintf(o->id, sizeof o->id, "%s", id);
	return o;
}

/* Takes s out of o's gaps; false when it is in none (a duplicate). */
static bool gap_take(struct origin *o, uint64_t s)
{
	for (uint32_t g = 0; g < o->n_gaps; g++) {
		uint64_t lo = o->gaps[g].lo, hi = o->gaps[g].hi;
		if (s < lo || s > hi)
			continue;
		if (lo == hi) {
			o->gaps[g] = o->gaps[--o->n_gaps];
		} else if (s == lo) {
			o->gaps[g].lo++;
		} else if (s == hi) {
			o->gaps[g].hi--;
		} else if (o->n_gaps < KZ_CLUSTER_MAX_GAPS) { /* split */
			o->gaps[g].hi = s - 1;
			o->gaps[o->n_gaps].lo = s + 1;
			o->gaps[o->n_gaps++].hi = hi;
		} else { /* no room to split: keep the lower part open, the upper part given up */
			o->gaps[g].hi = s - 1;
		}
		return true;
	}
	return false;
}

/* DIR/cluster.state (cluster.h): the watermark, then what this node took of each origin. */
int kz_cluster_state_parse(const char *text, size_t n, struct kz_cluster_state *st)
{
	memset(st, 0, sizeof *st);
	size_t off = 0;
	unsigned line = 0;
	while (off < n) {
		const char *nl = memchr(text + off, '\n', n - off);
		size_t len = nl ? (size_t)(nl - (text + off)) : n - off;
		char buf[160];
		line++;
		if (len >= sizeof buf)
			return -(int)line;
		memcpy(buf, text + off, len);
		buf[len] = 0;
		off += len + (nl ? 1 : 0);
		unsigned long long a, b, x = 0, y;
		char id[65], end;
		if (line == 1) {
			if (sscanf(buf, "confirmed %llu %llu %llu%c", &a, &b, &x, &end) != 3 &&
			    sscanf(buf, "confirmed %llu %llu%c", &a, &b, &end) != 2)
				return -1;
			st->confirmed_local = a;
			st->confirmed_origin = b;
			st->confirmed_sseq = x;
		} else if (sscanf(buf, "span %llu %llu %llu %llu%c", &a, &b, &x, &y, &end) == 4 && b < y &&
			   st->spans.n < KZ_CLUSTER_MAX_SPANS && (!st->spans.n || st->spans.v[st->spans.n - 1].wm_origin <= b)) {
			st->spans.v[st->spans.n++] = (struct kz_cluster_span){ a, b, x, y };
		} else if (sscanf(buf, "origin %64s %llu%c", id, &a, &end) == 2 && strlen(id) < sizeof st->origins[0].id &&
			   st->n_origins < KZ_CLUSTER_MAX_ORIGINS) {
			snprintf(st->origins[st->n_origins].id, sizeof st->origins[0].id, "%s", id);
			st->origins[st->n_origins].n_gaps = 0;
			st->origins[st->n_origins++].seq = a;
		} else if (sscanf(buf, "gap %64s %llu %llu%c", id, &a, &b, &end) == 3 && st->n_origins &&
			   strcmp(id, st->origins[st->n_origins - 1].id) == 0 && a <= b &&
			   b < st->origins[st->n_origins - 1].seq &&
			   st->origins[st->n_origins - 1].n_gaps < KZ_CLUSTER_MAX_GAPS) {
			struct kz_cluster_origin *o = &st->origins[st->n_origins - 1];
			o->gaps[o->n_gaps].lo = a;
			o->gaps[o->n_gaps++].hi = b;
		} else {
			return -(int)line;
		}
	}
	return line ? 0 : -1;
}

bool kz_cluster_span_add(struct kz_cluster_spans *s, uint64_t local, uint64_t origin, uint64_t sseq, uint64_t end)
{
	if (end <= origin)
		return false;
	for (uint32_t i = 0; i < s->n; i++)
		if (s->v[i].wm_origin <= origin && s->v[i].end >= end)
			return false; /* inside one already: a cut in it goes back at least as far */
	if (s->n == KZ_CLUSTER_MAX_SPANS) { /* the one that ends lowest goes: the oldest in the stream */
		uint32_t low = 0;
		for (uint32_t i = 1; i < s->n; i++)
			if (s->v[i].end < s->v[low].end)
				low = i;
		memmove(&s->v[low], &s->v[low + 1], (s->n - low - 1) * sizeof s->v[0]);
		s->n--;
	}
	uint32_t at = s->n;
	while (at > 0 && s->v[at - 1].wm_origin > origin)
		at--;
	memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof s->v[0]);
	s->v[at] = (struct kz_cluster_span){ local, origin, sseq, end };
	s->n++;
	return true;
}

const struct kz_cluster_span *kz_cluster_span_of(const struct kz_cluster_spans *s, uint64_t last)
{
	for (uint32_t i = 0; i < s->n; i++) /* by watermark: the first that holds it goes back furthest */
		if (s->v[i].wm_origin < last && last <= s->v[i].end)
			return &s->v[i];
	return NULL;
}

bool kz_cluster_origin_take(struct kz_cluster_origin *o, uint64_t s, uint64_t *late, uint64_t *dropped)
{
	if (s == o->seq + 1) {
		o->seq = s;
		return true;
	}
	if (s > o->seq + 1) { /* its predecessors come later (a re-publish), or never */
		if (o->n_gaps == KZ_CLUSTER_MAX_GAPS) {
			kz_warn("cluster: %u gaps open for node %s: the oldest, %" PRIu64 "..%" PRIu64 ", is given up", o->n_gaps,
				o->id, o->gaps[0].lo, o->gaps[0].hi);
			memmove(&o->gaps[0], &o->gaps[1], (KZ_CLUSTER_MAX_GAPS - 1) * sizeof o->gaps[0]);
			o->n_gaps--;
			(*dropped)++;
		}
		o->gaps[o->n_gaps].lo = o->seq + 1;
		o->gaps[o->n_gaps++].hi = s - 1;
		o->seq = s;
		return true;
	}
	if (gap_take(o, s)) {
		(*late)++;
		return true;
	}
	return false;
}

void kz_cluster_followed(struct kz_cluster *c, int status)
{
	pthread_mutex_lock(&c->lock);
	if (status)
		c->f_failed++;
	c->f_done++;
	pthread_cond_broadcast(&c->fcond);
	pthread_mutex_unlock(&c->lock);
}

/* Is a gap of o open below s? (Then s is held back: it would overtake a record still awaited.) */
static bool gap_below(const struct origin *o, uint64_t s)
{
	for (uint32_t g = 0; g < o->n_gaps; g++)
		if (o->gaps[g].lo < s)
			return true;
	return false;
}

static uint64_t lowest_gap(const struct origin *o)
{
	uint64_t lo = UINT64_MAX;
	for (uint32_t g = 0; g < o->n_gaps; g++)
		if (o->gaps[g].lo < lo)
			lo = o->gaps[g].lo;
	return lo;
}

/* Lock held. Delivers origin i's held records below its lowest open gap (all of them when
 * everything), in origin order. */
static void release_held(struct kz_cluster *c, uint32_t i, bool everything)
{
	struct held_list *h = &c->held[i];
	uint64_t lo = everything ? UINT64_MAX : lowest_gap(&c->origins[i]);
	size_t k = 0;
	while (k < h->n && h->v[k].seq < lo) {
		if (h->v[k].obj && c->cfg.release)
			c->cfg.release(c->cfg.arg, h->v[k].obj);
		k++;
	}
	memmove(h->v, h->v + k, (h->n - k) * sizeof *h->v);
	h->n -= k;
	c->held_total -= k;
	h->since_ms = h->n ? (h->since_ms ? h->since_ms : kz_now_mono_ms()) : 0;
}

/* Lock held. Keeps (seq, obj) in origin i's held records, in origin order. */
static bool hold(struct kz_cluster *c, uint32_t i, uint64_t seq, void *obj)
{
	struct held_list *h = &c->held[i];
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 256;
		struct held *nv = realloc(h->v, cap * sizeof *nv);
		if (!nv)
			return false;
		h->v = nv;
		h->cap = cap;
	}
	size_t k = h->n;
	while (k > 0 && h->v[k - 1].seq > seq)
		k--;
	memmove(h->v + k + 1, h->v + k, (h->n - k) * sizeof *h->v);
	h->v[k] = (struct held){ seq, obj };
	h->n++;
	c->held_total++;
	if (!h->since_ms)
		h->since_ms = kz_now_mono_ms();
	return true;
}

bool kz_cluster_settled(struct kz_cluster *c, uint64_t since_ns, uint32_t max_wait_ms)
{
	bool ok = false;
	for (int round = 0;; round++) {
		/* also while the node is not connected to NATS: a publisher that fails over because
		 * its node stalled often reaches a node that is reconnecting too (test_faults.py saw
		 * its new messages overtake its old ones that way) */
		uint64_t caught = atomic_load(&c->caught_up_ns), looked = atomic_load(&c->tails_ns);
		ok = caught >= since_ns;
		/* and every record other nodes had acknowledged on KZ_BRIDGE when it came: taken
		 * from KZ_RECORDS, where this node's look at KZ_BRIDGE (newer than since_ns) put what
		 * was not there yet (cluster_adopt.c; asked for while the follower catches up, too) */
		bool bridge = c->cfg.bridge_ms || atomic_load(&c->bridge_seen);
		pthread_mutex_lock(&c->lock);
		ok = ok && c->held_total == 0;
		if (bridge && (looked < since_ns || kz_cluster_tails_pending(c, caught))) {
			ok = false;
			atomic_store(&c->tails_wanted, true);
		}
		if (!ok) {
			/* the bridge thread, at once and not at its next turn: it looks at KZ_BRIDGE,
			 * and wakes the follower (its idle pull) for a CONNECT newer than its last check */
			if (atomic_load(&c->order_since_ns) < since_ns)
				atomic_store(&c->order_since_ns, since_ns);
			atomic_store(&c->order_waiting, true); /* before the wake it causes */
			pthread_cond_signal(&c->tcond);
		}
		pthread_mutex_unlock(&c->lock);
		if (ok)
			break;
		/* A catch-up (caught_up) or a look that ended between the reads above and the flags
		 * kicked nobody: the CONNECT then waited for the next one, a whole idle pull (about
		 * 6 % of CONNECTs on an idle cluster waited 93 ms so). The flags are set now, so a
		 * later one kicks; one that came in between is read again here. */
		if (round == 2 || (atomic_load(&c->caught_up_ns) == caught && atomic_load(&c->tails_ns) == looked))
			break;
	}
	uint64_t now = kz_now_wall_ns();
	if (ok || now < since_ns + (uint64_t)max_wait_ms * 1000000u)
		return ok;
	atomic_fetch_add(&c->order_expired, 1);
	kz_warn("cluster: this node has not taken every record of the stream within %u ms (cluster.failover_order_ms): "
		"a CONNECT is answered now; what its client published on another node may reach subscribers here after "
		"what it publishes now", max_wait_ms);
	return true;
}

/* Gaps that waited longer than cluster.gap_timeout_ms: what they held back is delivered now,
 * out of order (a late record that comes after is still taken and delivered). */
void kz_cluster_held_expire(struct kz_cluster *c, bool everything)
{
	uint64_t now = kz_now_mono_ms();
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < c->n_origins; i++) {
		struct held_list *h = &c->held[i];
		if (!h->n || (!everything && now - h->since_ms < c->cfg.gap_timeout_ms))
			continue;
		if (!everything) {
			kz_warn("cluster: records of node %s awaited for %u ms (cluster.gap_timeout_ms): the %zu after them are "
				"delivered now, out of order", c->origins[i].id, c->cfg.gap_timeout_ms, h->n);
			c->released_late += h->n;
		}
		release_held(c, i, true);
	}
	pthread_mutex_unlock(&c->lock);
}

/* Message m (acknowledgement subject reply) is decided and acknowledged: the floor moves. A
 * message delivered for the first time at or below the floor says that our consumer started
 * over (its server restarted; it lives in memory): f_reset, made again from the floor. The
 * first message a consumer delivers puts the floor below it (the sequences under it are gone
 * from the stream, or under the floor it was made from). */
/* What identifies message m, at stream sequence sseq, for the floor: its origin and origin
 * sequence ("" and 0 when it has none). */
void kz_cluster_mark_of(natsMsg *m, uint64_t sseq, struct kz_cluster_mark *mk)
{
	const char *o = NULL;
	mk->sseq = sseq;
	mk->oseq = kz_cluster_header_u64(m, "Kz-Origin-Seq");
	snprintf(mk->node, sizeof mk->node, "%s", natsMsgHeader_Get(m, "Kz-Origin", &o) == NATS_OK && o ? o : "");
}

static void floor_decided(struct kz_cluster *c, natsMsg *m, const char *reply)
{
	struct kz_cluster_ack_info ai;
	struct kz_cluster_floor *f = &c->floor;
	if (!kz_cluster_ack_parse(reply, &ai) || !ai.stream_seq)
		return;
	if (ai.delivered == 1 && f->floor && ai.stream_seq <= f->floor)
		c->f_reset = true;
	if (ai.consumer_seq == 1 && ai.stream_seq - 1 > f->floor)
		kz_cluster_floor_reset(f, ai.stream_seq - 1);
	struct kz_cluster_mark mk;
	kz_cluster_mark_of(m, ai.stream_seq, &mk);
	kz_cluster_floor_take(f, &mk);
}

/* One fetched batch: the new records go to the node, and once every one of them is durable
 * each message is acknowledged (explicitly: with AckAll, acknowledging a later message would
 * also acknowledge one that JetStream sent us and that never arrived, a connection lost with
 * it in flight, and this node would never get it). What was taken is decided on a copy of the
 * origins, made the real one only when what was submitted is durable; a record the node could
 * not take (out of memory) ends the batch there: it and the rest are not acknowledged and come
 * again after the AckWait. A record behind a gap is stored and held back; the records a late
 * one lets through are delivered after it. */
static bool follow_batch(struct kz_cluster *c, natsMsgList *list)
{
	struct origin *v = c->f_scratch;
	uint32_t nv;
	uint64_t want, failed0, late = 0, dropped = 0, dups = 0;
	int n = 0, done = 0; /* records submitted; messages decided (a prefix of the list) */
	/* the held records' slots: follow() fills them once durable, so bh is never moved */
	struct bh { uint32_t oi; uint64_t seq; void *obj; } *bh = NULL;
	size_t nh = 0, bh_cap = 0;
	bool touched[MAX_ORIGINS] = { false }, failed = false;
	for (int i = 0; i < list->Count; i++) {
		const char *cv = NULL;
		uint64_t cnt = kz_cluster_batch_count(natsMsgHeader_Get(list->Msgs[i], "Kz-Count", &cv) == NATS_OK ? cv : NULL);
		bh_cap += cnt ? cnt : 1;
	}
	if (bh_cap && !(bh = calloc(bh_cap, sizeof *bh)))
		return false;
	pthread_mutex_lock(&c->lock);
	want = c->f_done;
	failed0 = c->f_failed;
	nv = c->n_origins;
	memcpy(v, c->origins, nv * sizeof *v);
	pthread_mutex_unlock(&c->lock);
	for (int i = 0; i < list->Count; i++, done = i) {
		natsMsg *m = list->Msgs[i];
		const char *origin = NULL, *cv = NULL;
		uint64_t s = kz_cluster_header_u64(m, "Kz-Origin-Seq");
		if (natsMsgHeader_Get(m, "Kz-Origin", &origin) != NATS_OK || !origin || !s ||
		    strcmp(origin, c->cfg.node_id) == 0)
			continue; /* ours (already in our log), or not a kizuna record */
		uint64_t cnt = kz_cluster_batch_count(natsMsgHeader_Get(m, "Kz-Count", &cv) == NATS_OK ? cv : NULL);
		const uint8_t *data = (const uint8_t *)natsMsg_GetData(m);
		size_t dn = (size_t)natsMsg_GetDataLength(m), off = 0;
		if (!cnt || s + cnt < s || (cnt > 1 && !kz_cluster_batch_valid(data, dn, cnt))) {
			kz_warn("cluster: a message of node %s at its record %" PRIu64 " is not a valid batch (Kz-Count %s): "
				"skipped", origin, s, cv ? cv : "absent");
			continue;
		}
		uint32_t nv0 = nv;
		struct origin *o = origin_of(v, &nv, origin);
		if (!o)
			continue;
		uint32_t oi = (uint32_t)(o - v);
		for (uint64_t k = 0; k < cnt; k++) {
			const uint8_t *rec = data;
			size_t rn = dn;
			uint64_t sk = s + k;
			if (cnt > 1)
				(void)kz_cluster_batch_next(data, dn, &off, &rec, &rn); /* valid: checked above */
			struct origin before = *o;
			if (!kz_cluster_origin_take(o, sk, &late, &dropped)) {
				dups++;
				continue;
			}
			if (nh == bh_cap) { /* more records than the messages said: not one more */
				*o = before;
				failed = true;
				break;
			}
			void **slot = NULL;
			pthread_mutex_lock(&c->lock);
			bool behind = gap_below(o, sk) || (oi < c->n_origins && c->held[oi].n && c->held[oi].v[0].seq < sk);
			pthread_mutex_unlock(&c->lock);
			if (behind) {
				bh[nh] = (struct bh){ oi, sk, NULL };
				slot = &bh[nh].obj;
			}
			if (c->cfg.follow(c->cfg.arg, rec, rn, slot)) {
				*o = before; /* not taken: it (and the rest of its message) comes again */
				if (k == 0)
					nv = nv0;
				failed = true;
				break;
			}
			if (behind)
				nh++;
			touched[oi] = true;
			n++;
			want++;
		}
		if (failed)
			break; /* done stays i: this message is not acknowledged */
	}
	/* what was submitted is durable (or failed) before the decisions are kept, and before bh,
	 * which the held records' slots point into, goes */
	pthread_mutex_lock(&c->lock);
	while (c->f_done < want && !c->stop)
		pthread_cond_wait(&c->fcond, &c->lock);
	bool ok = c->f_done >= want && c->f_failed == failed0;
	uint64_t conf = c->conf_local, conf_o = c->conf_origin, conf_s = c->conf_sseq;
	c->st.duplicates += dups;
	if (ok) {
		memcpy(c->origins, v, nv * sizeof *v);
		c->n_origins = nv;
		c->st.followed += (uint64_t)n;
		c->late_taken += late;
		c->gaps_dropped += dropped;
		for (size_t k = 0; k < nh; k++)
			if (!hold(c, bh[k].oi, bh[k].seq, bh[k].obj) && bh[k].obj && c->cfg.release)
				c->cfg.release(c->cfg.arg, bh[k].obj); /* no memory to hold it: now */
		for (uint32_t i = 0; i < nv; i++)
			if (touched[i] && c->held[i].n)
				release_held(c, i, false);
	} else {
		for (size_t k = 0; k < nh; k++) /* the batch comes again: these will be stored again */
			if (bh[k].obj && c->cfg.release)
				c->cfg.release(c->cfg.arg, bh[k].obj);
	}
	pthread_mutex_unlock(&c->lock);
	free(bh);
	if (!ok)
		return false;
	/* what this node now has, saved before the acknowledgements: a message delivered again
	 * after a crash between the two is recognised as already here, not appended twice */
	if (n)
		kz_cluster_state_save(c, conf, conf_o, conf_s);
	for (int i = 0; i < done; i++) { /* an empty message to its reply subject: +ACK */
		const char *reply = natsMsg_GetReply(list->Msgs[i]);
		if (natsConnection_Publish(c->nc, reply, NULL, 0) != NATS_OK)
			return false;
		floor_decided(c, list->Msgs[i], reply);
	}
	return done == list->Count;
}

/* Token k of reply ("$JS.ACK...") as a number into *v; false when it is not one. */
static bool ack_token(const char *const *tok, int k, uint64_t *v)
{
	char d[24];
	size_t len = strcspn(tok[k], ".");
	if (len == 0 || len >= sizeof d)
		return false;
	memcpy(d, tok[k], len);
	d[len] = 0;
	*v = kz_cluster_parse_seq(d);
	return *v || strcmp(d, "0") == 0;
}

/* The acknowledgement subject's tokens: 9 ($JS.ACK.<stream>.<consumer>.<delivered>.<stream
 * seq>.<consumer seq>.<time>.<pending>), or 12 or more (with <domain>.<account hash> after
 * ACK, and a random token last). *first: the index of <delivered>; the number of tokens or -1. */
static int ack_tokens(const char *reply, const char *tok[16], int *first)
{
	if (!reply || strncmp(reply, "$JS.ACK.", 8) != 0)
		return -1;
	int n = 0;
	for (const char *q = reply; q && n < 16; q = strchr(q, '.'), q = q ? q + 1 : NULL)
		tok[n++] = q;
	*first = n == 9 ? 4 : n >= 12 ? 6 : -1;
	return *first < 0 ? -1 : n;
}

int64_t kz_cluster_ack_pending(const char *reply)
{
	const char *tok[16];
	int first;
	uint64_t x;
	if (ack_tokens(reply, tok, &first) < 0 || !ack_token(tok, first + 4, &x))
		return -1;
	return (int64_t)(x & INT64_MAX);
}

bool kz_cluster_ack_parse(const char *reply, struct kz_cluster_ack_info *out)
{
	const char *tok[16];
	int first;
	return ack_tokens(reply, tok, &first) >= 0 && ack_token(tok, first, &out->delivered) &&
	       ack_token(tok, first + 1, &out->stream_seq) && ack_token(tok, first + 2, &out->consumer_seq);
}

void kz_cluster_floor_reset(struct kz_cluster_floor *f, uint64_t floor)
{
	f->floor = floor;
	f->known = false;
	f->n_above = 0;
}

void kz_cluster_floor_take(struct kz_cluster_floor *f, const struct kz_cluster_mark *m)
{
	if (m->sseq <= f->floor)
		return;
	if (m->sseq == f->floor + 1) {
		f->floor = m->sseq;
		f->id = *m;
		f->known = true;
		uint32_t k = 0;
		while (k < f->n_above && f->above[k].sseq <= f->floor + 1) {
			if (f->above[k].sseq == f->floor + 1) {
				f->floor++;
				f->id = f->above[k];
			}
			k++;
		}
		memmove(f->above, f->above + k, (f->n_above - k) * sizeof *f->above);
		f->n_above -= k;
		return;
	}
	uint32_t k = f->n_above;
	while (k > 0 && f->above[k - 1].sseq > m->sseq)
		k--;
	if (k > 0 && f->above[k - 1].sseq == m->sseq)
		return; /* decided twice (delivered again) */
	if (f->n_above == KZ_CLUSTER_FLOOR_ABOVE) { /* the highest is forgotten */
		if (k == f->n_above)
			return;
		f->n_above--;
	}
	memmove(f->above + k + 1, f->above + k, (f->n_above - k) * sizeof *f->above);
	f->above[k] = *m;
	f->n_above++;
}

/* Did the stream hold nothing more for us than this batch? (The last message's pending.) */
static bool batch_was_all(natsMsgList *list)
{
	return list->Count && kz_cluster_ack_pending(natsMsg_GetReply(list->Msgs[list->Count - 1])) == 0;
}

/* The follower's pull. nats.c 3.4.1's fetch wrote past its message array under load (records
 * of an earlier request still queued when the next began: heap corruption seen, ASan at the
 * read), so the requests are made here: to $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>,
 * each with its own inbox under one subscription. Records come with their acknowledgement
 * subject as reply; a status message (404 no messages, 408 expired, 409 ...) to the request's
 * own inbox ends it. With no_wait and an expiry, nats-server 2.9 keeps the request open until
 * its batch is full or it expires, sending each record as it comes: a pull returns as soon as
 * it has records. */
struct puller {
	natsSubscription *sub;
	char prefix[128], next[192];
	uint64_t n;
	unsigned unanswered; /* requests in a row that got neither a record nor a status */
	char wake[160];      /* c->f_wake: a message on it ends a pull that waits for a first record */
	bool cut;            /* the last pull was ended so: the consumer is asked at once */
};

static int puller_open(struct kz_cluster *c, struct puller *p, const char *durable)
{
	natsInbox *ib = NULL;
	if (natsInbox_Create(&ib) != NATS_OK)
		return -1;
	snprintf(p->prefix, sizeof p->prefix, "%s", (const char *)ib);
	natsInbox_Destroy(ib);
	char wild[140];
	snprintf(wild, sizeof wild, "%s.*", p->prefix);
	snprintf(p->next, sizeof p->next, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", STREAM, durable);
	snprintf(p->wake, sizeof p->wake, "%s.wake", p->prefix);
	if (natsConnection_SubscribeSync(&p->sub, c->nc, wild) != NATS_OK) {
		p->sub = NULL;
		return -1;
	}
	pthread_mutex_lock(&c->lock);
	memcpy(c->f_wake, p->wake, sizeof c->f_wake);
	pthread_mutex_unlock(&c->lock);
	(void)natsSubscription_SetPendingLimits(p->sub, -1, -1); /* a batch is bounded by the request */
	return 0;
}

/* A wake (an empty message on p->wake, from the bridge thread): true when it asks this pull
 * to end, i.e. a CONNECT came after the follower last found itself caught up. */
static bool woken(const struct puller *p, natsMsg *m)
{
	if (strcmp(natsMsg_GetSubject(m), p->wake) != 0)
		return false;
	natsMsg_Destroy(m);
	return true;
}

static natsStatus pull(struct kz_cluster *c, struct puller *p, natsMsgList *list, int max, int64_t expires_ms)
{
	list->Count = 0;
	p->cut = false;
	if (!(list->Msgs = calloc((size_t)max, sizeof *list->Msgs)))
		return NATS_NO_MEMORY;
	natsMsg *m = NULL;
	const char *st = NULL;
	/* records that came for an earlier request (its answer was late) go first */
	bool wake = false;
	while (list->Count < max && natsSubscription_NextMsg(&m, p->sub, 0) == NATS_OK) {
		if (woken(p, m))
			wake = true;
		else if (natsMsgHeader_Get(m, "Status", &st) == NATS_OK)
			natsMsg_Destroy(m);
		else
			list->Msgs[list->Count++] = m;
	}
	if (list->Count)
		return NATS_OK;
	p->cut = wake && kz_cluster_check_wanted(c);
	if (p->cut)
		return NATS_TIMEOUT; /* a CONNECT waits for the check: not a request unanswered */
	char inbox[160], req[128];
	snprintf(inbox, sizeof inbox, "%s.%" PRIu64, p->prefix, ++p->n);
	snprintf(req, sizeof req, "{\"batch\":%d,\"expires\":%" PRId64 ",\"no_wait\":true}", max,
		 (expires_ms - 10) * 1000000);
	natsStatus s = natsConnection_PublishRequestString(c->nc, p->next, inbox, req);
	int64_t deadline = nats_Now() + expires_ms;
	/* A CONNECT that comes while this waits for a first record (kz_cluster_settled) is
	 * answered once the follower has asked its consumer, after the pull: waited out, that
	 * added up to the whole expiry to every CONNECT on an idle cluster (about 90 ms). So the
	 * bridge thread ends the wait with a wake for a CONNECT that came after the follower
	 * last found itself caught up (one that waits for something else, records held behind
	 * a gap say, gets none: the follower's check could not answer it). A pull ended so is
	 * not counted as unanswered: its request stays open at the server, and what it brings
	 * is taken first by the next pull. */
	while (s == NATS_OK && list->Count < max) {
		/* after the first record, only what is already here: a waiting request stays open
		 * until its batch is full or it expires, and its later records are taken first by
		 * the next pull */
		int64_t left = list->Count ? 0 : deadline - nats_Now();
		if (left < 0 || (left == 0 && !list->Count))
			break;
		s = natsSubscription_NextMsg(&m, p->sub, left);
		if (s != NATS_OK)
			break;
		if (woken(p, m)) {
			if (!list->Count && kz_cluster_check_wanted(c)) {
				p->cut = true;
				s = NATS_TIMEOUT;
				break;
			}
			continue;
		}
		if (natsMsgHeader_Get(m, "Status", &st) == NATS_OK) {
			bool ours = strcmp(natsMsg_GetSubject(m), inbox) == 0;
			natsMsg_Destroy(m);
			if (ours) {
				p->unanswered = 0;
				break;
			}
			continue;
		}
		list->Msgs[list->Count++] = m;
	}
	if (list->Count) {
		p->unanswered = 0;
		return NATS_OK;
	}
	if (s == NATS_TIMEOUT && !p->cut)
		p->unanswered++;
	return s == NATS_OK || s == NATS_TIMEOUT ? NATS_TIMEOUT : s;
}

void kz_cluster_wake_follower(struct kz_cluster *c)
{
	uint64_t since = atomic_load(&c->order_since_ns);
	if (since <= c->woken_ns || !kz_cluster_check_wanted(c))
		return;
	c->woken_ns = since;
	char subj[sizeof c->f_wake];
	pthread_mutex_lock(&c->lock);
	memcpy(subj, c->f_wake, sizeof subj);
	pthread_mutex_unlock(&c->lock);
	if (*subj)
		(void)natsConnection_Publish(c->nc, subj, NULL, 0);
}

static void caught_up(struct kz_cluster *c, uint64_t t0)
{
	atomic_store(&c->caught_up_ns, t0);
	if (atomic_exchange(&c->order_waiting, false) && c->cfg.caught_up)
		c->cfg.caught_up(c->cfg.arg);
}

void *kz_cluster_follower(void *arg)
{
	struct kz_cluster *c = arg;
	struct puller pl = { 0 };
	unsigned idle = 0;
	uint64_t bad_ms = 0; /* since when our consumer has looked broken (0: it is fine) */
	bool last_ok = true;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		bool stop = c->stop;
		pthread_mutex_unlock(&c->lock);
		if (stop)
			break;
		atomic_store(&c->f_parked, false); /* before js_ready is read: swap_server */
		if (!atomic_load(&c->js_ready)) {
			kz_cluster_sub_end(c->nc, pl.sub); /* of the connection being replaced */
			pl.sub = NULL;
			atomic_store(&c->f_parked, true);
			nats_Sleep(20);
			continue;
		}
		if (!pl.sub && (kz_cluster_consumer_ensure(c, &bad_ms) || puller_open(c, &pl, c->f_name))) {
			nats_Sleep(250);
			continue;
		}
		natsMsgList list = { 0 };
		uint64_t t0 = kz_now_wall_ns();
		/* up to 256 records, at once when there are any, or after up to 100 ms for the first:
		 * when none came, nothing was waiting for us at t0 (caught_up_ns, approximate: a
		 * CONNECT waiting for it asks the consumer below) */
		natsStatus s = pull(c, &pl, &list, 256, 100);
		if (s == NATS_OK) {
			bool ok = follow_batch(c, &list);
			if (ok && last_ok && batch_was_all(&list) && !atomic_load(&c->order_waiting))
				caught_up(c, t0);
			last_ok = ok;
		} else if (s == NATS_TIMEOUT && last_ok && !pl.cut && !atomic_load(&c->order_waiting)) {
			caught_up(c, t0); /* nothing was waiting for us at t0 */
		}
		/* A CONNECT waits for an exact answer (kz_cluster_settled): records JetStream sent us
		 * for an earlier request can still be on their way (after a pause of this process, a
		 * whole batch), and a fetch that returns nothing does not see them. The consumer
		 * itself knows: nothing left to deliver and nothing delivered unacknowledged. */
		if ((s == NATS_OK || s == NATS_TIMEOUT) && last_ok && (pl.cut || atomic_load(&c->order_waiting))) {
			uint64_t t1 = kz_now_wall_ns();
			jsConsumerInfo *ci = NULL;
			jsErrCode cerr = 0;
			jsOptions quick; /* short: a consumer on a dead server must not hold this loop up
					  * (bridge_death saw the loss found after 9 s instead of 3) */
			if (js_GetConsumerInfo(&ci, c->js, STREAM, c->f_name, kz_cluster_consumer_opts(c, &quick), &cerr) ==
			    NATS_OK) {
				if (ci->NumPending == 0 && ci->NumAckPending == 0)
					caught_up(c, t1);
				jsConsumerInfo_Destroy(ci);
			} else if (cerr != JSConsumerNotFoundErr && kz_cluster_consumer_check(c, NULL, &bad_ms)) {
				kz_cluster_sub_end(c->nc, pl.sub); /* no answer for consumer_lost_ms: made again */
				pl.sub = NULL;
				natsMsgList_Destroy(&list);
				continue;
			}
		}
		natsMsgList_Destroy(&list);
		kz_cluster_held_expire(c, false);
		if (c->f_reset) { /* its server restarted (kept in memory): it started over */
			c->f_reset = false;
			if (kz_cluster_consumer_remake(c, "delivered again from its start what this node had acknowledged (its "
					    "server restarted)", false, false)) {
				kz_cluster_sub_end(c->nc, pl.sub);
				pl.sub = NULL;
			} else {
				/* JetStream answered the deletion with an error (seen: 10008, "temporarily
				 * unavailable", after a power loss): the next batch of the same consumer
				 * says the same, so asking at once went on per batch, 31 warnings in 40 ms */
				nats_Sleep(500);
			}
			continue;
		}
		if (s == NATS_OK) {
			idle = 0;
			bad_ms = 0;
			continue;
		}
		/* Every few seconds without records, after an error, or after a second of requests
		 * nobody answered (its server is down): is our consumer still there? JetStream that
		 * lost its metadata (a power loss, a server's files gone) forgets it, and a fetch on it
		 * then only times out. Made again, it starts from the floor (if the stream still holds
		 * there what it held) or from the stream's start; what this node already has is dropped
		 * by origin sequence. */
		if (pl.unanswered == 1 && !c->f_lost_since)
			c->f_lost_since = kz_now_mono_ms();
		else if (!pl.unanswered)
			c->f_lost_since = 0;
		if (s != NATS_TIMEOUT || ++idle >= 50 || pl.unanswered >= 10) {
			pl.unanswered = 0;
			idle = 0;
			jsConsumerInfo *ci = NULL;
			jsErrCode cerr = 0;
			jsOptions quick;
			natsStatus cs = js_GetConsumerInfo(&ci, c->js, STREAM, c->f_name, kz_cluster_consumer_opts(c, &quick), &cerr);
			if (cs == NATS_NOT_FOUND || cerr == JSConsumerNotFoundErr || cerr == JSStreamNotFoundErr) {
				kz_warn("cluster: our consumer %s is gone from JetStream: made again", c->f_name);
				kz_cluster_sub_end(c->nc, pl.sub);
				pl.sub = NULL;
				bad_ms = 0;
			} else {
				if (cs == NATS_OK) { /* it answers */
					c->f_lost_since = 0;
					kz_cluster_consumer_on(c, ci);
				}
				if (kz_cluster_consumer_check(c, cs == NATS_OK ? ci : NULL, &bad_ms)) {
					kz_cluster_sub_end(c->nc, pl.sub);
					pl.sub = NULL;
				}
			}
			jsConsumerInfo_Destroy(ci);
			if (cs == NATS_OK && pl.sub) /* it answers: one left earlier is deleted */
				(void)kz_cluster_consumer_sweep(c);
			if (s != NATS_TIMEOUT)
				nats_Sleep(100);
		}
	}
	kz_cluster_sub_end(c->nc, pl.sub);
	kz_cluster_held_expire(c, true); /* stopping: what was held back is delivered */
	return NULL;
}

