/* mqtt_session_share.c — persistent sessions shared with the other nodes of a cluster
 * (docs/CLUSTER.md "Sessions and retained messages"). The broker only says what a session
 * is (broker->share->put) and asks for one it does not hold (fetch); the node keeps them in
 * the cluster's KV bucket and translates acknowledgement watermarks between logs.
 *
 * A session has an epoch, one more each time a connection on another node takes it. A node
 * that learns of a higher epoch (or the same one from a node whose id sorts higher) for a
 * session it holds gives it up: DISCONNECT 0x8E to its connection, and the session ends here
 * without ending for the cluster. A lower epoch means the bucket has a stale value: the
 * session is shared again. */
#include "mqtt/mqtt_internal.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_time.h"

#include <stdlib.h>
#include <string.h>

void mqtt_session_share(struct mqtt_session *ss, bool ended)
{
	struct mqtt_broker *b = ss->shard->broker;
	ss->share_dirty = false;
	if (!b->share || ss->moved)
		return;
	struct kz_state_sub *subs = ss->n_subs ? calloc(ss->n_subs, sizeof *subs) : NULL;
	if (ss->n_subs && !subs) {
		ss->share_dirty = !ended; /* the next tick tries again */
		return;
	}
	for (uint32_t i = 0; i < ss->n_subs; i++) {
		const struct mqtt_sub *sub = ss->subs[i];
		subs[i] = (struct kz_state_sub){ sub->filter, sub->group, sub->qos, sub->retain_handling, sub->no_local,
						 sub->retain_as_published, sub->sub_id };
	}
	struct kz_state_will w;
	const struct kz_state_will *wp = mqtt_session_will_state(ss, &w);
	uint64_t off = ss->client ? 0 : (ss->offline_ns ? ss->offline_ns : kz_now_wall_ns());
	struct kz_state_session st = { ss->client_id, ss->peer_id, ss->expiry_s, off, ss->acked_saved, wp, subs,
				       ss->n_subs, ss->share_epoch };
	b->share->put(b->share_ctx, &st, ss->share_epoch, ended);
	free(subs);
}

void mqtt_session_moved(struct mqtt_session *ss, uint64_t epoch, bool tie_wins, bool ended)
{
	if (ss->moved)
		return;
	/* A session that ended on another node never takes over one with a connection here: a
	 * node that read the bucket late can give the connection here the epoch that ended
	 * there (the client left there, then came here). The bucket gets ours again. */
	if (epoch < ss->share_epoch || (epoch == ss->share_epoch && !tie_wins) || (ended && ss->client)) {
		ss->share_dirty = true; /* ours is newer: the bucket gets it again */
		return;
	}
	ss->moved = true;
	struct mqtt_client *c = ss->client;
	if (c) {
		kz_info("conn %llu %s: client id %s: session taken over by a connection on another node",
			(unsigned long long)c->conn_id, c->peer_id ? c->peer_id : "-", ss->client_id);
		mqtt_client_disconnect(c, MQTT_RC_SESSION_TAKEN_OVER, "session taken over on another node");
		c->session = NULL;
		ss->client = NULL;
		mqtt_share_set_online(ss, false);
	}
	/* §3.1.3.2.2 as for a takeover here: an immediate will goes now; a delayed one does not,
	 * the session goes on on the other node. A will still waiting without a connection (a
	 * delayed one, or one held at a restart) is the other node's now: it published it, or
	 * the client came back there. */
	if (ss->will && (ss->will_delay_s || !c)) {
		mqtt_msg_unref(ss->will);
		ss->will = NULL;
		ss->will_at_ms = 0;
	}
	mqtt_session_end(ss);
}

/* The session of entry p made on this node, at epoch, keeping the watermark it came with
 * (imported); not yet written here. NULL when it could not be made. */
static struct mqtt_session *restore_shared(struct mqtt_shard *s, const char *client_id, const struct kz_state_session *p,
					   uint64_t epoch)
{
	struct mqtt_session *ss;
	if (mqtt_broker_restore_session(s->broker, p, kz_now_wall_ns()) != KZ_OK ||
	    (ss = mqtt_session_find(s, (const uint8_t *)client_id, strlen(client_id))) == NULL)
		return NULL;
	ss->share_epoch = epoch;
	ss->imported = true;
	ss->persisted = false;
	return ss;
}

struct mqtt_session *mqtt_session_import(struct mqtt_shard *s, const char *client_id, const char *peer_id,
					 bool clean_start, uint64_t *epoch, bool *taken, bool *refuse)
{
	struct mqtt_broker *b = s->broker;
	*taken = *refuse = false;
	struct kz_state_session p;
	uint64_t ep = 0;
	bool ended = false;
	void *hold = NULL;
	if (!b->share || !b->share->fetch(b->share_ctx, client_id, &p, &ep, &ended, &hold))
		return NULL;
	struct mqtt_session *ss = NULL;
	if (!ended && (p.peer_id || peer_id) && (!p.peer_id || !peer_id || strcmp(p.peer_id, peer_id) != 0)) {
		*refuse = true; /* a session of another identity: not taken, not ended */
	} else {
		*taken = true;
		*epoch = ep + 1;
		if (!ended && !clean_start && p.expiry_s > 0)
			ss = restore_shared(s, client_id, &p, *epoch); /* written here by the CONNECT that follows */
	}
	b->share->release(b->share_ctx, hold);
	return ss;
}

void mqtt_session_adopt(struct mqtt_shard *s, const char *client_id)
{
	struct mqtt_broker *b = s->broker;
	struct kz_state_session p;
	uint64_t ep = 0;
	bool ended = false;
	void *hold = NULL;
	if (!b->share || mqtt_session_find(s, (const uint8_t *)client_id, strlen(client_id)) ||
	    !b->share->fetch(b->share_ctx, client_id, &p, &ep, &ended, &hold))
		return;
	struct mqtt_session *ss;
	/* past its expiry with a will still owed: made all the same, the will goes at the next
	 * tick and the session ends after it (the restart's rule) */
	if ((!ended || p.will) && (ss = restore_shared(s, client_id, &p, ep)) != NULL) {
		mqtt_session_persist_connect(ss, false);
		mqtt_session_persist_offline(ss); /* its offline time, and the entry as this node has it */
	}
	b->share->release(b->share_ctx, hold);
}
