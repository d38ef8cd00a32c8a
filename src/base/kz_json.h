/* kz_json.h — a strict JSON (RFC 8259) parser into a flat, read-only tree, for the paths
 * where parsing is the cost: TAXII envelopes of a thousand STIX objects are parsed, each
 * object validated and then stored as the bytes that came, so the tree only needs to be
 * read, once, and every value needs to know where its text is.
 *
 * The tree is one array of values in document order (pre-order): a container's members
 * follow it, and `skip` is the number of array entries its subtree takes (1 for a scalar),
 * so the next sibling of v is v + v->skip and KZ_JSON_FOR walks a container's members with
 * no pointers. Strings (and member names) are decoded once into a side buffer, NUL
 * terminated. Numbers keep their text. Every value knows its span [off, end) in the input.
 *
 * What it accepts is what jansson accepts with JSON_REJECT_DUPLICATES | JSON_DECODE_ANY:
 * one value with white space around it; UTF-8 only, with no overlong forms, surrogates or
 * U+0000 (also not as \u0000); \u escapes with surrogate pairs; no duplicate member names.
 * Unlike jansson it does not refuse integers beyond 64 bits (it does not convert numbers
 * until asked: kz_json_int says no). Nesting deeper than KZ_JSON_MAX_DEPTH is refused.
 *
 * A kz_json_doc is reused across parses (its buffers grow to the largest input seen; call
 * kz_json_trim to give memory back). Not thread safe: one doc per thread. */
#ifndef KZ_JSON_H
#define KZ_JSON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KZ_JSON_MAX_DEPTH 2048
#define KZ_JSON_MAX_INPUT (UINT32_MAX - 1u)

enum kz_json_type { KZ_JSON_NULL = 1, KZ_JSON_FALSE, KZ_JSON_TRUE, KZ_JSON_NUMBER, KZ_JSON_STRING, KZ_JSON_ARRAY, KZ_JSON_OBJECT };

struct kz_json {
	uint8_t type;      /* enum kz_json_type */
	uint8_t real;      /* number: has a fraction or an exponent (not an integer) */
	uint32_t len;      /* string: decoded bytes; number: text bytes; array/object: members */
	uint32_t skip;     /* entries this value's subtree takes, itself included */
	uint32_t klen;     /* member name length (in an object) */
	const char *key;   /* member name (decoded, NUL terminated) when in an object, else NULL */
	const char *s;     /* string: decoded, NUL terminated; number: its text, NUL terminated */
	uint32_t off, end; /* the value's text is input[off, end) */
};

struct kz_json_doc {
	struct kz_json *v; /* v[0] is the root after a successful parse */
	size_t n, cap;
	char *str; /* decoded strings and number texts */
	size_t str_cap;
	size_t v_mapped, str_mapped; /* v and str in huge pages (bytes mapped), 0: on the heap */
	uint32_t *stack; /* open containers while parsing */
	const char **keys; /* scratch for the duplicate-name check of large objects */
	size_t keys_cap;
	/* on failure: what, and where (byte offset, 1-based line and column) */
	char err[96];
	size_t err_off;
	unsigned err_line, err_col;
};

/* Parses p[0..n). 0 with d->v[0] the root; -1 with d->err and the position set. */
int kz_json_parse(struct kz_json_doc *d, const char *p, size_t n);
/* Frees buffers larger than keep bytes (all with keep = 0). The doc stays usable. */
void kz_json_trim(struct kz_json_doc *d, size_t keep);
static inline void kz_json_free(struct kz_json_doc *d) { kz_json_trim(d, 0); }

static inline const struct kz_json *kz_json_root(const struct kz_json_doc *d) { return d->n ? d->v : NULL; }

/* Each member of the array or object v (none when v is NULL or a scalar). */
#define KZ_JSON_FOR(m, v)                                                                                     \
	for (const struct kz_json *m = (v) ? (v) + 1 : NULL, *m##_end_ = (v) ? (v) + (v)->skip : NULL; m < m##_end_; \
	     m += m->skip)

static inline bool kz_json_is(const struct kz_json *v, enum kz_json_type t) { return v && v->type == t; }
static inline bool kz_json_is_bool(const struct kz_json *v)
{
	return v && (v->type == KZ_JSON_TRUE || v->type == KZ_JSON_FALSE);
}
/* The member named key of object o (NULL when o is not an object or has none). */
const struct kz_json *kz_json_get(const struct kz_json *o, const char *key);
/* The i-th member of array or object a (NULL beyond the end): O(i). */
const struct kz_json *kz_json_at(const struct kz_json *a, size_t i);
/* The decoded string (NULL when v is not a string). */
static inline const char *kz_json_str(const struct kz_json *v) { return v && v->type == KZ_JSON_STRING ? v->s : NULL; }
/* The string member key of o, or NULL. */
static inline const char *kz_json_get_str(const struct kz_json *o, const char *key) { return kz_json_str(kz_json_get(o, key)); }
/* An integer number (no fraction, no exponent) that fits in 64 bits. */
bool kz_json_int(const struct kz_json *v, long long *out);
/* Any number, as a double. */
bool kz_json_num(const struct kz_json *v, double *out);
/* ---------- writing ---------- */
struct kz_buf;
/* Appends s (UTF-8 already) as a JSON string: quotes, backslashes and control characters
 * escaped. KZ_ENOMEM, or 0. */
int kz_json_put_str(struct kz_buf *b, const char *s);
/* JSON text the parser accepted, without the white space between tokens, into out (n bytes
 * at most: it never grows). Its length. Published STIX bundles are indented, ATT&CK's by a
 * third of their bytes (TAXII stores objects so). */
size_t kz_json_compact(const char *in, size_t n, char *out);

#endif
