/* cluster_kv.c — the KV buckets KZ_SESSIONS (shared sessions, docs/CLUSTER.md "Sessions and
 * retained messages") and KZ_TRUST (the signed revocation list and policy, "Trust across the
 * cluster"). One thread per node: it writes the queued values (the newest per key) and
 * watches both buckets, handing every value to the node in revision order. What the values
 * mean (owners, epochs, signatures) is the node's business; this file only moves bytes.
 *
 *   WAIT (JetStream not ready) --> OPEN (create or bind the bucket, start a watcher)
 *     --> RUN (write the queue; read the watcher 100 ms at a time)
 *     --a write or the watcher fails--> OPEN again (the bucket may be gone: JetStream lost
 *        its metadata; the queue is kept and written to the new bucket) */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"
#include "base/kz_time.h"

#include <stdlib.h>
#include <string.h>

#define MAX_QUEUED 65536

static const char *const BUCKETS[2] = { "KZ_SESSIONS", "KZ_TRUST" };
static const int HISTORY[2] = { 1, 5 };

struct kv_put {
	char *key;
	uint8_t *value;
	size_t n;
};

static void queue_put(struct kz_cluster *c, int b, const char *key, const uint8_t *value, size_t n)
{
	struct kv_queue *q = &c->queues[b];
	uint8_t *v = malloc(n ? n : 1);
	char *k = strdup(key);
	if (!v || !k) {
		free(v);
		free(k);
		atomic_fetch_add(&c->kv_errors, 1);
		return;
	}
	memcpy(v, value, n);
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < q->n; i++) {
		if (strcmp(q->v[i].key, key) == 0) { /* only the newest value matters */
			free(q->v[i].value);
			q->v[i].value = v;
			q->v[i].n = n;
			pthread_mutex_unlock(&c->lock);
			free(k);
			return;
		}
	}
	if (q->n == q->cap && q->cap < MAX_QUEUED) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct kv_put *np = realloc(q->v, cap * sizeof *np);
		if (np) {
			q->v = np;
			q->cap = cap;
		}
	}
	if (q->n == q->cap) {
		pthread_mutex_unlock(&c->lock);
		free(v);
		free(k);
		atomic_fetch_add(&c->kv_errors, 1);
		kz_warn("cluster: %d writes to %s wait for JetStream: dropped one", MAX_QUEUED, BUCKETS[b]);
		return;
	}
	q->v[q->n++] = (struct kv_put){ k, v, n };
	pthread_mutex_unlock(&c->lock);
}

void kz_cluster_session_put(struct kz_cluster *c, const char *key, const uint8_t *value, size_t n)
{
	queue_put(c, KV_SESSIONS, key, value, n);
}

void kz_cluster_trust_put(struct kz_cluster *c, const char *key, const uint8_t *value, size_t n)
{
	queue_put(c, KV_TRUST, key, value, n);
}

void kz_cluster_puts_free(struct kz_cluster *c)
{
	for (int b = 0; b < 2; b++) {
		struct kv_queue *q = &c->queues[b];
		for (size_t i = 0; i < q->n; i++) {
			free(q->v[i].key);
			free(q->v[i].value);
		}
		free(q->v);
		memset(q, 0, sizeof *q);
	}
}

bool kz_cluster_sessions_synced(struct kz_cluster *c)
{
	return atomic_load(&c->sessions_synced);
}

static kvStore *open_bucket(struct kz_cluster *c, int b)
{
	kvConfig kc;
	kvConfig_Init(&kc);
	kc.Bucket = BUCKETS[b];
	kc.Description = b == KV_SESSIONS ? "kizuna MQTT sessions (docs/CLUSTER.md)" :
					    "kizuna revocation list and signed policy (docs/CLUSTER.md)";
	kc.History = (uint8_t)HISTORY[b];
	kc.StorageType = js_FileStorage;
	kc.Replicas = (int)c->cfg.replicas;
	kvStore *kv = NULL;
	if (js_CreateKeyValue(&kv, c->js, &kc) == NATS_OK)
		return kv;
	if (js_KeyValue(&kv, c->js, BUCKETS[b]) == NATS_OK) /* there, with another configuration */
		return kv;
	return NULL;
}

/* Writes bucket b's queue; false when a write failed (what is left stays queued). */
static bool write_queue(struct kz_cluster *c, int b, kvStore *kv)
{
	struct kv_queue *q = &c->queues[b];
	for (;;) {
		pthread_mutex_lock(&c->lock);
		if (q->n == 0) {
			pthread_mutex_unlock(&c->lock);
			return true;
		}
		struct kv_put p = q->v[0];
		q->v[0] = q->v[--q->n];
		pthread_mutex_unlock(&c->lock);
		natsStatus s = kvStore_Put(NULL, kv, p.key, p.value, (int)p.n);
		if (s != NATS_OK) {
			atomic_fetch_add(&c->kv_errors, 1);
			/* back into the queue unless a newer value came meanwhile */
			pthread_mutex_lock(&c->lock);
			bool newer = false;
			for (size_t i = 0; i < q->n && !newer; i++)
				newer = strcmp(q->v[i].key, p.key) == 0;
			pthread_mutex_unlock(&c->lock);
			if (!newer)
				queue_put(c, b, p.key, p.value, p.n);
			free(p.key);
			free(p.value);
			return false;
		}
		atomic_fetch_add(b == KV_SESSIONS ? &c->kv_puts : &c->trust_puts, 1);
		free(p.key);
		free(p.value);
	}
}

int kz_cluster_session_update(struct kz_cluster *c, const char *key, const uint8_t *value, size_t n, uint64_t rev,
			      uint64_t *new_rev)
{
	if (!c->skv)
		return -1;
	natsStatus s = rev ? kvStore_Update(new_rev, c->skv, key, value, (int)n, rev) :
			     kvStore_Create(new_rev, c->skv, key, value, (int)n);
	if (s != NATS_OK)
		return -1;
	atomic_fetch_add(&c->kv_puts, 1);
	return 0;
}

/* A purge marker as the KV protocol writes one (KV-Operation PURGE, a subject rollup), sent
 * only if the key's last revision is still rev (Nats-Expected-Last-Subject-Sequence): a
 * session written again meanwhile is not lost. nats.c 3.4's kvStore_Purge has no revision. */
int kz_cluster_session_purge(struct kz_cluster *c, const char *key, uint64_t rev)
{
	if (!c->skv || !rev)
		return -1;
	char subj[300];
	if ((size_t)snprintf(subj, sizeof subj, "$KV.KZ_SESSIONS.%s", key) >= sizeof subj)
		return -1;
	natsMsg *m = NULL;
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.ExpectLastSubjectSeq = rev;
	jsPubAck *pa = NULL;
	natsStatus s = natsMsg_Create(&m, subj, NULL, NULL, 0);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "KV-Operation", "PURGE");
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Rollup", "sub");
	if (s == NATS_OK)
		s = js_PublishMsg(&pa, c->js, m, &po, NULL);
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	return s == NATS_OK ? 0 : -1;
}

/* Purge markers in KZ_SESSIONS older than older_ms (0: all), each purged from the stream (its
 * key's subject up to and including the marker's sequence: a key written again since keeps
 * its new value, which kvStore_PurgeDeletes, purging the whole subject, would lose). Also,
 * nats.c 3.4.1's kvStore_PurgeDeletes reads the bucket with no time limit (for ever when the
 * bucket's consumer stalls: this thread's heartbeats would stop) and destroys its watcher
 * without a flush (kz_cluster_watch_end). Here: at most 5 s of reading, 100,000 markers. */
void kz_cluster_session_purge_markers(struct kz_cluster *c, uint32_t older_ms)
{
	if (!c->skv)
		return;
	kvWatchOptions wo;
	kvWatchOptions_Init(&wo);
	wo.MetaOnly = true;
	kvWatcher *w = NULL;
	if (kvStore_WatchAll(&w, c->skv, &wo) != NATS_OK)
		return;
	int64_t limit = nats_NowInNanoSeconds() - (int64_t)older_ms * 1000000;
	struct marker {
		char key[80];
		uint64_t seq;
	} *keys = NULL;
	size_t n = 0, cap = 0;
	uint64_t deadline = kz_now_mono_ms() + 5000;
	kvEntry *e = NULL;
	natsStatus s;
	while ((s = kvWatcher_Next(&e, w, 2000)) == NATS_OK && e) { /* NULL: the end of the current values */
		kvOperation op = kvEntry_Operation(e);
		const char *k = kvEntry_Key(e);
		if ((op == kvOp_Delete || op == kvOp_Purge) && (!older_ms || kvEntry_Created(e) < limit) &&
		    strlen(k) < sizeof keys->key && n < 100000) {
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct marker *nk = realloc(keys, nc * sizeof *keys);
				if (!nk) {
					kvEntry_Destroy(e);
					s = NATS_NO_MEMORY;
					break;
				}
				keys = nk;
				cap = nc;
			}
			snprintf(keys[n].key, sizeof keys[n].key, "%s", k);
			keys[n++].seq = kvEntry_Revision(e);
		}
		kvEntry_Destroy(e);
		if (kz_now_mono_ms() > deadline) {
			s = NATS_TIMEOUT;
			break;
		}
	}
	kz_cluster_watch_end(c->nc, w);
	jsOptions po;
	char subj[128];
	for (size_t i = 0; s == NATS_OK && i < n; i++) {
		jsOptions_Init(&po);
		snprintf(subj, sizeof subj, "$KV.%s.%s", BUCKETS[KV_SESSIONS], keys[i].key);
		po.Stream.Purge.Subject = subj;
		po.Stream.Purge.Sequence = keys[i].seq + 1; /* up to, not including */
		s = js_PurgeStream(c->js, "KV_KZ_SESSIONS", &po, NULL);
	}
	free(keys);
}

static void deliver(struct kz_cluster *c, int b, kvEntry *e)
{
	if (b == KV_SESSIONS && c->cfg.session) {
		atomic_fetch_add(&c->kv_updates, 1);
		bool put = kvEntry_Operation(e) == kvOp_Put;
		c->cfg.session(c->cfg.session_arg, kvEntry_Key(e), kvEntry_Revision(e), put ? kvEntry_Value(e) : NULL,
			       put ? (size_t)kvEntry_ValueLen(e) : 0);
		return;
	}
	if (kvEntry_Operation(e) != kvOp_Put)
		return;
	if (b == KV_TRUST && c->cfg.trust) {
		atomic_fetch_add(&c->trust_updates, 1);
		c->cfg.trust(c->cfg.trust_arg, kvEntry_Key(e), kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
	}
}

void *kz_cluster_sessions_thread(void *arg)
{
	struct kz_cluster *c = arg;
	kvStore *kv[2] = { NULL, NULL };
	kvWatcher *w[2] = { NULL, NULL };
	bool warned[2] = { false, false }, announced[2] = { false, false };
	int want = c->cfg.trust ? 2 : 1;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		bool stop = c->stop;
		pthread_mutex_unlock(&c->lock);
		if (stop)
			break;
		atomic_store(&c->k_parked, false); /* before js_ready is read: swap_server */
		if (!atomic_load(&c->js_ready)) {
			c->skv = NULL;
			for (int b = 0; b < 2; b++) { /* of the connection being replaced */
				kz_cluster_watch_end(c->nc, w[b]);
				w[b] = NULL;
				kvStore_Destroy(kv[b]);
				kv[b] = NULL;
			}
			atomic_store(&c->k_parked, true);
			nats_Sleep(20);
			continue;
		}
		for (int b = 0; b < want; b++) {
			if (!kv[b] && !(kv[b] = open_bucket(c, b))) {
				if (!warned[b])
					kz_warn("cluster: cannot open the bucket %s (%s); retrying", BUCKETS[b],
						nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "no answer");
				warned[b] = true;
				nats_Sleep(250);
				continue;
			}
			if (!w[b] && kvStore_WatchAll(&w[b], kv[b], NULL) != NATS_OK) {
				w[b] = NULL;
				if (b == KV_SESSIONS)
					c->skv = NULL;
				kvStore_Destroy(kv[b]);
				kv[b] = NULL;
				nats_Sleep(250);
				continue;
			}
			if (warned[b] || !announced[b])
				kz_info("cluster: %s in %s", b == KV_SESSIONS ? "sharing sessions" : "sharing trust documents",
					BUCKETS[b]);
			warned[b] = false;
			announced[b] = true;
			if (b == KV_SESSIONS) {
				c->skv = kv[b];
				if (c->cfg.session_tick && atomic_load(&c->sessions_synced))
					c->cfg.session_tick(c->cfg.session_arg);
			}
			bool ok = write_queue(c, b, kv[b]);
			kvEntry *e = NULL;
			natsStatus s = ok ? kvWatcher_Next(&e, w[b], want == 2 ? 50 : 100) : NATS_ERR;
			if (s == NATS_OK && !e) {
				if (b == KV_SESSIONS)
					atomic_store(&c->sessions_synced, true); /* the end of the current values */
			} else if (s == NATS_OK) {
				deliver(c, b, e);
				kvEntry_Destroy(e);
			} else if (s != NATS_TIMEOUT) {
				kz_cluster_watch_end(c->nc, w[b]);
				w[b] = NULL;
				if (b == KV_SESSIONS)
					c->skv = NULL;
				kvStore_Destroy(kv[b]);
				kv[b] = NULL;
				nats_Sleep(250);
			}
		}
	}
	/* What the node wrote last (its sessions as its clients left at the stop, their wills
	 * gone) goes out before the thread ends, so that another node does not take them as
	 * they were before. */
	for (int b = 0; b < 2; b++)
		if (kv[b] && atomic_load(&c->js_ready))
			(void)write_queue(c, b, kv[b]);
	c->skv = NULL;
	for (int b = 0; b < 2; b++) {
		kz_cluster_watch_end(c->nc, w[b]);
		kvStore_Destroy(kv[b]);
	}
	return NULL;
}
