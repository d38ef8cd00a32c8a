/* cluster_consumer.c — our consumer (docs/CLUSTER.md "Our consumer"): a durable pull consumer
 * of KZ_RECORDS on one server, in memory; made, checked, and made again (under a new name when
 * the one before could not be deleted) by the follower (cluster_follow.c). */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"
#include "base/kz_time.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------- its name ---------- */

void kz_cluster_consumer_name(const char *node_id, unsigned gen, char *out, size_t len)
{
	if (gen)
		snprintf(out, len, "kz-node-%s~%u", node_id, gen);
	else
		snprintf(out, len, "kz-node-%s", node_id);
}

long kz_cluster_consumer_gen(const char *node_id, const char *name)
{
	size_t k = strlen(node_id);
	if (strncmp(name, "kz-node-", 8) != 0 || strncmp(name + 8, node_id, k) != 0)
		return -1;
	const char *t = name + 8 + k;
	if (!*t)
		return 0;
	if (*t != '~' || t[1] < '1' || t[1] > '9') /* node ids hold no '~' (valid_node_id) */
		return -1;
	char *end = NULL;
	unsigned long g = strtoul(t + 1, &end, 10);
	return *end || g > 1000000000UL ? -1 : (long)g;
}

long kz_cluster_consumer_find(jsCtx *js, const char *node_id, const char *keep, bool strict, char *cur, size_t len,
			      char (*old)[96], unsigned max_old, unsigned *n_old)
{
	jsConsumerNamesList *nl = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_ConsumerNames(&nl, js, STREAM, NULL, &jerr);
	long best = 0;
	unsigned n = 0;
	if (s == NATS_OK) {
		for (int i = 0; i < nl->Count; i++) {
			long g = kz_cluster_consumer_gen(node_id, nl->List[i]);
			if (g > best)
				best = g;
		}
		for (int i = 0; i < nl->Count; i++) {
			long g = kz_cluster_consumer_gen(node_id, nl->List[i]);
			if (g >= 0 && (keep ? strcmp(nl->List[i], keep) != 0 : g != best) && n < max_old)
				snprintf(old[n++], sizeof *old, "%s", nl->List[i]);
		}
		jsConsumerNamesList_Destroy(nl);
	} else if (s != NATS_NOT_FOUND && (strict || jerr != JSStreamNotFoundErr)) {
		/* NATS_NOT_FOUND: the stream has no consumers. "Stream not found" comes from the
		 * metadata leader also while its own copy of the stream failed to apply (nats-server
		 * 2.9 sets sa.err; the stream's leader still serves it): taken as none at a start */
		return -1;
	}
	if (n_old)
		*n_old = n;
	kz_cluster_consumer_name(node_id, (unsigned)best, cur, len);
	return best;
}

/* Deletes consumer name: NATS_OK also when it was already gone. */
static natsStatus consumer_delete(struct kz_cluster *c, const char *name, jsErrCode *jerr)
{
	*jerr = 0;
	natsStatus s = js_DeleteConsumer(c->js, STREAM, name, NULL, jerr);
	return s == NATS_NOT_FOUND || *jerr == JSConsumerNotFoundErr ? NATS_OK : s;
}

/* Leaves our consumer to be deleted later (consumer_sweep) and names the next one: its deletion
 * or making was not answered (its server is down or stopped; nats-server answers a deletion from
 * the consumer's server), and a consumer that cannot be deleted cannot be made again under its
 * name. */
static void consumer_abandon(struct kz_cluster *c)
{
	if (c->n_old == sizeof c->f_old / sizeof *c->f_old) { /* the oldest: found again at the next start */
		memmove(c->f_old[0], c->f_old[1], sizeof c->f_old - sizeof *c->f_old);
		c->n_old--;
	}
	snprintf(c->f_old[c->n_old++], sizeof *c->f_old, "%s", c->f_name);
	kz_cluster_consumer_name(c->cfg.node_id, ++c->f_gen, c->f_name, sizeof c->f_name);
	kz_warn("cluster: our consumer %s is left to be deleted later; the next is %s", c->f_old[c->n_old - 1],
		c->f_name);
}

/* Deletes one consumer of ours left earlier; true when one went. With none left, every
 * cluster.consumer_scan_ms, JetStream's names of ours other than the one in use are taken as
 * left. */
bool kz_cluster_consumer_sweep(struct kz_cluster *c)
{
	uint64_t now = kz_now_mono_ms();
	if (!c->n_old && now - c->f_scan_ms >= (c->cfg.consumer_scan_ms ? c->cfg.consumer_scan_ms : 30000)) {
		/* what was sent through a server while it was stopped reaches JetStream when it
		 * resumes: a consumer of ours made then (its making went unanswered, it was left) can
		 * come after its deletion. The names of ours JetStream holds are read again. */
		char cur[96];
		c->f_scan_ms = now;
		if (kz_cluster_consumer_find(c->js, c->cfg.node_id, c->f_name, true, cur, sizeof cur, c->f_old,
					     sizeof c->f_old / sizeof *c->f_old, &c->n_old) < 0)
			c->n_old = 0;
	}
	if (!c->n_old)
		return false;
	jsErrCode jerr = 0;
	if (consumer_delete(c, c->f_old[0], &jerr) != NATS_OK) {
		if (c->n_old > 1) { /* the next one first next time */
			char t[96];
			memcpy(t, c->f_old[0], sizeof t);
			memmove(c->f_old[0], c->f_old[1], (c->n_old - 1) * sizeof *c->f_old);
			memcpy(c->f_old[c->n_old - 1], t, sizeof t);
		}
		return false;
	}
	kz_info("cluster: our earlier consumer %s is deleted", c->f_old[0]);
	memmove(c->f_old[0], c->f_old[1], (c->n_old - 1) * sizeof *c->f_old);
	c->n_old--;
	return true;
}

/* ---------- making it ---------- */

/* For requests that only our consumer's own server answers (its info, its making): a quarter of
 * cluster.publish_timeout_ms, 250 ms to 1 s. A healthy server answers them in milliseconds; one
 * that is stopped never does, and each wait for it delayed the move of our consumer to
 * another server (a consumer made on the stopped server again cost a whole wait each time:
 * docs/CLUSTER.md "Our consumer"). An answer missed for a slow server costs a consumer made
 * again (left, then deleted by the sweep), never a record. */
jsOptions *kz_cluster_consumer_opts(const struct kz_cluster *c, jsOptions *o)
{
	jsOptions_Init(o);
	uint32_t w = c->cfg.publish_timeout_ms / 4;
	o->Wait = w < 250 ? 250 : w > 1000 ? 1000 : w;
	return o;
}
/* Notes the server our consumer is on (ci: its info). */
void kz_cluster_consumer_on(struct kz_cluster *c, const jsConsumerInfo *ci)
{
	if (ci && ci->Cluster && ci->Cluster->Leader)
		snprintf(c->f_on, sizeof c->f_on, "%s", ci->Cluster->Leader);
}

/* Making our consumer failed at step what (s, jerr): -1, said in the log when the reason
 * changed or 10 s after it was last said (the follower tries again every 250 ms). */
static int ensure_failed(struct kz_cluster *c, const char *what, natsStatus s, jsErrCode jerr)
{
	char why[160];
	snprintf(why, sizeof why, "%s: %s (JetStream error %d)", what, natsStatus_GetText(s), (int)jerr);
	uint64_t now = kz_now_mono_ms();
	if (strcmp(why, c->f_why) != 0 || now - c->f_why_ms >= 10000) {
		kz_warn("cluster: our consumer %s: %s; retrying", c->f_name, why);
		snprintf(c->f_why, sizeof c->f_why, "%s", why);
		c->f_why_ms = now;
	}
	return -1;
}

/* Does the stream still hold at the floor what it held when we decided it? 1 yes, 0 no (or
 * the floor's record is not known: then the consumer is made from the stream's start), -1 no
 * answer. A stream that lost its tail (a power loss: nats-server 2.9 syncs every 2 minutes)
 * and took records published again at those sequences fails it. */
static int floor_holds(struct kz_cluster *c, bool learn)
{
	struct kz_cluster_floor *f = &c->floor;
	if (!f->floor || (!f->known && !learn))
		return 0;
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetMsg(&m, c->js, STREAM, f->floor, NULL, &jerr);
	if (s != NATS_OK)
		return s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr || jerr == JSStreamNotFoundErr
			       ? 0
			       : ensure_failed(c, "reading the stream at its floor", s, jerr);
	struct kz_cluster_mark now;
	kz_cluster_mark_of(m, f->floor, &now);
	bool same = strcmp(now.node, f->id.node) == 0 && now.oseq == f->id.oseq;
	if (learn) { /* a floor JetStream gave (a consumer's ack floor): what is there now is what we took */
		f->id = now;
		f->known = same = true;
	}
	natsMsg_Destroy(m);
	return same;
}

/* Our durable consumer (docs/CLUSTER.md "Our consumer"): on one server, in memory (the stream
 * is replicated; a consumer replicated like it cost the nats-servers a Raft proposal for each
 * delivery and each acknowledgement, on every node's consumer), explicit acknowledgements
 * (what was sent and not acknowledged, lost in flight, comes again after AckWait, which is less
 * than cluster.gap_timeout_ms's default so that it fills its gap in time). Made from the floor
 * when the stream still holds there what it held, else from the stream's start (what this node
 * already has is dropped by origin sequence); one that exists is taken as it is. One of an
 * older kizuna (replicated, on disk) is made again from what it says we acknowledged; one that
 * acknowledged all-up-to, from the stream's start. */
int kz_cluster_consumer_ensure(struct kz_cluster *c, uint64_t *bad_ms)
{
	jsConsumerConfig cc;
	jsConsumerConfig_Init(&cc);
	if (!c->f_named) { /* this node just started: its consumer in JetStream, if it has one */
		long g = kz_cluster_consumer_find(c->js, c->cfg.node_id, NULL, false, c->f_name, sizeof c->f_name, c->f_old,
						  sizeof c->f_old / sizeof *c->f_old, &c->n_old);
		if (g < 0)
			return -1;
		c->f_gen = (unsigned)g;
		c->f_named = true;
	}
	const char *durable = c->f_name;
	cc.Durable = durable;
	cc.AckPolicy = js_AckExplicit;
	cc.DeliverPolicy = js_DeliverAll;
	cc.AckWait = (int64_t)10 * 1000000000;
	cc.FilterSubject = "kz.rec.>";
	cc.Replicas = 1;
	cc.MemoryStorage = true;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	jsOptions quick;
	natsStatus is = js_GetConsumerInfo(&ci, c->js, STREAM, durable, kz_cluster_consumer_opts(c, &quick), &jerr);
	if (is != NATS_OK && is != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr && jerr != JSStreamNotFoundErr) {
		(void)kz_cluster_consumer_check(c, NULL, bad_ms); /* no answer: left and made anew once lost */
		return ensure_failed(c, "its info", is, jerr);
	}
	*bad_ms = 0;
	bool trusted = false;
	if (is == NATS_OK) {
		bool explicit = ci->Config && ci->Config->AckPolicy == js_AckExplicit;
		bool fit = explicit && ci->Config->Replicas == 1 && ci->Config->MemoryStorage;
		uint64_t acked = ci->AckFloor.Stream;
		/* this node just started, and the process before it had records delivered that it
		 * never acknowledged (it was killed): JetStream delivers those again only after the
		 * AckWait (10 s), and the records after them would wait behind a gap meanwhile, or
		 * until cluster.gap_timeout_ms, and come out of order. Made again from its ack floor,
		 * the consumer delivers them now, in order (what this node has is dropped). */
		bool restarted = fit && !c->floor.floor && ci->NumAckPending > 0;
		if (fit && !restarted) {
			if (!c->floor.floor) { /* this node just started: the consumer's ack floor is ours */
				kz_cluster_floor_reset(&c->floor, acked);
				(void)floor_holds(c, true);
			}
			kz_cluster_consumer_on(c, ci);
			jsConsumerInfo_Destroy(ci);
			return 0;
		}
		int64_t pending = ci->NumAckPending;
		jsConsumerInfo_Destroy(ci);
		if (restarted) {
			kz_info("cluster: our consumer %s had %lld records delivered and not acknowledged before this "
				"start: made again after stream sequence %" PRIu64 ", which we acknowledged, so that they come now",
				durable, (long long)pending, acked);
			kz_cluster_floor_reset(&c->floor, acked);
			trusted = true;
		} else if (explicit) {
			kz_warn("cluster: our consumer %s is replicated and on disk (an older kizuna): made again on one "
				"server, in memory, after stream sequence %" PRIu64 ", which it says we acknowledged", durable,
				acked);
			kz_cluster_floor_reset(&c->floor, acked);
			trusted = true;
		} else {
			kz_warn("cluster: our consumer %s acknowledges all-up-to: made again with explicit acknowledgements",
				durable);
			kz_cluster_floor_reset(&c->floor, 0);
		}
		if (js_DeleteConsumer(c->js, STREAM, durable, NULL, NULL) != NATS_OK)
			return -1;
	}
	if (c->floor.floor) {
		int h = floor_holds(c, trusted);
		if (h < 0)
			return -1;
		if (!h) {
			kz_warn("cluster: the stream no longer holds at sequence %" PRIu64 " what this node took there (or "
				"that is not known): our consumer %s is made from the stream's start", c->floor.floor, durable);
			kz_cluster_floor_reset(&c->floor, 0);
		}
	}
	if (c->floor.floor) {
		cc.DeliverPolicy = js_DeliverByStartSequence;
		cc.OptStartSeq = c->floor.floor + 1;
	}
	c->floor.n_above = 0; /* what a new consumer delivers starts at the floor */
	ci = NULL;
	natsStatus s = js_AddConsumer(&ci, c->js, STREAM, &cc, kz_cluster_consumer_opts(c, &quick), &jerr);
	if (s == NATS_OK) {
		c->f_on[0] = 0;
		kz_cluster_consumer_on(c, ci);
	}
	jsConsumerInfo_Destroy(ci);
	if (s == NATS_TIMEOUT) { /* made, maybe, on a server that does not answer */
		kz_warn("cluster: making our consumer %s: no answer", durable);
		consumer_abandon(c);
	}
	if (s != NATS_OK)
		return s == NATS_TIMEOUT ? -1 : ensure_failed(c, "making it", s, jerr);
	c->f_why[0] = 0;
	/* JetStream puts it on one of the stream's servers at random (nats-server 2.9 takes no
	 * placement for a consumer): on the one it did not answer on, or whose copy of the stream
	 * held what the stream lost, it is deleted and made again, a few times */
	if (c->f_avoid[0] && strcmp(c->f_on, c->f_avoid) == 0 && c->f_placed < 5) {
		c->f_placed++;
		kz_info("cluster: our consumer %s was made on %s, where it did not answer or read past the stream's end: "
			"made again elsewhere", durable, c->f_on);
		jsErrCode derr = 0;
		if (consumer_delete(c, durable, &derr) == NATS_TIMEOUT)
			consumer_abandon(c);
		return -1;
	}
	c->f_avoid[0] = 0;
	c->f_placed = 0;
	return 0;
}

/* Deletes our consumer, to be made again from the stream's start or the floor (the caller
 * drops its subscription); what this node already has is dropped by origin sequence. silent:
 * its server does not answer: it is left (deleted later by the sweep) instead. */
bool kz_cluster_consumer_remake(struct kz_cluster *c, const char *why, bool from_start, bool silent)
{
	kz_warn("cluster: our consumer %s %s: %s it and making it again, from %s", c->f_name, why,
		silent ? "leaving" : "deleting",
		from_start ? "the stream's start" : "what this node has acknowledged (if the stream still holds it)");
	if (from_start)
		kz_cluster_floor_reset(&c->floor, 0);
	atomic_fetch_add(&c->consumers_remade, 1);
	if (silent) { /* a deletion is answered by the consumer's own server: it would only time out */
		consumer_abandon(c);
		return true;
	}
	jsErrCode jerr = 0;
	natsStatus ds = consumer_delete(c, c->f_name, &jerr);
	if (ds == NATS_OK)
		return true;
	kz_warn("cluster: deleting our consumer %s: %s (JetStream error %d)", c->f_name, natsStatus_GetText(ds),
		(int)jerr);
	if (ds != NATS_TIMEOUT)
		return false; /* JetStream answered: deleted again at the next look */
	consumer_abandon(c); /* its server does not answer */
	return true;
}

/* After a loss of servers' files (a power loss: nats-server 2.9 syncs every 2 minutes) our
 * consumer can be left broken for good, and nothing in JetStream mends it (docs/CLUSTER.md
 * "Faults and what each does"):
 *  - no quorum: nats-server logs "has NO quorum, stalled"; every request on it times out;
 *  - a replica that kept the old stream leads it: it says it delivered everything while the
 *    stream, led by a server that lost it and took the records published again, goes on;
 *  - it delivered beyond the stream's end: the stream lost its tail, and records published
 *    again into those sequences would never reach us;
 *  - records are held behind a gap (this node has later records of an origin and not the
 *    earlier ones): published again where the consumer had already been.
 * The second is made again from the stream's start once it lasted cluster.consumer_stall_ms
 * while the stream answers (*bad_ms: since when; 0 while it is fine), the third at once, the
 * last when the gap is that old (before cluster.gap_timeout_ms gives up on it). One that does
 * not answer while the stream does (its server is down or cut off; nats-server 2.9's "NO
 * quorum, stalled" was the first case with replicated consumers) is made again from the floor
 * on another server once that lasted cluster.consumer_lost_ms (f_lost_since). ci: the
 * consumer's info, NULL when it did not answer. True when the consumer is to be made again. */
bool kz_cluster_consumer_check(struct kz_cluster *c, const jsConsumerInfo *ci, uint64_t *bad_ms)
{
	uint64_t now = kz_now_mono_ms();
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	if (js_GetStreamInfo(&si, c->js, STREAM, NULL, &jerr) != NATS_OK) {
		c->f_lost_since = 0; /* the stream is silent too: JetStream is down, not our consumer */
		return false;
	}
	uint64_t last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	char why[200];
	if (ci && last < ci->Delivered.Stream) {
		snprintf(why, sizeof why, "delivered up to stream sequence %llu, beyond the stream's end at %llu (the stream "
			 "lost its tail)", (unsigned long long)ci->Delivered.Stream, (unsigned long long)last);
		*bad_ms = 0;
		/* the consumer reads its server's copy of the stream: that copy still holds what the
		 * stream lost (seen: a new consumer there delivered up to the same sequence again) */
		snprintf(c->f_avoid, sizeof c->f_avoid, "%s", c->f_on);
		c->f_placed = 0;
		return kz_cluster_consumer_remake(c, why, true, false);
	}
	uint64_t held_since = 0;
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < c->n_origins; i++)
		if (c->held[i].n && (!held_since || c->held[i].since_ms < held_since))
			held_since = c->held[i].since_ms;
	pthread_mutex_unlock(&c->lock);
	if (held_since && now - held_since >= c->cfg.consumer_stall_ms) {
		snprintf(why, sizeof why, "has not brought the records awaited behind a gap for %llu ms (records published "
			 "again after JetStream lost them, where it had already been?)", (unsigned long long)(now - held_since));
		*bad_ms = 0;
		return kz_cluster_consumer_remake(c, why, true, false);
	}
	if (!ci) {
		if (!c->f_lost_since)
			c->f_lost_since = now;
		if (now - c->f_lost_since < c->cfg.consumer_lost_ms)
			return false;
		snprintf(why, sizeof why, "has not answered for %llu ms while the stream does (cluster.consumer_lost_ms; its "
			 "server%s%s is down or cut off)", (unsigned long long)(now - c->f_lost_since), c->f_on[0] ? " " : "",
			 c->f_on);
		c->f_lost_since = 0;
		*bad_ms = 0;
		snprintf(c->f_avoid, sizeof c->f_avoid, "%s", c->f_on);
		c->f_placed = 0;
		return kz_cluster_consumer_remake(c, why, false, true);
	}
	bool bad = !ci->NumPending && !ci->NumAckPending && last > ci->Delivered.Stream;
	if (!bad) {
		*bad_ms = 0;
		return false;
	}
	if (!*bad_ms)
		*bad_ms = now;
	if (now - *bad_ms < c->cfg.consumer_stall_ms)
		return false;
	snprintf(why, sizeof why, "has said for %llu ms that it delivered everything, up to stream sequence %llu, "
		 "while the stream ends at %llu", (unsigned long long)(now - *bad_ms),
		 (unsigned long long)ci->Delivered.Stream, (unsigned long long)last);
	*bad_ms = 0;
	return kz_cluster_consumer_remake(c, why, true, false);
}
