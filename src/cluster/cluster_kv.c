/* cluster_kv.c — shared sessions on the KV bucket KZ_SESSIONS (docs/CLUSTER.md "Sessions and
 * retained messages"). One thread per node: it writes the queued values (the newest per key)
 * and watches the bucket, handing every value to the node in revision order. What the values
 * mean (owners, epochs, takeovers) is the node's business; this file only moves bytes.
 *
 *   WAIT (JetStream not ready) --> OPEN (create or bind the bucket, start a watcher)
 *     --> RUN (write the queue; read the watcher 100 ms at a time)
 *     --a write or the watcher fails--> OPEN again (the bucket may be gone: JetStream lost
 *        its metadata; the queue is kept and written to the new bucket) */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"

#include <stdlib.h>
#include <string.h>

#define BUCKET "KZ_SESSIONS"
#define MAX_QUEUED 65536

struct kv_put {
	char *key;
	uint8_t *value;
	size_t n;
};

void kz_cluster_session_put(struct kz_cluster *c, const char *key, const uint8_t *value, size_t n)
{
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
	for (size_t i = 0; i < c->n_puts; i++) {
		if (strcmp(c->puts[i].key, key) == 0) { /* only the newest value matters */
			free(c->puts[i].value);
			c->puts[i].value = v;
			c->puts[i].n = n;
			pthread_mutex_unlock(&c->lock);
			free(k);
			return;
		}
	}
	if (c->n_puts == c->cap_puts && c->cap_puts < MAX_QUEUED) {
		size_t cap = c->cap_puts ? c->cap_puts * 2 : 64;
		struct kv_put *np = realloc(c->puts, cap * sizeof *np);
		if (np) {
			c->puts = np;
			c->cap_puts = cap;
		}
	}
	if (c->n_puts == c->cap_puts) {
		pthread_mutex_unlock(&c->lock);
		free(v);
		free(k);
		atomic_fetch_add(&c->kv_errors, 1);
		kz_warn("cluster: %d session writes wait for JetStream: dropped one", MAX_QUEUED);
		return;
	}
	c->puts[c->n_puts++] = (struct kv_put){ k, v, n };
	pthread_mutex_unlock(&c->lock);
}

void kz_cluster_puts_free(struct kz_cluster *c)
{
	for (size_t i = 0; i < c->n_puts; i++) {
		free(c->puts[i].key);
		free(c->puts[i].value);
	}
	free(c->puts);
	c->puts = NULL;
	c->n_puts = c->cap_puts = 0;
}

bool kz_cluster_sessions_synced(struct kz_cluster *c)
{
	return atomic_load(&c->sessions_synced);
}

static kvStore *open_bucket(struct kz_cluster *c)
{
	kvConfig kc;
	kvConfig_Init(&kc);
	kc.Bucket = BUCKET;
	kc.Description = "kizuna persistent MQTT sessions (docs/CLUSTER.md)";
	kc.History = 1;
	kc.StorageType = js_FileStorage;
	kc.Replicas = (int)c->cfg.replicas;
	kvStore *kv = NULL;
	if (js_CreateKeyValue(&kv, c->js, &kc) == NATS_OK)
		return kv;
	if (js_KeyValue(&kv, c->js, BUCKET) == NATS_OK) /* there, with another configuration */
		return kv;
	return NULL;
}

/* Writes the queue; false when a write failed (what is left stays queued). */
static bool write_queue(struct kz_cluster *c, kvStore *kv)
{
	for (;;) {
		pthread_mutex_lock(&c->lock);
		if (c->n_puts == 0) {
			pthread_mutex_unlock(&c->lock);
			return true;
		}
		struct kv_put p = c->puts[0];
		c->puts[0] = c->puts[--c->n_puts];
		pthread_mutex_unlock(&c->lock);
		natsStatus s = kvStore_Put(NULL, kv, p.key, p.value, (int)p.n);
		if (s != NATS_OK) {
			atomic_fetch_add(&c->kv_errors, 1);
			/* back into the queue unless a newer value came meanwhile */
			kz_cluster_session_put(c, p.key, p.value, p.n);
			free(p.key);
			free(p.value);
			return false;
		}
		atomic_fetch_add(&c->kv_puts, 1);
		free(p.key);
		free(p.value);
	}
}

void *kz_cluster_sessions_thread(void *arg)
{
	struct kz_cluster *c = arg;
	kvStore *kv = NULL;
	kvWatcher *w = NULL;
	bool warned = false, announced = false;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		bool stop = c->stop;
		pthread_mutex_unlock(&c->lock);
		if (stop)
			break;
		if (!atomic_load(&c->js_ready)) {
			nats_Sleep(100);
			continue;
		}
		if (!kv && !(kv = open_bucket(c))) {
			if (!warned)
				kz_warn("cluster: cannot open the session bucket %s (%s); retrying", BUCKET,
					nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "no answer");
			warned = true;
			nats_Sleep(500);
			continue;
		}
		if (!w && kvStore_WatchAll(&w, kv, NULL) != NATS_OK) {
			w = NULL;
			kvStore_Destroy(kv);
			kv = NULL;
			nats_Sleep(500);
			continue;
		}
		if (warned || !announced)
			kz_info("cluster: sharing sessions in %s", BUCKET);
		warned = false;
		announced = true;
		bool ok = write_queue(c, kv);
		kvEntry *e = NULL;
		natsStatus s = ok ? kvWatcher_Next(&e, w, 100) : NATS_ERR;
		if (s == NATS_OK && !e) {
			atomic_store(&c->sessions_synced, true); /* the end of the bucket's current values */
		} else if (s == NATS_OK) {
			if (kvEntry_Operation(e) == kvOp_Put && c->cfg.session) {
				atomic_fetch_add(&c->kv_updates, 1);
				c->cfg.session(c->cfg.session_arg, kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
			}
			kvEntry_Destroy(e);
		} else if (s != NATS_TIMEOUT) {
			kvWatcher_Destroy(w);
			w = NULL;
			kvStore_Destroy(kv);
			kv = NULL;
			nats_Sleep(250);
		}
	}
	kvWatcher_Destroy(w);
	kvStore_Destroy(kv);
	return NULL;
}
