/* taxii_resources.c — discovery, API root, collections, object and manifest pages, and statuses (§4.3). */
#include "services/taxii/taxii_internal.h"

/* ---------- resources ---------- */

void tx_discovery(struct taxii *t, struct kz_http_req *r)
{
	const char *ct = tx_accepted(r, false);
	if (!ct) {
		tx_err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	char url[600];
	snprintf(url, sizeof url, "https://%s/taxii2/api/", r->authority[0] ? r->authority : "localhost");
	json_t *o = json_pack("{s:s, s:s, s:s, s:[s]}", "title", "kizuna TAXII 2.1", "description",
			      "Threat sharing under labels, policy and audit (docs/TAXII.md).", "default", url,
			      "api_roots", url);
	tx_send_json(r, 200, ct, o);
}

void tx_api_root(struct taxii *t, struct kz_http_req *r)
{
	const char *ct = tx_accepted(r, false);
	if (!ct) {
		tx_err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	json_t *o = json_pack("{s:s, s:s, s:[s], s:I}", "title", "kizuna", "description", "The node's API root",
			      "versions", TAXII_MT, "max_content_length", (json_int_t)t->cfg.max_content_length);
	tx_send_json(r, 200, ct, o);
}

static json_t *coll_json(struct tx_coll *c, bool rd, bool wr)
{
	json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:[s]}", "id", c->id, "title", c->title, "can_read", rd, "can_write",
			      wr, "media_types", STIX_MT);
	if (c->description)
		json_object_set_new(o, "description", json_string(c->description));
	return o;
}

void tx_collections(struct taxii *t, struct kz_http_req *r, const char *cid, size_t cidn)
{
	const char *ct = tx_accepted(r, false);
	if (!ct) {
		tx_err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	struct tx_subject sub;
	tx_subject_init(t, r, &sub);
	if (cid) {
		struct tx_coll *c = tx_coll_of(t, cid, cidn);
		bool rd = c && tx_can_read(c, &sub), wr = c && tx_can_write(c, &sub);
		if (!rd && !wr) {
			tx_err(r, 404, "Not Found", "no such collection");
			return;
		}
		tx_send_json(r, 200, ct, coll_json(c, rd, wr));
		return;
	}
	json_t *l = json_array();
	for (size_t i = 0; i < t->nc; i++) {
		bool rd = tx_can_read(&t->c[i], &sub), wr = tx_can_write(&t->c[i], &sub);
		if (rd || wr)
			json_array_append_new(l, coll_json(&t->c[i], rd, wr));
	}
	json_t *o = json_object();
	if (json_array_size(l))
		json_object_set_new(o, "collections", l);
	else
		json_decref(l);
	tx_send_json(r, 200, ct, o);
}


void tx_list(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub, enum listing what,
		 const char *obj_id)
{
	const char *ct = tx_accepted(r, what == L_OBJECTS);
	if (!ct) {
		tx_err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
		return;
	}
	struct tx_query q;
	if (tx_parse_query(t, r, &q, what == L_VERSIONS))
		return;
	if (obj_id) { /* /objects/{id}/ and /versions/: the path names the object */
		if (q.n_ids) {
			tx_err(r, 400, "Bad Request", "match[id] is not allowed on a single object's resource");
			return;
		}
		if (!tx_query_object(t, r, &q, obj_id))
			return;
	}
	struct page pg;
	tx_select_page(t, c, sub, &q, &pg);
	if (!pg.e) {
		tx_err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (obj_id && pg.n == 0 && !q.has_next && !q.has_added_after && !q.n_types && !q.spec_given) {
		free(pg.e);
		tx_err(r, 404, "Not Found", "no such object in this collection");
		return;
	}
	struct kz_buf b, tmp;
	kz_buf_init(&b, 0);
	kz_buf_init(&tmp, 0);
	tx_envelope_head(&b, &pg, what == L_OBJECTS ? "objects" : what == L_MANIFEST ? "objects" : "versions");
	for (size_t i = 0; i < pg.n; i++) {
		if (i)
			kz_buf_append(&b, ",", 1);
		char ts[64], ts2[64], line[400];
		if (what == L_VERSIONS) {
			stix_format_us(pg.e[i].version_us, ts);
			int n = snprintf(line, sizeof line, "\"%s\"", ts);
			kz_buf_append(&b, line, (size_t)n);
		} else if (what == L_MANIFEST) {
			char id[37];
			kz_uuid_format(pg.e[i].uuid, id);
			stix_format_us(pg.e[i].version_us, ts);
			stix_format_us(pg.e[i].added_us, ts2);
			int n = snprintf(line, sizeof line,
					 "{\"id\":\"%s--%s\",\"date_added\":\"%s\",\"version\":\"%s\",\"media_type\":\"" STIX_MT "\"}",
					 t->types[pg.e[i].type_i], id, ts2, ts);
			kz_buf_append(&b, line, (size_t)n);
		} else if (tx_append_object(t, r, &pg.e[i], &b, &tmp)) {
			kz_buf_cleanup(&b);
			kz_buf_cleanup(&tmp);
			free(pg.e);
			tx_err(r, 500, "Internal Server Error", "cannot read an object from the record log");
			return;
		}
	}
	kz_buf_append(&b, pg.n ? "]}" : "}", pg.n ? 2 : 1);
	tx_page_headers(r, &pg);
	kz_http_send(r, 200, ct, (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&b);
	kz_buf_cleanup(&tmp);
	free(pg.e);
}

/* ---------- status (§4.3) ---------- */

/* One list of a status (§4.3.1): the entries validation made (jansson, few: refusals and
 * versions already there), then the POST's items of that kind (0: stored, 1: refused by
 * the log, 2: pending), written by hand: a status of 10⁵ objects is built in milliseconds. */
static void status_list(struct kz_buf *b, const char *name, const json_t *made, const struct tx_status *s, int kind)
{
	bool first = true;
	size_t i;
	json_t *v;
	json_array_foreach(made, i, v) {
		char *t = json_dumps(v, JSON_COMPACT);
		if (!t)
			continue;
		if (first)
			kz_buf_appendf(b, ",\"%s\":[", name);
		else
			kz_buf_append(b, ",", 1);
		first = false;
		kz_buf_append(b, t, strlen(t));
		free(t);
	}
	for (i = 0; s->items && i < s->n_items; i++) {
		const struct tx_item *it = &s->items[i];
		int k = !it->done ? 2 : it->status ? 1 : 0;
		if (k != kind)
			continue;
		if (first)
			kz_buf_appendf(b, ",\"%s\":[", name);
		else
			kz_buf_append(b, ",", 1);
		first = false;
		kz_buf_append(b, "{\"id\":", 6);
		kz_json_put_str(b, it->id);
		kz_buf_append(b, ",\"version\":", 11);
		kz_json_put_str(b, it->version);
		if (k == 1)
			kz_buf_appendf(b, ",\"message\":\"the record log refused the write\"");
		kz_buf_append(b, "}", 1);
	}
	if (!first)
		kz_buf_append(b, "]", 1);
}

char *tx_status_text(const struct tx_status *s)
{
	char ts[64];
	stix_format_us(s->req_us, ts);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	/* its size at once, as the POST's items make it (ids and versions need no escapes): the
	 * text is kept in the status ring, and a buffer doubled as it grows is faulted in page by
	 * page, with up to half of it unused (about 200 faults for a status of 1,826 objects) */
	size_t est = 256;
	for (size_t i = 0; s->items && i < s->n_items; i++)
		est += strlen(s->items[i].id) + strlen(s->items[i].version) + 24 + (s->items[i].status ? 48 : 0);
	(void)kz_buf_reserve_exact(&b, est); /* out of memory: the appends below say so */
	kz_buf_appendf(&b, "{\"id\":\"%s\",\"status\":\"%s\",\"request_timestamp\":\"%s\",\"total_count\":%u,"
			   "\"success_count\":%u,\"failure_count\":%u,\"pending_count\":%u",
		       s->id, s->pending ? "pending" : "complete", ts, s->total, s->ok, s->fail, s->pending);
	status_list(&b, "successes", s->successes, s, 0);
	status_list(&b, "failures", s->failures, s, 1);
	status_list(&b, "pendings", NULL, s, 2);
	if (kz_buf_append(&b, "}", 2)) { /* with its NUL */
		kz_buf_cleanup(&b);
		return NULL;
	}
	return (char *)b.data; /* off is 0: nothing was consumed */
}

/* A complete status becomes its JSON text (about 90 bytes per object instead of the
 * jansson tree's 400); the oldest statuses go when they hold more than
 * taxii.max_status_bytes. Caller holds st_lock. */
void tx_status_seal(struct taxii *t, struct tx_status *s)
{
	if (s->pending || s->text)
		return;
	s->text = tx_status_text(s);
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
			tx_status_free(old);
			t->st[i] = NULL;
		}
		i = (i + 1) % t->cfg.max_statuses;
	}
}

void tx_status_get(struct taxii *t, struct kz_http_req *r, const char *sid, size_t n)
{
	const char *ct = tx_accepted(r, false);
	if (!ct) {
		tx_err(r, 406, "Not Acceptable", "this resource is " TAXII_MT);
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
			else
				text = tx_status_text(s);
		}
	}
	pthread_mutex_unlock(&t->st_lock);
	if (!text) {
		tx_err(r, 404, "Not Found", "no such status (statuses are kept for the most recent requests)");
		return;
	}
	kz_http_send(r, 200, ct, text, strlen(text));
	free(text);
}
