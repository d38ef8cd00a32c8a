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
	char *client_id; /* NULL: empty */
	uint8_t *v;
	size_t n;
};

struct node_sessions {
	pthread_mutex_t lock;
	struct slot *slots;
	size_t cap, used;
	struct kz_cluster *cluster;
	struct kz_store *store;
	struct mqtt_broker *b;
	char node_id[65];
	uint64_t margin_ns;
	uint32_t order_ms;
};

static const struct mqtt_share_ops ops;

static size_t slot_of(const struct node_sessions *ns, const char *id)
{
	size_t i = kz_hash(id, strlen(id)) & (ns->cap - 1);
	while (ns->slots[i].client_id && strcmp(ns->slots[i].client_id, id) != 0)
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
		if (old[i].client_id)
			ns->slots[slot_of(ns, old[i].client_id)] = old[i];
	free(old);
	return true;
}

/* The cluster's session thread: a value of the bucket changed. */
static void on_update(void *arg, const uint8_t *v, size_t n)
{
	struct node_sessions *ns = arg;
	struct kz_session_entry e;
	void *blk;
	const char *why;
	if (kz_session_entry_decode(v, n, &e, &blk, &why)) {
		kz_warn("cluster: a session entry in KZ_SESSIONS is not valid (%s): ignored", why);
		return;
	}
	uint8_t *copy = malloc(n ? n : 1);
	char *id = strdup(e.s.client_id);
	pthread_mutex_lock(&ns->lock);
	bool room = copy && id && ((ns->used + 1) * 2 <= ns->cap || grow(ns));
	if (room) {
		memcpy(copy, v, n);
		size_t i = slot_of(ns, id);
		if (ns->slots[i].client_id) {
			free(ns->slots[i].v);
			free(id);
		} else {
			ns->slots[i].client_id = id;
			ns->used++;
		}
		ns->slots[i].v = copy;
		ns->slots[i].n = n;
		copy = NULL;
		id = NULL;
	}
	pthread_mutex_unlock(&ns->lock);
	free(copy);
	free(id);
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
	pthread_mutex_lock(&ns->lock);
	size_t i = slot_of(ns, client_id);
	if (ns->slots[i].client_id && (v = malloc(ns->slots[i].n ? ns->slots[i].n : 1)) != NULL) {
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
		uint8_t h[32];
		char key[2 + 64 + 1] = "s.";
		kz_sha256(s->client_id, strlen(s->client_id), h);
		for (int i = 0; i < 32; i++)
			snprintf(key + 2 + 2 * i, 3, "%02x", h[i]);
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
	return !ns->order_ms || kz_cluster_settled(ns->cluster, since_ns, ns->order_ms);
}

static const struct mqtt_share_ops ops = { fetch, release, put, settled };

struct node_sessions *node_sessions_new(struct mqtt_broker *b, struct kz_store *store, const char *node_id,
					uint32_t margin_ms, uint32_t order_ms)
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
	snprintf(ns->node_id, sizeof ns->node_id, "%s", node_id);
	ns->margin_ns = (uint64_t)margin_ms * 1000000u;
	ns->order_ms = order_ms;
	return ns;
}

void node_sessions_attach(struct node_sessions *ns, struct kz_cluster *c)
{
	ns->cluster = c;
	ns->b->share_ctx = ns;
	ns->b->share = &ops;
}

void (*node_sessions_update_fn(void))(void *, const uint8_t *, size_t)
{
	return on_update;
}

void node_sessions_free(struct node_sessions *ns)
{
	if (!ns)
		return;
	for (size_t i = 0; i < ns->cap; i++) {
		free(ns->slots[i].client_id);
		free(ns->slots[i].v);
	}
	free(ns->slots);
	pthread_mutex_destroy(&ns->lock);
	free(ns);
}
