/* cluster_audit.c — every node's audit entries in the stream KZ_AUDIT (subject kz.audit.<node>,
 * R as KZ_RECORDS, no age limit), so that losing a node's disk loses no audit history; and the
 * way back: a node's chain fetched from the cluster for `kizuna audit verify --cluster`
 * (docs/CLUSTER.md "Trust across the cluster", docs/AUDIT.md). */
#include "cluster/cluster_internal.h"
#include "base/kz_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUDIT_STREAM "KZ_AUDIT"

static int ensure_audit_stream(jsCtx *js, uint32_t replicas)
{
	jsErrCode jerr;
	return kz_cluster_add_stream(js, AUDIT_STREAM, "kz.audit.>", replicas, 0, false, false, &jerr) == NATS_OK ? 0 : -1;
}

static int audit_publish(struct kz_cluster *c, uint64_t n, const char *line, size_t len)
{
	if (!atomic_load(&c->js_ready))
		return -1;
	if (!atomic_load(&c->audit_stream) && ensure_audit_stream(c->js, c->cfg.replicas))
		return -1;
	atomic_store(&c->audit_stream, true);
	char subject[96], id[96], seq[24];
	snprintf(subject, sizeof subject, "kz.audit.%s", c->cfg.node_id);
	snprintf(id, sizeof id, "%s:%" PRIu64, c->cfg.node_id, n);
	snprintf(seq, sizeof seq, "%" PRIu64, n);
	natsMsg *m = NULL;
	natsStatus s = natsMsg_Create(&m, subject, NULL, line, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Kz-Audit-N", seq);
	jsErrCode jerr = 0;
	if (s == NATS_OK)
		s = kz_cluster_publish_sync(c, m, AUDIT_STREAM, &jerr);
	natsMsg_Destroy(m);
	if (s != NATS_OK && jerr == JSStreamNotFoundErr)
		atomic_store(&c->audit_stream, false); /* JetStream forgot it: made again next time */
	return s == NATS_OK ? 0 : -1;
}

int kz_cluster_audit_publish(struct kz_cluster *c, uint64_t n, const char *line, size_t len)
{
	pthread_rwlock_rdlock(&c->js_rw); /* not while the connection is replaced (swap_server) */
	int rc = audit_publish(c, n, line, len);
	pthread_rwlock_unlock(&c->js_rw);
	return rc;
}

int kz_cluster_audit_fetch(const struct kz_cluster_config *cfg, const char *node,
			   int (*entry)(void *ctx, const char *line, size_t len),
			   int (*trust)(void *ctx, const char *key, const uint8_t *v, size_t n), void *ctx, char *why,
			   size_t why_len)
{
	struct kz_cluster *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	c->cfg = *cfg;
	pthread_mutex_init(&c->lock, NULL);
	int rc = kz_cluster_connect(c, why, why_len);
	char subject[96];
	snprintf(subject, sizeof subject, "kz.audit.%s", node);
	natsSubscription *sub = NULL;
	if (!rc) {
		jsSubOptions so;
		jsSubOptions_Init(&so);
		so.Stream = AUDIT_STREAM;
		so.Config.DeliverPolicy = js_DeliverAll;
		so.Config.AckPolicy = js_AckNone;
		jsErrCode jerr = 0;
		if (js_PullSubscribe(&sub, c->js, subject, NULL, NULL, &so, &jerr) != NATS_OK) {
			snprintf(why, why_len, "stream %s, subject %s: %s", AUDIT_STREAM, subject,
				 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "not found");
			rc = -1;
		}
	}
	while (!rc) {
		natsMsgList list = { 0 };
		jsFetchRequest fr;
		jsFetchRequest_Init(&fr);
		fr.Batch = 1024;
		fr.NoWait = true;
		fr.Expires = (int64_t)2000 * 1000000;
		natsStatus s = natsSubscription_FetchRequest(&list, sub, &fr);
		if (s != NATS_OK || list.Count == 0) {
			natsMsgList_Destroy(&list);
			break; /* everything there is */
		}
		for (int i = 0; i < list.Count && !rc; i++)
			rc = entry(ctx, natsMsg_GetData(list.Msgs[i]), (size_t)natsMsg_GetDataLength(list.Msgs[i]));
		natsMsgList_Destroy(&list);
	}
	kz_cluster_sub_end(c->nc, sub);
	kvStore *kv = NULL;
	if (!rc && js_KeyValue(&kv, c->js, "KZ_TRUST") == NATS_OK) {
		static const char *const keys[] = { "pub", "mldsa.pub", "head" };
		for (int i = 0; i < 3 && !rc; i++) {
			char key[128];
			snprintf(key, sizeof key, "audit.%s.%s", node, keys[i]);
			kvEntry *e = NULL;
			if (kvStore_Get(&e, kv, key) == NATS_OK) {
				rc = trust(ctx, keys[i], kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
				kvEntry_Destroy(e);
			}
		}
	}
	kvStore_Destroy(kv);
	kz_cluster_close(c);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return rc;
}
