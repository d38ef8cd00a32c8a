/* node_follow.c — the node's side of the cluster's follower (docs/CLUSTER.md "The path of a
 * delivery on another node"): records of other nodes go into this node's log (TAXII objects
 * through their collection), then to its subscribers, in order. */
#include "node/node_follow.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "mqtt/mqtt_msg.h"
#include "store/store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A record of another node, followed from the stream, is durable here: it is routed to this
 * node's subscribers (shard 0 fans it out; one shard keeps the stream's order). */
static struct mqtt_broker *node_follow_broker;   /* set before the follower starts */
static struct kz_cluster *node_follow_cluster;   /* valid until kz_cluster_free */
static struct taxii *node_follow_taxii;          /* NULL without HTTPS; indexes followed objects */

static void node_followed_done(void *ctx, int status, uint64_t seq)
{
	struct mqtt_msg *m = ctx;
	if (status == KZ_OK) {
		atomic_store_explicit(&m->seq, seq, memory_order_release);
		(void)mqtt_broker_inject(node_follow_broker, 0, m);
	}
	mqtt_msg_unref(m);
	kz_cluster_followed(node_follow_cluster, status);
}

/* A record held back behind a gap (cluster.h, follow): durable, not delivered yet. */
struct node_held {
	struct mqtt_msg *m;
	void **slot;
};

/* The log sequence numbers of the records held back now, in the order they became durable
 * (ascending); a released one is 0 until the head passes it. The lowest goes to the broker
 * (mqtt_broker_unrouted): a persistent session's acknowledgement watermark must not pass a
 * record it was never given, or a crash before the record's release loses it for that
 * session (found by scripts/soak-cluster: a node killed while a record waited behind a gap). */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *held_seq;
static size_t held_head, held_n, held_cap;
static uint64_t held_lost; /* not tracked (out of memory): the floor stays here until a restart */

static void held_publish(void)
{
	uint64_t f = held_head < held_n ? held_seq[held_head] : 0;
	if (held_lost && (!f || held_lost < f))
		f = held_lost;
	mqtt_broker_unrouted(node_follow_broker, f);
}

static void held_add(uint64_t seq)
{
	pthread_mutex_lock(&held_lock);
	if (held_head && held_n == held_cap) { /* the released front makes room */
		memmove(held_seq, held_seq + held_head, (held_n - held_head) * sizeof *held_seq);
		held_n -= held_head;
		held_head = 0;
	}
	if (held_n == held_cap) {
		size_t nc = held_cap ? held_cap * 2 : 256;
		uint64_t *nv = realloc(held_seq, nc * sizeof *nv);
		if (!nv) {
			if (!held_lost || seq < held_lost)
				held_lost = seq;
			held_publish();
			pthread_mutex_unlock(&held_lock);
			return;
		}
		held_seq = nv;
		held_cap = nc;
	}
	held_seq[held_n++] = seq;
	held_publish();
	pthread_mutex_unlock(&held_lock);
}

static void held_remove(uint64_t seq)
{
	pthread_mutex_lock(&held_lock);
	for (size_t i = held_head; i < held_n; i++) /* the oldest are released first: found near the head */
		if (held_seq[i] == seq) {
			held_seq[i] = 0;
			break;
		}
	while (held_head < held_n && held_seq[held_head] == 0)
		held_head++;
	if (held_head == held_n)
		held_head = held_n = 0;
	held_publish();
	pthread_mutex_unlock(&held_lock);
}

static void node_followed_held(void *ctx, int status, uint64_t seq)
{
	struct node_held *h = ctx;
	if (status == KZ_OK) {
		atomic_store_explicit(&h->m->seq, seq, memory_order_release);
		held_add(seq);
		*h->slot = h->m; /* the cluster releases it in order */
	} else {
		mqtt_msg_unref(h->m);
	}
	free(h);
	kz_cluster_followed(node_follow_cluster, status);
}

void node_release(void *arg, void *held)
{
	(void)arg;
	struct mqtt_msg *m = held;
	(void)mqtt_broker_inject(node_follow_broker, 0, m);
	held_remove(atomic_load_explicit(&m->seq, memory_order_acquire));
	mqtt_msg_unref(m);
}

int node_follow(void *arg, const uint8_t *body, size_t n, void **slot)
{
	struct mqtt_broker *b = arg;
	struct kz_record r;
	const char *why;
	if (kz_record_decode(body, n, &r, &why)) {
		kz_warn("cluster: a record from the stream is not valid (%s): skipped", why);
		kz_cluster_followed(node_follow_cluster, 0); /* nothing to store; acknowledged with its batch */
		return 0;
	}
	struct mqtt_msg *m = mqtt_msg_from_record(b, &r);
	uint8_t *data = m ? malloc(n) : NULL;
	struct node_held *h = data && slot ? malloc(sizeof *h) : NULL;
	if (!data || (slot && !h)) {
		free(data);
		if (m)
			mqtt_msg_unref(m);
		return -1;
	}
	memcpy(data, body, n);
	struct kz_store_item it = { data, (uint32_t)n, node_followed_done, m, NULL, false };
	if (h) {
		*h = (struct node_held){ m, slot };
		it.done = node_followed_held;
		it.ctx = h;
	}
	/* a TAXII object: its collection dates, submits and indexes it (any node answers TAXII
	 * with the same objects); anything else is submitted here */
	int tx = node_follow_taxii ? taxii_follow(node_follow_taxii, &it) : 0;
	if (tx < 0) {
		free(data);
		free(h);
		mqtt_msg_unref(m);
		return -1;
	}
	if (tx == 0)
		kz_store_submit(b->store, &it, 1);
	return 0;
}

void node_follow_set(struct mqtt_broker *b, struct taxii *t, struct kz_cluster *c)
{
	node_follow_broker = b;
	node_follow_taxii = t;
	node_follow_cluster = c;
}
