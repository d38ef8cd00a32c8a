/* taxii.c — the TAXII 2.1 server (see taxii.h). Sections cited are TAXII 2.1's. */
#include "services/taxii/taxii.h"
#include "base/kz_buf.h"
#include "base/kz_jscan.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "http/http.h"
#include "services/stix/stix.h"
#include "store/store.h"
#include "trust/policy.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TX_MAX_TYPES 4096
#define TX_MAX_ACCESS 65536
#define TX_MAX_AUD 8
#define TX_NONE UINT32_MAX
#define TAXII_MT "application/taxii+json;version=2.1"
#define STIX_MT "application/stix+json;version=2.1"

/* ---------- the index ---------- */

struct tx_ent {
	uint64_t seq;
	struct kz_reclog_pos pos;
	int64_t added_us, version_us;
	uint8_t uuid[16];
	uint32_t type_i, acc_i;
	uint32_t by_i; /* created_by_ref (taxii->refs), TX_NONE: none */
	uint32_t mk_i; /* object_marking_refs (taxii->msets), TX_NONE: none */
	uint32_t next_ver; /* the next entry of the same object, TX_NONE: none */
	uint8_t tlp;
	uint8_t deleted;
};

struct tx_slot {
	uint64_t h;      /* 0: empty */
	uint32_t first, last;
};

/* The entries (ascending) that name one interned value: one list per created_by_ref and
 * one per marking definition, so that a filter on them costs the same at any depth. */
struct tx_plist {
	uint32_t *v;
	uint32_t n, cap;
};

/* Interned byte strings: STIX identifiers (created_by_ref, marking refs) and marking sets
 * (sorted arrays of identifier indexes). Values live in fixed chunks, so a reader needs no
 * lock to read an index it got from an entry; interning takes the mutex. */
#define TX_INTERN_CHUNK 4096u
#define TX_INTERN_CHUNKS 256u /* 1,048,576 distinct values */
struct tx_istr {
	char *p;
	uint32_t len;
};
struct tx_intern {
	pthread_mutex_t lock;
	struct tx_istr *chunk[TX_INTERN_CHUNKS];
	_Atomic uint32_t n;
	uint32_t *ht; /* index + 1, 0: empty */
	size_t nht;
};

/* Who may see an object besides the readers of a CLEAR/GREEN one. */
struct tx_access {
	char *author, *org;
	uint8_t tlp;
	uint32_t n_orgs, n_ids;
	char *orgs[TX_MAX_AUD], *ids[TX_MAX_AUD];
	char *key; /* author|label */
	char *label;
	char *base; /* the label without tlp and aud: the policy's part ("" when none) */
};

struct tx_coll {
	char id[37];
	char *title, *description;
	bool allow_custom;
	json_t *readers, *writers; /* NULL: anyone the policy allows */
	pthread_rwlock_t lock;     /* the entries and the slots */
	pthread_mutex_t wlock;     /* date_added assignment + submission order */
	struct tx_ent *e;
	size_t n, cap;
	struct tx_slot *slots;
	size_t nslots, used;
	int64_t last_added;
	struct tx_plist *by_post, *mk_post; /* indexed by taxii->refs index */
	uint32_t nby, nmk;
};

struct tx_item {
	struct tx_ent e;
	char *owned;         /* a re-encoded object, until its record is made */
	const char *payload; /* the object's JSON: owned or a slice of the request body */
	uint32_t plen;
	struct kz_reclog_pos pos;
	char id[STIX_ID_MAX];
	char version[64];
	int status;
	bool done; /* under taxii.st_lock */
};

struct tx_status {
	char id[37];
	char *owner;
	int64_t req_us;
	uint32_t total, ok, fail, pending;
	json_t *successes, *failures; /* while pending; NULL once sealed */
	struct tx_item *items;        /* while pending: the POST's records, those not done pending */
	size_t n_items;
	char *text;                              /* the complete status as JSON, once sealed */
	size_t bytes;
	bool dropped; /* out of the ring while still pending: its POST frees it when done */
};

struct taxii {
	struct taxii_config cfg;
	struct tx_coll *c;
	size_t nc;
	pthread_mutex_t intern;
	char *types[TX_MAX_TYPES];
	_Atomic uint32_t ntypes;
	struct tx_access *acc[TX_MAX_ACCESS];
	_Atomic uint32_t nacc;
	struct tx_intern refs, msets;
	pthread_mutex_t st_lock;
	struct tx_status **st;
	size_t st_next;
	uint64_t st_bytes; /* of sealed statuses, held under taxii.max_status_bytes */
	struct kz_reclog_reader *rd; /* one per worker */
};

static uint64_t obj_hash(uint32_t type_i, const uint8_t uuid[16])
{
	uint64_t h = 1469598103934665603ULL ^ type_i;
	for (int i = 0; i < 16; i++)
		h = (h ^ uuid[i]) * 1099511628211ULL;
	return h ? h : 1;
}

/* The slot of an object; with insert, an empty slot is claimed (first = TX_NONE). */
static struct tx_slot *slot_of(struct tx_coll *c, uint32_t type_i, const uint8_t uuid[16], bool insert)
{
	if (insert && (c->used + 1) * 2 > c->nslots) {
		size_t nn = c->nslots ? c->nslots * 2 : 1024;
		struct tx_slot *ns = calloc(nn, sizeof *ns);
		if (!ns)
			return NULL;
		for (size_t i = 0; i < c->nslots; i++) {
			if (!c->slots[i].h)
				continue;
			size_t j = c->slots[i].h & (nn - 1);
			while (ns[j].h)
				j = (j + 1) & (nn - 1);
			ns[j] = c->slots[i];
		}
		free(c->slots);
		c->slots = ns;
		c->nslots = nn;
	}
	if (!c->nslots)
		return NULL;
	uint64_t h = obj_hash(type_i, uuid);
	for (size_t j = h & (c->nslots - 1);; j = (j + 1) & (c->nslots - 1)) {
		struct tx_slot *s = &c->slots[j];
		if (!s->h) {
			if (!insert)
				return NULL;
			s->h = h;
			s->first = s->last = TX_NONE;
			c->used++;
			return s;
		}
		if (s->h == h && s->first != TX_NONE && c->e[s->first].type_i == type_i &&
		    memcmp(c->e[s->first].uuid, uuid, 16) == 0)
			return s;
	}
}

static uint64_t bytes_hash(const void *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ULL;
	return h;
}

static const struct tx_istr *istr(struct tx_intern *in, uint32_t i)
{
	return &in->chunk[i / TX_INTERN_CHUNK][i % TX_INTERN_CHUNK];
}

/* The index of p[0..n) in in; with add, interned when new. TX_NONE when absent (or full). */
static uint32_t intern(struct tx_intern *in, const void *p, size_t n, bool add)
{
	if (n > UINT32_MAX)
		return TX_NONE;
	uint64_t h = bytes_hash(p, n);
	uint32_t r = TX_NONE;
	pthread_mutex_lock(&in->lock);
	size_t j = in->nht ? h & (in->nht - 1) : 0;
	for (; in->nht && in->ht[j]; j = (j + 1) & (in->nht - 1)) {
		const struct tx_istr *x = istr(in, in->ht[j] - 1);
		if (x->len == n && memcmp(x->p, p, n) == 0) {
			r = in->ht[j] - 1;
			break;
		}
	}
	uint32_t cnt = atomic_load(&in->n);
	if (r != TX_NONE || !add || cnt == TX_INTERN_CHUNK * TX_INTERN_CHUNKS)
		goto out;
	if ((cnt + 1) * 2 > in->nht) { /* grow the table: rehash */
		size_t nn = in->nht ? in->nht * 2 : 1024;
		uint32_t *nt = calloc(nn, sizeof *nt);
		if (!nt)
			goto out;
		for (uint32_t k = 0; k < cnt; k++) {
			const struct tx_istr *x = istr(in, k);
			size_t q = bytes_hash(x->p, x->len) & (nn - 1);
			while (nt[q])
				q = (q + 1) & (nn - 1);
			nt[q] = k + 1;
		}
		free(in->ht);
		in->ht = nt;
		in->nht = nn;
		for (j = h & (nn - 1); nt[j]; j = (j + 1) & (nn - 1))
			;
	}
	struct tx_istr **ch = &in->chunk[cnt / TX_INTERN_CHUNK];
	if (!*ch && !(*ch = calloc(TX_INTERN_CHUNK, sizeof **ch)))
		goto out;
	char *copy = malloc(n ? n : 1);
	if (!copy)
		goto out;
	memcpy(copy, p, n);
	(*ch)[cnt % TX_INTERN_CHUNK] = (struct tx_istr){ copy, (uint32_t)n };
	in->ht[j] = cnt + 1;
	r = cnt;
	atomic_store(&in->n, cnt + 1);
out:
	pthread_mutex_unlock(&in->lock);
	return r;
}

static void intern_free(struct tx_intern *in)
{
	uint32_t n = atomic_load(&in->n);
	for (uint32_t i = 0; i < n; i++)
		free(in->chunk[i / TX_INTERN_CHUNK][i % TX_INTERN_CHUNK].p);
	for (unsigned k = 0; k < TX_INTERN_CHUNKS; k++)
		free(in->chunk[k]);
	free(in->ht);
	pthread_mutex_destroy(&in->lock);
}

/* The marking set of entry e: its identifier indexes (count in *n). */
static const uint32_t *mset_of(struct taxii *t, const struct tx_ent *e, uint32_t *n)
{
	if (e->mk_i == TX_NONE) {
		*n = 0;
		return NULL;
	}
	const struct tx_istr *x = istr(&t->msets, e->mk_i);
	*n = x->len / (uint32_t)sizeof(uint32_t);
	return (const uint32_t *)(const void *)x->p;
}

/* Room for one more entry in list k of *lists (grown to k + 1 lists). */
static int plist_reserve(struct tx_plist **lists, uint32_t *nlists, uint32_t k)
{
	if (k >= *nlists) {
		uint32_t nn = *nlists ? *nlists : 16;
		while (nn <= k)
			nn *= 2;
		struct tx_plist *nl = realloc(*lists, nn * sizeof *nl);
		if (!nl)
			return -1;
		memset(nl + *nlists, 0, (nn - *nlists) * sizeof *nl);
		*lists = nl;
		*nlists = nn;
	}
	struct tx_plist *l = &(*lists)[k];
	if (l->n == l->cap) {
		uint32_t nc = l->cap ? l->cap * 2 : 8;
		uint32_t *nv = realloc(l->v, nc * sizeof *nv);
		if (!nv)
			return -1;
		l->v = nv;
		l->cap = nc;
	}
	return 0;
}

static void plists_free(struct tx_plist *l, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(l[i].v);
	free(l);
}


static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Interns a marking set (identifier indexes; sorted and deduplicated here). */
static uint32_t mset_intern(struct taxii *t, uint32_t *ix, size_t k)
{
	if (!k)
		return TX_NONE;
	qsort(ix, k, sizeof *ix, cmp_u32);
	size_t u = 0;
	for (size_t i = 0; i < k; i++)
		if (!u || ix[u - 1] != ix[i])
			ix[u++] = ix[i];
	return intern(&t->msets, ix, u * sizeof *ix, true);
}

/* Interns an object's created_by_ref (NULL or "": none) and markings (at most
 * STIX_MAX_MARKINGS). -1 when an intern table is full. */
static int refs_intern(struct taxii *t, const char *by, const char *const *marks, size_t nm, uint32_t *by_i,
		       uint32_t *mk_i)
{
	*by_i = *mk_i = TX_NONE;
	if (by && by[0] && (*by_i = intern(&t->refs, by, strlen(by), true)) == TX_NONE)
		return -1;
	uint32_t ix[STIX_MAX_MARKINGS];
	size_t k = 0;
	for (size_t i = 0; i < nm && k < STIX_MAX_MARKINGS; i++)
		if ((ix[k++] = intern(&t->refs, marks[i], strlen(marks[i]), true)) == TX_NONE)
			return -1;
	return k && (*mk_i = mset_intern(t, ix, k)) == TX_NONE ? -1 : 0;
}

/* The record of an object version carries its created_by_ref and markings as MQTT user
 * properties (stix-created-by-ref, stix-marking-ref), so the index is rebuilt from the
 * record's envelope without parsing the object. */
#define PROP_BY "stix-created-by-ref"
#define PROP_MK "stix-marking-ref"

static void prop_pair(struct kz_buf *b, const char *k, const char *v, size_t vl)
{
	size_t kl = strlen(k);
	uint8_t h[3] = { 0x26, (uint8_t)(kl >> 8), (uint8_t)kl }, l2[2] = { (uint8_t)(vl >> 8), (uint8_t)vl };
	kz_buf_append(b, h, 3);
	kz_buf_append(b, k, kl);
	kz_buf_append(b, l2, 2);
	kz_buf_append(b, v, vl);
}

static void refs_props(struct taxii *t, const struct tx_ent *e, struct kz_buf *b)
{
	if (e->by_i != TX_NONE) {
		const struct tx_istr *x = istr(&t->refs, e->by_i);
		prop_pair(b, PROP_BY, x->p, x->len);
	}
	uint32_t nm;
	const uint32_t *ms = mset_of(t, e, &nm);
	for (uint32_t i = 0; i < nm; i++) {
		const struct tx_istr *x = istr(&t->refs, ms[i]);
		prop_pair(b, PROP_MK, x->p, x->len);
	}
}

/* The reverse of refs_props on a record's property block (other properties are skipped
 * only when they are user properties: the block is ours). */
static int refs_from_props(struct taxii *t, const uint8_t *p, size_t n, uint32_t *by_i, uint32_t *mk_i)
{
	uint32_t ix[STIX_MAX_MARKINGS];
	size_t k = 0;
	*by_i = *mk_i = TX_NONE;
	for (size_t i = 0; i < n;) {
		if (p[i] != 0x26 || i + 3 > n)
			return -1;
		size_t kl = (size_t)p[i + 1] << 8 | p[i + 2];
		if (i + 3 + kl + 2 > n)
			return -1;
		const uint8_t *key = p + i + 3;
		size_t vl = (size_t)p[i + 3 + kl] << 8 | p[i + 4 + kl];
		const uint8_t *v = p + i + 5 + kl;
		if (i + 5 + kl + vl > n)
			return -1;
		i += 5 + kl + vl;
		bool is_by = kl == strlen(PROP_BY) && memcmp(key, PROP_BY, kl) == 0;
		bool is_mk = kl == strlen(PROP_MK) && memcmp(key, PROP_MK, kl) == 0;
		uint32_t x = is_by || (is_mk && k < STIX_MAX_MARKINGS) ? intern(&t->refs, v, vl, true) : TX_NONE;
		if ((is_by || (is_mk && k < STIX_MAX_MARKINGS)) && x == TX_NONE)
			return -1;
		if (is_by)
			*by_i = x;
		else if (is_mk && k < STIX_MAX_MARKINGS)
			ix[k++] = x;
	}
	return k && (*mk_i = mset_intern(t, ix, k)) == TX_NONE ? -1 : 0;
}

/* Appends an entry (caller holds the write lock). */
static int ent_add(struct taxii *t, struct tx_coll *c, const struct tx_ent *e)
{
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 4096;
		struct tx_ent *ne = realloc(c->e, nc * sizeof *ne);
		if (!ne)
			return -1;
		c->e = ne;
		c->cap = nc;
	}
	uint32_t nm;
	const uint32_t *ms = mset_of(t, e, &nm);
	if (e->by_i != TX_NONE && plist_reserve(&c->by_post, &c->nby, e->by_i))
		return -1;
	for (uint32_t k = 0; k < nm; k++)
		if (plist_reserve(&c->mk_post, &c->nmk, ms[k]))
			return -1;
	struct tx_slot *s = slot_of(c, e->type_i, e->uuid, true);
	if (!s)
		return -1;
	uint32_t idx = (uint32_t)c->n;
	if (e->by_i != TX_NONE) {
		struct tx_plist *l = &c->by_post[e->by_i];
		l->v[l->n++] = idx;
	}
	for (uint32_t k = 0; k < nm; k++) {
		struct tx_plist *l = &c->mk_post[ms[k]];
		l->v[l->n++] = idx;
	}
	c->e[c->n++] = *e;
	c->e[idx].next_ver = TX_NONE;
	if (s->first == TX_NONE)
		s->first = idx;
	else
		c->e[s->last].next_ver = idx;
	s->last = idx;
	if (e->added_us > c->last_added)
		c->last_added = e->added_us;
	return 0;
}

static uint32_t type_index(struct taxii *t, const char *type, bool add)
{
	uint32_t n = atomic_load(&t->ntypes);
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(t->types[i], type) == 0)
			return i;
	if (!add)
		return TX_NONE;
	pthread_mutex_lock(&t->intern);
	n = atomic_load(&t->ntypes);
	uint32_t r = TX_NONE;
	for (uint32_t i = 0; i < n && r == TX_NONE; i++)
		if (strcmp(t->types[i], type) == 0)
			r = i;
	if (r == TX_NONE && n < TX_MAX_TYPES && (t->types[n] = strdup(type))) {
		r = n;
		atomic_store(&t->ntypes, n + 1);
	}
	pthread_mutex_unlock(&t->intern);
	return r;
}

static const char *tlp_word(int tlp)
{
	static const char *const w[] = { "", "clear", "green", "amber", "amber+strict", "red" };
	return tlp >= 0 && tlp <= 5 ? w[tlp] : "";
}

/* Organisation names compare without case (org:MOD is org:mod). */
static char *lower(char *s)
{
	for (char *q = s; q && *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Kizuna-Audience in canonical form into a (cap n) (taxii.h): entries org:NAME (name lower case) and
 * id:SPIFFE-ID (as given: SPIFFE paths are case-sensitive; the scheme and trust domain lower
 * case), sorted, repeats removed, joined by ','. *cnt receives the number of entries. */
int taxii_audience_canon(const char *text, char *a, size_t n, size_t *cnt, const char **why)
{
	char buf[900], *ent[TX_MAX_AUD];
	size_t k = 0;
	if (strlen(text) >= sizeof buf) {
		*why = "Kizuna-Audience: too long";
		return -1;
	}
	snprintf(buf, sizeof buf, "%s", text);
	char *sv = NULL;
	for (char *tok = strtok_r(buf, ", \t", &sv); tok; tok = strtok_r(NULL, ", \t", &sv)) {
		char *colon = strchr(tok, ':');
		if (!colon || colon[1] == 0) {
			*why = "Kizuna-Audience: entries are org:NAME or id:SPIFFE-ID";
			return -1;
		}
		*colon = 0;
		lower(tok);
		*colon = ':';
		if (strncmp(tok, "org:", 4) == 0) {
			lower(tok + 4);
		} else if (strncmp(tok, "id:", 3) == 0 && strncasecmp(tok + 3, "spiffe://", 9) == 0) {
			char *path = strchr(tok + 12, '/');
			if (path)
				*path = 0;
			lower(tok + 3);
			if (path)
				*path = '/';
		} else {
			*why = "Kizuna-Audience: entries are org:NAME or id:SPIFFE-ID";
			return -1;
		}
		bool dup = false;
		for (size_t i = 0; i < k; i++)
			dup = dup || strcmp(ent[i], tok) == 0;
		if (dup)
			continue;
		if (k == TX_MAX_AUD) {
			*why = "Kizuna-Audience: at most 8 entries";
			return -1;
		}
		ent[k++] = tok;
	}
	qsort(ent, k, sizeof *ent, cmp_str);
	size_t len = 0;
	a[0] = 0;
	for (size_t i = 0; i < k; i++) {
		len += (size_t)snprintf(a + len, len < n ? n - len : 0, "%s%s", i ? "," : "", ent[i]);
		if (len >= n) {
			*why = "Kizuna-Audience: too long";
			return -1;
		}
	}
	*cnt = k;
	return 0;
}

/* The organisation of a SPIFFE ID spiffe://<domain>/<org>/<kind>/<name>. */
static void org_of_id(const char *id, char *org, size_t n)
{
	org[0] = 0;
	if (!id || strncmp(id, "spiffe://", 9) != 0)
		return;
	const char *a = strchr(id + 9, '/');
	const char *b = a ? strchr(a + 1, '/') : NULL;
	if (a && b && (size_t)(b - a - 1) < n)
		snprintf(org, n, "%.*s", (int)(b - a - 1), a + 1);
	lower(org);
}

/* Interns the access of (author, label). The label is "tlp=X;aud=org:a,id:b" or "". */
static uint32_t access_index(struct taxii *t, const char *author, const char *label)
{
	char key[2048];
	snprintf(key, sizeof key, "%s|%s", author ? author : "", label);
	uint32_t n = atomic_load(&t->nacc);
	for (uint32_t i = n; i-- > 0;)
		if (strcmp(t->acc[i]->key, key) == 0)
			return i;
	pthread_mutex_lock(&t->intern);
	n = atomic_load(&t->nacc);
	uint32_t r = TX_NONE;
	for (uint32_t i = 0; i < n && r == TX_NONE; i++)
		if (strcmp(t->acc[i]->key, key) == 0)
			r = i;
	if (r == TX_NONE && n < TX_MAX_ACCESS) {
		struct tx_access *a = calloc(1, sizeof *a);
		char org[128];
		org_of_id(author, org, sizeof org);
		if (a) {
			a->author = strdup(author ? author : "");
			a->org = strdup(org);
			a->key = strdup(key);
			a->label = strdup(label);
			/* key=value parts: tlp and aud are ours, the rest is the policy's label */
			char buf[2048], base[2048] = "";
			snprintf(buf, sizeof buf, "%s", label);
			size_t bl = 0;
			char *sv = NULL;
			for (char *part = strtok_r(buf, ";", &sv); part; part = strtok_r(NULL, ";", &sv)) {
				if (strncmp(part, "tlp=", 4) == 0) {
					for (int k = 1; k <= 5; k++)
						if (strcmp(part + 4, tlp_word(k)) == 0)
							a->tlp = (uint8_t)k;
				} else if (strncmp(part, "aud=", 4) == 0) {
					char *sv2 = NULL;
					for (char *tok = strtok_r(part + 4, ",", &sv2); tok; tok = strtok_r(NULL, ",", &sv2)) {
						if (strncmp(tok, "org:", 4) == 0 && a->n_orgs < TX_MAX_AUD)
							a->orgs[a->n_orgs++] = lower(strdup(tok + 4));
						else if (strncmp(tok, "id:", 3) == 0 && a->n_ids < TX_MAX_AUD)
							a->ids[a->n_ids++] = strdup(tok + 3);
					}
				} else if (bl < sizeof base)
					bl += (size_t)snprintf(base + bl, sizeof base - bl, "%s%s", bl ? ";" : "", part);
			}
			a->base = strdup(base);
			t->acc[n] = a;
			r = n;
			atomic_store(&t->nacc, n + 1);
		}
	}
	pthread_mutex_unlock(&t->intern);
	return r;
}

/* The reader of a request. */
/* Per request: the policy's verdict on each access entry's label, worked out once. */
struct lab_cache {
	uint32_t n;
	uint8_t *state; /* 0 not yet, 1 dominates, 2 does not */
};

struct tx_subject {
	const char *id;
	char org[128];
	struct kz_policy *pol;
	struct kz_subject s;
	struct lab_cache *lc;
};

/* With a policy, the reader must dominate the object's label (classification and
 * categories; docs/POLICY.md): a label the policy cannot parse (any more) hides the object. */
static bool label_ok(const struct tx_subject *sub, const struct tx_access *a, uint32_t acc_i)
{
	if (!sub->pol)
		return true;
	struct lab_cache *lc = sub->lc;
	if (lc && acc_i < lc->n && lc->state[acc_i])
		return lc->state[acc_i] == 1;
	struct kz_label lab;
	char canon[KZ_LABEL_MAX_LEN + 1], why[160];
	size_t cl;
	const char *w;
	bool ok;
	if (!a->base[0]) /* stored before a policy existed: the policy's default label (docs/POLICY.md) */
		ok = kz_dominates(sub->pol, &sub->s, &sub->pol->default_label, &w);
	else
		ok = kz_label_parse(sub->pol, a->base, strlen(a->base), &lab, canon, &cl, why, sizeof why) == 0 &&
		     kz_dominates(sub->pol, &sub->s, &lab, &w);
	if (lc && acc_i < lc->n)
		lc->state[acc_i] = ok ? 1 : 2;
	return ok;
}

static bool visible(struct taxii *t, const struct tx_subject *sub, const struct tx_ent *e)
{
	const struct tx_access *a = t->acc[e->acc_i];
	if (!label_ok(sub, a, e->acc_i))
		return false;
	if (e->tlp <= 2)
		return true;
	if (strcmp(a->author, sub->id) == 0)
		return true;
	if (e->tlp == 4) /* AMBER+STRICT: one organisation */
		return strcmp(a->n_orgs ? a->orgs[0] : a->org, sub->org) == 0;
	if (e->tlp == 3 && sub->org[0] && strcmp(a->org, sub->org) == 0)
		return true;
	for (uint32_t i = 0; i < a->n_orgs; i++)
		if (sub->org[0] && strcmp(a->orgs[i], sub->org) == 0)
			return true;
	for (uint32_t i = 0; i < a->n_ids; i++)
		if (strcmp(a->ids[i], sub->id) == 0)
			return true;
	return false;
}

/* ---------- collections file ---------- */

static int load_collections(struct taxii *t, char *why, size_t why_len)
{
	json_error_t je;
	json_t *root = json_load_file(t->cfg.collections_file, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		FILE *f = fopen(t->cfg.collections_file, "r");
		if (f) {
			fclose(f);
			snprintf(why, why_len, "%s:%d: %s", t->cfg.collections_file, je.line, je.text);
			return -1;
		}
		/* first start: one collection for everyone the policy allows */
		uint8_t u[16];
		char id[37];
		kz_uuidv7(u, kz_now_wall_ns() / 1000000);
		kz_uuid_format(u, id);
		root = json_pack("[{s:s, s:s, s:s, s:b}]", "id", id, "title", "Shared indicators", "description",
				 "Created on first start (docs/TAXII.md).", "allow_custom", 1);
		if (json_dump_file(root, t->cfg.collections_file, JSON_INDENT(2))) {
			json_decref(root);
			snprintf(why, why_len, "cannot write %s", t->cfg.collections_file);
			return -1;
		}
		kz_info("TAXII: created %s with collection %s", t->cfg.collections_file, id);
	}
	if (!json_is_array(root) || json_array_size(root) == 0 || json_array_size(root) > 1024) {
		json_decref(root);
		snprintf(why, why_len, "%s: expected a JSON list of 1 to 1024 collections", t->cfg.collections_file);
		return -1;
	}
	t->c = calloc(json_array_size(root), sizeof *t->c);
	size_t i;
	json_t *o;
	json_array_foreach(root, i, o)
	{
		struct tx_coll *c = &t->c[t->nc];
		const char *id = json_string_value(json_object_get(o, "id"));
		uint8_t u[16];
		if (!id || kz_uuid_parse(id, u)) {
			snprintf(why, why_len, "%s: collection %zu: \"id\" must be a UUID", t->cfg.collections_file, i);
			json_decref(root);
			return -1;
		}
		for (size_t k = 0; k < t->nc; k++)
			if (strcmp(t->c[k].id, id) == 0) {
				snprintf(why, why_len, "%s: collection %s listed twice", t->cfg.collections_file, id);
				json_decref(root);
				return -1;
			}
		snprintf(c->id, sizeof c->id, "%s", id);
		const char *title = json_string_value(json_object_get(o, "title"));
		const char *desc = json_string_value(json_object_get(o, "description"));
		c->title = strdup(title ? title : id);
		c->description = desc ? strdup(desc) : NULL;
		c->allow_custom = json_is_true(json_object_get(o, "allow_custom"));
		c->readers = json_incref(json_object_get(o, "readers"));
		c->writers = json_incref(json_object_get(o, "writers"));
		pthread_rwlock_init(&c->lock, NULL);
		pthread_mutex_init(&c->wlock, NULL);
		t->nc++;
	}
	json_decref(root);
	return 0;
}

static struct tx_coll *coll_of(struct taxii *t, const char *id, size_t n)
{
	for (size_t i = 0; i < t->nc; i++)
		if (strlen(t->c[i].id) == n && memcmp(t->c[i].id, id, n) == 0)
			return &t->c[i];
	return NULL;
}

/* A readers/writers list: "*", "org:NAME", "id:SPIFFE-ID", "kind:user|sensor|service|node". */
static bool listed(const json_t *l, const struct tx_subject *sub)
{
	if (!l)
		return true;
	size_t i;
	json_t *e;
	char kind[32] = "";
	const char *p = sub->id && strncmp(sub->id, "spiffe://", 9) == 0 ? strchr(sub->id + 9, '/') : NULL;
	p = p ? strchr(p + 1, '/') : NULL;
	if (p) {
		const char *q = strchr(p + 1, '/');
		if (q && (size_t)(q - p - 1) < sizeof kind)
			snprintf(kind, sizeof kind, "%.*s", (int)(q - p - 1), p + 1);
	}
	json_array_foreach(l, i, e)
	{
		const char *s = json_string_value(e);
		if (!s)
			continue;
		if (strcmp(s, "*") == 0 || (strncmp(s, "org:", 4) == 0 && strcmp(s + 4, sub->org) == 0) ||
		    (strncmp(s, "id:", 3) == 0 && strcmp(s + 3, sub->id) == 0) ||
		    (strncmp(s, "kind:", 5) == 0 && strcmp(s + 5, kind) == 0))
			return true;
	}
	return false;
}

static bool can_read(struct tx_coll *c, struct tx_subject *sub)
{
	if (!listed(c->readers, sub))
		return false;
	if (!sub->pol)
		return true;
	char f[80];
	const char *why;
	snprintf(f, sizeof f, "$taxii/%s/#", c->id);
	return kz_policy_subscribe(sub->pol, &sub->s, f, strlen(f), &why);
}

static bool can_write(struct tx_coll *c, struct tx_subject *sub)
{
	if (!listed(c->writers, sub))
		return false;
	if (!sub->pol)
		return true;
	char f[80];
	const char *why, *dt;
	const struct kz_label *dl;
	snprintf(f, sizeof f, "$taxii/%s/objects", c->id);
	return kz_policy_publish(sub->pol, &sub->s, f, strlen(f), &dl, &dt, &why);
}


static void subject_init(struct taxii *t, struct kz_http_req *r, struct tx_subject *sub)
{
	memset(sub, 0, sizeof *sub);
	sub->id = r->identity;
	sub->pol = t->cfg.policy ? atomic_load(t->cfg.policy) : NULL;
	org_of_id(r->identity, sub->org, sizeof sub->org);
	if (sub->pol) {
		kz_subject_init(sub->pol, r->identity, &sub->s);
		if (sub->s.ident && sub->s.ident->org) /* the registry's attributes win */
			snprintf(sub->org, sizeof sub->org, "%s", sub->s.ident->org);
	}
}

/* ---------- rebuild from the log ---------- */

/* $taxii/<coll>/<type>/<uuid>/<version µs> or $taxii-del/<coll>/<type>/<uuid>/<version µs> */
static int parse_topic(const uint8_t *p, size_t n, bool *del, char coll[37], char type[STIX_TYPE_MAX + 1],
		       uint8_t uuid[16], int64_t *ver)
{
	char buf[512];
	if (n >= sizeof buf)
		return -1;
	memcpy(buf, p, n);
	buf[n] = 0;
	char *parts[6];
	int k = 0;
	char *sv = NULL;
	for (char *tok = strtok_r(buf, "/", &sv); tok && k < 6; tok = strtok_r(NULL, "/", &sv))
		parts[k++] = tok;
	if (k != 5)
		return -1;
	if (strcmp(parts[0], "$taxii") == 0)
		*del = false;
	else if (strcmp(parts[0], "$taxii-del") == 0)
		*del = true;
	else
		return -1;
	if (strlen(parts[1]) != 36 || strlen(parts[2]) > STIX_TYPE_MAX || kz_uuid_parse(parts[3], uuid))
		return -1;
	snprintf(coll, 37, "%s", parts[1]);
	snprintf(type, STIX_TYPE_MAX + 1, "%s", parts[2]);
	*ver = strtoll(parts[4], NULL, 10);
	return 0;
}

static void mark_deleted(struct tx_coll *c, uint32_t type_i, const uint8_t uuid[16], int64_t ver)
{
	struct tx_slot *s = slot_of(c, type_i, uuid, false);
	for (uint32_t i = s ? s->first : TX_NONE; i != TX_NONE; i = c->e[i].next_ver)
		if (c->e[i].version_us == ver)
			c->e[i].deleted = 1;
}

struct rebuild {
	struct taxii *t;
	uint64_t n, skipped, foreign;
};

static int rebuild_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct rebuild *rb = ctx;
	struct kz_record r;
	const char *why;
	if (n < 8 || kz_record_decode(body, n, &r, &why) || r.topic.len < 7 || memcmp(r.topic.p, "$taxii", 6) != 0)
		return 0;
	if (!r.service) { /* not written by the TAXII write path: never part of a collection */
		rb->foreign++;
		return 0;
	}
	bool del;
	char coll[37], type[STIX_TYPE_MAX + 1], label[1100] = "", author[600] = "";
	uint8_t uuid[16];
	int64_t ver;
	if (parse_topic(r.topic.p, r.topic.len, &del, coll, type, uuid, &ver)) {
		rb->skipped++;
		return 0;
	}
	struct tx_coll *c = coll_of(rb->t, coll, 36);
	uint32_t ti = type_index(rb->t, type, true);
	if (!c || ti == TX_NONE) {
		rb->skipped++;
		return 0;
	}
	if (del) {
		mark_deleted(c, ti, uuid, ver);
		return 0;
	}
	snprintf(label, sizeof label, "%.*s", (int)r.label.len, (const char *)r.label.p);
	snprintf(author, sizeof author, "%.*s", (int)r.origin_id.len, (const char *)r.origin_id.p);
	uint32_t ai = access_index(rb->t, author, label);
	if (ai == TX_NONE) {
		rb->skipped++;
		return 0;
	}
	struct tx_ent e = { .seq = seq, .pos = *pos, .added_us = (int64_t)(r.time_ns / 1000), .version_us = ver,
			    .type_i = ti, .acc_i = ai, .tlp = rb->t->acc[ai]->tlp };
	if (refs_from_props(rb->t, r.mqtt_props.p, r.mqtt_props.len, &e.by_i, &e.mk_i)) {
		rb->skipped++;
		return 0;
	}
	memcpy(e.uuid, uuid, 16);
	if (ent_add(rb->t, c, &e))
		return -1;
	rb->n++;
	return 0;
}

/* ---------- open / close ---------- */

int taxii_open(const struct taxii_config *cfg, struct taxii **out, char *why, size_t why_len)
{
	struct taxii *t = calloc(1, sizeof *t);
	if (!t) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	t->cfg = *cfg;
	pthread_mutex_init(&t->intern, NULL);
	pthread_mutex_init(&t->st_lock, NULL);
	pthread_mutex_init(&t->refs.lock, NULL);
	pthread_mutex_init(&t->msets.lock, NULL);
	t->rd = calloc(cfg->workers, sizeof *t->rd);
	for (unsigned i = 0; i < cfg->workers; i++)
		kz_reclog_reader_init(&t->rd[i], cfg->log_dir, cfg->max_record_bytes);
	if (!t->rd || load_collections(t, why, why_len)) {
		if (!t->rd)
			snprintf(why, why_len, "out of memory");
		taxii_close(t);
		return -1;
	}
	struct rebuild rb = { t, 0, 0, 0 };
	uint64_t end;
	if (kz_store_scan(cfg->store, 1, NULL, rebuild_cb, &rb, &end, why, why_len)) {
		taxii_close(t);
		return -1;
	}
	if (rb.skipped)
		kz_warn("TAXII: %llu records for unknown collections or malformed were skipped",
			(unsigned long long)rb.skipped);
	if (rb.foreign)
		kz_warn("TAXII: %llu records on $taxii topics that did not come through the TAXII write path "
			"were ignored", (unsigned long long)rb.foreign);
	*out = t;
	return 0;
}

void taxii_counts(struct taxii *t, uint64_t *collections, uint64_t *entries)
{
	*collections = t->nc;
	*entries = 0;
	for (size_t i = 0; i < t->nc; i++) {
		pthread_rwlock_rdlock(&t->c[i].lock);
		*entries += t->c[i].n;
		pthread_rwlock_unlock(&t->c[i].lock);
	}
}

static void status_free(struct tx_status *s)
{
	if (!s)
		return;
	free(s->owner);
	json_decref(s->successes);
	json_decref(s->failures);
	free(s->text);
	free(s);
}

void taxii_close(struct taxii *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nc; i++) {
		struct tx_coll *c = &t->c[i];
		free(c->title);
		free(c->description);
		json_decref(c->readers);
		json_decref(c->writers);
		free(c->e);
		free(c->slots);
		plists_free(c->by_post, c->nby);
		plists_free(c->mk_post, c->nmk);
		pthread_rwlock_destroy(&c->lock);
		pthread_mutex_destroy(&c->wlock);
	}
	free(t->c);
	for (uint32_t i = 0; i < atomic_load(&t->ntypes); i++)
		free(t->types[i]);
	for (uint32_t i = 0; i < atomic_load(&t->nacc); i++) {
		struct tx_access *a = t->acc[i];
		free(a->author);
		free(a->org);
		free(a->key);
		free(a->label);
		free(a->base);
		for (uint32_t k = 0; k < a->n_orgs; k++)
			free(a->orgs[k]);
		for (uint32_t k = 0; k < a->n_ids; k++)
			free(a->ids[k]);
		free(a);
	}
	if (t->st)
		for (size_t i = 0; i < t->cfg.max_statuses; i++)
			status_free(t->st[i]);
	free(t->st);
	if (t->rd)
		for (unsigned i = 0; i < t->cfg.workers; i++)
			kz_reclog_reader_close(&t->rd[i]);
	free(t->rd);
	pthread_mutex_destroy(&t->intern);
	pthread_mutex_destroy(&t->st_lock);
	intern_free(&t->refs);
	intern_free(&t->msets);
	free(t);
}

/* ---------- request helpers ---------- */

static void err(struct kz_http_req *r, int status, const char *title, const char *desc)
{
	kz_http_error(r, status, TAXII_MT, title, "%s", desc);
}

/* Accept (§1.6.8.1): the TAXII 2.1 media type, with or without the version; any type; and for
 * objects the STIX one. Returns the content type to answer with, NULL for 406. */
static const char *accepted(struct kz_http_req *r, bool stix_too)
{
	const char *a = kz_http_req_header(r, "accept");
	if (!a)
		return TAXII_MT;
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", a);
	char *sv = NULL;
	for (char *m = strtok_r(buf, ",", &sv); m; m = strtok_r(NULL, ",", &sv)) {
		char t[256];
		size_t k = 0;
		for (const char *p = m; *p && k + 1 < sizeof t; p++)
			if (*p != ' ' && *p != '\t')
				t[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
		t[k] = 0;
		char *q = strstr(t, ";q=");
		if (q) {
			if (strncmp(q + 3, "0", 1) == 0 && strspn(q + 4, ".0") == strlen(q + 4))
				continue; /* q=0: not acceptable */
			*q = 0;
		}
		if (strcmp(t, "*/*") == 0 || strcmp(t, "application/*") == 0 || strcmp(t, "application/taxii+json") == 0 ||
		    strcmp(t, "application/taxii+json;version=2.1") == 0)
			return TAXII_MT;
		if (stix_too && (strcmp(t, "application/stix+json") == 0 || strcmp(t, "application/stix+json;version=2.1") == 0))
			return STIX_MT;
	}
	return NULL;
}

static bool content_type_ok(struct kz_http_req *r)
{
	const char *ct = kz_http_req_header(r, "content-type");
	if (!ct)
		return false;
	char t[256];
	size_t k = 0;
	for (const char *p = ct; *p && k + 1 < sizeof t; p++)
		if (*p != ' ' && *p != '\t')
			t[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	t[k] = 0;
	return strcmp(t, TAXII_MT) == 0 || strcmp(t, STIX_MT) == 0;
}

static void send_json(struct kz_http_req *r, int status, const char *ct, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s) {
		err(r, 500, "Internal Server Error", "cannot encode the answer");
		return;
	}
	kz_http_send(r, status, ct, s, strlen(s));
	free(s);
}

/* ---------- query strings (§3.5) ---------- */

struct tx_query {
	bool has_added_after;
	int64_t added_after;
	uint32_t limit;
	bool has_next;
	uint64_t next;
	size_t n_ids;
	struct { uint32_t type_i; uint8_t uuid[16]; } ids[64];
	size_t n_types;
	uint32_t types[64];
	bool v_first, v_last, v_all;
	size_t n_vts;
	int64_t vts[64];
	bool spec_given, spec21;
	size_t n_by, n_mk; /* match[created_by_ref], match[object_marking_refs] (refs indexes) */
	uint32_t by[64], mk[64];
	const char *bad; /* why the query is refused */
	char bad_buf[200];
	struct taxii *t;
	int seen_limit, seen_next, seen_added, seen_id, seen_type, seen_ver, seen_spec, seen_by, seen_mk;
};

static int q_bad(struct tx_query *q, const char *fmt, const char *a)
{
	snprintf(q->bad_buf, sizeof q->bad_buf, fmt, a);
	q->bad = q->bad_buf;
	return 1;
}

static int q_param(void *ctx, const char *k, const char *v)
{
	struct tx_query *q = ctx;
	char buf[4096];
	char *sv = NULL;
	if (strcmp(k, "added_after") == 0) {
		if (q->seen_added++)
			return q_bad(q, "%s given twice", k);
		if (stix_timestamp(v, &q->added_after, NULL))
			return q_bad(q, "added_after: \"%.60s\" is not a timestamp", v);
		q->has_added_after = true;
	} else if (strcmp(k, "limit") == 0) {
		if (q->seen_limit++)
			return q_bad(q, "%s given twice", k);
		char *e;
		long long l = strtoll(v, &e, 10);
		if (!*v || *e || l < 1)
			return q_bad(q, "limit: \"%.60s\" is not a positive integer", v);
		q->limit = l > q->t->cfg.max_page ? q->t->cfg.max_page : (uint32_t)l;
	} else if (strcmp(k, "next") == 0) {
		if (q->seen_next++)
			return q_bad(q, "%s given twice", k);
		/* exactly what this server issues: "p" and 1 to 16 lower-case hex digits, no leading
		 * zero (strtoull alone would take "-1" and saturate 40 digits) */
		size_t hl = strspn(v + 1, "0123456789abcdef");
		if (v[0] != 'p' || hl == 0 || hl > 16 || v[1 + hl] || (hl > 1 && v[1] == '0'))
			return q_bad(q, "next: \"%.60s\" is not a cursor this server issued", v);
		q->next = strtoull(v + 1, NULL, 16);
		q->has_next = true;
	} else if (strcmp(k, "match[id]") == 0) {
		if (q->seen_id++)
			return q_bad(q, "%s given twice (use a comma list)", k);
		snprintf(buf, sizeof buf, "%s", v);
		for (char *s = strtok_r(buf, ",", &sv); s; s = strtok_r(NULL, ",", &sv)) {
			const char *dd = strstr(s, "--");
			if (!dd || q->n_ids == 64 || (size_t)(dd - s) > STIX_TYPE_MAX)
				return q_bad(q, "match[id]: \"%.80s\" is not an identifier (or more than 64 ids)", s);
			char type[STIX_TYPE_MAX + 1];
			snprintf(type, sizeof type, "%.*s", (int)(dd - s), s);
			if (kz_uuid_parse(dd + 2, q->ids[q->n_ids].uuid))
				return q_bad(q, "match[id]: \"%.80s\" is not an identifier", s);
			q->ids[q->n_ids++].type_i = type_index(q->t, type, false);
		}
	} else if (strcmp(k, "match[type]") == 0) {
		if (q->seen_type++)
			return q_bad(q, "%s given twice (use a comma list)", k);
		snprintf(buf, sizeof buf, "%s", v);
		for (char *s = strtok_r(buf, ",", &sv); s; s = strtok_r(NULL, ",", &sv)) {
			if (q->n_types == 64)
				return q_bad(q, "match[type]: more than %s types", "64");
			q->types[q->n_types++] = type_index(q->t, s, false);
		}
		if (!q->n_types)
			return q_bad(q, "match[type]: %s", "empty");
	} else if (strcmp(k, "match[version]") == 0) {
		if (q->seen_ver++)
			return q_bad(q, "%s given twice (use a comma list)", k);
		snprintf(buf, sizeof buf, "%s", v);
		for (char *s = strtok_r(buf, ",", &sv); s; s = strtok_r(NULL, ",", &sv)) {
			if (strcmp(s, "first") == 0)
				q->v_first = true;
			else if (strcmp(s, "last") == 0)
				q->v_last = true;
			else if (strcmp(s, "all") == 0)
				q->v_all = true;
			else if (q->n_vts < 64 && !stix_timestamp(s, &q->vts[q->n_vts], NULL))
				q->n_vts++;
			else
				return q_bad(q, "match[version]: \"%.60s\" is not first, last, all or a timestamp", s);
		}
	} else if (strcmp(k, "match[spec_version]") == 0) {
		if (q->seen_spec++)
			return q_bad(q, "%s given twice (use a comma list)", k);
		q->spec_given = true;
		snprintf(buf, sizeof buf, "%s", v);
		for (char *s = strtok_r(buf, ",", &sv); s; s = strtok_r(NULL, ",", &sv))
			if (strcmp(s, "2.1") == 0)
				q->spec21 = true;
	} else if (strcmp(k, "match[created_by_ref]") == 0 || strcmp(k, "match[object_marking_refs]") == 0) {
		/* kizuna's own filters (docs/TAXII.md), answered from the indexes */
		bool by = k[6] == 'c';
		if (by ? q->seen_by++ : q->seen_mk++)
			return q_bad(q, "%s given twice (use a comma list)", k);
		size_t *cnt = by ? &q->n_by : &q->n_mk;
		uint32_t *dst = by ? q->by : q->mk;
		snprintf(buf, sizeof buf, "%s", v);
		for (char *x = strtok_r(buf, ",", &sv); x; x = strtok_r(NULL, ",", &sv)) {
			const char *dd = strstr(x, "--");
			uint8_t u[16];
			if (!dd || kz_uuid_parse(dd + 2, u) || strlen(dd + 2) != 36) {
				snprintf(q->bad_buf, sizeof q->bad_buf, "%s: \"%.80s\" is not an identifier", k, x);
				q->bad = q->bad_buf;
				return 1;
			}
			if (*cnt == 64)
				return q_bad(q, "%s: more than 64 identifiers", k);
			dst[(*cnt)++] = intern(&q->t->refs, x, strlen(x), false);
		}
		if (!*cnt)
			return q_bad(q, "%s: empty", k);
	} else if (strncmp(k, "match[", 6) == 0) {
		return q_bad(q, "%s: this server does not filter on that field", k);
	}
	/* other parameters are ignored, as HTTP allows */
	return 0;
}

static int parse_query(struct taxii *t, struct kz_http_req *r, struct tx_query *q, bool default_all)
{
	memset(q, 0, sizeof *q);
	q->t = t;
	q->limit = t->cfg.default_page;
	const char *why = NULL;
	int rc = kz_http_query_each(r->query, strlen(r->query), q_param, q, &why);
	if (rc < 0) {
		err(r, 400, "Bad Request", why);
		return -1;
	}
	if (q->bad) {
		err(r, 400, "Bad Request", q->bad);
		return -1;
	}
	if (!q->v_first && !q->v_last && !q->v_all && !q->n_vts) {
		if (default_all)
			q->v_all = true;
		else
			q->v_last = true;
	}
	return 0;
}

static struct taxii check_t; /* empty: every type and identifier is unknown */
static pthread_once_t check_once = PTHREAD_ONCE_INIT;
static void check_init(void)
{
	check_t.cfg.max_page = 1000;
	check_t.cfg.default_page = 100;
	pthread_mutex_init(&check_t.intern, NULL);
	pthread_mutex_init(&check_t.refs.lock, NULL);
	pthread_mutex_init(&check_t.msets.lock, NULL);
}

int taxii_query_check(const char *qs, size_t n, char *why, size_t why_len)
{
	pthread_once(&check_once, check_init);
	struct taxii *t = &check_t;
	struct tx_query q;
	memset(&q, 0, sizeof q);
	q.t = t;
	const char *w = NULL;
	int rc = kz_http_query_each(qs, n, q_param, &q, &w);
	if (rc < 0 || q.bad) {
		snprintf(why, why_len, "%s", rc < 0 ? w : q.bad);
		return -1;
	}
	return 0;
}

/* Does entry i pass the filters (caller holds the read lock)? */
static bool passes(struct taxii *t, struct tx_coll *c, const struct tx_subject *sub, const struct tx_query *q, uint32_t i)
{
	const struct tx_ent *e = &c->e[i];
	if (e->deleted || !visible(t, sub, e))
		return false;
	if (q->spec_given && !q->spec21)
		return false;
	if (q->n_types) {
		size_t k = 0;
		while (k < q->n_types && q->types[k] != e->type_i)
			k++;
		if (k == q->n_types)
			return false;
	}
	if (q->n_ids) {
		size_t k = 0;
		while (k < q->n_ids && !(q->ids[k].type_i == e->type_i && memcmp(q->ids[k].uuid, e->uuid, 16) == 0))
			k++;
		if (k == q->n_ids)
			return false;
	}
	if (q->n_by) {
		size_t k = 0;
		while (k < q->n_by && q->by[k] != e->by_i)
			k++;
		if (k == q->n_by || e->by_i == TX_NONE)
			return false;
	}
	if (q->n_mk) {
		uint32_t nm;
		const uint32_t *ms = mset_of(t, e, &nm);
		bool any = false;
		for (size_t k = 0; k < q->n_mk && !any; k++)
			for (uint32_t j = 0; j < nm && !any; j++)
				any = ms[j] == q->mk[k];
		if (!any)
			return false;
	}
	if (q->v_all)
		return true;
	for (size_t k = 0; k < q->n_vts; k++)
		if (q->vts[k] == e->version_us)
			return true;
	if (q->v_first || q->v_last) {
		/* first/last among the versions this reader can see */
		struct tx_slot *s = slot_of(c, e->type_i, e->uuid, false);
		uint32_t lo = TX_NONE, hi = TX_NONE;
		for (uint32_t j = s ? s->first : TX_NONE; j != TX_NONE; j = c->e[j].next_ver) {
			const struct tx_ent *x = &c->e[j];
			if (x->deleted || !visible(t, sub, x))
				continue;
			if (lo == TX_NONE || x->version_us < c->e[lo].version_us)
				lo = j;
			if (hi == TX_NONE || x->version_us >= c->e[hi].version_us)
				hi = j;
		}
		if ((q->v_first && lo == i) || (q->v_last && hi == i))
			return true;
	}
	return false;
}

/* One page: copies of the matching entries (at most limit), whether there are more and the
 * cursor to them. Holds the read lock while it runs. */
struct page {
	struct tx_ent *e; /* copies */
	size_t n;
	bool more;
	uint64_t next;
};

/* Where a page's candidates come from: every entry from the start, the named objects'
 * versions (match[id]), or the posting lists of created_by_ref / marking filters merged
 * in index order. Each yields ascending entry indexes. */
struct cands {
	enum { C_ALL, C_ARR, C_LISTS } kind;
	uint64_t i, end;        /* C_ALL */
	uint32_t *arr;          /* C_ARR: sorted */
	size_t n, ai;
	const struct tx_plist *l[64]; /* C_LISTS */
	uint32_t pos[64];
	size_t nl;
};

/* The next candidate (not consumed); false at the end. */
static bool cand_peek(const struct cands *cs, uint64_t *i)
{
	switch (cs->kind) {
	case C_ALL:
		*i = cs->i;
		return cs->i < cs->end;
	case C_ARR:
		if (cs->ai >= cs->n)
			return false;
		*i = cs->arr[cs->ai];
		return true;
	default: {
		uint64_t m = UINT64_MAX;
		for (size_t k = 0; k < cs->nl; k++)
			if (cs->pos[k] < cs->l[k]->n && cs->l[k]->v[cs->pos[k]] < m)
				m = cs->l[k]->v[cs->pos[k]];
		*i = m;
		return m != UINT64_MAX;
	}
	}
}

static void cand_skip(struct cands *cs, uint64_t i)
{
	switch (cs->kind) {
	case C_ALL:
		cs->i = i + 1;
		break;
	case C_ARR:
		cs->ai++;
		break;
	default:
		for (size_t k = 0; k < cs->nl; k++)
			if (cs->pos[k] < cs->l[k]->n && cs->l[k]->v[cs->pos[k]] == i)
				cs->pos[k]++;
	}
}

/* The first position in l at or after entry start. */
static uint32_t plist_lower(const struct tx_plist *l, uint64_t start)
{
	uint32_t lo = 0, hi = l->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (l->v[mid] < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int cands_init(struct tx_coll *c, const struct tx_query *q, uint64_t start, struct cands *cs)
{
	memset(cs, 0, sizeof *cs);
	if (q->n_ids) { /* only the named objects' versions */
		cs->kind = C_ARR;
		for (size_t k = 0; k < q->n_ids; k++) {
			struct tx_slot *s = q->ids[k].type_i == TX_NONE ? NULL : slot_of(c, q->ids[k].type_i, q->ids[k].uuid, false);
			for (uint32_t j = s ? s->first : TX_NONE; j != TX_NONE; j = c->e[j].next_ver) {
				if (j < start)
					continue;
				uint32_t *na = realloc(cs->arr, (cs->n + 1) * sizeof *na);
				if (!na)
					return -1;
				cs->arr = na;
				cs->arr[cs->n++] = j;
			}
		}
		if (cs->n) /* qsort(NULL, 0) is undefined */
			qsort(cs->arr, cs->n, sizeof *cs->arr, cmp_u32);
	} else if (q->n_by || q->n_mk) { /* the smaller side's lists; passes() checks the rest */
		cs->kind = C_LISTS;
		const uint32_t *v = q->n_by ? q->by : q->mk;
		size_t nv = q->n_by ? q->n_by : q->n_mk;
		const struct tx_plist *lists = q->n_by ? c->by_post : c->mk_post;
		uint32_t nlists = q->n_by ? c->nby : c->nmk;
		for (size_t k = 0; k < nv; k++)
			if (v[k] != TX_NONE && v[k] < nlists && lists[v[k]].n) {
				cs->l[cs->nl] = &lists[v[k]];
				cs->pos[cs->nl] = plist_lower(&lists[v[k]], start);
				cs->nl++;
			}
	} else {
		cs->kind = C_ALL;
		cs->i = start;
		cs->end = c->n;
	}
	return 0;
}

static void select_page(struct taxii *t, struct tx_coll *c, const struct tx_subject *sub, const struct tx_query *q,
			struct page *pg)
{
	memset(pg, 0, sizeof *pg);
	pg->e = malloc((size_t)q->limit * sizeof *pg->e);
	if (!pg->e)
		return;
	pthread_rwlock_rdlock(&c->lock);
	uint64_t start = q->has_next ? q->next : 0;
	if (!q->has_next && q->has_added_after) { /* added order = index order: binary search */
		size_t lo = 0, hi = c->n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (c->e[mid].added_us <= q->added_after)
				lo = mid + 1;
			else
				hi = mid;
		}
		start = lo;
	}
	struct cands cs;
	if (cands_init(c, q, start, &cs)) {
		pthread_rwlock_unlock(&c->lock);
		free(cs.arr);
		free(pg->e);
		pg->e = NULL;
		return;
	}
	uint32_t scanned = 0;
	uint64_t i;
	while (cand_peek(&cs, &i)) {
		if (i >= c->n)
			break;
		if (!(q->has_added_after && c->e[i].added_us <= q->added_after) && passes(t, c, sub, q, (uint32_t)i)) {
			if (pg->n == q->limit) {
				pg->more = true;
				pg->next = i;
				break;
			}
			pg->e[pg->n++] = c->e[i];
		}
		cand_skip(&cs, i);
		if (++scanned >= t->cfg.max_scan && pg->n < q->limit) {
			/* a sparse filter: hand back what there is and where to go on */
			if (cand_peek(&cs, &i) && i < c->n) {
				pg->more = true;
				pg->next = i;
			}
			break;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	free(cs.arr);
}

static void page_headers(struct kz_http_req *r, const struct page *pg)
{
	if (!pg->n)
		return;
	char ts[64];
	stix_format_us(pg->e[0].added_us, ts);
	kz_http_header(r, "X-TAXII-Date-Added-First", ts);
	stix_format_us(pg->e[pg->n - 1].added_us, ts);
	kz_http_header(r, "X-TAXII-Date-Added-Last", ts);
}

static void envelope_head(struct kz_buf *b, const struct page *pg, const char *key)
{
	char h[96];
	int n = pg->more ? snprintf(h, sizeof h, "{\"more\":true,\"next\":\"p%llx\"", (unsigned long long)pg->next)
			 : snprintf(h, sizeof h, "{\"more\":false");
	kz_buf_append(b, h, (size_t)n);
	if (pg->n) {
		kz_buf_append(b, ",\"", 2);
		kz_buf_append(b, key, strlen(key));
		kz_buf_append(b, "\":[", 3);
	}
}

/* The object of entry e, appended to b (its stored JSON). */
static int append_object(struct taxii *t, struct kz_http_req *r, const struct tx_ent *e, struct kz_buf *b,
			 struct kz_buf *tmp)
{
	if (kz_reclog_read(&t->rd[r->worker], &e->pos, e->seq, tmp))
		return -1;
	struct kz_record rec;
	const char *why;
	if (kz_record_decode(kz_buf_head(tmp), tmp->len, &rec, &why))
		return -1;
	return kz_buf_append(b, rec.payload.p, rec.payload.len);
}

/* ---------- resources ---------- */

static void discovery(struct taxii *t, struct kz_http_req *r)
{
	const char *ct = accepted(r, false);
	if (!ct) {
		err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	char url[600];
	snprintf(url, sizeof url, "https://%s/taxii2/api/", r->authority[0] ? r->authority : "localhost");
	json_t *o = json_pack("{s:s, s:s, s:s, s:[s]}", "title", "kizuna TAXII 2.1", "description",
			      "Threat sharing under labels, policy and audit (docs/TAXII.md).", "default", url,
			      "api_roots", url);
	send_json(r, 200, ct, o);
}

static void api_root(struct taxii *t, struct kz_http_req *r)
{
	const char *ct = accepted(r, false);
	if (!ct) {
		err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	json_t *o = json_pack("{s:s, s:s, s:[s], s:I}", "title", "kizuna", "description", "The node's API root",
			      "versions", TAXII_MT, "max_content_length", (json_int_t)t->cfg.max_content_length);
	send_json(r, 200, ct, o);
}

static json_t *coll_json(struct tx_coll *c, bool rd, bool wr)
{
	json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:[s]}", "id", c->id, "title", c->title, "can_read", rd, "can_write",
			      wr, "media_types", STIX_MT);
	if (c->description)
		json_object_set_new(o, "description", json_string(c->description));
	return o;
}

static void collections(struct taxii *t, struct kz_http_req *r, const char *cid, size_t cidn)
{
	const char *ct = accepted(r, false);
	if (!ct) {
		err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	struct tx_subject sub;
	subject_init(t, r, &sub);
	if (cid) {
		struct tx_coll *c = coll_of(t, cid, cidn);
		bool rd = c && can_read(c, &sub), wr = c && can_write(c, &sub);
		if (!rd && !wr) {
			err(r, 404, "Not Found", "no such collection");
			return;
		}
		send_json(r, 200, ct, coll_json(c, rd, wr));
		return;
	}
	json_t *l = json_array();
	for (size_t i = 0; i < t->nc; i++) {
		bool rd = can_read(&t->c[i], &sub), wr = can_write(&t->c[i], &sub);
		if (rd || wr)
			json_array_append_new(l, coll_json(&t->c[i], rd, wr));
	}
	json_t *o = json_object();
	if (json_array_size(l))
		json_object_set_new(o, "collections", l);
	else
		json_decref(l);
	send_json(r, 200, ct, o);
}

enum listing { L_OBJECTS, L_MANIFEST, L_VERSIONS };

static void list(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub, enum listing what,
		 const char *obj_id)
{
	const char *ct = accepted(r, what == L_OBJECTS);
	if (!ct) {
		err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	struct tx_query q;
	if (parse_query(t, r, &q, what == L_VERSIONS))
		return;
	if (obj_id) { /* /objects/{id}/ and /versions/: the path names the object */
		if (q.n_ids) {
			err(r, 400, "Bad Request", "match[id] is not allowed on a single object's resource");
			return;
		}
		char type[STIX_TYPE_MAX + 1];
		const char *dd = strstr(obj_id, "--");
		if (!dd || (size_t)(dd - obj_id) > STIX_TYPE_MAX || kz_uuid_parse(dd + 2, q.ids[0].uuid)) {
			err(r, 404, "Not Found", "not an object identifier");
			return;
		}
		snprintf(type, sizeof type, "%.*s", (int)(dd - obj_id), obj_id);
		q.ids[0].type_i = type_index(t, type, false);
		q.n_ids = 1;
	}
	struct page pg;
	select_page(t, c, sub, &q, &pg);
	if (!pg.e) {
		err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (obj_id && pg.n == 0 && !q.has_next && !q.has_added_after && !q.n_types && !q.spec_given) {
		free(pg.e);
		err(r, 404, "Not Found", "no such object in this collection");
		return;
	}
	struct kz_buf b, tmp;
	kz_buf_init(&b, 0);
	kz_buf_init(&tmp, 0);
	envelope_head(&b, &pg, what == L_OBJECTS ? "objects" : what == L_MANIFEST ? "objects" : "versions");
	for (size_t i = 0; i < pg.n; i++) {
		if (i)
			kz_buf_append(&b, ",", 1);
		char ts[64], ts2[64], line[400];
		stix_format_us(pg.e[i].version_us, ts);
		if (what == L_VERSIONS) {
			int n = snprintf(line, sizeof line, "\"%s\"", ts);
			kz_buf_append(&b, line, (size_t)n);
		} else if (what == L_MANIFEST) {
			char id[37];
			kz_uuid_format(pg.e[i].uuid, id);
			stix_format_us(pg.e[i].added_us, ts2);
			int n = snprintf(line, sizeof line,
					 "{\"id\":\"%s--%s\",\"date_added\":\"%s\",\"version\":\"%s\",\"media_type\":\"" STIX_MT "\"}",
					 t->types[pg.e[i].type_i], id, ts2, ts);
			kz_buf_append(&b, line, (size_t)n);
		} else if (append_object(t, r, &pg.e[i], &b, &tmp)) {
			kz_buf_cleanup(&b);
			kz_buf_cleanup(&tmp);
			free(pg.e);
			err(r, 500, "Internal Server Error", "cannot read an object from the record log");
			return;
		}
	}
	kz_buf_append(&b, pg.n ? "]}" : "}", pg.n ? 2 : 1);
	page_headers(r, &pg);
	kz_http_send(r, 200, ct, (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
	kz_buf_cleanup(&tmp);
	free(pg.e);
}

/* ---------- status (§4.3) ---------- */

static json_t *status_json(const struct tx_status *s)
{
	char ts[64];
	stix_format_us(s->req_us, ts);
	json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i}", "id", s->id, "status", s->pending ? "pending" : "complete",
			      "request_timestamp", ts, "total_count", s->total, "success_count", s->ok, "failure_count",
			      s->fail, "pending_count", s->pending);
	if (json_array_size(s->successes))
		json_object_set(o, "successes", s->successes);
	if (json_array_size(s->failures))
		json_object_set(o, "failures", s->failures);
	json_t *pend = json_array();
	for (size_t i = 0; s->items && i < s->n_items; i++)
		if (!s->items[i].done)
			json_array_append_new(pend, json_pack("{s:s, s:s}", "id", s->items[i].id, "version", s->items[i].version));
	if (json_array_size(pend))
		json_object_set(o, "pendings", pend);
	json_decref(pend);
	return o;
}

/* A complete status becomes its JSON text (about 90 bytes per object instead of the
 * jansson tree's 400); the oldest statuses go when they hold more than
 * taxii.max_status_bytes. Caller holds st_lock. */
static void status_seal(struct taxii *t, struct tx_status *s)
{
	if (s->pending || s->text)
		return;
	json_t *o = status_json(s);
	s->text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s->text)
		return;
	json_decref(s->successes);
	json_decref(s->failures);
	s->successes = s->failures = NULL;
	s->items = NULL;
	if (s->dropped)
		return;
	s->bytes = strlen(s->text);
	t->st_bytes += s->bytes;
	for (size_t k = 0, i = t->st_next; t->st && k < t->cfg.max_statuses && t->st_bytes > t->cfg.max_status_bytes; k++) {
		struct tx_status *old = t->st[i];
		if (old && old != s && !old->pending) {
			t->st_bytes -= old->bytes;
			status_free(old);
			t->st[i] = NULL;
		}
		i = (i + 1) % t->cfg.max_statuses;
	}
}

static void status_get(struct taxii *t, struct kz_http_req *r, const char *sid, size_t n)
{
	const char *ct = accepted(r, false);
	if (!ct) {
		err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	char *text = NULL;
	pthread_mutex_lock(&t->st_lock);
	for (size_t i = 0; t->st && i < t->cfg.max_statuses && !text; i++) {
		struct tx_status *s = t->st[i];
		/* a status names objects: only the one who posted them reads it */
		if (s && strlen(s->id) == n && memcmp(s->id, sid, n) == 0 && strcmp(s->owner, r->identity) == 0) {
			if (s->text)
				text = strdup(s->text);
			else {
				json_t *o = status_json(s);
				text = json_dumps(o, JSON_COMPACT);
				json_decref(o);
			}
		}
	}
	pthread_mutex_unlock(&t->st_lock);
	if (!text) {
		err(r, 404, "Not Found", "no such status (statuses are kept for the most recent requests)");
		return;
	}
	kz_http_send(r, 200, ct, text, strlen(text));
	free(text);
}

/* ---------- POST objects (§5.5) and DELETE object (§5.7) ---------- */


struct tx_post {
	struct taxii *t;
	struct tx_coll *c;
	struct tx_status *st;     /* NULL for a DELETE */
	struct kz_http_deferred *d;
	struct tx_item *items;
	size_t n;
	_Atomic size_t remaining;
	bool del;
	const char *ct;
	char *answer; /* the status text, copied when the last record is done */
};

static void post_answer(void *ctx, struct kz_http_req *r)
{
	struct tx_post *p = ctx;
	if (r) {
		if (p->del) {
			size_t bad = 0;
			for (size_t i = 0; i < p->n; i++)
				bad += p->items[i].status != 0;
			if (bad)
				err(r, 500, "Internal Server Error", "the record log refused the deletion");
			else
				kz_http_send(r, 200, p->ct, "{}", 2);
		} else if (p->answer)
			kz_http_send(r, 202, p->ct, p->answer, strlen(p->answer));
		else
			err(r, 500, "Internal Server Error", "cannot encode the status");
	}
	free(p->answer);
	free(p->items);
	free(p);
}

struct done_ctx {
	struct tx_post *p;
	size_t i;
};

static void post_item_done(void *ctx, int status, uint64_t seq)
{
	struct done_ctx *dc = ctx;
	struct tx_post *p = dc->p;
	struct tx_item *it = &p->items[dc->i];
	it->status = status;
	it->e.seq = seq;
	struct tx_coll *c = p->c;
	if (!status) {
		pthread_rwlock_wrlock(&c->lock);
		if (p->del) {
			mark_deleted(c, it->e.type_i, it->e.uuid, it->e.version_us);
		} else {
			it->e.pos = it->pos;
			if (ent_add(p->t, c, &it->e))
				status = -1;
		}
		pthread_rwlock_unlock(&c->lock);
	}
	if (p->st) {
		pthread_mutex_lock(&p->t->st_lock);
		p->st->pending--;
		json_t *ent = json_pack("{s:s, s:s}", "id", it->id, "version", it->version);
		if (status) {
			json_object_set_new(ent, "message", json_string("the record log refused the write"));
			json_array_append_new(p->st->failures, ent);
			p->st->fail++;
		} else {
			json_array_append_new(p->st->successes, ent);
			p->st->ok++;
		}
		it->done = true; /* no longer among the pendings */
		if (p->st->pending == 0) { /* the last one: the status is complete */
			status_seal(p->t, p->st);
			p->answer = p->st->text ? strdup(p->st->text) : NULL;
			if (p->st->dropped)
				status_free(p->st);
			/* p->st may leave the ring from now on: only the copy is used */
		}
		pthread_mutex_unlock(&p->t->st_lock);
	}
	free(dc);
	if (atomic_fetch_sub(&p->remaining, 1) == 1)
		kz_http_resume(p->d, post_answer, p);
}

/* What a POST's markings resolve against: the marking definitions in the request (their
 * ids, gathered once) and the collection. */
/* The label of what this request posts: TLP from the object, audience from the request
 * (Kizuna-Audience: org:NAME, id:SPIFFE-ID, ...) or the poster's organisation / identity. */
static int label_for(struct kz_http_req *r, const struct tx_subject *sub, const char *base, int tlp, char *out,
		     size_t n, const char **why)
{
	/* the policy's part first (canonical order: policy, class, categories, tlp, aud) */
	size_t bl = (size_t)snprintf(out, n, "%s", base);
	if (bl >= n)
		bl = n - 1;
	out += bl;
	n -= bl;
	const char *sep = bl ? ";" : "";
	if (tlp <= 2) {
		if (tlp)
			snprintf(out, n, "%stlp=%s", sep, tlp_word(tlp));
		else
			out[0] = 0;
		return 0;
	}
	const char *aud = kz_http_req_header(r, "kizuna-audience");
	char a[900] = "";
	if (aud) {
		size_t cnt = 0;
		if (taxii_audience_canon(aud, a, sizeof a, &cnt, why))
			return -1;
		if (tlp == 4 && (cnt != 1 || strncmp(a, "org:", 4) != 0)) {
			*why = "TLP:AMBER+STRICT stays within one organisation: Kizuna-Audience must name exactly one org:NAME";
			return -1;
		}
	}
	if (!a[0]) {
		if (tlp == 5)
			snprintf(a, sizeof a, "id:%s", sub->id);
		else
			snprintf(a, sizeof a, "org:%s", sub->org);
	}
	snprintf(out, n, "%stlp=%s;aud=%s", sep, tlp_word(tlp), a);
	return 0;
}

static struct tx_status *status_new(struct taxii *t, const char *owner, size_t total)
{
	struct tx_status *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	uint8_t u[16];
	kz_uuidv7(u, kz_now_wall_ns() / 1000000);
	kz_uuid_format(u, s->id);
	s->owner = strdup(owner);
	s->req_us = (int64_t)(kz_now_wall_ns() / 1000);
	s->total = (uint32_t)total;
	s->successes = json_array();
	s->failures = json_array();
	return s;
}

/* Puts s in the ring (made on the first status: an idle node holds none). When it cannot,
 * s is marked dropped: its POST frees it. */
static void status_keep(struct taxii *t, struct tx_status *s)
{
	pthread_mutex_lock(&t->st_lock);
	if (!t->st && !(t->st = calloc(t->cfg.max_statuses, sizeof *t->st))) {
		s->dropped = true;
		pthread_mutex_unlock(&t->st_lock);
		return;
	}
	struct tx_status *old = t->st[t->st_next];
	if (old && old->pending)
		old->dropped = true; /* its POST still writes to it */
	else if (old) {
		t->st_bytes -= old->bytes;
		status_free(old);
	}
	t->st[t->st_next] = s;
	t->st_next = (t->st_next + 1) % t->cfg.max_statuses;
	pthread_mutex_unlock(&t->st_lock);
}

/* The store item of object version e (or its tombstone) for post p's item i: the record's
 * topic names the collection, type, id and version, so the index is rebuilt without
 * parsing objects. A record that cannot be encoded goes as an empty one, which the log
 * refuses: its batch then fails as a whole and the client is told. */
static struct kz_store_item record_item(struct taxii *t, struct tx_post *p, size_t i, const struct tx_ent *e,
					const char *identity, const uint8_t *payload, uint32_t plen,
					struct kz_reclog_pos *pos, struct kz_buf *rec)
{
	/* $taxii[-del]/<collection>/<type>/<uuid>/<version µs>, built by hand: snprintf was a
	 * few per cent of an import */
	char topic[400], *q = topic;
	const char *pre = p->del ? "$taxii-del/" : "$taxii/", *ty = t->types[e->type_i];
	size_t tl = strlen(ty);
	memcpy(q, pre, strlen(pre));
	q += strlen(pre);
	memcpy(q, p->c->id, 36);
	q += 36;
	*q++ = '/';
	memcpy(q, ty, tl); /* at most STIX_TYPE_MAX */
	q += tl;
	*q++ = '/';
	kz_uuid_format(e->uuid, q);
	q += 36;
	*q++ = '/';
	char dg[24];
	int nd = 0;
	uint64_t v = e->version_us < 0 ? (uint64_t)0 - (uint64_t)e->version_us : (uint64_t)e->version_us;
	do
		dg[nd++] = (char)('0' + v % 10);
	while ((v /= 10));
	if (e->version_us < 0)
		*q++ = '-';
	while (nd)
		*q++ = dg[--nd];
	*q = 0;
	const char *label = p->del ? "" : t->acc[e->acc_i]->label;
	struct kz_record kr = { .time_ns = p->del ? kz_now_wall_ns() : (uint64_t)e->added_us * 1000, .qos = 1,
				.service = true };
	kz_uuidv7(kr.id, kr.time_ns / 1000000);
	kr.topic = (struct kz_bytes){ (const uint8_t *)topic, (uint32_t)strlen(topic) };
	kr.origin_node = (struct kz_bytes){ (const uint8_t *)t->cfg.node_id, (uint32_t)strlen(t->cfg.node_id) };
	kr.origin_id = (struct kz_bytes){ (const uint8_t *)identity, (uint32_t)strlen(identity) };
	kr.label = (struct kz_bytes){ (const uint8_t *)label, (uint32_t)strlen(label) };
	struct kz_buf props;
	kz_buf_init(&props, 0);
	if (!p->del) {
		kr.content_type = (struct kz_bytes){ (const uint8_t *)STIX_MT, (uint32_t)strlen(STIX_MT) };
		refs_props(t, e, &props);
		kr.mqtt_props = (struct kz_bytes){ kz_buf_head(&props), (uint32_t)props.len };
	}
	kr.payload = (struct kz_bytes){ payload, plen };
	kz_buf_reset(rec);
	struct done_ctx *dc = malloc(sizeof *dc);
	if (!dc)
		abort(); /* 16 bytes: the process is out of memory */
	dc->p = p;
	dc->i = i;
	uint8_t *data = NULL;
	if (!kz_record_encode(&kr, rec) && (data = malloc(rec->len)))
		memcpy(data, kz_buf_head(rec), rec->len);
	kz_buf_cleanup(&props);
	return (struct kz_store_item){ data, data ? (uint32_t)rec->len : 0, post_item_done, dc, pos };
}

/* ---------- the tree of a POSTed envelope ----------
 *
 * Each worker parses envelopes with its own kz_json document (flat, read-only, with every
 * object's span in the body: objects that validation leaves as they are get stored as
 * those bytes). Its buffers are kept for the next envelope up to TX_DOC_KEEP bytes each. */
#define TX_DOC_KEEP (8u << 20)
static pthread_key_t doc_key;
static pthread_once_t doc_once = PTHREAD_ONCE_INIT;
static void doc_release(void *d)
{
	kz_json_free(d);
	free(d);
}
static void doc_key_init(void) { pthread_key_create(&doc_key, doc_release); }

static struct kz_json_doc *worker_doc(void)
{
	pthread_once(&doc_once, doc_key_init);
	struct kz_json_doc *d = pthread_getspecific(doc_key);
	if (!d && (d = calloc(1, sizeof *d)) && pthread_setspecific(doc_key, d)) {
		free(d);
		d = NULL;
	}
	return d;
}

/* A sorted list of the marking-definition ids an envelope brings (objects may refer to
 * them before they are stored). */
struct mk_ctx {
	const char **ids;
	size_t n;
	struct tx_coll *c;
	struct taxii *t;
};


static bool marking_known(void *ctx, const char *id)
{
	struct mk_ctx *m = ctx;
	if (m->n && bsearch(&id, m->ids, m->n, sizeof *m->ids, cmp_str))
		return true;
	uint8_t u[16];
	if (strlen(id) < 20 || kz_uuid_parse(id + 20, u))
		return false;
	uint32_t ti = type_index(m->t, "marking-definition", false);
	if (ti == TX_NONE)
		return false;
	pthread_rwlock_rdlock(&m->c->lock);
	bool found = slot_of(m->c, ti, u, false) != NULL;
	pthread_rwlock_unlock(&m->c->lock);
	return found;
}

static void post_objects(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub)
{
	const char *ct = accepted(r, false);
	if (!ct) {
		err(r, 406, "Not Acceptable", "this resource answers " TAXII_MT);
		return;
	}
	if (!content_type_ok(r)) {
		err(r, 415, "Unsupported Media Type", "post an envelope as " TAXII_MT);
		return;
	}
	struct kz_json_doc *doc = worker_doc();
	if (!doc) {
		err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (kz_json_parse(doc, r->body, r->body_len)) {
		kz_http_error(r, 400, TAXII_MT, "Bad Request", "the body is not JSON: line %u column %u: %s", doc->err_line,
			      doc->err_col, doc->err);
		kz_json_trim(doc, TX_DOC_KEEP);
		return;
	}
	const struct kz_json *env = kz_json_root(doc), *objs = kz_json_get(env, "objects");
	if (!kz_json_is(objs, KZ_JSON_ARRAY)) {
		err(r, 422, "Unprocessable Entity", "expected an envelope (or bundle) with an \"objects\" list");
		kz_json_trim(doc, TX_DOC_KEEP);
		return;
	}
	size_t n = objs->len;
	if (n > t->cfg.max_post_objects) {
		kz_http_error(r, 413, TAXII_MT, "Payload Too Large", "%zu objects in one envelope (limit %u)", n,
			      t->cfg.max_post_objects);
		kz_json_trim(doc, TX_DOC_KEEP);
		return;
	}
	struct tx_status *st = status_new(t, r->identity, n);
	struct tx_post *p = calloc(1, sizeof *p);
	struct tx_item *items = calloc(n ? n : 1, sizeof *items);
	struct kz_store_item *si = calloc(n ? n : 1, sizeof *si);
	struct mk_ctx mk = { NULL, 0, c, t };
	KZ_JSON_FOR(mo, objs) {
		const char *mt = kz_json_get_str(mo, "type"), *mid = kz_json_get_str(mo, "id");
		if (mt && mid && strcmp(mt, "marking-definition") == 0)
			mk.n++;
	}
	if (mk.n && (mk.ids = malloc(mk.n * sizeof *mk.ids))) {
		mk.n = 0;
		KZ_JSON_FOR(mo, objs) {
			const char *mt = kz_json_get_str(mo, "type"), *mid = kz_json_get_str(mo, "id");
			if (mt && mid && strcmp(mt, "marking-definition") == 0)
				mk.ids[mk.n++] = mid;
		}
		qsort(mk.ids, mk.n, sizeof *mk.ids, cmp_str);
	}
	if (!st || !p || !items || !si || (mk.n && !mk.ids)) {
		free(mk.ids);
		kz_json_trim(doc, TX_DOC_KEEP);
		status_free(st);
		free(p);
		free(items);
		free(si);
		err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	p->t = t;
	p->c = c;
	p->st = st;
	p->items = items;
	p->ct = ct;
	struct stix_opts opts = { .allow_custom = c->allow_custom, .marking_known = marking_known, .ctx = &mk,
				  .now_us = (int64_t)(kz_now_wall_ns() / 1000) };
	/* with a policy, the collection's label (the publish rule's, else the default) is the
	 * base of every object's; its tlp and aud come from the object and the request */
	char base[KZ_LABEL_MAX_LEN + 1] = "";
	if (sub->pol) {
		char topic[80];
		const char *dt = NULL, *w;
		const struct kz_label *dl;
		snprintf(topic, sizeof topic, "$taxii/%s/objects", c->id);
		if (kz_policy_publish(sub->pol, &sub->s, topic, strlen(topic), &dl, &dt, &w) && dt) {
			char buf[KZ_LABEL_MAX_LEN + 1];
			snprintf(buf, sizeof buf, "%s", dt);
			size_t bl = 0;
			char *sv = NULL;
			for (char *part = strtok_r(buf, ";", &sv); part; part = strtok_r(NULL, ";", &sv))
				if (strncmp(part, "tlp=", 4) != 0 && strncmp(part, "aud=", 4) != 0 && bl < sizeof base)
					bl += (size_t)snprintf(base + bl, sizeof base - bl, "%s%s", bl ? ";" : "", part);
		}
	}
	size_t ns = 0;
	struct kz_buf rec;
	kz_buf_init(&rec, 0);
	uint32_t last_ai = TX_NONE;
	char last_label[2200] = "";
	KZ_JSON_FOR(o, objs) {
		struct stix_info info;
		char e[300], ver[64] = "", label[2200];
		const char *why = NULL;
		const char *oid = kz_json_get_str(o, "id");
		const char *mv = kz_json_get_str(o, "modified");
		if (!mv)
			mv = kz_json_get_str(o, "created");
		snprintf(ver, sizeof ver, "%s", mv ? mv : "");
		int vrc = stix_validate(o, &opts, &info, e, sizeof e);
		if (!vrc && label_for(r, sub, base, info.tlp, label, sizeof label, &why)) {
			snprintf(e, sizeof e, "%s", why);
			vrc = -1;
		}
		uint32_t ti = vrc ? TX_NONE : type_index(t, info.type, true);
		uint32_t ai = TX_NONE;
		if (!vrc && last_ai != TX_NONE && strcmp(label, last_label) == 0)
			ai = last_ai; /* a batch's objects mostly share one label */
		else if (!vrc && (ai = access_index(t, r->identity, label)) != TX_NONE) {
			last_ai = ai;
			snprintf(last_label, sizeof last_label, "%s", label);
		}
		if (!vrc && (ti == TX_NONE || ai == TX_NONE)) {
			snprintf(e, sizeof e, "too many distinct types or audiences in this collection");
			vrc = -1;
		}
		uint32_t by_i = TX_NONE, mk_i = TX_NONE;
		if (!vrc) {
			const char *marks[STIX_MAX_MARKINGS];
			size_t nm = stix_markings(o, marks);
			if (refs_intern(t, info.created_by_ref, marks, nm, &by_i, &mk_i)) {
				snprintf(e, sizeof e, "too many distinct created_by_ref and marking identifiers on this node");
				vrc = -1;
			}
		}
		/* the object as sent (a slice of the body, no copy) unless its markings change */
		char *js = NULL;
		const char *pl = NULL;
		size_t pll = 0;
		if (!vrc && !info.tlp_rewritten) {
			pl = r->body + o->off;
			pll = o->end - o->off;
		} else if (!vrc && (js = stix_rewrite(r->body, o, &pll)))
			pl = js;
		if (!vrc && !pl) {
			snprintf(e, sizeof e, "cannot encode the object");
			vrc = -1;
		}
		if (vrc) {
			json_t *f = json_pack("{s:s, s:s}", "id", oid ? oid : "", "message", e);
			if (ver[0])
				json_object_set_new(f, "version", json_string(ver));
			json_array_append_new(st->failures, f);
			st->fail++;
			continue;
		}
		if (info.modified_us != INT64_MIN) { /* the same version again: already stored */
			bool dup = false;
			pthread_rwlock_rdlock(&c->lock);
			struct tx_slot *sl = slot_of(c, ti, info.uuid, false);
			for (uint32_t j = sl ? sl->first : TX_NONE; j != TX_NONE && !dup; j = c->e[j].next_ver)
				dup = !c->e[j].deleted && c->e[j].version_us == info.modified_us;
			pthread_rwlock_unlock(&c->lock);
			if (dup) {
				free(js);
				json_array_append_new(st->successes, json_pack("{s:s, s:s, s:s}", "id", info.id, "version", ver,
									       "message", "this version is already in the collection"));
				st->ok++;
				continue;
			}
		}
		struct tx_item *it = &items[ns];
		snprintf(it->id, sizeof it->id, "%s", info.id);
		memcpy(it->e.uuid, info.uuid, 16);
		it->e.type_i = ti;
		it->e.acc_i = ai;
		it->e.by_i = by_i;
		it->e.mk_i = mk_i;
		it->e.tlp = info.tlp;
		it->e.version_us = info.modified_us; /* SCOs: set to date_added below */
		snprintf(it->version, sizeof it->version, "%s", ver);
		it->owned = js;
		it->payload = pl;
		it->plen = (uint32_t)pll;
		ns++;
	}
	free(mk.ids);
	kz_json_trim(doc, TX_DOC_KEEP);
	if (ns == 0) {
		status_keep(t, st);
		pthread_mutex_lock(&t->st_lock);
		json_t *o = status_json(st);
		status_seal(t, st);
		bool dropped = st->dropped; /* not in the ring: ours to free */
		pthread_mutex_unlock(&t->st_lock);
		if (dropped)
			status_free(st);
		free(items);
		free(si);
		free(p);
		kz_buf_cleanup(&rec);
		r->audit_reason = "every object was refused";
		send_json(r, 202, ct, o);
		return;
	}
	/* records: date_added assigned and submitted under the collection's write lock, so that
	 * the log's order is the collection's date_added order */
	p->n = ns;
	atomic_store(&p->remaining, ns);
	p->d = kz_http_defer(r);
	pthread_mutex_lock(&c->wlock);
	int64_t now = (int64_t)(kz_now_wall_ns() / 1000);
	int64_t added = now > c->last_added ? now : c->last_added + 1;
	for (size_t i = 0; i < ns; i++) {
		struct tx_item *it = &items[i];
		it->e.added_us = added + (int64_t)i;
		if (it->e.version_us == INT64_MIN)
			it->e.version_us = it->e.added_us;
		si[i] = record_item(t, p, i, &it->e, r->identity, (const uint8_t *)it->payload, it->plen, &it->pos, &rec);
		free(it->owned);
		it->owned = NULL;
		st->pending++;
	}
	st->items = items;
	st->n_items = ns;
	c->last_added = added + (int64_t)ns - 1;
	status_keep(t, st);
	kz_store_submit(t->cfg.store, si, ns);
	pthread_mutex_unlock(&c->wlock);
	free(si);
	kz_buf_cleanup(&rec);
}

static void delete_object(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub,
			  const char *obj_id)
{
	const char *ct = accepted(r, false);
	if (!ct) {
		err(r, 406, "Not Acceptable", "this resource answers " TAXII_MT);
		return;
	}
	struct tx_query q;
	if (parse_query(t, r, &q, true))
		return;
	const char *dd = strstr(obj_id, "--");
	char type[STIX_TYPE_MAX + 1];
	if (!dd || (size_t)(dd - obj_id) > STIX_TYPE_MAX || kz_uuid_parse(dd + 2, q.ids[0].uuid)) {
		err(r, 404, "Not Found", "not an object identifier");
		return;
	}
	snprintf(type, sizeof type, "%.*s", (int)(dd - obj_id), obj_id);
	q.ids[0].type_i = type_index(t, type, false);
	q.n_ids = 1;
	q.limit = 100000;
	q.has_next = false;
	struct page pg;
	select_page(t, c, sub, &q, &pg);
	if (!pg.e) {
		err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (!pg.n) {
		free(pg.e);
		err(r, 404, "Not Found", "no such object in this collection");
		return;
	}
	struct tx_post *p = calloc(1, sizeof *p);
	struct tx_item *items = calloc(pg.n, sizeof *items);
	struct kz_store_item *si = calloc(pg.n, sizeof *si);
	if (!p || !items || !si) {
		free(p);
		free(items);
		free(si);
		free(pg.e);
		err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	p->t = t;
	p->c = c;
	p->items = items;
	p->n = pg.n;
	p->del = true;
	p->ct = ct;
	atomic_store(&p->remaining, pg.n);
	p->d = kz_http_defer(r);
	struct kz_buf rec;
	kz_buf_init(&rec, 0);
	for (size_t i = 0; i < pg.n; i++) {
		items[i].e = pg.e[i];
		si[i] = record_item(t, p, i, &pg.e[i], r->identity, (const uint8_t *)"{}", 2, NULL, &rec);
	}
	kz_store_submit(t->cfg.store, si, pg.n);
	free(si);
	free(pg.e);
	kz_buf_cleanup(&rec);
}

/* ---------- routing ---------- */

/* Splits path (after /taxii2/) into segments; returns the count. */
static int segments(const char *p, char seg[6][256])
{
	int n = 0;
	while (*p) {
		const char *s = strchr(p, '/');
		size_t l = s ? (size_t)(s - p) : strlen(p);
		if (l) {
			if (n == 6 || l >= 256)
				return -1;
			memcpy(seg[n], p, l);
			seg[n++][l] = 0;
		}
		p += l + (s ? 1 : 0);
	}
	return n;
}

/* The resources under one collection (§5). */
static void in_collection(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub,
			  char seg[6][256], int n, bool get, bool post, bool del)
{
	bool rd = c && can_read(c, sub), wr = c && can_write(c, sub);
	if (!rd && !wr) {
		err(r, 404, "Not Found", "no such collection");
		return;
	}
	if (strcmp(seg[3], "objects") == 0 && n == 4) {
		if (post) {
			wr ? post_objects(t, r, c, sub)
				  : err(r, 403, "Forbidden", "this identity may not write to the collection");
			return;
		}
		if (!get) {
			err(r, 405, "Method Not Allowed", "use GET or POST");
			return;
		}
		rd ? list(t, r, c, sub, L_OBJECTS, NULL)
			  : err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	if (strcmp(seg[3], "manifest") == 0 && n == 4) {
		if (!get) {
			err(r, 405, "Method Not Allowed", "use GET");
			return;
		}
		rd ? list(t, r, c, sub, L_MANIFEST, NULL)
			  : err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	if (strcmp(seg[3], "objects") == 0 && n == 5) {
		if (del) {
			rd && wr ? delete_object(t, r, c, sub, seg[4])
					: err(r, 403, "Forbidden", "deleting needs read and write access to the collection");
			return;
		}
		if (!get) {
			err(r, 405, "Method Not Allowed", "use GET or DELETE");
			return;
		}
		rd ? list(t, r, c, sub, L_OBJECTS, seg[4])
			  : err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	if (strcmp(seg[3], "objects") == 0 && n == 6 && strcmp(seg[5], "versions") == 0) {
		if (!get) {
			err(r, 405, "Method Not Allowed", "use GET");
			return;
		}
		rd ? list(t, r, c, sub, L_VERSIONS, seg[4])
			  : err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	err(r, 404, "Not Found", "no such TAXII resource");
}

static void handle(void *ctx, struct kz_http_req *r)
{
	struct taxii *t = ctx;
	const char *path = r->path + strlen("/taxii2");
	char seg[6][256];
	int n = segments(path, seg);
	bool get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
	bool post = strcmp(r->method, "POST") == 0, del = strcmp(r->method, "DELETE") == 0;
	if (n < 0) {
		err(r, 404, "Not Found", "no such TAXII resource");
		return;
	}
	/* TAXII URLs end in '/'; a missing one is forgiven */
	if (n == 0) {
		if (!get) {
			err(r, 405, "Method Not Allowed", "use GET");
			return;
		}
		discovery(t, r);
		return;
	}
	if (strcmp(seg[0], "api") != 0) {
		err(r, 404, "Not Found", "no such API root: this server's is /taxii2/api/");
		return;
	}
	if (n == 1) {
		get ? api_root(t, r) : err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	if (strcmp(seg[1], "status") == 0 && n == 3) {
		get ? status_get(t, r, seg[2], strlen(seg[2])) : err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	if (strcmp(seg[1], "collections") != 0) {
		err(r, 404, "Not Found", "no such TAXII resource");
		return;
	}
	if (n == 2) {
		get ? collections(t, r, NULL, 0) : err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	if (n == 3) {
		get ? collections(t, r, seg[2], strlen(seg[2])) : err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	struct tx_coll *c = coll_of(t, seg[2], strlen(seg[2]));
	struct tx_subject sub;
	subject_init(t, r, &sub);
	/* the policy's verdicts on labels, once per access entry for this request */
	struct lab_cache lc = { atomic_load(&t->nacc), NULL };
	lc.state = calloc(lc.n ? lc.n : 1, 1);
	if (!lc.state)
		lc.n = 0;
	sub.lc = &lc;
	in_collection(t, r, c, &sub, seg, n, get, post, del);
	free(lc.state);
}

int taxii_routes(struct taxii *t, struct kz_http *h) { return kz_http_route(h, "/taxii2", true, handle, t); }
