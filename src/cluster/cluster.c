/* cluster.c — the replicator (cluster.h, docs/CLUSTER.md "The path of a QoS 1 publish").
 *
 * One thread tails the node's log up to its durable end and publishes, in log order, the
 * records whose origin is this node: subject kz.rec.<node>, Nats-Msg-Id = the record id,
 * Kz-Origin-Seq = a dense count of this node's records (1, 2, ...), Kz-Local-Seq = the record's
 * sequence in this node's log; what one scan finds goes out as batches of several records
 * (cluster_batch.c). Publishes are asynchronous, at most `window` records in flight, in a
 * ring indexed by origin sequence. PubAcks advance the confirmed watermark over the acked
 * prefix; the node's acknowledgements wait for it.
 *
 *   RESUME (connect; find where the stream's copy of our records ends: the last message on
 *           our subject, and our saved watermark; start after the lower of the two)
 *     --> STREAMING (scan, publish, acks advance the watermark)
 *     --a publish fails or times out, or the connection came back--> DRAIN (wait for what is
 *           in flight) --> RESUME: what JetStream lost, or never stored, is published again,
 *           in order; what it has is a duplicate it drops (Nats-Msg-Id) */
#include "cluster/cluster_internal.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "store/store.h"

#include <nats/nats.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool valid_node_id(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '_'))
			return false;
	return true;
}

/* ---------- cluster.state: the watermark and what was taken from each origin ----------
 * Written synced (kz_file_replace): an older watermark would only make us publish again,
 * but an older origin line would make the follower append records it has a second time. */

/* The longest cluster.state: the watermark, every origin with all its gaps, every span. */
#define STATE_TEXT_MAX (96 + MAX_ORIGINS * (100 + KZ_CLUSTER_MAX_GAPS * 120) + KZ_CLUSTER_MAX_SPANS * 90)

void kz_cluster_state_load(struct kz_cluster *c)
{
	static char text[STATE_TEXT_MAX]; /* start and status only */
	FILE *f = fopen(c->cfg.state_path, "r");
	size_t n = f ? fread(text, 1, sizeof text, f) : 0;
	if (f)
		fclose(f);
	struct kz_cluster_state st;
	int rc = n ? kz_cluster_state_parse(text, n, &st) : 0;
	if (rc) {
		kz_warn("cluster: %s line %d is not valid: starting from nothing (records are published and taken "
			"again; JetStream and the origin sequences drop the duplicates)", c->cfg.state_path, -rc);
		memset(&st, 0, sizeof st);
	} else if (!n) {
		memset(&st, 0, sizeof st);
	}
	for (uint32_t i = 0; i < st.n_origins; i++)
		c->origins[c->n_origins++] = st.origins[i];
	c->conf_local = st.confirmed_local;
	c->conf_origin = st.confirmed_origin;
	c->conf_sseq = st.confirmed_sseq;
	c->saved_local = st.confirmed_local;
	c->spans = st.spans;
}

void kz_cluster_state_save(struct kz_cluster *c, uint64_t local, uint64_t origin, uint64_t sseq)
{
	static char text[STATE_TEXT_MAX]; /* under save_lock */
	pthread_mutex_lock(&c->save_lock);
	int n = snprintf(text, sizeof text, "confirmed %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", local, origin, sseq);
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < c->n_origins; i++) {
		const struct origin *o = &c->origins[i];
		n += snprintf(text + n, sizeof text - (size_t)n, "origin %s %" PRIu64 "\n", o->id, o->seq);
		for (uint32_t g = 0; g < o->n_gaps; g++)
			n += snprintf(text + n, sizeof text - (size_t)n, "gap %s %" PRIu64 " %" PRIu64 "\n", o->id,
				      o->gaps[g].lo, o->gaps[g].hi);
	}
	for (uint32_t i = 0; i < c->spans.n; i++)
		n += snprintf(text + n, sizeof text - (size_t)n, "span %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
			      c->spans.v[i].wm_local, c->spans.v[i].wm_origin, c->spans.v[i].wm_sseq, c->spans.v[i].end);
	pthread_mutex_unlock(&c->lock);
	char dir[1100];
	snprintf(dir, sizeof dir, "%s", c->cfg.state_path);
	char *slash = strrchr(dir, '/');
	const char *name = slash ? slash + 1 : dir;
	if (slash)
		*slash = 0;
	if (kz_file_replace(slash ? dir : ".", name, text, (size_t)n, 0600))
		kz_warn("cluster: cannot write %s: %s", c->cfg.state_path, strerror(errno));
	pthread_mutex_unlock(&c->save_lock);
}

/* ---------- acknowledgements (nats.c's thread) ---------- */

uint64_t kz_cluster_parse_seq(const char *v)
{
	uint64_t x = 0;
	if (!v || !*v || strlen(v) > 20)
		return 0;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9' || x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return 0;
		x = x * 10 + (uint64_t)(*p - '0');
	}
	return x;
}

uint64_t kz_cluster_header_u64(natsMsg *m, const char *key)
{
	const char *v = NULL;
	if (natsMsgHeader_Get(m, key, &v) != NATS_OK)
		return 0;
	return kz_cluster_parse_seq(v);
}

/* Advances the confirmed watermark over the acked prefix (lock held). */
static void advance(struct kz_cluster *c)
{
	uint32_t w = c->cfg.window;
	bool moved = false;
	while (c->head_origin < c->next_origin) {
		struct slot *s = &c->ring[c->head_origin % w];
		if (!s->used || !s->acked)
			break;
		c->conf_local = s->local_seq;
		c->conf_origin = c->head_origin;
		c->conf_sseq = s->sseq;
		s->used = false;
		c->head_origin++;
		moved = true;
	}
	if (c->head_origin == c->next_origin && c->next_local > 0 && c->conf_local < c->next_local - 1 && !c->resync) {
		/* nothing in flight: every record of ours below the scan is in JetStream */
		c->conf_local = c->next_local - 1;
		moved = true;
	}
	if (moved) { /* conf_seen: also what the bridge confirmed (cluster_bridge.c) */
		uint64_t now = kz_now_mono_ms();
		atomic_store_explicit(&c->conf_seen, c->conf_local > c->b_local ? c->conf_local : c->b_local,
				      memory_order_release);
		atomic_store_explicit(&c->progress_ms, now, memory_order_release);
		atomic_store_explicit(&c->a_moved_ms, now, memory_order_release);
	}
	if (moved && c->cfg.confirmed)
		c->cfg.confirmed(c->cfg.arg, c->conf_local);
}

static void ack_cb(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	struct kz_cluster *c = closure;
	uint64_t first = kz_cluster_header_u64(msg, "Kz-Origin-Seq"), last = kz_cluster_last_origin(msg);
	uint64_t sseq = pa ? pa->Sequence : 0; /* a duplicate's: where the first copy is */
	pthread_mutex_lock(&c->lock);
	if (pae || !pa) {
		c->st.errors++;
		c->resync = true; /* published again in order from the watermark */
		pthread_cond_signal(&c->cond);
	} else {
		for (uint64_t o = first; o && o <= last; o++) /* every record of a batch */
			if (o >= c->head_origin && o < c->next_origin && c->ring[o % c->cfg.window].used) {
				c->ring[o % c->cfg.window].acked = true;
				c->ring[o % c->cfg.window].sseq = sseq;
				c->st.acked++;
			}
		advance(c);
	}
	pthread_mutex_unlock(&c->lock);
	natsMsg_Destroy(msg);
}

static void disconnected_cb(natsConnection *nc, void *closure)
{
	(void)nc;
	struct kz_cluster *c = closure;
	if (atomic_exchange(&c->connected, false))
		kz_warn("cluster: disconnected from NATS; reconnecting (nats.c tries each server of cluster.nats)");
}

/* The last callback nats.c makes for a connection (on its own thread, after disconnected):
 * only then may the struct the callbacks point to go. */
static void closed_cb(natsConnection *nc, void *closure)
{
	(void)nc;
	struct kz_cluster *c = closure;
	atomic_store(&c->closed, true);
}

void kz_cluster_sub_end(natsConnection *nc, natsSubscription *sub)
{
	if (!sub)
		return;
	if (!nc || natsSubscription_Unsubscribe(sub) != NATS_OK || natsConnection_FlushTimeout(nc, 1000) != NATS_OK)
		nats_Sleep(50); /* no flush: the reader's window is a few instructions */
	natsSubscription_Destroy(sub);
}

void kz_cluster_watch_end(natsConnection *nc, kvWatcher *w)
{
	if (!w)
		return;
	if (!nc || kvWatcher_Stop(w) != NATS_OK || natsConnection_FlushTimeout(nc, 1000) != NATS_OK)
		nats_Sleep(50);
	kvWatcher_Destroy(w);
}

/* Closes c->nc and waits (up to 5 s) for its last callback. */
static void close_nats(struct kz_cluster *c)
{
	if (!c->nc)
		return;
	natsConnection_Close(c->nc);
	for (int i = 0; i < 500 && !atomic_load(&c->closed); i++)
		nats_Sleep(10);
	jsCtx_Destroy(c->js);
	c->js = NULL;
	natsConnection_Destroy(c->nc);
	c->nc = NULL;
}

static void reconnected_cb(natsConnection *nc, void *closure)
{
	(void)nc;
	struct kz_cluster *c = closure;
	atomic_store(&c->connected, true);
	atomic_store(&c->reconnected, true);
	kz_cluster_kick(c);
}

/* ---------- connecting, the stream, where to resume ---------- */

static int connect_nats(struct kz_cluster *c, char *why, size_t why_len);
int kz_cluster_connect(struct kz_cluster *c, char *why, size_t why_len)
{
	return connect_nats(c, why, why_len);
}
void kz_cluster_close(struct kz_cluster *c)
{
	close_nats(c);
}

/* cluster.nats split into servers (at most 16), in a copy the caller frees; its count. */
static int split_servers(const char *csv, char **copy, const char *servers[16])
{
	int n = 0;
	char *sv = NULL;
	*copy = strdup(csv);
	for (char *tok = *copy ? strtok_r(*copy, ", ", &sv) : NULL; tok && n < 16; tok = strtok_r(NULL, ", ", &sv))
		servers[n++] = tok;
	return n;
}

/* Do two server URLs name the same server (whatever their scheme: nats.c reports tls:// as nats://)? */
static bool same_server(const char *a, const char *b)
{
	const char *x = strstr(a, "://"), *y = strstr(b, "://");
	return strcmp(x ? x : a, y ? y : b) == 0;
}

/* Options for servers (tried in this order) with the node's certificate. */
static natsStatus nats_options(struct kz_cluster *c, const char **servers, int n, int64_t timeout_ms, natsOptions **out)
{
	natsOptions *o = NULL;
	natsStatus s = n ? natsOptions_Create(&o) : NATS_INVALID_ARG;
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, servers, n);
	if (s == NATS_OK)
		s = natsOptions_SetNoRandomize(o, true);
	if (s == NATS_OK)
		s = natsOptions_SetSecure(o, true);
	if (s == NATS_OK)
		s = natsOptions_LoadCATrustedCertificates(o, c->cfg.ca_file);
	if (s == NATS_OK)
		s = natsOptions_LoadCertificatesChain(o, c->cfg.cert_file, c->cfg.key_file);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, timeout_ms);
	if (s != NATS_OK)
		natsOptions_Destroy(o);
	*out = s == NATS_OK ? o : NULL;
	return s;
}

/* Does JetStream answer through another server of cluster.nats than url (a connection of its
 * own, briefly)? Yes: ours is cut off from the others, moving helps. No: JetStream answers
 * nowhere (the stream is electing a leader after its server died, or every server is gone),
 * and moving would only cost the follower's and the session thread's NATS objects while the
 * election ends (bench/cluster.sh part 4 saw 2.5 s added that way). */
static bool elsewhere_answers(struct kz_cluster *c, const char *url)
{
	char *list;
	const char *all[16], *servers[16];
	int n = 0, na = split_servers(c->cfg.servers, &list, all);
	for (int i = 0; i < na; i++)
		if (!same_server(all[i], url))
			servers[n++] = all[i];
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	bool yes = false;
	if (nats_options(c, servers, n, 500, &o) == NATS_OK && natsOptions_SetAllowReconnect(o, false) == NATS_OK &&
	    natsConnection_Connect(&nc, o) == NATS_OK && natsConnection_JetStream(&js, nc, NULL) == NATS_OK) {
		jsOptions jo;
		jsOptions_Init(&jo);
		jo.Wait = 300;
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		natsStatus s = js_GetStreamInfo(&si, js, STREAM, &jo, &jerr);
		jsStreamInfo_Destroy(si);
		yes = s == NATS_OK || jerr != 0;
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	free(list);
	return yes;
}

static int connect_nats(struct kz_cluster *c, char *why, size_t why_len)
{
	natsOptions *o = NULL;
	char *list;
	const char *servers[16];
	int n = split_servers(c->cfg.servers, &list, servers);
	/* cluster.nats in its order (the first: this node's own server), except that a server
	 * moved away from (swap_server) is tried last */
	for (int i = 0, moved = 0; c->avoid[0] && i < n - moved; i++) {
		if (same_server(c->avoid, servers[i])) {
			const char *x = servers[i];
			memmove(&servers[i], &servers[i + 1], (size_t)(n - i - 1) * sizeof servers[0]);
			servers[n - 1] = x;
			moved++;
			i--;
		}
	}
	natsStatus s = nats_options(c, servers, n, 2000, &o);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	/* a server that stops answering (SIGSTOP, a frozen VM) keeps its TCP connection up: two
	 * unanswered PINGs a second apart and the client moves to another server */
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, 1000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, 2);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, disconnected_cb, c);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, reconnected_cb, c);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, closed_cb, c);
	atomic_store(&c->closed, false);
	if (s == NATS_OK)
		s = natsConnection_Connect(&c->nc, o);
	if (s != NATS_OK)
		snprintf(why, why_len, "cannot connect to %s: %s (%s)", c->cfg.servers, natsStatus_GetText(s),
			 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
	natsOptions_Destroy(o);
	free(list);
	if (s != NATS_OK)
		return -1;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = c->cfg.publish_timeout_ms;
	jo.PublishAsync.MaxPending = c->cfg.window * 2;
	jo.PublishAsync.AckHandler = ack_cb;
	jo.PublishAsync.AckHandlerClosure = c;
	if ((s = natsConnection_JetStream(&c->js, c->nc, &jo)) != NATS_OK) {
		snprintf(why, why_len, "JetStream: %s", natsStatus_GetText(s));
		return -1;
	}
	atomic_store(&c->connected, true);
	return 0;
}

natsStatus kz_cluster_add_stream(jsCtx *js, const char *name, const char *subjects, uint32_t replicas,
				 int64_t max_age_ns, bool direct, bool update, jsErrCode *jerr)
{
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	const char *subj[] = { subjects };
	sc.Name = name;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = replicas;
	sc.MaxAge = max_age_ns;
	sc.Duplicates = (int64_t)10 * 60 * 1000000000; /* 10 min, ns */
	sc.AllowDirect = direct;
	jsStreamInfo *si = NULL;
	*jerr = 0;
	natsStatus s = js_AddStream(&si, js, &sc, NULL, jerr);
	if (s != NATS_OK && *jerr == JSStreamNameExistErr) /* there: as configured now, or as it is */
		s = update ? js_UpdateStream(&si, js, &sc, NULL, jerr) : NATS_OK;
	jsStreamInfo_Destroy(si);
	return s;
}

natsStatus kz_cluster_publish_sync(struct kz_cluster *c, natsMsg *m, const char *stream, jsErrCode *jerr)
{
	jsPubAck *pa = NULL;
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = c->cfg.publish_timeout_ms;
	po.ExpectStream = stream;
	*jerr = 0;
	natsStatus s = js_PublishMsg(&pa, c->js, m, &po, jerr);
	jsPubAck_Destroy(pa);
	return s;
}

static int ensure_stream(struct kz_cluster *c, char *why, size_t why_len)
{
	jsErrCode jerr = 0;
	natsStatus s = kz_cluster_add_stream(c->js, STREAM, "kz.rec.>", c->cfg.replicas, 0, false, true, &jerr);
	if (s != NATS_OK) {
		snprintf(why, why_len, "stream %s: %s (JetStream error %d) %s", STREAM, natsStatus_GetText(s), (int)jerr,
			 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
		return -1;
	}
	return 0;
}

/* Where to start publishing: after the saved watermark, or after the last of our records
 * the stream holds when that is lower (JetStream lost its tail). Lock held by nobody. -1:
 * no answer (try again), -2: the stream does not exist. */
static int resume_point(struct kz_cluster *c, uint64_t *local, uint64_t *origin, char *why, size_t why_len)
{
	/* asked again and again while the stream has no leader (an election after its server
	 * died): a short wait, so that the first answer after the election is not missed by up
	 * to publish_timeout_ms (bench/cluster.sh part 4 saw 1.7 s added that way) */
	int64_t wait = c->cfg.publish_timeout_ms / 8 < 100 ? 100 : c->cfg.publish_timeout_ms / 8 > 250 ? 250 : c->cfg.publish_timeout_ms / 8;
	struct kz_cluster_last last;
	natsStatus s;
	jsErrCode jerr;
	int got = kz_cluster_last_of(c->js, c->subject, wait, &last, &s, &jerr);
	if (got == KZ_LAST_NO_STREAM) {
		snprintf(why, why_len, "stream %s not found", STREAM);
		return -2; /* gone (every server lost its files): made again first */
	}
	if (got == KZ_LAST_NO_ANSWER) {
		snprintf(why, why_len, "the stream's last message of ours: %s (JetStream error %d)", natsStatus_GetText(s),
			 (int)jerr);
		return -1; /* cannot tell now: try again */
	}
	uint64_t ll = last.local, lo = last.origin, ls = last.sseq;
	pthread_mutex_lock(&c->lock);
	const struct kz_cluster_span *sp = kz_cluster_span_of(&c->spans, lo);
	if (sp && sp->wm_origin < c->conf_origin) {
		/* the stream's last record of ours was published out of order: records before it may
		 * be missing (a cut inside the span); from its start, with what the stream holds of
		 * it read back below and not published again */
		kz_warn("cluster: our last record in JetStream, %" PRIu64 ", is in a span published out of order "
			"(%" PRIu64 "..%" PRIu64 "): publishing again what the stream lacks from %" PRIu64, lo,
			sp->wm_origin + 1, sp->end, sp->wm_origin + 1);
		c->conf_origin = sp->wm_origin;
		c->conf_local = sp->wm_local;
		c->conf_sseq = sp->wm_sseq;
	} else if (lo < c->conf_origin) {
		kz_warn("cluster: JetStream has our records up to %" PRIu64 " of %" PRIu64 " confirmed: publishing "
			"the rest again from the log", lo, c->conf_origin);
		c->conf_origin = lo;
		c->conf_local = ll;
		c->conf_sseq = ls;
	}
	*local = c->conf_local;
	*origin = c->conf_origin;
	uint64_t from = c->conf_sseq;
	/* records of ours above the watermark are in the stream: the ones between, published
	 * now, land after them */
	bool spanned = kz_cluster_span_add(&c->spans, c->conf_local, c->conf_origin, c->conf_sseq, lo);
	pthread_mutex_unlock(&c->lock);
	if (spanned) /* on disk before anything of the span is published */
		kz_cluster_state_save(c, *local, *origin, from);
	/* the stream has records of ours above the watermark, and nothing is remembered of how
	 * they were batched (a start): read that back, so that they are not stored twice */
	if (lo > *origin && !c->batch.count && (from || !*origin))
		kz_cluster_batch_learn(c, from ? from + 1 : 0, *origin, lo);
	return 0;
}

/* ---------- the scan ---------- */

struct scan {
	struct kz_cluster *c;
	uint64_t last; /* the last sequence looked at */
	bool full;     /* stopped before the end: the window is full or publishing failed */
	struct kz_reclog_pos pos; /* where the last record looked at is (has_pos): the next scan */
	bool has_pos;             /* starts there instead of walking its segment from the start */
};

/* A publish failed: what is in flight is given up and published again from the watermark. */
static void publish_failed(struct kz_cluster *c)
{
	pthread_mutex_lock(&c->lock);
	c->resync = true;
	c->st.errors++;
	pthread_mutex_unlock(&c->lock);
}

static int scan_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct scan *sc = ctx;
	sc->pos = *pos;
	sc->has_pos = true;
	struct kz_cluster *c = sc->c;
	struct kz_record r;
	const char *why;
	if (kz_record_decode(body, n, &r, &why) || r.origin_node.len != strlen(c->cfg.node_id) ||
	    memcmp(r.origin_node.p, c->cfg.node_id, r.origin_node.len) != 0) {
		sc->last = seq; /* not ours (or not a record): nothing to publish */
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	if (c->resync || c->next_origin - c->head_origin >= c->cfg.window) {
		sc->full = true;
		pthread_mutex_unlock(&c->lock);
		return 1;
	}
	uint64_t origin = c->next_origin++;
	struct slot *s = &c->ring[origin % c->cfg.window];
	*s = (struct slot){ .local_seq = seq, .sent_ms = kz_now_mono_ms(), .used = true };
	c->next_local = seq + 1;
	c->st.published++;
	uint64_t conf_o = c->conf_origin;
	pthread_mutex_unlock(&c->lock);
	sc->last = seq;
	uint64_t stored_sseq = 0;
	int rc = kz_cluster_batch_add(c, seq, body, n, r.id, origin, conf_o, &stored_sseq);
	if (rc == 1) { /* read back from the stream: confirmed as it is (advance() after the scan) */
		pthread_mutex_lock(&c->lock);
		s->acked = true;
		s->sseq = stored_sseq;
		c->st.acked++;
		pthread_mutex_unlock(&c->lock);
	} else if (rc) {
		publish_failed(c);
		sc->full = true;
		return 1;
	}
	return 0;
}

/* ---------- the thread ---------- */

static void drain_and_reset(struct kz_cluster *c)
{
	pthread_mutex_lock(&c->lock);
	bool published = c->st.published > 0;
	pthread_mutex_unlock(&c->lock);
	/* what never got an answer is published again from the watermark; nats.c 3.4.1 crashes
	 * in its asynchronous-publish calls on a context that never published (a NULL list) */
	if (published) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = c->cfg.publish_timeout_ms;
		(void)js_PublishAsyncComplete(c->js, &po);
	}
	kz_cluster_batch_drop(c);
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < c->cfg.window; i++)
		c->ring[i].used = false;
	c->resync = false;
	/* what was in flight above the watermark may be stored in part: published again from the
	 * watermark, the rest lands after it */
	bool spanned = c->next_origin &&
		       kz_cluster_span_add(&c->spans, c->conf_local, c->conf_origin, c->conf_sseq, c->next_origin - 1);
	uint64_t conf = c->conf_local, conf_o = c->conf_origin, conf_s = c->conf_sseq;
	pthread_mutex_unlock(&c->lock);
	if (spanned)
		kz_cluster_state_save(c, conf, conf_o, conf_s);
}

/* The server this node is connected to answers (its TCP connection and pings are fine) but
 * JetStream does not, through it: a server cut off from the others. nats.c would keep the
 * connection for ever, so the follower and the session thread drop their NATS objects (they
 * park while js_ready is false), what is in flight is given up (published again from the
 * watermark), and the replicator connects again with that server tried last. False when
 * JetStream answers through no other server either (asked at most once a second), or when the
 * other threads did not park within 5 s (tried again later). */
static bool swap_server(struct kz_cluster *c, uint64_t stuck_ms)
{
	char url[256] = "";
	if (natsConnection_GetConnectedUrl(c->nc, url, sizeof url) != NATS_OK || !url[0])
		return false;
	uint64_t now = kz_now_mono_ms();
	if (now - c->elsewhere_ms < 1000)
		return false;
	c->elsewhere_ms = now;
	if (!elsewhere_answers(c, url))
		return false; /* nowhere: stay, and ask again in a second */
	atomic_store(&c->js_ready, false);
	uint64_t deadline = kz_now_mono_ms() + 5000;
	while ((c->fstarted && !atomic_load(&c->f_parked)) || (c->kstarted && !atomic_load(&c->k_parked))) {
		if (kz_now_mono_ms() > deadline) {
			atomic_store(&c->js_ready, true);
			return false;
		}
		nats_Sleep(10);
	}
	kz_warn("cluster: JetStream has not answered through %s for %llu ms: connecting to another server", url,
		(unsigned long long)stuck_ms);
	pthread_rwlock_wrlock(&c->js_rw);
	drain_and_reset(c);
	close_nats(c);
	snprintf(c->avoid, sizeof c->avoid, "%s", url);
	pthread_rwlock_unlock(&c->js_rw);
	atomic_fetch_add(&c->swaps, 1);
	return true;
}

static void *replicator(void *arg)
{
	struct kz_cluster *c = arg;
	char why[512];
	bool ready = false, warned = false;
	uint64_t last_save = 0, last_probe = 0, stuck_since = 0, last_ping = 0;
	bool answers = true; /* the last probe's */
	char last_why[512] = "";
	bool stream_known = false; /* ensure_stream succeeded (and resume_point did not find it gone) */
	bool several = strchr(c->cfg.servers, ',') != NULL;
	struct kz_reclog_pos hint = { 0, 0 };
	bool has_hint = false;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		if (c->stop) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		pthread_mutex_unlock(&c->lock);
		if (!c->nc && connect_nats(c, why, sizeof why)) {
			if (!warned)
				kz_warn("cluster: %s; retrying", why);
			warned = true;
			natsConnection_Destroy(c->nc);
			c->nc = NULL;
			jsCtx_Destroy(c->js);
			c->js = NULL;
			nats_Sleep(500);
			continue;
		}
		bool resync;
		pthread_mutex_lock(&c->lock);
		resync = c->resync;
		pthread_mutex_unlock(&c->lock);
		if (atomic_exchange(&c->reconnected, false) || resync) {
			drain_and_reset(c);
			ready = false;
		}
		if (!ready) {
			uint64_t local, origin;
			int rp = -1;
			why[0] = 0;
			/* the stream is made (or updated to this configuration) once, and again only when
			 * it is gone: that request needs JetStream's metadata leader, which a dead server
			 * may have been too, and a resync after a failed publish does not need it */
			if (!stream_known && !ensure_stream(c, why, sizeof why))
				stream_known = true;
			if (stream_known && (rp = resume_point(c, &local, &origin, why, sizeof why)) == -2)
				stream_known = false;
			if (rp) {
				if (!warned || strcmp(why, last_why) != 0) /* once per reason */
					kz_warn("cluster: %s; retrying", why[0] ? why : "cannot read the stream");
				snprintf(last_why, sizeof last_why, "%s", why);
				warned = true;
				uint64_t now = kz_now_mono_ms();
				stuck_since = stuck_since ? stuck_since : now;
				if (several && atomic_load(&c->connected) && kz_cluster_stuck_long(c, now - stuck_since, &last_ping) &&
				    swap_server(c, now - stuck_since))
					stuck_since = 0;
				nats_Sleep(100);
				continue;
			}
			stuck_since = 0;
			pthread_mutex_lock(&c->lock);
			c->next_local = local + 1;
			c->next_origin = c->head_origin = origin + 1;
			pthread_mutex_unlock(&c->lock);
			if (warned)
				kz_info("cluster: replicating to JetStream (%s), from our record %" PRIu64, c->cfg.servers,
					origin + 1);
			warned = false;
			ready = true;
			atomic_store(&c->js_ready, true);
		}
		struct scan sc = { c, 0, false, { 0, 0 }, false };
		uint64_t from, end = 0;
		pthread_mutex_lock(&c->lock);
		from = c->next_local;
		pthread_mutex_unlock(&c->lock);
		/* from the frame the last scan looked at last (kz_reclog_scan checks it and that it is
		 * not past from): without it each pass walked and checked its segment from the start,
		 * 11 % of the cluster's CPU under bench/cluster.sh, more as the segment grew */
		if (from < kz_store_durable_next(c->cfg.store))
			(void)kz_store_scan(c->cfg.store, from, has_hint ? &hint : NULL, scan_cb, &sc, &end, why, sizeof why);
		if (kz_cluster_batch_flush(c)) { /* what the scan found, one message (or a few) */
			publish_failed(c);
			sc.full = true;
		}
		if (sc.has_pos) {
			hint = sc.pos;
			has_hint = true;
		}
		pthread_mutex_lock(&c->lock);
		if (!sc.full && sc.last >= c->next_local)
			c->next_local = sc.last + 1; /* records that are not ours */
		if (!sc.full && end > c->next_local)
			c->next_local = end;
		advance(c);
		uint64_t conf = c->conf_local, conf_o = c->conf_origin, conf_s = c->conf_sseq;
		bool save = conf != c->saved_local && kz_now_mono_ms() - last_save >= 200;
		if (save)
			c->saved_local = conf;
		if (!c->stop && !c->resync && !sc.full && !c->kicked) {
			struct timespec ts;
			kz_deadline_ms(&ts, 20);
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		} else if (sc.full && !c->resync) {
			struct timespec ts;
			kz_deadline_ms(&ts, 1);
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		}
		c->kicked = false;
		pthread_mutex_unlock(&c->lock);
		struct kz_cluster_stats st;
		kz_cluster_stats(c, &st);
		/* no progress with records waiting, or no answer to the probe: how long? */
		uint64_t now = kz_now_mono_ms();
		if (several && now - last_probe >= 1000) {
			last_probe = now;
			answers = kz_cluster_js_answers(c);
		}
		if ((st.quorum && answers) || !atomic_load(&c->connected) || !several) {
			stuck_since = 0;
		} else if (!stuck_since) {
			stuck_since = now;
		} else if (kz_cluster_stuck_long(c, now - stuck_since, &last_ping) && swap_server(c, now - stuck_since)) {
			stuck_since = 0;
			ready = false;
			continue;
		}
		if (st.quorum != atomic_exchange(&c->quorum, st.quorum)) {
			if (st.quorum)
				kz_info("cluster: JetStream answers: replicating");
			else
				kz_warn("cluster: JetStream does not answer within %u ms: no quorum", c->cfg.publish_timeout_ms);
		}
		if (save) {
			kz_cluster_state_save(c, conf, conf_o, conf_s);
			last_save = kz_now_mono_ms();
		}
	}
	pthread_mutex_lock(&c->lock);
	uint64_t conf = c->conf_local, conf_o = c->conf_origin, conf_s = c->conf_sseq;
	pthread_mutex_unlock(&c->lock);
	if (c->js)
		drain_and_reset(c);
	kz_cluster_state_save(c, conf, conf_o, conf_s);
	return NULL;
}

int kz_cluster_start(const struct kz_cluster_config *cfg, struct kz_cluster **out, char *why, size_t why_len)
{
	*out = NULL;
	if (!valid_node_id(cfg->node_id)) {
		snprintf(why, why_len, "node_id '%s' cannot name a NATS subject (letters, digits, '-' and '_', at most 64)",
			 cfg->node_id ? cfg->node_id : "");
		return KZ_EINVAL;
	}
	if (!cfg->servers || !*cfg->servers || !cfg->store || !cfg->state_path || cfg->window == 0) {
		snprintf(why, why_len, "cluster: incomplete configuration");
		return KZ_EINVAL;
	}
	struct kz_cluster *c = calloc(1, sizeof *c);
	if (!c || !(c->ring = calloc(cfg->window, sizeof *c->ring))) {
		free(c);
		snprintf(why, why_len, "out of memory");
		return KZ_ENOMEM;
	}
	c->cfg = *cfg;
	snprintf(c->state_path, sizeof c->state_path, "%s", cfg->state_path);
	c->cfg.state_path = c->state_path;
	snprintf(c->subject, sizeof c->subject, "kz.rec.%s", cfg->node_id);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	pthread_cond_init(&c->fcond, NULL);
	pthread_cond_init(&c->tcond, NULL);
	pthread_mutex_init(&c->save_lock, NULL);
	pthread_rwlock_init(&c->js_rw, NULL);
	kz_cluster_state_load(c);
	atomic_store(&c->conf_seen, c->conf_local);
	atomic_store(&c->progress_ms, kz_now_mono_ms());
	atomic_store(&c->a_moved_ms, kz_now_mono_ms());
	if (pthread_create(&c->thread, NULL, replicator, c)) {
		snprintf(why, why_len, "cannot start the cluster thread");
		free(c->ring);
		free(c);
		return KZ_EIO;
	}
	/* with the bridge off too: other nodes' bridged tails (cluster_adopt.c) */
	if (cfg->follow && pthread_create(&c->bthread, NULL, kz_cluster_bridge, c) == 0)
		c->bstarted = true;
	if (cfg->follow && pthread_create(&c->fthread, NULL, kz_cluster_follower, c) == 0)
		c->fstarted = true;
	if ((cfg->session || cfg->trust) && pthread_create(&c->kthread, NULL, kz_cluster_sessions_thread, c) == 0)
		c->kstarted = true;
	*out = c;
	return KZ_OK;
}

void kz_cluster_stop(struct kz_cluster *c)
{
	if (!c || c->stop)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_cond_broadcast(&c->fcond);
	pthread_cond_broadcast(&c->tcond);
	pthread_mutex_unlock(&c->lock);
	if (c->fstarted)
		pthread_join(c->fthread, NULL);
	if (c->kstarted)
		pthread_join(c->kthread, NULL);
	if (c->bstarted)
		pthread_join(c->bthread, NULL);
	pthread_join(c->thread, NULL);
	c->fstarted = c->kstarted = c->bstarted = false;
}

void kz_cluster_free(struct kz_cluster *c)
{
	if (!c)
		return;
	close_nats(c);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->fcond);
	pthread_cond_destroy(&c->tcond);
	pthread_mutex_destroy(&c->save_lock);
	pthread_rwlock_destroy(&c->js_rw);
	kz_cluster_puts_free(c);
	for (uint32_t i = 0; i < MAX_ORIGINS; i++)
		free(c->held[i].v);
	free(c->ring);
	kz_cluster_batch_free(c);
	free(c);
}

void kz_cluster_kick(struct kz_cluster *c)
{
	pthread_mutex_lock(&c->lock);
	c->kicked = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static bool quorum_now(struct kz_cluster *c, uint64_t now);

void kz_cluster_stats(struct kz_cluster *c, struct kz_cluster_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->st;
	out->confirmed_seq = c->conf_local;
	out->pending = c->next_origin - c->head_origin;
	out->connected = atomic_load(&c->connected);
	out->session_queue = c->queues[KV_SESSIONS].n;
	out->late = c->late_taken;
	out->held = c->held_total;
	out->released_late = c->released_late;
	out->gaps_dropped = c->gaps_dropped;
	out->gaps_open = 0;
	for (uint32_t i = 0; i < c->n_origins; i++)
		for (uint32_t g = 0; g < c->origins[i].n_gaps; g++)
			out->gaps_open += c->origins[i].gaps[g].hi - c->origins[i].gaps[g].lo + 1;
	out->trust_puts = atomic_load(&c->trust_puts);
	out->trust_updates = atomic_load(&c->trust_updates);
	out->session_puts = atomic_load(&c->kv_puts);
	out->session_updates = atomic_load(&c->kv_updates);
	out->session_errors = atomic_load(&c->kv_errors);
	out->order_expired = atomic_load(&c->order_expired);
	out->swaps = atomic_load(&c->swaps);
	out->consumers_remade = atomic_load(&c->consumers_remade);
	out->bridged = atomic_load(&c->bridged);
	out->bridge_episodes = atomic_load(&c->bridge_episodes);
	out->adoptions = atomic_load(&c->adoptions);
	out->adopted_msgs = atomic_load(&c->adopted_msgs);
	out->bridging = atomic_load(&c->bridging);
	pthread_mutex_unlock(&c->lock);
	out->quorum = quorum_now(c, kz_now_mono_ms());
}

uint64_t kz_cluster_caught_up_ns(struct kz_cluster *c)
{
	return atomic_load(&c->caught_up_ns);
}

/* Quorum is progress: JetStream has confirmed a record of this node, or the node had none
 * waiting for it, within publish_timeout_ms. A server that dies or stops with records in
 * flight, or every server gone while a record waits, stops the clock; a reconnection to
 * another server with nothing waiting does not (the record accepted meanwhile waits for
 * JetStream, as every acknowledgement does, and starts the clock). Lock-free: on the QoS 1/2
 * publish path. */
static bool quorum_now(struct kz_cluster *c, uint64_t now)
{
	uint64_t durable = kz_store_durable_next(c->cfg.store);
	uint64_t conf = atomic_load_explicit(&c->conf_seen, memory_order_acquire);
	uint64_t progress = atomic_load_explicit(&c->progress_ms, memory_order_acquire);
	if (durable <= conf + 1) { /* nothing of ours waits */
		if (now - progress >= 10)
			atomic_store_explicit(&c->progress_ms, now, memory_order_release);
		return true;
	}
	return now < progress + c->cfg.publish_timeout_ms;
}

bool kz_cluster_quorum(struct kz_cluster *c)
{
	return quorum_now(c, kz_now_mono_ms());
}
