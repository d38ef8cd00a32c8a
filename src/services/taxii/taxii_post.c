/* taxii_post.c — POST objects (§5.5) and DELETE object (§5.7), with the tree of a POSTed envelope. */
#include "base/kz_err.h"
#include "base/kz_mem.h"
#include "base/kz_topic.h"
#include "services/taxii/taxii_internal.h"

#include <unistd.h>

/* ---------- POST objects (§5.5) and DELETE object (§5.7) ---------- */



/* Where the POST's time went, as a W3C Server-Timing header (milliseconds): parsing the
 * body, validating and labelling the objects, encoding and submitting their records, and
 * from then until every record was durable and the status written (BENCHMARKS.md "TAXII
 * ingest"), after the receiving of the request (its first byte to the handler: the body is
 * whole before the handler runs). */
static void server_timing(struct tx_post *p, struct kz_http_req *r)
{
	if (!p->t_start)
		return;
	uint64_t now = kz_now_mono_ns();
	char v[200];
	snprintf(v, sizeof v, "receive;dur=%.2f, parse;dur=%.2f, validate;dur=%.2f, encode;dur=%.2f, durable;dur=%.2f",
		 (double)p->t_received / 1e6, (double)(p->t_parsed - p->t_start) / 1e6, (double)(p->t_validated - p->t_parsed) / 1e6,
		 (double)(p->t_submitted - p->t_validated) / 1e6, (double)(now - p->t_submitted) / 1e6);
	kz_http_header(r, "Server-Timing", v);
}

static void post_answer(void *ctx, struct kz_http_req *r)
{
	struct tx_post *p = ctx;
	if (r)
		server_timing(p, r);
	if (r) {
		if (p->del) {
			size_t bad = 0;
			for (size_t i = 0; i < p->n; i++)
				bad += p->items[i].status != 0;
			if (bad)
				tx_err(r, 500, "Internal Server Error", "the record log refused the deletion");
			else
				kz_http_send(r, 200, p->ct, "{}", 2);
		} else if (p->answer)
			kz_http_send(r, 202, p->ct, p->answer, strlen(p->answer));
		else
			tx_err(r, 500, "Internal Server Error", "cannot encode the status");
	}
	free(p->answer);
	free(p->items);
	free(p);
}


/* The whole POST (or DELETE) is durable, or failed: its records are taken into the
 * collection in their date_added order under one write lock, and its status is sealed under
 * one status lock (per record, the two locks had cost 1.8 ms of the store thread for an
 * ATT&CK bundle of 1,826 objects, during which the next batch waited). The objects of a POST
 * therefore become visible together. Runs on the store thread, from the last record's done. */
static void records_release(struct tx_post *p);

static void post_done(struct tx_post *p)
{
	struct tx_coll *c = p->c;
	/* the first POST done (on the store thread): that thread's arena in huge pages from here
	 * on, as each HTTPS worker's is (kz_mem_arena_huge). The collection's index, the status
	 * and the log's positions grow there: about 190 faults of 4 KiB on a fresh node's first
	 * POST of ATT&CK ICS (BENCHMARKS.md). Not before: an idle node stays small. */
	if (!atomic_exchange(&p->t->store_arena_asked, true))
		p->t->store_arena_pad = kz_mem_arena_huge((size_t)24 << 20);
	pthread_rwlock_wrlock(&c->lock);
	for (size_t i = 0; i < p->n; i++) {
		struct tx_item *it = &p->items[i];
		if (it->status)
			continue;
		if (p->del)
			tx_mark_deleted(c, it->e.type_i, it->e.uuid, it->e.version_us);
		else {
			it->e.pos = it->pos;
			if (tx_ent_add(p->t, c, &it->e))
				it->status = -1;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	if (p->st) {
		pthread_mutex_lock(&p->t->st_lock);
		/* each item is its own entry of the status (tx_status_text): no JSON built here */
		for (size_t i = 0; i < p->n; i++) {
			if (p->items[i].status)
				p->st->fail++;
			else
				p->st->ok++;
			p->items[i].done = true; /* no longer among the pendings */
		}
		p->st->pending = 0;
		tx_status_seal(p->t, p->st);
		p->answer = p->st->text ? strdup(p->st->text) : NULL;
		if (p->st->dropped)
			tx_status_free(p->st);
		/* p->st may leave the ring from now on: only the copy is used */
		pthread_mutex_unlock(&p->t->st_lock);
	}
	records_release(p); /* the store has read the last of them */
	free(p->dcs);
	p->dcs = NULL;
	kz_http_resume(p->d, post_answer, p);
}

static void post_item_done(void *ctx, int status, uint64_t seq)
{
	struct done_ctx *dc = ctx;
	struct tx_post *p = dc->p;
	struct tx_item *it = &p->items[dc->i];
	it->e.seq = seq;
	it->status = status;
	if (atomic_fetch_sub(&p->remaining, 1) == 1)
		post_done(p);
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
		tx_status_free(old);
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
					struct kz_reclog_pos *pos)
{
	/* $taxii[-del]/<collection>/<type>/<uuid>/<version µs>, built by hand: snprintf was a
	 * few per cent of an import */
	char topic[400], *q = topic;
	const char *pre = p->del ? KZ_TOPIC_TAXII_DEL "/" : KZ_TOPIC_TAXII "/", *ty = t->types[e->type_i];
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
	struct kz_buf attrs;
	kz_buf_init(&attrs, 0);
	if (!p->del) {
		kr.content_type = (struct kz_bytes){ (const uint8_t *)STIX_MT, (uint32_t)strlen(STIX_MT) };
		tx_refs_attrs(t, e, &attrs);
		kr.attrs = (struct kz_bytes){ kz_buf_head(&attrs), (uint32_t)attrs.len };
	}
	kr.payload = (struct kz_bytes){ payload, plen };
	struct done_ctx *dc = &p->dcs[i];
	dc->p = p;
	dc->i = i;
	size_t before = p->recs->b.len;
	int rc = kz_record_encode(&kr, &p->recs->b);
	if (rc == KZ_ETOOBIG && p->recs->mapped && !tx_recs_unmap(p->recs))
		rc = kz_record_encode(&kr, &p->recs->b); /* the guess was short: on the heap from here on */
	uint32_t len = rc ? 0 : (uint32_t)(p->recs->b.len - before);
	kz_buf_cleanup(&attrs);
	/* data set by records_placed, once the block no longer moves */
	return (struct kz_store_item){ NULL, len, post_item_done, dc, pos, true };
}

/* The records of p, encoded one after another into p->recs: each item's data is its place in
 * the block (an item that could not be encoded has none: the log refuses it). */
static void records_placed(struct tx_post *p, struct kz_store_item *si, size_t n)
{
	uint8_t *b = kz_buf_head(&p->recs->b);
	for (size_t i = 0; i < n; i++) {
		si[i].data = si[i].len ? b : NULL;
		b += si[i].len;
	}
}

/* Room for n records of payloads totalling bytes, with their topics, identities, labels and
 * references (a guess: the block moves to the heap and doubles if it is short). From 2 MiB on
 * the block is mapped in huge pages: the first POST of ATT&CK ICS into a node faulted its
 * 3.9 MB in 4 KiB at a time, 9 ms of encode. */
static int records_reserve(struct tx_post *p, size_t n, size_t bytes)
{
	p->dcs = malloc((n ? n : 1) * sizeof *p->dcs);
	p->recs = atomic_exchange(&p->t->spare_recs, NULL);
	if (!p->recs && (p->recs = calloc(1, sizeof *p->recs)))
		kz_buf_init(&p->recs->b, 0);
	if (!p->dcs || !p->recs)
		return -1;
	size_t want = bytes + n * 768;
	struct tx_recs *r = p->recs;
	if (r->b.cap < want && want >= ((size_t)2 << 20)) {
		size_t mapped;
		uint8_t *m = kz_mem_huge_alloc(want, &mapped);
		tx_recs_free(r); /* too small: mapped afresh, or on the heap below */
		if (m) {
			r->b.data = m;
			r->b.cap = r->b.max = r->mapped = mapped;
		}
	}
	return kz_buf_reserve(&r->b, want) ? -1 : 0;
}

/* p's records block back to the spare slot (one block, up to TX_DOC_KEEP), or freed. */
static void records_release(struct tx_post *p)
{
	struct tx_recs *r = p->recs;
	p->recs = NULL;
	if (r && r->b.cap <= TX_DOC_KEEP) {
		kz_buf_reset(&r->b);
		r = atomic_exchange(&p->t->spare_recs, r);
	}
	if (r)
		tx_recs_free(r);
	free(r);
}

/* ---------- the tree of a POSTed envelope ----------
 *
 * Each worker parses envelopes with its own kz_json document (flat, read-only, with every
 * object's span in the body: objects that validation leaves as they are get stored as
 * those bytes). Its buffers are kept for the next envelope up to TX_DOC_KEEP bytes each. */
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



static bool marking_known(void *ctx, const char *id)
{
	struct mk_ctx *m = ctx;
	if (m->n && bsearch(&id, m->ids, m->n, sizeof *m->ids, tx_cmp_str))
		return true;
	uint8_t u[16];
	if (strlen(id) < 20 || kz_uuid_parse(id + 20, u))
		return false;
	uint32_t ti = tx_type_index(m->t, "marking-definition", false);
	if (ti == TX_NONE)
		return false;
	pthread_rwlock_rdlock(&m->c->lock);
	bool found = tx_slot_of(m->c, ti, u, false) != NULL;
	pthread_rwlock_unlock(&m->c->lock);
	return found;
}

/* Each worker's buffer for an envelope's objects without white space, kept between POSTs up
 * to TX_DOC_KEEP bytes (fresh memory costs a page fault a page: a third of a cold POST). From
 * 2 MiB on it is mapped in huge pages: a worker's first POST of ATT&CK ICS faulted its 3.5 MB
 * in 4 KiB at a time, 9 ms of that POST's validation. */
struct cbuf {
	char *p;
	size_t cap;
	size_t mapped; /* kz_mem_big_alloc's */
};
static pthread_key_t cb_key;
static pthread_once_t cb_once = PTHREAD_ONCE_INIT;
static void cbuf_drop(struct cbuf *c)
{
	kz_mem_big_free(c->p, c->mapped);
	c->p = NULL;
	c->cap = c->mapped = 0;
}
static void cb_release(void *v)
{
	cbuf_drop(v);
	free(v);
}
static void cb_key_init(void) { pthread_key_create(&cb_key, cb_release); }

static char *worker_cbuf(size_t n)
{
	pthread_once(&cb_once, cb_key_init);
	struct cbuf *c = pthread_getspecific(cb_key);
	if (!c && (!(c = calloc(1, sizeof *c)) || pthread_setspecific(cb_key, c))) {
		free(c);
		return NULL;
	}
	if (c->cap < n) {
		cbuf_drop(c);
		if ((c->p = kz_mem_big_alloc(n, &c->mapped)))
			c->cap = c->mapped ? c->mapped : n;
	}
	return c->p;
}

static void worker_cbuf_done(void)
{
	struct cbuf *c = pthread_getspecific(cb_key);
	if (c && c->cap > TX_DOC_KEEP)
		cbuf_drop(c);
}


/* ---------- validation of an envelope's objects, on every core ---------- */

/* One object's verdict: its slot of items is filled in every case (id and version at least). */
struct verdict {
	int kind;  /* 0 accepted; -1 refused (why); 1 this version is already in the collection */
	char *why; /* refused: malloc'd */
};

/* What the validation of an envelope's objects shares (read only, but for each object's own
 * slots: items[k], v[k], and the compact copy at the object's own offset in cbuf). */
struct vshare {
	struct taxii *t;
	struct kz_http_req *r;
	struct tx_coll *c;
	struct tx_subject *sub;
	const struct stix_opts *opts;
	const char *base, *audience;
	const struct kz_json **ov; /* object k */
	struct tx_item *items;
	struct verdict *v;
	char *cbuf;                /* NULL: objects stored as sent */
};

struct vrange {
	struct vshare *s;
	size_t from, to;
};

static void refuse(struct verdict *v, const char *why)
{
	v->kind = -1;
	v->why = strdup(why);
}

/* What one validating thread remembers of the last object: a batch's objects mostly share
 * one label, one author and one set of markings, and interning them takes a mutex that the
 * threads would otherwise queue on. */
struct vcache {
	uint32_t ai, by_i, mk_i;
	bool refs;
	char label[2200];
	char refs_key[1024]; /* created_by_ref, then each marking, '\n' after each */
};

static void validate_one(struct vshare *s, size_t k, struct vcache *vc)
{
	const struct kz_json *o = s->ov[k];
	struct tx_item *it = &s->items[k];
	struct verdict *v = &s->v[k];
	struct taxii *t = s->t;
	struct stix_info info;
	char e[300], label[2200];
	const char *why = NULL;
	const char *oid = kz_json_get_str(o, "id");
	const char *mv = kz_json_get_str(o, "modified");
	if (!mv)
		mv = kz_json_get_str(o, "created");
	snprintf(it->id, sizeof it->id, "%s", oid ? oid : "");
	snprintf(it->version, sizeof it->version, "%s", mv ? mv : "");
	if (stix_validate(o, s->opts, &info, e, sizeof e)) {
		refuse(v, e);
		return;
	}
	if (kz_share_label(s->base, info.tlp, s->audience, &s->sub->s, label, sizeof label, &why)) {
		refuse(v, why);
		return;
	}
	uint32_t ti = tx_type_index(t, info.type, true), ai;
	if (vc->ai != TX_NONE && strcmp(label, vc->label) == 0)
		ai = vc->ai;
	else if ((ai = tx_access_index(t, s->r->identity, label)) != TX_NONE) {
		vc->ai = ai;
		snprintf(vc->label, sizeof vc->label, "%s", label);
	}
	if (ti == TX_NONE || ai == TX_NONE) {
		refuse(v, "too many distinct types or audiences in this collection");
		return;
	}
	uint32_t by_i = TX_NONE, mk_i = TX_NONE;
	const char *marks[STIX_MAX_MARKINGS];
	size_t nm = stix_markings(o, marks);
	char key[sizeof vc->refs_key];
	size_t kl = (size_t)snprintf(key, sizeof key, "%s\n", info.created_by_ref);
	for (size_t i = 0; i < nm && kl < sizeof key; i++)
		kl += (size_t)snprintf(key + kl, sizeof key - kl, "%s\n", marks[i]);
	if (kl < sizeof key && vc->refs && strcmp(key, vc->refs_key) == 0) {
		by_i = vc->by_i, mk_i = vc->mk_i;
	} else if (tx_refs_intern(t, info.created_by_ref, marks, nm, &by_i, &mk_i)) {
		refuse(v, "too many distinct created_by_ref and marking identifiers on this node");
		return;
	} else if (kl < sizeof key) {
		vc->refs = true, vc->by_i = by_i, vc->mk_i = mk_i;
		memcpy(vc->refs_key, key, kl + 1);
	}
	/* the object as sent, without its indentation (at its own offset: shorter, so objects
	 * compacted on other threads never overlap), unless its markings change */
	const char *body = s->r->body;
	char *js = NULL;
	const char *pl = NULL;
	size_t pll = 0;
	if (!info.tlp_rewritten && s->cbuf) {
		pl = s->cbuf + o->off;
		pll = kz_json_compact(body + o->off, o->end - o->off, s->cbuf + o->off);
	} else if (!info.tlp_rewritten) {
		pl = body + o->off; /* out of memory for the compact copy: as sent */
		pll = o->end - o->off;
	} else if ((js = stix_rewrite(body, o, &pll)))
		pl = js;
	if (!pl) {
		refuse(v, "cannot encode the object");
		return;
	}
	snprintf(it->id, sizeof it->id, "%s", info.id);
	if (info.modified_us != INT64_MIN) { /* the same version again: already stored */
		bool dup = false;
		pthread_rwlock_rdlock(&s->c->lock);
		struct tx_slot *sl = tx_slot_of(s->c, ti, info.uuid, false);
		for (uint32_t j = sl ? sl->first : TX_NONE; j != TX_NONE && !dup; j = s->c->e[j].next_ver)
			dup = !s->c->e[j].deleted && s->c->e[j].version_us == info.modified_us;
		pthread_rwlock_unlock(&s->c->lock);
		if (dup) {
			it->owned = js;
			v->kind = 1;
			return;
		}
	}
	memcpy(it->e.uuid, info.uuid, 16);
	it->e.type_i = ti;
	it->e.acc_i = ai;
	it->e.by_i = by_i;
	it->e.mk_i = mk_i;
	it->e.tlp = info.tlp;
	it->e.version_us = info.modified_us; /* SCOs: set to date_added later */
	it->owned = js;
	it->payload = pl;
	it->plen = (uint32_t)pll;
}

static void *validate_range(void *arg)
{
	struct vrange *g = arg;
	struct vcache vc = { .ai = TX_NONE }; /* 3 kB of this thread's stack */
	for (size_t k = g->from; k < g->to; k++)
		validate_one(g->s, k, &vc);
	return NULL;
}

/* Below this many objects an envelope is validated on its worker alone (a thread costs more
 * than it saves). */
#define TX_PARALLEL_MIN 256
#define TX_PARALLEL_MAX 8

/* Objects [0, n) validated in ranges of about equal bytes: the last on this thread, the others on helper
 * threads, one per further core (at most TX_PARALLEL_MAX in all). A helper that cannot be
 * started leaves its range to this thread. */
static void validate_all(struct vshare *s, size_t n)
{
	static long cores;
	if (!cores)
		cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t parts = n < TX_PARALLEL_MIN || cores < 2 ? 1 : (size_t)(cores < TX_PARALLEL_MAX ? cores : TX_PARALLEL_MAX);
	struct vrange g[TX_PARALLEL_MAX];
	pthread_t th[TX_PARALLEL_MAX];
	bool started[TX_PARALLEL_MAX] = { false };
	/* ranges of about equal bytes (objects differ in size by 100x: an ATT&CK technique and a
	 * relationship) */
	uint64_t total = n ? s->ov[n - 1]->end - s->ov[0]->off : 0, acc = 0;
	size_t k = 0;
	for (size_t i = 0; i < parts; i++) {
		size_t from = k;
		uint64_t goal = total * (i + 1) / parts;
		while (k < n && (i + 1 == parts || acc < goal))
			acc += s->ov[k]->end - s->ov[k]->off, k++;
		g[i] = (struct vrange){ s, from, k };
	}
	for (size_t i = 0; i + 1 < parts; i++)
		started[i] = pthread_create(&th[i], NULL, validate_range, &g[i]) == 0;
	validate_range(&g[parts - 1]);
	for (size_t i = 0; i + 1 < parts; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		else
			validate_range(&g[i]);
	}
}

void tx_post_objects(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub)
{
	const char *ct = tx_accepted(r, false);
	if (!ct) {
		tx_err(r, 406, "Not Acceptable", "this resource answers " TAXII_MT);
		return;
	}
	if (!tx_content_type_ok(r)) {
		tx_err(r, 415, "Unsupported Media Type", "post an envelope as " TAXII_MT);
		return;
	}
	struct kz_json_doc *doc = worker_doc();
	if (!doc) {
		tx_err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	uint64_t t_start = kz_now_mono_ns();
	if (kz_json_parse(doc, r->body, r->body_len)) {
		kz_http_error(r, 400, TAXII_MT, "Bad Request", "the body is not JSON: line %u column %u: %s", doc->err_line,
			      doc->err_col, doc->err);
		kz_json_trim(doc, TX_DOC_KEEP);
		return;
	}
	const struct kz_json *env = kz_json_root(doc), *objs = kz_json_get(env, "objects");
	if (!kz_json_is(objs, KZ_JSON_ARRAY)) {
		tx_err(r, 422, "Unprocessable Entity", "expected an envelope (or bundle) with an \"objects\" list");
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
		qsort(mk.ids, mk.n, sizeof *mk.ids, tx_cmp_str);
	}
	if (!st || !p || !items || !si || (mk.n && !mk.ids)) {
		free(mk.ids);
		kz_json_trim(doc, TX_DOC_KEEP);
		tx_status_free(st);
		free(p);
		free(items);
		free(si);
		tx_err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	p->t = t;
	p->c = c;
	p->st = st;
	p->t_start = t_start;
	p->t_received = r->received_ns;
	p->t_parsed = kz_now_mono_ns();
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
		snprintf(topic, sizeof topic, KZ_TOPIC_TAXII "/%s/objects", c->id);
		struct kz_share sh;
		if (kz_policy_publish(sub->pol, &sub->s, topic, strlen(topic), &dl, &dt, &w) && dt &&
		    kz_share_split(dt, &sh, base, sizeof base) == 0)
			kz_share_free(&sh);
	}
	size_t ns = 0;
	/* every object validated (on this thread and, for a large envelope, helpers), each into
	 * its own slot; then, in the envelope's order, the accepted ones become the items and
	 * the rest the status's entries */
	struct vshare vs = { t, r, c, sub, &opts, base, kz_http_req_header(r, "kizuna-audience"), NULL, items, NULL, NULL };
	vs.ov = malloc(n * sizeof *vs.ov);
	vs.v = calloc(n ? n : 1, sizeof *vs.v);
	vs.cbuf = worker_cbuf(r->body_len ? r->body_len : 1);
	if (!vs.ov || !vs.v) {
		free(vs.ov), free(vs.v), free(mk.ids);
		kz_json_trim(doc, TX_DOC_KEEP);
		tx_status_free(st);
		free(p), free(items), free(si);
		tx_err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	size_t k = 0;
	KZ_JSON_FOR(o, objs)
		vs.ov[k++] = o;
	validate_all(&vs, n);
	for (k = 0; k < n; k++) {
		struct tx_item *it = &items[k];
		if (vs.v[k].kind < 0) {
			json_t *f = json_pack("{s:s, s:s}", "id", it->id, "message", vs.v[k].why ? vs.v[k].why : "out of memory");
			if (it->version[0])
				json_object_set_new(f, "version", json_string(it->version));
			json_array_append_new(st->failures, f);
			st->fail++;
			free(vs.v[k].why);
		} else if (vs.v[k].kind > 0) {
			free(it->owned);
			json_array_append_new(st->successes, json_pack("{s:s, s:s, s:s}", "id", it->id, "version", it->version,
								       "message", "this version is already in the collection"));
			st->ok++;
		} else {
			if (ns != k)
				items[ns] = *it;
			ns++;
		}
	}
	free(vs.ov), free(vs.v);
	free(mk.ids);
	p->t_validated = kz_now_mono_ns();
	kz_json_trim(doc, TX_DOC_KEEP);
	if (ns == 0) {
		status_keep(t, st);
		pthread_mutex_lock(&t->st_lock);
		char *o = tx_status_text(st);
		tx_status_seal(t, st);
		bool dropped = st->dropped; /* not in the ring: ours to free */
		pthread_mutex_unlock(&t->st_lock);
		if (dropped)
			tx_status_free(st);
		free(items);
		free(si);
		free(p);
		worker_cbuf_done();
		r->audit_reason = "every object was refused";
		if (o)
			kz_http_send(r, 202, ct, o, strlen(o));
		else
			tx_err(r, 500, "Internal Server Error", "cannot encode the status");
		free(o);
		return;
	}
	size_t bytes = 0;
	for (size_t i = 0; i < ns; i++)
		bytes += items[i].plen;
	if (records_reserve(p, ns, bytes)) {
		for (size_t i = 0; i < ns; i++)
			free(items[i].owned);
		records_release(p);
		free(p->dcs);
		tx_status_free(st);
		free(p), free(items), free(si);
		worker_cbuf_done();
		tx_err(r, 500, "Internal Server Error", "out of memory");
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
		si[i] = record_item(t, p, i, &it->e, r->identity, (const uint8_t *)it->payload, it->plen, &it->pos);
		free(it->owned);
		it->owned = NULL;
		st->pending++;
	}
	st->items = items;
	st->n_items = ns;
	c->last_added = added + (int64_t)ns - 1;
	status_keep(t, st);
	records_placed(p, si, ns);
	p->t_submitted = kz_now_mono_ns(); /* before the submit: the records may be done at once */
	kz_store_submit(t->cfg.store, si, ns);
	pthread_mutex_unlock(&c->wlock);
	free(si);
	worker_cbuf_done(); /* the records hold their copies */
}

void tx_delete_object(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub,
			  const char *obj_id)
{
	const char *ct = tx_accepted(r, false);
	if (!ct) {
		tx_err(r, 406, "Not Acceptable", "this resource answers " TAXII_MT);
		return;
	}
	struct tx_query q;
	if (tx_parse_query(t, r, &q, true))
		return;
	if (!tx_query_object(t, r, &q, obj_id))
		return;
	q.limit = 100000;
	q.has_next = false;
	struct page pg;
	tx_select_page(t, c, sub, &q, &pg);
	if (!pg.e) {
		tx_err(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (!pg.n) {
		free(pg.e);
		tx_err(r, 404, "Not Found", "no such object in this collection");
		return;
	}
	struct tx_post *p = calloc(1, sizeof *p);
	struct tx_item *items = calloc(pg.n, sizeof *items);
	struct kz_store_item *si = calloc(pg.n, sizeof *si);
	if (p)
		p->t = t;
	if (!p || !items || !si || records_reserve(p, pg.n, 2 * pg.n)) {
		if (p) {
			records_release(p);
			free(p->dcs);
		}
		free(p);
		free(items);
		free(si);
		free(pg.e);
		tx_err(r, 500, "Internal Server Error", "out of memory");
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
	for (size_t i = 0; i < pg.n; i++) {
		items[i].e = pg.e[i];
		si[i] = record_item(t, p, i, &pg.e[i], r->identity, (const uint8_t *)"{}", 2, NULL);
	}
	records_placed(p, si, pg.n);
	kz_store_submit(t->cfg.store, si, pg.n);
	free(si);
	free(pg.e);
}
