/* access.h — the one decision point for records: may subject S read record R through path
 * P, and with which label may it write one. MQTT (every delivery), TAXII (every object),
 * `kizuna query --as` and every coming service ask here; none decides by itself. The label
 * grammar and its canonical text live in label.c (kz_label_parse) and here (the sharing
 * part a service composes: TLP and audience by name).
 *
 * A label has two parts:
 *  - the policy's (classification, categories; with a policy also tlp and aud, compiled
 *    against the registry): the subject must dominate it (kz_dominates, docs/POLICY.md);
 *  - the sharing part (TLP 2.0 and an audience of org:NAME and id:SPIFFE-ID, by name), which
 *    a service keeps with its records whether or not a policy is in force (TAXII,
 *    docs/TAXII.md "Who sees what"). */
#ifndef KZ_ACCESS_H
#define KZ_ACCESS_H

#include "trust/policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The paths a record leaves the node by. */
enum kz_path {
	KZ_PATH_DELIVERY = 1, /* an MQTT delivery: the subscription's filter was decided at SUBSCRIBE */
	KZ_PATH_QUERY,        /* a query or an export: no subscription, the topic is decided here */
	KZ_PATH_SERVICE,      /* a service's own view (TAXII): the collection was decided by the
			       * service's access lists; the sharing part applies */
};

/* The sharing part of a label, by name. */
struct kz_share {
	uint8_t tlp;                         /* enum kz_tlp */
	uint8_t n_orgs, n_ids;
	char *orgs[KZ_LABEL_MAX_AUD];        /* lower case; owned (kz_share_split) */
	char *ids[KZ_LABEL_MAX_AUD];
};

/* What a decision needs of a record. */
struct kz_record_facts {
	const uint8_t *topic;          /* KZ_PATH_QUERY: the record's topic */
	size_t topic_len;
	const struct kz_label *label;  /* the policy's part, compiled under the policy in force;
					* NULL: it does not parse (denied). Unlabelled records are
					* passed the policy's default_label. */
	const struct kz_share *share;  /* KZ_PATH_SERVICE: the sharing part; NULL: none */
	const char *author;            /* KZ_PATH_SERVICE: who wrote the record (SPIFFE ID) */
};

/* May s (compiled against p; p NULL: no policy is in force) read the record through path?
 * On deny, *why (static text) says which rule failed. */
bool kz_may_read(const struct kz_policy *p, const struct kz_subject *s, enum kz_path path,
		 const struct kz_record_facts *f, const char **why);

/* May s write a record on topic (n bytes)? label (n_label bytes; NULL: none given) is the
 * label the writer asks for; it must parse under p and s must dominate it, audience aside
 * (kz_policy_may_label); without one the record gets the topic's default label (the first
 * allowing publish rule's, else the policy's). On KZ_WRITE_OK, *lab and canon (cap >=
 * KZ_LABEL_MAX_LEN + 1, *canon_len bytes) are the record's label. On refusal why (why_len)
 * says why: KZ_WRITE_DENIED, no rule lets s publish on topic; KZ_WRITE_LABEL_DENIED, s may not
 * give that label; KZ_WRITE_BAD_LABEL, the label is malformed or names what the policy does
 * not know. */
enum kz_write { KZ_WRITE_OK = 0, KZ_WRITE_DENIED, KZ_WRITE_LABEL_DENIED, KZ_WRITE_BAD_LABEL };
enum kz_write kz_may_write(const struct kz_policy *p, const struct kz_subject *s, const char *topic, size_t n,
			   const char *label, size_t n_label, struct kz_label *lab, char *canon, size_t *canon_len,
			   char *why, size_t why_len);

/* Splits a label's text into its policy part (into base, cap base_cap, parts in their
 * order) and its sharing part (into sh, which then owns strings: kz_share_free). -1 when out
 * of memory or base is too small. */
int kz_share_split(const char *label, struct kz_share *sh, char *base, size_t base_cap);
void kz_share_free(struct kz_share *sh);

/* A Kizuna-Audience header in canonical form into a (cap n): entries org:NAME (lower case)
 * and id:SPIFFE-ID (scheme and trust domain lower case, the path as given), sorted, repeats
 * removed, joined by ','; *cnt: the number of entries. -1 with *why when malformed. */
int kz_audience_canon(const char *text, char *a, size_t n, size_t *cnt, const char **why);

/* The label text a service writes for a record by author at TLP tlp: the policy
 * part base, then tlp=, then aud= — the audience asked for (Kizuna-Audience text, may be
 * NULL), or by default the author's organisation (TLP:AMBER, AMBER+STRICT) or the author
 * alone (TLP:RED). TLP:CLEAR and GREEN carry no audience. -1 with *why when the audience is
 * malformed or AMBER+STRICT does not name exactly one organisation. */
int kz_share_label(const char *base, int tlp, const char *audience, const struct kz_subject *author, char *out,
		   size_t n, const char **why);
/* The least label at least as strict as both a and b (label texts; docs/POLICY.md "Joining
 * labels"): the higher classification and TLP, restrictive and informative values of either,
 * permissive values and audience entries of both. p NULL: no policy is in force (the policy
 * parts must then be equal or one empty). out (cap >= KZ_LABEL_MAX_LEN + 1) receives it,
 * canonical under p. -1 with *why when no label is that strict and still readable by
 * someone (no releasability or audience in common) or a label does not parse. */
int kz_label_join(const struct kz_policy *p, const char *a, const char *b, char *out, size_t cap, const char **why);

/* The subject's organisation: the registry's, else its SPIFFE ID's (lower case). The
 * string lives in s or in the policy. */
const char *kz_subject_org(const struct kz_subject *s);

/* The organisation of spiffe://<domain>/<org>/<kind>/<name>, lower case ("" when not of
 * that shape). */
void kz_spiffe_org(const char *id, char *org, size_t n);

#endif
