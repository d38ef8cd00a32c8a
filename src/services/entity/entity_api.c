/* entity_api.c — GET /api/v1/entities and /api/v1/entities/<id or alias> (docs/ENTITIES.md
 * "Reading the picture"). Every entity passes the decision point before it is shown or
 * counted: the reader may subscribe to its topic (kz/entity/<id>) and dominates its label.
 * One the reader may not see is absent: a 404 for it reads like one for an unknown id. */
#include "services/entity/entity_service.h"
#include "base/kz_buf.h"
#include "base/kz_err.h"
#include "base/kz_time.h"
#include "http/http.h"
#include "trust/policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "/api/v1/entities"

/* The reader's view: its subject, and the labels already decided in this request (labels
 * are interned, so one pointer is one label). */
struct reader {
	const struct kz_policy *pol; /* NULL: policy.open, every entity visible */
	struct kz_subject s;
	const char *seen[16];
	bool allowed[16];
	unsigned n_seen;
	uint64_t withheld;
};

static bool label_ok(struct reader *rd, const char *label)
{
	if (!label || !*label)
		return true;
	for (unsigned i = 0; i < rd->n_seen; i++)
		if (rd->seen[i] == label)
			return rd->allowed[i];
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], why[200];
	size_t clen;
	const char *w;
	bool ok = kz_label_parse(rd->pol, label, strlen(label), &l, canon, &clen, why, sizeof why) == 0 &&
		  kz_dominates(rd->pol, &rd->s, &l, &w);
	if (rd->n_seen < 16) {
		rd->seen[rd->n_seen] = label;
		rd->allowed[rd->n_seen++] = ok;
	}
	return ok;
}

static bool visible(struct reader *rd, const struct entity *e)
{
	if (!rd->pol)
		return true;
	char topic[16 + ENTITY_ID_MAX];
	int n = snprintf(topic, sizeof topic, "kz/entity/%s", e->id);
	const char *w;
	bool ok = kz_policy_subscribe(rd->pol, &rd->s, topic, (size_t)n, &w) && label_ok(rd, e->label);
	rd->withheld += !ok;
	return ok;
}

/* ---------- the list's filters ---------- */

struct filter {
	uint32_t limit;
	unsigned status_mask;  /* 1 << enum entity_status */
	const char *type;      /* prefix */
	char type_buf[65];
	const char *origin;
	char origin_buf[256];
	bool has_bbox;
	double bbox[4];        /* min lon, min lat, max lon, max lat */
	uint64_t since_ns;     /* received after */
	uint64_t after_seq;    /* the cursor: the last record sequence of the previous page */
	char why[160];
};

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (!*v || *end || errno || v[0] == '-')
		return -1;
	*out = x;
	return 0;
}

static int status_of(struct filter *f, const char *v)
{
	f->status_mask = 0;
	for (const char *p = v; *p;) {
		size_t n = strcspn(p, ",");
		if (n == 4 && !strncmp(p, "live", 4))
			f->status_mask |= 1u << ENTITY_LIVE;
		else if (n == 5 && !strncmp(p, "stale", 5))
			f->status_mask |= 1u << ENTITY_STALE;
		else if (n == 7 && !strncmp(p, "removed", 7))
			f->status_mask |= 1u << ENTITY_REMOVED;
		else
			return -1;
		p += n + (p[n] == ',');
	}
	return f->status_mask ? 0 : -1;
}

static int one_param(void *ctx, const char *k, const char *v)
{
	struct filter *f = ctx;
	uint64_t x;
	if (!strcmp(k, "limit")) {
		if (parse_u64(v, &x) || x == 0) {
			snprintf(f->why, sizeof f->why, "limit: a positive integer");
			return -1;
		}
		f->limit = x > f->limit ? f->limit : (uint32_t)x;
	} else if (!strcmp(k, "status")) {
		if (status_of(f, v)) {
			snprintf(f->why, sizeof f->why, "status: live, stale or removed, or several separated by commas");
			return -1;
		}
	} else if (!strcmp(k, "type")) {
		snprintf(f->type_buf, sizeof f->type_buf, "%s", v);
		f->type = f->type_buf;
	} else if (!strcmp(k, "origin")) {
		snprintf(f->origin_buf, sizeof f->origin_buf, "%s", v);
		f->origin = f->origin_buf;
	} else if (!strcmp(k, "bbox")) {
		double *b = f->bbox;
		if (sscanf(v, "%lf,%lf,%lf,%lf", &b[0], &b[1], &b[2], &b[3]) != 4 || b[0] < -180 || b[2] > 180 ||
		    b[1] < -90 || b[3] > 90 || b[0] > b[2] || b[1] > b[3]) {
			snprintf(f->why, sizeof f->why, "bbox: min_lon,min_lat,max_lon,max_lat in degrees (WGS 84)");
			return -1;
		}
		f->has_bbox = true;
	} else if (!strcmp(k, "since")) {
		if (kz_time_parse(v, &f->since_ns)) {
			snprintf(f->why, sizeof f->why, "since: an RFC 3339 date-time");
			return -1;
		}
	} else if (!strcmp(k, "next")) {
		if (parse_u64(v, &f->after_seq)) {
			snprintf(f->why, sizeof f->why, "next: the value of a previous answer's \"next\"");
			return -1;
		}
	} else {
		snprintf(f->why, sizeof f->why, "unknown parameter %.40s (limit, status, type, origin, bbox, since, next)", k);
		return -1;
	}
	return 0;
}

static bool matches(const struct filter *f, const struct entity *e)
{
	if (!(f->status_mask & (1u << e->status)) || e->seq <= f->after_seq || e->received_ns <= f->since_ns)
		return false;
	if (f->type && (!e->type || strncmp(e->type, f->type, strlen(f->type))))
		return false;
	if (f->origin && (!e->origin || strcmp(e->origin, f->origin)))
		return false;
	if (f->has_bbox && (!(e->pos.has & ENTITY_POS_KNOWN) || e->pos.lon < f->bbox[0] || e->pos.lat < f->bbox[1] ||
			    e->pos.lon > f->bbox[2] || e->pos.lat > f->bbox[3]))
		return false;
	return true;
}

/* ---------- the handlers ---------- */

struct collect {
	const struct filter *f;
	struct reader *rd;
	const struct entity **v;
	size_t n, cap;
	bool oom;
};

static int collect_one(void *ctx, const struct entity *e)
{
	struct collect *c = ctx;
	if (!matches(c->f, e) || !visible(c->rd, e))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		const struct entity **v = realloc(c->v, cap * sizeof *v);
		if (!v) {
			c->oom = true;
			return 1;
		}
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = e;
	return 0;
}

static int by_seq(const void *a, const void *b)
{
	uint64_t x = (*(const struct entity *const *)a)->seq, y = (*(const struct entity *const *)b)->seq;
	return x < y ? -1 : x > y;
}

static void reader_init(struct entity_service *s, struct kz_http_req *r, struct reader *rd)
{
	memset(rd, 0, sizeof *rd);
	const struct entity_service_config *cfg = entity_service_config(s);
	rd->pol = cfg->policy ? atomic_load(cfg->policy) : NULL;
	if (rd->pol)
		kz_subject_init(rd->pol, r->identity, &rd->s);
}

static void answer(struct kz_http_req *r, struct kz_buf *b)
{
	if (!b->len)
		kz_http_error(r, 500, NULL, "Out of memory", "the answer could not be built");
	else
		kz_http_send(r, 200, "application/json", (const char *)kz_buf_head(b), b->len);
}

static void list(struct entity_service *s, struct kz_http_req *r)
{
	const struct entity_service_config *cfg = entity_service_config(s);
	struct filter f = { .limit = cfg->max_page, .status_mask = 1u << ENTITY_LIVE | 1u << ENTITY_STALE };
	const char *qwhy = NULL;
	if (kz_http_query_each(r->query, strlen(r->query), one_param, &f, &qwhy)) {
		kz_http_error(r, 400, NULL, "Bad request", "%s", qwhy ? qwhy : f.why);
		return;
	}
	if (!strstr(r->query, "limit="))
		f.limit = cfg->default_page < f.limit ? cfg->default_page : f.limit;
	struct reader rd;
	reader_init(s, r, &rd);
	struct collect c = { .f = &f, .rd = &rd };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	entity_service_lock(s, true);
	entity_table_each(entity_service_table(s), collect_one, &c);
	if (!c.oom) {
		if (c.n)
			qsort(c.v, c.n, sizeof *c.v, by_seq);
		size_t n = c.n < f.limit ? c.n : f.limit;
		int rc = kz_buf_append(&b, "{\"entities\":[", 13);
		for (size_t i = 0; !rc && i < n; i++)
			rc = (i && kz_buf_append(&b, ",", 1)) || entity_to_json(c.v[i], &b);
		char tail[96];
		int tn = snprintf(tail, sizeof tail, "],\"more\":%s,\"next\":\"%llu\"}", c.n > n ? "true" : "false",
				  (unsigned long long)(n ? c.v[n - 1]->seq : f.after_seq));
		if (rc || kz_buf_append(&b, tail, (size_t)tn))
			kz_buf_reset(&b);
	}
	entity_service_lock(s, false);
	free(c.v);
	static _Thread_local char reason[96];
	snprintf(reason, sizeof reason, "%zu entities returned, %llu withheld", c.n < f.limit ? c.n : f.limit,
		 (unsigned long long)rd.withheld);
	r->audit_reason = reason;
	answer(r, &b);
	kz_buf_cleanup(&b);
}

static void one(struct entity_service *s, struct kz_http_req *r, const char *name)
{
	struct reader rd;
	reader_init(s, r, &rd);
	struct kz_buf b;
	kz_buf_init(&b, 0);
	entity_service_lock(s, true);
	struct entity *e = entity_table_find(entity_service_table(s), name);
	bool shown = e && visible(&rd, e);
	if (shown && entity_to_json(e, &b))
		kz_buf_reset(&b);
	entity_service_lock(s, false);
	if (!shown) /* unknown, or not for this reader: the same answer */
		kz_http_error(r, 404, NULL, "Not found", "no entity %.128s", name);
	else
		answer(r, &b);
	kz_buf_cleanup(&b);
}

static void handle(void *ctx, struct kz_http_req *r)
{
	struct entity_service *s = ctx;
	if (strcmp(r->method, "GET")) {
		kz_http_header(r, "Allow", "GET");
		kz_http_error(r, 405, NULL, "Method not allowed", "entities are read here; they are written as records "
			      "on kz/entity/<id> (MQTT)");
		return;
	}
	const char *rest = r->path + strlen(PREFIX);
	if (!*rest || !strcmp(rest, "/")) {
		list(s, r);
		return;
	}
	rest++;
	const char *slash = strchr(rest, '/');
	size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!entity_id_valid(rest, len) || (slash && strcmp(slash, "/history"))) {
		kz_http_error(r, 404, NULL, "Not found", "no entity %.128s (paths: /api/v1/entities, /api/v1/entities/<id>, "
			      "/api/v1/entities/<id>/history)", rest);
		return;
	}
	char name[ENTITY_ID_MAX + 1];
	memcpy(name, rest, len);
	name[len] = 0;
	if (slash)
		entity_history_get(s, r, name);
	else
		one(s, r, name);
}

int entity_service_routes(struct entity_service *s, struct kz_http *h)
{
	return kz_http_route(h, PREFIX, true, handle, s);
}
