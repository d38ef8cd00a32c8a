/* policy.h — labels, subjects, the policy file, the identity registry and the one decision
 * point (docs/POLICY.md).
 *
 * A policy snapshot (struct kz_policy) is built from two files, the policy and the identity
 * registry, and is immutable once built: readers on any thread use it without locks. A
 * reload builds a new snapshot with the next generation number; things compiled against a
 * snapshot (labels, subjects) carry its generation and are recompiled when it changes.
 *
 * Labels (ARCHITECTURE.md "Labels"): a policy id; a classification, one of the policy's
 * ordered levels; categories, each RESTRICTIVE (the subject must hold every value),
 * PERMISSIVE (at least one) or INFORMATIVE (no effect); TLP 2.0; and an audience (required
 * for TLP RED and AMBER+STRICT: the subject must be one of it). Text form, one line:
 *   policy=jp-mod;class=secret;rel=jpn,usa;caveat=cyber;tlp=amber+strict;aud=org:meti
 * A compiled label is a few bitsets, so that a decision is a handful of AND operations. */
#ifndef KZ_POLICY_H
#define KZ_POLICY_H

#include "base/kz_topic.h" /* kz_filter_covers */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KZ_POL_MAX_LEVELS 32
#define KZ_POL_MAX_CATS 8
#define KZ_POL_MAX_VALUES 64 /* per restrictive or permissive category: one bit each */
#define KZ_LABEL_MAX_AUD 8
#define KZ_LABEL_MAX_LEN 1024 /* text form, bytes */
#define KZ_POL_NAME_MAX 64    /* policy id, level, category and value names */

enum kz_cat_kind { KZ_CAT_RESTRICTIVE = 1, KZ_CAT_PERMISSIVE, KZ_CAT_INFORMATIVE };
/* The subject attribute a category's values are compared with. */
enum kz_attr { KZ_ATTR_NONE = 0, KZ_ATTR_ORG, KZ_ATTR_NATION, KZ_ATTR_CAVEATS, KZ_ATTR_ROLES };
enum kz_tlp { KZ_TLP_NONE = 0, KZ_TLP_CLEAR, KZ_TLP_GREEN, KZ_TLP_AMBER, KZ_TLP_AMBER_STRICT, KZ_TLP_RED };
enum kz_aud_kind { KZ_AUD_ORG = 1, KZ_AUD_NATION, KZ_AUD_ID };
#define KZ_IDX_NOBODY UINT32_MAX       /* a label names someone the registry does not know */
#define KZ_IDX_NONE (UINT32_MAX - 1u)  /* a subject without this attribute */

/* Actions of policy rules. */
enum { KZ_ACT_CONNECT = 1, KZ_ACT_PUBLISH = 2, KZ_ACT_SUBSCRIBE = 4, KZ_ACT_TASK = 8 };

struct kz_label {
	uint64_t cat[KZ_POL_MAX_CATS]; /* bit v: the label carries value v of category i */
	uint64_t hash;                 /* of the canonical text: key for decision caches */
	uint32_t gen;                  /* generation of the policy compiled against */
	uint8_t level;
	uint8_t tlp;                   /* enum kz_tlp */
	uint8_t naud;
	uint8_t aud_kind[KZ_LABEL_MAX_AUD];
	uint32_t aud_idx[KZ_LABEL_MAX_AUD]; /* index in the policy's orgs/nations/ids, or NOBODY */
};

struct kz_category {
	char name[KZ_POL_NAME_MAX];
	enum kz_cat_kind kind;
	enum kz_attr attr;
	char (*values)[KZ_POL_NAME_MAX]; /* owns; declaration order = bit order */
	uint32_t n_values;
};

/* One identity of the registry. */
struct kz_identity {
	char *id;            /* owns; SPIFFE ID */
	char *org, *nation;  /* owns; may be NULL */
	char **caveats, **roles; /* owns */
	uint32_t n_caveats, n_roles;
	int level;           /* clearance; -1 = none */
	uint32_t org_idx, nation_idx; /* in the policy's orgs/nations */
	int line;
};

/* A subject condition of a rule: all of a rule's conditions must hold; the values of one
 * condition are alternatives. */
enum kz_cond_what { KZ_COND_ID = 1, KZ_COND_ORG, KZ_COND_NATION, KZ_COND_KIND, KZ_COND_ROLE,
		    KZ_COND_CAVEAT, KZ_COND_CLEARANCE };
struct kz_cond {
	enum kz_cond_what what;
	char **vals;         /* owns; for ID, a value ending in '*' matches by prefix */
	uint32_t n;
	int level;           /* CLEARANCE: the subject's clearance must be at least this */
};

struct kz_rule {
	unsigned actions;    /* KZ_ACT_* */
	char *filter;        /* owns; NULL for connect-only rules; a task rule's kinds ("*" or a list) */
	uint32_t filter_len;
	struct kz_cond *conds; /* owns */
	uint32_t n_conds;
	struct kz_cond *agent_conds; /* owns; a task rule's conditions on the agent tasked */
	uint32_t n_agent_conds;
	bool has_label;
	struct kz_label label; /* default label of publishes it allows */
	char *label_text;    /* owns; canonical */
	int line;
};

struct kz_policy {
	char id[KZ_POL_NAME_MAX];
	char version[96];    /* the version directive, then the files' SHA-256 prefix */
	uint32_t gen;
	char levels[KZ_POL_MAX_LEVELS][KZ_POL_NAME_MAX];
	uint32_t n_levels;
	struct kz_category cats[KZ_POL_MAX_CATS];
	uint32_t n_cats;
	uint64_t restrictive_mask, permissive_mask; /* bit i: category i is of that kind */
	struct kz_rule *rules; /* owns */
	uint32_t n_rules;
	struct kz_label default_label;
	char *default_text;  /* owns; canonical */
	struct kz_identity *ids; /* owns; sorted by id */
	uint32_t n_ids;
	char **orgs, **nations;  /* owns; sorted, the registry's values (audience indexes) */
	uint32_t n_orgs, n_nations;
	char policy_path[1024], registry_path[1024];
};

/* A connected (or stored) subject, compiled against one policy generation. */
struct kz_subject {
	char id[512];        /* SPIFFE ID; "" when none */
	uint32_t gen;
	int level;           /* -1: no clearance */
	uint64_t cat[KZ_POL_MAX_CATS]; /* the values it holds, per category */
	uint32_t org_idx, nation_idx, id_idx;
	const struct kz_identity *ident; /* registry entry, NULL when unknown */
	char kind[16];       /* from the SPIFFE ID: user, sensor, service, node */
	char org[KZ_POL_NAME_MAX]; /* from the SPIFFE ID, lower case ("" when too long); the
				    * registry's organisation is ident->org (kz_subject_org) */
	uint64_t rules_mask[4]; /* bit r: rule r's conditions hold for this subject (first 256 rules) */
};
#define KZ_POL_MAX_RULES 256

/* Loads and checks both files. Errors go to err as "file:line: message", all of them; returns
 * the number of errors (0: *out is the new snapshot with generation gen). */
int kz_policy_load(const char *policy_path, const char *registry_path, uint32_t gen, struct kz_policy **out,
		   FILE *err);
/* The same from texts in memory (the names are used in errors). */
int kz_policy_parse(const char *ptext, size_t pn, const char *policy_path, const char *rtext, size_t rn,
		    const char *registry_path, uint32_t gen, struct kz_policy **out, FILE *err);
void kz_policy_free(struct kz_policy *p);

/* Parses a label's text strictly against p and compiles it. canon (cap >= KZ_LABEL_MAX_LEN + 1)
 * receives the canonical text: keys in the order policy, class, categories (as the policy
 * declares them), tlp, aud; values in declaration order (informative ones and audiences
 * sorted); lower case except SPIFFE IDs. A missing policy= means p's. KZ_EMALFORMED with why. */
int kz_label_parse(const struct kz_policy *p, const char *s, size_t n, struct kz_label *out, char *canon,
		   size_t *canon_len, char *why, size_t why_len);

/* The index of a SPIFFE ID in p->ids, KZ_IDX_NOBODY when the registry does not have it. */
uint32_t kz_policy_id_index(const struct kz_policy *p, const char *id);

/* The kind (user, sensor, ...) of spiffe://TD/ORG/KIND/NAME into kind; false when id is not
 * of that shape. */
bool kz_spiffe_kind(const char *id, char *kind, size_t kind_cap);

/* Resolves a SPIFFE ID against the registry (unknown IDs get no attributes); p NULL: no
 * policy, the identity only. */
void kz_subject_init(const struct kz_policy *p, const char *spiffe_id, struct kz_subject *s);

/* The decision point. Each returns true to allow; on deny *why (static text) says which rule
 * of the model failed. */
bool kz_policy_connect(const struct kz_policy *p, const struct kz_subject *s, const char **why);
bool kz_policy_subscribe(const struct kz_policy *p, const struct kz_subject *s, const char *filter, size_t n,
			 const char **why);
/* May s publish on topic? On allow, *dflt is the default label for the topic: the label of
 * the first allowing rule that has one, else the policy's default label (and *dflt_text its
 * canonical text). */
bool kz_policy_publish(const struct kz_policy *p, const struct kz_subject *s, const char *topic, size_t n,
		       const struct kz_label **dflt, const char **dflt_text, const char **why);
/* May s label a record with l? The subject must dominate the label, audience aside (a
 * publisher may address TLP RED to others). */
bool kz_policy_may_label(const struct kz_policy *p, const struct kz_subject *s, const struct kz_label *l,
			 const char **why);

/* May the tasker give agent a task of this kind (docs/TASKS.md "Policy")? A task rule whose
 * kinds include kind, whose where-conditions hold for the tasker and whose agent-conditions
 * hold for the agent. */
bool kz_policy_task(const struct kz_policy *p, const struct kz_subject *tasker, const struct kz_subject *agent,
		    const char *kind, const char **why);
/* kz/agent/<SPIFFE ID without spiffe://>/... is that agent's own: a filter that names another
 * identity's there (without a wildcard in the identity) is refused whatever the rules say.
 * True when the filter is not such a filter. */
bool kz_policy_inbox_ok(const struct kz_subject *s, const char *filter, size_t n, const char **why);

/* Does the subject dominate the label (every delivery, every query result)? */
static inline bool kz_dominates(const struct kz_policy *p, const struct kz_subject *s, const struct kz_label *l,
				const char **why)
{
	if (s->level < (int)l->level) {
		*why = "clearance below the label's classification";
		return false;
	}
	for (uint32_t i = 0; i < p->n_cats; i++) {
		uint64_t lc = l->cat[i];
		if (!lc)
			continue;
		if ((p->restrictive_mask >> i) & 1) {
			if (lc & ~s->cat[i]) {
				*why = "missing a restrictive category value of the label";
				return false;
			}
		} else if ((p->permissive_mask >> i) & 1) {
			if (!(lc & s->cat[i])) {
				*why = "holds none of a permissive category's values of the label";
				return false;
			}
		}
	}
	if (l->naud) {
		for (uint32_t i = 0; i < l->naud; i++) {
			uint32_t want = l->aud_kind[i] == KZ_AUD_ORG      ? s->org_idx
					: l->aud_kind[i] == KZ_AUD_NATION ? s->nation_idx
									  : s->id_idx;
			if (l->aud_idx[i] == want)
				return true;
		}
		*why = "not in the label's audience";
		return false;
	}
	return true;
}


const char *kz_tlp_name(enum kz_tlp t);

#endif
