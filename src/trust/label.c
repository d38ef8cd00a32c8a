/* label.c — the label text form: strict parsing, canonical text, compilation to bitsets
 * (policy.h, docs/POLICY.md "Labels"). */
#include "trust/policy.h"

#include "base/kz_err.h"
#include "base/kz_hash.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tlp_names[] = { "", "clear", "green", "amber", "amber+strict", "red" };

const char *kz_tlp_name(enum kz_tlp t)
{
	return (unsigned)t < KZ_ARRAY_LEN(tlp_names) ? tlp_names[t] : "";
}

static int fail(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	return KZ_EMALFORMED;
}

/* Key and name characters: lower-case letters (upper case is folded), digits, '-', '_',
 * '.', '+'. */
static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '+';
}

/* SPIFFE ID characters (docs/SECURITY.md): the path part is [A-Za-z0-9._-] and '/'. */
static bool id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
	       c == '.' || c == '/' || c == ':';
}

/* Copies [p, p+n) folded to lower case into out (cap KZ_POL_NAME_MAX); false when a
 * character is not a name character or it is empty or too long. */
static bool fold_name(const char *p, size_t n, char *out)
{
	if (n == 0 || n >= KZ_POL_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!name_char(c))
			return false;
		out[i] = c;
	}
	out[n] = 0;
	return true;
}

static int find_name(const void *names_, uint32_t n, const char *s)
{
	const char *names = names_; /* n rows of KZ_POL_NAME_MAX */
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(names + (size_t)i * KZ_POL_NAME_MAX, s))
			return (int)i;
	return -1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint32_t lookup_sorted(char **v, uint32_t n, const char *s)
{
	char **hit = n ? bsearch(&s, v, n, sizeof *v, cmp_str) : NULL;
	return hit ? (uint32_t)(hit - v) : KZ_IDX_NOBODY;
}

static int cmp_ident(const void *a, const void *b)
{
	return strcmp((const char *)a, ((const struct kz_identity *)b)->id);
}

uint32_t kz_policy_id_index(const struct kz_policy *p, const char *id)
{
	const struct kz_identity *hit = p->n_ids ? bsearch(id, p->ids, p->n_ids, sizeof *p->ids, cmp_ident) : NULL;
	return hit ? (uint32_t)(hit - p->ids) : KZ_IDX_NOBODY;
}

struct canon {
	char *p;
	size_t n, cap;
	bool overflow;
};

static void put(struct canon *c, const char *s, size_t n)
{
	if (c->n + n >= c->cap) {
		c->overflow = true;
		return;
	}
	memcpy(c->p + c->n, s, n);
	c->n += n;
	c->p[c->n] = 0;
}

static void puts_(struct canon *c, const char *s)
{
	put(c, s, strlen(s));
}

/* One field of the text: key and its value bytes. */
struct field {
	char key[KZ_POL_NAME_MAX];
	const char *v;
	size_t vn;
};

int kz_label_parse(const struct kz_policy *p, const char *s, size_t n, struct kz_label *out, char *canon,
		   size_t *canon_len, char *why, size_t why_len)
{
	memset(out, 0, sizeof *out);
	if (n == 0)
		return fail(why, why_len, "empty label");
	if (n > KZ_LABEL_MAX_LEN)
		return fail(why, why_len, "label longer than %d bytes", KZ_LABEL_MAX_LEN);
	struct field f[4 + KZ_POL_MAX_CATS];
	size_t nf = 0;
	const char *end = s + n;
	for (const char *q = s; q <= end;) {
		const char *semi = memchr(q, ';', (size_t)(end - q));
		const char *fe = semi ? semi : end;
		const char *eq = memchr(q, '=', (size_t)(fe - q));
		if (fe == q)
			return fail(why, why_len, "empty field at byte %zu", (size_t)(q - s));
		if (!eq)
			return fail(why, why_len, "field '%.*s' has no '='", (int)(fe - q > 40 ? 40 : fe - q), q);
		if (nf == KZ_ARRAY_LEN(f))
			return fail(why, why_len, "too many fields");
		if (!fold_name(q, (size_t)(eq - q), f[nf].key))
			return fail(why, why_len, "bad key '%.*s'", (int)(eq - q > 40 ? 40 : eq - q), q);
		for (size_t i = 0; i < nf; i++)
			if (!strcmp(f[i].key, f[nf].key))
				return fail(why, why_len, "key '%s' given twice", f[nf].key);
		f[nf].v = eq + 1;
		f[nf].vn = (size_t)(fe - eq - 1);
		if (f[nf].vn == 0)
			return fail(why, why_len, "key '%s' has an empty value", f[nf].key);
		nf++;
		if (!semi)
			break;
		q = semi + 1;
		if (q == end)
			return fail(why, why_len, "label ends with ';'");
	}

	bool have_class = false;
	char tmp[KZ_POL_NAME_MAX];
	char *infos[KZ_POL_MAX_CATS][KZ_POL_MAX_VALUES]; /* informative values, sorted later */
	uint32_t n_infos[KZ_POL_MAX_CATS] = { 0 };
	char info_buf[KZ_LABEL_MAX_LEN + KZ_POL_MAX_CATS * KZ_POL_MAX_VALUES];
	size_t info_used = 0;
	char *auds[KZ_LABEL_MAX_AUD];
	char aud_buf[KZ_LABEL_MAX_LEN + KZ_LABEL_MAX_AUD * 8];
	size_t aud_used = 0;
	uint32_t n_auds = 0;
	bool cat_seen[KZ_POL_MAX_CATS] = { false };

	for (size_t k = 0; k < nf; k++) {
		const char *key = f[k].key, *v = f[k].v;
		size_t vn = f[k].vn;
		if (!strcmp(key, "policy")) {
			if (!fold_name(v, vn, tmp))
				return fail(why, why_len, "bad policy id '%.*s'", (int)(vn > 40 ? 40 : vn), v);
			if (strcmp(tmp, p->id))
				return fail(why, why_len, "label of policy '%s'; this node enforces '%s'", tmp, p->id);
		} else if (!strcmp(key, "class")) {
			int lv = fold_name(v, vn, tmp) ? find_name(p->levels, p->n_levels, tmp) : -1;
			if (lv < 0)
				return fail(why, why_len, "unknown classification '%.*s'", (int)(vn > 40 ? 40 : vn), v);
			out->level = (uint8_t)lv;
			have_class = true;
		} else if (!strcmp(key, "tlp")) {
			int t = -1;
			if (fold_name(v, vn, tmp))
				for (int i = 1; i < (int)KZ_ARRAY_LEN(tlp_names); i++)
					if (!strcmp(tmp, tlp_names[i]))
						t = i;
			if (t < 0) {
				if (fold_name(v, vn, tmp) && !strcmp(tmp, "white"))
					return fail(why, why_len, "TLP 2.0 has no WHITE: use tlp=clear");
				return fail(why, why_len, "unknown TLP '%.*s' (clear, green, amber, amber+strict, red)",
					    (int)(vn > 40 ? 40 : vn), v);
			}
			out->tlp = (uint8_t)t;
		} else if (!strcmp(key, "aud")) {
			for (const char *a = v, *ve = v + vn; a <= ve;) {
				const char *comma = memchr(a, ',', (size_t)(ve - a));
				const char *ae = comma ? comma : ve;
				size_t an = (size_t)(ae - a);
				if (an == 0)
					return fail(why, why_len, "aud: empty entry");
				if (n_auds == KZ_LABEL_MAX_AUD)
					return fail(why, why_len, "aud: more than %d entries", KZ_LABEL_MAX_AUD);
				const char *colon = memchr(a, ':', an);
				if (!colon)
					return fail(why, why_len, "aud: '%.*s' is not org:NAME, nation:NAME or id:SPIFFE-ID",
						    (int)(an > 40 ? 40 : an), a);
				char kind[KZ_POL_NAME_MAX];
				if (!fold_name(a, (size_t)(colon - a), kind))
					return fail(why, why_len, "aud: bad entry '%.*s'", (int)(an > 40 ? 40 : an), a);
				const char *val = colon + 1;
				size_t valn = (size_t)(ae - val);
				char *dst = aud_buf + aud_used;
				uint8_t ak;
				uint32_t idx;
				if (!strcmp(kind, "org") || !strcmp(kind, "nation")) {
					if (!fold_name(val, valn, tmp))
						return fail(why, why_len, "aud: bad name in '%.*s'", (int)(an > 40 ? 40 : an), a);
					ak = kind[0] == 'o' ? KZ_AUD_ORG : KZ_AUD_NATION;
					idx = ak == KZ_AUD_ORG ? lookup_sorted(p->orgs, p->n_orgs, tmp)
							       : lookup_sorted(p->nations, p->n_nations, tmp);
					aud_used += (size_t)sprintf(dst, "%s:%s", kind, tmp) + 1;
				} else if (!strcmp(kind, "id")) {
					if (valn < 10 || valn > 500 || strncmp(val, "spiffe://", 9))
						return fail(why, why_len, "aud: id:%.*s is not a SPIFFE ID", (int)(valn > 40 ? 40 : valn), val);
					for (size_t i = 0; i < valn; i++)
						if (!id_char(val[i]))
							return fail(why, why_len, "aud: bad character in id:%.*s", (int)(valn > 40 ? 40 : valn), val);
					ak = KZ_AUD_ID;
					aud_used += (size_t)sprintf(dst, "id:%.*s", (int)valn, val) + 1;
					idx = kz_policy_id_index(p, dst + 3);
				} else {
					return fail(why, why_len, "aud: unknown kind '%s' (org, nation, id)", kind);
				}
				for (uint32_t i = 0; i < n_auds; i++)
					if (!strcmp(auds[i], dst))
						return fail(why, why_len, "aud: '%s' given twice", dst);
				out->aud_kind[n_auds] = ak;
				out->aud_idx[n_auds] = idx;
				auds[n_auds++] = dst;
				if (!comma)
					break;
				a = comma + 1;
			}
		} else {
			int ci = -1;
			for (uint32_t i = 0; i < p->n_cats; i++)
				if (!strcmp(p->cats[i].name, key))
					ci = (int)i;
			if (ci < 0)
				return fail(why, why_len, "unknown category '%s'", key);
			const struct kz_category *cat = &p->cats[ci];
			cat_seen[ci] = true;
			for (const char *a = v, *ve = v + vn; a <= ve;) {
				const char *comma = memchr(a, ',', (size_t)(ve - a));
				const char *ae = comma ? comma : ve;
				if (!fold_name(a, (size_t)(ae - a), tmp))
					return fail(why, why_len, "%s: bad value '%.*s'", key,
						    (int)(ae - a > 40 ? 40 : ae - a), a);
				if (cat->kind == KZ_CAT_INFORMATIVE) {
					if (n_infos[ci] == KZ_POL_MAX_VALUES)
						return fail(why, why_len, "%s: too many values", key);
					for (uint32_t i = 0; i < n_infos[ci]; i++)
						if (!strcmp(infos[ci][i], tmp))
							return fail(why, why_len, "%s: value '%s' given twice", key, tmp);
					char *dst = info_buf + info_used;
					info_used += strlen(tmp) + 1;
					strcpy(dst, tmp);
					infos[ci][n_infos[ci]++] = dst;
				} else {
					int vi = find_name(cat->values, cat->n_values, tmp);
					if (vi < 0)
						return fail(why, why_len, "%s: unknown value '%s'", key, tmp);
					if (out->cat[ci] & (1ull << vi))
						return fail(why, why_len, "%s: value '%s' given twice", key, tmp);
					out->cat[ci] |= 1ull << vi;
				}
				if (!comma)
					break;
				a = comma + 1;
			}
		}
	}
	if (!have_class)
		return fail(why, why_len, "no class= (classification)");
	if ((out->tlp == KZ_TLP_RED || out->tlp == KZ_TLP_AMBER_STRICT) && !n_auds)
		return fail(why, why_len, "tlp=%s needs an audience (aud=org:NAME, nation:NAME or id:SPIFFE-ID)",
			    kz_tlp_name(out->tlp));

	/* The canonical text. */
	struct canon c = { canon, 0, KZ_LABEL_MAX_LEN + 1, false };
	canon[0] = 0;
	puts_(&c, "policy=");
	puts_(&c, p->id);
	puts_(&c, ";class=");
	puts_(&c, p->levels[out->level]);
	for (uint32_t i = 0; i < p->n_cats; i++) {
		if (!cat_seen[i])
			continue;
		const struct kz_category *cat = &p->cats[i];
		puts_(&c, ";");
		puts_(&c, cat->name);
		puts_(&c, "=");
		bool first = true;
		if (cat->kind == KZ_CAT_INFORMATIVE) {
			qsort(infos[i], n_infos[i], sizeof infos[i][0], cmp_str);
			for (uint32_t j = 0; j < n_infos[i]; j++) {
				if (!first)
					puts_(&c, ",");
				puts_(&c, infos[i][j]);
				first = false;
			}
		} else {
			for (uint32_t j = 0; j < cat->n_values; j++) {
				if (!(out->cat[i] & (1ull << j)))
					continue;
				if (!first)
					puts_(&c, ",");
				puts_(&c, cat->values[j]);
				first = false;
			}
		}
	}
	if (out->tlp) {
		puts_(&c, ";tlp=");
		puts_(&c, kz_tlp_name(out->tlp));
	}
	if (n_auds) {
		/* Sort the audience with its compiled entries. */
		for (uint32_t i = 1; i < n_auds; i++)
			for (uint32_t j = i; j > 0 && strcmp(auds[j - 1], auds[j]) > 0; j--) {
				char *t = auds[j];
				auds[j] = auds[j - 1];
				auds[j - 1] = t;
				uint8_t tk = out->aud_kind[j];
				out->aud_kind[j] = out->aud_kind[j - 1];
				out->aud_kind[j - 1] = tk;
				uint32_t ti = out->aud_idx[j];
				out->aud_idx[j] = out->aud_idx[j - 1];
				out->aud_idx[j - 1] = ti;
			}
		puts_(&c, ";aud=");
		for (uint32_t i = 0; i < n_auds; i++) {
			if (i)
				puts_(&c, ",");
			puts_(&c, auds[i]);
		}
	}
	if (c.overflow)
		return fail(why, why_len, "canonical label longer than %d bytes", KZ_LABEL_MAX_LEN);
	out->naud = (uint8_t)n_auds;
	out->gen = p->gen;
	out->hash = kz_hash(canon, c.n);
	*canon_len = c.n;
	return 0;
}
