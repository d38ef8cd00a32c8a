/* node_audit_share.c — this node's audit log, copied to the cluster's stream KZ_AUDIT as it
 * grows (docs/CLUSTER.md "Trust across the cluster"), so that a lost disk loses no audit
 * history: `kizuna audit verify --cluster NODE` rebuilds the chain from the stream and checks
 * it as a local one.
 *
 * One thread, once a second: the complete lines appended to DIR/audit/audit.log since the
 * last pass (or, after a rotation, the rest of the file that was audit.log, now
 * audit-<n>.log) are published in order, each under its entry number; a publish that fails
 * stops the pass, and the next one starts from that line. Where it is (the file's inode, the
 * offset, the last entry number) is kept in DIR/cluster.audit, so that a restart goes on
 * there; what is published twice (a crash between a publish and that file) is dropped by
 * JetStream (Nats-Msg-Id) or by the rebuild (entry numbers). The public keys and the signed
 * head go to KZ_TRUST (audit.<node>.pub, .mldsa.pub, .head), the head only once the entries
 * it names are in the stream. */
#include "node/node_audit_share.h"

#include "base/kz_file.h"
#include "base/kz_log.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct node_audit_share {
	struct kz_cluster *c;
	char dir[900], state[1100], node[65];
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, started;
	uint64_t ino, off, last_n; /* where the copy is */
	char head_put[16384];      /* the head last put */
	bool keys_put;
};

static void state_load(struct node_audit_share *a)
{
	FILE *f = fopen(a->state, "r");
	unsigned long long ino, off, n;
	if (f && fscanf(f, "%llu %llu %llu", &ino, &off, &n) == 3) {
		a->ino = ino;
		a->off = off;
		a->last_n = n;
	}
	if (f)
		fclose(f);
}

static void state_save(struct node_audit_share *a)
{
	char line[96], dir[1100];
	int k = snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", a->ino, a->off, a->last_n);
	snprintf(dir, sizeof dir, "%s", a->state);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	(void)kz_file_replace(slash ? dir : ".", slash ? slash + 1 : a->state, line, (size_t)k, 0644);
}

/* The entry number at the start of a line ({"n":123,...}); 0 when it has none. */
static uint64_t entry_n(const char *p, size_t n)
{
	if (n < 6 || memcmp(p, "{\"n\":", 5) != 0)
		return 0;
	uint64_t v = 0;
	for (size_t i = 5; i < n && p[i] >= '0' && p[i] <= '9'; i++)
		v = v * 10 + (uint64_t)(p[i] - '0');
	return v;
}

/* Publishes the complete lines of path from *off; false when a publish failed. */
static bool copy_from(struct node_audit_share *a, const char *path, uint64_t *off)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return true;
	bool ok = true;
	if (fseeko(f, (off_t)*off, SEEK_SET) == 0) {
		char *line = NULL;
		size_t cap = 0;
		ssize_t len;
		while ((len = getline(&line, &cap, f)) > 0) {
			if (line[len - 1] != '\n')
				break; /* not complete yet: next time */
			uint64_t n = entry_n(line, (size_t)len);
			if (n > a->last_n) {
				if (kz_cluster_audit_publish(a->c, n, line, (size_t)len - 1)) {
					ok = false;
					break;
				}
				a->last_n = n;
			}
			*off += (uint64_t)len;
		}
		free(line);
	}
	fclose(f);
	return ok;
}

/* The rotated file (audit-<n>.log) with inode ino, into path; false when there is none. */
static bool rotated_path(const struct node_audit_share *a, uint64_t ino, char *path, size_t cap)
{
	DIR *d = opendir(a->dir);
	bool found = false;
	for (struct dirent *e = d ? readdir(d) : NULL; e && !found; e = readdir(d)) {
		if (strncmp(e->d_name, "audit-", 6) != 0)
			continue;
		struct stat st;
		snprintf(path, cap, "%s/%s", a->dir, e->d_name);
		found = stat(path, &st) == 0 && (uint64_t)st.st_ino == ino;
	}
	if (d)
		closedir(d);
	return found;
}

static void put_file(struct node_audit_share *a, const char *name, const char *key)
{
	char path[1200], k[160];
	static char buf[16384]; /* this thread only */
	snprintf(path, sizeof path, "%s/%s", a->dir, name);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
	if (f)
		fclose(f);
	snprintf(k, sizeof k, "audit.%s.%s", a->node, key);
	if (n)
		kz_cluster_trust_put(a->c, k, (const uint8_t *)buf, n);
}

static void pass(struct node_audit_share *a)
{
	char path[1200];
	struct stat st;
	snprintf(path, sizeof path, "%s/audit.log", a->dir);
	if (stat(path, &st))
		return;
	uint64_t before = a->last_n, off0 = a->off, ino0 = a->ino;
	/* the head before the entries: once they are published, the head they reach is safe to put */
	static char head[16384]; /* this thread only */
	char hp[1200];
	head[0] = 0;
	snprintf(hp, sizeof hp, "%s/head", a->dir);
	FILE *hf = fopen(hp, "r");
	if (hf) {
		size_t k = fread(head, 1, sizeof head - 1, hf);
		head[k] = 0;
		fclose(hf);
	}
	bool ok = true;
	if (a->ino && a->ino != (uint64_t)st.st_ino) { /* audit.log was rotated: finish the old one */
		char old[1200];
		if (rotated_path(a, a->ino, old, sizeof old))
			ok = copy_from(a, old, &a->off);
		if (ok) {
			a->ino = (uint64_t)st.st_ino;
			a->off = 0;
		}
	} else if (!a->ino) { /* the first pass ever: every rotated file, oldest first */
		struct dirent **names = NULL;
		int k = scandir(a->dir, &names, NULL, alphasort);
		for (int i = 0; i < k; i++) {
			if (ok && strncmp(names[i]->d_name, "audit-", 6) == 0 && strstr(names[i]->d_name, ".log")) {
				char p[1400];
				uint64_t o = 0;
				snprintf(p, sizeof p, "%s/%s", a->dir, names[i]->d_name);
				ok = copy_from(a, p, &o);
			}
			free(names[i]);
		}
		free(names);
		if (ok) {
			a->ino = (uint64_t)st.st_ino;
			a->off = 0;
		}
	}
	if (ok && a->ino == (uint64_t)st.st_ino)
		ok = copy_from(a, path, &a->off);
	if (a->last_n != before || a->off != off0 || a->ino != ino0)
		state_save(a);
	if (!a->keys_put && a->last_n) {
		put_file(a, "audit.pub", "pub");
		put_file(a, "audit.mldsa.pub", "mldsa.pub");
		a->keys_put = true;
	}
	unsigned long long hn = 0;
	if (head[0] && sscanf(head, "%llu", &hn) == 1 && hn <= a->last_n && strcmp(head, a->head_put) != 0) {
		char k[160];
		snprintf(k, sizeof k, "audit.%s.head", a->node);
		kz_cluster_trust_put(a->c, k, (const uint8_t *)head, strlen(head));
		snprintf(a->head_put, sizeof a->head_put, "%s", head);
	}
}

static void *run(void *arg)
{
	struct node_audit_share *a = arg;
	pthread_mutex_lock(&a->lock);
	while (!a->stop) {
		pthread_mutex_unlock(&a->lock);
		pass(a);
		pthread_mutex_lock(&a->lock);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!a->stop)
			pthread_cond_timedwait(&a->cond, &a->lock, &ts);
	}
	pthread_mutex_unlock(&a->lock);
	pass(a); /* what the last second wrote */
	return NULL;
}

struct node_audit_share *node_audit_share_start(struct kz_cluster *c, const char *data_dir, const char *node_id)
{
	struct node_audit_share *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->c = c;
	snprintf(a->dir, sizeof a->dir, "%s/audit", data_dir);
	snprintf(a->state, sizeof a->state, "%s/cluster.audit", data_dir);
	snprintf(a->node, sizeof a->node, "%s", node_id);
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	state_load(a);
	if (pthread_create(&a->th, NULL, run, a)) {
		kz_warn("cluster: cannot start the audit copy thread: the audit log is not copied to KZ_AUDIT");
		pthread_mutex_destroy(&a->lock);
		pthread_cond_destroy(&a->cond);
		free(a);
		return NULL;
	}
	a->started = true;
	return a;
}

void node_audit_share_stop(struct node_audit_share *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->th, NULL);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a);
}
