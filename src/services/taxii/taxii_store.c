/* taxii_store.c — the collections file, the rebuild of the index from the log, open and close. */
#include "base/kz_topic.h"
#include "services/taxii/taxii_internal.h"
#include "base/kz_mem.h"

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

struct tx_coll *tx_coll_of(struct taxii *t, const char *id, size_t n)
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

bool tx_can_read(struct tx_coll *c, struct tx_subject *sub)
{
	if (!listed(c->readers, sub))
		return false;
	if (!sub->pol)
		return true;
	char f[80];
	const char *why;
	snprintf(f, sizeof f, KZ_TOPIC_TAXII "/%s/#", c->id);
	return kz_policy_subscribe(sub->pol, &sub->s, f, strlen(f), &why);
}

bool tx_can_write(struct tx_coll *c, struct tx_subject *sub)
{
	if (!listed(c->writers, sub))
		return false;
	if (!sub->pol)
		return true;
	char f[80];
	const char *why, *dt;
	const struct kz_label *dl;
	snprintf(f, sizeof f, KZ_TOPIC_TAXII "/%s/objects", c->id);
	return kz_policy_publish(sub->pol, &sub->s, f, strlen(f), &dl, &dt, &why);
}


void tx_subject_init(struct taxii *t, struct kz_http_req *r, struct tx_subject *sub)
{
	memset(sub, 0, sizeof *sub);
	sub->id = r->identity;
	sub->pol = t->cfg.policy ? atomic_load(t->cfg.policy) : NULL;
	kz_subject_init(sub->pol, r->identity, &sub->s); /* no policy: the identity only */
	snprintf(sub->org, sizeof sub->org, "%s", kz_subject_org(&sub->s));
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
	if (strcmp(parts[0], KZ_TOPIC_TAXII) == 0)
		*del = false;
	else if (strcmp(parts[0], KZ_TOPIC_TAXII_DEL) == 0)
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

void tx_mark_deleted(struct tx_coll *c, uint32_t type_i, const uint8_t uuid[16], int64_t ver)
{
	struct tx_slot *s = tx_slot_of(c, type_i, uuid, false);
	for (uint32_t i = s ? s->first : TX_NONE; i != TX_NONE; i = c->e[i].next_ver)
		if (c->e[i].version_us == ver)
			c->e[i].deleted = 1;
}


/* What a $taxii or $taxii-del record means for the index: the collection, the entry (not yet
 * dated) or the deletion. 0 when it is one, 1 when the record is not a TAXII object's (another
 * topic, or not written through the TAXII write path: *foreign), -1 when it is malformed or
 * for an unknown collection. */
static int decode_entry(struct taxii *t, const struct kz_record *r, struct tx_coll **cp, struct tx_ent *e, bool *del,
			bool *foreign)
{
	*foreign = false;
	if (r->topic.len <= strlen(KZ_TOPIC_TAXII) || memcmp(r->topic.p, KZ_TOPIC_TAXII, strlen(KZ_TOPIC_TAXII)) != 0)
		return 1;
	if (!r->service) { /* not written by the TAXII write path: never part of a collection */
		*foreign = true;
		return 1;
	}
	char coll[37], type[STIX_TYPE_MAX + 1], label[1100] = "", author[600] = "";
	uint8_t uuid[16];
	int64_t ver;
	if (parse_topic(r->topic.p, r->topic.len, del, coll, type, uuid, &ver))
		return -1;
	struct tx_coll *c = tx_coll_of(t, coll, 36);
	uint32_t ti = tx_type_index(t, type, true);
	if (!c || ti == TX_NONE)
		return -1;
	memset(e, 0, sizeof *e);
	e->version_us = ver;
	e->type_i = ti;
	memcpy(e->uuid, uuid, 16);
	*cp = c;
	if (*del)
		return 0;
	snprintf(label, sizeof label, "%.*s", (int)r->label.len, (const char *)r->label.p);
	snprintf(author, sizeof author, "%.*s", (int)r->origin_id.len, (const char *)r->origin_id.p);
	uint32_t ai = tx_access_index(t, author, label);
	if (ai == TX_NONE)
		return -1;
	e->acc_i = ai;
	e->tlp = t->acc[ai]->share.tlp;
	return tx_refs_from_record(t, r, &e->by_i, &e->mk_i) ? -1 : 0;
}

/* date_added: the record's accept time, but after every entry the collection has. A record
 * of this node was dated so already (taxii_post.c); one followed from another node of a
 * cluster can be older than entries here, and is dated after them, the same way at every
 * start (the log's order is the order they were dated in). */
static int64_t date_added(const struct tx_coll *c, const struct kz_record *r)
{
	int64_t at = (int64_t)(r->time_ns / 1000);
	return at > c->last_added ? at : c->last_added + 1;
}

static int rebuild_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct rebuild *rb = ctx;
	struct kz_record r;
	const char *why;
	struct tx_coll *c = NULL;
	struct tx_ent e;
	bool del, foreign;
	if (n < 8 || kz_record_decode(body, n, &r, &why))
		return 0;
	int k = decode_entry(rb->t, &r, &c, &e, &del, &foreign);
	if (k) {
		rb->skipped += k < 0;
		rb->foreign += foreign;
		return 0;
	}
	if (del) {
		tx_mark_deleted(c, e.type_i, e.uuid, e.version_us);
		return 0;
	}
	e.seq = seq;
	e.pos = *pos;
	e.added_us = date_added(c, &r);
	if (tx_ent_add(rb->t, c, &e))
		return -1;
	rb->n++;
	return 0;
}

/* ---------- records of other nodes (a cluster's follower) ---------- */

struct follow_ctx {
	struct taxii *t;
	struct tx_coll *c;
	struct tx_ent e;
	bool del;
	struct kz_reclog_pos pos;
	kz_store_done_fn done; /* the caller's */
	void *ctx;
};

static void follow_done(void *arg, int status, uint64_t seq)
{
	struct follow_ctx *f = arg;
	if (status == 0) {
		pthread_rwlock_wrlock(&f->c->lock);
		if (f->del) {
			tx_mark_deleted(f->c, f->e.type_i, f->e.uuid, f->e.version_us);
		} else {
			f->e.seq = seq;
			f->e.pos = f->pos;
			if (tx_ent_add(f->t, f->c, &f->e))
				kz_error("TAXII: out of memory indexing a followed object: it is indexed at the next start");
		}
		pthread_rwlock_unlock(&f->c->lock);
	}
	if (f->done)
		f->done(f->ctx, status, seq);
	free(f);
}

int taxii_follow(struct taxii *t, struct kz_store_item *it)
{
	struct kz_record r;
	const char *why;
	struct tx_coll *c = NULL;
	struct tx_ent e;
	bool del, foreign;
	if (!t || kz_record_decode(it->data, it->len, &r, &why))
		return 0;
	int k = decode_entry(t, &r, &c, &e, &del, &foreign);
	if (k > 0)
		return 0;
	if (k < 0) {
		kz_warn("TAXII: a followed record on %.*s is for an unknown collection or malformed: stored, not indexed",
			(int)r.topic.len, (const char *)r.topic.p);
		return 0;
	}
	struct follow_ctx *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	*f = (struct follow_ctx){ t, c, e, del, { 0 }, it->done, it->ctx };
	struct kz_store_item mine = { it->data, it->len, follow_done, f, &f->pos, it->borrowed };
	/* dated and submitted under the collection's write lock, as a POST is: the log's order is
	 * the collection's date_added order */
	pthread_mutex_lock(&c->wlock);
	if (!del) {
		f->e.added_us = date_added(c, &r);
		c->last_added = f->e.added_us;
	}
	kz_store_submit(t->cfg.store, &mine, 1);
	pthread_mutex_unlock(&c->wlock);
	return 1;
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
	for (unsigned i = 0; t->rd && i < cfg->workers; i++) {
		kz_reclog_reader_init(&t->rd[i], cfg->log_dir, cfg->max_record_bytes);
		/* a page's objects were mostly written together: read them a window at a time */
		kz_reclog_reader_readahead(&t->rd[i], TX_READ_AHEAD);
	}
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

void tx_status_free(struct tx_status *s)
{
	if (!s)
		return;
	free(s->owner);
	json_decref(s->successes);
	json_decref(s->failures);
	free(s->text);
	free(s);
}

void tx_recs_free(struct tx_recs *r)
{
	if (r->mapped) {
		kz_mem_huge_free(r->b.data, r->mapped);
		kz_buf_init(&r->b, 0);
		r->mapped = 0;
	} else {
		kz_buf_cleanup(&r->b);
	}
}

int tx_recs_unmap(struct tx_recs *r)
{
	struct kz_buf nb;
	kz_buf_init(&nb, 0);
	if (kz_buf_append(&nb, kz_buf_head(&r->b), r->b.len) || kz_buf_reserve(&nb, r->b.len)) {
		kz_buf_cleanup(&nb);
		return -1;
	}
	tx_recs_free(r);
	r->b = nb;
	return 0;
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
		tx_plists_free(c->by_post, c->nby);
		tx_plists_free(c->mk_post, c->nmk);
		pthread_rwlock_destroy(&c->lock);
		pthread_mutex_destroy(&c->wlock);
	}
	free(t->c);
	free(t->store_arena_pad);
	for (uint32_t i = 0; i < atomic_load(&t->ntypes); i++)
		free(t->types[i]);
	for (uint32_t i = 0; i < atomic_load(&t->nacc); i++) {
		struct tx_access *a = t->acc[i];
		free(a->author);
		free(a->key);
		free(a->label);
		free(a->base);
		kz_share_free(&a->share);
		free(a);
	}
	if (t->st)
		for (size_t i = 0; i < t->cfg.max_statuses; i++)
			tx_status_free(t->st[i]);
	free(t->st);
	if (t->rd)
		for (unsigned i = 0; i < t->cfg.workers; i++)
			kz_reclog_reader_close(&t->rd[i]);
	free(t->rd);
	struct tx_recs *spare = atomic_load(&t->spare_recs);
	if (spare)
		tx_recs_free(spare);
	free(spare);
	pthread_mutex_destroy(&t->intern);
	pthread_mutex_destroy(&t->st_lock);
	tx_intern_free(&t->refs);
	tx_intern_free(&t->msets);
	free(t);
}
