/* stix_pattern.c — a recursive-descent parser for the STIX 2.1 patterning language (§9),
 * following the OASIS grammar STIXPattern.g4 (../shared/data/stix/.../pattern_grammar):
 *
 *   pattern      := obsExprs EOF
 *   obsExprs     := obsOr ("FOLLOWEDBY" obsOr)*
 *   obsOr        := obsAnd ("OR" obsAnd)*
 *   obsAnd       := obsExpr ("AND" obsExpr)*
 *   obsExpr      := ("[" cmpExpr "]" | "(" obsExprs ")") qualifier*
 *   qualifier    := "START" t'…' "STOP" t'…' | "WITHIN" number "SECONDS" | "REPEATS" int "TIMES"
 *   cmpExpr      := cmpAnd ("OR" cmpAnd)*
 *   cmpAnd       := propTest ("AND" propTest)*
 *   propTest     := path "NOT"? op literal | "(" cmpExpr ")" | "NOT"? "EXISTS" path
 *   path         := type ":" (ident | string) ("." (ident | string) | "[" (int | "*") "]")*
 *
 * Keywords are upper case (true/false lower case), as in the grammar. Only validity is
 * decided here; detection (issue 7) compiles patterns its own way. */
#include "services/stix/stix.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

enum tok {
	T_EOF, T_ERR, T_IDENT, T_STRING, T_INT, T_FLOAT, T_BOOL, T_HEX, T_BIN, T_TS,
	T_AND, T_OR, T_NOT, T_FOLLOWEDBY, T_LIKE, T_MATCHES, T_ISSUPERSET, T_ISSUBSET, T_EXISTS, T_LAST, T_IN,
	T_START, T_STOP, T_SECONDS, T_WITHIN, T_REPEATS, T_TIMES,
	T_EQ, T_NEQ, T_LT, T_LE, T_GT, T_GE, T_COLON, T_DOT, T_COMMA, T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK, T_STAR
};

struct px {
	const char *s;
	size_t n, pos;
	enum tok t;
	size_t tstart, tlen;
	bool hyphen;   /* the identifier contains '-' */
	bool negative; /* a numeric literal with '-' */
	int depth;
	char *err;
	size_t err_len;
	bool failed;
};

static int fail(struct px *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct px *x, const char *fmt, ...)
{
	if (!x->failed) {
		char m[200];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(m, sizeof m, fmt, ap);
		va_end(ap);
		snprintf(x->err, x->err_len, "pattern: at offset %zu: %s", x->tstart, m);
		x->failed = true;
	}
	return -1;
}

static bool is_id0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_dig(char c) { return c >= '0' && c <= '9'; }
static bool is_hex(char c) { return is_dig(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool is_b64(char c) { return is_id0(c) ? c != '_' : is_dig(c) || c == '+' || c == '/'; }

static const struct {
	const char *w;
	enum tok t;
} keywords[] = { { "AND", T_AND }, { "OR", T_OR }, { "NOT", T_NOT }, { "FOLLOWEDBY", T_FOLLOWEDBY },
		 { "LIKE", T_LIKE }, { "MATCHES", T_MATCHES }, { "ISSUPERSET", T_ISSUPERSET },
		 { "ISSUBSET", T_ISSUBSET }, { "EXISTS", T_EXISTS }, { "LAST", T_LAST }, { "IN", T_IN },
		 { "START", T_START }, { "STOP", T_STOP }, { "SECONDS", T_SECONDS }, { "WITHIN", T_WITHIN },
		 { "REPEATS", T_REPEATS }, { "TIMES", T_TIMES }, { "true", T_BOOL }, { "false", T_BOOL } };

/* A quoted body starting at s[i] == '\''; returns the index after the closing quote, or 0. */
static size_t quoted(const struct px *x, size_t i, bool escapes)
{
	for (i++; i < x->n; i++) {
		char c = x->s[i];
		if (c == '\'')
			return i + 1;
		if (c == '\\') {
			if (!escapes || i + 1 >= x->n || (x->s[i + 1] != '\'' && x->s[i + 1] != '\\'))
				return 0;
			i++;
		}
	}
	return 0;
}

static void next(struct px *x)
{
	const char *s = x->s;
	size_t i = x->pos;
	for (;;) { /* white space and comments */
		while (i < x->n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\v' || s[i] == '\f'))
			i++;
		if (i + 1 < x->n && s[i] == '/' && s[i + 1] == '*') {
			const char *e = memmem(s + i + 2, x->n - i - 2, "*/", 2);
			if (!e) {
				x->tstart = i;
				x->t = T_ERR;
				return;
			}
			i = (size_t)(e - s) + 2;
			continue;
		}
		if (i + 1 < x->n && s[i] == '/' && s[i + 1] == '/') {
			while (i < x->n && s[i] != '\n' && s[i] != '\r')
				i++;
			continue;
		}
		break;
	}
	x->tstart = i;
	x->hyphen = x->negative = false;
	if (i >= x->n) {
		x->t = T_EOF;
		x->tlen = 0;
		x->pos = i;
		return;
	}
	char c = s[i];
	size_t j = i + 1;
	enum tok t = T_ERR;
	if ((c == 'h' || c == 'b' || c == 't') && j < x->n && s[j] == '\'') {
		size_t e = quoted(x, j, false);
		if (e) {
			const char *b = s + j + 1;
			size_t bl = e - j - 2;
			t = c == 'h' ? T_HEX : c == 'b' ? T_BIN : T_TS;
			if (t == T_HEX) {
				for (size_t k = 0; k < bl; k++)
					if (!is_hex(b[k]))
						t = T_ERR;
				if (bl % 2)
					t = T_ERR;
			} else if (t == T_BIN) {
				size_t pad = bl >= 1 && b[bl - 1] == '=' ? (bl >= 2 && b[bl - 2] == '=' ? 2 : 1) : 0;
				if (bl == 0 || bl % 4)
					t = T_ERR;
				for (size_t k = 0; k + pad < bl; k++)
					if (!is_b64(b[k]))
						t = T_ERR;
			} else {
				char ts[64];
				int64_t us;
				if (bl >= sizeof ts)
					t = T_ERR;
				else {
					memcpy(ts, b, bl);
					ts[bl] = 0;
					if (stix_timestamp(ts, &us, NULL))
						t = T_ERR;
				}
			}
			j = e;
		}
	} else if (is_id0(c)) {
		while (j < x->n && (is_id0(s[j]) || is_dig(s[j]) || s[j] == '-')) {
			if (s[j] == '-')
				x->hyphen = true;
			j++;
		}
		t = T_IDENT;
		for (size_t k = 0; k < sizeof keywords / sizeof keywords[0]; k++)
			if (strlen(keywords[k].w) == j - i && memcmp(keywords[k].w, s + i, j - i) == 0)
				t = keywords[k].t;
	} else if (c == '\'') {
		size_t e = quoted(x, i, true);
		if (e) {
			t = T_STRING;
			j = e;
		}
	} else if (is_dig(c) || (c == '.' && j < x->n && is_dig(s[j])) ||
		   ((c == '+' || c == '-') && j < x->n && (is_dig(s[j]) || s[j] == '.'))) {
		size_t k = (c == '+' || c == '-') ? j : i;
		x->negative = c == '-';
		size_t d0 = k;
		while (k < x->n && is_dig(s[k]))
			k++;
		size_t nd = k - d0;
		if (k < x->n && s[k] == '.') {
			size_t f0 = ++k;
			while (k < x->n && is_dig(s[k]))
				k++;
			t = k > f0 ? T_FLOAT : T_ERR;
		} else
			t = (nd == 1 || (nd > 1 && s[d0] != '0')) ? T_INT : T_ERR;
		j = k;
	} else {
		char d = j < x->n ? s[j] : 0;
		switch (c) {
		case '=': t = T_EQ; if (d == '=') j++; break;
		case '!': if (d == '=') { t = T_NEQ; j++; } break;
		case '<': if (d == '=') { t = T_LE; j++; } else if (d == '>') { t = T_NEQ; j++; } else t = T_LT; break;
		case '>': if (d == '=') { t = T_GE; j++; } else t = T_GT; break;
		case ':': t = T_COLON; break;
		case '.': t = T_DOT; break;
		case ',': t = T_COMMA; break;
		case '(': t = T_LPAREN; break;
		case ')': t = T_RPAREN; break;
		case '[': t = T_LBRACK; break;
		case ']': t = T_RBRACK; break;
		case '*': t = T_STAR; break;
		default: break;
		}
	}
	x->t = t;
	x->tlen = j - i;
	x->pos = j;
}

static int expect(struct px *x, enum tok t, const char *what)
{
	if (x->t == T_ERR)
		return fail(x, "invalid token");
	if (x->t != t)
		return fail(x, "expected %s", what);
	next(x);
	return 0;
}

static int obs_exprs(struct px *x);

static int path(struct px *x)
{
	if (x->t != T_IDENT)
		return fail(x, "expected an object type (like ipv4-addr)");
	next(x);
	if (expect(x, T_COLON, "':' after the object type"))
		return -1;
	if (x->t == T_IDENT && x->hyphen)
		return fail(x, "the first path component cannot contain '-' (quote it)");
	if (x->t != T_IDENT && x->t != T_STRING)
		return fail(x, "expected a property name after ':'");
	next(x);
	for (;;) {
		if (x->t == T_DOT) {
			next(x);
			if ((x->t != T_IDENT || x->hyphen) && x->t != T_STRING)
				return fail(x, "expected a property name after '.'");
			next(x);
		} else if (x->t == T_LBRACK) {
			next(x);
			if (x->t != T_INT && x->t != T_STAR)
				return fail(x, "expected a list index or '*'");
			next(x);
			if (expect(x, T_RBRACK, "']' after the list index"))
				return -1;
		} else
			return 0;
	}
}

static bool orderable(enum tok t)
{
	return t == T_INT || t == T_FLOAT || t == T_STRING || t == T_BIN || t == T_HEX || t == T_TS;
}

static int cmp_expr(struct px *x);

static int prop_test(struct px *x)
{
	if (x->t == T_LPAREN) {
		if (++x->depth > 64)
			return fail(x, "nested more than 64 deep");
		next(x);
		if (cmp_expr(x) || expect(x, T_RPAREN, "')'"))
			return -1;
		x->depth--;
		return 0;
	}
	if (x->t == T_NOT || x->t == T_EXISTS) {
		/* NOT? EXISTS path, or a path cannot start with NOT */
		if (x->t == T_NOT) {
			next(x);
			if (x->t != T_EXISTS)
				return fail(x, "expected EXISTS after NOT");
		}
		next(x);
		return path(x);
	}
	if (path(x))
		return -1;
	if (x->t == T_NOT)
		next(x);
	enum tok op = x->t;
	switch (op) {
	case T_EQ:
	case T_NEQ:
		next(x);
		if (!orderable(x->t) && x->t != T_BOOL)
			return fail(x, "expected a literal after the comparison");
		next(x);
		return 0;
	case T_LT:
	case T_LE:
	case T_GT:
	case T_GE:
		next(x);
		if (!orderable(x->t))
			return fail(x, "expected an orderable literal (number, string, binary, hex or timestamp)");
		next(x);
		return 0;
	case T_IN:
		next(x);
		if (expect(x, T_LPAREN, "'(' to start the set"))
			return -1;
		if (x->t == T_RPAREN) {
			next(x);
			return 0;
		}
		for (;;) {
			if (!orderable(x->t) && x->t != T_BOOL)
				return fail(x, "expected a literal in the set");
			next(x);
			if (x->t == T_COMMA) {
				next(x);
				continue;
			}
			return expect(x, T_RPAREN, "')' to end the set");
		}
	case T_LIKE:
	case T_MATCHES:
	case T_ISSUBSET:
	case T_ISSUPERSET:
		next(x);
		return expect(x, T_STRING, "a quoted string");
	default:
		return fail(x, x->t == T_ERR ? "invalid token" : "expected a comparison operator");
	}
}

static int cmp_and(struct px *x)
{
	if (prop_test(x))
		return -1;
	while (x->t == T_AND) {
		next(x);
		if (prop_test(x))
			return -1;
	}
	return 0;
}

static int cmp_expr(struct px *x)
{
	if (cmp_and(x))
		return -1;
	while (x->t == T_OR) {
		next(x);
		if (cmp_and(x))
			return -1;
	}
	return 0;
}

static int64_t ts_us(struct px *x)
{
	char ts[64];
	int64_t us = 0;
	size_t l = x->tlen - 3;
	if (l < sizeof ts) {
		memcpy(ts, x->s + x->tstart + 2, l);
		ts[l] = 0;
		(void)stix_timestamp(ts, &us, NULL);
	}
	return us;
}

static int obs_expr(struct px *x)
{
	if (++x->depth > 64)
		return fail(x, "nested more than 64 deep");
	if (x->t == T_LBRACK) {
		next(x);
		if (cmp_expr(x) || expect(x, T_RBRACK, "']' to close the observation"))
			return -1;
	} else if (x->t == T_LPAREN) {
		next(x);
		if (obs_exprs(x) || expect(x, T_RPAREN, "')'"))
			return -1;
	} else
		return fail(x, x->t == T_ERR ? "invalid token" : "expected '[' to start an observation expression");
	x->depth--;
	for (;;) {
		if (x->t == T_START) {
			next(x);
			if (x->t != T_TS)
				return fail(x, "expected t'timestamp' after START");
			int64_t a = ts_us(x);
			next(x);
			if (expect(x, T_STOP, "STOP"))
				return -1;
			if (x->t != T_TS)
				return fail(x, "expected t'timestamp' after STOP");
			if (ts_us(x) <= a)
				return fail(x, "STOP must be later than START");
			next(x);
		} else if (x->t == T_WITHIN) {
			next(x);
			if ((x->t != T_INT && x->t != T_FLOAT) || x->negative)
				return fail(x, "expected a positive number of seconds after WITHIN");
			char num[32];
			double v = 0;
			if (x->tlen < sizeof num) {
				memcpy(num, x->s + x->tstart, x->tlen);
				num[x->tlen] = 0;
				v = strtod(num, NULL);
			}
			if (x->tlen >= sizeof num || !(v > 0) || v > 4294967295.0)
				return fail(x, "WITHIN takes a number of seconds greater than 0 and at most 4294967295");
			next(x);
			if (expect(x, T_SECONDS, "SECONDS"))
				return -1;
		} else if (x->t == T_REPEATS) {
			next(x);
			if (x->t != T_INT || x->negative)
				return fail(x, "expected a positive integer after REPEATS");
			uint64_t v = 0;
			for (size_t i = 0; i < x->tlen && v <= INT32_MAX; i++)
				v = v * 10 + (uint64_t)(x->s[x->tstart + i] - '0');
			if (v == 0 || v > INT32_MAX)
				return fail(x, "REPEATS takes an integer from 1 to 2147483647");
			next(x);
			if (expect(x, T_TIMES, "TIMES"))
				return -1;
		} else
			return 0;
	}
}

static int obs_and(struct px *x)
{
	if (obs_expr(x))
		return -1;
	while (x->t == T_AND) {
		next(x);
		if (obs_expr(x))
			return -1;
	}
	return 0;
}

static int obs_or(struct px *x)
{
	if (obs_and(x))
		return -1;
	while (x->t == T_OR) {
		next(x);
		if (obs_and(x))
			return -1;
	}
	return 0;
}

static int obs_exprs(struct px *x)
{
	if (obs_or(x))
		return -1;
	while (x->t == T_FOLLOWEDBY) {
		next(x);
		if (obs_or(x))
			return -1;
	}
	return 0;
}

int stix_pattern_check(const char *p, size_t n, char *err, size_t err_len)
{
	if (memchr(p, 0, n)) {
		snprintf(err, err_len, "pattern: contains a NUL character");
		return -1;
	}
	struct px x = { .s = p, .n = n, .err = err, .err_len = err_len };
	next(&x);
	if (obs_exprs(&x))
		return -1;
	if (x.t != T_EOF)
		return fail(&x, x.t == T_ERR ? "invalid token" : "unexpected text after the pattern");
	return 0;
}
