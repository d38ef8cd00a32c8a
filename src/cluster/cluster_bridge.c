/* cluster_bridge.c — the bridge: acknowledgements while KZ_RECORDS elects a leader
 * (docs/CLUSTER.md "The bridge").
 *
 * Why: JetStream stores nothing in a stream without its leader, and nats-server 2.9's Raft
 * followers wait a hard-coded 4–9 s before they campaign for a lost one. A machine whose
 * nats-server led KZ_RECORDS, killed, left every node unable to acknowledge a QoS 1/2 publish
 * for that long (bench/cluster.sh part 4: 4.5–11 s).
 *
 * How: a second stream, KZ_BRIDGE (subjects kz.brg.<node>, the same replicas, an hour of
 * age), whose leader is kept on another server than KZ_RECORDS's (a stepdown request when the
 * two land on one). When records of ours have waited cluster.bridge_ms with no confirmation
 * from KZ_RECORDS, this thread publishes them to KZ_BRIDGE too, in the same message form
 * (cluster_batch.c), synchronously, and each confirmation there acknowledges them
 * (cfg.confirmed). The bridge changes nothing else:
 *   - KZ_RECORDS stays the record of truth. The replicator goes on publishing there from its
 *     own watermark (cluster.state), which the bridge never moves, so every record confirmed
 *     on the bridge is published to KZ_RECORDS again once it has a leader, and after a restart
 *     or a power loss the recovery is today's, on KZ_RECORDS alone.
 *   - Origin sequences are the replicator's: a dense count of this node's records in log
 *     order, so the bridge counts on from a watermark (local, origin) the same way.
 *   - Followers do not read KZ_BRIDGE: they take every record from KZ_RECORDS, in its order,
 *     as without the bridge (docs/CLUSTER.md "The bridge": reading it too reordered
 *     deliveries across origins). Cross-node delivery waits for the election as before.
 *
 *   IDLE --records of ours wait, KZ_RECORDS confirms none for bridge_ms--> BRIDGING (each
 *   pass publishes from max(KZ_RECORDS's watermark, the bridge's) to the log's durable end)
 *   --KZ_RECORDS confirms again, or nothing waits--> IDLE */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "store/store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Made, or updated to this configuration: as KZ_RECORDS, with an age limit (what it holds is
 * on KZ_RECORDS again within seconds of its election). */
static bool ensure_bridge(struct kz_cluster *c)
{
	jsErrCode jerr = 0;
	return kz_cluster_add_stream(c->js, BRIDGE, "kz.brg.>", c->cfg.replicas, (int64_t)3600 * 1000000000 /* 1 h */,
				     true /* direct gets: read by other nodes (cluster_adopt.c) */, true,
				     &jerr) == NATS_OK;
}

/* Keeps KZ_BRIDGE's leader off KZ_RECORDS's server. Asked about every second; when both
 * streams have the same leader, asked again after a random 0.2-1.7 s (every node asks: the
 * first to see it again acts, the others then find them apart) and, if they still have,
 * KZ_BRIDGE's leader is asked to step down (nats-server hands the leadership to a current
 * follower at once). *due: when to ask again (0: not pending). True when it asked: this node
 * then waits 5 s before it looks again, so that a leader that answers from a stale view (a
 * server just restarted) is not asked again and again. *gone: JetStream said KZ_BRIDGE is not
 * found (a power loss took its files). */
static bool keep_apart(struct kz_cluster *c, uint64_t *due, bool *gone)
{
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 500;
	jsStreamInfo *a = NULL, *b = NULL;
	jsErrCode jerr = 0;
	bool same = js_GetStreamInfo(&a, c->js, STREAM, &jo, &jerr) == NATS_OK &&
		    js_GetStreamInfo(&b, c->js, BRIDGE, &jo, &jerr) == NATS_OK && a->Cluster && b->Cluster &&
		    a->Cluster->Leader && b->Cluster->Leader && b->Cluster->ReplicasLen > 0 &&
		    strcmp(a->Cluster->Leader, b->Cluster->Leader) == 0;
	uint64_t now = kz_now_mono_ms();
	bool asked = false;
	*gone = a && !b && jerr == JSStreamNotFoundErr;
	if (!same) {
		*due = 0;
	} else if (!*due) {
		*due = now + 200 + (uint64_t)(rand() % 1500);
	} else if (now >= *due) {
		natsMsg *reply = NULL;
		kz_info("cluster: %s and %s are both led by %s: asking %s's leader to step down", STREAM, BRIDGE,
			a->Cluster->Leader, BRIDGE);
		(void)natsConnection_Request(&reply, c->nc, "$JS.API.STREAM.LEADER.STEPDOWN." BRIDGE, NULL, 0, 1000);
		natsMsg_Destroy(reply);
		*due = 0;
		asked = true;
	}
	jsStreamInfo_Destroy(a);
	jsStreamInfo_Destroy(b);
	return asked;
}

struct pass {
	struct kz_cluster *c;
	struct kz_cluster_batch b;
	char subject[96];
	uint64_t origin;   /* the last origin sequence given */
	uint64_t last;     /* the last log sequence looked at */
	bool failed;
	bool gone;         /* JetStream said KZ_BRIDGE is not found (its files lost): made again */
	struct kz_reclog_pos pos;
	bool has_pos;
};

/* The bridge confirmed our records up to log sequence local (origin sequence origin). */
static void confirmed(struct kz_cluster *c, uint64_t local, uint64_t origin, uint64_t n)
{
	pthread_mutex_lock(&c->lock);
	bool moved = local > c->b_local;
	if (moved) {
		c->b_local = local;
		c->b_origin = origin;
		atomic_store_explicit(&c->conf_seen, c->conf_local > local ? c->conf_local : local, memory_order_release);
		atomic_store_explicit(&c->progress_ms, kz_now_mono_ms(), memory_order_release);
	}
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add(&c->bridged, n);
	if (moved && c->cfg.confirmed)
		c->cfg.confirmed(c->cfg.arg, local);
}

static int publish(struct pass *p)
{
	struct kz_cluster *c = p->c;
	if (!p->b.n)
		return 0;
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	natsStatus s = kz_cluster_batch_msg(&p->b, p->subject, c->cfg.node_id, &m);
	if (s == NATS_OK)
		s = kz_cluster_publish_sync(c, m, BRIDGE, &jerr);
	natsMsg_Destroy(m);
	if (s == NATS_OK)
		confirmed(c, p->b.last_local, p->b.first_origin + p->b.n - 1, p->b.n);
	else if (jerr == JSStreamNotFoundErr)
		p->gone = true;
	p->b.n = 0;
	p->b.len = 0;
	return s == NATS_OK ? 0 : -1;
}

static int pass_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct pass *p = ctx;
	struct kz_cluster *c = p->c;
	struct kz_record r;
	const char *why;
	p->pos = *pos;
	p->has_pos = true;
	if (kz_record_decode(body, n, &r, &why) || r.origin_node.len != strlen(c->cfg.node_id) ||
	    memcmp(r.origin_node.p, c->cfg.node_id, r.origin_node.len) != 0) {
		p->last = seq; /* not ours */
		return 0;
	}
	uint32_t max_n = c->cfg.batch_records ? c->cfg.batch_records : 1;
	if (p->b.n && (p->b.n >= max_n || p->b.len + 4 + n > c->cfg.batch_bytes) && publish(p)) {
		p->failed = true;
		return 1;
	}
	if (kz_cluster_batch_put(&p->b, seq, body, n, r.id, p->origin + 1)) {
		p->failed = true;
		return 1;
	}
	p->origin++;
	p->last = seq;
	return 0;
}

/* One pass: our records above both watermarks, up to the log's durable end, to KZ_BRIDGE. */
static void bridge_pass(struct pass *p)
{
	struct kz_cluster *c = p->c;
	pthread_mutex_lock(&c->lock);
	bool own = c->b_local > c->conf_local;
	uint64_t local = own ? c->b_local : c->conf_local, origin = own ? c->b_origin : c->conf_origin;
	pthread_mutex_unlock(&c->lock);
	if (local + 1 >= kz_store_durable_next(c->cfg.store))
		return;
	p->origin = origin;
	p->last = local;
	p->failed = false;
	uint64_t end = 0;
	char why[256];
	/* the hint is where the last pass stopped: kz_reclog_scan checks it and walks from the
	 * segment's start when it is past local + 1 */
	(void)kz_store_scan(c->cfg.store, local + 1, p->has_pos ? &p->pos : NULL, pass_cb, p, &end, why, sizeof why);
	if (!p->failed && publish(p))
		p->failed = true;
	if (!p->failed && end > local + 1 && p->last + 1 >= end)
		confirmed(c, end - 1, p->origin, 0); /* the records after our last are not ours */
}

void *kz_cluster_bridge(void *arg)
{
	struct kz_cluster *c = arg;
	struct pass p = { .c = c };
	snprintf(p.subject, sizeof p.subject, "kz.brg.%s", c->cfg.node_id);
	uint64_t waiting_since = 0, stream_at = 0, apart_at = 0, apart_due = 0, began_bridged = 0;
	bool stream_ok = false;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		bool stop = c->stop;
		uint64_t conf = c->conf_local;
		pthread_mutex_unlock(&c->lock);
		if (stop)
			break;
		kz_cluster_tails_wait(c, 20);
		uint64_t now = kz_now_mono_ms();
		/* records of ours wait for KZ_RECORDS (the replicator's scan moves its watermark over
		 * other nodes' records within 20 ms): since when, and since its last confirmation */
		bool waits = kz_store_durable_next(c->cfg.store) > conf + 1;
		waiting_since = waits ? (waiting_since ? waiting_since : now) : 0;
		uint64_t moved = atomic_load(&c->a_moved_ms);
		uint64_t quiet_since = waiting_since > moved ? waiting_since : moved;
		bool stalled = c->cfg.bridge_ms && waits && now - quiet_since >= c->cfg.bridge_ms;
		if (!stalled && atomic_exchange(&c->bridging, false))
			kz_info("cluster: %s confirms our records again: the bridge stops (%" PRIu64 " records confirmed on "
				"%s)", STREAM, atomic_load(&c->bridged) - began_bridged, BRIDGE);
		if (!atomic_load(&c->js_ready))
			continue;
		pthread_rwlock_rdlock(&c->js_rw); /* not while the connection is replaced (swap_server) */
		if (c->js && atomic_load(&c->js_ready)) {
			kz_cluster_wake_follower(c); /* a CONNECT waits for its check (cluster_follow.c) */
			kz_cluster_tails(c);         /* other nodes' bridged tails (cluster_adopt.c) */
			if (c->cfg.bridge_ms && !stream_ok && now >= stream_at) {
				stream_ok = ensure_bridge(c);
				stream_at = now + 2000;
			}
			if (stream_ok && now >= apart_at) {
				bool gone = false, asked = keep_apart(c, &apart_due, &gone);
				if (gone)
					p.gone = true;
				uint64_t t = kz_now_mono_ms();
				apart_at = asked ? t + 5000 : apart_due ? apart_due : t + 1000 + (uint64_t)(rand() % 500);
			}
			if (stalled && stream_ok) {
				if (!atomic_exchange(&c->bridging, true)) {
					began_bridged = atomic_load(&c->bridged);
					atomic_fetch_add(&c->bridge_episodes, 1);
					kz_warn("cluster: %s has confirmed none of our records for %" PRIu64 " ms (a leader "
						"election?): publishing them to %s too, whose confirmation acknowledges them",
						STREAM, now - quiet_since, BRIDGE);
				}
				bridge_pass(&p);
			}
			if (p.gone) { /* a power loss took its files: made again */
				kz_warn("cluster: %s is gone from JetStream: making it again", BRIDGE);
				p.gone = stream_ok = false;
				stream_at = 0;
			}
		}
		pthread_rwlock_unlock(&c->js_rw);
	}
	free(p.b.buf);
	return NULL;
}
