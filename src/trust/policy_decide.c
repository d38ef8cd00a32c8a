/* policy_decide.c — subjects and the decision point (policy.h): connect, subscribe, publish,
 * labelling, and who may task which agent (docs/POLICY.md, docs/TASKS.md). */
#include "trust/policy.h"
#include "trust/access.h"
#include "trust/policy_internal.h"
#include "base/kz_topic.h"

#include <stdio.h>
#include <string.h>

/* ---------- subjects and decisions ---------- */

static bool in_list(char **v, uint32_t n, const char *s)
{
	if (!s)
		return false;
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

static bool cond_holds(const struct kz_cond *c, const struct kz_subject *s)
{
	const struct kz_identity *id = s->ident;
	switch (c->what) {
	case KZ_COND_ID:
		for (uint32_t i = 0; i < c->n; i++) {
			size_t n = strlen(c->vals[i]);
			if (n && c->vals[i][n - 1] == '*' ? !strncmp(s->id, c->vals[i], n - 1) : !strcmp(s->id, c->vals[i]))
				return true;
		}
		return false;
	case KZ_COND_ORG:
		return id && in_list(c->vals, c->n, id->org);
	case KZ_COND_NATION:
		return id && in_list(c->vals, c->n, id->nation);
	case KZ_COND_KIND:
		return in_list(c->vals, c->n, s->kind);
	case KZ_COND_ROLE:
		for (uint32_t i = 0; id && i < id->n_roles; i++)
			if (in_list(c->vals, c->n, id->roles[i]))
				return true;
		return false;
	case KZ_COND_CAVEAT:
		for (uint32_t i = 0; id && i < id->n_caveats; i++)
			if (in_list(c->vals, c->n, id->caveats[i]))
				return true;
		return false;
	case KZ_COND_CLEARANCE:
		return s->level >= c->level;
	}
	return false;
}

bool kz_spiffe_kind(const char *id, char *kind, size_t kind_cap)
{
	return id && kz_policy_spiffe_ok(id, kind, kind_cap);
}

void kz_subject_init(const struct kz_policy *p, const char *spiffe_id, struct kz_subject *s)
{
	memset(s, 0, sizeof *s);
	snprintf(s->id, sizeof s->id, "%s", spiffe_id ? spiffe_id : "");
	s->level = -1;
	s->org_idx = s->nation_idx = s->id_idx = KZ_IDX_NONE;
	if (!kz_policy_spiffe_ok(s->id, s->kind, sizeof s->kind))
		s->kind[0] = 0;
	kz_spiffe_org(s->id, s->org, sizeof s->org);
	if (!p)
		return; /* no policy: the identity only (kz_may_read's sharing rules) */
	s->gen = p->gen;
	uint32_t idx = s->id[0] ? kz_policy_id_index(p, s->id) : KZ_IDX_NOBODY;
	if (idx != KZ_IDX_NOBODY) {
		const struct kz_identity *id = &p->ids[idx];
		s->ident = id;
		s->id_idx = idx;
		s->level = id->level;
		s->org_idx = id->org_idx;
		s->nation_idx = id->nation_idx;
		for (uint32_t i = 0; i < p->n_cats; i++) {
			const struct kz_category *c = &p->cats[i];
			for (uint32_t v = 0; v < c->n_values; v++) {
				bool has = c->attr == KZ_ATTR_ORG	  ? id->org && !strcmp(id->org, c->values[v])
					   : c->attr == KZ_ATTR_NATION	  ? id->nation && !strcmp(id->nation, c->values[v])
					   : c->attr == KZ_ATTR_CAVEATS ? in_list(id->caveats, id->n_caveats, c->values[v])
					   : c->attr == KZ_ATTR_ROLES	  ? in_list(id->roles, id->n_roles, c->values[v])
									  : false;
				if (has)
					s->cat[i] |= 1ull << v;
			}
		}
	}
	for (uint32_t r = 0; r < p->n_rules; r++) {
		bool all = true;
		for (uint32_t k = 0; all && k < p->rules[r].n_conds; k++)
			all = cond_holds(&p->rules[r].conds[k], s);
		if (all)
			s->rules_mask[r / 64] |= 1ull << (r % 64);
	}
}

static inline bool rule_for(const struct kz_subject *s, uint32_t r)
{
	return (s->rules_mask[r / 64] >> (r % 64)) & 1;
}

bool kz_policy_connect(const struct kz_policy *p, const struct kz_subject *s, const char **why)
{
	for (uint32_t r = 0; r < p->n_rules; r++)
		if ((p->rules[r].actions & KZ_ACT_CONNECT) && rule_for(s, r))
			return true;
	*why = "no rule allows this subject to connect";
	return false;
}

bool kz_policy_subscribe(const struct kz_policy *p, const struct kz_subject *s, const char *filter, size_t n,
			 const char **why)
{
	if (!kz_policy_inbox_ok(s, filter, n, why))
		return false;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct kz_rule *ru = &p->rules[r];
		if ((ru->actions & KZ_ACT_SUBSCRIBE) && rule_for(s, r) &&
		    kz_filter_covers(ru->filter, ru->filter_len, filter, n))
			return true;
	}
	*why = "no rule allows this subject to subscribe to this filter";
	return false;
}


bool kz_policy_publish(const struct kz_policy *p, const struct kz_subject *s, const char *topic, size_t n,
		       const struct kz_label **dflt, const char **dflt_text, const char **why)
{
	bool allowed = false;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct kz_rule *ru = &p->rules[r];
		if (!(ru->actions & KZ_ACT_PUBLISH) || !rule_for(s, r) ||
		    !kz_topic_match((const uint8_t *)ru->filter, ru->filter_len, (const uint8_t *)topic, n))
			continue;
		if (ru->has_label) {
			*dflt = &ru->label;
			*dflt_text = ru->label_text;
			return true;
		}
		allowed = true;
	}
	if (!allowed) {
		*why = "no rule allows this subject to publish to this topic";
		return false;
	}
	*dflt = &p->default_label;
	*dflt_text = p->default_text;
	return true;
}

bool kz_policy_may_label(const struct kz_policy *p, const struct kz_subject *s, const struct kz_label *l,
			 const char **why)
{
	struct kz_label tmp = *l;
	tmp.naud = 0;
	if (!kz_dominates(p, s, &tmp, why)) {
		*why = s->level < (int)l->level ? "label above the publisher's clearance"
		       : "label outside the publisher's own categories or releasability";
		return false;
	}
	return true;
}

static bool kind_listed(const char *list, const char *kind)
{
	return !strcmp(list, "*") || kz_list_has(list, kind);
}

bool kz_policy_task(const struct kz_policy *p, const struct kz_subject *tasker, const struct kz_subject *agent,
		    const char *kind, const char **why)
{
	bool some = false;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct kz_rule *ru = &p->rules[r];
		if (!(ru->actions & KZ_ACT_TASK) || !rule_for(tasker, r) || !kind_listed(ru->filter, kind))
			continue;
		some = true;
		bool all = true;
		for (uint32_t k = 0; all && k < ru->n_agent_conds; k++)
			all = cond_holds(&ru->agent_conds[k], agent);
		if (all)
			return true;
	}
	*why = some ? "no task rule lets this tasker task this agent with this kind"
		    : "no task rule lets this tasker give tasks of this kind";
	return false;
}

#define INBOX "kz/agent/"
bool kz_policy_inbox_ok(const struct kz_subject *s, const char *filter, size_t n, const char **why)
{
	size_t pl = sizeof INBOX - 1;
	if (n <= pl || memcmp(filter, INBOX, pl))
		return true;
	/* The identity's four levels (TD/ORG/KIND/NAME); a wildcard among them is a watcher's
	 * filter (kz/agent/#, kz/agent/+/mod/+/+/tasks): the rules decide. */
	const char *rest = filter + pl;
	size_t rn = n - pl, end = 0;
	for (int level = 0; level < 4; level++) {
		size_t b = end;
		while (end < rn && rest[end] != '/')
			end++;
		if (end - b == 1 && (rest[b] == '+' || rest[b] == '#'))
			return true;
		if (level < 3) {
			if (end == rn)
				break; /* fewer than four levels: no identity's inbox */
			end++;
		}
	}
	const char *own = strncmp(s->id, "spiffe://", 9) ? "" : s->id + 9;
	if (strlen(own) == end && !memcmp(rest, own, end))
		return true;
	*why = "kz/agent/<identity>/ is that agent's own inbox";
	return false;
}
