/* node_sessions.c — persistent sessions shared across a cluster (docs/CLUSTER.md "Sessions and
 * retained messages"): the broker's share hooks on the cluster's KZ_SESSIONS bucket.
 *
 * Every node keeps the bucket's newest value per client id in memory (the cluster's session
 * thread hands over each change), so a CONNECT never waits for the network. A value names
 * its owner node and epoch; a change from another node tells the broker (which gives up a
 * session it holds with a lower epoch).
 *
 * Acknowledgement watermarks are log sequence numbers, which differ between nodes. They
 * travel as a time, the cut: every record accepted before it, anywhere, was acknowledged by
 * the session (or never was its). The owner computes it as the oldest accept time among the
 * records after its watermark in its log, and among those it may not have yet (the follower's
 * caught-up time), less cluster.session_margin_ms. The node that takes the session replays
 * its own log from the first record accepted at or after the cut: nothing unacknowledged is
 * skipped, and what was acknowledged after the cut comes again (at least once). */
#include "node/node_sessions.h"

#include "base/kz_hash.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "crypto/kz_crypto.h"
#include "store/store.h"

#include <stdio.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	char *key; /* the bucket's key, s.<sha256(client id) hex>; NULL: empty */
	uint8_t *v;
	size_t n;
	uint64_t rev;     /* its revision in the bucket */
	uint64_t seen_ms; /* monotonic: when this value came */
	char owner[65];
	bool ended;
};

/* Another node as its heartbeats show it (docs/CLUSTER.md "A node that died"). */
struct peer {
	char id[65];
	uint64_t beat_at; /* own_beats when its last heartbeat came */
	uint64_t wall_ns; /* our wall clock then */
	bool dead;
};

struct node_sessions {
	pthread_mutex_t lock; /* slots: written on the session thread, read by workers */
	struct slot *slots;
	size_t cap, used, tombstones;
	struct kz_cluster *cluster;
	struct kz_store *store;
	struct mqtt_broker *b;
	struct node_sessions_config cfg;
	char node_id[65];
	uint64_t margin_ns;
	uint64_t start_ms;
	/* the session thread's own */
	struct peer peers[KZ_CLUSTER_MAX_ORIGINS];
	unsigned n_peers;
	uint64_t own_beats, beat_no, beat_ms, beat_sent_ms, dead_beats;
	uint64_t swept_ms, purge_scan_ms, markers_ms;
	bool newly_dead, purged_since_markers;
	_Atomic uint64_t adopted, tombstoned, purged, peers_dead;
};

static const struct mqtt_share_ops ops;

/* The key of a client id's entry: its SHA-256, so that any client id makes a valid key. */
static void key_of(const char *client_id, char key[2 + 64 + 1])
{
	uint8_t h[32];
	kz_sha256(client_id, strlen(client_id), h);
	memcpy(key, "s.", 2);
	for (int i = 0; i < 32; i++)
		snprintf(key + 2 + 2 * i, 3, "%02x", h[i]);
}

static size_t slot_of(const struct node_sessions *ns, const char *key)
{
	size_t i = kz_hash(key, strlen(key)) & (ns->cap - 1);
	while (ns->slots[i].key && strcmp(ns->slots[i].key, key) != 0)
		i = (i + 1) & (ns->cap - 1);
	return i;
}

static bool grow(struct node_sessions *ns)
{
	size_t cap = ns->cap * 2;
	struct slot *nv = calloc(cap, sizeof *nv), *old = ns->slots;
	if (!nv)
		return false;
	size_t oc = ns->cap;
	ns->slots = nv;
	ns->cap = cap;
	for (size_t i = 0; i < oc; i++)
		if (old[i].key)
			ns->slots[slot_of(ns, old[i].key)] = old[i];
	free(old);
	return true;
}

/* Under lock: empties slot i, moving back the entries after it that probed past it. */
static void slot_remove(struct node_sessions *ns, size_t i)
{
	ns->tombstones -= ns->slots[i].ended;
	free(ns->slots[i].key);
	free(ns->slots[i].v);
	ns->slots[i] = (struct slot){ 0 };
	ns->used--;
	for (size_t j = (i + 1) & (ns->cap - 1); ns->slots[j].key; j = (j + 1) & (ns->cap - 1)) {
		size_t home = kz_hash(ns->slots[j].key, strlen(ns->slots[j].key)) & (ns->cap - 1);
		/* j's entry may move to i if i lies cyclically between its home and j */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			ns->slots[i] = ns->slots[j];
			ns->slots[j] = (struct slot){ 0 };
			i = j;
		}
	}
}

/* Under lock: keeps value v (owned from now on) for key. False: out of memory. */
static bool slot_set(struct node_sessions *ns, const char *key, uint64_t rev, uint8_t *v, size_t n,
		     const struct kz_session_entry *e)
{
	if ((ns->used + 1) * 2 > ns->cap && !grow(ns))
		return false;
	size_t i = slot_of(ns, key);
	struct slot *sl = &ns->slots[i];
	if (!sl->key) {
		if (!(sl->key = strdup(key)))
			return false;
		ns->used++;
	} else {
		free(sl->v);
		ns->tombstones -= sl->ended;
	}
	sl->v = v;
	sl->n = n;
	sl->rev = rev;
	sl->seen_ms = kz_now_mono_ms();
	snprintf(sl->owner, sizeof sl->owner, "%s", e->owner);
	sl->ended = e->ended;
	ns->tombstones += e->ended;
	return true;
}

static struct peer *peer_of(struct node_sessions *ns, const char *id)
{
	for (unsigned i = 0; i < ns->n_peers; i++)
		if (strcmp(ns->peers[i].id, id) == 0)
			return &ns->peers[i];
	if (ns->n_peers == KZ_CLUSTER_MAX_ORIGINS)
		return NULL;
	struct peer *p = &ns->peers[ns->n_peers++];
	snprintf(p->id, sizeof p->id, "%s", id);
	return p;
}

/* A heartbeat, "kzbeat <node id> <n>", under n.<node id>: ours counts the time that passes
 * while the bucket works (a node is dead after dead_beats of ours without one of its own, so a
 * bucket that stalls for everyone kills nobody); another's says that node lives. */
static void on_beat(struct node_sessions *ns, const uint8_t *v, size_t n)
{
	char id[65];
	unsigned long long no;
	char text[160];
	if (!v || n >= sizeof text)
		return;
	memcpy(text, v, n);
	text[n] = 0;
	if (sscanf(text, "kzbeat %64s %llu", id, &no) != 2)
		return;
	if (strcmp(id, ns->node_id) == 0) {
		ns->own_beats++;
		return;
	}
	struct peer *p = peer_of(ns, id);
	if (!p)
		return;
	if (p->dead) {
		kz_info("cluster: node %s is back (its heartbeats come again)", id);
		atomic_fetch_sub(&ns->peers_dead, 1);
	}
	p->dead = false;
	p->beat_at = ns->own_beats;
	p->wall_ns = kz_now_wall_ns();
}

/* The cluster's session thread: a value of the bucket changed (v NULL: deleted or purged). */
static void on_update(void *arg, const char *key, uint64_t rev, const uint8_t *v, size_t n)
{
	struct node_sessions *ns = arg;
	if (strncmp(key, "n.", 2) == 0) {
		on_beat(ns, v, n);
		return;
	}
	if (!v) {
		pthread_mutex_lock(&ns->lock);
		size_t i = slot_of(ns, key);
		if (ns->slots[i].key)
			slot_remove(ns, i);
		pthread_mutex_unlock(&ns->lock);
		return;
	}
	struct kz_session_entry e;
	void *blk;
	const char *why;
	if (kz_session_entry_decode(v, n, &e, &blk, &why)) {
		kz_warn("cluster: a session entry in KZ_SESSIONS is not valid (%s): ignored", why);
		return;
	}
	uint8_t *copy = malloc(n ? n : 1);
	pthread_mutex_lock(&ns->lock);
	if (copy) {
		memcpy(copy, v, n);
		if (slot_set(ns, key, rev, copy, n, &e))
			copy = NULL;
	}
	pthread_mutex_unlock(&ns->lock);
	free(copy);
	if (strcmp(e.owner, ns->node_id) != 0) /* another node serves it now, or ended it */
		(void)mqtt_broker_session_moved(ns->b, e.s.client_id, e.epoch, strcmp(e.owner, ns->node_id) > 0, e.ended);
	free(blk);
}

static bool fetch(void *ctx, const char *client_id, struct kz_state_session *out, uint64_t *epoch, bool *ended,
		  void **hold)
{
	struct node_sessions *ns = ctx;
	*hold = NULL;
	uint8_t *v = NULL;
	size_t n = 0;
	char key[2 + 64 + 1];
	key_of(client_id, key);
	pthread_mutex_lock(&ns->lock);
	size_t i = slot_of(ns, key);
	if (ns->slots[i].key && (v = malloc(ns->slots[i].n ? ns->slots[i].n : 1)) != NULL) {
		n = ns->slots[i].n;
		memcpy(v, ns->slots[i].v, n);
	}
	pthread_mutex_unlock(&ns->lock);
	if (!v)
		return false;
	struct kz_session_entry e;
	void *blk;
	const char *why;
	int rc = kz_session_entry_decode(v, n, &e, &blk, &why);
	free(v);
	if (rc)
		return false;
	uint64_t now = kz_now_wall_ns();
	const struct kz_state_session *s = &e.s;
	bool expired = s->offline_since_ns && s->expiry_s != UINT32_MAX &&
		       now > s->offline_since_ns + (uint64_t)s->expiry_s * 1000000000u;
	*out = *s;
	*epoch = e.epoch;
	*ended = e.ended || expired;
	/* its backlog here: every record of this log accepted at or after the cut */
	uint64_t first = kz_store_seq_since(ns->store, e.cut_ns);
	out->acked_through = first ? first - 1 : 0;
	kz_info("cluster: client id %s: session of node %s (epoch %llu%s), backlog from our record %llu", client_id,
		e.owner, (unsigned long long)e.epoch, *ended ? ", ended" : "", (unsigned long long)first);
	*hold = blk;
	return true;
}

static void release(void *ctx, void *hold)
{
	(void)ctx;
	free(hold);
}

static void put(void *ctx, const struct kz_state_session *s, uint64_t epoch, bool ended)
{
	struct node_sessions *ns = ctx;
	uint64_t now = kz_now_wall_ns();
	uint64_t floor = kz_store_time_floor(ns->store, s->acked_through);
	uint64_t caught = kz_cluster_caught_up_ns(ns->cluster);
	uint64_t cut = floor < caught ? floor : caught;
	if (cut > now)
		cut = now;
	cut = cut > ns->margin_ns ? cut - ns->margin_ns : 0;
	struct kz_session_entry e = { ns->node_id, epoch, cut, now, ended, *s };
	e.s.acked_through = 0;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	if (kz_session_entry_encode(&e, &b) == 0) {
		char key[2 + 64 + 1];
		key_of(s->client_id, key);
		kz_cluster_session_put(ns->cluster, key, kz_buf_head(&b), b.len);
	}
	kz_buf_cleanup(&b);
}

/* Every CONNECT with a client id waits until this node has what the stream held when it came
 * (kz_cluster_settled): the client may have published on another node a moment ago, and this
 * node's copy of the session bucket can be as late as its follower, so it cannot tell. */
static bool settled(void *ctx, uint64_t since_ns)
{
	struct node_sessions *ns = ctx;
	return !ns->cfg.order_ms || kz_cluster_settled(ns->cluster, since_ns, ns->cfg.order_ms);
}

/* May a will of a session restored at start be published? Not before this node has read the
 * bucket once (plus a tick, for the moves that reading posted to the workers): another node
 * may have taken the session, and published the will, while this one was down. At most
 * cluster.node_dead_ms after start without the bucket. */
static bool wills_ready(void *ctx)
{
	struct node_sessions *ns = ctx;
	return kz_cluster_sessions_synced(ns->cluster) || kz_now_mono_ms() - ns->start_ms > ns->cfg.dead_ms;
}

static const struct mqtt_share_ops ops = { fetch, release, put, settled, wills_ready };

/* ---- a dead node's sessions (docs/CLUSTER.md "A node that died") ---- */

/* Takes the session in slot copy (v, rev) from its dead owner: the entry is written with this
 * node as owner and the epoch one more, only if nobody changed it since (the bucket's
 * compare-and-set: of several nodes trying, one wins). The session then lives here as if its
 * client had left: its will is published (after its delay), it expires, its client may come
 * back to any node. A session past its expiry without a will is only ended. */
static void adopt(struct node_sessions *ns, const char *key, const uint8_t *v, size_t n, uint64_t rev,
		  const struct peer *dead)
{
	struct kz_session_entry e;
	void *blk;
	const char *why;
	if (kz_session_entry_decode(v, n, &e, &blk, &why))
		return;
	uint64_t now = kz_now_wall_ns();
	if (!e.s.offline_since_ns) /* connected when its node died: gone since its last heartbeat */
		e.s.offline_since_ns = dead->wall_ns ? dead->wall_ns : now;
	bool expired = e.s.expiry_s != UINT32_MAX &&
		       now > e.s.offline_since_ns + (uint64_t)e.s.expiry_s * 1000000000u;
	e.owner = ns->node_id;
	e.epoch++;
	e.updated_ns = now;
	e.ended = expired && !e.s.will;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	uint8_t *copy = NULL;
	uint64_t nrev = 0;
	if (kz_session_entry_encode(&e, &b) == 0 && (copy = malloc(b.len ? b.len : 1)) != NULL &&
	    kz_cluster_session_update(ns->cluster, key, kz_buf_head(&b), b.len, rev, &nrev) == 0) {
		memcpy(copy, kz_buf_head(&b), b.len);
		pthread_mutex_lock(&ns->lock); /* ours now: a CONNECT here finds it before the watcher says so */
		if (slot_set(ns, key, nrev, copy, b.len, &e))
			copy = NULL;
		pthread_mutex_unlock(&ns->lock);
		if (e.ended) {
			atomic_fetch_add(&ns->tombstoned, 1);
			kz_info("cluster: client id %s: session of dead node %s had expired: ended", e.s.client_id, dead->id);
		} else {
			atomic_fetch_add(&ns->adopted, 1);
			kz_info("cluster: client id %s: session of dead node %s taken here (epoch %llu)%s", e.s.client_id,
				dead->id, (unsigned long long)e.epoch, e.s.will ? ", its will to be published" : "");
			(void)mqtt_broker_session_adopt(ns->b, e.s.client_id);
		}
	}
	free(copy);
	kz_buf_cleanup(&b);
	free(blk);
}

/* The peer owner names when this node takes it for dead, else NULL. Under ns->lock. */
static const struct peer *dead_owner(const struct node_sessions *ns, const char *owner)
{
	for (unsigned k = 0; k < ns->n_peers; k++)
		if (ns->peers[k].dead && strcmp(ns->peers[k].id, owner) == 0)
			return &ns->peers[k];
	return NULL;
}

/* Every session whose owner is a dead node, not ended: adopted (one at a time out of the lock:
 * the compare-and-set waits for JetStream). */
static void sweep(struct node_sessions *ns)
{
	for (size_t i = 0;; i++) {
		pthread_mutex_lock(&ns->lock);
		const struct peer *dead = NULL;
		for (; i < ns->cap && !dead; i++) {
			const struct slot *sl = &ns->slots[i];
			if (sl->key && !sl->ended)
				dead = dead_owner(ns, sl->owner);
		}
		if (!dead) {
			pthread_mutex_unlock(&ns->lock);
			return;
		}
		i--;
		const struct slot *sl = &ns->slots[i];
		char key[2 + 64 + 1];
		snprintf(key, sizeof key, "%s", sl->key);
		uint64_t rev = sl->rev;
		size_t n = sl->n;
		uint8_t *v = malloc(n ? n : 1);
		if (v)
			memcpy(v, sl->v, n);
		pthread_mutex_unlock(&ns->lock);
		if (v)
			adopt(ns, key, v, n, rev, dead);
		free(v);
	}
}

/* Tombstones older than cluster.session_tombstone_ms (seen that long ago by this node) are
 * purged from the bucket, by their owner or, when it is dead, by any node; only if unchanged
 * since (a session made again meanwhile stays). Their purge markers go one period later. */
static void purge_tombstones(struct node_sessions *ns, uint64_t now_ms)
{
	uint64_t every = ns->cfg.tombstone_ms / 4 ? ns->cfg.tombstone_ms / 4 : 1;
	if (every > 60000)
		every = 60000;
	if (now_ms - ns->purge_scan_ms < every)
		return;
	ns->purge_scan_ms = now_ms;
	if (ns->purged_since_markers && now_ms - ns->markers_ms >= ns->cfg.tombstone_ms) {
		kz_cluster_session_purge_markers(ns->cluster, ns->cfg.tombstone_ms);
		ns->markers_ms = now_ms;
		ns->purged_since_markers = false;
	}
	for (size_t i = 0;; i++) {
		char key[2 + 64 + 1];
		uint64_t rev = 0;
		pthread_mutex_lock(&ns->lock);
		for (; i < ns->cap && !rev; i++) {
			const struct slot *sl = &ns->slots[i];
			if (!sl->key || !sl->ended || now_ms - sl->seen_ms < ns->cfg.tombstone_ms)
				continue;
			if (strcmp(sl->owner, ns->node_id) == 0 || dead_owner(ns, sl->owner)) {
				snprintf(key, sizeof key, "%s", sl->key);
				rev = sl->rev;
			}
		}
		pthread_mutex_unlock(&ns->lock);
		if (!rev)
			return;
		i--;
		if (kz_cluster_session_purge(ns->cluster, key, rev) == 0) {
			atomic_fetch_add(&ns->purged, 1);
			if (!ns->purged_since_markers)
				ns->markers_ms = now_ms;
			ns->purged_since_markers = true;
		}
	}
}

/* The session thread, about every 100 ms once the bucket was read. */
static void on_tick(void *arg)
{
	struct node_sessions *ns = arg;
	uint64_t now = kz_now_mono_ms();
	if (ns->cfg.dead_ms) {
		if (now - ns->beat_sent_ms >= ns->beat_ms) {
			char key[2 + 64 + 1], v[128];
			snprintf(key, sizeof key, "n.%s", ns->node_id);
			int len = snprintf(v, sizeof v, "kzbeat %s %llu", ns->node_id, (unsigned long long)++ns->beat_no);
			kz_cluster_session_put(ns->cluster, key, (const uint8_t *)v, (size_t)len);
			ns->beat_sent_ms = now;
		}
		for (unsigned i = 0; i < ns->n_peers; i++) {
			struct peer *p = &ns->peers[i];
			if (!p->dead && ns->own_beats - p->beat_at > ns->dead_beats) {
				p->dead = true;
				ns->newly_dead = true;
				atomic_fetch_add(&ns->peers_dead, 1);
				kz_warn("cluster: node %s sent no heartbeat while this node sent %llu (cluster.node_dead_ms = "
					"%u): taken as dead; its sessions are taken over",
					p->id, (unsigned long long)(ns->own_beats - p->beat_at), ns->cfg.dead_ms);
			}
		}
		/* at once for a node found dead; again every few seconds for entries that came late
		 * or lost a compare-and-set to a value that is still the dead node's */
		if (atomic_load(&ns->peers_dead) && (ns->newly_dead || now - ns->swept_ms > 5000)) {
			ns->newly_dead = false;
			ns->swept_ms = now;
			sweep(ns);
		}
	}
	if (ns->cfg.tombstone_ms)
		purge_tombstones(ns, now);
}

struct node_sessions *node_sessions_new(struct mqtt_broker *b, struct kz_store *store,
					const struct node_sessions_config *cfg)
{
	struct node_sessions *ns = calloc(1, sizeof *ns);
	if (!ns || !(ns->slots = calloc(1024, sizeof *ns->slots))) {
		free(ns);
		return NULL;
	}
	ns->cap = 1024;
	pthread_mutex_init(&ns->lock, NULL);
	ns->b = b;
	ns->store = store;
	ns->cfg = *cfg;
	snprintf(ns->node_id, sizeof ns->node_id, "%s", cfg->node_id);
	ns->cfg.node_id = ns->node_id;
	ns->margin_ns = (uint64_t)cfg->margin_ms * 1000000u;
	ns->start_ms = kz_now_mono_ms();
	/* a heartbeat a second, or five per cluster.node_dead_ms when that is shorter */
	ns->beat_ms = cfg->dead_ms / 5 < 1000 ? cfg->dead_ms / 5 : 1000;
	if (ns->beat_ms < 50)
		ns->beat_ms = 50;
	ns->dead_beats = cfg->dead_ms / ns->beat_ms;
	return ns;
}

void node_sessions_attach(struct node_sessions *ns, struct kz_cluster *c)
{
	ns->cluster = c;
	ns->b->share_ctx = ns;
	ns->b->share = &ops;
}

void node_sessions_hook(struct node_sessions *ns, struct kz_cluster_config *cc)
{
	cc->session = on_update;
	cc->session_tick = on_tick;
	cc->session_arg = ns;
}

void node_sessions_stats(struct node_sessions *ns, struct node_sessions_stats *out)
{
	pthread_mutex_lock(&ns->lock);
	out->known = ns->used;
	out->tombstones = ns->tombstones;
	pthread_mutex_unlock(&ns->lock);
	out->nodes_dead = atomic_load(&ns->peers_dead);
	out->adopted = atomic_load(&ns->adopted);
	out->ended_expired = atomic_load(&ns->tombstoned);
	out->purged = atomic_load(&ns->purged);
}

void node_sessions_free(struct node_sessions *ns)
{
	if (!ns)
		return;
	for (size_t i = 0; i < ns->cap; i++) {
		free(ns->slots[i].key);
		free(ns->slots[i].v);
	}
	free(ns->slots);
	pthread_mutex_destroy(&ns->lock);
	free(ns);
}
