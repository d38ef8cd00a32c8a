/* node_trust.c — trust shared across a cluster (docs/CLUSTER.md "Trust across the cluster"):
 * the revocation list and the signed policy with its identity registry travel through the KV
 * bucket KZ_TRUST, and every node checks them as it checks its own files.
 *
 *   out: when a newer list (by CRL number) or a newer signed policy (by manifest sequence) is
 *        in force on this node, from its files or from the cluster, it is put under "crl" or
 *        "policy" (the four files: policy, registry, manifest, signature).
 *   in:  a value from the bucket is written to a scratch place in the data directory and
 *        checked there: the list's signature against tls.ca and its number against the
 *        highest this node had; the policy's manifest signature against policy.signing_key,
 *        its sequence against the highest in force, and the policy itself. Only then is it
 *        written over this node's own files: the revocation list is taken by the node's
 *        poll within tls.cert_check_ms; the policy by a reload (SIGHUP to itself), which
 *        checks it again. Anything that does not verify is logged and left out. */
#include "node/node_trust.h"

#include "base/kz_file.h"
#include "base/kz_log.h"
#include "trust/ca.h"
#include "trust/sign.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct node_trust {
	const struct node_config *cfg;
	struct kz_cluster *cluster;
	pthread_mutex_t lock;
	uint64_t crl_number;            /* the highest list this node put or installed */
	int64_t crl_this_update;
	unsigned long long policy_seq;  /* the highest signed policy this node put or installed */
	bool warned_unsigned;
};

static char *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = NULL;
	size_t cap = 0, len = 0, k;
	char chunk[8192];
	while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (len + k > (64u << 20) || (len + k > cap && !(b = realloc(b, cap = (len + k) * 2)))) {
			fclose(f);
			free(b);
			return NULL;
		}
		memcpy(b + len, chunk, k);
		len += k;
	}
	fclose(f);
	if (!b)
		b = malloc(1);
	*n = len;
	return b;
}

/* dir and base name of path, into dir[] */
static const char *split(const char *path, char *dir, size_t cap)
{
	snprintf(dir, cap, "%s", path);
	char *s = strrchr(dir, '/');
	if (!s) {
		snprintf(dir, cap, ".");
		return path;
	}
	*s = 0;
	if (!dir[0])
		snprintf(dir, cap, "/");
	return strrchr(path, '/') + 1;
}

static int replace(const char *path, const void *data, size_t n)
{
	char dir[1200];
	const char *base = split(path, dir, sizeof dir);
	mkdir(dir, 0700); /* a node on another's PKI may have no directory for its list yet */
	return kz_file_replace(dir, base, data, n, 0644);
}

/* ---------- out ---------- */

/* Is r newer than any list this node put or installed (by CRL number, then thisUpdate)? Then
 * it is the newest from now on. */
static bool crl_take(struct node_trust *t, const struct kz_revoked *r)
{
	pthread_mutex_lock(&t->lock);
	bool newer = r->number > t->crl_number || (r->number == t->crl_number && r->this_update > t->crl_this_update);
	if (newer) {
		t->crl_number = r->number;
		t->crl_this_update = r->this_update;
	}
	pthread_mutex_unlock(&t->lock);
	return newer;
}

void node_trust_crl_in_force(struct node_trust *t, const struct kz_revoked *r)
{
	if (!t || !t->cluster || !r || r->missing)
		return;
	bool newer = crl_take(t, r);
	if (!newer)
		return;
	size_t n;
	char *b = read_file(t->cfg->tls_crl, &n);
	if (!b)
		return;
	kz_cluster_trust_put(t->cluster, "crl", (const uint8_t *)b, n);
	free(b);
}

static const char *const POLICY_PARTS[4] = { "", "", ".manifest", ".manifest.sig" };

static void part_path(const struct node_config *cfg, int i, char *out, size_t cap)
{
	if (i == 1)
		snprintf(out, cap, "%s", cfg->policy_registry);
	else
		snprintf(out, cap, "%s%s", cfg->policy_file, POLICY_PARTS[i]);
}

void node_trust_policy_in_force(struct node_trust *t, unsigned long long seq)
{
	if (!t || !t->cluster || !seq || !t->cfg->policy_signing_key[0])
		return; /* only signed policies travel: the receivers check the signature */
	pthread_mutex_lock(&t->lock);
	bool newer = seq > t->policy_seq;
	if (newer)
		t->policy_seq = seq;
	pthread_mutex_unlock(&t->lock);
	if (!newer)
		return;
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int rc = kz_buf_append(&b, "KZP1", 4);
	for (int i = 0; i < 4 && !rc; i++) {
		char path[1200];
		size_t n = 0;
		part_path(t->cfg, i, path, sizeof path);
		char *d = read_file(path, &n);
		uint8_t len[4] = { (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24) };
		rc = d ? kz_buf_append(&b, len, 4) : -1;
		rc = rc ? rc : kz_buf_append(&b, d, n);
		free(d);
	}
	if (!rc)
		kz_cluster_trust_put(t->cluster, "policy", kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
}

/* ---------- in (the cluster's KV thread) ---------- */

const char *node_trust_bundle_parse(const uint8_t *v, size_t n, const uint8_t *part[4], size_t len[4])
{
	size_t off = 4;
	if (n < 4 || memcmp(v, "KZP1", 4) != 0)
		return "not a policy bundle";
	for (int i = 0; i < 4; i++) {
		if (n - off < 4)
			return "policy bundle cut off";
		len[i] = (size_t)v[off] | (size_t)v[off + 1] << 8 | (size_t)v[off + 2] << 16 | (size_t)v[off + 3] << 24;
		off += 4;
		if (len[i] > n - off)
			return "policy bundle part runs past the end";
		part[i] = v + off;
		off += len[i];
	}
	return off == n ? NULL : "bytes after the policy bundle";
}

static void crl_in(struct node_trust *t, const uint8_t *v, size_t n)
{
	const struct node_config *cfg = t->cfg;
	char tmp[1200], why[1024];
	snprintf(tmp, sizeof tmp, "%s/crl.cluster", cfg->data_dir);
	if (kz_file_replace(cfg->data_dir, "crl.cluster", v, n, 0600)) {
		kz_warn("cluster: cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	struct kz_revoked *r = kz_revoked_load(tmp, cfg->tls_ca, why, sizeof why);
	if (!r || r->missing) {
		kz_warn("cluster: the revocation list in KZ_TRUST does not verify against %s (%s): not taken", cfg->tls_ca,
			r ? "empty" : why);
		kz_revoked_free(r);
		return;
	}
	bool newer = crl_take(t, r);
	/* this node's own file may be newer still: the node's poll refuses a rollback anyway */
	if (newer && replace(cfg->tls_crl, v, n) == 0)
		kz_info("cluster: revocation list number %llu (%zu revoked) from KZ_TRUST written to %s; in force at the "
			"next check (tls.cert_check_ms)", (unsigned long long)r->number, r->n, cfg->tls_crl);
	else if (newer)
		kz_warn("cluster: cannot write %s: %s", cfg->tls_crl, strerror(errno));
	kz_revoked_free(r);
}

static void policy_in(struct node_trust *t, const uint8_t *v, size_t n)
{
	const struct node_config *cfg = t->cfg;
	if (!cfg->policy_signing_key[0] || !cfg->policy_file[0]) {
		if (!t->warned_unsigned)
			kz_warn("cluster: KZ_TRUST has a policy, and this node %s: not taken",
				cfg->policy_file[0] ? "has no policy.signing_key to check it" : "runs without policy.file");
		t->warned_unsigned = true;
		return;
	}
	const uint8_t *part[4];
	size_t len[4];
	const char *bad = node_trust_bundle_parse(v, n, part, len);
	if (bad) {
		kz_warn("cluster: the policy in KZ_TRUST: %s: not taken", bad);
		return;
	}
	/* checked where it cannot be mistaken for this node's files */
	char dir[1200], paths[4][1400], pol[1400], reg[1400], why[4600];
	snprintf(dir, sizeof dir, "%s/policy.cluster", cfg->data_dir);
	mkdir(dir, 0700);
	char pd[1200];
	snprintf(pol, sizeof pol, "%s/%s", dir, split(cfg->policy_file, pd, sizeof pd));
	snprintf(reg, sizeof reg, "%s/%s", dir, split(cfg->policy_registry, pd, sizeof pd));
	for (int i = 0; i < 4; i++) {
		if (i == 1)
			snprintf(paths[i], sizeof paths[i], "%s", reg);
		else
			snprintf(paths[i], sizeof paths[i], "%s%s", pol, POLICY_PARTS[i]);
		if (replace(paths[i], part[i], len[i])) {
			kz_warn("cluster: cannot write %s: %s", paths[i], strerror(errno));
			return;
		}
	}
	unsigned long long seq = 0;
	if (kz_manifest_verify(cfg->policy_signing_key, pol, reg, &seq, why, sizeof why)) {
		kz_warn("cluster: the policy in KZ_TRUST does not verify: %s: not taken", why);
		return;
	}
	struct kz_policy *p = NULL;
	FILE *devnull = fopen("/dev/null", "w");
	int errs = kz_policy_load(pol, reg, 0, &p, devnull ? devnull : stderr);
	if (devnull)
		fclose(devnull);
	kz_policy_free(p);
	if (errs) {
		kz_warn("cluster: the policy in KZ_TRUST (sequence %llu) has %d errors: not taken", seq, errs);
		return;
	}
	pthread_mutex_lock(&t->lock);
	unsigned long long have = t->policy_seq > node_policy_seq(cfg) ? t->policy_seq : node_policy_seq(cfg);
	bool newer = seq > have;
	if (newer)
		t->policy_seq = seq;
	pthread_mutex_unlock(&t->lock);
	if (!newer)
		return;
	for (int i = 0; i < 4; i++) {
		char dst[1400];
		part_path(cfg, i, dst, sizeof dst);
		if (replace(dst, part[i], len[i])) {
			kz_warn("cluster: cannot write %s: %s", dst, strerror(errno));
			return;
		}
	}
	kz_info("cluster: signed policy sequence %llu from KZ_TRUST written to %s; reloading", seq, cfg->policy_file);
	kill(getpid(), SIGHUP); /* the main thread reloads it, checking it again */
}

static void on_update(void *arg, const char *key, const uint8_t *v, size_t n)
{
	struct node_trust *t = arg;
	if (strcmp(key, "crl") == 0)
		crl_in(t, v, n);
	else if (strcmp(key, "policy") == 0)
		policy_in(t, v, n);
}

void (*node_trust_update_fn(void))(void *, const char *, const uint8_t *, size_t)
{
	return on_update;
}

struct node_trust *node_trust_new(const struct node_config *cfg)
{
	struct node_trust *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->cfg = cfg;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void node_trust_attach(struct node_trust *t, struct kz_cluster *c)
{
	t->cluster = c;
}

void node_trust_free(struct node_trust *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}
