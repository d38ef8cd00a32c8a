/* detect_index.c — the typed matching structures (docs/DETECTION.md "The index"):
 *
 *   ftab: open addressing over fixed-width binary keys (addresses: 16 bytes, one table per
 *         prefix length present; hashes: 16, 20 or 32 bytes, one table per algorithm);
 *   stab: open addressing over text keys kept in one arena (domains, URLs, e-mail).
 *
 * A table maps a key to the head of a chain of postings; a posting names the indicator (a
 * pattern of one comparison, the usual case) or the conjunction it is part of, and which
 * comparison of it. Lookups compute one SipHash per key with the process's random key.
 * Indicators are never unlinked: a replaced, revoked or expired one is marked and skipped,
 * and the node builds a fresh index to drop them for good. */
#include "services/detect/detect_internal.h"
#include "base/kz_hash.h"
#include "base/kz_hex.h"
#include "base/kz_json.h"
#include "services/stix/stix.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- tables ---------- */

struct ftab {
	uint32_t width, cap, n;
	uint8_t *keys;
	uint32_t *vals; /* head posting + 1; 0: empty */
};

static uint32_t *ftab_slot(struct ftab *t, const uint8_t *key, bool insert)
{
	if (insert && (t->n + 1) * 10 > (uint64_t)t->cap * 8) {
		uint32_t ncap = t->cap ? t->cap * 2 : 64;
		uint8_t *nk = malloc((size_t)ncap * t->width);
		uint32_t *nv = calloc(ncap, sizeof *nv);
		if (!nk || !nv) {
			free(nk), free(nv);
			return NULL;
		}
		for (uint32_t i = 0; i < t->cap; i++) {
			if (!t->vals[i])
				continue;
			uint32_t k = (uint32_t)kz_hash(t->keys + (size_t)i * t->width, t->width) & (ncap - 1);
			while (nv[k])
				k = (k + 1) & (ncap - 1);
			memcpy(nk + (size_t)k * t->width, t->keys + (size_t)i * t->width, t->width);
			nv[k] = t->vals[i];
		}
		free(t->keys), free(t->vals);
		t->keys = nk, t->vals = nv, t->cap = ncap;
	}
	if (!t->cap)
		return NULL;
	uint32_t k = (uint32_t)kz_hash(key, t->width) & (t->cap - 1);
	while (t->vals[k]) {
		if (!memcmp(t->keys + (size_t)k * t->width, key, t->width))
			return &t->vals[k];
		k = (k + 1) & (t->cap - 1);
	}
	if (!insert)
		return NULL;
	memcpy(t->keys + (size_t)k * t->width, key, t->width);
	t->n++;
	return &t->vals[k]; /* 0: the caller fills it */
}

struct sent {
	uint64_t h;
	uint32_t off, len, val;
};

struct stab {
	uint32_t cap, n;
	struct sent *e;
	struct kz_buf arena;
};

static uint32_t *stab_slot(struct stab *t, const char *key, size_t len, bool insert)
{
	if (insert && (t->n + 1) * 10 > (uint64_t)t->cap * 8) {
		uint32_t ncap = t->cap ? t->cap * 2 : 64;
		struct sent *ne = calloc(ncap, sizeof *ne);
		if (!ne)
			return NULL;
		for (uint32_t i = 0; i < t->cap; i++) {
			if (!t->e[i].val)
				continue;
			uint32_t k = (uint32_t)t->e[i].h & (ncap - 1);
			while (ne[k].val)
				k = (k + 1) & (ncap - 1);
			ne[k] = t->e[i];
		}
		free(t->e);
		t->e = ne, t->cap = ncap;
	}
	if (!t->cap)
		return NULL;
	uint64_t h = kz_hash(key, len);
	uint32_t k = (uint32_t)h & (t->cap - 1);
	while (t->e[k].val) {
		if (t->e[k].h == h && t->e[k].len == len && !memcmp(kz_buf_head(&t->arena) + t->e[k].off, key, len))
			return &t->e[k].val;
		k = (k + 1) & (t->cap - 1);
	}
	if (!insert || len > UINT32_MAX || t->arena.len + len > UINT32_MAX)
		return NULL;
	uint32_t off = (uint32_t)t->arena.len;
	if (kz_buf_append(&t->arena, key, len))
		return NULL;
	t->e[k] = (struct sent){ .h = h, .off = off, .len = (uint32_t)len };
	t->n++;
	return &t->e[k].val;
}

/* ---------- the index ---------- */

enum { P_SINGLE = 1, P_EXACT = 2 };

static const uint8_t MAPPED[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff }; /* ::ffff:0:0/96 */

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

enum { I_DEAD = 1, I_ZEEK = 2 };

/* An indicator: 8 bytes, whatever it is (the memory target is per indicator). */
struct ind {
	uint32_t meta;            /* STIX: its smeta; Zeek intel: its value's offset in zvals (a
				   * network only: other values are the matched one), else NO_META */
	uint16_t ls;              /* its (label, source) pair */
	uint8_t flags, kind;      /* kind: a Zeek intel line's (for its pattern) */
};
#define NO_META UINT32_MAX

struct smeta {                /* what only STIX indicators have */
	uint8_t uuid[16];
	int64_t from, until, modified;
};

struct pair {
	uint32_t label, source;   /* interned strings */
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
	struct ftab ids;          /* uuid -> indicator + 1 */
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

#define SKIP_LIST_MAX 10000

struct detect_index *detect_index_new(void)
{
	struct detect_index *x = calloc(1, sizeof *x);
	if (!x || !(x->dnf = malloc(sizeof *x->dnf))) {
		free(x);
		return NULL;
	}
	kz_hash_seed();
	for (int i = 0; i <= 128; i++)
		x->ip[i].width = x->warn_ip[i].width = 16;
	for (int i = 0; i <= 32; i++)
		x->ip4[i].width = 4;
	x->hash[DETECT_MD5].width = 16;
	x->hash[DETECT_SHA1].width = x->hash[DETECT_CERT_SHA1].width = 20;
	x->hash[DETECT_SHA256].width = x->hash[DETECT_CERT_SHA256].width = 32;
	x->ids.width = 16;
	for (int i = 0; i < DETECT_KINDS; i++)
		kz_buf_init(&x->str[i].arena, 0);
	kz_buf_init(&x->warn.arena, 0);
	kz_buf_init(&x->zvals, 0);
	for (int i = 0; i < DETECT_KINDS; i++)
		kz_buf_init(&x->rx[i].set.arena, 0);
	return x;
}

static void ftab_free(struct ftab *t)
{
	free(t->keys), free(t->vals);
}

static void stab_free(struct stab *t)
{
	free(t->e);
	kz_buf_cleanup(&t->arena);
}

void detect_index_free(struct detect_index *x)
{
	if (!x)
		return;
	for (int i = 0; i <= 128; i++)
		ftab_free(&x->ip[i]), ftab_free(&x->warn_ip[i]);
	for (int i = 0; i <= 32; i++)
		ftab_free(&x->ip4[i]);
	for (int i = 0; i < DETECT_KINDS; i++)
		ftab_free(&x->hash[i]), stab_free(&x->str[i]);
	ftab_free(&x->ids);
	stab_free(&x->warn);
	kz_buf_cleanup(&x->zvals);
	for (int i = 0; i < DETECT_KINDS; i++) {
		stab_free(&x->rx[i].set);
		hs_free_database(x->rx[i].db);
		free(x->rx[i].heads);
	}
	hs_free_scratch(x->scratch);
	for (size_t i = 0; i < x->n_strs; i++)
		free(x->strs[i]);
	for (size_t i = 0; i < x->n_skip; i++)
		free(x->skip[i].id), free(x->skip[i].why);
	for (size_t i = 0; i < x->n_lists; i++)
		free(x->lists[i]);
	free(x->strs), free(x->skip), free(x->lists), free(x->inds), free(x->smeta), free(x->pairs), free(x->posts), free(x->terms), free(x->dnf);
	free(x);
}

static bool grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 256;
	void *q = realloc(*p, nc * size);
	if (!q)
		return false;
	*p = q;
	*cap = nc;
	return true;
}

static uint32_t intern(struct detect_index *x, const char *s)
{
	for (size_t i = 0; i < x->n_strs; i++)
		if (!strcmp(x->strs[i], s))
			return (uint32_t)i;
	char **ns = realloc(x->strs, (x->n_strs + 1) * sizeof *ns);
	if (!ns)
		return 0;
	x->strs = ns;
	if (!(ns[x->n_strs] = strdup(s)))
		return 0;
	return (uint32_t)x->n_strs++;
}

static void skipped(struct detect_index *x, const char *id, const char *why, bool suppressed)
{
	if (suppressed)
		x->st.suppressed++;
	else
		x->st.unsupported++;
	if (x->n_skip >= SKIP_LIST_MAX)
		return;
	struct skipped *ns = realloc(x->skip, (x->n_skip + 1) * sizeof *ns);
	if (!ns)
		return;
	x->skip = ns;
	ns[x->n_skip].id = strdup(id);
	ns[x->n_skip].why = strdup(why);
	if (ns[x->n_skip].id && ns[x->n_skip].why)
		x->n_skip++;
	else
		free(ns[x->n_skip].id), free(ns[x->n_skip].why);
}

int detect_hash_kind(size_t hexlen, bool cert)
{
	if (hexlen == 32 && !cert)
		return DETECT_MD5;
	if (hexlen == 40)
		return cert ? DETECT_CERT_SHA1 : DETECT_SHA1;
	if (hexlen == 64)
		return cert ? DETECT_CERT_SHA256 : DETECT_SHA256;
	return 0;
}

int detect_atom_set(struct detect_atom *a, int kind, int role, const char *v, size_t n)
{
	a->kind = (uint8_t)kind;
	a->role = (uint8_t)role;
	a->exact = false;
	a->regex = false;
	a->prefix = 0;
	switch (kind) {
	case DETECT_IP:
		a->key_len = 16;
		return detect_ip_parse(v, n, a->key, &a->prefix);
	case DETECT_DOMAIN:
		return detect_domain_norm(v, n, (char *)a->key, sizeof a->key, &a->key_len);
	case DETECT_URL:
		return detect_url_norm(v, n, (char *)a->key, sizeof a->key, &a->key_len);
	case DETECT_EMAIL:
		if (n == 0 || n >= sizeof a->key || !memchr(v, '@', n))
			return -1;
		for (size_t i = 0; i < n; i++)
			a->key[i] = (uint8_t)tolower((unsigned char)v[i]);
		a->key_len = n;
		return 0;
	default: {
		size_t w = kind == DETECT_MD5 ? 16 : kind == DETECT_SHA1 || kind == DETECT_CERT_SHA1 ? 20 : 32;
		char hex[65];
		size_t k = 0;
		for (size_t i = 0; i < n && k < sizeof hex - 1; i++)
			if (v[i] != ':') /* fingerprints are often written aa:bb:… */
				hex[k++] = (char)tolower((unsigned char)v[i]);
		hex[k] = 0;
		if (kind < DETECT_MD5 || kind >= DETECT_KINDS || k != 2 * w || kz_unhex(hex, a->key, w))
			return -1;
		a->key_len = w;
		return 0;
	}
	}
}

/* Is the atom's value on a warning list? The list's name, else NULL. */
static const char *warned(const struct detect_index *x, const struct detect_atom *a)
{
	if (a->kind == DETECT_IP) {
		for (unsigned i = 0; i < x->n_warn_lens; i++) {
			unsigned l = x->warn_lens[i];
			if (l > a->prefix)
				continue; /* a list's /32 does not cover an indicator's /24 */
			uint8_t k[16];
			memcpy(k, a->key, 16);
			for (unsigned b = l; b < 128; b++)
				k[b / 8] &= (uint8_t)~(0x80u >> (b % 8));
			uint32_t *v = ftab_slot((struct ftab *)&x->warn_ip[l], k, false);
			if (v && *v)
				return x->lists[*v - 1];
		}
		return NULL;
	}
	char buf[DETECT_VALUE_MAX * 2 + 1];
	const char *key = (const char *)a->key;
	size_t len = a->key_len;
	if (a->kind >= DETECT_MD5) {
		kz_hex(a->key, a->key_len, buf);
		key = buf;
		len = a->key_len * 2;
	}
	uint32_t *v = stab_slot((struct stab *)&x->warn, key, len, false);
	return v && *v ? x->lists[*v - 1] : NULL;
}

int detect_atom_regex(struct detect_atom *a, int kind, int role, const char *v, size_t n, const char **why)
{
	static _Thread_local char msg[200];
	a->kind = (uint8_t)kind;
	a->role = (uint8_t)role;
	a->exact = false;
	a->regex = true;
	a->prefix = 0;
	if (n == 0 || n >= sizeof a->key || memchr(v, 0, n)) {
		*why = "MATCHES: an empty expression, or one longer than 2047 bytes";
		return -1;
	}
	memcpy(a->key, v, n);
	a->key[n] = 0;
	a->key_len = n;
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	if (hs_compile((const char *)a->key, HS_FLAG_SINGLEMATCH, HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS) {
		snprintf(msg, sizeof msg, "MATCHES: the expression is not one Hyperscan compiles (%s)",
			 err && err->message ? err->message : "?");
		hs_free_compile_error(err);
		*why = msg;
		return -1;
	}
	hs_free_database(db);
	return 0;
}

/* Compiles the kind's expressions into one database (after a change). 0; -1 when they do
 * not compile together (then none of them matches until the next change). */
static int rx_prepare(struct detect_index *x, int kind)
{
	struct rxset *r = &x->rx[kind];
	if (!r->dirty)
		return r->db ? 0 : -1;
	r->dirty = false;
	hs_free_database(r->db);
	r->db = NULL;
	free(r->heads);
	r->heads = NULL;
	const char **ex = malloc(r->set.n * sizeof *ex);
	unsigned *ids = malloc(r->set.n * sizeof *ids), *flags = malloc(r->set.n * sizeof *flags);
	char *text = malloc(r->set.arena.len + r->set.n);
	r->heads = malloc(r->set.n * sizeof *r->heads);
	int rc = -1;
	if (ex && ids && flags && text && r->heads) {
		unsigned k = 0;
		size_t at = 0;
		for (uint32_t i = 0; i < r->set.cap; i++) {
			const struct sent *e = &r->set.e[i];
			if (!e->val)
				continue;
			memcpy(text + at, kz_buf_head(&r->set.arena) + e->off, e->len);
			text[at + e->len] = 0;
			ex[k] = text + at;
			at += e->len + 1;
			ids[k] = k;
			flags[k] = HS_FLAG_SINGLEMATCH;
			r->heads[k] = e->val;
			k++;
		}
		hs_compile_error_t *err = NULL;
		if (hs_compile_multi(ex, flags, ids, k, HS_MODE_BLOCK, NULL, &r->db, &err) == HS_SUCCESS &&
		    hs_alloc_scratch(r->db, &x->scratch) == HS_SUCCESS)
			rc = 0;
		hs_free_compile_error(err);
	}
	free(ex), free(ids), free(flags), free(text);
	return rc;
}

static int link_atom(struct detect_index *x, const struct detect_atom *a, uint32_t ref, uint16_t atom_no, bool single)
{
	uint32_t *head;
	if (a->regex) {
		head = stab_slot(&x->rx[a->kind].set, (const char *)a->key, a->key_len, true);
		x->rx[a->kind].dirty = true;
	} else if (a->kind == DETECT_IP) {
		bool v4 = a->prefix >= 96 && !memcmp(a->key, MAPPED, 12);
		struct ftab *t = v4 ? &x->ip4[a->prefix - 96] : &x->ip[a->prefix];
		uint8_t *lens = v4 ? x->lens4 : x->lens;
		unsigned *n = v4 ? &x->n_lens4 : &x->n_lens, l = v4 ? a->prefix - 96 : a->prefix;
		head = ftab_slot(t, v4 ? a->key + 12 : a->key, true);
		if (head && t->n == 1 && !*head) { /* a new prefix length: keep the list longest first */
			unsigned i = (*n)++;
			while (i > 0 && lens[i - 1] < l) {
				lens[i] = lens[i - 1];
				i--;
			}
			lens[i] = (uint8_t)l;
		}
	} else if (a->kind >= DETECT_MD5) {
		head = ftab_slot(&x->hash[a->kind], a->key, true);
	} else {
		head = stab_slot(&x->str[a->kind], (const char *)a->key, a->key_len, true);
	}
	if (!head)
		return -1;
	x->st.atoms[a->kind]++;
	if (single && !*head && ref <= D_IND) { /* the key's first indicator: in the table itself */
		*head = DIRECT | (a->exact ? D_EXACT : 0) | ((uint32_t)a->role << D_ROLE_SHIFT) | ref;
		return 0;
	}
	if (*head & DIRECT) { /* a second one: the first becomes a posting */
		if (!grow((void **)&x->posts, &x->cap_posts, x->n_posts, sizeof *x->posts))
			return -1;
		x->posts[x->n_posts] = (struct posting){ .ref = *head & D_IND, .role = (uint8_t)((*head >> D_ROLE_SHIFT) & 3),
							 .flags = (uint8_t)(P_SINGLE | (*head & D_EXACT ? P_EXACT : 0)) };
		*head = (uint32_t)++x->n_posts;
	}
	if (!grow((void **)&x->posts, &x->cap_posts, x->n_posts, sizeof *x->posts))
		return -1;
	x->posts[x->n_posts] = (struct posting){ .ref = ref, .next = *head, .atom = atom_no, .role = a->role,
						 .flags = (uint8_t)((single ? P_SINGLE : 0) | (a->exact ? P_EXACT : 0)) };
	*head = (uint32_t)++x->n_posts;
	return 0;
}

/* The indicator i's compiled pattern into the tables. 0; 1 when every term was suppressed
 * (*why names the list). */
static int link_dnf(struct detect_index *x, uint32_t i, const struct detect_dnf *d, const char **list)
{
	unsigned linked = 0;
	for (unsigned t = 0; t < d->n_terms; t++) {
		const char *w = NULL;
		for (unsigned a = 0; a < d->n_atoms[t] && !w; a++)
			w = warned(x, &d->pool[d->atom[t][a]]);
		if (w) {
			*list = w;
			continue;
		}
		bool single = d->n_atoms[t] == 1;
		uint32_t ref = i;
		if (!single) {
			if (!grow((void **)&x->terms, &x->cap_terms, x->n_terms, sizeof *x->terms))
				return -1;
			x->terms[x->n_terms] = (struct term){ .ind = i, .n_atoms = d->n_atoms[t] };
			ref = (uint32_t)x->n_terms++;
		}
		for (unsigned a = 0; a < d->n_atoms[t]; a++)
			if (link_atom(x, &d->pool[d->atom[t][a]], ref, (uint16_t)a, single))
				return -1;
		linked++;
	}
	return linked ? 0 : 1;
}

static uint16_t pair_of(struct detect_index *x, const char *label, const char *source)
{
	struct pair p = { intern(x, label ? label : ""), intern(x, source ? source : "") };
	for (size_t i = 0; i < x->n_pairs; i++)
		if (x->pairs[i].label == p.label && x->pairs[i].source == p.source)
			return (uint16_t)i;
	if (x->n_pairs >= UINT16_MAX)
		return 0; /* 65,535 distinct label and source pairs: the first stands for the rest */
	struct pair *np = realloc(x->pairs, (x->n_pairs + 1) * sizeof *np);
	if (!np)
		return 0;
	x->pairs = np;
	np[x->n_pairs] = p;
	return (uint16_t)x->n_pairs++;
}

static int new_ind(struct detect_index *x, const char *label, const char *source, uint8_t flags, uint8_t kind,
		   uint32_t meta, uint32_t *out)
{
	if (!grow((void **)&x->inds, &x->cap_inds, x->n_inds, sizeof *x->inds))
		return -1;
	if (!x->n_pairs)
		(void)pair_of(x, "", "");
	x->inds[x->n_inds] = (struct ind){ .meta = meta, .ls = pair_of(x, label, source), .flags = flags, .kind = kind };
	*out = (uint32_t)x->n_inds++;
	return 0;
}

/* ---------- adding ---------- */

/* Indicator i (id) into the tables: 0 added; 1 when every value is on a warning list (then
 * counted and listed as suppressed); -1 out of memory. */
static int link(struct detect_index *x, uint32_t i, const struct detect_dnf *d, const char *id, const char **why)
{
	const char *list = NULL;
	int rc = link_dnf(x, i, d, &list);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		x->inds[i].flags |= I_DEAD;
		char w[200];
		snprintf(w, sizeof w, "on the warning list %s", list);
		skipped(x, id, w, true);
		*why = "its value is on a warning list";
		return 1;
	}
	x->st.indicators++;
	return 0;
}

static int uuid_of(const char *id, const char *prefix, uint8_t out[16])
{
	size_t pl = strlen(prefix);
	if (strncmp(id, prefix, pl) || strlen(id) != pl + 36)
		return -1;
	char hex[33];
	size_t k = 0;
	for (const char *q = id + pl; *q; q++) {
		if (*q == '-')
			continue;
		if (k >= 32)
			return -1;
		hex[k++] = (char)tolower((unsigned char)*q);
	}
	return k == 32 ? kz_unhex(hex, out, 16) : -1;
}

int detect_add_stix(struct detect_index *x, const struct kz_json *o, const char *label, const char *source,
		    const char **why)
{
	const char *type = kz_json_get_str(o, "type"), *id = kz_json_get_str(o, "id");
	uint8_t uuid[16];
	if (!type || strcmp(type, "indicator") || !id || uuid_of(id, "indicator--", uuid)) {
		*why = "not a STIX indicator (type indicator, id indicator--<uuid>)";
		return -1;
	}
	const char *mod = kz_json_get_str(o, "modified") ? kz_json_get_str(o, "modified") : kz_json_get_str(o, "created");
	int64_t modified = 0, from = INT64_MIN, until = INT64_MAX;
	int frac;
	if (mod && stix_timestamp(mod, &modified, &frac)) {
		*why = "modified is not a STIX timestamp";
		return -1;
	}
	uint32_t *known = ftab_slot(&x->ids, uuid, false);
	if (known && *known) {
		struct ind *old = &x->inds[*known - 1];
		if (x->smeta[old->meta].modified >= modified)
			return 0; /* this version or an older one: nothing changes */
		old->flags |= I_DEAD;
		x->st.replaced++;
		x->st.indicators--;
	}
	const struct kz_json *rv = kz_json_get(o, "revoked");
	if (rv && rv->type == KZ_JSON_TRUE) {
		x->st.revoked++;
		return 0;
	}
	const char *pt = kz_json_get_str(o, "pattern_type"), *pattern = kz_json_get_str(o, "pattern");
	const char *vf = kz_json_get_str(o, "valid_from"), *vu = kz_json_get_str(o, "valid_until");
	if ((vf && stix_timestamp(vf, &from, &frac)) || (vu && stix_timestamp(vu, &until, &frac))) {
		*why = "valid_from or valid_until is not a STIX timestamp";
		return -1;
	}
	if (!pattern || !pt || strcmp(pt, "stix")) {
		*why = "pattern_type is not stix (Sigma, Snort, Suricata and YARA patterns are not matched here)";
		skipped(x, id, *why, false);
		return 1;
	}
	int rc = detect_pattern_compile(pattern, strlen(pattern), x->dnf, why);
	if (rc) {
		skipped(x, id, *why, false);
		return 1;
	}
	uint32_t i;
	if (!grow((void **)&x->smeta, &x->cap_smeta, x->n_smeta, sizeof *x->smeta))
		goto oom;
	struct smeta *sm = &x->smeta[x->n_smeta];
	memcpy(sm->uuid, uuid, 16);
	sm->from = from, sm->until = until, sm->modified = modified;
	if (new_ind(x, label, source, 0, 0, (uint32_t)x->n_smeta, &i))
		goto oom;
	x->n_smeta++;
	uint32_t *slot = ftab_slot(&x->ids, uuid, true);
	if (!slot)
		goto oom;
	*slot = i + 1;
	rc = link(x, i, x->dnf, id, why);
	if (rc >= 0)
		return rc;
oom:
	*why = "out of memory";
	return -1;
}

int detect_add_zeek_intel(struct detect_index *x, const char *const *fields, const char *const *names, size_t n,
			  const char *label, const char *source, unsigned line, const char **why)
{
	const char *value = NULL, *type = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(names[i], "indicator"))
			value = fields[i];
		else if (!strcmp(names[i], "indicator_type"))
			type = fields[i];
	}
	if (!value || !type || !*value) {
		*why = "a Zeek intel line without indicator and indicator_type";
		return -1;
	}
	char id[200];
	snprintf(id, sizeof id, "zeek-intel:%s:%u", source ? source : "", line);
	int kind = 0;
	bool exact = false;
	if (!strcmp(type, "Intel::ADDR") || !strcmp(type, "Intel::SUBNET"))
		kind = DETECT_IP;
	else if (!strcmp(type, "Intel::DOMAIN"))
		kind = DETECT_DOMAIN, exact = true; /* Zeek matches intel domains exactly */
	else if (!strcmp(type, "Intel::URL"))
		kind = DETECT_URL;
	else if (!strcmp(type, "Intel::EMAIL"))
		kind = DETECT_EMAIL;
	else if (!strcmp(type, "Intel::FILE_HASH"))
		kind = detect_hash_kind(strlen(value), false);
	else if (!strcmp(type, "Intel::CERT_HASH"))
		kind = detect_hash_kind(strlen(value), true);
	if (!kind) {
		*why = "an indicator_type not matched here (SOFTWARE, USER_NAME, FILE_NAME, PUBKEY_HASH, JA3, ...)";
		skipped(x, id, *why, false);
		return 1;
	}
	struct detect_dnf *d = x->dnf;
	d->n_terms = 1, d->n_pool = 1, d->n_atoms[0] = 1, d->atom[0][0] = 0;
	if (detect_atom_set(&d->pool[0], kind, DETECT_ANY, value, strlen(value))) {
		*why = "an indicator that is not of its type";
		skipped(x, id, *why, false);
		return 1;
	}
	d->pool[0].exact = exact;
	uint32_t off = NO_META;
	if (kind == DETECT_IP && d->pool[0].prefix < 128) { /* a network: its text (a match is an address in it) */
		off = (uint32_t)x->zvals.len;
		if (x->zvals.len > UINT32_MAX - 4096 || kz_buf_append(&x->zvals, value, strlen(value) + 1)) {
			*why = "out of memory";
			return -1;
		}
	}
	uint32_t i;
	if (new_ind(x, label, source, I_ZEEK, (uint8_t)kind, off, &i)) {
		*why = "out of memory";
		return -1;
	}
	int rc = link(x, i, d, id, why);
	if (rc < 0)
		*why = "out of memory";
	return rc;
}

int detect_warn_add(struct detect_index *x, const char *list, const char *type, const char *v)
{
	uint32_t li = 0;
	for (; li < x->n_lists && strcmp(x->lists[li], list); li++)
		;
	if (li == x->n_lists) {
		char **nl = realloc(x->lists, (x->n_lists + 1) * sizeof *nl);
		if (!nl || !(nl[x->n_lists] = strdup(list)))
			return -1;
		x->lists = nl;
		x->n_lists++;
	}
	if (!strcmp(type, "cidr")) {
		uint8_t k[16];
		unsigned pl;
		if (detect_ip_parse(v, strlen(v), k, &pl))
			return 0; /* not an address: nothing to suppress */
		uint32_t *s = ftab_slot(&x->warn_ip[pl], k, true);
		if (!s)
			return -1;
		if (!*s && x->warn_ip[pl].n == 1) {
			unsigned i = x->n_warn_lens++;
			while (i > 0 && x->warn_lens[i - 1] < pl) {
				x->warn_lens[i] = x->warn_lens[i - 1];
				i--;
			}
			x->warn_lens[i] = (uint8_t)pl;
		}
		if (!*s)
			*s = li + 1;
		return 0;
	}
	char low[DETECT_VALUE_MAX];
	size_t n = strlen(v);
	if (n >= sizeof low)
		return 0;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)v[i]);
	if (n && low[n - 1] == '.')
		n--;
	uint32_t *s = stab_slot(&x->warn, low, n, true);
	if (!s)
		return -1;
	if (!*s)
		*s = li + 1;
	return 0;
}

static void shrink(void **p, size_t *cap, size_t n, size_t size)
{
	if (n == *cap || !n)
		return;
	void *q = realloc(*p, n * size);
	if (q)
		*p = q, *cap = n;
}

void detect_index_compact(struct detect_index *x)
{
	shrink((void **)&x->inds, &x->cap_inds, x->n_inds, sizeof *x->inds);
	shrink((void **)&x->smeta, &x->cap_smeta, x->n_smeta, sizeof *x->smeta);
	shrink((void **)&x->posts, &x->cap_posts, x->n_posts, sizeof *x->posts);
	shrink((void **)&x->terms, &x->cap_terms, x->n_terms, sizeof *x->terms);
}

void detect_index_stats(const struct detect_index *x, struct detect_stats *st)
{
	*st = x->st;
	size_t b = sizeof *x + x->cap_inds * sizeof *x->inds + x->cap_smeta * sizeof *x->smeta + x->zvals.cap +
		   x->cap_posts * sizeof *x->posts +
		   x->cap_terms * sizeof *x->terms + x->ids.cap * (16 + 4);
	for (int i = 0; i <= 128; i++)
		b += (size_t)x->ip[i].cap * (16 + 4);
	for (int i = 0; i <= 32; i++)
		b += (size_t)x->ip4[i].cap * (4 + 4);
	for (int i = 0; i < DETECT_KINDS; i++)
		b += (size_t)x->hash[i].cap * (x->hash[i].width + 4) + x->str[i].cap * sizeof(struct sent) +
		     x->str[i].arena.cap;
	st->bytes = b;
}

void detect_index_list_skipped(const struct detect_index *x, detect_list_fn fn, void *ctx)
{
	for (size_t i = 0; i < x->n_skip; i++)
		fn(ctx, x->skip[i].id, x->skip[i].why);
}

/* ---------- matching ---------- */

#define MAX_HITS 64

struct ev {
	const struct detect_index *x;
	const struct detect_obs *o;
	int64_t ts;
	detect_match_fn fn;
	void *ctx;
	size_t matches;
	struct {
		uint32_t term, mask;
	} hits[MAX_HITS];
	unsigned n_hits;
	uint32_t done[MAX_HITS]; /* indicators already reported for this event */
	unsigned n_done;
};

/* The matched value as a Zeek intel line had it (normalised): the address, the name, the
 * URL, the e-mail address, the hash in lower case. */
static void canon(const struct detect_obs *o, char *out, size_t cap)
{
	size_t n;
	out[0] = 0;
	if (o->kind == DETECT_IP) {
		uint8_t a[16];
		unsigned pl;
		if (detect_ip_parse(o->value, o->len, a, &pl) == 0) {
			static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
			if (!memcmp(a, mapped, 12))
				inet_ntop(AF_INET, a + 12, out, (socklen_t)cap);
			else
				inet_ntop(AF_INET6, a, out, (socklen_t)cap);
		}
	} else if (o->kind == DETECT_DOMAIN) {
		(void)detect_domain_norm(o->value, o->len, out, cap, &n);
	} else if (o->kind == DETECT_URL) {
		(void)detect_url_norm(o->value, o->len, out, cap, &n);
	} else {
		size_t k = 0;
		for (size_t i = 0; i < o->len && k + 1 < cap; i++)
			if (o->value[i] != ':' || o->kind == DETECT_EMAIL)
				out[k++] = (char)tolower((unsigned char)o->value[i]);
		out[k] = 0;
	}
}

/* A Zeek intel line as a STIX indicator: its id (a UUIDv5 of its file and value, so the same
 * line gets the same id in every run) and its pattern. */
static void zeek_indicator(struct detect_indicator_info *info, const char *source, const char *value, int kind)
{
	char name[2400];
	snprintf(name, sizeof name, "zeek-intel|%s|%s", source, value);
	detect_uuid5(name, strlen(name), "indicator--", info->id);
	const char *path = kind == DETECT_IP ? (strchr(value, ':') ? "ipv6-addr:value" : "ipv4-addr:value")
			   : kind == DETECT_DOMAIN     ? "domain-name:value"
			   : kind == DETECT_URL	       ? "url:value"
			   : kind == DETECT_EMAIL      ? "email-addr:value"
			   : kind == DETECT_MD5	       ? "file:hashes.MD5"
			   : kind == DETECT_SHA1       ? "file:hashes.'SHA-1'"
			   : kind == DETECT_SHA256     ? "file:hashes.'SHA-256'"
			   : kind == DETECT_CERT_SHA1  ? "x509-certificate:hashes.'SHA-1'"
						       : "x509-certificate:hashes.'SHA-256'";
	size_t k = (size_t)snprintf(info->pattern, sizeof info->pattern, "[%s = '", path);
	for (const char *q = value; *q && k + 4 < sizeof info->pattern; q++) {
		if (*q == '\\' || *q == '\'')
			info->pattern[k++] = '\\';
		info->pattern[k++] = *q;
	}
	snprintf(info->pattern + k, sizeof info->pattern - k, "']");
}

static void emit(struct ev *e, uint32_t i)
{
	const struct ind *in = &e->x->inds[i];
	const struct smeta *sm = in->flags & I_ZEEK ? NULL : &e->x->smeta[in->meta];
	if ((in->flags & I_DEAD) || (sm && e->ts && (e->ts < sm->from || e->ts >= sm->until)))
		return;
	for (unsigned k = 0; k < e->n_done; k++)
		if (e->done[k] == i)
			return;
	if (e->n_done < MAX_HITS)
		e->done[e->n_done++] = i;
	struct detect_indicator_info info;
	info.pattern[0] = 0;
	const struct pair *pr = &e->x->pairs[in->ls];
	if (in->flags & I_ZEEK) {
		char v[DETECT_VALUE_MAX];
		if (in->meta != NO_META)
			snprintf(v, sizeof v, "%s", (const char *)kz_buf_head(&e->x->zvals) + in->meta);
		else
			canon(e->o, v, sizeof v);
		zeek_indicator(&info, e->x->strs[pr->source], v, in->kind);
	} else {
		char h[33];
		kz_hex(sm->uuid, 16, h);
		snprintf(info.id, sizeof info.id, "indicator--%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
	}
	info.valid_from_us = sm ? sm->from : INT64_MIN;
	info.valid_until_us = sm ? sm->until : INT64_MAX;
	snprintf(info.label, sizeof info.label, "%s", e->x->strs[pr->label]);
	snprintf(info.source, sizeof info.source, "%s", e->x->strs[pr->source]);
	struct detect_match m = { .ind = &info, .obs = e->o, .ts_us = e->ts };
	e->fn(e->ctx, &m);
	e->matches++;
}

static void walk(struct ev *e, uint32_t head, bool full)
{
	const struct detect_index *x = e->x;
	if (head & DIRECT) {
		unsigned role = (head >> D_ROLE_SHIFT) & 3;
		if ((!role || role == e->o->role) && (!(head & D_EXACT) || full))
			emit(e, head & D_IND);
		return;
	}
	for (uint32_t p = head; p; p = x->posts[p - 1].next) {
		const struct posting *po = &x->posts[p - 1];
		if ((po->role && po->role != e->o->role) || ((po->flags & P_EXACT) && !full))
			continue;
		if (po->flags & P_SINGLE) {
			emit(e, po->ref);
			continue;
		}
		const struct term *t = &x->terms[po->ref];
		unsigned k = 0;
		while (k < e->n_hits && e->hits[k].term != po->ref)
			k++;
		if (k == e->n_hits) {
			if (e->n_hits == MAX_HITS)
				continue;
			e->hits[e->n_hits].term = po->ref;
			e->hits[e->n_hits++].mask = 0;
		}
		e->hits[k].mask |= 1u << po->atom;
		if (e->hits[k].mask == (t->n_atoms >= 32 ? UINT32_MAX : (1u << t->n_atoms) - 1))
			emit(e, t->ind);
	}
}

static uint32_t lookup_s(const struct stab *t, const char *k, size_t n)
{
	uint32_t *v = t->n ? stab_slot((struct stab *)t, k, n, false) : NULL;
	return v ? *v : 0;
}

static int on_rx(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(void)from, (void)to, (void)flags;
	struct ev *e = ctx;
	walk(e, e->x->rx[e->o->kind].heads[id], true);
	return 0;
}

/* The kind's MATCHES expressions over the observed text as it is. */
static void match_rx(struct ev *e)
{
	struct detect_index *x = (struct detect_index *)e->x; /* compiling is the index's own business */
	const struct detect_obs *o = e->o;
	if (o->kind >= DETECT_KINDS || !x->rx[o->kind].set.n || o->len > UINT32_MAX || rx_prepare(x, o->kind))
		return;
	(void)hs_scan(x->rx[o->kind].db, o->value, (unsigned)o->len, 0, x->scratch, on_rx, e);
}

size_t detect_match_event(const struct detect_index *x, const struct detect_obs *obs, size_t n, int64_t ts_us,
			  detect_match_fn fn, void *ctx)
{
	struct ev e = { .x = x, .ts = ts_us, .fn = fn, .ctx = ctx };
	char buf[DETECT_VALUE_MAX];
	for (size_t i = 0; i < n; i++) {
		const struct detect_obs *o = &obs[i];
		e.o = o;
		match_rx(&e);
		size_t len;
		if (o->kind == DETECT_IP) {
			uint8_t k[16], m[16];
			unsigned pl;
			if ((!x->n_lens && !x->n_lens4) || detect_ip_parse(o->value, o->len, k, &pl))
				continue;
			if (!memcmp(k, MAPPED, 12)) {
				uint32_t a4 = (uint32_t)k[12] << 24 | (uint32_t)k[13] << 16 | (uint32_t)k[14] << 8 | k[15];
				for (unsigned j = 0; j < x->n_lens4; j++) {
					unsigned l = x->lens4[j];
					uint32_t mk = l ? a4 & ~(uint32_t)0 << (32 - l) : 0;
					uint8_t b4[4] = { (uint8_t)(mk >> 24), (uint8_t)(mk >> 16), (uint8_t)(mk >> 8), (uint8_t)mk };
					uint32_t *v = ftab_slot((struct ftab *)&x->ip4[l], b4, false);
					if (v && *v)
						walk(&e, *v, true);
				}
			}
			for (unsigned j = 0; j < x->n_lens; j++) { /* IPv6 networks (::/0 holds IPv4 too) */
				unsigned l = x->lens[j];
				memcpy(m, k, 16);
				for (unsigned b = l; b < 128; b++)
					m[b / 8] &= (uint8_t)~(0x80u >> (b % 8));
				uint32_t *v = ftab_slot((struct ftab *)&x->ip[l], m, false);
				if (v && *v)
					walk(&e, *v, true);
			}
		} else if (o->kind == DETECT_DOMAIN) {
			const struct stab *t = &x->str[DETECT_DOMAIN];
			if (!t->n || detect_domain_norm(o->value, o->len, buf, sizeof buf, &len))
				continue;
			const char *s = buf;
			for (int depth = 0; depth < 16 && s; depth++) { /* the name, then each parent */
				uint32_t h = lookup_s(t, s, len - (size_t)(s - buf));
				if (h)
					walk(&e, h, s == buf);
				s = strchr(s, '.');
				if (s)
					s++;
			}
		} else if (o->kind == DETECT_URL || o->kind == DETECT_EMAIL) {
			const struct stab *t = &x->str[o->kind];
			if (!t->n)
				continue;
			if (o->kind == DETECT_URL) {
				if (detect_url_norm(o->value, o->len, buf, sizeof buf, &len))
					continue;
			} else {
				if (o->len >= sizeof buf)
					continue;
				for (size_t j = 0; j < o->len; j++)
					buf[j] = (char)tolower((unsigned char)o->value[j]);
				len = o->len;
			}
			uint32_t h = lookup_s(t, buf, len);
			if (h)
				walk(&e, h, true);
		} else if (o->kind >= DETECT_MD5 && o->kind < DETECT_KINDS) {
			struct detect_atom a;
			if (!x->hash[o->kind].n || detect_atom_set(&a, o->kind, 0, o->value, o->len))
				continue;
			uint32_t *v = ftab_slot((struct ftab *)&x->hash[o->kind], a.key, false);
			if (v && *v)
				walk(&e, *v, true);
		}
	}
	return e.matches;
}
