/* kz_json.c — the strict JSON parser of kz_json.h.
 *
 * One pass, no recursion: a stack of the open containers' indexes. Values are appended to
 * d->v in document order; a container's skip is fixed when it closes. Strings are decoded
 * straight into d->str, which is sized before the pass so the pointers into it stay valid:
 * a string's decoded bytes plus its NUL never exceed its quoted text, and a number's text
 * plus its NUL never exceed its text and the byte after it (or the one extra byte at the
 * end of the input), so n + 1 bytes always suffice. */
#include "base/kz_json.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct px {
	struct kz_json_doc *d;
	const unsigned char *p;
	size_t n, i;
	char *w; /* next free byte of d->str */
};

static int fail(struct px *x, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct px *x, size_t at, const char *fmt, ...)
{
	struct kz_json_doc *d = x->d;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->err, sizeof d->err, fmt, ap);
	va_end(ap);
	d->err_off = at;
	d->err_line = 1;
	d->err_col = 1;
	for (size_t k = 0; k < at && k < x->n; k++) {
		if (x->p[k] == '\n') {
			d->err_line++;
			d->err_col = 1;
		} else
			d->err_col++;
	}
	d->n = 0;
	return -1;
}

static inline void ws(struct px *x)
{
	while (x->i < x->n) {
		unsigned char c = x->p[x->i];
		if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
			return;
		x->i++;
	}
}

/* A document's arrays of megabytes (a TAXII bundle's) are written once into fresh memory,
 * which costs a fault per 4 KiB page: from 2 MiB on they are mapped in huge pages
 * (kz_mem_big_alloc; a node's first POST of ATT&CK ICS parsed in 11 ms against 3 once warm,
 * BENCHMARKS.md "TAXII ingest"). */

static struct kz_json *push(struct px *x)
{
	struct kz_json_doc *d = x->d;
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 256, mapped;
		if (nc > SIZE_MAX / 2 / sizeof *d->v)
			return NULL;
		struct kz_json *nv = kz_mem_big_alloc(nc * sizeof *nv, &mapped);
		if (!nv)
			return NULL;
		if (d->n)
			memcpy(nv, d->v, d->n * sizeof *nv);
		kz_mem_big_free(d->v, d->v_mapped);
		d->v = nv;
		d->cap = mapped ? mapped / sizeof *nv : nc;
		d->v_mapped = mapped;
	}
	struct kz_json *v = &d->v[d->n++];
	memset(v, 0, sizeof *v);
	v->skip = 1;
	return v;
}

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int k = 0; k < 4; k++) {
		unsigned char c = p[k];
		int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* The length of the UTF-8 sequence at p (limit bytes available), 0 when it is not
 * well-formed (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t limit)
{
	unsigned char c = p[0];
	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0)
		return limit >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c < 0xf0) {
		if (limit < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (limit < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
		return 0;
	if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
		return 0;
	return 4;
}

static char *put_utf8(char *w, unsigned cp)
{
	if (cp < 0x80)
		*w++ = (char)cp;
	else if (cp < 0x800) {
		*w++ = (char)(0xc0 | cp >> 6);
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*w++ = (char)(0xe0 | cp >> 12);
		*w++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*w++ = (char)(0xf0 | cp >> 18);
		*w++ = (char)(0x80 | (cp >> 12 & 0x3f));
		*w++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	}
	return w;
}

/* The string whose opening quote is at x->i: decoded to x->w. *s and *len describe it. */
static int string(struct px *x, const char **s, uint32_t *len)
{
	const unsigned char *p = x->p;
	size_t i = x->i + 1, n = x->n;
	char *w = x->w, *start = w;
	for (;;) {
		size_t run = i;
		while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
			i++;
		if (i > run) {
			memcpy(w, p + run, i - run);
			w += i - run;
		}
		if (i >= n)
			return fail(x, x->i, "unterminated string");
		unsigned char c = p[i];
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(x, i, "control character 0x%02x in a string (escape it)", c);
		if (c >= 0x80) {
			size_t k = utf8_seq(p + i, n - i);
			if (!k)
				return fail(x, i, "invalid UTF-8 in a string");
			memcpy(w, p + i, k);
			w += k;
			i += k;
			continue;
		}
		/* an escape */
		if (i + 1 >= n)
			return fail(x, x->i, "unterminated string");
		c = p[i + 1];
		switch (c) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '/': *w++ = '/'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'u': {
			int u = i + 6 <= n ? hex4(p + i + 2) : -1;
			if (u < 0)
				return fail(x, i, "invalid \\u escape (four hex digits expected)");
			unsigned cp = (unsigned)u;
			if (cp >= 0xd800 && cp <= 0xdbff) { /* a high surrogate: its low one must follow */
				int lo = i + 12 <= n && p[i + 6] == '\\' && p[i + 7] == 'u' ? hex4(p + i + 8) : -1;
				if (lo < 0xdc00 || lo > 0xdfff)
					return fail(x, i, "invalid Unicode escape \\u%04X (a lone surrogate)", cp);
				cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
				i += 6;
			} else if (cp >= 0xdc00 && cp <= 0xdfff)
				return fail(x, i, "invalid Unicode escape \\u%04X (a lone surrogate)", cp);
			else if (cp == 0)
				return fail(x, i, "\\u0000 is not allowed in a string");
			w = put_utf8(w, cp);
			i += 4;
			break;
		}
		default: return fail(x, i, "invalid escape \\%c", c >= 0x20 && c < 0x7f ? c : '?');
		}
		i += 2;
	}
	*w++ = 0;
	*s = start;
	*len = (uint32_t)(w - start - 1);
	x->w = w;
	x->i = i + 1;
	return 0;
}

static int number(struct px *x, struct kz_json *v)
{
	const unsigned char *p = x->p;
	size_t i = x->i, n = x->n, s = i;
	if (i < n && p[i] == '-')
		i++;
	if (i >= n || !(p[i] >= '0' && p[i] <= '9'))
		return fail(x, s, "invalid number");
	if (p[i] == '0') {
		i++;
		if (i < n && p[i] >= '0' && p[i] <= '9')
			return fail(x, s, "invalid number (a leading zero)");
	} else
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	if (i < n && p[i] == '.') {
		v->real = 1;
		i++;
		if (i >= n || !(p[i] >= '0' && p[i] <= '9'))
			return fail(x, s, "invalid number (digits expected after '.')");
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		v->real = 1;
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= n || !(p[i] >= '0' && p[i] <= '9'))
			return fail(x, s, "invalid number (digits expected in the exponent)");
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	v->type = KZ_JSON_NUMBER;
	v->len = (uint32_t)(i - s);
	memcpy(x->w, p + s, i - s);
	x->w[i - s] = 0;
	v->s = x->w;
	x->w += i - s + 1;
	x->i = i;
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* No two members of object o share a name (names hold no NUL: \u0000 is refused). */
static int unique_names(struct px *x, struct kz_json *o)
{
	struct kz_json_doc *d = x->d;
	if (o->len <= 16) {
		for (const struct kz_json *a = o + 1, *e = o + o->skip; a < e; a += a->skip)
			for (const struct kz_json *b = a + a->skip; b < e; b += b->skip)
				if (a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0)
					return fail(x, b->off, "duplicate object key \"%.40s\"", b->key);
		return 0;
	}
	if (d->keys_cap < o->len) {
		const char **nk = realloc(d->keys, o->len * sizeof *nk);
		if (!nk)
			return fail(x, o->off, "out of memory");
		d->keys = nk;
		d->keys_cap = o->len;
	}
	size_t k = 0;
	KZ_JSON_FOR(m, o) {
		d->keys[k++] = m->key;
	}
	qsort(d->keys, k, sizeof *d->keys, cmp_key);
	for (size_t j = 1; j < k; j++)
		if (strcmp(d->keys[j - 1], d->keys[j]) == 0)
			return fail(x, o->off, "duplicate object key \"%.40s\"", d->keys[j]);
	return 0;
}

static int literal(struct px *x, struct kz_json *v, const char *word, enum kz_json_type t)
{
	size_t l = strlen(word);
	if (x->n - x->i < l || memcmp(x->p + x->i, word, l) != 0)
		return fail(x, x->i, "invalid token");
	v->type = (uint8_t)t;
	x->i += l;
	return 0;
}

int kz_json_parse(struct kz_json_doc *d, const char *text, size_t n)
{
	struct px x = { d, (const unsigned char *)text, n, 0, NULL };
	d->n = 0;
	d->err[0] = 0;
	if (n > KZ_JSON_MAX_INPUT)
		return fail(&x, 0, "input larger than 4 GiB");
	if (d->str_cap < n + 1) {
		size_t mapped;
		char *ns = kz_mem_big_alloc(n + 1, &mapped);
		if (!ns)
			return fail(&x, 0, "out of memory");
		kz_mem_big_free(d->str, d->str_mapped);
		d->str = ns;
		d->str_cap = mapped ? mapped : n + 1;
		d->str_mapped = mapped;
	}
	if (!d->stack && !(d->stack = malloc(KZ_JSON_MAX_DEPTH * sizeof *d->stack)))
		return fail(&x, 0, "out of memory");
	x.w = d->str;
	size_t depth = 0;
	const char *key = NULL;
	uint32_t klen = 0;
	ws(&x);
	for (;;) {
		/* a value at x.i (with key set when it is an object member) */
		if (x.i >= n)
			return fail(&x, x.i, depth ? "unexpected end of input" : "empty input: a JSON value expected");
		struct kz_json *v = push(&x);
		if (!v)
			return fail(&x, x.i, "out of memory");
		v->key = key;
		v->klen = klen;
		v->off = (uint32_t)x.i;
		if (depth)
			d->v[d->stack[depth - 1]].len++;
		unsigned char c = x.p[x.i];
		int rc = 0;
		bool opened = false;
		switch (c) {
		case '{':
		case '[':
			if (depth == KZ_JSON_MAX_DEPTH)
				return fail(&x, x.i, "nested more than %d deep", KZ_JSON_MAX_DEPTH);
			v->type = c == '{' ? KZ_JSON_OBJECT : KZ_JSON_ARRAY;
			d->stack[depth++] = (uint32_t)(d->n - 1);
			x.i++;
			opened = true;
			break;
		case '"':
			v->type = KZ_JSON_STRING;
			rc = string(&x, &v->s, &v->len);
			break;
		case 't': rc = literal(&x, v, "true", KZ_JSON_TRUE); break;
		case 'f': rc = literal(&x, v, "false", KZ_JSON_FALSE); break;
		case 'n': rc = literal(&x, v, "null", KZ_JSON_NULL); break;
		default:
			if (c == '-' || (c >= '0' && c <= '9'))
				rc = number(&x, v);
			else
				return fail(&x, x.i, "invalid token");
		}
		if (rc)
			return -1;
		if (!opened)
			v->end = (uint32_t)x.i;
		/* what follows: the first member of the container just opened (or its closing
		 * bracket), else ',' or the closing bracket of the container the value is in */
		bool after_value = !opened;
		for (;;) {
			ws(&x);
			if (!depth) {
				if (x.i != n)
					return fail(&x, x.i, "end of input expected after the value");
				return 0;
			}
			struct kz_json *top = &d->v[d->stack[depth - 1]];
			bool obj = top->type == KZ_JSON_OBJECT;
			if (x.i >= n)
				return fail(&x, x.i, "unexpected end of input");
			c = x.p[x.i];
			if (c == (obj ? '}' : ']')) {
				x.i++;
				top->end = (uint32_t)x.i;
				top->skip = (uint32_t)(d->n - d->stack[depth - 1]);
				depth--;
				if (obj && top->len > 1 && unique_names(&x, top))
					return -1;
				after_value = true;
				continue;
			}
			if (after_value) {
				if (c != ',')
					return fail(&x, x.i, obj ? "',' or '}' expected" : "',' or ']' expected");
				x.i++;
				ws(&x);
			}
			break;
		}
		key = NULL;
		klen = 0;
		if (d->v[d->stack[depth - 1]].type == KZ_JSON_OBJECT) {
			if (x.i >= n || x.p[x.i] != '"')
				return fail(&x, x.i, "string or '}' expected");
			if (string(&x, &key, &klen))
				return -1;
			ws(&x);
			if (x.i >= n || x.p[x.i] != ':')
				return fail(&x, x.i, "':' expected");
			x.i++;
			ws(&x);
		}
	}
}

void kz_json_trim(struct kz_json_doc *d, size_t keep)
{
	if (d->cap * sizeof *d->v > keep) {
		kz_mem_big_free(d->v, d->v_mapped);
		d->v = NULL;
		d->cap = 0;
		d->v_mapped = 0;
	}
	if (d->str_cap > keep) {
		kz_mem_big_free(d->str, d->str_mapped);
		d->str = NULL;
		d->str_cap = 0;
		d->str_mapped = 0;
	}
	if (d->keys_cap * sizeof *d->keys > keep) {
		free(d->keys);
		d->keys = NULL;
		d->keys_cap = 0;
	}
	if (!keep) {
		free(d->stack);
		d->stack = NULL;
	}
	d->n = 0;
}

const struct kz_json *kz_json_get(const struct kz_json *o, const char *key)
{
	if (!o || o->type != KZ_JSON_OBJECT)
		return NULL;
	size_t l = strlen(key);
	KZ_JSON_FOR(m, o) {
		if (m->klen == l && memcmp(m->key, key, l) == 0)
			return m;
	}
	return NULL;
}

const struct kz_json *kz_json_at(const struct kz_json *a, size_t i)
{
	if (!a || (a->type != KZ_JSON_ARRAY && a->type != KZ_JSON_OBJECT) || i >= a->len)
		return NULL;
	const struct kz_json *m = a + 1;
	while (i--)
		m += m->skip;
	return m;
}

bool kz_json_int(const struct kz_json *v, long long *out)
{
	if (!v || v->type != KZ_JSON_NUMBER || v->real)
		return false;
	errno = 0;
	char *e;
	long long r = strtoll(v->s, &e, 10);
	if (errno || *e)
		return false;
	*out = r;
	return true;
}

bool kz_json_num(const struct kz_json *v, double *out)
{
	if (!v || v->type != KZ_JSON_NUMBER)
		return false;
	*out = strtod(v->s, NULL);
	return true;
}

int kz_json_put_str(struct kz_buf *b, const char *s)
{
	if (kz_buf_append(b, "\"", 1))
		return KZ_ENOMEM;
	const char *run = s; /* bytes that need no escape, appended in one step */
	for (const char *p = s;; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch && ch != '"' && ch != '\\' && ch >= 0x20 && ch != 0x7f)
			continue;
		if (p > run && kz_buf_append(b, run, (size_t)(p - run)))
			return KZ_ENOMEM;
		if (!ch)
			break;
		char esc[8];
		int n = ch == '"' || ch == '\\' ? snprintf(esc, sizeof esc, "\\%c", ch) : snprintf(esc, sizeof esc, "\\u%04x", ch);
		if (kz_buf_append(b, esc, (size_t)n))
			return KZ_ENOMEM;
		run = p + 1;
	}
	return kz_buf_append(b, "\"", 1) ? KZ_ENOMEM : KZ_OK;
}

size_t kz_json_compact(const char *in, size_t n, char *out)
{
	size_t k = 0, i = 0;
	while (i < n) {
		char ch = in[i];
		if (ch != '"') { /* between tokens: one byte at a time (punctuation, numbers, indentation) */
			if (ch != ' ' && ch != '\n' && ch != '\t' && ch != '\r')
				out[k++] = ch;
			i++;
			continue;
		}
		/* a string: copied in runs up to its closing quote, escapes taken whole */
		size_t j = i + 1;
		for (;;) {
			const char *q = memchr(in + j, '"', n - j);
			size_t end = q ? (size_t)(q - in) : n;
			const char *bs = memchr(in + j, '\\', end - j);
			if (!bs) {
				j = end < n ? end + 1 : n;
				break;
			}
			j = (size_t)(bs - in) + 2; /* the escape and what it escapes */
			if (j >= n) {
				j = n;
				break;
			}
		}
		memcpy(out + k, in + i, j - i);
		k += j - i;
		i = j;
	}
	return k;
}
