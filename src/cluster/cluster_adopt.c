/* cluster_adopt.c — other nodes' bridged tails (docs/CLUSTER.md "The bridge", "A node that
 * died with a bridged tail").
 *
 * Why: a node acknowledges records on KZ_BRIDGE while KZ_RECORDS elects a leader, and puts
 * them into KZ_RECORDS from its own log once it has one. A node that dies between the two
 * leaves records that its publishers were told are safe on KZ_BRIDGE and its own disk only:
 * the followers, which read KZ_RECORDS alone (reading both reordered deliveries), would not
 * have them before it restarts, and a publisher that fails over to another node would see its
 * new messages delivered before those.
 *
 * How: every following node looks at KZ_BRIDGE about once a second (and at once when a
 * CONNECT waits): per other node, its last bridged record (the origin sequence top). A node
 * whose top is above what this node has of it without a gap (d) has a tail this node lacks.
 * That tail is published to KZ_RECORDS for its node, message by message as KZ_BRIDGE holds
 * it (same body and headers, on kz.rec.<node>), from above d:
 *   - when a CONNECT waits for it (kz_cluster_settled answers a CONNECT only once this node
 *     has every bridged record of the others: the moved publisher's old messages are then
 *     ahead of its new ones in KZ_RECORDS, as in every follower): once KZ_RECORDS has
 *     answered for 1 s and still ends that node's records below the tail's top;
 *   - else when d has not moved, and KZ_RECORDS has answered, for cluster.bridge_adopt_ms
 *     (the node is not publishing them: dead, or cut off).
 * Not at once: a live node publishes its tail itself as soon as KZ_RECORDS has a leader again,
 * and a copy published at the same moment is stored twice (other batches, other Msg-Ids).
 * A node that is alive publishes the same records itself: what reaches KZ_RECORDS twice is
 * dropped there (the same Nats-Msg-Id) or by the followers (an origin sequence they have).
 * Each message is republished whole; a record in it that the followers have is dropped.
 *
 *   LOOK (stream info with subjects, last message per subject) --top > d--> PENDING
 *   --urgent, or d unmoved for bridge_adopt_ms--> PUBLISH (direct gets on kz.brg.<node> from
 *   the first message above d, each to KZ_RECORDS, synchronously) --> LOOK
 *   A tail is published once up to its top (a CONNECT then waits for the follower to be past
 *   that publish); more is published when its node bridges more. */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"
#include "base/kz_time.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOOK_MS 1000  /* how often KZ_BRIDGE is looked at when no CONNECT waits */
#define URGENT_MS 10  /* ... and when one waits for a tail, or the last look got no answer */
#define RETRY_MS 250  /* a publish for another node that failed (KZ_RECORDS elects) is tried again after this */
#define QUIET_MS 1000 /* KZ_RECORDS answers this long before a CONNECT's tail is published */
#define WARN_MS 5000  /* a failure to publish for a node is said at most this often */

/* What this node has of node id without a gap (lock held). */
static uint64_t have_of(const struct kz_cluster *c, const char *id)
{
	for (uint32_t i = 0; i < c->n_origins; i++) {
		const struct origin *o = &c->origins[i];
		if (strcmp(o->id, id) != 0)
			continue;
		uint64_t d = o->seq;
		for (uint32_t g = 0; g < o->n_gaps; g++)
			if (o->gaps[g].lo - 1 < d)
				d = o->gaps[g].lo - 1;
		return d;
	}
	return 0;
}

bool kz_cluster_tails_pending(const struct kz_cluster *c, uint64_t caught_ns)
{
	for (uint32_t i = 0; i < c->n_tails; i++) {
		const struct kz_cluster_tail *t = &c->tails[i];
		bool published = t->done >= t->top && t->done_ns && caught_ns >= t->done_ns;
		if (t->top > have_of(c, t->id) && !published)
			return true;
	}
	return false;
}


/* KZ_BRIDGE's first and last stream sequences at the last look */
struct range {
	uint64_t first, last;
};

/* KZ_BRIDGE's subjects of other nodes and the last record of each. -1: no answer; 0; 1: the
 * stream does not exist. */
static int look(struct kz_cluster *c, struct kz_cluster_seen *v, uint32_t *n, struct range *r)
{
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 500;
	jo.Stream.Info.SubjectsFilter = "kz.brg.>";
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	*n = 0;
	if (js_GetStreamInfo(&si, c->js, BRIDGE, &jo, &jerr) != NATS_OK)
		return jerr == JSStreamNotFoundErr ? 1 : -1;
	int rc = 0;
	r->first = si->State.FirstSeq;
	r->last = si->State.LastSeq;
	const jsStreamStateSubjects *subs = si->State.Subjects;
	for (int i = 0; subs && i < subs->Count && rc == 0; i++) {
		const char *subj = subs->List[i].Subject, *id = subj + strlen("kz.brg.");
		if (strncmp(subj, "kz.brg.", 7) != 0 || !*id || strlen(id) >= sizeof v->id ||
		    strcmp(id, c->cfg.node_id) == 0 || !subs->List[i].Msgs || *n == MAX_ORIGINS)
			continue;
		jsOptions lo;
		jsOptions_Init(&lo);
		lo.Wait = 500;
		natsMsg *m = NULL;
		if (js_GetLastMsg(&m, c->js, BRIDGE, subj, &lo, &jerr) != NATS_OK) {
			if (jerr != JSNoMessageFoundErr) /* aged out since: nothing */
				rc = -1;
			continue;
		}
		snprintf(v[*n].id, sizeof v->id, "%.64s", id);
		v[(*n)++].top = kz_cluster_last_origin(m);
		natsMsg_Destroy(m);
	}
	jsStreamInfo_Destroy(si);
	return rc;
}

int kz_cluster_tails_look(struct kz_cluster *c, struct kz_cluster_seen *v, uint32_t *n)
{
	struct range r;
	return look(c, v, n, &r);
}

uint64_t kz_cluster_have_of(const struct kz_cluster *c, const char *id)
{
	return have_of(c, id);
}

/* m, read from KZ_BRIDGE, as the same message on subject: its body and the headers the
 * follower reads (not those a direct get adds). */
static natsStatus copy_msg(natsMsg *m, const char *subject, natsMsg **out)
{
	static const char *const keep[] = { "Nats-Msg-Id", "Kz-Origin-Seq", "Kz-Local-Seq", "Kz-Origin", "Kz-Count" };
	natsMsg *nm = NULL;
	natsStatus s = natsMsg_Create(&nm, subject, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m));
	for (size_t i = 0; s == NATS_OK && i < sizeof keep / sizeof *keep; i++) {
		const char *v = NULL;
		if (natsMsgHeader_Get(m, keep[i], &v) == NATS_OK && v)
			s = natsMsgHeader_Set(nm, keep[i], v);
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(nm);
		nm = NULL;
	}
	*out = nm;
	return s;
}

/* The first message on subj at stream sequence seq or after, from any replica (a direct get:
 * it needs neither JetStream's meta leader, as a consumer does, nor the stream's leader).
 * NATS_NOT_FOUND: none (a replica behind the leader may not have the newest). */
static natsStatus next_on(struct kz_cluster *c, const char *subj, uint64_t seq, natsMsg **m, uint64_t *at)
{
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 1000;
	jsDirectGetMsgOptions dg;
	jsDirectGetMsgOptions_Init(&dg);
	dg.Sequence = seq;
	dg.NextBySubject = subj;
	*m = NULL;
	natsStatus s = js_DirectGetMsg(m, c->js, BRIDGE, &jo, &dg);
	if (s == NATS_OK) {
		*at = natsMsg_GetSequence(*m);
		if (!*at)
			*at = kz_cluster_header_u64(*m, JSSequence);
		if (!*at) { /* cannot walk on without it */
			natsMsg_Destroy(*m);
			*m = NULL;
			s = NATS_ERR;
		}
	}
	return s;
}

/* Publishes to KZ_RECORDS, for node id, its bridged messages whose last record is above
 * from; the highest origin sequence published (from when none; a failure is said when
 * warn). first, last: KZ_BRIDGE's
 * stream sequences when looked at. Its messages' last records rise with the stream sequence
 * (a node bridges in log order, and a batch published again covers at least as much), so the
 * first one needed is found by halving [first, last + 1]. */
static uint64_t adopt(struct kz_cluster *c, const char *id, uint64_t from, uint64_t top, uint64_t first, uint64_t last,
		      bool warn)
{
	char bsubj[80], rsubj[80];
	snprintf(bsubj, sizeof bsubj, "kz.brg.%.64s", id);
	snprintf(rsubj, sizeof rsubj, "kz.rec.%.64s", id);
	uint64_t lo = first ? first : 1, hi = last + 1, at = 0;
	natsStatus s = NATS_OK;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		natsMsg *m = NULL;
		if ((s = next_on(c, bsubj, mid, &m, &at)) == NATS_NOT_FOUND) {
			hi = mid;
			continue;
		}
		if (s != NATS_OK)
			break;
		if (kz_cluster_last_origin(m) > from)
			hi = mid;
		else
			lo = at + 1;
		natsMsg_Destroy(m);
	}
	uint64_t done = from, first_rec = 0, msgs = 0;
	for (uint64_t seq = lo; s == NATS_OK && done < top;) {
		natsMsg *m = NULL;
		if ((s = next_on(c, bsubj, seq, &m, &at)) != NATS_OK)
			break;
		seq = at + 1;
		const char *origin = NULL;
		uint64_t lr = kz_cluster_last_origin(m);
		if (lr > done && natsMsgHeader_Get(m, "Kz-Origin", &origin) == NATS_OK && origin && strcmp(origin, id) == 0) {
			natsMsg *nm = NULL;
			jsErrCode jerr = 0;
			if ((s = copy_msg(m, rsubj, &nm)) == NATS_OK)
				s = kz_cluster_publish_sync(c, nm, STREAM, &jerr);
			natsMsg_Destroy(nm);
			if (s == NATS_OK) {
				if (!first_rec)
					first_rec = kz_cluster_header_u64(m, "Kz-Origin-Seq");
				done = lr;
				msgs++;
			}
		}
		natsMsg_Destroy(m);
	}
	if (msgs) {
		atomic_fetch_add(&c->adoptions, 1);
		atomic_fetch_add(&c->adopted_msgs, msgs);
		kz_warn("cluster: node %s's records %" PRIu64 "..%" PRIu64 ", acknowledged on %s, were not in %s: published "
			"there for it (%" PRIu64 " messages)", id, first_rec > from + 1 ? first_rec : from + 1, done, BRIDGE,
			STREAM, msgs);
	}
	if (done < top && warn)
		kz_warn("cluster: publishing node %s's bridged records to %s stopped at %" PRIu64 " of %" PRIu64 ": %s", id,
			STREAM, done, top, s == NATS_OK ? "not found" : natsStatus_GetText(s));
	return done;
}

/* The origin sequence of node id's last record in KZ_RECORDS (0: none). False: KZ_RECORDS
 * did not answer (no leader). */
static bool last_in_records(struct kz_cluster *c, const char *id, uint64_t *lo)
{
	char subj[80];
	snprintf(subj, sizeof subj, "kz.rec.%.64s", id);
	struct kz_cluster_last last;
	natsStatus s;
	jsErrCode jerr;
	int got = kz_cluster_last_of(c->js, subj, 500, &last, &s, &jerr);
	*lo = last.origin;
	return got == KZ_LAST_FOUND || got == KZ_LAST_NONE;
}

/* When a CONNECT that waits wants the next look (monotonic ms; UINT64_MAX: none waits): at
 * once when it came after the last look began (the look is what it waits for; CONNECTs that
 * come during a look share the next), unless the last look got no answer; URGENT_MS after
 * the last look when it waits for a tail to be taken. The bridge thread's own fields. */
static uint64_t urgent_at(const struct kz_cluster *c)
{
	if (!atomic_load(&c->tails_wanted))
		return UINT64_MAX;
	if (atomic_load(&c->order_since_ns) > atomic_load(&c->tails_ns))
		return c->tails_failed_ms ? c->tails_failed_ms + URGENT_MS : 0;
	return c->tails_last_ms + URGENT_MS;
}

void kz_cluster_tails_wait(struct kz_cluster *c, uint32_t max_ms)
{
	pthread_mutex_lock(&c->lock);
	uint64_t now = kz_now_mono_ms(), due = now + max_ms, at = urgent_at(c);
	if (atomic_load(&c->order_since_ns) > c->woken_ns && kz_cluster_check_wanted(c) && atomic_load(&c->js_ready))
		at = now; /* the follower to wake (kz_cluster_wake_follower) */
	if (at < due)
		due = at;
	if (!c->stop && due > now) {
		struct timespec ts;
		kz_deadline_ms(&ts, due - now);
		pthread_cond_timedwait(&c->tcond, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
}

void kz_cluster_tails(struct kz_cluster *c)
{
	uint64_t now = kz_now_mono_ms();
	bool urgent = atomic_load(&c->tails_wanted); /* a CONNECT waits */
	if (now < c->tails_next_ms && now < urgent_at(c))
		return;
	c->tails_last_ms = now;
	c->tails_next_ms = now + LOOK_MS;
	uint64_t t0 = kz_now_wall_ns();
	struct kz_cluster_seen v[MAX_ORIGINS];
	uint32_t n = 0;
	struct range r = { 0, 0 };
	int rc = look(c, v, &n, &r);
	if (rc < 0) {
		c->tails_failed_ms = kz_now_mono_ms();
		return;
	}
	c->tails_failed_ms = 0;
	/* merged: tails gone from KZ_BRIDGE (aged out) are forgotten; candidates: tails above this
	 * node's records of their node, not published up to their top yet */
	struct { char id[65]; uint64_t from, top, since_ms; } todo[MAX_ORIGINS];
	uint32_t n_todo = 0;
	pthread_mutex_lock(&c->lock);
	struct kz_cluster_tail nt[MAX_ORIGINS];
	for (uint32_t i = 0; i < n; i++) {
		struct kz_cluster_tail t = { .top = v[i].top };
		snprintf(t.id, sizeof t.id, "%.64s", v[i].id);
		for (uint32_t k = 0; k < c->n_tails; k++)
			if (strcmp(c->tails[k].id, t.id) == 0) {
				t = c->tails[k];
				t.top = v[i].top;
			}
		uint64_t d = have_of(c, t.id);
		if (t.top <= d || d != t.d)
			t.since_ms = 0;
		t.d = d;
		if (t.top > d && !t.since_ms)
			t.since_ms = now;
		if (t.top > d && t.top > t.done && now >= t.retry_ms) {
			snprintf(todo[n_todo].id, sizeof todo->id, "%.64s", t.id);
			todo[n_todo].from = d;
			todo[n_todo].since_ms = t.since_ms;
			todo[n_todo++].top = t.top;
		} else {
			t.ok_since_ms = 0; /* counted again from the next time it is a candidate */
		}
		nt[i] = t;
	}
	memcpy(c->tails, nt, n * sizeof *nt);
	c->n_tails = n;
	pthread_mutex_unlock(&c->lock);
	/* Published for its node only once KZ_RECORDS has answered for a while: a node that lives
	 * publishes its tail itself as soon as KZ_RECORDS has a leader again, and a copy published
	 * by another node at the same moment would be stored twice (other batches, other
	 * Nats-Msg-Ids). When a CONNECT waits: after QUIET_MS of answers, if the stream's last
	 * message of that node still ends below the tail's top. Else: once this node's records of
	 * it have not moved, and KZ_RECORDS has answered, for bridge_adopt_ms; the stream's last
	 * message of that node is not asked after twice that (a record below it may be missing:
	 * published again after a failure and lost). */
	uint32_t k_todo = 0;
	for (uint32_t i = 0; i < n_todo; i++) {
		uint64_t lo = 0;
		bool answers = last_in_records(c, todo[i].id, &lo);
		uint64_t t1 = kz_now_mono_ms(), ok_since = 0;
		pthread_mutex_lock(&c->lock);
		for (uint32_t k = 0; k < c->n_tails; k++)
			if (strcmp(c->tails[k].id, todo[i].id) == 0) {
				if (!answers)
					c->tails[k].ok_since_ms = 0;
				else if (!c->tails[k].ok_since_ms)
					c->tails[k].ok_since_ms = t1;
				ok_since = c->tails[k].ok_since_ms;
			}
		pthread_mutex_unlock(&c->lock);
		uint64_t wait = c->cfg.bridge_adopt_ms;
		bool go = answers && ok_since &&
			  (urgent ? lo < todo[i].top && t1 - ok_since >= QUIET_MS
				  : t1 - ok_since >= wait && t1 - todo[i].since_ms >= wait &&
					    (lo < todo[i].top || t1 - todo[i].since_ms >= 2 * (uint64_t)wait));
		if (go)
			todo[k_todo++] = todo[i];
	}
	n_todo = k_todo;
	atomic_store(&c->bridge_seen, rc == 0);
	for (uint32_t i = 0; i < n_todo; i++) {
		pthread_mutex_lock(&c->lock);
		uint64_t warned = 0;
		for (uint32_t k = 0; k < c->n_tails; k++)
			if (strcmp(c->tails[k].id, todo[i].id) == 0)
				warned = c->tails[k].warned_ms;
		pthread_mutex_unlock(&c->lock);
		bool warn = !warned || kz_now_mono_ms() - warned >= WARN_MS;
		uint64_t done = adopt(c, todo[i].id, todo[i].from, todo[i].top, r.first, r.last, warn);
		uint64_t done_ns = kz_now_wall_ns(), t1 = kz_now_mono_ms();
		pthread_mutex_lock(&c->lock);
		for (uint32_t k = 0; k < c->n_tails; k++) {
			struct kz_cluster_tail *t = &c->tails[k];
			if (strcmp(t->id, todo[i].id) != 0)
				continue;
			if (done > t->done) {
				t->done = done;
				t->done_ns = done_ns;
			}
			if (done < todo[i].top) {
				t->retry_ms = t1 + RETRY_MS;
				if (warn)
					t->warned_ms = t1;
			} else {
				t->warned_ms = 0;
			}
		}
		pthread_mutex_unlock(&c->lock);
	}
	atomic_store(&c->tails_ns, t0);
	/* a CONNECT that waited for this look is asked again (it may now wait for the follower) */
	if (atomic_exchange(&c->tails_wanted, false) && c->cfg.caught_up)
		c->cfg.caught_up(c->cfg.arg);
}
