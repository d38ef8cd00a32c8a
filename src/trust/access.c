/* access.c — the decision point for records (access.h). */
#include "trust/access.h"
#include "base/kz_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *lower(char *s)
{
	for (char *q = s; q && *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	return s;
}

void kz_spiffe_org(const char *id, char *org, size_t n)
{
	org[0] = 0;
	if (!id || strncmp(id, "spiffe://", 9) != 0)
		return;
	const char *a = strchr(id + 9, '/');
	const char *b = a ? strchr(a + 1, '/') : NULL;
	if (a && b && (size_t)(b - a - 1) < n)
		snprintf(org, n, "%.*s", (int)(b - a - 1), a + 1);
	lower(org);
}

const char *kz_subject_org(const struct kz_subject *s)
{
	if (s->ident && s->ident->org)
		return s->ident->org;
	return s->org;
}

/* TLP 2.0 sharing by name (docs/TAXII.md "Who sees what"): CLEAR and GREEN are for
 * everyone the rest of the decision lets in; the author always sees what it wrote; AMBER
 * goes to the author's organisation and the audience; AMBER+STRICT to one organisation
 * only; RED to the audience only. */
static bool share_allows(const struct kz_subject *s, const struct kz_share *sh, const char *author)
{
	if (sh->tlp <= KZ_TLP_GREEN)
		return true;
	if (author && strcmp(author, s->id) == 0)
		return true;
	char aob[128];
	const char *org = kz_subject_org(s);
	kz_spiffe_org(author, aob, sizeof aob);
	if (sh->tlp == KZ_TLP_AMBER_STRICT)
		return strcmp(sh->n_orgs ? sh->orgs[0] : aob, org) == 0;
	if (sh->tlp == KZ_TLP_AMBER && org[0] && strcmp(aob, org) == 0)
		return true;
	for (uint32_t i = 0; i < sh->n_orgs; i++)
		if (org[0] && strcmp(sh->orgs[i], org) == 0)
			return true;
	for (uint32_t i = 0; i < sh->n_ids; i++)
		if (strcmp(sh->ids[i], s->id) == 0)
			return true;
	return false;
}

bool kz_may_read(const struct kz_policy *p, const struct kz_subject *s, enum kz_path path,
		 const struct kz_record_facts *f, const char **why)
{
	*why = NULL;
	if (p) {
		if (path == KZ_PATH_QUERY && !kz_policy_subscribe(p, s, (const char *)f->topic, f->topic_len, why)) {
			*why = "no rule allows this subject to subscribe to the record's topic";
			return false;
		}
		if (!f->label) {
			*why = "the record's label is not valid under the policy in force";
			return false;
		}
		if (!kz_dominates(p, s, f->label, why))
			return false;
	}
	if (path == KZ_PATH_SERVICE && f->share && !share_allows(s, f->share, f->author)) {
		*why = "not among those the record's TLP and audience share it with";
		return false;
	}
	return true;
}

enum kz_write kz_may_write(const struct kz_policy *p, const struct kz_subject *s, const char *topic, size_t n,
			   const char *label, size_t n_label, struct kz_label *lab, char *canon, size_t *canon_len,
			   char *why, size_t why_len)
{
	const struct kz_label *dl;
	const char *dt, *w = "no subject";
	if (!s || !kz_policy_publish(p, s, topic, n, &dl, &dt, &w)) {
		snprintf(why, why_len, "%s", w);
		return KZ_WRITE_DENIED;
	}
	if (!label) {
		*lab = *dl;
		*canon_len = strlen(dt);
		memcpy(canon, dt, *canon_len + 1);
		return KZ_WRITE_OK;
	}
	char w2[160];
	if (kz_label_parse(p, label, n_label, lab, canon, canon_len, w2, sizeof w2)) {
		snprintf(why, why_len, "%s", w2);
		return KZ_WRITE_BAD_LABEL;
	}
	if (!kz_policy_may_label(p, s, lab, &w)) {
		snprintf(why, why_len, "%s", w);
		return KZ_WRITE_LABEL_DENIED;
	}
	return KZ_WRITE_OK;
}

void kz_share_free(struct kz_share *sh)
{
	for (uint32_t i = 0; i < sh->n_orgs; i++)
		free(sh->orgs[i]);
	for (uint32_t i = 0; i < sh->n_ids; i++)
		free(sh->ids[i]);
	memset(sh, 0, sizeof *sh);
}

int kz_share_split(const char *label, struct kz_share *sh, char *base, size_t base_cap)
{
	memset(sh, 0, sizeof *sh);
	size_t n = strlen(label);
	char *buf = malloc(n + 1);
	if (!buf || base_cap == 0) {
		free(buf);
		return -1;
	}
	memcpy(buf, label, n + 1);
	base[0] = 0;
	size_t bl = 0;
	int rc = 0;
	char *sv = NULL;
	for (char *part = strtok_r(buf, ";", &sv); part && !rc; part = strtok_r(NULL, ";", &sv)) {
		if (strncmp(part, "tlp=", 4) == 0) {
			for (int k = KZ_TLP_CLEAR; k <= KZ_TLP_RED; k++)
				if (strcmp(part + 4, kz_tlp_name((enum kz_tlp)k)) == 0)
					sh->tlp = (uint8_t)k;
		} else if (strncmp(part, "aud=", 4) == 0) {
			char *sv2 = NULL;
			for (char *tok = strtok_r(part + 4, ",", &sv2); tok && !rc; tok = strtok_r(NULL, ",", &sv2)) {
				char *v = NULL;
				if (strncmp(tok, "org:", 4) == 0 && sh->n_orgs < KZ_LABEL_MAX_AUD) {
					if ((v = lower(strdup(tok + 4))))
						sh->orgs[sh->n_orgs++] = v;
				} else if (strncmp(tok, "id:", 3) == 0 && sh->n_ids < KZ_LABEL_MAX_AUD) {
					if ((v = strdup(tok + 3)))
						sh->ids[sh->n_ids++] = v;
				} else {
					continue; /* nation: is the policy's (registry) business */
				}
				rc = v ? 0 : -1;
			}
		} else {
			int w = snprintf(base + bl, base_cap - bl, "%s%s", bl ? ";" : "", part);
			if (w < 0 || (size_t)w >= base_cap - bl)
				rc = -1;
			else
				bl += (size_t)w;
		}
	}
	free(buf);
	if (rc)
		kz_share_free(sh);
	return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int kz_audience_canon(const char *text, char *a, size_t n, size_t *cnt, const char **why)
{
	char buf[900], *ent[KZ_LABEL_MAX_AUD];
	size_t k = 0;
	if (strlen(text) >= sizeof buf) {
		*why = "Kizuna-Audience: too long";
		return -1;
	}
	snprintf(buf, sizeof buf, "%s", text);
	char *sv = NULL;
	for (char *tok = strtok_r(buf, ", \t", &sv); tok; tok = strtok_r(NULL, ", \t", &sv)) {
		char *colon = strchr(tok, ':');
		if (!colon || colon[1] == 0) {
			*why = "Kizuna-Audience: entries are org:NAME or id:SPIFFE-ID";
			return -1;
		}
		*colon = 0;
		lower(tok);
		*colon = ':';
		if (strncmp(tok, "org:", 4) == 0) {
			lower(tok + 4);
		} else if (strncmp(tok, "id:", 3) == 0 && strncasecmp(tok + 3, "spiffe://", 9) == 0) {
			char *path = strchr(tok + 12, '/');
			if (path)
				*path = 0;
			lower(tok + 3);
			if (path)
				*path = '/';
		} else {
			*why = "Kizuna-Audience: entries are org:NAME or id:SPIFFE-ID";
			return -1;
		}
		bool dup = false;
		for (size_t i = 0; i < k; i++)
			dup = dup || strcmp(ent[i], tok) == 0;
		if (dup)
			continue;
		if (k == KZ_LABEL_MAX_AUD) {
			*why = "Kizuna-Audience: at most 8 entries";
			return -1;
		}
		ent[k++] = tok;
	}
	qsort(ent, k, sizeof *ent, cmp_str);
	size_t len = 0;
	a[0] = 0;
	for (size_t i = 0; i < k; i++) {
		len += (size_t)snprintf(a + len, len < n ? n - len : 0, "%s%s", i ? "," : "", ent[i]);
		if (len >= n) {
			*why = "Kizuna-Audience: too long";
			return -1;
		}
	}
	*cnt = k;
	return 0;
}

int kz_share_label(const char *base, int tlp, const char *audience, const struct kz_subject *author, char *out,
		   size_t n, const char **why)
{
	/* canonical order (label.c): the policy's part, then tlp, then aud */
	size_t bl = (size_t)snprintf(out, n, "%s", base);
	if (bl >= n)
		bl = n - 1;
	out += bl;
	n -= bl;
	const char *sep = bl ? ";" : "";
	if (tlp <= KZ_TLP_GREEN) {
		if (tlp > KZ_TLP_NONE)
			snprintf(out, n, "%stlp=%s", sep, kz_tlp_name((enum kz_tlp)tlp));
		else
			out[0] = 0;
		return 0;
	}
	char a[900] = "";
	if (audience) {
		size_t cnt = 0;
		if (kz_audience_canon(audience, a, sizeof a, &cnt, why))
			return -1;
		if (tlp == KZ_TLP_AMBER_STRICT && (cnt != 1 || strncmp(a, "org:", 4) != 0)) {
			*why = "TLP:AMBER+STRICT stays within one organisation: Kizuna-Audience must name exactly one org:NAME";
			return -1;
		}
	}
	if (!a[0]) {
		if (tlp == KZ_TLP_RED)
			snprintf(a, sizeof a, "id:%s", author->id);
		else
			snprintf(a, sizeof a, "org:%s", kz_subject_org(author));
	}
	snprintf(out, n, "%stlp=%s;aud=%s", sep, kz_tlp_name((enum kz_tlp)tlp), a);
	return 0;
}
