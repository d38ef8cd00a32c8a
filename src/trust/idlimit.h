/* idlimit.h — per-identity limits (issue 25, docs/SECURITY.md "Per-identity limits"):
 * connections open at once, and token buckets for publishes/s, published bytes/s and HTTPS
 * requests/s, each keyed by the SPIFFE ID so that one identity cannot take the node with
 * many connections. Limits come from `limits.identity` lines: a default and overrides per
 * identity kind (user, sensor, service, node) or per registry role.
 *
 * Threading: any thread. The table is open-addressed under one mutex (taken per connection
 * and per HTTPS request, not per message); an entry, once made, lives until
 * kz_idlimits_cleanup and has its own mutex for its buckets (held for a few instructions,
 * contended only when one identity is busy on several workers at once). */
#ifndef KZ_IDLIMIT_H
#define KZ_IDLIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One set of limits; 0 means "no limit" for that quantity. */
struct kz_idlimit_rule {
	char who[64];           /* "default", a kind ("sensor") or "role=NAME" */
	uint32_t connections;   /* open at once */
	uint32_t publish_rate;  /* PUBLISH packets per second (burst: one second's worth) */
	uint64_t publish_bytes; /* payload bytes per second (burst: one second's worth) */
	uint32_t https_rate;    /* HTTPS requests per second */
};

/* Parses "WHO [connections=N] [publish_rate=N] [publish_bytes=SIZE] [https_rate=N]". */
int kz_idlimit_rule_parse(const char *text, struct kz_idlimit_rule *r, const char **why);

enum kz_idlimit_kind { KZ_IDL_PUBLISH, KZ_IDL_BYTES, KZ_IDL_HTTPS, KZ_IDL_CONN, KZ_IDL_N };

struct kz_idlimit_bucket {
	double tokens;
	uint64_t last_ns;
};

struct kz_idlimit_entry {
	char *id;                    /* owns */
	struct kz_idlimit_rule lim;  /* resolved when the entry was made (or the rules changed) */
	uint32_t rules_gen;
	pthread_mutex_t lock;
	uint32_t conns;
	struct kz_idlimit_bucket b[3];
	atomic_uint_fast64_t throttled[KZ_IDL_N]; /* refusals, for /metrics */
	uint64_t unreported;         /* refusals not yet in the audit log */
	uint64_t reported_ns;
};

struct kz_idlimits {
	pthread_mutex_t lock;        /* inserts and rule changes */
	_Atomic(struct kz_idlimit_entry *) *slot; /* owns [cap] */
	uint32_t cap, n, max_ids;
	struct kz_idlimit_rule *rules; /* owns; [0] is the default */
	size_t n_rules;
	uint32_t gen;
};

/* max_ids caps the table (identities beyond it share no entry and get the default limits
 * enforced on a shared overflow entry). rules: copied; the first whose who is "default"
 * is the default (none: built-in defaults). */
int kz_idlimits_init(struct kz_idlimits *l, const struct kz_idlimit_rule *rules, size_t n, uint32_t max_ids);
void kz_idlimits_cleanup(struct kz_idlimits *l);

/* The entry of id (made on first use); its kind and, when s (its subject under the policy) is
 * given, its registry roles pick the rule. NULL only when out of memory (no limits then). */
struct kz_subject;
struct kz_idlimit_entry *kz_idlimits_get(struct kz_idlimits *l, const char *id, const struct kz_subject *s);

/* A new connection of the identity: false (and counted) when it already has as many as its
 * limit allows. kz_idlimit_disconnected undoes a connection that was allowed. */
bool kz_idlimit_connect(struct kz_idlimit_entry *e);
void kz_idlimit_disconnected(struct kz_idlimit_entry *e);
/* Takes n tokens from bucket kind at now_ns: false (and counted) when there are not enough. */
bool kz_idlimit_take(struct kz_idlimit_entry *e, enum kz_idlimit_kind kind, uint64_t n, uint64_t now_ns);
/* Both publish buckets at once (one PUBLISH of bytes payload bytes): the hot path. */
bool kz_idlimit_take_publish(struct kz_idlimit_entry *e, uint64_t bytes, uint64_t now_ns);
/* Refusals since the last call, at most once per interval_ns: the count to audit as one
 * summary (0: nothing to say yet). */
uint64_t kz_idlimit_report(struct kz_idlimit_entry *e, uint64_t now_ns, uint64_t interval_ns);
/* Calls fn for every entry (for /metrics). */
void kz_idlimits_each(struct kz_idlimits *l, void (*fn)(void *ctx, const struct kz_idlimit_entry *e), void *ctx);

#endif
