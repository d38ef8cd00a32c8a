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

/* ---------- the index's structures (detect_index.c builds them, detect_match.c reads them) ---------- */

#include <hs/hs.h>


struct ftab {
	uint32_t width, cap, n;
	uint8_t *keys;
	uint32_t *vals; /* head posting + 1; 0: empty */
};

struct sent {
	uint64_t h;
	uint32_t off, len, val;
};

struct stab {
	uint32_t cap, n;
	struct sent *e;
	struct kz_buf arena;
};

/* A hash's home slot in a table of cap slots (any cap, not only powers of two: tables grow
 * by half, Lemire's multiply-shift instead of a mask). */
static inline uint32_t detect_slot_of(uint64_t h, uint32_t cap)
{
	return (uint32_t)(((h & 0xffffffffu) * (uint64_t)cap) >> 32);
}

/* The key's value slot (insert: made when missing, then 0); NULL when absent or out of
 * memory. Open addressing, linear probing, SipHash with the process's key. */
uint32_t *detect_ftab_slot(struct ftab *t, const uint8_t *key, bool insert);
uint32_t *detect_stab_slot(struct stab *t, const char *key, size_t len, bool insert);


enum { P_SINGLE = 1, P_EXACT = 2 };

extern const uint8_t detect_mapped[12]; /* ::ffff:0:0/96 */

/* A table's value: 0 empty; with DIRECT, the one indicator of a key (the usual case: no
 * posting), its role and exactness in the value's top bits; else a posting + 1. */
#define DIRECT 0x80000000u
#define D_EXACT 0x40000000u
#define D_ROLE_SHIFT 28
#define D_IND 0x0fffffffu

struct posting {
	uint32_t ref;   /* P_SINGLE: the indicator; else the conjunction */
	uint32_t next;  /* the next posting of the same key + 1; 0: none */
	uint16_t atom;  /* its place in the conjunction */
	uint8_t role, flags;
};

struct term {
	uint32_t ind;
	uint16_t n_atoms;
};

enum { I_DEAD = 1, I_ZEEK = 2, I_UNTIL = 4 /* has a valid_until (untils) */ };

/* An indicator: 8 bytes, whatever it is (the memory target is per indicator). */
struct ind {
	uint32_t meta;            /* STIX: its smeta; Zeek intel: its value's offset in zvals (a
				   * network only: other values are the matched one), else NO_META */
	uint16_t ls;              /* its (label, source) pair */
	uint8_t flags, kind;      /* kind: a Zeek intel line's (for its pattern); a STIX indicator's
				   * types, a bit each (detect_type_names), for the counts by type */
};
#define NO_META UINT32_MAX

struct smeta {                /* what only STIX indicators have: 32 bytes */
	uint8_t uuid[16];
	int64_t from, modified;
};

struct until {                /* a valid_until (few indicators have one), by indicator */
	uint32_t ind;
	int64_t until;
};

/* Indicator i's valid_until (I_UNTIL), INT64_MAX when open. */
int64_t detect_until(const struct detect_index *x, uint32_t i);

struct pair {
	uint32_t label, source, author; /* interned strings */
};

/* MATCHES expressions of one kind: the set of distinct expressions (each to its postings),
 * compiled into one Hyperscan database when first needed after a change. */
struct rxset {
	struct stab set;
	hs_database_t *db;
	uint32_t *heads;    /* expression id -> head posting + 1 */
	bool dirty;
};

struct skipped {
	char *id, *why;
	uint16_t ls; /* its (label, source, author): who may see that it was skipped */
};

struct detect_index {
	struct ftab ip[129];      /* by prefix length */
	uint8_t lens[129];        /* the prefix lengths present, longest first */
	unsigned n_lens;
	struct ftab ip4[33];      /* IPv4 networks and addresses: 4-byte keys, by prefix length */
	uint8_t lens4[33];
	unsigned n_lens4;
	struct ftab hash[DETECT_KINDS];
	struct stab str[DETECT_KINDS]; /* DETECT_DOMAIN, DETECT_URL, DETECT_EMAIL */
	uint32_t domain_labels;   /* bit k: a domain of k labels is indexed (bit 31: 31 or more); a
				   * suffix of another length is not looked up */
	struct until *untils;     /* ascending by indicator (they are added in that order) */
	size_t n_untils, cap_untils;
	uint32_t *ids;            /* indicator + 1 by its UUID (id_slot): 4 bytes a slot, the key
				   * read from the indicator's smeta */
	uint32_t id_cap, id_n;
	struct ind *inds;
	size_t n_inds, cap_inds;
	struct smeta *smeta;
	size_t n_smeta, cap_smeta;
	struct pair *pairs;
	size_t n_pairs;
	struct posting *posts;
	size_t n_posts, cap_posts;
	struct term *terms;
	size_t n_terms, cap_terms;
	char **strs;              /* interned labels and sources */
	size_t n_strs;
	struct skipped *skip;
	size_t n_skip;
	/* warning lists */
	struct stab warn;         /* lower-case text (names, hashes, URLs) -> list + 1 */
	struct ftab warn_ip[129];
	uint8_t warn_lens[129];
	unsigned n_warn_lens;
	char **lists;
	size_t n_lists;
	struct detect_stats st;
	struct detect_dnf *dnf;   /* scratch for compiling */
	struct kz_buf zvals;      /* Zeek intel values, NUL terminated */
	struct rxset rx[DETECT_KINDS];
	hs_scratch_t *scratch;
};

/* The kind's MATCHES expressions compiled into one database (after a change). */
int detect_rx_prepare(struct detect_index *x, int kind);

#endif
