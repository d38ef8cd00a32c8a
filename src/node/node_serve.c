/* node_serve.c — `kizuna serve`: configuration, development PKI, broker, workers, signals. */
#include "node/node_serve.h"
#include "node/node_sessions.h"
#include "node/node_detect.h"
#include "node/node_follow.h"
#include "node/node_trust.h"
#include "node/node_audit_share.h"
#include "node/node_config.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_mem.h"
#include "base/kz_time.h"
#include "mqtt/mqtt_broker.h"
#include "http/http.h"
#include "net/net.h"
#include "node/node_http.h"
#include "node/node_listen.h"
#include "cluster/cluster.h"
#include "node/node_entities.h"
#include "services/entity/entity_service.h"
#include "services/task/task_service.h"
#include "node/node_adapters.h"
#include "node/node_tak.h"
#include "services/taxii/taxii.h"
#include "base/kz_file.h"
#include "trust/audit.h"
#include "trust/ca.h"
#include "trust/policy.h"

#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The largest record a PUBLISH can make: the packet plus the envelope's own fields. */
static uint32_t node_max_record_bytes(const struct node_config *cfg)
{
	return cfg->limits.max_packet_size + 4096 + (uint32_t)sizeof cfg->node_id;
}

/* The cluster's replicator (docs/CLUSTER.md): told when the store made records durable, and
 * telling the broker what JetStream confirmed. */
static _Atomic(struct kz_cluster *) node_cluster;
/* The entity picture (docs/ENTITIES.md): told when records are durable, like the replicator. */
static _Atomic(struct entity_service *) node_entities;
/* Trust shared through the cluster (node_trust.c): told of new lists and policies in force. */
static _Atomic(struct node_trust *) node_trustshare;

static void node_batch_end(void *arg) { mqtt_broker_store_batch_end(arg); }

/* After the batch is readable: the replicator reads it at once (not at its next poll). */
static void node_durable(void *arg)
{
	(void)arg;
	struct kz_cluster *c = atomic_load(&node_cluster);
	if (c)
		kz_cluster_kick(c);
	entity_service_kick(atomic_load(&node_entities));
	node_detect_kick();
}

static void node_repl_confirmed(void *arg, uint64_t seq) { mqtt_broker_repl_confirmed(arg, seq); }

static bool node_repl_ok(void *arg) { return kz_cluster_quorum(arg); }
static void node_caught_up(void *arg) { mqtt_broker_connects_kick(arg); }

struct restore_ctx {
	struct mqtt_broker *b;
	uint64_t now_ns, n;
	uint64_t max_acked; /* the highest sequence number a session acknowledged */
};

static int restore_retained(void *ctx, uint64_t seq, const struct kz_record *r)
{
	(void)seq;
	struct restore_ctx *rc = ctx;
	if (mqtt_retained_restore(rc->b, r, rc->now_ns) == KZ_OK)
		rc->n++;
	return 0;
}

static int restore_session(void *ctx, const struct kz_state_session *ss)
{
	struct restore_ctx *rc = ctx;
	if (ss->acked_through > rc->max_acked)
		rc->max_acked = ss->acked_through;
	int r = mqtt_broker_restore_session(rc->b, ss, rc->now_ns);
	if (r)
		kz_error("session '%s' not restored: %s", ss->client_id, kz_strerror(r));
	else
		rc->n++;
	return 0;
}

/* Every policy snapshot the node loaded: workers may still read an old one, so they are
 * freed only at exit (a reload costs the size of one policy). */
struct policies {
	struct kz_policy **v;
	size_t n;
};

static void policy_hold(struct policies *h, struct kz_policy *p)
{
	struct kz_policy **nv = realloc(h->v, (h->n + 1) * sizeof *nv);
	if (!nv)
		abort(); /* cannot keep it safely */
	h->v = nv;
	h->v[h->n++] = p;
}

/* DIR/policy.status: what `kizuna policy reload` reads back: "ok N VERSION" or "error N"
 * followed by the errors, N counting this node's load attempts (so that a success after a
 * refusal is a new answer too). Main thread only. */
static void policy_status(const char *dir, const struct kz_policy *p, const char *errors)
{
	static unsigned attempts;
	attempts++;
	(void)p;
	char path[1100], tmp[1110];
	snprintf(path, sizeof path, "%s/policy.status", dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	if (errors)
		fprintf(f, "error %u\n%s", attempts, errors);
	else
		fprintf(f, "ok %u %s\n", attempts, p->version);
	if (fclose(f) == 0)
		(void)rename(tmp, path);
}

static void policy_reload(const struct node_config *cfg, struct mqtt_broker *b, struct policies *held)
{
	struct kz_policy *cur = atomic_load(&b->policy);
	if (!cur || !cfg->policy_file[0]) {
		kz_warn("SIGHUP: no policy.file configured; nothing to reload (%s stays)",
			cur ? "deny by default" : "policy.open");
		return;
	}
	char *errs = NULL;
	size_t errs_len = 0;
	FILE *ef = open_memstream(&errs, &errs_len);
	struct kz_policy *np = NULL;
	unsigned long long seq = 0;
	int n = node_policy_load(cfg, cur->gen + 1, &np, ef, &seq);
	if (ef)
		fclose(ef);
	if (n) {
		kz_error("SIGHUP: policy not reloaded, %d errors; version %s stays in force:\n%s", n, cur->version,
			 errs ? errs : "");
		char reason[600];
		snprintf(reason, sizeof reason, "reload refused: %.*s", errs ? (int)strcspn(errs, "\n") : 0,
			 errs ? errs : "");
		kz_audit(&(struct kz_audit_entry){ .action = "policy", .resource = cfg->policy_file, .allow = false,
						  .reason = reason, .policy = cur->version });
		policy_status(cfg->data_dir, cur, errs ? errs : "");
		free(errs);
		return;
	}
	free(errs);
	if (seq > node_policy_seq(cfg) && node_policy_seq_store(cfg, seq))
		kz_warn("cannot write %s/policy.seq: %s", cfg->data_dir, strerror(errno));
	node_trust_policy_in_force(atomic_load(&node_trustshare), seq);
	policy_hold(held, np);
	atomic_store_explicit(&b->policy, np, memory_order_release);
	kz_info("SIGHUP: policy %s version %s in force (was %s): %u rules, %u identities", np->id, np->version,
		cur->version, np->n_rules, np->n_ids);
	kz_audit(&(struct kz_audit_entry){ .action = "policy", .resource = cfg->policy_file, .allow = true,
					  .reason = "reloaded", .policy = np->version });
	policy_status(cfg->data_dir, np, NULL);
}

/* The revocation sets the node has had in force: freed at exit, like the policies. */
struct revsets {
	struct kz_revoked **v;
	size_t n;
	struct stat st; /* of the CRL file when last read; st_ino 0 = missing */
	/* The highest CRL seen, kept in DIR/crl.seen across restarts: an older list (or none)
	 * is never taken for the newest (issue 25: revocation cannot be undone). */
	uint64_t seen_number;
	int64_t seen_this_update;
	char failing[1600];  /* the reason in force in trust->crl_failing, "" when none */
	char **reasons;      /* owns: every reason published (readers on other threads may hold one) */
	size_t n_reasons;
	bool loaded_seen;
};

static void crl_seen_load(const struct node_config *cfg, struct revsets *h)
{
	char p[1200];
	snprintf(p, sizeof p, "%s/crl.seen", cfg->data_dir);
	FILE *f = fopen(p, "r");
	if (f) {
		unsigned long long num = 0;
		long long tu = 0;
		if (fscanf(f, "%llu %lld", &num, &tu) == 2) {
			h->seen_number = num;
			h->seen_this_update = tu;
		}
		fclose(f);
	}
	h->loaded_seen = true;
}

static void crl_seen_store(const struct node_config *cfg, struct revsets *h)
{
	char line[64];
	int n = snprintf(line, sizeof line, "%llu %lld\n", (unsigned long long)h->seen_number, (long long)h->seen_this_update);
	if (kz_file_replace(cfg->data_dir, "crl.seen", line, (size_t)n, 0644))
		kz_error("cannot write %s/crl.seen: %s", cfg->data_dir, strerror(errno));
}

/* Sets or clears the fail-closed state: logged and audited once per change. */
static void crl_fail(struct net_tls_trust *trust, struct revsets *h, const char *why)
{
	if (why && strcmp(h->failing, why) == 0)
		return;
	if (!why && !h->failing[0])
		return;
	if (why) {
		snprintf(h->failing, sizeof h->failing, "%s", why);
		kz_error("revocation: %s; new handshakes are refused until a current list is in place (fail closed)", why);
		char **nv = realloc(h->reasons, (h->n_reasons + 1) * sizeof *nv);
		char *copy = nv ? strdup(why) : NULL;
		if (nv)
			h->reasons = nv;
		if (copy)
			h->reasons[h->n_reasons++] = copy;
		atomic_store(&trust->crl_failing, copy ? (const char *)copy : "revocation status unknown");
	} else {
		atomic_store(&trust->crl_failing, (const char *)NULL);
		kz_warn("revocation: a current list is in force again; handshakes are accepted");
		h->failing[0] = 0;
	}
	kz_audit(&(struct kz_audit_entry){ .action = "crl", .resource = "tls.crl", .allow = why == NULL,
					  .reason = why ? why : "a current revocation list is in force again" });
}

/* Re-reads the CRL when the file changed (or force). Returns 0, or -1 when it does not
 * verify (the set in force stays). */
/* A list past its nextUpdate says nothing about certificates revoked since: fail closed. */
static void crl_check_time(const struct node_config *cfg, struct net_tls_trust *trust, struct revsets *h)
{
	const struct kz_revoked *r = atomic_load(&trust->revoked);
	if (r && r->next_update && r->next_update < (int64_t)time(NULL)) {
		char why[1400];
		snprintf(why, sizeof why, "the revocation list %s is past its nextUpdate (kizuna ca crl issues a new one)",
			 cfg->tls_crl);
		crl_fail(trust, h, why);
	}
}

/* A node that holds its CA's key re-issues the CRL when half of its validity is gone, so
 * that the list never goes past nextUpdate while the node runs. */
static void crl_reissue(const struct node_config *cfg, struct net_tls_trust *trust)
{
	const struct kz_revoked *r = atomic_load(&trust->revoked);
	char cakey[1200], why[512];
	snprintf(cakey, sizeof cakey, "%s/ca.key", cfg->ca_dir);
	if (!r || !r->next_update || access(cakey, R_OK))
		return;
	int64_t now = (int64_t)time(NULL);
	if (r->next_update - now > (r->next_update - r->this_update) / 2)
		return;
	struct kz_ca *ca = NULL;
	if (kz_ca_open(cfg->ca_dir, cfg->trust_domain, &ca, why, sizeof why) || kz_ca_write_crl(ca, why, sizeof why))
		kz_error("cannot re-issue the revocation list: %s", why);
	else
		kz_info("re-issued the revocation list %s before its nextUpdate", cfg->tls_crl);
	kz_ca_close(ca);
}

static int crl_refresh(const struct node_config *cfg, struct mqtt_broker *b, struct net_tls_trust *trust,
		       struct revsets *h, bool force)
{
	struct stat st;
	if (stat(cfg->tls_crl, &st))
		memset(&st, 0, sizeof st);
	if (!force && h->n && st.st_ino == h->st.st_ino && st.st_size == h->st.st_size &&
	    st.st_mtim.tv_sec == h->st.st_mtim.tv_sec && st.st_mtim.tv_nsec == h->st.st_mtim.tv_nsec)
		return 0;
	char why[1600];
	if (!h->loaded_seen)
		crl_seen_load(cfg, h);
	struct kz_revoked *r = kz_revoked_load(cfg->tls_crl, cfg->tls_ca, why, sizeof why);
	h->st = st; /* a bad file is reported once, not at every check */
	if (!r) {
		kz_error("revocation list: %s; the previous list stays in force", why);
		return -1;
	}
	if (r->missing && h->seen_number) {
		snprintf(why, sizeof why, "the revocation list %s is missing, after list number %llu was in force",
			 cfg->tls_crl, (unsigned long long)h->seen_number);
		kz_revoked_free(r);
		crl_fail(trust, h, why);
		return force ? 0 : -1; /* the set in force (if any) stays for open connections */
	}
	if (!r->missing && (r->number < h->seen_number ||
			    (r->number == h->seen_number && r->this_update < h->seen_this_update))) {
		snprintf(why, sizeof why, "the revocation list %s (number %llu) is older than number %llu already in "
			 "force: refused (a rollback would bring revoked certificates back)", cfg->tls_crl,
			 (unsigned long long)r->number, (unsigned long long)h->seen_number);
		kz_revoked_free(r);
		if (!h->n) /* at start there is no newer list in memory: nothing can be checked */
			crl_fail(trust, h, why);
		else
			kz_error("revocation: %s; the newer list stays in force", why);
		kz_audit(&(struct kz_audit_entry){ .action = "crl", .resource = cfg->tls_crl, .allow = false, .reason = why });
		return 0;
	}
	if (!r->missing && (r->number > h->seen_number || r->this_update > h->seen_this_update)) {
		h->seen_number = r->number;
		h->seen_this_update = r->this_update;
		crl_seen_store(cfg, h);
	}
	struct kz_revoked **nv = realloc(h->v, (h->n + 1) * sizeof *nv);
	if (!nv) {
		kz_revoked_free(r);
		return -1;
	}
	h->v = nv;
	h->v[h->n++] = r;
	atomic_store(&trust->revoked, r);
	if (b) /* NULL at start: the broker takes the set from trust once it exists */
		atomic_store(&b->revoked, r);
	node_trust_crl_in_force(atomic_load(&node_trustshare), r);
	if (st.st_ino)
		kz_info("revocation list %s: %zu revoked certificates", cfg->tls_crl, r->n);
	crl_fail(trust, h, NULL);
	crl_check_time(cfg, trust, h);
	return 0;
}

/* The development admin certificate stays within ca.max_cert_lifetime (longer ones are
 * refused at the handshake) and is renewed at start when a third of its life is left. */
static void admin_renew(const struct node_config *cfg)
{
	char cert[1200], cakey[1200], why[512];
	snprintf(cert, sizeof cert, "%s/admin.pem", cfg->ca_dir);
	snprintf(cakey, sizeof cakey, "%s/ca.key", cfg->ca_dir);
	int64_t nb, na, now = (int64_t)time(NULL), max = cfg->ca_max_lifetime_s;
	if (access(cakey, R_OK) || kz_cert_file_validity(cert, &nb, &na))
		return;
	if (na - nb <= max + 3600 && na - now > max / 3)
		return;
	struct kz_ca *ca = NULL;
	if (kz_ca_open(cfg->ca_dir, cfg->trust_domain, &ca, why, sizeof why) ||
	    kz_ca_renew(ca, cert, (uint32_t)max, cert, NULL, why, sizeof why))
		kz_warn("cannot renew the admin certificate %s: %s", cert, why);
	else
		kz_info("renewed the admin certificate %s for %lld s (ca.max_cert_lifetime)", cert, (long long)max);
	kz_ca_close(ca);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kizuna serve [--config FILE] [--data DIR] [--check]\n");
}

/* Everything `kizuna serve` holds while it runs, in the order node_open takes it; node_close
 * gives back whatever was taken, in reverse, on every path.
 *
 *   node_open --ok--> node_run (signals: SIGHUP reloads, SIGTERM/SIGINT stop) --> node_close
 *   node_open --fails at any step--> node_close (what was opened so far) */
struct node {
	struct node_config cfg;
	struct kz_policy *policy;        /* until held (then in held) */
	unsigned long long policy_seq;   /* the signed manifest's sequence (0: unsigned) */
	int lockfd, mqtt_fd, https_fd;
	char host[256], hhost[256];
	int port, hport, bound_port, bound_hport;
	int created;                     /* 1: the development PKI was made by this start */
	bool audit_open;
	struct net_tls_trust trust;      /* SSL_CTX app data: lives as long as the contexts */
	struct kz_ca *ca;
	struct revsets revs;
	SSL_CTX *ctx, *hctx;
	struct mqtt_broker broker;
	bool broker_init, served;
	struct kz_idlimits idl;
	bool idl_init;
	struct policies held;
	struct kz_http *http;
	struct taxii *taxii;
	struct entity_service *entities;
	struct task_service *tasks;
	struct node_adapters *adapters;
	struct node_tak *tak;
	struct node_detect *detect;
	struct node_http nh;
	struct node_enroll enroll;
	struct node_mqtt nm;
	struct net_server *srv;
	struct kz_cluster *cluster;
	struct node_sessions *sessions; /* shared through the cluster */
	struct node_trust *trustshare;  /* the same */
	struct node_audit_share *auditshare; /* this node's audit log, copied to KZ_AUDIT */
	sigset_t signals;
	char logdir[1100];
};

/* Configuration, policy, data-directory lock, ports, audit log, PKI, TLS, broker, store,
 * sessions, HTTPS and TAXII, workers. 0 when serving; else 1 (said why). */
static int node_open(struct node *n)
{
	struct node_config *cfg = &n->cfg;
	char why[512] = "";
	kz_log_set_level(cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	/* Before the ports are bound and any thread starts (every thread inherits this mask):
	 * only the main thread takes SIGTERM/SIGINT/SIGHUP, and one that comes while the node is
	 * still loading waits for node_run, which stops cleanly. */
	sigemptyset(&n->signals);
	sigaddset(&n->signals, SIGTERM);
	sigaddset(&n->signals, SIGINT);
	sigaddset(&n->signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &n->signals, NULL);
	/* Each connection is a descriptor: take the hard limit, as servers commonly do, and say
	 * what it is (limits.fd_reserve of them stay free of connections). */
	char fdmsg[200];
	unsigned fds = net_raise_fd_limit(fdmsg, sizeof fdmsg);
	if (fds && fds <= cfg->limits.fd_reserve + 16)
		kz_warn("%s: limits.fd_reserve (%u) leaves almost none for connections", fdmsg, cfg->limits.fd_reserve);
	else
		kz_info("%s; %u kept free of connections (limits.fd_reserve)", fdmsg, cfg->limits.fd_reserve);

	(void)node_config_split_addr(cfg->mqtt_listen, n->host, sizeof n->host, &n->port);
	if ((n->lockfd = kz_data_lock(cfg->data_dir, why, sizeof why)) < 0) {
		kz_error("%s", why);
		return 1;
	}
	/* The ports are taken first: a second node fails here, before any work. Connections are
	 * refused until the store, its index and the sessions are ready (then they listen). */
	if (cfg->https_enabled)
		(void)node_config_split_addr(cfg->https_listen, n->hhost, sizeof n->hhost, &n->hport);
	n->mqtt_fd = net_bind(n->host, n->port, &n->bound_port, why, sizeof why);
	if (n->mqtt_fd >= 0 && cfg->https_enabled &&
	    (n->https_fd = net_bind(n->hhost, n->hport, &n->bound_hport, why, sizeof why)) < 0) {
		close(n->mqtt_fd);
		n->mqtt_fd = -1;
	}
	if (n->mqtt_fd < 0) {
		kz_error("%s", why);
		return 1;
	}
	kz_info("MQTT port %d%s%.0d taken; connections are refused until the record log, its index and the "
		"sessions are loaded", n->bound_port, cfg->https_enabled ? " and HTTPS port " : "",
		cfg->https_enabled ? n->bound_hport : 0);
	char auditdir[1100];
	snprintf(auditdir, sizeof auditdir, "%s/audit", cfg->data_dir);
	if (kz_audit_open(auditdir, cfg->audit_ck_entries, cfg->audit_ck_ms, &kz_audit_log, why, sizeof why)) {
		kz_error("audit log: %s", why);
		return 1;
	}
	n->audit_open = true;
	kz_audit_set_limits(kz_audit_log, cfg->audit_window_ms, cfg->audit_max_file_bytes, cfg->audit_max_files);
	if (mkdir(cfg->data_dir, 0755) && errno != EEXIST) {
		kz_error("cannot create %s: %s", cfg->data_dir, strerror(errno));
		return 1;
	}
	n->created = kz_ca_create(cfg->ca_dir, cfg->trust_domain, cfg->org, cfg->ca_max_lifetime_s, why, sizeof why);
	if (n->created < 0) {
		kz_error("%s", why);
		return 1;
	}
	admin_renew(cfg);
	if (n->policy_seq > node_policy_seq(cfg) && node_policy_seq_store(cfg, n->policy_seq))
		kz_warn("cannot write %s/policy.seq: %s", cfg->data_dir, strerror(errno));
	/* Deny by default (docs/POLICY.md): the development PKI comes with a development policy
	 * that lets its admin in; without either, nothing is allowed unless policy.open says so. */
	if (!n->policy && !cfg->policy_open) {
		if (n->created == 1 && !cfg->policy_file[0]) {
			if (node_dev_policy_create(cfg, why, sizeof why)) {
				kz_error("%s", why);
				return 1;
			}
			node_config_finish(cfg);
		}
		if (cfg->policy_file[0]) {
			if (node_policy_load(cfg, 1, &n->policy, stderr, &n->policy_seq))
				return 1;
			kz_info("development policy %s with %s: only the identities listed there may do anything",
				cfg->policy_file, cfg->policy_registry);
		} else {
			if (kz_policy_parse(node_deny_all_policy, strlen(node_deny_all_policy), "(deny by default)", "", 0,
					    "(no registry)", 1, &n->policy, stderr))
				return 1;
			kz_warn("no policy.file: every connection and request is refused (deny by default). Set "
				"policy.file and policy.registry (docs/POLICY.md), or policy.open = 1 for tests");
		}
	}
	n->trust.trust_domain = cfg->trust_domain;
	char cakey[1200];
	snprintf(cakey, sizeof cakey, "%s/ca.key", cfg->ca_dir);
	if (cfg->enroll_enabled && access(cakey, R_OK) == 0) {
		if (kz_ca_open(cfg->ca_dir, cfg->trust_domain, &n->ca, why, sizeof why))
			kz_warn("enrolment off: %s", why);
	} else if (cfg->enroll_enabled) {
		kz_info("enrolment off: no CA key %s", cakey);
	}
	n->trust.enroll = n->ca != NULL;
	if (crl_refresh(cfg, NULL, &n->trust, &n->revs, true))
		return 1;
	n->trust.require_pq = cfg->tls_require_pq != 0;
	n->trust.max_cert_lifetime_s = cfg->ca_max_lifetime_s;
	struct net_tls_config tls = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key,
				      cfg->tls_require_pq ? "X25519MLKEM768" : cfg->tls_groups[0] ? cfg->tls_groups : NULL,
				      &n->trust };
	if (!(n->ctx = net_tls_server_ctx(&tls, why, sizeof why))) {
		kz_error("%s", why);
		return 1;
	}
	struct mqtt_broker *b = &n->broker;
	if (mqtt_broker_init(b, &cfg->limits, cfg->threads)) {
		kz_error("out of memory");
		return 1;
	}
	n->broker_init = true;
	b->payload_check = entity_payload_check; /* kz/entity/<id> carries entity updates (docs/ENTITIES.md) */
	snprintf(b->node_id, sizeof b->node_id, "%s", cfg->node_id);
	atomic_store(&b->revoked, atomic_load(&n->trust.revoked));
	b->cert_check_ms = cfg->cert_check_ms;
	if (kz_idlimits_init(&n->idl, cfg->id_limits, cfg->n_id_limits, cfg->id_limits_max)) {
		kz_error("out of memory");
		return 1;
	}
	n->idl_init = true;
	b->idlimits = &n->idl;
	if (n->policy) {
		struct kz_policy *policy = n->policy;
		policy_hold(&n->held, policy);
		n->policy = NULL; /* held */
		atomic_store(&b->policy, policy);
		b->audit_summary_ms = cfg->policy_summary_ms;
		kz_info("policy %s version %s from %s: %u rules, %u identities", policy->id, policy->version,
			cfg->policy_file, policy->n_rules, policy->n_ids);
		policy_status(cfg->data_dir, policy, NULL);
	} else {
		kz_warn("policy.open = 1 and no policy.file: every authenticated identity may connect, publish and "
			"subscribe; records are not labelled (tests and benchmarks only)");
	}
	char indexdb[1100];
	snprintf(n->logdir, sizeof n->logdir, "%s/log", cfg->data_dir);
	snprintf(indexdb, sizeof indexdb, "%s/index.db", cfg->data_dir);
	struct kz_store_config stcfg = {
		.log = { .dir = n->logdir, .segment_bytes = cfg->store.segment_bytes,
			 .max_record_bytes = node_max_record_bytes(cfg), .fsync = cfg->store.fsync,
			 .fsync_interval_ms = cfg->store.fsync_interval_ms },
		.index_path = indexdb, .rules = cfg->store.rules, .n_rules = cfg->store.n_rules,
		.retention_interval_ms = cfg->store.retention_interval_ms,
		.batch_end = node_batch_end, .durable = node_durable, .batch_arg = b,
	};
	struct kz_reclog_recovery rec;
	if (kz_store_open(&stcfg, &b->store, &rec, why, sizeof why)) {
		kz_error("record log: %s", why);
		return 1;
	}
	if (rec.records && kz_audit_is_new(kz_audit_log)) {
		kz_error("audit log: %s/audit has no log or keys but the record log holds %llu records: the audit "
			 "directory was deleted. Restore it, or start over with a new data directory", cfg->data_dir,
			 (unsigned long long)rec.records);
		return 1;
	}
	if (rec.torn_bytes)
		kz_warn("record log: cut %llu bytes of a torn final write (never acknowledged)",
			(unsigned long long)rec.torn_bytes);
	kz_info("record log %s: %llu records in %u segments, fsync %s", n->logdir,
		(unsigned long long)rec.records, rec.segments,
		cfg->store.fsync == KZ_FSYNC_ALWAYS ? "always" : cfg->store.fsync == KZ_FSYNC_NEVER ? "never" : "interval");
	char statedb[1100];
	snprintf(statedb, sizeof statedb, "%s/sessions.db", cfg->data_dir);
	if (kz_state_open(statedb, &b->state, why, sizeof why)) {
		kz_error("%s", why);
		return 1;
	}
	struct restore_ctx rc = { b, kz_now_wall_ns(), 0, 0 };
	if (kz_state_load(b->state, restore_session, &rc, why, sizeof why))
		kz_error("sessions: %s", why);
	else if (rc.n)
		kz_info("%llu persistent sessions restored", (unsigned long long)rc.n);
	if (rc.max_acked && rc.max_acked >= kz_store_durable_next(b->store)) {
		/* a session acknowledged records the log no longer holds (its tail was cut): new
		 * records must not take those numbers, or the session would skip them */
		kz_warn("sessions acknowledged records up to %llu, past the log's end: new records start after it",
			(unsigned long long)rc.max_acked);
		kz_store_advance(b->store, rc.max_acked + 1);
	}
	rc.n = 0;
	if (kz_store_retained(b->store, restore_retained, &rc, why, sizeof why))
		kz_error("retained messages: %s", why);
	else if (rc.n)
		kz_info("%llu retained messages restored", (unsigned long long)rc.n);
	/* TAXII before the cluster: objects followed from other nodes are indexed as they come */
	if (cfg->https_enabled) {
		struct taxii_config tc = { cfg->taxii_collections, b->store, n->logdir, node_max_record_bytes(cfg),
					   &b->policy, cfg->node_id, cfg->threads, cfg->taxii_max_page,
					   cfg->taxii_default_page, cfg->taxii_max_post, cfg->taxii_max_scan,
					   cfg->taxii_max_statuses, cfg->taxii_max_status_bytes, cfg->https_max_body };
		if (taxii_open(&tc, &n->taxii, why, sizeof why)) {
			kz_error("TAXII: %s", why);
			return 1;
		}
		uint64_t ncoll, nent;
		taxii_counts(n->taxii, &ncoll, &nent);
		kz_info("TAXII: %llu collections, %llu object versions indexed from the log", (unsigned long long)ncoll,
			(unsigned long long)nent);
	}
	if (cfg->https_enabled) {
		struct entity_service_config ec = {
			.store = b->store, .policy = &b->policy, .max_page = cfg->entity_max_page,
			.index_path = indexdb, .log_dir = n->logdir, .max_record_bytes = node_max_record_bytes(cfg),
			.default_page = cfg->entity_default_page, .stream_ring = cfg->entity_stream_ring,
			.max_streams = cfg->entity_max_streams, .stream_heartbeat_ms = cfg->entity_stream_heartbeat_ms,
			.stream_interval_ms = cfg->entity_stream_interval_ms,
			.table = { .max_entities = cfg->entity_max_entities, .default_stale_ms = cfg->entity_default_stale_ms,
				   .default_expiry_ms = cfg->entity_default_expiry_ms,
				   .removed_keep_ms = cfg->entity_removed_keep_ms, .max_interned = cfg->entity_max_interned },
		};
		if (entity_service_open(&ec, &n->entities, why, sizeof why)) {
			kz_error("entities: %s", why);
			return 1;
		}
		struct entity_service_stats es;
		entity_service_stats(n->entities, &es);
		kz_info("entities: %llu live, %llu stale from the log", (unsigned long long)es.table.live,
			(unsigned long long)es.table.stale);
		atomic_store(&node_entities, n->entities);
		if (node_tasks_open(b, cfg, &n->tasks, why, sizeof why)) {
			kz_error("tasks: %s", why);
			return 1;
		}
		node_entities_attach(b, n->entities, n->tasks); /* kz-snapshot subscriptions, task topics */
	}
	if (node_adapters_open(b, cfg, &n->adapters, why, sizeof why) ||
	    node_tak_open(cfg, b, n->ctx, n->entities, &n->tak, why, sizeof why)) {
		kz_error("adapters: %s", why);
		return 1;
	}
	if (node_detect_open(b, n->taxii, cfg, &n->detect, why, sizeof why)) {
		kz_error("detect: %s", why);
		return 1;
	}
	node_follow_set(b, n->taxii, NULL);
	if (cfg->cluster_nats[0]) {
		bool local = strcmp(cfg->cluster_on_quorum_loss, "local") == 0;
		if (!local && strcmp(cfg->cluster_on_quorum_loss, "refuse") != 0) {
			kz_error("cluster.on_quorum_loss: '%s' is neither refuse nor local", cfg->cluster_on_quorum_loss);
			return 1;
		}
		if (!cfg->cluster_cert[0] || !cfg->cluster_key[0]) {
			kz_error("cluster.nats needs cluster.cert and cluster.key: the node's certificate for NATS "
				 "(kizuna ca issue --id spiffe://%s/%s/node/NAME)", cfg->trust_domain, cfg->org);
			return 1;
		}
		char state[1100];
		snprintf(state, sizeof state, "%s/cluster.state", cfg->data_dir);
		struct kz_cluster_config cc = {
			.servers = cfg->cluster_nats, .ca_file = cfg->tls_ca, .cert_file = cfg->cluster_cert,
			.key_file = cfg->cluster_key, .node_id = cfg->node_id, .store = b->store, .log_dir = n->logdir,
			.max_record_bytes = node_max_record_bytes(cfg), .state_path = state,
			.replicas = cfg->cluster_replicas, .publish_timeout_ms = cfg->cluster_publish_timeout_ms,
			.window = cfg->cluster_publish_window, .confirmed = node_repl_confirmed, .follow = node_follow,
			.release = node_release, .caught_up = node_caught_up, .gap_timeout_ms = cfg->cluster_gap_timeout_ms,
			.bridge_ms = cfg->cluster_bridge_ms, .bridge_adopt_ms = cfg->cluster_bridge_adopt_ms,
			.consumer_stall_ms = cfg->cluster_consumer_stall_ms, .consumer_lost_ms = cfg->cluster_consumer_lost_ms,
			.consumer_scan_ms = cfg->cluster_consumer_scan_ms, .batch_records = cfg->cluster_batch_records,
			.batch_bytes = cfg->cluster_batch_bytes, .arg = b,
		};
		struct node_sessions_config sc = { cfg->node_id, cfg->cluster_session_margin_ms, cfg->cluster_failover_order_ms,
						   cfg->cluster_node_dead_ms, cfg->cluster_session_tombstone_ms };
		if (!(n->sessions = node_sessions_new(b, b->store, &sc))) {
			kz_error("cluster: out of memory");
			return 1;
		}
		node_sessions_hook(n->sessions, &cc);
		if (!(n->trustshare = node_trust_new(cfg))) {
			kz_error("cluster: out of memory");
			return 1;
		}
		cc.trust = node_trust_update_fn();
		cc.trust_arg = n->trustshare;
		if (kz_cluster_start(&cc, &n->cluster, why, sizeof why)) {
			kz_error("cluster: %s", why);
			return 1;
		}
		node_sessions_attach(n->sessions, n->cluster);
		node_trust_attach(n->trustshare, n->cluster);
		atomic_store(&node_trustshare, n->trustshare);
		/* what is in force here goes to the cluster when it is newer than what the cluster has */
		node_trust_crl_in_force(n->trustshare, atomic_load(&n->trust.revoked));
		node_trust_policy_in_force(n->trustshare, n->policy_seq);
		n->auditshare = node_audit_share_start(n->cluster, cfg->data_dir, cfg->node_id);
		atomic_store(&node_cluster, n->cluster);
		node_follow_set(b, n->taxii, n->cluster);
		/* refuse: an acknowledgement waits for JetStream too, and none is given without a
		 * quorum; local: acknowledged on this disk, replicated as JetStream takes it */
		b->repl_gate = !local;
		b->repl_ok = local ? NULL : node_repl_ok;
		b->repl_ctx = n->cluster;
		kz_info("cluster: replicating this node's records to JetStream at %s (stream KZ_RECORDS, %u replicas, "
			"on quorum loss: %s)", cfg->cluster_nats, cfg->cluster_replicas, local ? "local" : "refuse");
	}
	if (cfg->https_enabled) {
		n->hctx = net_tls_https_ctx(&tls, why, sizeof why);
		if (!n->hctx || node_http_create(&n->nh, n->hctx, cfg, &n->http, why, sizeof why)) {
			kz_error("HTTPS: %s", why);
			return 1;
		}
		struct node_http *nh = &n->nh;
		nh->http = n->http;
		nh->broker = b;
		snprintf(nh->log_dir, sizeof nh->log_dir, "%s", n->logdir);
		nh->cert_not_after = kz_cert_file_not_after(cfg->tls_cert);
		nh->segment_bytes = cfg->store.segment_bytes;
		nh->index_lag_max = cfg->health_index_lag;
		nh->policy_file = cfg->policy_file;
		nh->trust = &n->trust;
		nh->idl = &n->idl;
		nh->cluster = n->cluster;
		nh->sessions = n->sessions;
		nh->entities = n->entities;
		nh->tasks = n->tasks;
		nh->adapters = n->adapters;
		nh->tak = n->tak;
		nh->detect = n->detect;
		nh->ca = n->ca;
		nh->cfg = cfg;
		if (node_http_routes(nh) || taxii_routes(n->taxii, n->http) || entity_service_routes(n->entities, n->http) ||
		    task_service_routes(n->tasks, n->http) || node_detect_routes(n->detect, n->http) ||
		    (cfg->mqtt_websocket && node_mqtt_ws_route(&n->nm, n->http))) {
			kz_error("HTTPS: too many routes");
			return 1;
		}
	}
	n->enroll = (struct node_enroll){ .ca = n->ca, .max_bytes = cfg->enroll_max_bytes,
					  .timeout_ms = cfg->enroll_timeout_ms, .max_connections = cfg->enroll_max_conns,
					  .max_lifetime_s = cfg->ca_max_lifetime_s };
	n->nm = (struct node_mqtt){ .broker = b, .ctx = n->ctx, .enroll = &n->enroll };
	struct net_server_config scfg = {
		.threads = cfg->threads, .tick_ms = cfg->tick_ms, .read_budget = cfg->read_budget,
		.write_backlog = cfg->write_backlog, .handshake_timeout_ms = cfg->limits.handshake_timeout_ms,
		.max_handshakes = cfg->limits.max_handshakes,
		.max_handshakes_per_address = cfg->limits.max_handshakes_per_address,
		.close_linger_ms = cfg->limits.close_linger_ms, .fd_reserve = cfg->limits.fd_reserve,
	};
	node_mqtt_proto(&n->nm, n->mqtt_fd, n->host, &scfg.protos[scfg.n_protos++]);
	if (n->http)
		kz_http_proto(n->http, n->https_fd, n->hhost, &scfg.protos[scfg.n_protos++]);
	if (n->tak)
		node_tak_proto(n->tak, &scfg.protos[scfg.n_protos++]);
	n->mqtt_fd = n->https_fd = -1; /* the server's now, also if it fails */
	if (net_server_create(&n->srv, &scfg, why, sizeof why)) {
		kz_error("%s", why);
		return 1;
	}
	node_mqtt_attach(&n->nm, n->srv);
	net_server_run(n->srv);
	n->served = true;
	kz_info("kizuna %s serving MQTT on %s:%d with %u worker threads, data in %s", KZ_VERSION, n->host,
		n->bound_port, cfg->threads, cfg->data_dir);
	if (cfg->https_enabled)
		kz_info("HTTPS on %s:%d (HTTP/1.1 and HTTP/2: /healthz, /metrics, TAXII 2.1 at /taxii2/, entities at /api/v1/entities)", n->hhost,
			n->bound_hport);
	node_print_tour(cfg, n->host, n->bound_port, n->http ? n->bound_hport : 0, n->created == 1);
	return 0;
}

/* The main thread while the workers serve: signals, CRL polling, audit summaries, giving
 * memory back. Returns when SIGTERM or SIGINT arrives. */
static void node_run(struct node *n)
{
	const struct node_config *cfg = &n->cfg;
	kz_mem_keep_set(cfg->mem_keep_free);
	/* Start-up's transient memory (the index rebuilds' scan buffers, the PKI made on a first
	 * start, configuration and policy parsing) is free but still in the heap: give it back. */
	malloc_trim(0);
	/* The CRL is polled at half the check interval, so that a revocation reaches open
	 * connections within tls.cert_check_ms. */
	uint32_t poll_ms = cfg->cert_check_ms / 2 ? cfg->cert_check_ms / 2 : 1;
	/* the audit's summaries and gap entries are written within a second of being due */
	uint32_t wake_ms = poll_ms < 1000 ? poll_ms : 1000;
	struct timespec wake = { wake_ms / 1000, (long)(wake_ms % 1000) * 1000000L };
	uint64_t crl_polled = kz_now_mono_ms();
	for (;;) {
		int sig = sigtimedwait(&n->signals, NULL, &wake);
		if (sig < 0) {
			if (errno == EAGAIN) {
				uint64_t now = kz_now_mono_ms();
				if (now - crl_polled >= poll_ms) {
					crl_polled = now;
					crl_reissue(cfg, &n->trust);
					crl_refresh(cfg, &n->broker, &n->trust, &n->revs, false);
					crl_check_time(cfg, &n->trust, &n->revs);
				}
				kz_audit_tick(kz_audit_log); /* summaries; after write errors, the gap entry */
				/* What a flood allocated and freed (records on their way to the disk, messages
				 * between workers) stays in glibc's per-thread arenas unless given back: the
				 * node's memory would stay at its high-water mark (measured: 134 MB held for 94 kB
				 * in use after a QoS 0 flood). Up to memory.keep_free_bytes stays: trimmed every
				 * second, each TAXII POST of a few MiB faulted in 7 MB afresh (1,800 faults, a
				 * third of its time). */
				uint64_t t0 = kz_now_mono_ns();
				kz_mem_trim();
				uint64_t dt = kz_now_mono_ns() - t0;
				if (dt > 20000000)
					kz_debug("malloc_trim took %llu ms", (unsigned long long)(dt / 1000000));
			}
			continue;
		}
		if (sig == SIGHUP) {
			crl_refresh(cfg, &n->broker, &n->trust, &n->revs, false);
			policy_reload(cfg, &n->broker, &n->held);
			continue;
		}
		kz_info("%s: stopping: no new connections, disconnecting clients", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		return;
	}
}

/* Runs after the workers ended: the replicator stops (what it did not publish is published
 * at the next start), the store writes what the workers submitted, then the answers that
 * wait in the shards' inboxes are routed. */
static void node_after_join(void *arg)
{
	struct node *n = arg;
	struct mqtt_broker *b = &n->broker;
	atomic_store(&node_cluster, NULL);
	node_audit_share_stop(n->auditshare); /* its last pass needs the cluster */
	n->auditshare = NULL;
	node_adapters_close(n->adapters); /* they write records */
	n->adapters = NULL;
	node_detect_close(n->detect); /* it reads the store and writes records */
	n->detect = NULL;
	kz_cluster_stop(n->cluster); /* the threads; the records it handed to the store are written next */
	atomic_store(&node_entities, NULL);
	node_entities_attach(b, NULL, NULL);
	entity_service_close(n->entities); /* it reads the store */
	n->entities = NULL;
	task_service_stop(n->tasks); /* no more records; those written call it back: closed below */
	b->final_durable = kz_store_close(b->store);
	b->store = NULL;
	node_mqtt_drain(&n->nm);
	task_service_close(n->tasks);
	n->tasks = NULL;
}

/* Gives back what node_open took, in reverse, however far it got. */
static void node_close(struct node *n)
{
	struct mqtt_broker *b = &n->broker;
	if (n->srv) {
		net_server_stop(n->srv, node_after_join, n); /* the store closes once the workers ended */
		n->srv = NULL;
	}
	atomic_store(&node_cluster, NULL);
	node_audit_share_stop(n->auditshare);
	n->auditshare = NULL;
	node_adapters_close(n->adapters);
	n->adapters = NULL;
	node_detect_close(n->detect);
	n->detect = NULL;
	kz_cluster_stop(n->cluster); /* opened, never served; no-op once stopped */
	atomic_store(&node_entities, NULL);
	entity_service_close(n->entities); /* opened, never served (NULL once closed) */
	n->entities = NULL;
	task_service_stop(n->tasks);
	if (n->broker_init && b->store) { /* opened, never served */
		kz_store_close(b->store);
		b->store = NULL;
	}
	task_service_close(n->tasks); /* after the store: its records call it back */
	n->tasks = NULL;
	kz_cluster_free(n->cluster); /* after the store: its last answers reached the follower */
	n->cluster = NULL;
	b->share = NULL;
	node_sessions_free(n->sessions);
	n->sessions = NULL;
	atomic_store(&node_trustshare, NULL);
	node_trust_free(n->trustshare);
	n->trustshare = NULL;
	node_follow_set(b, n->taxii, NULL);
	if (n->served)
		mqtt_broker_save_sessions(b, b->final_durable);
	if (n->broker_init && b->state) {
		kz_state_close(b->state);
		b->state = NULL;
	}
	if (n->served) {
		uint64_t st[7];
		mqtt_broker_stats(b, st);
		kz_info("stopped: %llu messages in, %llu out, %llu dropped", (unsigned long long)st[0],
			(unsigned long long)st[1], (unsigned long long)st[4]);
	}
	if (n->broker_init)
		mqtt_broker_cleanup(b);
	kz_http_free(n->http);
	node_http_close(&n->nh); /* after HTTPS: its routes read it */
	node_tak_close(n->tak); /* after the workers: they used it */
	node_follow_set(NULL, NULL, NULL); /* the follower stopped with the cluster */
	taxii_close(n->taxii);
	net_tls_ctx_free(n->ctx);
	net_tls_ctx_free(n->hctx);
	for (size_t i = 0; i < n->held.n; i++)
		kz_policy_free(n->held.v[i]);
	free(n->held.v);
	kz_policy_free(n->policy);
	for (size_t i = 0; i < n->revs.n; i++)
		kz_revoked_free(n->revs.v[i]);
	free(n->revs.v);
	for (size_t i = 0; i < n->revs.n_reasons; i++)
		free(n->revs.reasons[i]);
	free(n->revs.reasons);
	kz_ca_close(n->ca);
	if (n->idl_init)
		kz_idlimits_cleanup(&n->idl);
	if (n->mqtt_fd >= 0)
		close(n->mqtt_fd);
	if (n->https_fd >= 0)
		close(n->https_fd);
	if (n->audit_open) {
		kz_audit_close(kz_audit_log);
		kz_audit_log = NULL;
	}
	if (n->lockfd >= 0)
		close(n->lockfd);
}

int node_serve_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data", required_argument, NULL, 'd' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *data = NULL;
	int check = 0, o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "c:d:kh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'd': data = optarg; break;
		case 'k': check = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kizuna serve: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	/* one node per process: static, so that its size stays off the stack */
	static struct node node;
	struct node *n = &node;
	memset(n, 0, sizeof *n);
	n->lockfd = n->mqtt_fd = n->https_fd = -1;
	struct node_config *cfg = &n->cfg;
	if (node_config_for_command(cfg, config, data, stderr))
		return 1;
	node_config_finish(cfg);
	if (cfg->policy_file[0] || cfg->policy_registry[0]) {
		if (!cfg->policy_file[0] || !cfg->policy_registry[0]) {
			fprintf(stderr, "%s: policy.file and policy.registry go together\n", config ? config : "kizuna serve");
			return 1;
		}
		if (node_policy_load(cfg, 1, &n->policy, stderr, &n->policy_seq))
			return 1;
	}
	if (check) {
		printf("%s: configuration is valid\n", config ? config : "(defaults)");
		if (n->policy)
			printf("%s: policy %s version %s: %u rules, %u identities\n", cfg->policy_file, n->policy->id,
			       n->policy->version, n->policy->n_rules, n->policy->n_ids);
		kz_policy_free(n->policy);
		return 0;
	}
	/* fan-out buffers and request bodies come and go: keep freed memory rather than hand it
	 * back and fault it in again. 32 MiB is glibc's largest mmap threshold: a TAXII body of a
	 * few MiB grows its buffer to 8 MiB, which was mmap'd afresh, page by page, every POST
	 * (BENCHMARKS.md "TAK fan-out", "TAXII ingest") */
	mallopt(M_MMAP_THRESHOLD, 32 << 20), mallopt(M_TRIM_THRESHOLD, 128 << 20);
	int rc = node_open(n);
	if (rc == 0)
		node_run(n);
	node_close(n);
	return rc;
}
