/* taxii_index.c — the in-memory index of STIX object versions: interned strings, slots, property lists, access. */
#include "services/taxii/taxii_internal.h"
#include "base/kz_array.h"

/* ---------- the index ---------- */










static uint64_t obj_hash(uint32_t type_i, const uint8_t uuid[16])
{
	uint64_t h = 1469598103934665603ULL ^ type_i;
	for (int i = 0; i < 16; i++)
		h = (h ^ uuid[i]) * 1099511628211ULL;
	return h ? h : 1;
}

/* The slot of an object; with insert, an empty slot is claimed (first = TX_NONE). */
struct tx_slot *tx_slot_of(struct tx_coll *c, uint32_t type_i, const uint8_t uuid[16], bool insert)
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
uint32_t tx_intern(struct tx_intern *in, const void *p, size_t n, bool add)
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

void tx_intern_free(struct tx_intern *in)
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
const uint32_t *tx_mset_of(struct taxii *t, const struct tx_ent *e, uint32_t *n)
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
		size_t nc;
		uint32_t *nv = kz_array_grow(l->v, sizeof *nv, l->cap, (size_t)l->cap + 1, 8, UINT32_MAX, &nc);
		if (!nv)
			return -1;
		l->v = nv;
		l->cap = (uint32_t)nc;
	}
	return 0;
}

void tx_plists_free(struct tx_plist *l, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(l[i].v);
	free(l);
}


int tx_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Interns a marking set (identifier indexes; sorted and deduplicated here). */
static uint32_t mset_intern(struct taxii *t, uint32_t *ix, size_t k)
{
	if (!k)
		return TX_NONE;
	qsort(ix, k, sizeof *ix, tx_cmp_u32);
	size_t u = 0;
	for (size_t i = 0; i < k; i++)
		if (!u || ix[u - 1] != ix[i])
			ix[u++] = ix[i];
	return tx_intern(&t->msets, ix, u * sizeof *ix, true);
}

/* Interns an object's created_by_ref (NULL or "": none) and markings (at most
 * STIX_MAX_MARKINGS). -1 when an intern table is full. */
int tx_refs_intern(struct taxii *t, const char *by, const char *const *marks, size_t nm, uint32_t *by_i,
		       uint32_t *mk_i)
{
	*by_i = *mk_i = TX_NONE;
	if (by && by[0] && (*by_i = tx_intern(&t->refs, by, strlen(by), true)) == TX_NONE)
		return -1;
	uint32_t ix[STIX_MAX_MARKINGS];
	size_t k = 0;
	for (size_t i = 0; i < nm && k < STIX_MAX_MARKINGS; i++)
		if ((ix[k++] = tx_intern(&t->refs, marks[i], strlen(marks[i]), true)) == TX_NONE)
			return -1;
	return k && (*mk_i = mset_intern(t, ix, k)) == TX_NONE ? -1 : 0;
}

/* The record of an object version carries its created_by_ref and markings as user
 * attributes (stix-created-by-ref, stix-marking-ref), so the index is rebuilt from the
 * record's envelope without parsing the object. */

void tx_refs_attrs(struct taxii *t, const struct tx_ent *e, struct kz_buf *b)
{
	if (e->by_i != TX_NONE) {
		const struct tx_istr *x = istr(&t->refs, e->by_i);
		kz_rec_attr_append(b, KZ_RATTR_USER, PROP_BY, strlen(PROP_BY), x->p, x->len);
	}
	uint32_t nm;
	const uint32_t *ms = tx_mset_of(t, e, &nm);
	for (uint32_t i = 0; i < nm; i++) {
		const struct tx_istr *x = istr(&t->refs, ms[i]);
		kz_rec_attr_append(b, KZ_RATTR_USER, PROP_MK, strlen(PROP_MK), x->p, x->len);
	}
}

/* The reverse of tx_refs_attrs on a record (other attributes are skipped). */
int tx_refs_from_record(struct taxii *t, const struct kz_record *r, uint32_t *by_i, uint32_t *mk_i)
{
	uint32_t ix[STIX_MAX_MARKINGS];
	size_t k = 0, off = 0;
	struct kz_rec_attr a;
	*by_i = *mk_i = TX_NONE;
	while (kz_rec_attr_next(r, &off, &a)) {
		if (a.kind != KZ_RATTR_USER)
			continue;
		bool is_by = a.name.len == strlen(PROP_BY) && memcmp(a.name.p, PROP_BY, a.name.len) == 0;
		bool is_mk = a.name.len == strlen(PROP_MK) && memcmp(a.name.p, PROP_MK, a.name.len) == 0;
		if (!is_by && !(is_mk && k < STIX_MAX_MARKINGS))
			continue;
		uint32_t x = tx_intern(&t->refs, a.value.p, a.value.len, true);
		if (x == TX_NONE)
			return -1;
		if (is_by)
			*by_i = x;
		else
			ix[k++] = x;
	}
	return k && (*mk_i = mset_intern(t, ix, k)) == TX_NONE ? -1 : 0;
}

/* Appends an entry (caller holds the write lock). */
int tx_ent_add(struct taxii *t, struct tx_coll *c, const struct tx_ent *e)
{
	if (c->n == c->cap) {
		size_t nc;
		struct tx_ent *ne = kz_array_grow(c->e, sizeof *ne, c->cap, (size_t)c->cap + 1, 4096, SIZE_MAX, &nc);
		if (!ne)
			return -1;
		c->e = ne;
		c->cap = nc;
	}
	uint32_t nm;
	const uint32_t *ms = tx_mset_of(t, e, &nm);
	if (e->by_i != TX_NONE && plist_reserve(&c->by_post, &c->nby, e->by_i))
		return -1;
	for (uint32_t k = 0; k < nm; k++)
		if (plist_reserve(&c->mk_post, &c->nmk, ms[k]))
			return -1;
	struct tx_slot *s = tx_slot_of(c, e->type_i, e->uuid, true);
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
	c->e[idx].multi = s->first != TX_NONE;
	if (s->first == TX_NONE) {
		s->first = idx;
	} else {
		c->e[s->last].next_ver = idx;
		c->e[s->first].multi = 1;
	}
	s->last = idx;
	if (e->added_us > c->last_added)
		c->last_added = e->added_us;
	return 0;
}

uint32_t tx_type_index(struct taxii *t, const char *type, bool add)
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

int tx_cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Interns the access of (author, label). The label is "tlp=X;aud=org:a,id:b" or "". */
uint32_t tx_access_index(struct taxii *t, const char *author, const char *label)
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
		char base[2048];
		if (a && kz_share_split(label, &a->share, base, sizeof base)) {
			free(a);
			a = NULL;
		}
		if (a) {
			a->author = strdup(author ? author : "");
			a->key = strdup(key);
			a->label = strdup(label);
			a->base = strdup(base);
			t->acc[n] = a;
			r = n;
			atomic_store(&t->nacc, n + 1);
		}
	}
	pthread_mutex_unlock(&t->intern);
	return r;
}



/* The reader must dominate the policy's part of the object's label (a label the policy
 * cannot parse any more hides the object; stored before a policy existed: the policy's
 * default label, docs/POLICY.md) and be among those its TLP and audience share it with:
 * trust decides (kz_may_read), once per request and access entry. */
bool tx_visible(struct taxii *t, const struct tx_subject *sub, const struct tx_ent *e)
{
	const struct tx_access *a = t->acc[e->acc_i];
	struct lab_cache *lc = sub->lc;
	uint32_t acc_i = e->acc_i;
	if (lc && acc_i < lc->n && lc->state[acc_i])
		return lc->state[acc_i] == 1;
	struct kz_record_facts f = { .share = &a->share, .author = a->author };
	struct kz_label lab;
	if (sub->pol) {
		char canon[KZ_LABEL_MAX_LEN + 1], why[160];
		size_t cl;
		if (!a->base[0])
			f.label = &sub->pol->default_label;
		else if (kz_label_parse(sub->pol, a->base, strlen(a->base), &lab, canon, &cl, why, sizeof why) == 0)
			f.label = &lab;
	}
	const char *w;
	bool ok = kz_may_read(sub->pol, &sub->s, KZ_PATH_SERVICE, &f, &w);
	if (lc && acc_i < lc->n)
		lc->state[acc_i] = ok ? 1 : 2;
	return ok;
}
