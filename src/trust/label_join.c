/* label_join.c — the least label that is at least as strict as two others (access.h,
 * kz_label_join; docs/POLICY.md "Joining labels"): what a record derived from two records
 * carries, a sighting from an indicator and a sensor's event (docs/DETECTION.md).
 *
 *   classification        the higher
 *   restrictive category  every value of either (the reader must hold them all)
 *   permissive category   the values both have (the reader must hold one of them); one
 *                         side only: its values; both, none in common: no label (refused)
 *   informative category  every value of either
 *   TLP                   the higher (CLEAR < GREEN < AMBER < AMBER+STRICT < RED)
 *   audience              one side only: its entries; both: the entries both name, and an
 *                         id:X of one side whose organisation the other names as org:;
 *                         none in common: no label (refused)
 *
 * Without a policy in force the policy parts must be equal (or one empty). With one, an
 * empty policy part stands for the policy's default label, and the result is parsed again
 * (kz_label_parse) so that it is canonical and known to be valid. */
#include "trust/access.h"
#include "base/kz_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOIN_MAX_FIELDS (4 + KZ_POL_MAX_CATS)

struct jfield {
	char key[KZ_POL_NAME_MAX];
	const char *v;
	size_t vn;
};

/* The fields of a label's text (key=value;...). The number, -1 when malformed. */
static int fields(const char *s, struct jfield *f)
{
	int n = 0;
	while (*s) {
		const char *semi = strchr(s, ';'), *e = semi ? semi : s + strlen(s);
		const char *eq = memchr(s, '=', (size_t)(e - s));
		if (!eq || eq == s || (size_t)(eq - s) >= KZ_POL_NAME_MAX || n == JOIN_MAX_FIELDS)
			return -1;
		memcpy(f[n].key, s, (size_t)(eq - s));
		f[n].key[eq - s] = 0;
		f[n].v = eq + 1;
		f[n].vn = (size_t)(e - eq - 1);
		n++;
		s = semi ? semi + 1 : e;
	}
	return n;
}

static const struct jfield *find(const struct jfield *f, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(f[i].key, key))
			return &f[i];
	return NULL;
}

/* Is the comma-separated list (v, vn) holding the entry (e, en)? */
static bool has(const char *v, size_t vn, const char *e, size_t en)
{
	for (const char *p = v, *end = v + vn; p < end;) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t l = (size_t)((c ? c : end) - p);
		if (l == en && !memcmp(p, e, en))
			return true;
		p = c ? c + 1 : end;
	}
	return false;
}

static int put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
	if (*len + n + 1 > cap)
		return -1;
	memcpy(out + *len, s, n);
	*len += n;
	out[*len] = 0;
	return 0;
}

/* The entries of a (an) that b (bn) also has, or that are an id:X whose organisation b
 * names, appended to out (comma-separated). */
static int aud_common(const char *a, size_t an, const char *b, size_t bn, char *out, size_t cap, size_t *len)
{
	for (const char *p = a, *end = a + an; p < end;) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t l = (size_t)((c ? c : end) - p);
		bool keep = has(b, bn, p, l);
		if (!keep && l > 3 && !memcmp(p, "id:", 3)) {
			char id[600], org[KZ_POL_NAME_MAX + 8] = "org:";
			snprintf(id, sizeof id, "%.*s", (int)(l - 3), p + 3);
			kz_spiffe_org(id, org + 4, sizeof org - 4);
			keep = org[4] && has(b, bn, org, strlen(org));
		}
		if (keep && !has(out, *len, p, l) &&
		    ((*len && put(out, cap, len, ",", 1)) || put(out, cap, len, p, l)))
			return -1;
		p = c ? c + 1 : end;
	}
	return 0;
}

/* The sharing parts: tlp and aud. */
static int join_share(const struct jfield *fa, int na, const struct jfield *fb, int nb, char *out, size_t cap,
		      size_t *len, const char **why)
{
	int ta = 0, tb = 0;
	const struct jfield *x;
	for (int k = KZ_TLP_CLEAR; k <= KZ_TLP_RED; k++) {
		const char *name = kz_tlp_name((enum kz_tlp)k);
		if ((x = find(fa, na, "tlp")) && x->vn == strlen(name) && !memcmp(x->v, name, x->vn))
			ta = k;
		if ((x = find(fb, nb, "tlp")) && x->vn == strlen(name) && !memcmp(x->v, name, x->vn))
			tb = k;
	}
	int t = ta > tb ? ta : tb;
	if (t) {
		const char *name = kz_tlp_name((enum kz_tlp)t);
		if ((*len && put(out, cap, len, ";", 1)) || put(out, cap, len, "tlp=", 4) ||
		    put(out, cap, len, name, strlen(name)))
			goto long_;
	}
	const struct jfield *aa = find(fa, na, "aud"), *ab = find(fb, nb, "aud");
	if (!aa && !ab)
		return 0;
	if ((*len && put(out, cap, len, ";", 1)) || put(out, cap, len, "aud=", 4))
		goto long_;
	if (aa && ab) {
		char common[KZ_LABEL_MAX_LEN + 1] = "";
		size_t cl = 0;
		if (aud_common(aa->v, aa->vn, ab->v, ab->vn, common, sizeof common, &cl) ||
		    aud_common(ab->v, ab->vn, aa->v, aa->vn, common, sizeof common, &cl))
			goto long_;
		if (!cl) {
			*why = "the two labels' audiences have no one in common";
			return -1;
		}
		if (put(out, cap, len, common, cl))
			goto long_;
	} else if (put(out, cap, len, (aa ? aa : ab)->v, (aa ? aa : ab)->vn)) {
		goto long_;
	}
	return 0;
long_:
	*why = "the joined label is too long";
	return -1;
}

/* The policy parts, under p: base texts a and b (canonical or not; "" is the default). */
static int join_policy(const struct kz_policy *p, const char *a, const char *b, char *out, size_t cap, size_t *len,
		       const char **why)
{
	char ca[KZ_LABEL_MAX_LEN + 1], cb[KZ_LABEL_MAX_LEN + 1], w[200];
	struct kz_label la, lb;
	size_t cn;
	struct kz_share sh;
	char dbase[KZ_LABEL_MAX_LEN + 1] = "";
	if ((!a[0] || !b[0]) && p->default_text && kz_share_split(p->default_text, &sh, dbase, sizeof dbase) == 0)
		kz_share_free(&sh);
	if (!a[0])
		a = dbase;
	if (!b[0])
		b = dbase;
	if (!a[0] || !b[0]) {
		if (put(out, cap, len, a[0] ? a : b, strlen(a[0] ? a : b)))
			goto long_;
		return 0;
	}
	if (kz_label_parse(p, a, strlen(a), &la, ca, &cn, w, sizeof w) ||
	    kz_label_parse(p, b, strlen(b), &lb, cb, &cn, w, sizeof w)) {
		*why = "a label does not parse under the policy in force";
		return -1;
	}
	struct jfield fa[JOIN_MAX_FIELDS], fb[JOIN_MAX_FIELDS];
	int na = fields(ca, fa), nb = fields(cb, fb);
	if (na < 0 || nb < 0) {
		*why = "a label does not parse under the policy in force";
		return -1;
	}
	const char *level = p->levels[la.level > lb.level ? la.level : lb.level];
	if (put(out, cap, len, "class=", 6) || put(out, cap, len, level, strlen(level)))
		goto long_;
	for (uint32_t i = 0; i < p->n_cats; i++) {
		const struct kz_category *c = &p->cats[i];
		const struct jfield *xa = find(fa, na, c->name), *xb = find(fb, nb, c->name);
		if (!xa && !xb)
			continue;
		if (put(out, cap, len, ";", 1) || put(out, cap, len, c->name, strlen(c->name)) || put(out, cap, len, "=", 1))
			goto long_;
		if (c->kind == KZ_CAT_INFORMATIVE) {
			char u[KZ_LABEL_MAX_LEN + 1] = "";
			size_t ul = 0;
			if ((xa && put(u, sizeof u, &ul, xa->v, xa->vn)) ||
			    (xb && aud_common(xb->v, xb->vn, xb->v, xb->vn, u, sizeof u, &ul)) || put(out, cap, len, u, ul))
				goto long_;
			continue;
		}
		uint64_t bits;
		if (c->kind == KZ_CAT_PERMISSIVE && xa && xb) {
			bits = la.cat[i] & lb.cat[i];
			if (!bits) {
				*why = "the two labels have no value of a permissive category (releasability) in common";
				return -1;
			}
		} else {
			bits = la.cat[i] | lb.cat[i];
		}
		bool first = true;
		for (uint32_t j = 0; j < c->n_values; j++)
			if (bits >> j & 1) {
				if ((!first && put(out, cap, len, ",", 1)) ||
				    put(out, cap, len, c->values[j], strlen(c->values[j])))
					goto long_;
				first = false;
			}
	}
	return 0;
long_:
	*why = "the joined label is too long";
	return -1;
}

int kz_label_join(const struct kz_policy *p, const char *a, const char *b, char *out, size_t cap, const char **why)
{
	char ba[KZ_LABEL_MAX_LEN + 1], bb[KZ_LABEL_MAX_LEN + 1], joined[2 * KZ_LABEL_MAX_LEN + 2];
	size_t len = 0;
	struct jfield fa[JOIN_MAX_FIELDS], fb[JOIN_MAX_FIELDS];
	int na = fields(a, fa), nb = fields(b, fb);
	if (na < 0 || nb < 0) {
		*why = "a label is not key=value;...";
		return -1;
	}
	/* the policy parts: every field but tlp and aud, in their order */
	size_t la = 0, lb = 0;
	ba[0] = bb[0] = 0;
	for (int i = 0; i < na; i++)
		if (strcmp(fa[i].key, "tlp") && strcmp(fa[i].key, "aud"))
			la += (size_t)snprintf(ba + la, la < sizeof ba ? sizeof ba - la : 0, "%s%s=%.*s", la ? ";" : "",
					       fa[i].key, (int)fa[i].vn, fa[i].v);
	for (int i = 0; i < nb; i++)
		if (strcmp(fb[i].key, "tlp") && strcmp(fb[i].key, "aud"))
			lb += (size_t)snprintf(bb + lb, lb < sizeof bb ? sizeof bb - lb : 0, "%s%s=%.*s", lb ? ";" : "",
					       fb[i].key, (int)fb[i].vn, fb[i].v);
	if (la >= sizeof ba || lb >= sizeof bb) {
		*why = "a label is too long";
		return -1;
	}
	joined[0] = 0;
	if (p) {
		if (join_policy(p, ba, bb, joined, sizeof joined, &len, why))
			return -1;
	} else if (ba[0] && bb[0] && strcmp(ba, bb)) {
		*why = "the labels' policy parts differ and no policy is in force to join them";
		return -1;
	} else if (put(joined, sizeof joined, &len, ba[0] ? ba : bb, strlen(ba[0] ? ba : bb))) {
		*why = "the joined label is too long";
		return -1;
	}
	if (join_share(fa, na, fb, nb, joined, sizeof joined, &len, why))
		return -1;
	if (p && len) {
		struct kz_label l;
		char w[200];
		size_t cn;
		if (len > KZ_LABEL_MAX_LEN || cap < KZ_LABEL_MAX_LEN + 1 ||
		    kz_label_parse(p, joined, len, &l, out, &cn, w, sizeof w)) {
			*why = "the joined label is not valid under the policy in force";
			return -1;
		}
		return 0;
	}
	if (len + 1 > cap) {
		*why = "the joined label is too long";
		return -1;
	}
	memcpy(out, joined, len + 1);
	return 0;
}
