/* detect_internal.h — the index's parts shared by its files (not an API). */
#ifndef KZ_DETECT_INTERNAL_H
#define KZ_DETECT_INTERNAL_H

#include "services/detect/detect.h"
#include "base/kz_buf.h"

#define DETECT_MAX_TERMS 256 /* conjunctions of one pattern (after OR is spread over AND) */
#define DETECT_MAX_ATOMS 16  /* comparisons of one conjunction */
#define DETECT_MAX_POOL 512  /* comparisons of one pattern (each value of an IN list is one) */
#define DETECT_VALUE_MAX 2048

/* One comparison of a pattern, normalised: a key of its kind's table. */
struct detect_atom {
	uint8_t kind, role;
	bool exact;             /* a domain that matches only itself (Zeek intel), not its subdomains */
	bool regex;             /* MATCHES: key is the regular expression (PCRE syntax, Hyperscan) */
	unsigned prefix;        /* DETECT_IP: on the 128-bit scale */
	uint8_t key[DETECT_VALUE_MAX];
	size_t key_len;
};

/* A pattern in disjunctive normal form: term i is the conjunction of the atoms
 * pool[atom[i][0..n_atoms[i])]. About 1.2 MB: allocate it. */
struct detect_dnf {
	unsigned n_terms, n_pool;
	uint16_t n_atoms[DETECT_MAX_TERMS];
	uint16_t atom[DETECT_MAX_TERMS][DETECT_MAX_ATOMS];
	struct detect_atom pool[DETECT_MAX_POOL];
};

/* A STIX pattern (the subset of docs/DETECTION.md) in DNF: 0; 1 with *why when it is
 * outside the subset. */
int detect_pattern_compile(const char *p, size_t n, struct detect_dnf *out, const char **why);
/* A value of kind as an atom's key (an address with its prefix, a normalised name or URL, a
 * hash's bytes): 0; -1 when the value is not one. */
int detect_atom_set(struct detect_atom *a, int kind, int role, const char *v, size_t n);
/* A value of a warning list (type string, hostname or cidr) under the list's name. */
int detect_warn_add(struct detect_index *x, const char *list, const char *type, const char *v);
/* A MATCHES comparison: the expression, checked by compiling it. 0; -1 with *why. */
int detect_atom_regex(struct detect_atom *a, int kind, int role, const char *v, size_t n, const char **why);
/* Hash kinds by their hex length. */
int detect_hash_kind(size_t hexlen, bool cert);

#endif
