/* cluster_status.c — `kizuna cluster status`: the streams, this node's watermark and
 * consumer, what it took from each origin, the session bucket (docs/CLUSTER.md "Operations"). */
#include "cluster/cluster_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---------- status ---------- */

int kz_cluster_print_status(const struct kz_cluster_config *cfg, FILE *out, char *why, size_t why_len)
{
	return kz_cluster_print_status_ex(cfg, false, out, why, why_len);
}

int kz_cluster_print_status_ex(const struct kz_cluster_config *cfg, bool records, FILE *out, char *why,
			       size_t why_len)
{
	struct kz_cluster c = { .cfg = *cfg };
	snprintf(c.subject, sizeof c.subject, "kz.rec.%s", cfg->node_id);
	pthread_mutex_init(&c.lock, NULL);
	if (cfg->state_path)
		kz_cluster_state_load(&c);
	int rc = kz_cluster_connect(&c, why, why_len);
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	if (!rc && js_GetStreamInfo(&si, c.js, STREAM, NULL, &jerr) != NATS_OK) {
		snprintf(why, why_len, "stream %s: %s (JetStream error %d)", STREAM,
			 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "not found", (int)jerr);
		rc = -1;
	}
	if (!rc) {
		fprintf(out, "node: %s\nnats: %s\n", cfg->node_id, cfg->servers);
		fprintf(out, "stream: %s, %" PRIu64 " messages, %" PRIu64 " bytes, sequences %" PRIu64 "..%" PRIu64 "\n", STREAM,
			si->State.Msgs, si->State.Bytes, si->State.FirstSeq, si->State.LastSeq);
		if (si->Cluster) {
			fprintf(out, "leader: %s\n", si->Cluster->Leader ? si->Cluster->Leader : "(none: no quorum)");
			for (int i = 0; i < si->Cluster->ReplicasLen; i++) {
				jsPeerInfo *p = si->Cluster->Replicas[i];
				fprintf(out, "replica: %s, %s, %" PRIu64 " behind\n", p->Name,
					p->Offline ? "offline" : p->Current ? "current" : "catching up", p->Lag);
			}
		}
		jsStreamInfo *bi = NULL; /* cluster_bridge.c */
		if (js_GetStreamInfo(&bi, c.js, BRIDGE, NULL, &jerr) == NATS_OK)
			fprintf(out, "bridge: %s, %" PRIu64 " messages, leader %s\n", BRIDGE, bi->State.Msgs,
				bi->Cluster && bi->Cluster->Leader ? bi->Cluster->Leader : "(none)");
		else
			fprintf(out, "bridge: %s not created yet (cluster.bridge_ms 0, or no node started since)\n", BRIDGE);
		jsStreamInfo_Destroy(bi);
		struct kz_cluster_last last;
		natsStatus ls;
		int got = kz_cluster_last_of(c.js, c.subject, 0, &last, &ls, &jerr);
		uint64_t lo = last.origin;
		if (got != KZ_LAST_NO_ANSWER)
			fprintf(out, "this node's records in the stream: %" PRIu64 "\n", lo);
		else
			fprintf(out, "this node's records in the stream: unknown (%s)\n", natsStatus_GetText(ls));
		fprintf(out, "confirmed (saved): %" PRIu64 " of this node's records, up to log sequence %" PRIu64 "\n",
			c.conf_origin, c.conf_local);
		if (got != KZ_LAST_NO_ANSWER)
			fprintf(out, "to publish again: %" PRIu64 "\n", c.conf_origin > lo ? c.conf_origin - lo : 0);
		if (records && got == KZ_LAST_FOUND && kz_cluster_print_own_records(&c, out)) {
			snprintf(why, why_len, "cannot read all of this node's messages in stream %s", STREAM);
			rc = -1; /* --records asked for a count it did not get */
		}
		else if (records)
			fprintf(out, "this node's records stored: 0 in 0 messages, 0 more than once, 0 missing, 0 messages "
				"not read as records, at most 0 records in one message\n");
		char durable[96], old[4][96];
		unsigned n_old = 0;
		jsConsumerInfo *ci = NULL;
		if (kz_cluster_consumer_find(c.js, cfg->node_id, NULL, true, durable, sizeof durable, old, 4, &n_old) < 0) {
			fprintf(out, "follower: unknown (JetStream did not list the stream's consumers: %s)\n",
				nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "no answer");
		} else if (js_GetConsumerInfo(&ci, c.js, STREAM, durable, NULL, &jerr) == NATS_OK) {
			fprintf(out, "follower: %s, %" PRIu64 " messages behind, %" PRId64 " in flight, on %s\n", durable,
				ci->NumPending, ci->NumAckPending,
				ci->Cluster && ci->Cluster->Leader ? ci->Cluster->Leader : "(no server)");
			jsConsumerInfo_Destroy(ci);
		} else {
			fprintf(out, "follower: %s, not created yet\n", durable);
		}
		for (unsigned i = 0; i < n_old; i++)
			fprintf(out, "follower: %s, an earlier one, to be deleted\n", old[i]);
		for (uint32_t i = 0; i < c.n_origins; i++) {
			uint64_t open = 0;
			for (uint32_t g = 0; g < c.origins[i].n_gaps; g++)
				open += c.origins[i].gaps[g].hi - c.origins[i].gaps[g].lo + 1;
			fprintf(out, "taken from %s: up to its record %" PRIu64 ", %" PRIu64 " below that still awaited\n",
				c.origins[i].id, c.origins[i].seq, open);
		}
		struct kz_cluster_seen tails[KZ_CLUSTER_MAX_ORIGINS]; /* cluster_adopt.c */
		uint32_t n_tails = 0;
		if (kz_cluster_tails_look(&c, tails, &n_tails) == 0)
			for (uint32_t i = 0; i < n_tails; i++) {
				uint64_t have = kz_cluster_have_of(&c, tails[i].id);
				fprintf(out, "bridged by %s: up to its record %" PRIu64 ", %s\n", tails[i].id, tails[i].top,
					have >= tails[i].top ? "all taken here" : "not all taken here yet");
			}
		jsStreamInfo *ki = NULL; /* a KV bucket is the stream KV_<bucket> */
		if (js_GetStreamInfo(&ki, c.js, "KV_KZ_SESSIONS", NULL, &jerr) == NATS_OK) {
			fprintf(out, "sessions: bucket KZ_SESSIONS, %" PRIu64 " entries (sessions, tombstones, heartbeats), %" PRId64 " replicas, leader %s\n",
				ki->State.Msgs, ki->Config->Replicas,
				ki->Cluster && ki->Cluster->Leader ? ki->Cluster->Leader : "(none)");
			jsStreamInfo_Destroy(ki);
		} else {
			fprintf(out, "sessions: bucket KZ_SESSIONS not created yet\n");
		}
	}
	jsStreamInfo_Destroy(si);
	kz_cluster_close(&c);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
