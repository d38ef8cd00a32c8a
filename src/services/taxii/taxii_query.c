/* taxii_query.c — request helpers (content negotiation, errors, replies) and TAXII query strings (§3.5). */
#include "services/taxii/taxii_internal.h"

/* ---------- request helpers ---------- */

void tx_err(struct kz_http_req *r, int status, const char *title, const char *desc)
{
	kz_http_error(r, status, TAXII_MT, title, "%s", desc);
}

/* Accept (§1.6.8.1): the TAXII 2.1 media type, with or without the version; any type; and for
 * objects the STIX one. Returns the content type to answer with, NULL for 406. */
const char *tx_accepted(struct kz_http_req *r, bool stix_too)
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

bool tx_content_type_ok(struct kz_http_req *r)
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

void tx_send_json(struct kz_http_req *r, int status, const char *ct, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s) {
		tx_err(r, 500, "Internal Server Error", "cannot encode the answer");
		return;
	}
	kz_http_send(r, status, ct, s, strlen(s));
	free(s);
}

/* ---------- query strings (§3.5) ---------- */


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
			q->ids[q->n_ids++].type_i = tx_type_index(q->t, type, false);
		}
	} else if (strcmp(k, "match[type]") == 0) {
		if (q->seen_type++)
			return q_bad(q, "%s given twice (use a comma list)", k);
		snprintf(buf, sizeof buf, "%s", v);
		for (char *s = strtok_r(buf, ",", &sv); s; s = strtok_r(NULL, ",", &sv)) {
			if (q->n_types == 64)
				return q_bad(q, "match[type]: more than %s types", "64");
			q->types[q->n_types++] = tx_type_index(q->t, s, false);
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
			dst[(*cnt)++] = tx_intern(&q->t->refs, x, strlen(x), false);
		}
		if (!*cnt)
			return q_bad(q, "%s: empty", k);
	} else if (strcmp(k, "match[audience]") == 0) {
		/* kizuna's own (docs/TAXII.md): objects whose audience names one of these entries */
		if (q->seen_aud++)
			return q_bad(q, "%s given twice (use a comma list)", k);
		size_t cnt = 0;
		const char *w = "empty";
		int rc = kz_audience_canon(v, q->aud, sizeof q->aud, &cnt, &w);
		if (rc || !cnt) {
			snprintf(q->bad_buf, sizeof q->bad_buf, "%s: %s", k, rc ? w : "empty");
			q->bad = q->bad_buf;
			return 1;
		}
	} else if (strncmp(k, "match[", 6) == 0) {
		return q_bad(q, "%s: this server does not filter on that field", k);
	}
	/* other parameters are ignored, as HTTP allows */
	return 0;
}

int tx_parse_query(struct taxii *t, struct kz_http_req *r, struct tx_query *q, bool default_all)
{
	memset(q, 0, sizeof *q);
	q->t = t;
	q->limit = t->cfg.default_page;
	const char *why = NULL;
	int rc = kz_http_query_each(r->query, strlen(r->query), q_param, q, &why);
	if (rc < 0) {
		tx_err(r, 400, "Bad Request", why);
		return -1;
	}
	if (q->bad) {
		tx_err(r, 400, "Bad Request", q->bad);
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
/* Does the audience sh name one of the canonical entries of list ("org:a,id:spiffe://...")? */
static bool audience_names(const struct kz_share *sh, const char *list)
{
	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		bool org = n > 4 && memcmp(p, "org:", 4) == 0;
		const char *v = p + (org ? 4 : 3);
		size_t vn = n - (org ? 4 : 3);
		for (uint8_t k = 0; k < (org ? sh->n_orgs : sh->n_ids); k++) {
			const char *x = org ? sh->orgs[k] : sh->ids[k];
			if (strlen(x) == vn && memcmp(x, v, vn) == 0)
				return true;
		}
		p = end ? end + 1 : p + n;
	}
	return false;
}

static bool passes(struct taxii *t, struct tx_coll *c, const struct tx_subject *sub, const struct tx_query *q, uint32_t i)
{
	const struct tx_ent *e = &c->e[i];
	if (e->deleted || !tx_visible(t, sub, e))
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
		const uint32_t *ms = tx_mset_of(t, e, &nm);
		bool any = false;
		for (size_t k = 0; k < q->n_mk && !any; k++)
			for (uint32_t j = 0; j < nm && !any; j++)
				any = ms[j] == q->mk[k];
		if (!any)
			return false;
	}
	if (q->aud[0] && !audience_names(&t->acc[e->acc_i]->share, q->aud))
		return false;
	if (q->v_all)
		return true;
	for (size_t k = 0; k < q->n_vts; k++)
		if (q->vts[k] == e->version_us)
			return true;
	if ((q->v_first || q->v_last) && !e->multi)
		return true; /* its only version (visible: checked above) is both */
	if (q->v_first || q->v_last) {
		/* first/last among the versions this reader can see */
		struct tx_slot *s = tx_slot_of(c, e->type_i, e->uuid, false);
		uint32_t lo = TX_NONE, hi = TX_NONE;
		for (uint32_t j = s ? s->first : TX_NONE; j != TX_NONE; j = c->e[j].next_ver) {
			const struct tx_ent *x = &c->e[j];
			if (x->deleted || !tx_visible(t, sub, x))
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
			struct tx_slot *s = q->ids[k].type_i == TX_NONE ? NULL : tx_slot_of(c, q->ids[k].type_i, q->ids[k].uuid, false);
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
			qsort(cs->arr, cs->n, sizeof *cs->arr, tx_cmp_u32);
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

void tx_select_page(struct taxii *t, struct tx_coll *c, const struct tx_subject *sub, const struct tx_query *q,
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

void tx_page_headers(struct kz_http_req *r, const struct page *pg)
{
	if (!pg->n)
		return;
	char ts[64];
	stix_format_us(pg->e[0].added_us, ts);
	kz_http_header(r, "X-TAXII-Date-Added-First", ts);
	stix_format_us(pg->e[pg->n - 1].added_us, ts);
	kz_http_header(r, "X-TAXII-Date-Added-Last", ts);
}

void tx_envelope_head(struct kz_buf *b, const struct page *pg, const char *key)
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
int tx_append_object(struct taxii *t, struct kz_http_req *r, const struct tx_ent *e, struct kz_buf *b,
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

/* Narrows q to one object, by its identifier from the path; false (404 sent) when it is
 * not one. */
bool tx_query_object(struct taxii *t, struct kz_http_req *r, struct tx_query *q, const char *obj_id)
{
	const char *dd = strstr(obj_id, "--");
	if (!dd || (size_t)(dd - obj_id) > STIX_TYPE_MAX || kz_uuid_parse(dd + 2, q->ids[0].uuid)) {
		tx_err(r, 404, "Not Found", "not an object identifier");
		return false;
	}
	char type[STIX_TYPE_MAX + 1];
	snprintf(type, sizeof type, "%.*s", (int)(dd - obj_id), obj_id);
	q->ids[0].type_i = tx_type_index(t, type, false);
	q->n_ids = 1;
	return true;
}
