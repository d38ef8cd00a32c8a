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
#include "store/store.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* IPv4 keys (4 bytes): multiply-shift universal hashing (Dietzfelbinger et al. 1997) with an
 * odd multiplier drawn from the process's secret SipHash key, so the slots stay unknown to
 * whoever chooses addresses; a SipHash of 4 bytes was a tenth of a dns event's cost. */
static uint64_t ip4_mult;

static inline uint64_t key_hash(const struct ftab *t, const uint8_t *key)
{
	if (t->width != 4)
		return kz_hash(key, t->width);
	uint32_t v;
	memcpy(&v, key, 4);
	return ((uint64_t)v * ip4_mult) >> 32;
}

uint32_t *detect_ftab_slot(struct ftab *t, const uint8_t *key, bool insert)
{
	if (insert && (t->n + 1) * 10 > (uint64_t)t->cap * 8) {
		uint32_t ncap = t->cap ? t->cap + t->cap / 2 : 64; /* 1.5x: less slack than doubling */
		uint8_t *nk = malloc((size_t)ncap * t->width);
		uint32_t *nv = calloc(ncap, sizeof *nv);
		if (!nk || !nv) {
			free(nk), free(nv);
			return NULL;
		}
		for (uint32_t i = 0; i < t->cap; i++) {
			if (!t->vals[i])
				continue;
			uint32_t k = detect_slot_of(key_hash(t, t->keys + (size_t)i * t->width), ncap);
			while (nv[k])
				k = k + 1 == ncap ? 0 : k + 1;
			memcpy(nk + (size_t)k * t->width, t->keys + (size_t)i * t->width, t->width);
			nv[k] = t->vals[i];
		}
		free(t->keys), free(t->vals);
		t->keys = nk, t->vals = nv, t->cap = ncap;
	}
	if (!t->cap)
		return NULL;
	uint32_t k = detect_slot_of(key_hash(t, key), t->cap);
	while (t->vals[k]) {
		if (!memcmp(t->keys + (size_t)k * t->width, key, t->width))
			return &t->vals[k];
		k = k + 1 == t->cap ? 0 : k + 1;
	}
	if (!insert)
		return NULL;
	memcpy(t->keys + (size_t)k * t->width, key, t->width);
	t->n++;
	return &t->vals[k]; /* 0: the caller fills it */
}

uint32_t *detect_stab_slot(struct stab *t, const char *key, size_t len, bool insert)
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

#define SKIP_LIST_MAX 10000

struct detect_index *detect_index_new(void)
{
	if (!ip4_mult)
		ip4_mult = kz_hash("kizuna detect ip4", 17) | 1;
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
	free(x->ids);
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
	free(x->strs), free(x->skip), free(x->lists), free(x->inds), free(x->smeta), free(x->untils), free(x->pairs), free(x->posts), free(x->terms), free(x->dnf);
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

int64_t detect_until(const struct detect_index *x, uint32_t i)
{
	if (!(x->inds[i].flags & I_UNTIL))
		return INT64_MAX;
	size_t lo = 0, hi = x->n_untils;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (x->untils[mid].ind < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < x->n_untils && x->untils[lo].ind == i ? x->untils[lo].until : INT64_MAX;
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

static void skipped(struct detect_index *x, const char *id, const char *why, bool suppressed, uint16_t ls)
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
	ns[x->n_skip].ls = ls;
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
			uint32_t *v = detect_ftab_slot((struct ftab *)&x->warn_ip[l], k, false);
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
	uint32_t *v = detect_stab_slot((struct stab *)&x->warn, key, len, false);
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

static int link_atom(struct detect_index *x, const struct detect_atom *a, uint32_t ref, uint16_t atom_no, bool single)
{
	uint32_t *head;
	if (a->regex) {
		head = detect_stab_slot(&x->rx[a->kind].set, (const char *)a->key, a->key_len, true);
		x->rx[a->kind].dirty = true;
	} else if (a->kind == DETECT_IP) {
		bool v4 = a->prefix >= 96 && !memcmp(a->key, detect_mapped, 12);
		struct ftab *t = v4 ? &x->ip4[a->prefix - 96] : &x->ip[a->prefix];
		uint8_t *lens = v4 ? x->lens4 : x->lens;
		unsigned *n = v4 ? &x->n_lens4 : &x->n_lens, l = v4 ? a->prefix - 96 : a->prefix;
		head = detect_ftab_slot(t, v4 ? a->key + 12 : a->key, true);
		if (head && t->n == 1 && !*head) { /* a new prefix length: keep the list longest first */
			unsigned i = (*n)++;
			while (i > 0 && lens[i - 1] < l) {
				lens[i] = lens[i - 1];
				i--;
			}
			lens[i] = (uint8_t)l;
		}
	} else if (a->kind >= DETECT_MD5) {
		head = detect_ftab_slot(&x->hash[a->kind], a->key, true);
	} else {
		head = detect_stab_slot(&x->str[a->kind], (const char *)a->key, a->key_len, true);
		if (a->kind == DETECT_DOMAIN) {
			unsigned labels = 1;
			for (size_t i = 0; i < a->key_len; i++)
				labels += a->key[i] == '.';
			x->domain_labels |= 1u << (labels < 31 ? labels : 31);
		}
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

static uint16_t pair_of(struct detect_index *x, const char *label, const char *source, const char *author)
{
	struct pair p = { intern(x, label ? label : ""), intern(x, source ? source : ""), intern(x, author ? author : "") };
	for (size_t i = 0; i < x->n_pairs; i++)
		if (x->pairs[i].label == p.label && x->pairs[i].source == p.source && x->pairs[i].author == p.author)
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

static int new_ind(struct detect_index *x, const char *label, const char *source, const char *author, uint8_t flags,
		   uint8_t kind, uint32_t meta, uint32_t *out)
{
	if (!grow((void **)&x->inds, &x->cap_inds, x->n_inds, sizeof *x->inds))
		return -1;
	if (!x->n_pairs)
		(void)pair_of(x, "", "", "");
	x->inds[x->n_inds] = (struct ind){ .meta = meta, .ls = pair_of(x, label, source, author), .flags = flags,
					   .kind = kind };
	*out = (uint32_t)x->n_inds++;
	return 0;
}

/* ---------- adding ---------- */

const char *const detect_type_names[DETECT_TYPES] = { "ip", "domain", "url", "email", "md5", "sha1", "sha256", "x509" };

static unsigned type_bit(int kind)
{
	return kind >= DETECT_CERT_SHA1 ? 7u : (unsigned)(kind - 1);
}

/* The types an indicator compares (a bit each): a STIX one keeps them in its kind. */
static unsigned types_of(const struct ind *in)
{
	return in->flags & I_ZEEK ? 1u << type_bit(in->kind) : in->kind;
}

static void count_types(struct detect_index *x, const struct ind *in, int by)
{
	for (unsigned b = 0; b < DETECT_TYPES; b++)
		if (types_of(in) >> b & 1)
			x->st.by_type[b] += (uint64_t)(int64_t)by;
}

/* A live indicator is dead from now on (replaced, revoked, removed). */
static void kill_ind(struct detect_index *x, struct ind *in)
{
	if (in->flags & I_DEAD)
		return;
	in->flags |= I_DEAD;
	x->st.indicators--;
	count_types(x, in, -1);
}

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
		skipped(x, id, w, true, x->inds[i].ls);
		*why = "its value is on a warning list";
		return 1;
	}
	if (!(x->inds[i].flags & I_ZEEK)) {
		unsigned m = 0;
		for (unsigned k = 0; k < d->n_pool; k++)
			m |= 1u << type_bit(d->pool[k].kind);
		x->inds[i].kind = (uint8_t)m;
	}
	x->st.indicators++;
	count_types(x, &x->inds[i], 1);
	return 0;
}

int detect_add_stix(struct detect_index *x, const struct kz_json *o, const char *label, const char *source,
		    const char **why)
{
	return detect_add_stix_by(x, o, label, source, "", why);
}

static const uint8_t *uuid_of(const struct detect_index *x, uint32_t v)
{
	return x->smeta[x->inds[v - 1].meta].uuid;
}

/* The slot of the STIX indicator with this UUID (its value: the indicator + 1), NULL when
 * absent; insert: made when absent (value 0, the caller fills it). Slots hold no key: the
 * key is the indicator's UUID in its smeta, so a slot costs 4 bytes, not 20. A slot once
 * filled stays (a removed indicator keeps it, dead): probing never breaks. */
static uint32_t *id_slot(struct detect_index *x, const uint8_t uuid[16], bool insert)
{
	if (insert && (x->id_n + 1) * 10 > (uint64_t)x->id_cap * 8) {
		uint32_t ncap = x->id_cap ? x->id_cap + x->id_cap / 2 : 64;
		uint32_t *nv = calloc(ncap, sizeof *nv);
		if (!nv)
			return NULL;
		for (uint32_t i = 0; i < x->id_cap; i++) {
			if (!x->ids[i])
				continue;
			uint32_t k = detect_slot_of(kz_hash(uuid_of(x, x->ids[i]), 16), ncap);
			while (nv[k])
				k = k + 1 == ncap ? 0 : k + 1;
			nv[k] = x->ids[i];
		}
		free(x->ids);
		x->ids = nv, x->id_cap = ncap;
	}
	if (!x->id_cap)
		return NULL;
	uint32_t k = detect_slot_of(kz_hash(uuid, 16), x->id_cap);
	while (x->ids[k]) {
		if (!memcmp(uuid_of(x, x->ids[k]), uuid, 16))
			return &x->ids[k];
		k = k + 1 == x->id_cap ? 0 : k + 1;
	}
	if (!insert)
		return NULL;
	x->id_n++;
	return &x->ids[k];
}

int detect_remove(struct detect_index *x, const uint8_t uuid[16], int64_t modified_us)
{
	uint32_t *known = id_slot(x, uuid, false);
	if (!known || !*known)
		return 0;
	struct ind *in = &x->inds[*known - 1];
	struct smeta *sm = &x->smeta[in->meta];
	if ((in->flags & I_DEAD) || (modified_us != INT64_MIN && sm->modified != modified_us))
		return 0;
	kill_ind(x, in);
	x->st.removed++;
	sm->modified = INT64_MIN; /* any version may come again */
	return 1;
}

size_t detect_remove_source(struct detect_index *x, const char *source)
{
	size_t si = 0, n = 0;
	while (si < x->n_strs && strcmp(x->strs[si], source))
		si++;
	if (si == x->n_strs)
		return 0;
	for (size_t i = 0; i < x->n_inds; i++) {
		struct ind *in = &x->inds[i];
		if ((in->flags & I_DEAD) || x->pairs[in->ls].source != si)
			continue;
		kill_ind(x, in);
		if (!(in->flags & I_ZEEK))
			x->smeta[in->meta].modified = INT64_MIN; /* its id may come again, in any version */
		x->st.removed++;
		n++;
	}
	return n;
}

int detect_add_stix_by(struct detect_index *x, const struct kz_json *o, const char *label, const char *source,
		       const char *author, const char **why)
{
	const char *type = kz_json_get_str(o, "type"), *id = kz_json_get_str(o, "id");
	uint8_t uuid[16];
	if (!type || strcmp(type, "indicator") || !id || strncmp(id, "indicator--", 11) || kz_uuid_parse(id + 11, uuid)) {
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
	uint32_t *known = id_slot(x, uuid, false);
	if (known && *known) {
		struct ind *old = &x->inds[*known - 1];
		if (x->smeta[old->meta].modified >= modified)
			return 0; /* this version or an older one: nothing changes */
		if (!(old->flags & I_DEAD))
			x->st.replaced++;
		kill_ind(x, old);
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
		skipped(x, id, *why, false, pair_of(x, label, source, author));
		return 1;
	}
	int rc = detect_pattern_compile(pattern, strlen(pattern), x->dnf, why);
	if (rc) {
		skipped(x, id, *why, false, pair_of(x, label, source, author));
		return 1;
	}
	uint32_t i;
	if (!grow((void **)&x->smeta, &x->cap_smeta, x->n_smeta, sizeof *x->smeta))
		goto oom;
	struct smeta *sm = &x->smeta[x->n_smeta];
	memcpy(sm->uuid, uuid, 16);
	sm->from = from, sm->modified = modified;
	if (until != INT64_MAX && !grow((void **)&x->untils, &x->cap_untils, x->n_untils, sizeof *x->untils))
		goto oom;
	if (new_ind(x, label, source, author, until != INT64_MAX ? I_UNTIL : 0, 0, (uint32_t)x->n_smeta, &i))
		goto oom;
	x->n_smeta++;
	if (until != INT64_MAX)
		x->untils[x->n_untils++] = (struct until){ i, until };
	uint32_t *slot = id_slot(x, uuid, true);
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
		skipped(x, id, *why, false, pair_of(x, label, source, ""));
		return 1;
	}
	struct detect_dnf *d = x->dnf;
	d->n_terms = 1, d->n_pool = 1, d->n_atoms[0] = 1, d->atom[0][0] = 0;
	if (detect_atom_set(&d->pool[0], kind, DETECT_ANY, value, strlen(value))) {
		*why = "an indicator that is not of its type";
		skipped(x, id, *why, false, pair_of(x, label, source, ""));
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
	if (new_ind(x, label, source, "", I_ZEEK, (uint8_t)kind, off, &i)) {
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
		uint32_t *s = detect_ftab_slot(&x->warn_ip[pl], k, true);
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
	uint32_t *s = detect_stab_slot(&x->warn, low, n, true);
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
	shrink((void **)&x->untils, &x->cap_untils, x->n_untils, sizeof *x->untils);
	shrink((void **)&x->posts, &x->cap_posts, x->n_posts, sizeof *x->posts);
	shrink((void **)&x->terms, &x->cap_terms, x->n_terms, sizeof *x->terms);
}

void detect_index_stats(const struct detect_index *x, struct detect_stats *st)
{
	*st = x->st;
	size_t b = sizeof *x + x->cap_inds * sizeof *x->inds + x->cap_smeta * sizeof *x->smeta + x->cap_untils * sizeof *x->untils + x->zvals.cap +
		   x->cap_posts * sizeof *x->posts +
		   x->cap_terms * sizeof *x->terms + x->id_cap * sizeof *x->ids;
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
	{
		const struct pair *pr = x->skip[i].ls < x->n_pairs ? &x->pairs[x->skip[i].ls] : NULL;
		fn(ctx, x->skip[i].id, x->skip[i].why, pr ? x->strs[pr->label] : "", pr ? x->strs[pr->source] : "",
		   pr ? x->strs[pr->author] : "");
	}
}

