/* node_detect.c — the detection service inside the node (docs/DETECTION.md "In the node").
 *
 * One thread owns the index and does everything in the log's order:
 *
 *   record log ──kz_store_scan (kicked when records are durable, else each flush_ms)──┐
 *     $taxii/<coll>/indicator/<uuid>/<ver>   → detect_add_stix_by (label, author kept)
 *     $taxii-del/<coll>/indicator/<uuid>/<ver> → detect_remove, then the newest version
 *                                              left in the collection (taxii_newest)
 *     a record on a detect.topics filter      → that topic's reader (after the start only)
 *   detect.intel ──read at start and again when changed──→ detect_load_file (its old ones removed)
 *   detect.files ──detect_tail (rotation)──────→ the file's reader
 *   reader events → detect_match_event → sightings (label: kz_label_join of the
 *                                         indicator's and the event's) → every flush_ms:
 *     node_record_write on detect.sighting_topic/<id> (the policy decides, as for anyone)
 *     taxii_put into detect.collection, filed under the indicator's author
 *
 * Adding or removing an indicator changes a few table slots between two events (no index
 * rebuild, no pause: the equivalent of an RCU swap with one writer that is also the only
 * reader). A status snapshot for HTTPS and /metrics is published under a mutex once a round. */
#include "node/node_detect.h"
#include "node/node_detect_resume.h"
#include "node/node_adapters.h"
#include "node/node_config.h"
#include "base/kz_buf.h"
#include "base/kz_file.h"
#include "base/kz_json.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "base/kz_topic.h"
#include "http/http.h"
#include "mqtt/mqtt_broker.h"
#include "services/detect/detect.h"
#include "services/taxii/taxii.h"
#include "store/store.h"
#include "trust/access.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_FILES 64
#define MAX_FILTERS 32
#define MAX_COLLS 64
#define SKIPPED_SHOWN 200

struct topic_reader {
	char *topic;
	struct detect_reader *r;
};

struct intel {
	char path[1024];
	struct stat st; /* as last read (st_ino 0: not read) */
};

struct file_in {
	char path[1024];
	struct detect_tail *t;
	struct detect_reader *r;
};

/* What the thread publishes once a round (status, /metrics). */
struct snap {
	struct detect_stats st;
	uint64_t lines, events, errors, matches, published, stored, refused_label, refused_publish, refused_store,
		topics_skipped, indicators_refused, next_seq, pending, rotations;
	double events_per_s;
	char *skipped;      /* owned: the indicators not matched, each as id, why, label, source
			     * and author, NUL-terminated one after the other */
	size_t skipped_len;
};

struct node_detect {
	struct mqtt_broker *b;
	struct taxii *t;
	const struct node_config *cfg;
	char identity[600];
	char colls[MAX_COLLS][40];
	int n_colls;            /* 0 and all_colls: every collection */
	bool all_colls;
	char filters[MAX_FILTERS][256];
	int n_filters;
	struct detect_index *x;
	struct detect_sightings *s;
	struct topic_reader *topics;
	size_t n_topics;
	struct file_in files[MAX_FILES];
	int n_files;
	struct intel intel[MAX_FILES];
	int n_intel;
	uint64_t intel_ms;      /* when the intel files were last looked at */
	uint64_t next_seq, start_seq;
	/* where matching may resume after a restart (data_dir/detect.pos): the log position
	 * matched and flushed, saved once the store has written the sightings of that flush */
	struct node_detect_resume res;
	struct kz_reclog_pos hint;
	bool has_hint;
	/* the event being read: its label */
	const char *ev_label;
	char join_a[KZ_LABEL_MAX_LEN + 1], join_b[KZ_LABEL_MAX_LEN + 1], join_out[KZ_LABEL_MAX_LEN + 1];
	const struct kz_policy *join_pol;
	bool join_valid, join_ok;
	struct kz_json_doc doc;
	struct kz_buf rec;
	struct snap now;        /* the thread's */
	uint64_t last_unlisted, rate_events;
	uint64_t rate_ms;
	/* thread */
	pthread_t th;
	pthread_mutex_t lock;   /* kicked, stop, pub */
	pthread_cond_t cond;
	bool kicked, stop, started;
	struct snap pub;        /* published copy */
};

static _Atomic(struct node_detect *) node_detect_live;

/* ---------- events and matches ---------- */

/* The sighting's label: the stricter of the indicator's and the event's (the last pair is
 * kept: a log's lines mostly share one label, an indicator set a few). */
static const char *joined(struct node_detect *d, const char *ind_label, const char *ev_label)
{
	const struct kz_policy *pol = atomic_load(&d->b->policy);
	if (d->join_valid && pol == d->join_pol && !strcmp(ind_label, d->join_a) && !strcmp(ev_label, d->join_b))
		return d->join_ok ? d->join_out : NULL;
	snprintf(d->join_a, sizeof d->join_a, "%s", ind_label);
	snprintf(d->join_b, sizeof d->join_b, "%s", ev_label);
	d->join_pol = pol;
	d->join_valid = true;
	const char *why;
	d->join_ok = kz_label_join(pol, ind_label, ev_label, d->join_out, sizeof d->join_out, &why) == 0;
	if (!d->join_ok)
		kz_debug("detect: no sighting label for '%s' and '%s': %s", ind_label, ev_label, why);
	return d->join_ok ? d->join_out : NULL;
}

static void on_match(void *ctx, const struct detect_match *m)
{
	struct node_detect *d = ctx;
	d->now.matches++;
	const char *l = joined(d, m->ind->label ? m->ind->label : "", d->ev_label);
	if (!l) {
		d->now.refused_label++;
		return;
	}
	detect_sightings_add(d->s, m, l);
}

static void on_event(void *ctx, const struct detect_obs *obs, size_t n, int64_t ts_us, const char *line, size_t len)
{
	struct node_detect *d = ctx;
	(void)line, (void)len;
	(void)detect_match_event(d->x, obs, n, ts_us, on_match, d);
}

/* Lines of text (a record's payload, a file's new lines) into reader r. */
static void feed(struct node_detect *d, struct detect_reader *r, const char *p, size_t n, const char *label)
{
	d->ev_label = label;
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t l = nl ? (size_t)(nl - p) : n;
		size_t ll = l && p[l - 1] == '\r' ? l - 1 : l;
		if (ll)
			(void)detect_reader_line(r, p, ll);
		p += nl ? l + 1 : l;
		n -= nl ? l + 1 : l;
	}
}

static struct detect_reader *topic_reader(struct node_detect *d, const uint8_t *topic, size_t n)
{
	for (size_t i = 0; i < d->n_topics; i++)
		if (strlen(d->topics[i].topic) == n && !memcmp(d->topics[i].topic, topic, n))
			return d->topics[i].r;
	if (d->n_topics >= d->cfg->detect_max_topics) {
		d->now.topics_skipped++;
		return NULL;
	}
	struct topic_reader *nt = realloc(d->topics, (d->n_topics + 1) * sizeof *nt);
	if (!nt)
		return NULL;
	d->topics = nt;
	struct topic_reader *tr = &nt[d->n_topics];
	tr->topic = strndup((const char *)topic, n);
	tr->r = detect_reader_new(DETECT_AUTO, on_event, d);
	if (!tr->topic || !tr->r) {
		free(tr->topic);
		detect_reader_free(tr->r);
		return NULL;
	}
	d->n_topics++;
	return tr->r;
}

/* ---------- indicators from TAXII records ---------- */

static bool coll_wanted(const struct node_detect *d, const char *coll)
{
	/* "*" leaves out the sightings' own collection: the indicators written there for Zeek
	 * intel lines would otherwise come back as indicators, and outlive their file */
	if (d->all_colls)
		return strcmp(coll, d->cfg->detect_collection) != 0;
	for (int i = 0; i < d->n_colls; i++)
		if (!strcmp(d->colls[i], coll))
			return true;
	return false;
}

static void add_indicator(struct node_detect *d, const struct kz_record *r, const char *coll)
{
	struct detect_stats st;
	detect_index_stats(d->x, &st);
	if (st.indicators >= d->cfg->detect_max_indicators) {
		d->now.indicators_refused++;
		return;
	}
	char label[KZ_LABEL_MAX_LEN + 1], author[600];
	snprintf(label, sizeof label, "%.*s", (int)r->label.len, (const char *)r->label.p);
	snprintf(author, sizeof author, "%.*s", (int)r->origin_id.len, (const char *)r->origin_id.p);
	const char *why;
	if (kz_json_parse(&d->doc, (const char *)r->payload.p, r->payload.len) ||
	    detect_add_stix_by(d->x, kz_json_root(&d->doc), label, coll, author, &why) < 0)
		kz_debug("detect: an indicator record of collection %s was not taken", coll);
	kz_json_trim(&d->doc, 1 << 16);
}

/* $taxii[-del]/<coll>/indicator/<uuid>/<version µs> */
static void taxii_record(struct node_detect *d, const struct kz_record *r, bool del)
{
	const char *p = (const char *)r->topic.p, *end = p + r->topic.len;
	const char *parts[5];
	size_t lens[5];
	int k = 0;
	while (p < end && k < 5) {
		const char *sl = memchr(p, '/', (size_t)(end - p));
		parts[k] = p;
		lens[k++] = (size_t)((sl ? sl : end) - p);
		p = sl ? sl + 1 : end;
	}
	char coll[40], us[40];
	uint8_t uuid[16];
	if (k != 5 || lens[2] != 9 || memcmp(parts[2], "indicator", 9) || lens[1] >= sizeof coll || lens[3] != 36 ||
	    lens[4] >= 24)
		return;
	snprintf(coll, sizeof coll, "%.*s", (int)lens[1], parts[1]);
	snprintf(us, sizeof us, "%.*s", (int)lens[3], parts[3]);
	if (!coll_wanted(d, coll) || kz_uuid_parse(us, uuid))
		return;
	if (!del) {
		add_indicator(d, r, coll);
		return;
	}
	snprintf(us, sizeof us, "%.*s", (int)lens[4], parts[4]);
	if (detect_remove(d->x, uuid, strtoll(us, NULL, 10)) != 1)
		return;
	/* the version deleted was the one matched: the newest left (if any) takes its place */
	struct kz_record nr;
	const char *why;
	if (taxii_newest(d->t, coll, "indicator", uuid, &d->rec) == 1 &&
	    !kz_record_decode(kz_buf_head(&d->rec), d->rec.len, &nr, &why))
		add_indicator(d, &nr, coll);
}

/* Matched here: on a single node every record; in a cluster those this node accepted (one
 * another node accepted is matched there), or all with detect.all_nodes. */
static bool own_record(const struct node_detect *d, const struct kz_record *r)
{
	if (d->cfg->detect_all_nodes || !d->cfg->cluster_nats[0])
		return true;
	size_t n = strlen(d->cfg->node_id);
	return r->origin_node.len == n && !memcmp(r->origin_node.p, d->cfg->node_id, n);
}

static int take(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct node_detect *d = ctx;
	d->next_seq = seq + 1;
	d->hint = *pos;
	d->has_hint = true;
	struct kz_record r;
	const char *why;
	if (kz_record_decode(body, n, &r, &why))
		return 0;
	size_t tl = strlen(KZ_TOPIC_TAXII), dl = strlen(KZ_TOPIC_TAXII_DEL);
	if (r.service && r.topic.len > dl && !memcmp(r.topic.p, KZ_TOPIC_TAXII_DEL "/", dl + 1))
		taxii_record(d, &r, true);
	else if (r.service && r.topic.len > tl && !memcmp(r.topic.p, KZ_TOPIC_TAXII "/", tl + 1))
		taxii_record(d, &r, false);
	else if (seq >= d->start_seq && own_record(d, &r))
		for (int i = 0; i < d->n_filters; i++)
			if (kz_topic_match((const uint8_t *)d->filters[i], strlen(d->filters[i]), r.topic.p, r.topic.len)) {
				struct detect_reader *rd = topic_reader(d, r.topic.p, r.topic.len);
				if (rd) {
					char label[KZ_LABEL_MAX_LEN + 1];
					snprintf(label, sizeof label, "%.*s", (int)r.label.len, (const char *)r.label.p);
					feed(d, rd, (const char *)r.payload.p, r.payload.len, label);
				}
				break;
			}
	return 0;
}

static int catch_up(struct node_detect *d, char *why, size_t why_len)
{
	uint64_t end;
	return kz_store_scan(d->b->store, d->next_seq, d->has_hint ? &d->hint : NULL, take, d, &end, why, why_len);
}

/* ---------- indicator files (detect.intel) ---------- */

/* Reads an indicator file again when it changed (or appeared): its old indicators go first. */
static void intel_check(struct node_detect *d, struct intel *in)
{
	struct stat st;
	if (stat(in->path, &st)) {
		if (in->st.st_ino)
			kz_warn("detect: %s is gone: its indicators stay until it comes back", in->path);
		in->st.st_ino = 0;
		return;
	}
	if (st.st_ino == in->st.st_ino && st.st_dev == in->st.st_dev && st.st_size == in->st.st_size &&
	    st.st_mtim.tv_sec == in->st.st_mtim.tv_sec && st.st_mtim.tv_nsec == in->st.st_mtim.tv_nsec)
		return;
	const char *base = strrchr(in->path, '/') ? strrchr(in->path, '/') + 1 : in->path;
	struct detect_stats before, after;
	size_t removed = detect_remove_source(d->x, base);
	detect_index_stats(d->x, &before);
	char why[300];
	if (detect_load_file(d->x, in->path, d->cfg->detect_intel_label, why, sizeof why)) {
		kz_warn("detect: %s: %s", in->path, why);
		return; /* tried again when it changes */
	}
	in->st = st;
	detect_index_stats(d->x, &after);
	kz_info("detect: %s read: %llu indicators (%zu of its earlier ones removed)", in->path,
		(unsigned long long)(after.indicators - before.indicators), removed);
}

static void intel_poll(struct node_detect *d, bool now)
{
	uint64_t ms = kz_now_mono_ms();
	if (!now && ms - d->intel_ms < 1000)
		return;
	d->intel_ms = ms;
	for (int i = 0; i < d->n_intel; i++)
		intel_check(d, &d->intel[i]);
}

/* ---------- files ---------- */

static void on_file_line(void *ctx, const char *line, size_t n)
{
	struct file_in *f = ctx;
	(void)detect_reader_line(f->r, line, n);
}

static void poll_files(struct node_detect *d)
{
	for (int i = 0; i < d->n_files; i++) {
		d->ev_label = d->cfg->detect_file_label;
		(void)detect_tail_poll(d->files[i].t, on_file_line, &d->files[i]);
	}
}

/* ---------- sightings out ---------- */

static void on_sighting(void *ctx, const struct detect_sighting_out *o)
{
	struct node_detect *d = ctx;
	struct kz_json_doc doc = { 0 };
	const struct kz_json *objs = NULL, *sg = NULL;
	if (!kz_json_parse(&doc, o->json, o->len))
		objs = kz_json_get(kz_json_root(&doc), "objects");
	if (!(sg = kz_json_at(objs, 0)) || !kz_json_get_str(sg, "id")) {
		kz_json_free(&doc);
		return;
	}
	const struct kz_policy *pol = atomic_load(&d->b->policy);
	/* under a policy the label is canonical and complete; without, the sharing part */
	char topic[400], canon[KZ_LABEL_MAX_LEN + 1];
	const char *sid = kz_json_get_str(sg, "id") + strlen("sighting--");
	snprintf(topic, sizeof topic, "%s/%s", d->cfg->detect_sighting_topic, sid);
	const char *why;
	if (node_record_write(d->b, d->cfg->node_id, d->identity, pol ? o->label : "", topic,
			      "application/stix+json;version=2.1", (const uint8_t *)o->json, o->len, canon, &why)) {
		d->now.refused_publish++;
		kz_warn("detect: a sighting on %s was not published: %s (detect.identity %s)", topic, why, d->identity);
	} else {
		d->now.published++;
	}
	if (d->t && d->cfg->detect_collection[0]) {
		const char *author = o->author && o->author[0] ? o->author : d->identity;
		KZ_JSON_FOR(obj, objs) {
			char w[400];
			int rc = taxii_put(d->t, d->cfg->detect_collection, author, o->label, o->json + obj->off,
					   obj->end - obj->off, w, sizeof w);
			if (rc < 0) {
				d->now.refused_store++;
				kz_warn("detect: a sighting's object was not stored in collection %s: %s",
					d->cfg->detect_collection, w);
				break;
			}
			if (rc == 0 && obj == kz_json_at(objs, 0))
				d->now.stored++;
		}
	}
	kz_json_free(&doc);
}

/* ---------- status ---------- */

static void list_one(void *ctx, const char *id, const char *why, const char *label, const char *source,
		     const char *author)
{
	struct kz_buf *b = ctx;
	const char *f[5] = { id, why, label, source, author };
	for (int i = 0; i < 5; i++)
		kz_buf_append(b, f[i], strlen(f[i]) + 1);
}

/* May the reader learn that this indicator exists? As TAXII decides the object itself
 * (trust's decision point on its label, TLP and audience, and for one from a collection the
 * right to read that collection): a reader who may not see an indicator does not see its id
 * among those not matched either. */
static bool may_see(const struct kz_policy *pol, const struct kz_subject *s, const char *label, const char *source,
		    const char *author)
{
	struct kz_share sh;
	char base[KZ_LABEL_MAX_LEN + 1];
	if (kz_share_split(label, &sh, base, sizeof base))
		return false;
	struct kz_record_facts f = { .share = &sh, .author = author[0] ? author : NULL };
	struct kz_label lab;
	const char *w;
	bool ok = true;
	if (pol) {
		char canon[KZ_LABEL_MAX_LEN + 1], why[160], filter[80];
		size_t cl;
		if (!base[0])
			f.label = &pol->default_label;
		else if (kz_label_parse(pol, base, strlen(base), &lab, canon, &cl, why, sizeof why) == 0)
			f.label = &lab; /* else none: denied */
		if (strlen(source) == 36) { /* a TAXII collection's id */
			snprintf(filter, sizeof filter, KZ_TOPIC_TAXII "/%s/#", source);
			ok = kz_policy_subscribe(pol, s, filter, strlen(filter), &w);
		}
	}
	ok = ok && kz_may_read(pol, s, KZ_PATH_SERVICE, &f, &w);
	kz_share_free(&sh);
	return ok;
}

static void publish(struct node_detect *d)
{
	detect_index_stats(d->x, &d->now.st);
	d->now.next_seq = d->next_seq;
	d->now.pending = detect_sightings_count(d->s);
	uint64_t lines = 0, events = 0, errors = 0, rot = 0;
	struct detect_reader_stats rs;
	for (size_t i = 0; i < d->n_topics; i++) {
		detect_reader_stats(d->topics[i].r, &rs);
		lines += rs.lines, events += rs.events, errors += rs.errors;
	}
	for (int i = 0; i < d->n_files; i++) {
		detect_reader_stats(d->files[i].r, &rs);
		lines += rs.lines, events += rs.events, errors += rs.errors;
		rot += detect_tail_rotations(d->files[i].t);
	}
	d->now.lines = lines, d->now.events = events, d->now.errors = errors, d->now.rotations = rot;
	uint64_t ms = kz_now_mono_ms();
	if (ms - d->rate_ms >= 1000) { /* over the last second or more */
		d->now.events_per_s = (double)(events - d->rate_events) * 1000.0 / (double)(ms - d->rate_ms);
		d->rate_ms = ms;
		d->rate_events = events;
	}
	struct kz_buf l = { 0 };
	bool relist = false;
	uint64_t unlisted = d->now.st.unsupported + d->now.st.suppressed;
	if (unlisted != d->last_unlisted) {
		kz_buf_init(&l, 0);
		detect_index_list_skipped(d->x, list_one, &l);
		d->last_unlisted = unlisted;
		relist = true;
	}
	pthread_mutex_lock(&d->lock);
	char *keep = d->pub.skipped;
	size_t keep_len = d->pub.skipped_len;
	d->pub = d->now;
	d->pub.skipped = relist ? (char *)l.data : keep; /* off is 0: nothing was consumed */
	d->pub.skipped_len = relist ? l.len : keep_len;
	if (relist)
		free(keep);
	pthread_mutex_unlock(&d->lock);
}

/* ---------- where matching resumes (detect.resume): node_detect_resume.c ---------- */

static const struct detect_reader *topic_at(void *ctx, size_t i, const char **topic)
{
	struct node_detect *d = ctx;
	*topic = d->topics[i].topic;
	return d->topics[i].r;
}

static void header_give(void *ctx, const char *topic, size_t topic_len, const char *header, size_t len)
{
	struct node_detect *d = ctx;
	struct detect_reader *r = topic_reader(d, (const uint8_t *)topic, topic_len);
	if (r)
		feed(d, r, header, len, NULL);
}

static void *run(void *arg)
{
	struct node_detect *d = arg;
	uint64_t next_flush = kz_now_mono_ms() + d->cfg->detect_flush_ms;
	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		struct timespec ts;
		kz_deadline_ms(&ts, d->n_files || d->n_intel ? 200 : d->cfg->detect_flush_ms);
		while (!d->kicked && !d->stop && pthread_cond_timedwait(&d->cond, &d->lock, &ts) == 0)
			;
		d->kicked = false;
		pthread_mutex_unlock(&d->lock);
		char why[256];
		if (catch_up(d, why, sizeof why))
			kz_warn("detect: reading the record log: %s", why);
		poll_files(d);
		intel_poll(d, false);
		uint64_t now = kz_now_mono_ms();
		node_detect_resume_save(&d->res); /* the previous flush's, once written */
		if (now >= next_flush) {
			detect_sightings_flush(d->s, on_sighting, d);
			next_flush = now + d->cfg->detect_flush_ms;
			if (!d->res.cp_pending)
				node_detect_resume_mark(&d->res, d->next_seq, d->n_topics, topic_at, d);
		}
		publish(d);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	detect_sightings_flush(d->s, on_sighting, d); /* what was matched is not lost at a stop */
	node_detect_resume_mark(&d->res, d->next_seq, d->n_topics, topic_at, d);
	node_detect_resume_last(&d->res); /* the store is still open: it writes them */
	node_record_write_end();
	return NULL;
}

/* ---------- open / close ---------- */

/* A comma-separated list: each item (trimmed) to fn; -1 when fn refuses one. */
static int each(const char *list, int (*fn)(void *ctx, const char *item, char *why, size_t why_len), void *ctx,
		char *why, size_t why_len)
{
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", list);
	char *sv = NULL;
	for (char *it = strtok_r(buf, ",", &sv); it; it = strtok_r(NULL, ",", &sv)) {
		while (*it == ' ')
			it++;
		size_t l = strlen(it);
		while (l && it[l - 1] == ' ')
			it[--l] = 0;
		if (l && fn(ctx, it, why, why_len))
			return -1;
	}
	return 0;
}

static int add_coll(void *ctx, const char *it, char *why, size_t why_len)
{
	struct node_detect *d = ctx;
	if (!strcmp(it, "*")) {
		d->all_colls = true;
		return 0;
	}
	if (d->n_colls == MAX_COLLS || strlen(it) >= sizeof d->colls[0]) {
		snprintf(why, why_len, "detect.indicators: at most %d collection ids", MAX_COLLS);
		return -1;
	}
	snprintf(d->colls[d->n_colls++], sizeof d->colls[0], "%s", it);
	return 0;
}

static int add_filter(void *ctx, const char *it, char *why, size_t why_len)
{
	struct node_detect *d = ctx;
	if (d->n_filters == MAX_FILTERS || strlen(it) >= sizeof d->filters[0]) {
		snprintf(why, why_len, "detect.topics: at most %d filters of up to 255 bytes", MAX_FILTERS);
		return -1;
	}
	snprintf(d->filters[d->n_filters++], sizeof d->filters[0], "%s", it);
	return 0;
}

static int add_file(void *ctx, const char *it, char *why, size_t why_len)
{
	struct node_detect *d = ctx;
	if (d->n_files == MAX_FILES) {
		snprintf(why, why_len, "detect.files: at most %d files", MAX_FILES);
		return -1;
	}
	struct file_in *f = &d->files[d->n_files];
	snprintf(f->path, sizeof f->path, "%s", it);
	f->t = detect_tail_open(it, false);
	f->r = detect_reader_new(DETECT_AUTO, on_event, d);
	if (!f->t || !f->r) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	d->n_files++;
	return 0;
}

static int add_intel(void *ctx, const char *it, char *why, size_t why_len)
{
	struct node_detect *d = ctx;
	if (d->n_intel == MAX_FILES) {
		snprintf(why, why_len, "detect.intel: at most %d files", MAX_FILES);
		return -1;
	}
	snprintf(d->intel[d->n_intel++].path, sizeof d->intel[0].path, "%s", it);
	return 0;
}

static int add_warninglist(void *ctx, const char *it, char *why, size_t why_len)
{
	struct node_detect *d = ctx;
	struct stat st;
	if (stat(it, &st)) {
		snprintf(why, why_len, "detect.warninglists: %s does not exist", it);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return detect_load_warninglist(d->x, it, why, why_len);
	DIR *dir = opendir(it);
	struct dirent *e;
	int rc = 0;
	while (dir && !rc && (e = readdir(dir))) {
		char p[2048];
		snprintf(p, sizeof p, "%s/%s/list.json", it, e->d_name);
		if (e->d_name[0] != '.' && !stat(p, &st))
			rc = detect_load_warninglist(d->x, p, why, why_len);
	}
	if (dir)
		closedir(dir);
	return rc;
}

int node_detect_open(struct mqtt_broker *b, struct taxii *t, const struct node_config *cfg, struct node_detect **out,
		     char *why, size_t why_len)
{
	*out = NULL;
	if (!cfg->detect_enabled)
		return 0;
	struct node_detect *d = calloc(1, sizeof *d);
	if (!d || !(d->x = detect_index_new())) {
		free(d);
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	d->b = b, d->t = t, d->cfg = cfg;
	if (cfg->detect_identity[0])
		snprintf(d->identity, sizeof d->identity, "%s", cfg->detect_identity);
	else
		snprintf(d->identity, sizeof d->identity, "spiffe://%s/%s/node/%s", cfg->trust_domain, cfg->org, cfg->node_id);
	d->s = detect_sightings_new(d->identity);
	kz_buf_init(&d->rec, 0);
	node_detect_resume_init(&d->res, cfg, b->store);
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->next_seq = 1;
	/* logs before the start were matched then, up to the position saved (detect.resume) */
	d->start_seq = kz_store_durable_next(b->store);
	uint64_t saved = cfg->detect_resume ? node_detect_resume_pos_load(cfg) : 0;
	bool headers = saved && saved <= d->start_seq; /* not when records after the position are skipped */
	if (saved && saved < d->start_seq) {
		uint64_t since = d->start_seq - saved, cap = cfg->detect_resume_max;
		if (cap && since > cap) { /* matched at the start, before the node serves: bounded */
			kz_warn("detect: %llu log records written since matching stopped: the oldest %llu are not matched "
				"(detect.resume_max %llu)", (unsigned long long)since, (unsigned long long)(since - cap),
				(unsigned long long)cap);
			saved = d->start_seq - cap;
			headers = false;
		}
		kz_info("detect: resuming at log record %llu: %llu log records written since matching stopped",
			(unsigned long long)saved, (unsigned long long)(d->start_seq - saved));
		d->start_seq = saved;
	}
	d->rate_ms = kz_now_mono_ms();
	int rc = d->s ? 0 : -1;
	if (rc)
		snprintf(why, why_len, "out of memory");
	if (!rc) {
		detect_sightings_versioned(d->s, true);
		detect_sightings_cap(d->s, cfg->detect_max_sightings);
		rc = each(cfg->detect_indicators, add_coll, d, why, why_len) ||
		     each(cfg->detect_topics, add_filter, d, why, why_len) ||
		     each(cfg->detect_files, add_file, d, why, why_len) ||
		     each(cfg->detect_warninglists, add_warninglist, d, why, why_len) ||
		     each(cfg->detect_intel, add_intel, d, why, why_len);
	}
	if (!rc && headers)
		node_detect_resume_headers_load(&d->res, saved, header_give, d);
	if (!rc && cfg->detect_collection[0] && !t) {
		snprintf(why, why_len, "detect.collection needs the TAXII server (https.enabled = 1)");
		rc = -1;
	}
	uint64_t t0 = kz_now_mono_ms();
	if (!rc)
		intel_poll(d, true);
	if (!rc && catch_up(d, why, why_len))
		rc = -1;
	if (!rc) {
		detect_index_compact(d->x);
		publish(d);
		kz_info("detect: %llu indicators from the log in %llu ms (%llu not matchable, %llu suppressed); %d log "
			"topic filters, %d files", (unsigned long long)d->now.st.indicators,
			(unsigned long long)(kz_now_mono_ms() - t0), (unsigned long long)d->now.st.unsupported,
			(unsigned long long)d->now.st.suppressed, d->n_filters, d->n_files);
	}
	if (!rc && pthread_create(&d->th, NULL, run, d)) {
		snprintf(why, why_len, "cannot start the detection thread");
		rc = -1;
	}
	if (rc) {
		node_detect_close(d);
		return -1;
	}
	d->started = true;
	atomic_store(&node_detect_live, d);
	*out = d;
	return 0;
}

void node_detect_kick(void)
{
	struct node_detect *d = atomic_load(&node_detect_live);
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->kicked = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

void node_detect_close(struct node_detect *d)
{
	if (!d)
		return;
	atomic_store(&node_detect_live, NULL);
	if (d->started) {
		pthread_mutex_lock(&d->lock);
		d->stop = true;
		pthread_cond_signal(&d->cond);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->th, NULL);
	}
	for (size_t i = 0; i < d->n_topics; i++) {
		free(d->topics[i].topic);
		detect_reader_free(d->topics[i].r);
	}
	free(d->topics);
	for (int i = 0; i < d->n_files; i++) {
		detect_tail_close(d->files[i].t);
		detect_reader_free(d->files[i].r);
	}
	detect_sightings_free(d->s);
	detect_index_free(d->x);
	kz_json_free(&d->doc);
	kz_buf_cleanup(&d->rec);
	node_detect_resume_cleanup(&d->res);
	free(d->pub.skipped);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static void snapshot(struct node_detect *d, struct snap *s, struct kz_buf *skipped)
{
	pthread_mutex_lock(&d->lock);
	*s = d->pub;
	if (skipped && d->pub.skipped_len)
		kz_buf_append(skipped, d->pub.skipped, d->pub.skipped_len);
	pthread_mutex_unlock(&d->lock);
	s->skipped = NULL;
}

/* The indicators not matched that the reader may see (may_see), the first SKIPPED_SHOWN. */
static void put_skipped(struct kz_buf *b, const struct kz_buf *sk, const char *identity, const struct kz_policy *pol)
{
	struct kz_subject s;
	kz_subject_init(pol, identity ? identity : "", &s);
	kz_buf_append(b, "[", 1);
	unsigned shown = 0;
	const char *p = (const char *)kz_buf_head(sk), *end = p + sk->len;
	while (p < end && shown < SKIPPED_SHOWN) {
		const char *f[5];
		for (int i = 0; i < 5; i++, p += strlen(p) + 1)
			f[i] = p;
		if (!may_see(pol, &s, f[2], f[3], f[4]))
			continue;
		if (shown++)
			kz_buf_append(b, ",", 1);
		kz_buf_append(b, "{\"id\":", 6);
		kz_json_put_str(b, f[0]);
		kz_buf_append(b, ",\"why\":", 7);
		kz_json_put_str(b, f[1]);
		kz_buf_append(b, "}", 1);
	}
	kz_buf_append(b, "]", 1);
}

static void status(void *ctx, struct kz_http_req *r)
{
	struct node_detect *d = ctx;
	if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD")) {
		kz_http_header(r, "Allow", "GET, HEAD");
		kz_http_error(r, 405, NULL, "Method Not Allowed", "%s is not allowed here: use GET", r->method);
		return;
	}
	if (strcmp(r->path, "/api/v1/detect/status") && strcmp(r->path, "/api/v1/detect")) {
		kz_http_error(r, 404, NULL, "Not Found", "no such resource: GET /api/v1/detect/status");
		return;
	}
	struct snap s;
	struct kz_buf sk, b;
	kz_buf_init(&sk, 0), kz_buf_init(&b, 0);
	snapshot(d, &s, &sk);
	kz_buf_appendf(&b, "{\"indicators\":%llu,\"indicators_by_type\":{", (unsigned long long)s.st.indicators);
	for (int k = 0; k < DETECT_TYPES; k++)
		kz_buf_appendf(&b, "%s\"%s\":%llu", k ? "," : "", detect_type_names[k], (unsigned long long)s.st.by_type[k]);
	kz_buf_appendf(&b, "},\"unsupported\":%llu,\"suppressed\":%llu,\"replaced\":%llu,\"revoked\":%llu,\"removed\":%llu,"
			   "\"refused\":%llu,\"index_bytes\":%llu,",
		       (unsigned long long)s.st.unsupported, (unsigned long long)s.st.suppressed,
		       (unsigned long long)s.st.replaced, (unsigned long long)s.st.revoked, (unsigned long long)s.st.removed,
		       (unsigned long long)s.indicators_refused, (unsigned long long)s.st.bytes);
	kz_buf_appendf(&b, "\"lines\":%llu,\"events\":%llu,\"parse_errors\":%llu,\"events_per_second\":%.1f,"
			   "\"matches\":%llu,\"topics_skipped\":%llu,\"rotations\":%llu,",
		       (unsigned long long)s.lines, (unsigned long long)s.events, (unsigned long long)s.errors,
		       s.events_per_s, (unsigned long long)s.matches, (unsigned long long)s.topics_skipped,
		       (unsigned long long)s.rotations);
	kz_buf_appendf(&b, "\"sightings\":{\"published\":%llu,\"stored\":%llu,\"kept\":%llu,\"no_label\":%llu,"
			   "\"publish_refused\":%llu,\"store_refused\":%llu},\"log_next_seq\":%llu,\"collection\":",
		       (unsigned long long)s.published, (unsigned long long)s.stored, (unsigned long long)s.pending,
		       (unsigned long long)s.refused_label, (unsigned long long)s.refused_publish,
		       (unsigned long long)s.refused_store, (unsigned long long)s.next_seq);
	kz_json_put_str(&b, d->cfg->detect_collection);
	kz_buf_append(&b, ",\"not_matched\":", 15);
	put_skipped(&b, &sk, r->identity, atomic_load(&d->b->policy));
	kz_buf_append(&b, "}", 1);
	kz_http_send(r, 200, "application/json", (const char *)kz_buf_head(&b), b.len);
	kz_buf_cleanup(&sk), kz_buf_cleanup(&b);
}

int node_detect_routes(struct node_detect *d, struct kz_http *h)
{
	return d ? kz_http_route(h, "/api/v1/detect", true, status, d) : 0;
}

static void gauge(struct kz_buf *b, const char *name, const char *type, const char *help, double v)
{
	kz_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void node_detect_metrics(struct node_detect *d, struct kz_buf *b)
{
	if (!d)
		return;
	struct snap s;
	snapshot(d, &s, NULL);
	kz_buf_appendf(b, "# HELP kizuna_detect_indicators Indicators matched, by the observable types they compare (docs/DETECTION.md).\n"
			  "# TYPE kizuna_detect_indicators gauge\n");
	for (int k = 0; k < DETECT_TYPES; k++)
		kz_buf_appendf(b, "kizuna_detect_indicators{type=\"%s\"} %llu\n", detect_type_names[k],
			       (unsigned long long)s.st.by_type[k]);
	gauge(b, "kizuna_detect_indicators_total", "gauge", "Indicators matched.", (double)s.st.indicators);
	gauge(b, "kizuna_detect_indicators_unsupported", "gauge", "Indicators of a form not matched (listed in the status).",
	      (double)s.st.unsupported);
	gauge(b, "kizuna_detect_indicators_suppressed", "gauge", "Indicators on a warning list.", (double)s.st.suppressed);
	gauge(b, "kizuna_detect_index_bytes", "gauge", "Memory the indicator index holds.", (double)s.st.bytes);
	gauge(b, "kizuna_detect_events_total", "counter", "Log events read.", (double)s.events);
	gauge(b, "kizuna_detect_events_per_second", "gauge", "Log events read per second, over the last second.",
	      s.events_per_s);
	gauge(b, "kizuna_detect_parse_errors_total", "counter", "Log lines that did not parse (skipped).", (double)s.errors);
	gauge(b, "kizuna_detect_matches_total", "counter", "Indicator matches.", (double)s.matches);
	gauge(b, "kizuna_detect_sightings_published_total", "counter", "Sighting versions published as records.",
	      (double)s.published);
	gauge(b, "kizuna_detect_sightings_stored_total", "counter", "Sighting versions stored in the TAXII collection.",
	      (double)s.stored);
	gauge(b, "kizuna_detect_sightings_refused_total", "counter",
	      "Sightings not written: no label joins the indicator's and the event's, or the policy or TAXII refused.",
	      (double)(s.refused_label + s.refused_publish + s.refused_store));
}
