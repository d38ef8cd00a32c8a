/* detect_pattern.c — the STIX patterning subset that indicator feeds use (STIX 2.1 §9;
 * docs/DETECTION.md "Patterns"), compiled into disjunctive normal form:
 *
 *   pattern    := observation (OR observation)*           (one event must satisfy one)
 *   observation:= '[' expr ']' | '(' pattern ')'
 *   expr       := and (OR and)*
 *   and        := term (AND term)*
 *   term       := '(' expr ')' | path '=' string | path IN '(' string (',' string)* ')'
 *               | path MATCHES string
 *
 * with the paths of detect_path(). Anything else — observations joined by AND or FOLLOWEDBY
 * (two events), qualifiers, NOT, other operators, other paths, a regular expression Hyperscan
 * cannot compile (back-references, look-around) —
 * is "unsupported", with the reason, and the indicator is listed, not dropped silently.
 * `network-traffic:*_ref.type = '…'` (MISP's way of saying what the ref is) constrains
 * nothing an address does not say itself, and is read as true.
 *
 * The whole pattern is first checked against the full grammar (stix_pattern_check), so
 * what reaches this parser is well formed. */
#include "services/detect/detect_internal.h"
#include "services/stix/stix.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct terms {
	unsigned n;
	uint16_t len[DETECT_MAX_TERMS];
	uint16_t at[DETECT_MAX_TERMS][DETECT_MAX_ATOMS];
};

struct pc {
	const char *p;
	size_t n, i;
	struct detect_dnf *out;
	const char *why;
	int depth;
};

static void ws(struct pc *c)
{
	while (c->i < c->n && isspace((unsigned char)c->p[c->i]))
		c->i++;
}

static bool lit(struct pc *c, const char *s)
{
	ws(c);
	size_t k = strlen(s);
	if (c->i + k > c->n || memcmp(c->p + c->i, s, k))
		return false;
	if (isalpha((unsigned char)s[0]) && c->i + k < c->n &&
	    (isalnum((unsigned char)c->p[c->i + k]) || c->p[c->i + k] == '_'))
		return false; /* ORDER is not OR */
	c->i += k;
	return true;
}

static int unsupported(struct pc *c, const char *why)
{
	if (!c->why)
		c->why = why;
	return -1;
}

/* A quoted string: its text with \' and \\ unescaped, into out (cap). */
static int string(struct pc *c, char *out, size_t cap, size_t *len)
{
	ws(c);
	if (c->i >= c->n || c->p[c->i] != '\'')
		return unsupported(c, "a comparison with a value that is not a string");
	size_t k = 0;
	for (c->i++; c->i < c->n && c->p[c->i] != '\''; c->i++) {
		char ch = c->p[c->i];
		if (ch == '\\' && c->i + 1 < c->n)
			ch = c->p[++c->i];
		if (k + 1 >= cap)
			return unsupported(c, "a value longer than 2048 bytes");
		out[k++] = ch;
	}
	if (c->i >= c->n)
		return unsupported(c, "an unterminated string");
	c->i++;
	out[k] = 0;
	*len = k;
	return 0;
}

/* The object path: its kind and role; 0 for a path read as true (*_ref.type). */
static int path(struct pc *c, int *kind, int *role)
{
	ws(c);
	size_t s = c->i;
	while (c->i < c->n && !isspace((unsigned char)c->p[c->i]) && !strchr("=!<>()[],", c->p[c->i])) {
		if (c->p[c->i] == '\'') { /* hashes.'SHA-256' */
			for (c->i++; c->i < c->n && c->p[c->i] != '\''; c->i++)
				;
		}
		c->i++;
	}
	size_t n = c->i - s;
	char pth[128];
	if (n == 0 || n >= sizeof pth)
		return unsupported(c, "an object path the subset does not know");
	size_t k = 0;
	for (size_t j = 0; j < n; j++) /* quotes dropped, lower case: hashes.'SHA-256' = hashes.sha-256 */
		if (c->p[s + j] != '\'')
			pth[k++] = (char)tolower((unsigned char)c->p[s + j]);
	pth[k] = 0;
	static const struct {
		const char *path;
		int kind, role;
	} paths[] = {
		{ "ipv4-addr:value", DETECT_IP, DETECT_ANY },
		{ "ipv6-addr:value", DETECT_IP, DETECT_ANY },
		{ "network-traffic:dst_ref.value", DETECT_IP, DETECT_DST },
		{ "network-traffic:src_ref.value", DETECT_IP, DETECT_SRC },
		{ "network-traffic:dst_ref.type", 0, 0 },
		{ "network-traffic:src_ref.type", 0, 0 },
		{ "domain-name:value", DETECT_DOMAIN, DETECT_ANY },
		{ "url:value", DETECT_URL, DETECT_ANY },
		{ "email-addr:value", DETECT_EMAIL, DETECT_ANY },
		{ "email-message:from_ref.value", DETECT_EMAIL, DETECT_ANY },
		{ "email-message:sender_ref.value", DETECT_EMAIL, DETECT_ANY },
		{ "file:hashes.md5", DETECT_MD5, DETECT_ANY },
		{ "file:hashes.sha-1", DETECT_SHA1, DETECT_ANY },
		{ "file:hashes.sha1", DETECT_SHA1, DETECT_ANY },
		{ "file:hashes.sha-256", DETECT_SHA256, DETECT_ANY },
		{ "file:hashes.sha256", DETECT_SHA256, DETECT_ANY },
		{ "x509-certificate:hashes.sha-1", DETECT_CERT_SHA1, DETECT_ANY },
		{ "x509-certificate:hashes.sha1", DETECT_CERT_SHA1, DETECT_ANY },
		{ "x509-certificate:hashes.sha-256", DETECT_CERT_SHA256, DETECT_ANY },
		{ "x509-certificate:hashes.sha256", DETECT_CERT_SHA256, DETECT_ANY },
	};
	for (size_t j = 0; j < sizeof paths / sizeof *paths; j++)
		if (!strcmp(pth, paths[j].path)) {
			*kind = paths[j].kind;
			*role = paths[j].role;
			return 0;
		}
	return unsupported(c, "an object path the subset does not know");
}

static struct terms *terms_new(void)
{
	return calloc(1, sizeof(struct terms));
}

/* a OR b, into a. */
static int t_or(struct pc *c, struct terms *a, const struct terms *b)
{
	if (a->n + b->n > DETECT_MAX_TERMS)
		return unsupported(c, "more than 256 alternatives");
	for (unsigned i = 0; i < b->n; i++) {
		a->len[a->n] = b->len[i];
		memcpy(a->at[a->n], b->at[i], b->len[i] * sizeof b->at[i][0]);
		a->n++;
	}
	return 0;
}

/* a AND b, into a (each term of a with each of b). */
static int t_and(struct pc *c, struct terms *a, const struct terms *b)
{
	if ((size_t)a->n * b->n > DETECT_MAX_TERMS)
		return unsupported(c, "more than 256 alternatives");
	struct terms *r = terms_new();
	if (!r)
		return unsupported(c, "out of memory");
	for (unsigned i = 0; i < a->n; i++)
		for (unsigned j = 0; j < b->n; j++) {
			if (a->len[i] + b->len[j] > DETECT_MAX_ATOMS) {
				free(r);
				return unsupported(c, "more than 16 comparisons that must hold together");
			}
			memcpy(r->at[r->n], a->at[i], a->len[i] * sizeof a->at[i][0]);
			memcpy(r->at[r->n] + a->len[i], b->at[j], b->len[j] * sizeof b->at[j][0]);
			r->len[r->n++] = (uint16_t)(a->len[i] + b->len[j]);
		}
	*a = *r;
	free(r);
	return 0;
}

/* One comparison (= or an IN value; MATCHES when regex) as a term of its own. */
static int atom(struct pc *c, struct terms *t, int kind, int role, const char *v, size_t n, bool regex)
{
	if (c->out->n_pool >= DETECT_MAX_POOL)
		return unsupported(c, "more than 512 comparisons");
	struct detect_atom *a = &c->out->pool[c->out->n_pool];
	const char *w;
	if (regex && detect_atom_regex(a, kind, role, v, n, &w))
		return unsupported(c, w);
	if (!regex && detect_atom_set(a, kind, role, v, n))
		return unsupported(c, "a value that is not of its object's kind (an address, a name, a URL, a hash)");
	if (t->n >= DETECT_MAX_TERMS)
		return unsupported(c, "more than 256 alternatives");
	t->len[t->n] = 1;
	t->at[t->n][0] = (uint16_t)c->out->n_pool++;
	t->n++;
	return 0;
}

static int expr(struct pc *c, struct terms *t);

static int term(struct pc *c, struct terms *t)
{
	if (lit(c, "(")) {
		if (++c->depth > 32)
			return unsupported(c, "nested deeper than 32");
		if (expr(c, t) || !lit(c, ")"))
			return unsupported(c, "a parenthesis not closed");
		c->depth--;
		return 0;
	}
	int kind, role;
	if (path(c, &kind, &role))
		return -1;
	if (lit(c, "NOT"))
		return unsupported(c, "NOT");
	char v[DETECT_VALUE_MAX];
	size_t vl;
	if (lit(c, "=")) {
		if (string(c, v, sizeof v, &vl))
			return -1;
		if (!kind) { /* *_ref.type = '…': true */
			t->n = 1;
			t->len[0] = 0;
			return 0;
		}
		return atom(c, t, kind, role, v, vl, false);
	}
	if (lit(c, "IN")) {
		if (!lit(c, "("))
			return unsupported(c, "IN without a list");
		do {
			if (string(c, v, sizeof v, &vl))
				return -1;
			if (!kind) {
				t->n = 1;
				t->len[0] = 0;
				continue;
			}
			if (atom(c, t, kind, role, v, vl, false))
				return -1;
		} while (lit(c, ","));
		if (!lit(c, ")"))
			return unsupported(c, "IN list not closed");
		return 0;
	}
	if (lit(c, "MATCHES")) {
		if (string(c, v, sizeof v, &vl))
			return -1;
		if (kind != DETECT_DOMAIN && kind != DETECT_URL && kind != DETECT_EMAIL && kind != DETECT_IP)
			return unsupported(c, "MATCHES on a hash or a type (only names, URLs, e-mail addresses, addresses)");
		return atom(c, t, kind, role, v, vl, true);
	}
	return unsupported(c, "an operator other than = and IN");
}

/* operand (op operand)*: each next operand combined into t with join. */
static int chain(struct pc *c, struct terms *t, const char *op, int (*operand)(struct pc *, struct terms *),
		 int (*join)(struct pc *, struct terms *, const struct terms *))
{
	if (operand(c, t))
		return -1;
	while (lit(c, op)) {
		struct terms *b = terms_new();
		if (!b)
			return unsupported(c, "out of memory");
		int rc = operand(c, b) || join(c, t, b);
		free(b);
		if (rc)
			return -1;
	}
	return 0;
}

static int conjunction(struct pc *c, struct terms *t)
{
	return chain(c, t, "AND", term, t_and);
}

static int expr(struct pc *c, struct terms *t)
{
	return chain(c, t, "OR", conjunction, t_or);
}

static int observation(struct pc *c, struct terms *t);

static int observations(struct pc *c, struct terms *t)
{
	if (chain(c, t, "OR", observation, t_or))
		return -1;
	if (lit(c, "AND") || lit(c, "FOLLOWEDBY"))
		return unsupported(c, "observations joined by AND or FOLLOWEDBY (two events)");
	return 0;
}

static int observation(struct pc *c, struct terms *t)
{
	if (lit(c, "(")) {
		if (++c->depth > 32)
			return unsupported(c, "nested deeper than 32");
		if (observations(c, t) || !lit(c, ")"))
			return -1;
		c->depth--;
	} else {
		if (!lit(c, "["))
			return unsupported(c, "not an observation expression");
		if (expr(c, t))
			return -1;
		if (!lit(c, "]"))
			return unsupported(c, "an observation expression not closed");
	}
	ws(c);
	if (lit(c, "WITHIN") || lit(c, "REPEATS") || lit(c, "START"))
		return unsupported(c, "a qualifier (WITHIN, REPEATS, START/STOP)");
	return 0;
}

int detect_pattern_compile(const char *p, size_t n, struct detect_dnf *out, const char **why)
{
	char err[160];
	if (stix_pattern_check(p, n, err, sizeof err)) {
		*why = "not a valid STIX pattern";
		return -1;
	}
	struct pc c = { .p = p, .n = n, .out = out };
	out->n_pool = 0;
	struct terms *t = terms_new();
	if (!t) {
		*why = "out of memory";
		return -1;
	}
	int rc = observations(&c, t);
	ws(&c);
	if (!rc && c.i != c.n)
		rc = unsupported(&c, "text after the pattern");
	if (rc) {
		free(t);
		*why = c.why;
		return 1;
	}
	unsigned k = 0;
	for (unsigned i = 0; i < t->n; i++) {
		if (!t->len[i]) { /* only "true" comparisons: it would match every event */
			free(t);
			*why = "a comparison that says nothing of a value (only *_ref.type)";
			return 1;
		}
		out->n_atoms[k] = t->len[i];
		memcpy(out->atom[k], t->at[i], t->len[i] * sizeof t->at[i][0]);
		k++;
	}
	out->n_terms = k;
	free(t);
	return 0;
}
