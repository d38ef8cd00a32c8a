/* cluster_probe.c — does JetStream answer through our server, and does the server itself:
 * what the replicator asks before it moves to another server of cluster.nats (swap_server in
 * cluster.c; docs/CLUSTER.md "Faults and what each does"). */
#include "cluster/cluster_internal.h"
#include "base/kz_time.h"

/* Does JetStream answer through our server? (A stream-info request, once a second; any
 * answer, even an error, from JetStream counts.) */
bool kz_cluster_js_answers(struct kz_cluster *c)
{
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = c->cfg.publish_timeout_ms;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, c->js, STREAM, &jo, &jerr);
	jsStreamInfo_Destroy(si);
	return s == NATS_OK || jerr != 0;
}

/* Is our server itself silent (stopped, or its host gone without closing the connection)? A
 * NATS ping it does not answer within a quarter of cluster.publish_timeout_ms (250 ms at
 * least); asked at most once a second (*last_ms). JetStream without a quorum still has its
 * servers answer pings: then the replicator waits the full 3 x cluster.publish_timeout_ms
 * before it looks elsewhere; a silent server is left after half a timeout. */
static bool server_silent(struct kz_cluster *c, uint64_t *last_ms)
{
	uint64_t now = kz_now_mono_ms();
	if (now - *last_ms < 1000)
		return false;
	*last_ms = now;
	uint32_t w = c->cfg.publish_timeout_ms / 4;
	return natsConnection_FlushTimeout(c->nc, w < 250 ? 250 : w) == NATS_TIMEOUT;
}

/* Long enough without JetStream through our server to try another (swap_server): 3 x
 * cluster.publish_timeout_ms, or half of one when our server does not answer a ping. */
bool kz_cluster_stuck_long(struct kz_cluster *c, uint64_t stuck_ms, uint64_t *ping_ms)
{
	return stuck_ms >= 3ull * c->cfg.publish_timeout_ms ||
	       (stuck_ms >= c->cfg.publish_timeout_ms / 2 && server_silent(c, ping_ms));
}
