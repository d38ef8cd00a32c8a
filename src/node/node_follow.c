/* node_follow.c — the node's side of the cluster's follower (docs/CLUSTER.md "The path of a
 * delivery on another node"): records of other nodes go into this node's log (TAXII objects
 * through their collection), then to its subscribers, in order. */
#include "node/node_follow.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "mqtt/mqtt_msg.h"
#include "store/store.h"

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

static void node_followed_held(void *ctx, int status, uint64_t seq)
{
	struct node_held *h = ctx;
	if (status == KZ_OK) {
		atomic_store_explicit(&h->m->seq, seq, memory_order_release);
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
