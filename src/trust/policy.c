/* policy.c — the policy file, the identity registry, subjects and the decision point
 * (policy.h; the grammar is in docs/POLICY.md). */
#include "trust/policy.h"
#include "base/kz_array.h"
#include "trust/access.h"
#include "trust/policy_internal.h"

#include "base/kz_err.h"
#include "base/kz_topic.h"
#include "crypto/kz_crypto.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES (16u << 20)
#define MAX_TOKENS 512

struct perr {
	FILE *err;
	const char *path;
	int n;
};

static void perr(struct perr *e, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (e->err) {
		fprintf(e->err, "%s:%d: ", e->path, line);
		vfprintf(e->err, fmt, ap);
		fputc('\n', e->err);
	}
	va_end(ap);
	e->n++;
}

static char *read_file(const char *path, size_t *n, struct perr *e)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perr(e, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	char *buf = malloc(MAX_FILE_BYTES + 1);
	size_t got = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
	bool bad = ferror(f);
	fclose(f);
	if (!buf || bad || got > MAX_FILE_BYTES) {
		perr(e, 0, "%s", !buf ? "out of memory" : bad ? "read error" : "larger than 16 MiB");
		free(buf);
		return NULL;
	}
	buf[got] = 0;
	*n = got;
	return buf;
}

/* Splits one line (modified in place) into tokens; a line whose first word starts with '#'
 * is a comment ('#' is also the multi-level wildcard, so there are no comments after
 * words). Returns the count, or -1 when there are too many. */
static int tokenize(char *line, char **tok)
{
	int n = 0;
	for (char *p = line;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (!*p || (*p == '#' && n == 0))
			return n;
		if (n == MAX_TOKENS)
			return -1;
		tok[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r')
			p++;
		if (*p)
			*p++ = 0;
	}
}

/* Calls fn for every line that has tokens. */
static void each_line(char *buf, size_t n, struct perr *e, void (*fn)(void *ctx, int line, char **tok, int nt),
		      void *ctx)
{
	static char *tok[MAX_TOKENS];
	(void)n;
	int line = 0;
	for (char *p = buf; p && *p;) {
		line++;
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = 0;
		for (char *q = p; *q; q++)
			if ((unsigned char)*q < 0x20 && *q != '\t' && *q != '\r') {
				perr(e, line, "control character in line");
				goto next;
			}
		int nt = tokenize(p, tok);
		if (nt < 0)
			perr(e, line, "more than %d words", MAX_TOKENS);
		else if (nt > 0)
			fn(ctx, line, tok, nt);
	next:
		p = nl ? nl + 1 : NULL;
	}
}

static bool is_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= KZ_POL_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '+'))
			return false;
	}
	return true;
}

static int level_of(const struct kz_policy *p, const char *s)
{
	for (uint32_t i = 0; i < p->n_levels; i++)
		if (!strcmp(p->levels[i], s))
			return (int)i;
	return -1;
}

static char **split_list(const char *s, uint32_t *n)
{
	uint32_t cnt = 1;
	for (const char *q = s; *q; q++)
		cnt += *q == ',';
	char **v = calloc(cnt, sizeof *v);
	if (!v)
		return NULL;
	*n = 0;
	for (const char *q = s;;) {
		const char *c = strchr(q, ',');
		size_t len = c ? (size_t)(c - q) : strlen(q);
		v[*n] = strndup(q, len);
		if (!v[*n])
			break;
		(*n)++;
		if (!c)
			break;
		q = c + 1;
	}
	return v;
}

static void free_list(char **v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---------- pass 1 of the policy file: id, version, levels, categories ---------- */

struct load {
	struct kz_policy *p;
	struct perr pe, re;
	char version[64];
	bool have_policy, have_levels, have_default;
	int default_line;
	char *default_src;
};

static const char *const attr_names[] = { "", "org", "nation", "caveats", "roles" };

static void pass1(void *ctx, int line, char **t, int nt)
{
	struct load *L = ctx;
	struct kz_policy *p = L->p;
	struct perr *e = &L->pe;
	if (!strcmp(t[0], "policy")) {
		if (nt != 2 || !is_name(t[1]))
			perr(e, line, "policy takes one name ([a-z0-9._+-], at most 63 characters)");
		else if (L->have_policy)
			perr(e, line, "policy given twice");
		else {
			strcpy(p->id, t[1]);
			L->have_policy = true;
		}
	} else if (!strcmp(t[0], "version")) {
		if (nt != 2 || strlen(t[1]) >= sizeof L->version)
			perr(e, line, "version takes one word of at most 63 characters");
		else
			strcpy(L->version, t[1]);
	} else if (!strcmp(t[0], "levels")) {
		if (L->have_levels) {
			perr(e, line, "levels given twice");
			return;
		}
		if (nt < 2 || nt - 1 > KZ_POL_MAX_LEVELS) {
			perr(e, line, "levels takes 1 to %d names, lowest first", KZ_POL_MAX_LEVELS);
			return;
		}
		for (int i = 1; i < nt; i++) {
			if (!is_name(t[i]))
				perr(e, line, "bad level name '%s'", t[i]);
			else if (level_of(p, t[i]) >= 0)
				perr(e, line, "level '%s' given twice", t[i]);
			else
				strcpy(p->levels[p->n_levels++], t[i]);
		}
		L->have_levels = true;
	} else if (!strcmp(t[0], "category")) {
		if (nt < 3) {
			perr(e, line, "category NAME restrictive|permissive|informative [attr=ATTR] [VALUE ...]");
			return;
		}
		if (p->n_cats == KZ_POL_MAX_CATS) {
			perr(e, line, "more than %d categories", KZ_POL_MAX_CATS);
			return;
		}
		if (!is_name(t[1]) || !strcmp(t[1], "policy") || !strcmp(t[1], "class") || !strcmp(t[1], "tlp") ||
		    !strcmp(t[1], "aud")) {
			perr(e, line, "bad category name '%s' (policy, class, tlp and aud are taken)", t[1]);
			return;
		}
		for (uint32_t i = 0; i < p->n_cats; i++)
			if (!strcmp(p->cats[i].name, t[1])) {
				perr(e, line, "category '%s' given twice", t[1]);
				return;
			}
		struct kz_category *c = &p->cats[p->n_cats];
		enum kz_cat_kind kind = !strcmp(t[2], "restrictive")   ? KZ_CAT_RESTRICTIVE
					: !strcmp(t[2], "permissive")  ? KZ_CAT_PERMISSIVE
					: !strcmp(t[2], "informative") ? KZ_CAT_INFORMATIVE
								       : 0;
		if (!kind) {
			perr(e, line, "category kind '%s' is not restrictive, permissive or informative", t[2]);
			return;
		}
		int i = 3;
		enum kz_attr attr = KZ_ATTR_NONE;
		if (i < nt && !strncmp(t[i], "attr=", 5)) {
			for (int a = 1; a < (int)KZ_ARRAY_LEN(attr_names); a++)
				if (!strcmp(t[i] + 5, attr_names[a]))
					attr = (enum kz_attr)a;
			if (!attr) {
				perr(e, line, "attr must be org, nation, caveats or roles");
				return;
			}
			i++;
		}
		if (kind == KZ_CAT_INFORMATIVE) {
			if (attr || i < nt) {
				perr(e, line, "an informative category takes no attr and no values");
				return;
			}
		} else {
			if (!attr) {
				perr(e, line, "a %s category needs attr=org|nation|caveats|roles", t[2]);
				return;
			}
			if (i == nt || nt - i > KZ_POL_MAX_VALUES) {
				perr(e, line, "a %s category needs 1 to %d values", t[2], KZ_POL_MAX_VALUES);
				return;
			}
		}
		c->values = calloc((size_t)(nt - i) + 1, sizeof *c->values);
		if (!c->values) {
			perr(e, line, "out of memory");
			return;
		}
		for (; i < nt; i++) {
			bool dup = false;
			for (uint32_t j = 0; j < c->n_values; j++)
				dup |= !strcmp(c->values[j], t[i]);
			if (!is_name(t[i]) || dup) {
				perr(e, line, "%s value '%s'", dup ? "duplicate" : "bad", t[i]);
				continue;
			}
			strcpy(c->values[c->n_values++], t[i]);
		}
		strcpy(c->name, t[1]);
		c->kind = kind;
		c->attr = attr;
		if (kind == KZ_CAT_RESTRICTIVE)
			p->restrictive_mask |= 1ull << p->n_cats;
		else if (kind == KZ_CAT_PERMISSIVE)
			p->permissive_mask |= 1ull << p->n_cats;
		p->n_cats++;
	} else if (!strcmp(t[0], "default-label") || !strcmp(t[0], "allow")) {
		/* pass 2 */
	} else {
		perr(e, line, "unknown directive '%s' (policy, version, levels, category, default-label, allow)", t[0]);
	}
}

/* ---------- the identity registry ---------- */

static const char *const kinds[] = { "user", "sensor", "service", "node" };

bool kz_policy_spiffe_ok(const char *id, char *kind, size_t kind_cap)
{
	if (strncmp(id, "spiffe://", 9))
		return false;
	const char *p = id + 9;
	int seg = 0;
	const char *start = p;
	for (;; p++) {
		if (*p == '/' || !*p) {
			if (p == start)
				return false;
			if (seg == 2 && kind) {
				size_t n = (size_t)(p - start);
				if (n >= kind_cap)
					return false;
				memcpy(kind, start, n);
				kind[n] = 0;
			}
			seg++;
			if (!*p)
				break;
			start = p + 1;
			continue;
		}
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return seg == 4;
}

static int cmp_identity(const void *a, const void *b)
{
	return strcmp(((const struct kz_identity *)a)->id, ((const struct kz_identity *)b)->id);
}

struct reg_ctx {
	struct load *L;
	uint32_t cap;
};

static bool add_unique(char ***v, uint32_t *n, const char *s)
{
	for (uint32_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i], s))
			return true;
	char **nv = realloc(*v, (*n + 1) * sizeof *nv);
	if (!nv)
		return false;
	*v = nv;
	if (!(nv[*n] = strdup(s)))
		return false;
	(*n)++;
	return true;
}

static void reg_line(void *ctx, int line, char **t, int nt)
{
	struct reg_ctx *R = ctx;
	struct kz_policy *p = R->L->p;
	struct perr *e = &R->L->re;
	char kind[16];
	if (!kz_policy_spiffe_ok(t[0], kind, sizeof kind) || strlen(t[0]) >= sizeof ((struct kz_subject *)0)->id) {
		perr(e, line, "'%s' is not spiffe://TRUST-DOMAIN/ORG/KIND/NAME", t[0]);
		return;
	}
	bool kind_ok = false;
	for (size_t i = 0; i < KZ_ARRAY_LEN(kinds); i++)
		kind_ok |= !strcmp(kind, kinds[i]);
	if (!kind_ok) {
		perr(e, line, "kind '%s' is not user, sensor, service or node", kind);
		return;
	}
	if (p->n_ids == R->cap) {
		size_t nc;
		struct kz_identity *nv = kz_array_grow(p->ids, sizeof *nv, R->cap, (size_t)p->n_ids + 1, 64, UINT32_MAX, &nc);
		if (nv)
			R->cap = nc;
		if (!nv) {
			perr(e, line, "out of memory");
			return;
		}
		p->ids = nv;
	}
	struct kz_identity *id = &p->ids[p->n_ids];
	memset(id, 0, sizeof *id);
	id->level = -1;
	id->line = line;
	id->id = strdup(t[0]);
	bool bad = !id->id;
	for (int i = 1; i < nt; i++) {
		char *eq = strchr(t[i], '=');
		if (!eq || eq[1] == 0) {
			perr(e, line, "'%s' is not ATTRIBUTE=VALUE", t[i]);
			bad = true;
			continue;
		}
		*eq = 0;
		const char *k = t[i], *v = eq + 1;
		bool listy = !strcmp(k, "caveats") || !strcmp(k, "roles");
		if (!listy && !is_name(v)) {
			perr(e, line, "%s: bad value '%s'", k, v);
			bad = true;
			continue;
		}
		if (!strcmp(k, "org") || !strcmp(k, "nation")) {
			char **slot = k[0] == 'o' ? &id->org : &id->nation;
			if (*slot) {
				perr(e, line, "%s given twice", k);
				bad = true;
			} else
				*slot = strdup(v);
		} else if (!strcmp(k, "clearance")) {
			int lv = level_of(p, v);
			if (lv < 0) {
				perr(e, line, "clearance '%s' is not a level of the policy", v);
				bad = true;
			} else
				id->level = lv;
		} else if (listy) {
			uint32_t n = 0;
			char **list = split_list(v, &n);
			bool ok = list != NULL;
			for (uint32_t j = 0; ok && j < n; j++)
				if (!is_name(list[j])) {
					perr(e, line, "%s: bad value '%s'", k, list[j]);
					ok = false;
				}
			if (!ok) {
				free_list(list, n);
				bad = true;
				continue;
			}
			if (k[0] == 'c') {
				free_list(id->caveats, id->n_caveats);
				id->caveats = list;
				id->n_caveats = n;
			} else {
				free_list(id->roles, id->n_roles);
				id->roles = list;
				id->n_roles = n;
			}
		} else {
			perr(e, line, "unknown attribute '%s' (org, nation, clearance, caveats, roles)", k);
			bad = true;
		}
	}
	/* The organisation in the registry is the one that counts; one that contradicts the
	 * SPIFFE ID's is a mistake in the file. */
	if (!bad && id->org) {
		const char *o = t[0] + 9;
		o = strchr(o, '/') + 1;
		size_t on = (size_t)(strchr(o, '/') - o);
		if (strlen(id->org) != on || strncmp(o, id->org, on)) {
			perr(e, line, "org=%s but the SPIFFE ID's organisation is '%.*s'", id->org, (int)on, o);
			bad = true;
		}
	}
	for (uint32_t j = 0; !bad && j < p->n_ids; j++)
		if (!strcmp(p->ids[j].id, id->id)) {
			perr(e, line, "%s is also on line %d", id->id, p->ids[j].line);
			bad = true;
		}
	if (bad) {
		free(id->id);
		free(id->org);
		free(id->nation);
		free_list(id->caveats, id->n_caveats);
		free_list(id->roles, id->n_roles);
		return;
	}
	p->n_ids++;
	if ((id->org && !add_unique(&p->orgs, &p->n_orgs, id->org)) ||
	    (id->nation && !add_unique(&p->nations, &p->n_nations, id->nation)))
		perr(e, line, "out of memory");
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint32_t sorted_index(char **v, uint32_t n, const char *s)
{
	if (!s)
		return KZ_IDX_NONE;
	char **hit = n ? bsearch(&s, v, n, sizeof *v, cmp_strp) : NULL;
	return hit ? (uint32_t)(hit - v) : KZ_IDX_NONE;
}

/* ---------- pass 2: default label and rules ---------- */

static bool filter_ok(const char *f)
{
	size_t n = strlen(f);
	if (n == 0 || n > 65535)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (f[i] == '#' && (i + 1 != n || (i > 0 && f[i - 1] != '/')))
			return false;
		if (f[i] == '+' && ((i > 0 && f[i - 1] != '/') || (i + 1 < n && f[i + 1] != '/')))
			return false;
	}
	return true;
}

static bool compile_label(struct load *L, int line, const char *text, struct kz_label *out, char **canon_out)
{
	char canon[KZ_LABEL_MAX_LEN + 1], why[160];
	size_t cn;
	if (kz_label_parse(L->p, text, strlen(text), out, canon, &cn, why, sizeof why)) {
		perr(&L->pe, line, "label: %s", why);
		return false;
	}
	*canon_out = strdup(canon);
	return *canon_out != NULL;
}

static const char *const cond_names[] = { "", "id", "org", "nation", "kind", "role", "caveat" };

/* Conditions from t[*i] up to the next "label" or "agent" word (or the end): true when all
 * of them parse. */
static bool parse_conds(struct load *L, int line, char **t, int nt, int *i, const char *word, struct kz_cond **out,
			uint32_t *n_out)
{
	struct kz_policy *p = L->p;
	struct perr *e = &L->pe;
	bool bad = false;
	if (*i >= nt || !strcmp(t[*i], "label") || !strcmp(t[*i], "agent")) {
		perr(e, line, "%s needs at least one condition", word);
		bad = true;
	}
	struct kz_cond *conds = calloc((size_t)nt, sizeof *conds);
	uint32_t nc = 0;
	for (; conds && *i < nt && strcmp(t[*i], "label") && strcmp(t[*i], "agent"); (*i)++) {
		struct kz_cond *c = &conds[nc];
		const char *w_ = t[*i];
		if (!strncmp(w_, "clearance>=", 11)) {
			c->what = KZ_COND_CLEARANCE;
			c->level = level_of(p, w_ + 11);
			if (c->level < 0) {
				perr(e, line, "clearance>=%s: not a level of the policy", w_ + 11);
				bad = true;
			}
			nc++;
			continue;
		}
		const char *eq = strchr(w_, '=');
		enum kz_cond_what w = 0;
		if (eq)
			for (int k = 1; k < (int)KZ_ARRAY_LEN(cond_names); k++)
				if ((size_t)(eq - w_) == strlen(cond_names[k]) && !strncmp(w_, cond_names[k], (size_t)(eq - w_)))
					w = (enum kz_cond_what)k;
		if (!w || !eq[1]) {
			perr(e, line, "condition '%s' is not id=, org=, nation=, kind=, role=, caveat= or clearance>=", w_);
			bad = true;
			continue;
		}
		c->what = w;
		c->vals = split_list(eq + 1, &c->n);
		nc++;
		for (uint32_t k = 0; c->vals && k < c->n; k++) {
			const char *v = c->vals[k];
			bool ok;
			if (w == KZ_COND_ID) {
				char tmp[520];
				snprintf(tmp, sizeof tmp, "%s", v);
				size_t vl = strlen(tmp);
				if (vl && tmp[vl - 1] == '*')
					ok = !strncmp(tmp, "spiffe://", 9) && vl < 500;
				else
					ok = kz_policy_spiffe_ok(tmp, NULL, 0);
			} else if (w == KZ_COND_KIND) {
				ok = false;
				for (size_t q = 0; q < KZ_ARRAY_LEN(kinds); q++)
					ok |= !strcmp(v, kinds[q]);
			} else {
				ok = is_name(v);
			}
			if (!ok) {
				perr(e, line, "%s: bad value '%s'", cond_names[w], v);
				bad = true;
			}
		}
	}
	*out = conds;
	*n_out = nc;
	return !bad;
}

static void free_conds(struct kz_cond *c, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		free_list(c[k].vals, c[k].n);
	free(c);
}

/* A task rule's kinds: "*" or a comma list of task kinds ([A-Za-z0-9._:@~-], 1-64). */
static bool kinds_ok(const char *s)
{
	if (!strcmp(s, "*"))
		return true;
	for (const char *q = s;;) {
		const char *c = strchr(q, ',');
		size_t n = c ? (size_t)(c - q) : strlen(q);
		if (!kz_name_valid(q, n, 64))
			return false;
		if (!c)
			return true;
		q = c + 1;
	}
}

static void pass2(void *ctx, int line, char **t, int nt)
{
	struct load *L = ctx;
	struct kz_policy *p = L->p;
	struct perr *e = &L->pe;
	if (!strcmp(t[0], "default-label")) {
		if (nt != 2) {
			perr(e, line, "default-label takes one label");
			return;
		}
		if (L->have_default) {
			perr(e, line, "default-label given twice");
			return;
		}
		L->have_default = true;
		compile_label(L, line, t[1], &p->default_label, &p->default_text);
		return;
	}
	if (strcmp(t[0], "allow"))
		return;
	if (nt < 2) {
		perr(e, line, "allow ACTIONS [FILTER] [where CONDITION ...] [label LABEL], or allow task KINDS [where ...] [agent ...]");
		return;
	}
	if (p->n_rules == KZ_POL_MAX_RULES) {
		perr(e, line, "more than %d rules", KZ_POL_MAX_RULES);
		return;
	}
	struct kz_rule r = { 0 };
	r.line = line;
	bool bad = false;
	uint32_t na = 0;
	char **acts = split_list(t[1], &na);
	for (uint32_t i = 0; acts && i < na; i++) {
		unsigned a = !strcmp(acts[i], "connect")     ? KZ_ACT_CONNECT
			     : !strcmp(acts[i], "publish")   ? KZ_ACT_PUBLISH
			     : !strcmp(acts[i], "subscribe") ? KZ_ACT_SUBSCRIBE
			     : !strcmp(acts[i], "task")      ? KZ_ACT_TASK
							     : 0;
		if (!a) {
			perr(e, line, "unknown action '%s' (connect, publish, subscribe, task)", acts[i]);
			bad = true;
		}
		r.actions |= a;
	}
	free_list(acts, na);
	int i = 2;
	if ((r.actions & KZ_ACT_TASK) && r.actions != KZ_ACT_TASK) {
		perr(e, line, "a task rule is a rule of its own: allow task KINDS [where ...] [agent ...]");
		bad = true;
	} else if (r.actions == KZ_ACT_TASK) {
		if (i >= nt || !strcmp(t[i], "where") || !strcmp(t[i], "agent") || !kinds_ok(t[i])) {
			perr(e, line, "task rules name the kinds they allow: * or KIND,KIND,... ([A-Za-z0-9._:@~-])");
			bad = true;
		} else {
			r.filter = strdup(t[i]);
			r.filter_len = (uint32_t)strlen(t[i]);
		}
		i++;
	}
	if (r.actions & (KZ_ACT_PUBLISH | KZ_ACT_SUBSCRIBE)) {
		if (i >= nt || !strcmp(t[i], "where") || !strcmp(t[i], "label")) {
			perr(e, line, "publish and subscribe rules need a topic filter");
			bad = true;
		} else if (!filter_ok(t[i])) {
			perr(e, line, "bad topic filter '%s'", t[i]);
			bad = true;
			i++;
		} else {
			r.filter = strdup(t[i]);
			r.filter_len = (uint32_t)strlen(t[i]);
			i++;
		}
	}
	if (i < nt && !strcmp(t[i], "where")) {
		i++;
		if (!parse_conds(L, line, t, nt, &i, "where", &r.conds, &r.n_conds))
			bad = true;
	}
	if (i < nt && !strcmp(t[i], "agent")) {
		i++;
		if (!(r.actions & KZ_ACT_TASK)) {
			perr(e, line, "agent conditions belong to task rules");
			bad = true;
		}
		if (!parse_conds(L, line, t, nt, &i, "agent", &r.agent_conds, &r.n_agent_conds))
			bad = true;
	}
	if (i < nt && !strcmp(t[i], "label")) {
		if (!(r.actions & KZ_ACT_PUBLISH)) {
			perr(e, line, "label is the default label of publishes: only publish rules take it");
			bad = true;
		} else if (i + 2 != nt) {
			perr(e, line, "label takes one label and ends the rule");
			bad = true;
		} else if (!compile_label(L, line, t[i + 1], &r.label, &r.label_text)) {
			bad = true;
		} else {
			r.has_label = true;
		}
		i = nt;
	}
	if (i < nt) {
		perr(e, line, "unexpected '%s' (expected where, agent or label)", t[i]);
		bad = true;
	}
	if (!bad) {
		struct kz_rule *nv = realloc(p->rules, (p->n_rules + 1) * sizeof *nv);
		if (nv) {
			p->rules = nv;
			p->rules[p->n_rules++] = r;
			return;
		}
		perr(e, line, "out of memory");
	}
	free(r.filter);
	free(r.label_text);
	free_conds(r.conds, r.n_conds);
	free_conds(r.agent_conds, r.n_agent_conds);
}

void kz_policy_free(struct kz_policy *p)
{
	if (!p)
		return;
	for (uint32_t i = 0; i < p->n_cats; i++)
		free(p->cats[i].values);
	for (uint32_t i = 0; i < p->n_rules; i++) {
		struct kz_rule *r = &p->rules[i];
		free(r->filter);
		free(r->label_text);
		free_conds(r->conds, r->n_conds);
		free_conds(r->agent_conds, r->n_agent_conds);
	}
	free(p->rules);
	free(p->default_text);
	for (uint32_t i = 0; i < p->n_ids; i++) {
		struct kz_identity *id = &p->ids[i];
		free(id->id);
		free(id->org);
		free(id->nation);
		free_list(id->caveats, id->n_caveats);
		free_list(id->roles, id->n_roles);
	}
	free(p->ids);
	free_list(p->orgs, p->n_orgs);
	free_list(p->nations, p->n_nations);
	free(p);
}

static char *dup_text(const char *t, size_t n, struct perr *e)
{
	if (memchr(t, 0, n)) {
		perr(e, 0, "NUL byte in the file");
		return NULL;
	}
	char *c = malloc(n + 1);
	if (!c) {
		perr(e, 0, "out of memory");
		return NULL;
	}
	memcpy(c, t, n);
	c[n] = 0;
	return c;
}

int kz_policy_load(const char *policy_path, const char *registry_path, uint32_t gen, struct kz_policy **out,
		   FILE *err)
{
	*out = NULL;
	struct perr pe = { err, policy_path, 0 }, re = { err, registry_path, 0 };
	size_t pn = 0, rn = 0;
	char *pbuf = read_file(policy_path, &pn, &pe);
	char *rbuf = read_file(registry_path, &rn, &re);
	int n = pe.n + re.n;
	if (!n)
		n = kz_policy_parse(pbuf, pn, policy_path, rbuf, rn, registry_path, gen, out, err);
	free(pbuf);
	free(rbuf);
	return n;
}

int kz_policy_parse(const char *ptext, size_t pn, const char *policy_path, const char *rtext, size_t rn,
		    const char *registry_path, uint32_t gen, struct kz_policy **out, FILE *err)
{
	*out = NULL;
	struct kz_policy *p = calloc(1, sizeof *p);
	struct load L = { .p = p, .pe = { err, policy_path, 0 }, .re = { err, registry_path, 0 } };
	if (!p) {
		perr(&L.pe, 0, "out of memory");
		return 1;
	}
	p->gen = gen;
	snprintf(p->policy_path, sizeof p->policy_path, "%s", policy_path);
	snprintf(p->registry_path, sizeof p->registry_path, "%s", registry_path);
	char *pbuf = dup_text(ptext, pn, &L.pe);
	char *rbuf = dup_text(rtext, rn, &L.re);
	char *pcopy = pbuf ? malloc(pn + 1) : NULL;
	uint8_t digest[32] = { 0 };
	if (pbuf && rbuf) {
		/* The version covers both files. */
		uint8_t h[64];
		kz_sha256(pbuf, pn, h);
		kz_sha256(rbuf, rn, h + 32);
		kz_sha256(h, sizeof h, digest);
	}
	if (pbuf && pcopy) {
		memcpy(pcopy, pbuf, pn + 1);
		each_line(pbuf, pn, &L.pe, pass1, &L);
		if (!L.have_policy)
			perr(&L.pe, 0, "no policy directive (policy NAME)");
		if (!L.have_levels)
			perr(&L.pe, 0, "no levels directive (levels LOWEST ... HIGHEST)");
	}
	if (rbuf && L.pe.n == 0) {
		struct reg_ctx R = { &L, 0 };
		each_line(rbuf, rn, &L.re, reg_line, &R);
		if (p->n_ids)
			qsort(p->ids, p->n_ids, sizeof *p->ids, cmp_identity);
		if (p->n_orgs)
			qsort(p->orgs, p->n_orgs, sizeof *p->orgs, cmp_strp);
		if (p->n_nations)
			qsort(p->nations, p->n_nations, sizeof *p->nations, cmp_strp);
		for (uint32_t i = 0; i < p->n_ids; i++) {
			p->ids[i].org_idx = sorted_index(p->orgs, p->n_orgs, p->ids[i].org);
			p->ids[i].nation_idx = sorted_index(p->nations, p->n_nations, p->ids[i].nation);
		}
	}
	if (pbuf && !pcopy)
		perr(&L.pe, 0, "out of memory");
	if (pcopy && L.pe.n == 0 && L.re.n == 0) {
		each_line(pcopy, pn, &L.pe, pass2, &L);
		if (!L.have_default)
			perr(&L.pe, 0, "no default-label directive (the label of records no rule labels)");
	}
	free(pbuf);
	free(rbuf);
	free(pcopy);
	int n = L.pe.n + L.re.n;
	if (n) {
		kz_policy_free(p);
		return n;
	}
	char hex[13];
	for (int i = 0; i < 6; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	snprintf(p->version, sizeof p->version, "%s%s%s", L.version, L.version[0] ? "/" : "", hex);
	*out = p;
	return 0;
}
